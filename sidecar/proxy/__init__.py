"""OpenAI-compatible pass-through with per-request timing.

Public API: :func:`build_proxy_app` (an aiohttp app for every vLLM path), :class:`ProxyServer`
(that app on ``settings.listen`` with start/stop and graceful drain), :class:`NoSampling` (a
sampler that keeps nothing). Run standalone with ``python -m sidecar.proxy`` (settings from
``VLLM_SIDECAR_*`` / ``--config``).
"""

from sidecar.proxy.server import (
    PROXY_HANDLER,
    RUNNER_OPTIONS,
    ProxyServer,
    build_proxy_app,
    make_upstream_pool,
)
from sidecar.sampling.exchange import NoSampling

__all__ = [
    "PROXY_HANDLER",
    "RUNNER_OPTIONS",
    "NoSampling",
    "ProxyServer",
    "build_proxy_app",
    "make_upstream_pool",
]
