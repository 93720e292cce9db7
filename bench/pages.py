"""vLLM /metrics pages for the benchmarks: the reference pages, more engines, moving counters.

The fake upstream serves these pages to the sidecar's scraper, and the scrape-cost benchmark
parses them. Two transformations keep them realistic without running an engine:

* :func:`with_engines` repeats every ``engine="0"`` series for engines ``1..n-1`` inside its
  family block, as a data-parallel vLLM (one API server, ``engine`` label) prints them;
* :func:`advanced` multiplies every counter and histogram sample by a factor, so successive
  scrapes show traffic (rates and latency quantiles are non-zero) while buckets stay cumulative
  and ``+Inf == _count`` still holds.
"""

from __future__ import annotations

import re
from pathlib import Path

REFERENCE_PAGES = Path(__file__).resolve().parents[1] / "tests" / "data" / "vllm"
"""The project's reference pages (rendered from vLLM's metric definitions), in the test data."""
V1_PAGE = REFERENCE_PAGES / "v1-1model.prom"
V06_PAGE = REFERENCE_PAGES / "v0.6.3-multiproc.prom"

_ENGINE_ZERO = 'engine="0"'
_SCALED_TYPES = frozenset({"counter", "histogram"})
_SAMPLE = re.compile(r"^(?P<series>[^ {]+(?:\{.*\})?) (?P<value>\S+)(?P<rest>.*)$")


def read_page(path: Path) -> str:
    """A page as text; a clear error when the reference data is missing."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"reference page {path} not found: the benchmarks read vLLM pages from "
            f"{REFERENCE_PAGES} (or pass another page with --metrics-page)"
        ) from None


def with_engines(page: str, engines: int) -> str:
    """The page with every ``engine="0"`` series repeated for ``engine="1".."engines-1"``."""
    if engines < 1:
        raise ValueError("engines must be >= 1")
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        per_engine = [line for line in block if _ENGINE_ZERO in line]
        out.extend(line for line in block if _ENGINE_ZERO not in line)
        for engine in range(engines):
            label = f'engine="{engine}"'
            out.extend(line.replace(_ENGINE_ZERO, label) for line in per_engine)
        block.clear()

    for line in page.splitlines():
        if line.startswith("#"):
            flush()
            out.append(line)
        else:
            block.append(line)
    flush()
    return "\n".join(out) + "\n"


def advanced(page: str, factor: float) -> str:
    """The page with counter and histogram samples (not ``_created``) multiplied by ``factor``."""
    kind = ""
    out: list[str] = []
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            kind = line.rsplit(" ", 1)[-1]
        elif kind in _SCALED_TYPES and line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            if match and not match["series"].split("{", 1)[0].endswith("_created"):
                value = float(match["value"]) * factor
                out.append(f"{match['series']} {value!r}{match['rest']}")
                continue
        out.append(line)
    return "\n".join(out) + "\n"
