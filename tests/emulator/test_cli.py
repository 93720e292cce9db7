"""``vllm-sidecar emulate`` as a real process: URL line, flags, clean exit on SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.emulator.cli import parse_listen
from tests.support import Processes, free_port, wait_for_port


@pytest.mark.slow
def test_emulate_serves_with_flags_and_stops_on_sigterm(
    processes: Processes, tmp_path: Path
) -> None:
    """Flags reach the emulator (DP, model, profile, pool); SIGTERM exits 0 after one URL line."""
    port = free_port()
    log = tmp_path / "emulate.log"
    child = processes.sidecar(
        "emulate",
        f"--listen=127.0.0.1:{port}",
        "--model=tiny/model",
        "--data-parallel=2",
        "--num-gpu-blocks=999",
        "--max-model-len=8192",
        "--metrics-profile=current",
        "--seed=3",
        "--no-enable-prefix-caching",
        log=log,
    )
    wait_for_port(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        page = response.read().decode()
    assert 'engine="1",model_name="tiny/model"' in page
    assert 'num_gpu_blocks="999"' in page
    assert 'enable_prefix_caching="False"' in page
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 0
    lines = log.read_text().splitlines()
    assert any(f"http://127.0.0.1:{port}" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed=0"], "speed must be > 0"),
        (["--listen=nowhere"], "HOST:PORT"),
        (["--data-parallel=0", "--kv-pressure=2"], "data_parallel must be 1..64; kv_pressure"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid option values and a malformed --listen are refused before anything starts."""
    assert main(["emulate", *args]) == 2
    assert message in capsys.readouterr().err


def test_parse_listen_accepts_ipv6_and_rejects_garbage() -> None:
    """HOST:PORT with optional brackets; no port or a bad port is a ValueError."""
    assert parse_listen("[::1]:8000") == ("::1", 8000)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("8000", ":8000", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)
