"""The README's main-job command: one process, real parts, sampled records on disk."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_for_its_duration_and_leaves_samples(tmp_path: Path) -> None:
    """`demo --duration 30` exits 0, saturates the KV cache, and writes readable sample records."""
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "demo", "--duration", "30"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done:" in result.stdout
    assert "VLLMKVCacheSaturation" in result.stderr, "the canary fires during the saturation phase"
    status = re.findall(r"phase=(\w+) requests=(\d+)", result.stderr)
    steady = [
        (phase, int(before), int(after))
        for (phase, before), (same, after) in itertools.pairwise(status)
        if phase == same and phase != "starting"
    ]
    assert any(after > before for _, before, after in steady), (
        f"the request counter moves within a phase, not only between phases: {status}"
    )
    assert "next, look at what was recorded:" in result.stdout
    assert "vllm-sidecar samples query --source samples-data" in result.stdout
    assert "vllm-sidecar top --sidecar 127.0.0.1:" in result.stdout
    files = sorted((tmp_path / "samples-data" / "v1").rglob("*.jsonl.gz"))
    assert files, "sampled records land in the local sink"
    assert all(
        "/dt=" in str(path) and "/hour=" in str(path) and "/model=" in str(path) for path in files
    )
    records = [
        json.loads(line)
        for path in files
        for line in gzip.decompress(path.read_bytes()).decode().splitlines()
    ]
    assert records
    assert {record["model_name"] for record in records} == {"meta-llama/Llama-3.1-8B-Instruct"}
    assert all(record["request_id"] for record in records)


@pytest.mark.slow
def test_the_commands_the_demo_prints_work_when_pasted(tmp_path: Path) -> None:
    """As after `make demo`: started as .venv/bin/vllm-sidecar from a shell where the venv is not
    activated. Each printed samples command, pasted into that shell, runs and finds this run's
    records (drift compares the run's two halves, not an empty "2 hours ago")."""
    script = Path(sys.executable).parent / "vllm-sidecar"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(
        [str(script), "demo", "--duration", "15"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.split("next, look at what was recorded:", 1)[1].splitlines()
    commands = [line.strip() for line in printed if " samples " in line]
    assert len(commands) == 3, printed
    assert all(command.startswith(f"{script} samples ") for command in commands), commands
    assert f"{script} top --sidecar 127.0.0.1:" in result.stdout
    outputs = []
    for command in commands:
        pasted = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert pasted.returncode in (0, 3), (command, pasted.stderr[-2000:])
        outputs.append(pasted.stdout)
    query, show, drift = outputs
    assert "200" in query
    assert "finish reason" in show
    baseline, current = re.findall(r"(\d+) random samples", drift)[:2]
    assert int(baseline) > 0, drift[:500]
    assert int(current) > 0, drift[:500]


def test_what_the_demo_and_its_printed_commands_write_is_ignored_by_git() -> None:
    """After `make demo` in a checkout, pasting its commands leaves `git status` clean: the sink,
    the spool and the drift report (`samples drift` writes drift-report.html by default)."""
    root = Path(__file__).parents[1]
    ignored = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    for written in ("/samples-data/", "/.demo/", "/drift-report.html"):
        assert written in ignored, written
