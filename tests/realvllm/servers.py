"""The session's real vLLM servers: the ``real_vllm`` factory fixture, registered in the root
``tests/conftest.py`` so every test area (the realvllm tier, the alerting drills) shares ONE
server per flag set instead of each conftest starting its own (see ``tests/realvllm/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from sidecar.realvllm.install import RealVllmEnv, real_vllm_env
from sidecar.realvllm.launch import DEFAULT_FLAGS, VllmServer, start_server
from sidecar.realvllm.model import model_dir

MODEL_SEED = 0


class RealVllmFactory(Protocol):
    def __call__(self, *flags: str, fresh: bool = False, seed: int = MODEL_SEED) -> VllmServer: ...


def installed_real_vllm(seed: int = MODEL_SEED) -> tuple[RealVllmEnv, Path]:
    """The install and the model of ``seed`` (``make real-vllm`` builds seeds 0 and 1); fails
    (never skips) naming ``make real-vllm``."""
    env = real_vllm_env()
    model = model_dir(env, seed)
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
    installed_real_vllm()
    shared: dict[tuple[int, tuple[str, ...]], VllmServer] = {}
    private: list[VllmServer] = []

    def get(*flags: str, fresh: bool = False, seed: int = MODEL_SEED) -> VllmServer:
        key = (seed, tuple(flags) or DEFAULT_FLAGS)
        if not fresh and key in shared:
            if shared[key].healthy():
                return shared[key]
            shared.pop(key).stop()  # a test left it dead: replace it
        workdir = tmp_path_factory.mktemp("vllm")
        env, model = installed_real_vllm(seed)
        server = start_server(env, model, workdir, key[1])
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
