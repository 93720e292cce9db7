"""``--api-key``: 401 ``{"error":"Unauthorized"}`` on /v1 and /v2 paths only, like vLLM."""

from __future__ import annotations

import aiohttp
import pytest
from openai import AsyncOpenAI, AuthenticationError

from sidecar.emulator import Emulator
from tests.emulator.conftest import EmulatorFactory

KEYS = ("key-one", "key-two")


@pytest.fixture
async def guarded(start_emulator: EmulatorFactory) -> Emulator:
    """An emulator that accepts two API keys."""
    return await start_emulator(api_keys=KEYS)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic key-one", "Bearer", "key-one"],
    ids=["missing", "wrong-key", "wrong-scheme", "no-token", "no-scheme"],
)
async def test_bad_credentials_get_exact_401(
    guarded: Emulator, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    """Every bad Authorization header gets 401 and exactly ``{"error":"Unauthorized"}``."""
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v2/x")):
        async with http.request(method, f"{guarded.url}{path}", headers=headers) as response:
            assert response.status == 401
            assert await response.read() == b'{"error":"Unauthorized"}'


async def test_any_configured_key_works_and_scheme_is_case_insensitive(
    guarded: Emulator, http: aiohttp.ClientSession
) -> None:
    """Both keys are accepted, with ``Bearer`` in any case."""
    for header in ("Bearer key-one", "bearer key-two", "BEARER key-one"):
        async with http.get(
            f"{guarded.url}/v1/models", headers={"Authorization": header}
        ) as response:
            assert response.status == 200


async def test_unguarded_paths_need_no_key(guarded: Emulator, http: aiohttp.ClientSession) -> None:
    """/metrics, /health and /version never ask for the key; OPTIONS is never guarded."""
    for path in ("/metrics", "/health", "/version"):
        async with http.get(f"{guarded.url}{path}") as response:
            assert response.status == 200
    async with http.options(f"{guarded.url}/v1/models") as response:
        assert response.status != 401


async def test_sdk_with_key_succeeds_and_without_raises(guarded: Emulator) -> None:
    """The openai SDK with a configured key works; with another key: AuthenticationError."""
    async with AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="key-two", max_retries=0) as sdk:
        reply = await sdk.completions.create(model=guarded.options.model, prompt="hi", max_tokens=2)
        assert reply.choices[0].text
    async with AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="nope", max_retries=0) as sdk:
        with pytest.raises(AuthenticationError):
            await sdk.models.list()


async def test_v06_profile_guards_only_v1(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """Older releases guarded /v1 only: a /v2 path is a plain 404 without a key."""
    emu = await start_emulator(api_keys=KEYS, metrics_profile="v0.6")
    async with http.get(f"{emu.url}/v2/anything") as response:
        assert response.status == 404
    async with http.get(f"{emu.url}/v1/models") as response:
        assert response.status == 401
