"""Bodies that must be refused, each with its own reason label, and errors that say where."""

from __future__ import annotations

import math

import pytest

from sidecar.scrape.parse import ExpositionError
from sidecar.snapshot import SeriesKey
from tests.scrape.pages import OPENMETRICS_ACCEPT, reason_of, registry_from_page, render, snap


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html; charset=utf-8",
        "application/json",
        "application/vnd.google.protobuf",
        "image/png",
    ],
)
def test_wrong_content_type_is_refused(v1_page: bytes, content_type: str) -> None:
    """A body labelled as HTML, JSON, protobuf or an image is not parsed as metrics."""
    assert reason_of(v1_page, content_type) == "unsupported_content_type"


HISTOGRAM = """# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="m"}} {low}
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {inf}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {count}
vllm:time_to_first_token_seconds_sum{{model_name="m"}} {total}
"""


def histogram(low: str = "1", inf: str = "3", count: str = "3", total: str = "1.5") -> bytes:
    return HISTOGRAM.format(low=low, inf=inf, count=count, total=total).encode()


def counter(value: bytes) -> bytes:
    return (
        b"# TYPE vllm:prompt_tokens_total counter\n"
        + b'vllm:prompt_tokens_total{model_name="m"} '
        + value
        + b"\n"
    )


def test_well_formed_histogram_body_parses() -> None:
    """The template used below is accepted when consistent, so each refusal is down to one flaw."""
    ttft = snap(histogram()).histograms["ttft"][SeriesKey("m")]
    assert ttft.buckets == ((0.1, 1.0), (math.inf, 3.0))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(histogram(low="5"), "inconsistent", id="buckets-decrease"),
        pytest.param(histogram(count="4"), "inconsistent", id="inf-differs-from-count"),
        pytest.param(histogram(inf="NaN", count="NaN"), "inconsistent", id="nan-count"),
        pytest.param(histogram(low="-1"), "inconsistent", id="negative-bucket"),
        pytest.param(histogram(total="NaN"), "inconsistent", id="nan-sum"),
        pytest.param(b"\n".join([*histogram().split(b"\n")[:2], b""]), "inconsistent", id="no-inf"),
        pytest.param(counter(b"-3"), "inconsistent", id="negative-counter"),
        pytest.param(counter(b"NaN"), "inconsistent", id="nan-counter"),
        pytest.param(
            b'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 1\n'
            b'vllm:num_requests_running{model_name="m"} 2\n',
            "inconsistent",
            id="duplicate-series",
        ),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b" \n\n", "empty", id="blank"),
        pytest.param(b"\x00\x01 not metrics {{{\n", "syntax", id="garbage"),
        pytest.param(b"<html><body>502 Bad Gateway</body></html>\n", "syntax", id="html-as-text"),
        pytest.param(b'vllm:x{model_name="caf\xe9"} 1\n', "encoding", id="latin-1"),
        pytest.param(b"# TYPE vllm:x gauge\nvllm:x 1", "truncated", id="no-final-newline"),
    ],
)
def test_bad_bodies_give_their_reason(body: bytes, reason: str) -> None:
    """Each kind of bad body is refused with its own reason label."""
    assert reason_of(body) == reason


def test_truncated_real_page(v1_page: bytes) -> None:
    """A page cut mid-line is 'truncated', not a syntax error about half a sample."""
    cut = v1_page.rindex(b"\n", 0, len(v1_page) // 2) + 20
    assert reason_of(v1_page[:cut]) == "truncated"


def test_truncated_openmetrics_page(v1_page: bytes) -> None:
    """An OpenMetrics page without its # EOF line is 'truncated'; trailing junk is 'syntax'."""
    body, content_type = render(registry_from_page(v1_page.decode()), OPENMETRICS_ACCEPT)
    assert reason_of(body[: len(body) // 2], content_type) == "truncated"
    assert reason_of(body + b"vllm_x 1\n", content_type) == "syntax"


def test_syntax_error_names_the_line() -> None:
    """A syntax error says which line the parser stopped on."""
    body = b'# TYPE vllm:x gauge\nvllm:x{model_name="m"} 1\nvllm:x{model_name="m" 2\nvllm:y 1\n'
    with pytest.raises(ExpositionError) as caught:
        snap(body)
    assert caught.value.reason == "syntax"
    assert caught.value.line == 3
    assert str(caught.value).startswith("line 3: ")


def test_encoding_error_names_the_line() -> None:
    """A non-UTF-8 byte is reported with its line and offset."""
    with pytest.raises(ExpositionError) as caught:
        snap(b"a 1\nb 2\nc\xff 3\n")
    assert caught.value.reason == "encoding"
    assert caught.value.line == 3
    assert "offset 9" in str(caught.value)


def test_long_garbage_line_gives_a_short_message() -> None:
    """A 60 KB garbage line does not end up whole in the error message (and so in the logs)."""
    with pytest.raises(ExpositionError) as caught:
        snap(b"{" * 60_000 + b"\n")
    assert len(str(caught.value)) < 400
