"""The HTML drift report in a real headless Chromium: no console errors, and the plots show."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from sidecar.cli import main
from sidecar.samples.drift.plots import BASELINE_COLOUR, CURRENT_COLOUR
from tests.samples.browser import open_page
from tests.samples.synthetic import Traffic, make_records, write_objects


def _pixels_near(pixels: np.ndarray, colour: str, tolerance: float = 0.08) -> int:
    """How many pixels are within ``tolerance`` of a hex colour (fully or half transparent)."""
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3] - rgb).max(axis=-1) < tolerance).sum())


def _distinct_colours(pixels: np.ndarray) -> int:
    """Number of different RGB colours in the image (a blank or flat page has a handful)."""
    rgb = np.rint(pixels[..., :3] * 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return int(np.unique(packed).size)


@pytest.fixture
def drift_report(tmp_path: Path) -> Path:
    """A report of a window pair where outputs got longer and refusals appeared."""
    start = time.time() - 7200
    records = make_records(1, Traffic(), 400, start, 1800, tag="b")
    changed = Traffic(deployment="green", tokens_mean=100, length_share=0.2, refusal_share=0.08)
    records += make_records(2, changed, 400, start, 1800, tag="c")
    write_objects(tmp_path / "samples", records)
    report = tmp_path / "drift-report.html"
    code = main(
        ["samples", "drift", "--source", str(tmp_path / "samples"), "--report", str(report),
         "--baseline", "all@deployment=blue", "--current", "all@deployment=green"]
    )  # fmt: skip
    assert code == 3
    return report


@pytest.mark.slow
def test_report_opens_cleanly_and_shows_the_plots(drift_report: Path, tmp_path: Path) -> None:
    """No console errors, nothing fetched from the network, and the screenshot holds the plots."""
    html = drift_report.read_text()
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert html.count("data:image/png;base64,") >= 6

    page = asyncio.run(open_page(drift_report.as_uri(), tmp_path / "profile"))
    assert page.problems == []
    assert all(url.startswith(("file://", "data:")) for url in page.requests), page.requests
    assert page.requests[0] == drift_report.as_uri()

    screenshot = tmp_path / "drift-report.png"
    screenshot.write_bytes(page.screenshot)
    pixels = image.imread(io.BytesIO(page.screenshot), format="png")
    assert pixels.shape[0] == page.height > 2000
    assert pixels.shape[1] == page.width >= 1000
    assert _distinct_colours(pixels) > 500
    assert _pixels_near(pixels, BASELINE_COLOUR) > 20_000, "baseline bars and lines are visible"
    assert _pixels_near(pixels, CURRENT_COLOUR) > 20_000, "current bars and lines are visible"


@pytest.mark.slow
async def test_the_browser_check_does_catch_broken_pages(tmp_path: Path) -> None:
    """The same check reports console errors, exceptions and failed loads when there are any."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!doctype html><html><body><img src='missing.png'>"
        "<script>console.error('boom'); undefined_function();</script></body></html>"
    )
    page = await open_page(broken.as_uri(), tmp_path / "profile")
    text = "\n".join(page.problems)
    assert "console.error: boom" in text
    assert "undefined_function" in text or "exception" in text
    assert "load failed" in text
