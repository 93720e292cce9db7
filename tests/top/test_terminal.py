"""``top`` in a real 80-column terminal (tmux): it picks the narrow layout and nothing is cut."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.loadgen import LoadOptions, run_load
from tests.support import wait_until

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ROOT = Path(__file__).resolve().parents[2]


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


async def test_top_reads_at_80_columns_in_a_terminal() -> None:
    """The screen tmux shows: full model name, both windows, no ellipsis, no line past 80."""
    assert shutil.which("tmux"), "tmux (Debian package) drives the terminal check"
    session = f"vllm-sidecar-top-{uuid.uuid4().hex[:8]}"
    async with run_emulator(EmulatorOptions.for_tests(), port=0) as emulator:
        await run_load(LoadOptions(target=emulator.url, requests=10, concurrency=2))
        command = (
            f"cd {ROOT} && {sys.executable} -m sidecar.cli top --upstream {emulator.url} "
            "--interval 0.3 --duration 20"
        )
        _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "40", command)
        screen = ""
        try:

            def shown() -> bool:
                nonlocal screen
                screen = _tmux("capture-pane", "-p", "-t", session)
                return "TTFT p50 / p99" in screen and MODEL in screen

            await wait_until(shown, within=15.0)
        finally:
            _tmux("kill-session", "-t", session)
    assert "…" not in screen
    assert all(len(line) <= 80 for line in screen.splitlines())
    assert "1m" in screen
    assert "5m" in screen
    assert "scrape ok" in screen
