"""Security at the door: path spellings that dodged the key check, door rejections and the
sampler's keep-budget."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import Settings
from sidecar.proxy import ProxyServer
from sidecar.proxy.paths import canonical_target, guard_view
from tests.adversarial.raw_upstream import RawUpstream
from tests.proxy.helpers import RecordingSampler

KEY = "sk-team-a-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
SPELLINGS = [
    "//v1/models",
    "/./v1/models",
    "/x/../v1/models",
    "/%2e/v1/models",
    "/V1/models",
    "/%76%31/models",
    "/v1/./models",
    "///v1//chat/completions",
    "/%2Fv1/models",
]


@pytest.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    raw = RawUpstream()
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
async def keyed_proxy(tmp_path: Path, upstream: RawUpstream) -> AsyncIterator[ProxyServer]:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"team-a: {KEY}\n")
    keys.chmod(0o600)
    upstream_key = tmp_path / "upstream.key"
    upstream_key.write_text(UPSTREAM_KEY)
    upstream_key.chmod(0o600)
    settings = Settings(
        upstream=upstream.url,
        listen="127.0.0.1:0",
        api_keys_file=keys,
        upstream_api_key_file=upstream_key,
    )
    server = ProxyServer(settings, RecordingSampler())
    await server.start()
    yield server
    await server.stop()


def raw_request(port: int, target: str, headers: str = "") -> bytes:
    """Send a request line exactly as given (no client library normalises it) and read all."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("target", SPELLINGS)
async def test_no_spelling_of_a_guarded_path_reaches_vllm_without_a_key(
    keyed_proxy: ProxyServer, upstream: RawUpstream, target: str
) -> None:
    """Every spelling a server might route to /v1/... needs a key; none reaches vLLM."""
    import asyncio

    answer = await asyncio.to_thread(raw_request, keyed_proxy.port, target)
    assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400")), answer[:200]
    assert upstream.requests == []


@pytest.mark.parametrize("target", SPELLINGS)
async def test_with_a_key_vllm_receives_the_canonical_path_that_was_checked(
    keyed_proxy: ProxyServer, upstream: RawUpstream, target: str
) -> None:
    import asyncio

    answer = await asyncio.to_thread(
        raw_request, keyed_proxy.port, target, f"Authorization: Bearer {KEY}\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    (seen,) = upstream.requests
    assert seen.target == canonical_target(target)
    assert guard_view(seen.target).startswith("/v1")
    assert seen.header("Authorization") == f"Bearer {UPSTREAM_KEY}"


def test_targets_that_cannot_be_normalised_are_refused() -> None:
    assert canonical_target("/../v1/models") is None
    assert canonical_target("/%zz/v1") is None
    assert canonical_target("v1/models") is None
    assert canonical_target("/v1/chat/completions?x=/../%2e") == "/v1/chat/completions?x=/../%2e"


async def test_unauthenticated_requests_never_spend_the_samplers_error_budget(
    tmp_path: Path, upstream: RawUpstream
) -> None:
    """A keyless flood is answered 401 and not offered to the sampler at all."""
    import aiohttp

    keys = tmp_path / "keys.yaml"
    keys.write_text(f"team-a: {KEY}\n")
    keys.chmod(0o600)
    sampler = RecordingSampler()
    server = ProxyServer(
        Settings(upstream=upstream.url, listen="127.0.0.1:0", api_keys_file=keys), sampler
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.post(
                    f"http://127.0.0.1:{server.port}/v1/chat/completions", json={"model": "m"}
                ) as response:
                    assert response.status == 401
            async with http.post(
                f"http://127.0.0.1:{server.port}/v1/chat/completions",
                json={"model": "m"},
                headers={"Authorization": f"Bearer {KEY}"},
            ) as response:
                assert response.status == 200
    finally:
        await server.stop()
    offered: list[Any] = [exchange.status for exchange, _ in sampler.offers]
    assert offered == [200]


def test_weak_or_writable_key_files_are_refused_unless_allowed(tmp_path: Path) -> None:
    """A 1-character key or a keys file others can write stops start-up with one clear line;
    ``allow_insecure_keys`` accepts them (with a warning)."""
    from sidecar.config import ConfigError
    from sidecar.proxy.keys import load_key_ring

    short = tmp_path / "short.yaml"
    short.write_text("team: k\n")
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_key_ring(short)
    assert load_key_ring(short, allow_insecure=True) is not None
    writable = tmp_path / "writable.yaml"
    writable.write_text(f"team: {KEY}\n")
    writable.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        load_key_ring(writable)
    assert load_key_ring(writable, allow_insecure=True) is not None
