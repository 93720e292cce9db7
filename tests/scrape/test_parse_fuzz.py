"""Property-based fuzz of the scrape path: any bytes give a sound Snapshot or a labelled error.

"Sound" means the invariants the signal functions rely on hold (histograms cumulative with +Inf
last and equal to count, counters finite-or-infinite but never negative or NaN); "labelled" means
an ExpositionError whose reason is one of the closed set the scraper counts by.
"""

from __future__ import annotations

import math
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sidecar.scrape.errors import REASONS
from sidecar.scrape.parse import ExpositionError, parse_snapshot
from sidecar.snapshot import SeriesKey, Snapshot
from tests.scrape.pages import OPENMETRICS_ACCEPT, V0_PAGE, V1_PAGE, as_served, registry_from_page

TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPES = st.sampled_from(
    [None, TEXT, "application/openmetrics-text; version=1.0.0", "application/octet-stream"]
)
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_V1 = V1_PAGE.read_bytes()
_OPENMETRICS_V1, _OPENMETRICS_TYPE = as_served(registry_from_page(_V1.decode()), OPENMETRICS_ACCEPT)
PAGES: list[tuple[bytes, str]] = [
    (_V1, TEXT),
    (V0_PAGE.read_bytes(), TEXT),
    (_OPENMETRICS_V1, _OPENMETRICS_TYPE),
]
_VALUE = re.compile(rb"(?<= )[-+0-9.eE]+(?:e[+-]?\d+)?(?=\n)|(?<=le=\")[^\"]+(?=\")")
NUMBER_SPANS = [[match.span() for match in _VALUE.finditer(page)] for page, _ in PAGES]
REPLACEMENTS = [
    b"NaN",
    b"-1",
    b"-0",
    b"+Inf",
    b"-Inf",
    b"1e999",
    b"9" * 400,
    b"garbage",
    b"",
    b"0x10",
    b"1_0",
    b"3.5",
    b'"',
    b"}",
    b"\xff",
]
ENDINGS = [b"", b"\n", b"\n# EOF\n"]
"""Most random bodies lack a final newline or # EOF; these endings get them past that check."""
FRAGMENTS = [
    b"# TYPE ",
    b"# HELP ",
    b"# UNIT ",
    b"# EOF",
    b"\n",
    b" ",
    b"vllm:",
    b"vllm_",
    b"kv_cache_usage_perc",
    b"time_to_first_token_seconds",
    b"prompt_tokens",
    b"_total",
    b"_bucket",
    b"_count",
    b"_sum",
    b"_created",
    b" gauge",
    b" counter",
    b" histogram",
    b" info",
    b'{model_name="m"}',
    b'{model_name="m",le="+Inf"}',
    b'{engine="0",model_name="m",le="0.1"}',
    b'le="',
    b"{",
    b"}",
    b",",
    b"=",
    b'"',
    b"1",
    b"-2.5",
    b"NaN",
    b"+Inf",
    b"1e3",
    b' # {a="b"} 1',
]


def _parse(body: bytes, content_type: str | None) -> Snapshot | ExpositionError:
    try:
        return parse_snapshot(body, content_type, timestamp=1.0, monotonic=2.0)
    except ExpositionError as error:
        return error


def _check(body: bytes, content_type: str | None) -> None:
    """The property: a sound Snapshot, or an ExpositionError with a known reason and a message."""
    outcome = _parse(body, content_type)
    if isinstance(outcome, ExpositionError):
        assert outcome.reason in REASONS
        assert str(outcome)
        event(f"reason={outcome.reason}")
        return
    event("parsed")
    _assert_sound(outcome)


def _assert_sound(snapshot: Snapshot) -> None:
    for table in (snapshot.gauges, snapshot.counters, snapshot.histograms):
        for series in table.values():
            assert series, "an empty table is never stored"
            assert all(isinstance(key, SeriesKey) for key in series)
    for series in snapshot.counters.values():
        assert all(not math.isnan(value) and value >= 0 for value in series.values())
    for histograms in snapshot.histograms.values():
        for histogram in histograms.values():
            edges = [edge for edge, _ in histogram.buckets]
            counts = [count for _, count in histogram.buckets]
            assert edges == sorted(edges)
            assert len(set(edges)) == len(edges)
            assert edges[-1] == math.inf
            assert counts == sorted(counts)
            assert counts[0] >= 0
            assert histogram.count == counts[-1]
            assert not math.isnan(histogram.sum)


@settings(FUZZ, max_examples=600)
@given(body=st.binary(max_size=2048), ending=st.sampled_from(ENDINGS), content_type=CONTENT_TYPES)
def test_random_bytes(body: bytes, ending: bytes, content_type: str | None) -> None:
    """Arbitrary bytes never escape as anything but a labelled ExpositionError."""
    _check(body + ending, content_type)


@settings(FUZZ, max_examples=800)
@given(
    pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=60),
    ending=st.sampled_from(ENDINGS),
    content_type=CONTENT_TYPES,
)
def test_exposition_shaped_noise(
    pieces: list[bytes], ending: bytes, content_type: str | None
) -> None:
    """Token soup made of exposition fragments (reaches deep parser paths) is handled cleanly."""
    _check(b"".join(pieces) + ending, content_type)


@st.composite
def mutated_page(draw: st.DrawFn) -> tuple[bytes, str]:
    """A real page with 1-4 edits: deletions, duplications, bit flips, cuts, bad numbers, junk."""
    index = draw(st.integers(0, len(PAGES) - 1))
    page, content_type = PAGES[index]
    body = bytearray(page)
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        op = draw(st.sampled_from(["delete", "duplicate", "flip", "truncate", "number", "junk"]))
        at = draw(st.integers(0, len(body) - 1))
        if op == "delete":
            del body[at : at + draw(st.integers(1, 300))]
        elif op == "duplicate":
            body[at:at] = body[at : at + draw(st.integers(1, 300))]
        elif op == "flip":
            body[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del body[at:]
        elif op == "number" and len(body) == len(page):
            start, end = draw(st.sampled_from(NUMBER_SPANS[index]))
            body[start:end] = draw(st.sampled_from(REPLACEMENTS))
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(body), content_type


@settings(FUZZ, max_examples=200)
@given(case=mutated_page())
def test_mutated_real_pages(case: tuple[bytes, str]) -> None:
    """Edited real pages (text, multiprocess, escaped OpenMetrics): sound result or a reason."""
    _check(*case)


@settings(FUZZ, max_examples=150)
@given(
    index=st.integers(0, len(PAGES) - 1),
    picks=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(REPLACEMENTS)), min_size=1, max_size=6
    ),
)
def test_real_pages_with_bad_numbers(index: int, picks: list[tuple[int, bytes]]) -> None:
    """Values and le edges replaced by NaN, negatives, overflow or garbage never crash the parse."""
    page, content_type = PAGES[index]
    spans = NUMBER_SPANS[index]
    chosen = {spans[at % len(spans)]: replacement for at, replacement in picks}
    body = bytearray(page)
    for (start, end), replacement in sorted(chosen.items(), reverse=True):
        body[start:end] = replacement
    _check(bytes(body), content_type)


def test_number_spans_cover_values_and_edges() -> None:
    """The mutation table finds the page's sample values and le edges (else the fuzz is blind)."""
    page = PAGES[0][0]
    found = {page[start:end] for start, end in NUMBER_SPANS[0]}
    assert {b"0.41372", b"23.0", b"+Inf", b"2560.0"} <= found
    assert len(NUMBER_SPANS[0]) > 500
