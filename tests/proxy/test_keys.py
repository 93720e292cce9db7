"""Inbound API keys: loading, checking, labelling, and which Authorization vLLM gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.config import ConfigError, Settings
from sidecar.proxy import build_proxy_app
from sidecar.proxy.keys import KeyRing, load_key_ring, load_upstream_key, requires_key
from tests.proxy.conftest import ProxyFactory
from tests.proxy.fake_vllm import MODEL
from tests.proxy.helpers import RecordingSampler, sample_value

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
TEAM_A_KEY = "sk-team-a-0123456789"
TEAM_B_KEY = "sk-team-b-9876543210"


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    """A YAML key file with two named keys."""
    path = tmp_path / "keys.yaml"
    path.write_text(f"team-a: {TEAM_A_KEY}\nteam-b: '{TEAM_B_KEY}'\n")
    return path


@pytest.fixture
def upstream_key_file(tmp_path: Path) -> Path:
    """vLLM's --api-key, with the trailing newline editors add."""
    path = tmp_path / "vllm.key"
    path.write_text("vllm-secret\n")
    return path


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


def test_key_file_yaml_and_json_load_with_names(tmp_path: Path, keys_file: Path) -> None:
    """YAML and JSON mappings both load; names keep file order."""
    ring = load_key_ring(keys_file)
    assert ring is not None
    assert ring.names == ("team-a", "team-b")
    json_file = tmp_path / "keys.json"
    json_file.write_text('{"ci": "ci-key-0123456789", "web": "web-key-0123456789"}')
    ring = load_key_ring(json_file)
    assert ring is not None
    assert ring.names == ("ci", "web")
    assert load_key_ring(None) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "non-empty mapping"),
        ("- just\n- a list\n", "non-empty mapping"),
        ("team-a: [sk-in-a-list]\n", "must be a non-empty string"),
        ("team-a: '   '\n", "must be a non-empty string"),
        ("'bad name!': sk-secret-value\n", "must be 1-64 characters"),
        ("a: sk-secret-value-long\nb: sk-secret-value-long\n", "are the same key"),
        ("a: 'sk-secret-value\n", "not valid YAML or JSON"),
    ],
)
def test_bad_key_file_is_a_clear_error_that_hides_keys(
    tmp_path: Path, content: str, message: str
) -> None:
    """Each kind of bad file names the problem and the file, never a key."""
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_key_ring(path)
    assert "sk-secret-value" not in str(caught.value)
    assert "sk-in-a-list" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    """A key file that does not exist names the setting and the path."""
    with pytest.raises(ConfigError, match=r"api_keys_file: cannot read .*nope\.yaml"):
        load_key_ring(tmp_path / "nope.yaml")


def test_bad_key_file_fails_the_app_factory(tmp_path: Path) -> None:
    """build_proxy_app reads key files up front, so a bad one stops start-up."""
    path = tmp_path / "vllm.key"
    path.write_text("\n")
    with pytest.raises(ConfigError, match=r"upstream_api_key_file: .* is empty"):
        build_proxy_app(Settings(upstream_api_key_file=path), RecordingSampler())


def test_upstream_key_file_rules(tmp_path: Path, upstream_key_file: Path) -> None:
    """The upstream key is stripped; two words or none is an error."""
    assert load_upstream_key(upstream_key_file) == "vllm-secret"
    assert load_upstream_key(None) is None
    two = tmp_path / "two.key"
    two.write_text("one\ntwo\n")
    with pytest.raises(ConfigError, match="one key on one line"):
        load_upstream_key(two)


def test_key_ring_identifies_by_name() -> None:
    """The bearer token maps to its key's name; anything else to None."""
    ring = KeyRing({"team-a": TEAM_A_KEY, "team-b": TEAM_B_KEY})
    assert ring.identify(f"Bearer {TEAM_B_KEY}") == "team-b"
    assert ring.identify(f"bearer {TEAM_A_KEY}") == "team-a"
    assert ring.identify(f"Bearer {TEAM_A_KEY}x") is None
    assert ring.identify(TEAM_A_KEY) is None
    assert ring.identify(f"Basic {TEAM_A_KEY}") is None
    assert ring.identify("Bearer ") is None
    assert ring.identify(None) is None


def test_guarded_paths_mirror_vllm() -> None:
    """Keys guard /v1 and /v2 (and vLLM's other API prefixes), never OPTIONS or ops routes."""
    assert requires_key("POST", "/v1/chat/completions")
    assert requires_key("POST", "/v2/rerank")
    assert not requires_key("OPTIONS", "/v1/chat/completions")
    for path in ("/health", "/metrics", "/tokenize", "/version", "/ping"):
        assert not requires_key("GET", path)


async def test_requests_without_a_valid_key_get_401_and_never_reach_vllm(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, keys_file: Path
) -> None:
    """Missing or wrong keys: OpenAI-shaped 401; vLLM sees nothing; the sampler is not offered
    them (rejections at the door are not vLLM errors and must not spend its keep-budget)."""
    proxied = await make_proxy(api_keys_file=keys_file)
    url = f"{proxied.url}/v1/chat/completions"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TEAM_A_KEY}):
        async with http.post(url, json=CHAT, headers=headers) as response:
            assert response.status == 401
            assert response.headers["X-Request-Id"]
            error = (await response.json())["error"]
            assert error["type"] == "AuthenticationError"
            assert error["code"] == 401
    assert proxied.fake.seen == []
    assert proxied.sampler.offers == []


async def test_valid_key_is_labelled_by_name_and_not_forwarded(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, keys_file: Path
) -> None:
    """A valid key passes; its name labels the metrics; vLLM never sees the client's key."""
    proxied = await make_proxy(api_keys_file=keys_file)
    labels = {"model_name": MODEL, "key": "team-b", "status": "200"}
    before = sample_value(
        "vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels
    )
    async with http.post(
        f"{proxied.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {TEAM_B_KEY}"},
    ) as response:
        assert response.status == 200
    assert "Authorization" not in proxied.fake.seen[-1].headers
    assert proxied.sampler.offers[-1][0].key_name == "team-b"
    after = sample_value(
        "vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels
    )
    assert after == before + 1


async def test_upstream_key_replaces_client_key(
    make_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
    keys_file: Path,
    upstream_key_file: Path,
) -> None:
    """With both key files, vLLM gets the configured upstream key, not the client's."""
    proxied = await make_proxy(api_keys_file=keys_file, upstream_api_key_file=upstream_key_file)
    async with http.post(
        f"{proxied.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {TEAM_A_KEY}"},
    ) as response:
        assert response.status == 200
    assert proxied.fake.seen[-1].headers.getall("Authorization") == ["Bearer vllm-secret"]


async def test_open_routes_need_no_key(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, keys_file: Path
) -> None:
    """/health and /tokenize pass without a key, as on vLLM, and carry no client key upstream."""
    proxied = await make_proxy(api_keys_file=keys_file)
    async with http.get(
        f"{proxied.url}/health", headers={"Authorization": "Bearer whatever"}
    ) as response:
        assert response.status == 200
    assert "Authorization" not in proxied.fake.seen[-1].headers
    async with http.post(f"{proxied.url}/tokenize", json={"prompt": "x"}) as response:
        assert response.status == 200
    assert proxied.sampler.offers[-1][0].key_name is None


async def test_without_inbound_keys_client_authorization_is_forwarded(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """Keys off: the client's Authorization reaches vLLM untouched (vLLM may check it)."""
    proxied = await make_proxy()
    async with http.post(
        f"{proxied.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer client-key"},
    ) as response:
        assert response.status == 200
    assert proxied.fake.seen[-1].headers["Authorization"] == "Bearer client-key"


async def test_without_inbound_keys_upstream_key_still_replaces(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, upstream_key_file: Path
) -> None:
    """Keys off but an upstream key configured: vLLM gets the configured key."""
    proxied = await make_proxy(upstream_api_key_file=upstream_key_file)
    async with http.post(
        f"{proxied.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer client-key"},
    ) as response:
        assert response.status == 200
    assert proxied.fake.seen[-1].headers.getall("Authorization") == ["Bearer vllm-secret"]
