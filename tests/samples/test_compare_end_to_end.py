"""Replay, then compare, end to end against real HTTP backends.

``current`` and ``candidate`` are OpenAI-compatible base URLs: here two emulators, the candidate
with a changed output style (much shorter answers, half of them cut off by ``length``). A
real-vLLM fixture can stand in for :func:`backends` (two tiny models built with different seeds)
without changing the test body.

The originals are produced the way production would: the prompts are sent to ``current`` and the
answers stored as a sample tree (a replay run is one). Replaying that tree against ``current``
again at temperature 0 must pass the gate; against ``candidate`` it must fail it, naming the
signals that changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from yarl import URL

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.samples.replay import ReplayOptions, replay, select_items
from sidecar.samples.timespec import TimeRange
from tests.samples.synthetic import Traffic, make_records, write_objects

PROMPTS = 120


@dataclass(frozen=True, slots=True)
class Backends:
    current: str
    candidate: str


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    """The emulator pair: same seed, the candidate answering in a different style."""
    base = EmulatorOptions.for_tests(seed=3, latency_ms=200.0)
    changed = base.replace(output_tokens_mean=6.0, length_cutoff_share=0.5)
    async with run_emulator(base, port=0) as current, run_emulator(changed, port=0) as candidate:
        yield Backends(current.url, candidate.url)


async def _replay(source: Path, run_dir: Path, target: str) -> None:
    items = select_items(source, TimeRange()).items
    options = ReplayOptions(target=URL(target), concurrency=8, temperature=0.0)
    summary = await replay(items, run_dir, options)
    assert summary.failed == 0


def _compare(source: Path, run: str, tmp_path: Path) -> tuple[int, dict[str, object]]:
    """``samples compare --semantic`` as a child process, as CI runs it (the model's threads
    then live and die with it, not in the test process)."""
    out = tmp_path / f"{run}.json"
    report = tmp_path / f"{run}.html"
    argv = ["samples", "compare", "--source", str(source), run, "--semantic"]
    child = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *argv, "--json", str(out), "--report", str(report)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    code = child.returncode
    assert code in (0, 3), child.stderr.decode()
    assert report.read_text().startswith("<!doctype html>")
    return code, json.loads(out.read_text())


def _regressions(result: dict[str, object]) -> set[str]:
    signals = result["signals"]
    assert isinstance(signals, list)
    return {signal["name"] for signal in signals if signal["status"] == "regression"}


async def test_same_model_passes_and_a_changed_one_fails_the_gate(
    tmp_path: Path, backends: Backends
) -> None:
    prompts = tmp_path / "prompts"
    write_objects(prompts, make_records(9, Traffic(error_share=0.0), PROMPTS, time.time() - 3600))
    originals = tmp_path / "originals"
    await _replay(prompts, originals, backends.current)

    await _replay(originals, originals / ".replays" / "same", backends.current)
    code, same = _compare(originals, "same", tmp_path)
    assert same["pairs"] == PROMPTS
    assert code == 0, _regressions(same)
    signals = same["signals"]
    assert isinstance(signals, list)
    similarity = {signal["name"]: signal for signal in signals}["semantic_similarity"]
    assert similarity["status"] == "ok"
    assert similarity["candidate"].startswith("median 1.000")

    await _replay(originals, originals / ".replays" / "changed", backends.candidate)
    code, changed = _compare(originals, "changed", tmp_path)
    assert code == 3
    named = {"output_chars", "completion_tokens", "length_cutoff", "semantic_similarity"}
    assert named <= _regressions(changed)
    report = (tmp_path / "changed.html").read_text()
    assert "Worst pairs" in report
    assert "now cut off by length" in report
