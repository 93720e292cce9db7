"""Real processes: ``kill -9`` then restart replays the spool; SIGTERM flushes under load."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sidecar.sampling.pipeline import SamplingPipeline
from tests.conftest import Processes
from tests.sampling.conftest import MotoS3
from tests.sampling.helpers import records_of, settings
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]


def child_env(tmp_path: Path, moto: MotoS3, **extra: str) -> dict[str, str]:
    """Settings for the child process, the production way: VLLM_SIDECAR_* variables."""
    return {
        "VLLM_SIDECAR_SAMPLE_RATE": "1.0",
        "VLLM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
        "VLLM_SIDECAR_SAMPLES_DIR": str(tmp_path / "samples"),
        "VLLM_SIDECAR_POD_NAME": "pod-a",
        "VLLM_SIDECAR_S3_BUCKET": moto.bucket,
        "VLLM_SIDECAR_S3_PREFIX": "team/samples",
        "VLLM_SIDECAR_S3_REGION": "us-east-1",
        "VLLM_SIDECAR_S3_ENDPOINT_URL": moto.url,
        "VLLM_SIDECAR_UPLOAD_RETRY_INITIAL_SECONDS": "0.05",
        "VLLM_SIDECAR_UPLOAD_RETRY_MAX_SECONDS": "0.3",
        "PYTHONPATH": str(REPO),
        **extra,
    }


def wait_for_file(path: Path, child: object, timeout: float = 30.0) -> None:
    """Block until ``path`` exists (or the child died)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert getattr(child, "poll")() is None, "child exited early"  # noqa: B009
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.slow
async def test_kill_9_then_restart_replays_the_spool(
    tmp_path: Path, moto_s3: MotoS3, processes: Processes
) -> None:
    """Records spooled by a process killed with SIGKILL (S3 down) reach S3 after a restart."""
    moto_s3.stop()
    result = tmp_path / "result.json"
    child = processes.start(
        [sys.executable, "-m", "tests.sampling.child", "spool-and-hang", "40", str(result)],
        env=child_env(tmp_path, moto_s3, VLLM_SIDECAR_UPLOAD_BATCH_MAX_RECORDS="15"),
        cwd=REPO,
    )
    wait_for_file(result, child)
    assert json.loads(result.read_text())["spool_records"] == 40
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert any(p.suffix == ".open" for p in (tmp_path / "spool").iterdir()), "a torn open segment"

    moto_s3.start()
    restarted = SamplingPipeline(
        settings(
            tmp_path,
            s3_bucket=moto_s3.bucket,
            s3_prefix="team/samples",
            s3_region="us-east-1",
            s3_endpoint_url=moto_s3.url,
        )
    )
    await restarted.start()
    await wait_until(lambda: restarted.status()["spool_records"] == 0, within=20)
    await restarted.stop(grace=5.0)
    arrived = Counter(r["request_id"] for r in records_of(moto_s3.objects()))
    assert set(arrived) == {f"req-{n:04d}" for n in range(40)}
    assert max(arrived.values()) == 1


@pytest.mark.slow
def test_sigterm_under_load_flushes_within_grace(
    tmp_path: Path, moto_s3: MotoS3, processes: Processes
) -> None:
    """SIGTERM mid-load: everything offered before it is in S3 when the process exits."""
    result = tmp_path / "result.json"
    child = processes.start(
        [sys.executable, "-m", "tests.sampling.child", "load-until-sigterm", "10", str(result)],
        # Long batch age: without the SIGTERM flush most records would still be in the spool.
        env=child_env(tmp_path, moto_s3, VLLM_SIDECAR_UPLOAD_BATCH_MAX_SECONDS="600"),
        cwd=REPO,
    )
    wait_for_file(Path(f"{result}.ready"), child)
    time.sleep(0.3)
    sent_at = time.monotonic()
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=15) == 0
    assert time.monotonic() - sent_at < 10.0
    report = json.loads(result.read_text())
    assert report["spool_records"] == 0
    arrived = Counter(r["request_id"] for r in records_of(moto_s3.objects()))
    assert set(arrived) == {f"req-{n:06d}" for n in range(report["offered"])}
    assert max(arrived.values()) == 1
