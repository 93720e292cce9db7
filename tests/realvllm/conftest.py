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
may kill (it is stopped at session end too). The flags follow the fixed ones (model, served name
``tiny-llama``, 127.0.0.1, free port, ``--enforce-eager``); always size the KV cache.

``backend`` parametrises a test over the emulator and real vLLM with the same served model name
and context length, so one check runs on both; for another configuration parametrise ``kind``
with ``KINDS`` and call ``await make_backend(kind, Config(vllm_flags, emulator_options))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from sidecar.emulator import Emulator, EmulatorOptions, run_emulator
from sidecar.realvllm.install import RealVllmEnv, real_vllm_env
from sidecar.realvllm.launch import DEFAULT_FLAGS, SERVED_MODEL, VllmServer, start_server
from sidecar.realvllm.model import model_dir

MODEL_SEED = 0
MAX_MODEL_LEN = 2048


class RealVllmFactory(Protocol):
    def __call__(self, *flags: str, fresh: bool = False) -> VllmServer: ...


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


def installed_real_vllm() -> tuple[RealVllmEnv, Path]:
    """The install and model the tier needs; fails (never skips) naming ``make real-vllm``."""
    env = real_vllm_env()
    model = model_dir(env, MODEL_SEED)
    if not env.is_ready() or not (model / "built.json").is_file():
        pytest.fail(
            f"the real vLLM is not installed at {env.root} (or its model is missing): "
            "run `make real-vllm` first (`make test` does it)",
            pytrace=False,
        )
    return env, model


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVllmFactory]:
    """Factory of real vLLM servers, one per distinct flag set per session (see module doc)."""
    env, model = installed_real_vllm()
    shared: dict[tuple[str, ...], VllmServer] = {}
    private: list[VllmServer] = []

    def get(*flags: str, fresh: bool = False) -> VllmServer:
        key = tuple(flags) or DEFAULT_FLAGS
        if not fresh and key in shared:
            if shared[key].healthy():
                return shared[key]
            shared.pop(key).stop()  # a test left it dead: replace it
        workdir = tmp_path_factory.mktemp("vllm")
        server = start_server(env, model, workdir, key)
        if fresh:
            private.append(server)
        else:
            shared[key] = server
        return server

    try:
        yield get
    finally:
        for server in [*shared.values(), *private]:
            server.stop()


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
