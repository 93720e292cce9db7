"""What one scrape costs the sidecar: parse, then derive over a full history, per page size.

``python -m bench.scrape_cost`` measures, for the reference vLLM pages and synthetic
data-parallel pages built from them (see :mod:`bench.pages`):

* **parse**: ``parse_snapshot`` of the page (bytes -> normalised Snapshot), median of
  repetitions, and with tracemalloc the peak memory it allocates and what the Snapshot keeps;
* **derive**: ``derive`` over a full history (15 minutes of 5 s scrapes of that page with
  counters growing between scrapes, the sidecar's default ``history_seconds``), median time and
  peak allocation; this is the work ``on_snapshot`` does after every scrape;
* the share of one core both take at a 5 s scrape interval.

The HTTP fetch is not included (it is I/O on the event loop, a few hundred microseconds for
these sizes on loopback), nor is alert evaluation (its own interval, and it reads the derived
signals rather than the page).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.pages import V06_PAGE, V1_PAGE, read_page, with_engines
from sidecar.scrape.parse import parse_snapshot
from sidecar.signals.derive import derive
from sidecar.signals.history import History
from sidecar.snapshot import Histogram, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INTERVAL = 5.0
HISTORY_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class PageCost:
    """The cost of scraping one page, per scrape."""

    page: str
    kb: float
    series: int
    parse_ms: float
    parse_peak_kb: float
    snapshot_kb: float
    derive_ms: float
    derive_peak_kb: float
    history_snapshots: int

    @property
    def per_scrape_ms(self) -> float:
        return self.parse_ms + self.derive_ms

    @property
    def core_pct(self) -> float:
        """Share of one core at a 5 s interval, in percent."""
        return self.per_scrape_ms / 1000.0 / INTERVAL * 100.0


def pages(shared_v1: Path = V1_PAGE, shared_v06: Path = V06_PAGE) -> dict[str, str]:
    """The pages measured: the two reference pages and 2- and 8-engine versions of the v1 one."""
    v1 = read_page(shared_v1)
    return {
        "v1, 1 engine (v1-1model.prom)": v1,
        "v1, 2 engines (synthetic)": with_engines(v1, 2),
        "v1, 8 engines (synthetic)": with_engines(v1, 8),
        "v0.6 multiprocess (v0.6.3-multiproc.prom)": read_page(shared_v06),
    }


def _parse(body: bytes, at: float) -> Snapshot:
    return parse_snapshot(body, CONTENT_TYPE, timestamp=1.8e9 + at, monotonic=at)


def _grown(snapshot: Snapshot, factor: float, at: float) -> Snapshot:
    """The snapshot as a later scrape would see it: counters and histograms times ``factor``.

    Equivalent to parsing :func:`bench.pages.advanced` of the page (checked by the smoke test),
    without parsing 180 pages.
    """
    return replace(
        snapshot,
        timestamp=1.8e9 + at,
        monotonic=at,
        gauges={name: dict(series) for name, series in snapshot.gauges.items()},
        counters={
            name: {key: value * factor for key, value in series.items()}
            for name, series in snapshot.counters.items()
        },
        histograms={
            name: {
                key: Histogram.from_columns(
                    hist.edges,
                    [count * factor for count in hist.counts],
                    hist.count * factor,
                    hist.sum * factor,
                )
                for key, hist in series.items()
            }
            for name, series in snapshot.histograms.items()
        },
    )


def _median_ms(work: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000.0


def _allocation(work: Callable[[], object]) -> tuple[float, float]:
    """(peak KB allocated while ``work`` runs, KB still held by its result)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        gc.collect()  # the parser leaves reference cycles behind: not kept, just not freed yet
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / 1024.0, current / 1024.0


def measure_page(name: str, page: str, repeat: int = 20) -> PageCost:
    """Parse and derive costs of one page (see module docstring)."""
    body = page.encode()
    snapshot = _parse(body, 0.0)
    series = sum(len(values) for values in snapshot.gauges.values())
    series += sum(len(values) for values in snapshot.counters.values())
    series += sum(len(values) for values in snapshot.histograms.values())
    parse_ms = _median_ms(lambda: _parse(body, 0.0), repeat)
    parse_peak, snapshot_kb = _allocation(lambda: _parse(body, 0.0))

    history = History(HISTORY_SECONDS)
    steps = int(HISTORY_SECONDS / INTERVAL)
    for step in range(steps):
        history.append(_grown(snapshot, 1.0 + 0.002 * step, step * INTERVAL))
    signals = derive(history)
    if not signals.targets:
        raise RuntimeError(f"{name}: derive() found no models on the page")
    derive_ms = _median_ms(lambda: derive(history), repeat)
    derive_peak, _ = _allocation(lambda: derive(history))
    return PageCost(
        page=name,
        kb=len(body) / 1024.0,
        series=series,
        parse_ms=parse_ms,
        parse_peak_kb=parse_peak,
        snapshot_kb=snapshot_kb,
        derive_ms=derive_ms,
        derive_peak_kb=derive_peak,
        history_snapshots=steps,
    )


def measure(repeat: int = 20) -> list[PageCost]:
    return [measure_page(name, page, repeat) for name, page in pages().items()]


def table(costs: list[PageCost]) -> str:
    """Markdown table of the costs."""
    lines = [
        "| page | size | series | parse | parse peak alloc | snapshot kept | history kept (180 "
        "snapshots) | derive (180 snapshots) | derive peak alloc | per scrape | share of one "
        "core @5 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cost in costs:
        lines.append(
            f"| {cost.page} | {cost.kb:.0f} KB | {cost.series} | {cost.parse_ms:.2f} ms | "
            f"{cost.parse_peak_kb / 1024:.1f} MB | {cost.snapshot_kb:.0f} KB | "
            f"{cost.snapshot_kb * cost.history_snapshots / 1024:.1f} MB | "
            f"{cost.derive_ms:.2f} ms | {cost.derive_peak_kb:.0f} KB | "
            f"{cost.per_scrape_ms:.2f} ms | {cost.core_pct:.2f}% |"
        )
    return "\n".join(lines)


def as_json(costs: list[PageCost]) -> list[dict[str, Any]]:
    return [
        {**asdict(cost), "per_scrape_ms": cost.per_scrape_ms, "core_pct": cost.core_pct}
        for cost in costs
    ]


def from_json(item: dict[str, Any]) -> PageCost:
    """A :class:`PageCost` back from :func:`as_json`."""
    return PageCost(**{name: item[name] for name in PageCost.__dataclass_fields__})


def closest_to_100kb(costs: list[PageCost]) -> PageCost:
    """The page the issue's "< 1% of a core for a 100 KB page" goal is judged on."""
    return min(costs, key=lambda cost: abs(cost.kb - 100.0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape_cost", description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions per figure")
    args = parser.parse_args(argv)
    print(table(measure(args.repeat)))


if __name__ == "__main__":
    main()
