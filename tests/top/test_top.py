"""`vllm-sidecar top`: the terminal view renders what the sidecar derives, from vLLM directly."""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.loadgen import LoadOptions, run_load
from sidecar.top import render
from sidecar.topview import Recent

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _text(payload: dict[str, object], recent: Recent | None = None) -> str:
    console = Console(width=200, record=True, force_terminal=False)
    console.print(render(payload, "http://vllm:8000", recent=recent, width=200))
    return console.export_text()


def test_render_shows_signals_and_flags_a_full_cache() -> None:
    """Quantiles, queue trend and KV usage appear, formatted for people."""
    target = {
        "model_name": MODEL,
        "engine": None,
        "ttft_seconds": {"1m": {"0.5": 0.042, "0.99": 1.5}},
        "requests_running": 12.0,
        "requests_waiting": 3.0,
        "queue_growth_per_second": 0.25,
        "kv_cache_usage_ratio": 0.91,
        "kv_cache_seconds_to_full": 90.0,
        "error_ratio": {"1m": 0.02},
    }
    payload = {
        "scrape": {"ready": True, "vllm_version": "0.33.0", "missing_metrics": ["itl"]},
        "signals": {"targets": [target]},
    }
    rising = Recent()
    for step, usage in enumerate((0.85, 0.88, 0.91)):
        reading = {**target, "kv_cache_usage_ratio": usage, "requests_waiting": float(step + 1)}
        rising.observe({"signals": {"targets": [reading]}}, step * 2.0)
    text = _text(payload, rising)
    assert MODEL in text
    assert "42ms / 1.50s" in text
    assert "+0.25/s" in text
    assert "91.0%" in text
    assert "90s" in text
    assert "vLLM metrics missing: itl" in text


def test_render_says_when_scraping_fails() -> None:
    """A failing scrape is stated, not hidden behind empty columns."""
    text = _text({"scrape": {"ready": False, "last_error": "connect refused"}})
    assert "scrape failing: connect refused" in text


async def test_top_against_the_emulator_prints_the_model() -> None:
    """`top --upstream` scrapes and derives locally, and exits after --duration."""
    async with run_emulator(EmulatorOptions.for_tests(), port=0) as emulator:
        await run_load(LoadOptions(target=emulator.url, requests=10, concurrency=2))
        result = await _run_top(emulator.url)
    assert result.returncode == 0, result.stderr
    assert MODEL in result.stdout
    assert "scrape ok" in result.stdout


async def _run_top(url: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "top",
            "--upstream",
            url,
            "--interval",
            "0.5",
            "--duration",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
