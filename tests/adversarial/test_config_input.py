"""Hostile or broken configuration: every bad input is one line on stderr, exit code 2 (the
systemd unit's "do not restart" code), in bounded time and memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

MEMORY_CAP = 1 << 30
"""Address-space cap of the child: a config must not need anywhere near this."""

BOMB = (
    b"alert_thresholds:\n"
    b'  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    b"  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    b"  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    b"  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    b"  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    b"  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    b"  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    b"redact_patterns: [*h]\n"
)
"""A "billion laughs" file (~400 bytes) whose values are settings the sidecar checks."""

FILES: dict[str, bytes] = {
    "yaml bomb": BOMB,
    "400-digit number": b"scrape_interval: " + b"9" * 400 + b"\n",
    "400-digit integer": b"max_body_bytes: " + b"9" * 400 + b"\n",
    "not UTF-8": b"upstream: 'http://\xff\xfe'\n",
    "duplicate keys": b"scrape_interval: 5\nscrape_interval: 7\n",
    "a huge line": b"deployment: " + b"x" * 5_000_000 + b"\n",
    "tiny batch interval": b"upload_batch_max_seconds: 1e-9\n",
    "tiny scrape interval": b"scrape_interval: 0.00001\n",
    "deep nesting": b"sample_rate_overrides: " + b"[" * 100_000 + b"\n",
}


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("case", sorted(FILES))
def test_bad_config_is_one_line_exit_2_quickly(tmp_path: Path, case: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(FILES[case])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", "--config", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
        preexec_fn=_cap_memory,
    )
    took = time.monotonic() - started
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr[-2000:]
    assert result.stdout == b""
    assert len(stderr.splitlines()) == 1, stderr[-2000:]
    assert len(stderr) < 600
    assert stderr.startswith("vllm-sidecar: invalid config: ")
    assert took < 15.0
