"""Every series the alerts read exists under that exact name (the never-firing-alert trap)."""

from __future__ import annotations

import importlib
import re

import pytest

from sidecar.alerting.inputs import READ_FAMILIES, read_registry
from sidecar.alerting.rules_sidecar import CLIENT_CLOSED as COUNTED
from sidecar.alerting.rules_sidecar import NO_MODEL as UNMODELLED
from sidecar.metrics import REGISTRY
from sidecar.proxy.flight import CLIENT_CLOSED as WRITTEN
from sidecar.proxy.metrics import NO_MODEL
from tests.alerting.promtool_cases import RULES_FILE

EXPORTERS = (
    "sidecar.scrape.scraper",
    "sidecar.proxy.metrics",
    "sidecar.sampling.metrics",
    "sidecar.alerting.notify",
    "sidecar.alerting.engine",
)
"""The modules that declare the sidecar's own metrics in the shared registry."""


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Sample names the sidecar's registry can expose once every exporting module is loaded.

    Built from families and their types, so a labelled counter nobody has incremented yet
    (no samples) still counts.
    """
    for module in EXPORTERS:
        importlib.import_module(module)
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_in_process_rules_read_families_the_sidecar_exports(exported: set[str]) -> None:
    """Each registry family the engine reads is declared by the scraper, proxy or sampler."""
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in exported}
    assert families >= READ_FAMILIES, sorted(READ_FAMILIES - families)
    assert read_registry(REGISTRY).value("vllm_sidecar_upstream_up") is not None


def test_rule_file_queries_only_exported_sidecar_series(exported: set[str]) -> None:
    """Every vllm_sidecar_* name in the generated PromQL is a sample the sidecar exposes."""
    queried = set(re.findall(r"\bvllm_sidecar_[a-z_]+", RULES_FILE.read_text()))
    assert len(queried) >= 8, queried
    assert queried <= exported, sorted(queried - exported)


def test_abort_alert_spells_the_labels_the_proxy_writes() -> None:
    """VLLMClientAbortsHigh spells the proxy's "client went away" status and "no model" label
    itself (so the rule generator does not import the proxy); a change on either side would
    silently count nothing, or count health checks as users."""
    assert str(WRITTEN) == COUNTED
    assert NO_MODEL == UNMODELLED
