"""Test doubles and helpers shared by the proxy tests."""

from __future__ import annotations

import threading

from sidecar.metrics import REGISTRY
from sidecar.proxy import ProxyServer
from sidecar.sampling.budget import MemoryBudget
from sidecar.sampling.exchange import Exchange
from tests.proxy.fake_vllm import FakeVLLM


class RecordingSampler:
    """A test double of the ``Sampler`` protocol that remembers every call."""

    def __init__(self, *, sample: bool = False, fail: bool = False) -> None:
        self.sample = sample
        self.fail = fail
        self.decisions: list[tuple[str, str | None]] = []
        self.offers: list[tuple[Exchange, bool]] = []
        self.offered = threading.Event()
        self.memory = MemoryBudget(64 << 20)
        """Never released: a test keeps every offered exchange."""

    def head_decision(self, request_id: str, model: str | None) -> bool:
        self.decisions.append((request_id, model))
        if self.fail:
            raise RuntimeError("sampler broke")
        return self.sample

    def offer(self, exchange: Exchange, *, sampled: bool) -> None:
        self.offers.append((exchange, sampled))
        self.offered.set()
        if self.fail:
            raise RuntimeError("sampler broke")


class Proxied:
    """A running proxy, its sampler and the fake vLLM behind it."""

    def __init__(self, server: ProxyServer, sampler: RecordingSampler, fake: FakeVLLM) -> None:
        self.server = server
        self.sampler = sampler
        self.fake = fake

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def sample_value(name: str, **labels: str) -> float:
    """Current value of one series of the sidecar registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
