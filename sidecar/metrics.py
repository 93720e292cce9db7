"""The sidecar's own Prometheus registry: the one module-level global the house rules allow.

Each part declares its metrics beside its code, registered here, all prefixed ``vllm_sidecar_``
with base units and ``_total`` on counters. vLLM's own series are never re-exported under
vLLM's names.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Gauge

from sidecar import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Gauge(
    "vllm_sidecar_build_info",
    "Always 1; labels say which sidecar build is running.",
    ["version", "python_version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)
