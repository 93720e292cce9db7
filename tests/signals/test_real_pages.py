"""The snapshot contract end to end: real vLLM pages, parsed by the scraper, derived by signals.

The second scrape is the same page with every counter and histogram sample doubled, so each
window's increase equals the first page's own values: quantiles must equal the first page's
histogram quantiles and rates its counters divided by the elapsed time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.scrape.parse import parse_snapshot
from sidecar.signals.derive import QUANTILES, derive
from sidecar.signals.history import History
from sidecar.signals.quantile import histogram_quantile, merge_histograms
from sidecar.snapshot import Snapshot

TEXT = "text/plain; version=0.0.4; charset=utf-8"
CUMULATIVE = re.compile(r"^(vllm:\w+?(?:_total|_bucket|_count|_sum))(\{[^}]*\})? (\S+)$")


def doubled(page: str) -> str:
    """The page as it would read after the same traffic happened once more."""
    lines = []
    for line in page.splitlines():
        match = CUMULATIVE.match(line)
        if match is None:
            lines.append(line)
            continue
        name, labels, value = match.groups()
        lines.append(f"{name}{labels or ''} {float(value) * 2!r}")
    return "\n".join(lines) + "\n"


def two_scrapes(page: Path) -> tuple[Snapshot, Snapshot]:
    """The page now and 30 s later with its cumulative series doubled."""
    text = page.read_text()
    first = parse_snapshot(text.encode(), TEXT, timestamp=1.7e9, monotonic=100.0)
    second = parse_snapshot(doubled(text).encode(), TEXT, timestamp=1.7e9 + 30, monotonic=130.0)
    return first, second


@pytest.mark.parametrize("page", ["v1-1model.prom", "v0.6.3-multiproc.prom"])
def test_real_page_derives_its_own_values(test_data: Path, page: str) -> None:
    """Every signal comes out of a real page, equal to the first page's values over 30 s."""
    first, second = two_scrapes(test_data / "vllm" / page)
    history = History(900.0)
    history.append(first)
    history.append(second)
    signals = derive(history, min_requests_for_ratio=1.0)
    for model in first.models():
        target = signals.for_model(model)
        assert target is not None
        ttft = merge_histograms(
            [h for k, h in first.histograms["ttft"].items() if k.model_name == model]
        )
        assert ttft is not None
        assert ttft.count > 0, "the page should carry TTFT observations"
        for q in QUANTILES:
            expected = histogram_quantile(float(q), ttft.buckets)
            assert target.latency["ttft"]["1m"][q] == pytest.approx(expected, rel=1e-12)
        assert target.latency_mean["ttft"]["1m"] == pytest.approx(ttft.sum / ttft.count)
        prompt = sum(v for k, v in first.counters["prompt_tokens"].items() if k.model_name == model)
        assert target.prompt_tokens_per_second["1m"] == pytest.approx(prompt / 30.0)
        finished = sum(
            v for k, v in first.counters["request_success"].items() if k.model_name == model
        )
        assert target.requests_per_second["5m"] == pytest.approx(finished / 30.0)
        assert target.requests_running is not None
        assert target.kv_cache_usage is not None
        assert 0.0 <= target.kv_cache_usage <= 1.0
        assert target.error_ratio["1m"] is not None
