"""Render metrics pages the way vLLM's prometheus_client would, and parse them, for the tests.

``as_served`` uses prometheus_client's own content negotiation (``choose_encoder``, what vLLM's
``make_asgi_app`` calls with the scraper's Accept header), so an OpenMetrics page here has exactly
the upstream ``vllm_`` escaping defect.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from sidecar.scrape.parse import ExpositionError, parse_snapshot
from sidecar.snapshot import Snapshot
from tests.support import TEST_DATA

V1_PAGE = TEST_DATA / "vllm" / "v1-1model.prom"
V0_PAGE = TEST_DATA / "vllm" / "v0.6.3-multiproc.prom"
OPENMETRICS_ACCEPT = "application/openmetrics-text"
TEXT_ACCEPT = "text/plain; version=0.0.4"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
V1_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
V0_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
_WITH_CREATED = ("counter", "histogram", "summary")


class _Replay:
    """A collector that hands back fixed families, as vLLM's registry would have collected them."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def registry_from_page(page: str) -> CollectorRegistry:
    """A registry whose collection reproduces a text page, ``_created`` folded back into its family.

    The text format prints each child's ``_created`` as a separate gauge family; a live registry
    holds it inside the counter/histogram, grouped per child, which is what OpenMetrics prints.
    """
    parsed = list(text_string_to_metric_families(page))
    by_name = {family.name: family for family in parsed}
    families: list[Metric] = []
    for family in parsed:
        base = family.name.removesuffix("_created")
        if base != family.name and base in by_name and by_name[base].type in _WITH_CREATED:
            continue
        rebuilt = Metric(family.name, family.documentation, family.type)
        rebuilt.samples = list(family.samples)
        created = by_name.get(family.name + "_created")
        if created is not None and family.type in _WITH_CREATED:
            rebuilt.samples += created.samples
        children: dict[tuple[tuple[str, str], ...], int] = {}
        for sample in rebuilt.samples:
            children.setdefault(_child(sample.labels), len(children))
        rebuilt.samples.sort(key=lambda sample: children[_child(sample.labels)])
        families.append(rebuilt)
    registry = CollectorRegistry()
    registry.register(_Replay(families))
    return registry


def _child(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def as_served(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """Body and Content-Type prometheus_client's HTTP handlers answer for this Accept header."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def render(registry: CollectorRegistry, accept: str = TEXT_ACCEPT) -> tuple[bytes, str]:
    """A registry as served for the scraper's usual Accept header (text format 0.0.4)."""
    return as_served(registry, accept)


def snap(body: bytes, content_type: str | None = TEXT) -> Snapshot:
    """parse_snapshot with fixed clocks."""
    return parse_snapshot(body, content_type, timestamp=1_800_000_000.0, monotonic=42.0)


def reason_of(body: bytes, content_type: str | None = TEXT) -> str:
    """The reason a body is refused with (fails the test if it is accepted)."""
    with pytest.raises(ExpositionError) as caught:
        snap(body, content_type)
    assert str(caught.value), "every error says what went wrong"
    return caught.value.reason
