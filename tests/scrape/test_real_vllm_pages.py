"""Pages captured from a real vLLM 0.32.0 parse into complete snapshots, whatever the mount.

vLLM >= 0.32 answers ``/metrics`` with ``text/plain; version=1.0.0`` whatever Accept says, and
``/metrics/`` negotiates: asked for OpenMetrics it escapes samples to ``vllm_x`` while ``# TYPE``
keeps ``vllm:x``. The scraper keeps asking for the 0.0.4 text format and must read all of these.
"""

from __future__ import annotations

import pytest

from sidecar.scrape.catalogue import missing_required
from sidecar.scrape.parse import parse_snapshot
from sidecar.scrape.scraper import ACCEPT
from sidecar.snapshot import Snapshot
from tests.support import TEST_DATA

REAL = TEST_DATA / "vllm" / "real-0.32.0-cpu"


def _content_type(headers: str) -> str:
    for line in (REAL / headers).read_text().splitlines():
        if line.lower().startswith("content-type:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no content-type in {headers}")


def _snapshot(page: str, headers: str) -> Snapshot:
    body = (REAL / page).read_bytes()
    return parse_snapshot(body, _content_type(headers), timestamp=0.0, monotonic=0.0)


def test_the_scraper_asks_for_the_0_0_4_text_format() -> None:
    assert ACCEPT.startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(
    ("page", "headers"),
    [
        ("metrics-single-process.prom", "metrics-single-process.headers"),
        ("metrics-slash-openmetrics.txt", "metrics-slash-openmetrics.headers"),
    ],
)
def test_real_pages_parse_complete(page: str, headers: str) -> None:
    snapshot = _snapshot(page, headers)
    assert missing_required(snapshot.present) == []
    assert snapshot.models() == ["tiny-llama"]


def test_both_mounts_give_the_same_series() -> None:
    text = _snapshot("metrics-single-process.prom", "metrics-single-process.headers")
    escaped = _snapshot("metrics-slash-openmetrics.txt", "metrics-slash-openmetrics.headers")
    assert _content_type("metrics-single-process.headers").startswith("text/plain; version=1.0.0")
    for table in ("gauges", "counters", "histograms"):
        ours, theirs = getattr(text, table), getattr(escaped, table)
        assert {k: set(v) for k, v in ours.items()} == {k: set(v) for k, v in theirs.items()}
