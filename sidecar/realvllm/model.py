"""The tiny model directory for a seed, built once beside the venv by the venv's own python."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sidecar.realvllm.install import InstallError, RealVllmEnv

BUILDER = Path(__file__).with_name("tiny_model.py")


def model_dir(env: RealVllmEnv, seed: int) -> Path:
    """Where the model for ``seed`` lives (complete once it holds ``built.json``)."""
    return env.root / "models" / f"tiny-llama-seed-{seed}"


def ensure_model(env: RealVllmEnv, seed: int = 0) -> Path:
    """Build the model and tokenizer for ``seed`` unless already built; offline, no hub."""
    out = model_dir(env, seed)
    if (out / "built.json").is_file():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(  # noqa: S603 - our own script, run by the venv's python
        [str(env.python), str(BUILDER), str(partial), "--seed", str(seed)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    if result.returncode != 0:
        raise InstallError(f"could not build the tiny model:\n{result.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)  # the finished directory appears whole, so a crash leaves no half model
    return out
