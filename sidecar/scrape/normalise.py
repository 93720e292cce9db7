"""Parsed metric families -> a :class:`~sidecar.snapshot.Snapshot` in canonical names.

The parser front end (``parse``) hands over prometheus_client ``Metric`` families with vLLM's
``vllm:`` names already restored. This module picks, for each canonical metric, the newest exposed
family the page carries, reads its samples, checks them, and keys them by model / engine / extra
labels. Rules worth knowing:

* Samples without a ``model_name`` label are skipped: every per-model vLLM series has it, and the
  families that lack it (``cache_config_info``, ``lora_requests_info``) are read separately.
* A family whose type does not fit the canonical metric (say a gauge where a counter was expected)
  is not read; the next older exposed name is tried, else the metric is absent from the snapshot.
  ``present`` still lists it, because it is on the page.
* Series that differ only in labels the catalogue does not key on (a label a newer vLLM added)
  collapse onto one key: counters and histograms are summed (the extra label partitions events),
  gauges keep the maximum (safe for the KV-usage fraction, which alerts fire on).
* Strict where a wrong number would mislead, silent where vLLM is merely different: histograms
  whose buckets decrease, lack ``+Inf``, disagree with ``_count``, lack ``_sum`` or hold NaN or
  negative counts, negative or NaN counters, and duplicated series raise ``inconsistent``; only
  the families the sidecar reads are checked, so an odd third-party family never costs a scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from sidecar.scrape.catalogue import (
    BY_EXPOSED,
    CACHE_CONFIG_FAMILY,
    CATALOGUE,
    PROCESS_START_FAMILY,
    CanonicalMetric,
    Kind,
    exposed_preference,
)
from sidecar.scrape.errors import ExpositionError
from sidecar.snapshot import (
    Histogram,
    SeriesKey,
    Snapshot,
    engine_order,
    shared_key,
    shared_names,
)

VLLM_PREFIX = "vllm:"
INFO_LABELS = ("num_gpu_blocks", "block_size")
"""The ``cache_config_info`` labels copied into ``Snapshot.info`` (capacity for forecasts)."""

_COMPATIBLE_TYPES: dict[Kind, frozenset[str]] = {
    Kind.GAUGE: frozenset({"gauge", "unknown"}),
    Kind.COUNTER: frozenset({"counter"}),
    Kind.HISTOGRAM: frozenset({"histogram"}),
}
_HAS_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
"""Types whose ``_created`` samples the text format prints as a separate ``<name>_created`` gauge"""

_LabelItems = tuple[tuple[str, str], ...]
_V = TypeVar("_V", float, Histogram)


@dataclass(slots=True)
class _Family:
    """All samples printed under one family name (the text format may repeat a family)."""

    type: str
    samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class _HistogramParts:
    """One histogram series while its samples are being collected."""

    buckets: dict[float, float] = field(default_factory=dict)
    count: float | None = None
    sum: float | None = None


def snapshot_from_families(
    families: Iterable[Metric], *, timestamp: float, monotonic: float
) -> Snapshot:
    """Normalise parsed families into a Snapshot; ExpositionError('inconsistent') on bad data."""
    by_name = _group(families)
    gauges: dict[str, dict[SeriesKey, float]] = {}
    counters: dict[str, dict[SeriesKey, float]] = {}
    histograms: dict[str, dict[SeriesKey, Histogram]] = {}
    for metric in CATALOGUE:
        readable = frozenset(
            name
            for name in metric.exposed
            if name in by_name and by_name[name].type in _COMPATIBLE_TYPES[metric.kind]
        )
        exposed = exposed_preference(metric, readable)
        if exposed is None:
            continue
        family = by_name[exposed]
        if metric.kind is Kind.GAUGE:
            _store(gauges, metric.name, _read_gauges(metric, exposed, family))
        elif metric.kind is Kind.COUNTER:
            _store(counters, metric.name, _read_counters(metric, exposed, family))
        else:
            _store(histograms, metric.name, _read_histograms(metric, exposed, family))
    return Snapshot(
        timestamp=timestamp,
        monotonic=monotonic,
        gauges=gauges,
        counters=counters,
        histograms=histograms,
        start_time=_start_time(by_name),
        present=_present(by_name),
        info=_cache_info(by_name.values()),
    )


def _store(table: dict[str, dict[SeriesKey, _V]], name: str, values: dict[SeriesKey, _V]) -> None:
    """Keep only metrics with at least one series, so "absent" always means "no key"."""
    if values:
        table[name] = values


def _group(families: Iterable[Metric]) -> dict[str, _Family]:
    """Merge families printed more than once under the same name; refuse type clashes we read.

    Native-histogram samples (experimental in prometheus_client; vLLM exposes none) carry no plain
    value and are dropped here.
    """
    by_name: dict[str, _Family] = {}
    for metric in families:
        samples = [sample for sample in metric.samples if sample.native_histogram is None]
        known = by_name.get(metric.name)
        if known is None:
            by_name[metric.name] = _Family(metric.type, samples)
        elif known.type == metric.type:
            known.samples.extend(samples)
        elif metric.name in BY_EXPOSED:
            msg = f"{metric.name} is exposed as both {known.type} and {metric.type}"
            raise ExpositionError("inconsistent", msg)
    return by_name


def _present(by_name: Mapping[str, _Family]) -> frozenset[str]:
    """vLLM family names as the text format spells them, so both formats give the same set.

    The text format's separate ``<name>_created`` gauges are left out (OpenMetrics keeps them
    inside their family), and an OpenMetrics ``info`` family gets back its ``_info`` suffix.
    """
    names = set()
    for name, family in by_name.items():
        if not name.startswith(VLLM_PREFIX):
            continue
        base = name.removesuffix("_created")
        if base != name and base in by_name and by_name[base].type in _HAS_CREATED:
            continue
        names.add(name + "_info" if family.type == "info" else name)
    return shared_names(frozenset(names))


def _series_key(metric: CanonicalMetric, labels: Mapping[str, str]) -> SeriesKey | None:
    model = labels.get("model_name")
    if model is None:
        return None
    extra = tuple(sorted((name, labels[name]) for name in metric.extra_labels if name in labels))
    return shared_key(model, labels.get("engine") or None, extra)


def _label_items(labels: Mapping[str, str], *, without: str = "") -> _LabelItems:
    return tuple(sorted((k, v) for k, v in labels.items() if k != without))


def _describe(family: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{family}{{{inner}}}"


def _check_unique(seen: set[tuple[str, _LabelItems]], sample: Sample, family: str) -> None:
    identity = (sample.name, _label_items(sample.labels))
    if identity in seen:
        msg = f"duplicate series {_describe(sample.name, sample.labels)} in {family}"
        raise ExpositionError("inconsistent", msg)
    seen.add(identity)


def _read_gauges(metric: CanonicalMetric, family: str, data: _Family) -> dict[SeriesKey, float]:
    values: dict[SeriesKey, float] = {}
    seen: set[tuple[str, _LabelItems]] = set()
    for sample in data.samples:
        if sample.name != family:
            continue
        _check_unique(seen, sample, family)
        key = _series_key(metric, sample.labels)
        if key is None:
            continue
        value = _number(sample.value)
        values[key] = max(values[key], value) if key in values else value
    return values


def _read_counters(metric: CanonicalMetric, family: str, data: _Family) -> dict[SeriesKey, float]:
    values: dict[SeriesKey, float] = {}
    seen: set[tuple[str, _LabelItems]] = set()
    total = family + "_total"
    for sample in data.samples:
        if sample.name != total:
            continue  # _created and anything else a counter family may carry
        _check_unique(seen, sample, family)
        key = _series_key(metric, sample.labels)
        if key is None:
            continue
        value = _number(sample.value)
        if math.isnan(value) or value < 0:
            msg = f"counter {_describe(total, sample.labels)} is {value}"
            raise ExpositionError("inconsistent", msg)
        values[key] = values.get(key, 0.0) + value
    return values


def _read_histograms(
    metric: CanonicalMetric, family: str, data: _Family
) -> dict[SeriesKey, Histogram]:
    parts: dict[_LabelItems, _HistogramParts] = {}
    seen: set[tuple[str, _LabelItems]] = set()
    for sample in data.samples:
        suffix = sample.name[len(family) :] if sample.name.startswith(family) else ""
        if suffix not in ("_bucket", "_count", "_sum") or "model_name" not in sample.labels:
            continue
        _check_unique(seen, sample, family)
        series = parts.setdefault(_label_items(sample.labels, without="le"), _HistogramParts())
        value = _number(sample.value)
        if suffix == "_bucket":
            edge = _bucket_edge(family, sample)
            if edge in series.buckets:
                msg = f"bucket le={edge} repeated in {_describe(family, sample.labels)}"
                raise ExpositionError("inconsistent", msg)
            series.buckets[edge] = value
        elif suffix == "_count":
            series.count = value
        else:
            series.sum = value
    values: dict[SeriesKey, Histogram] = {}
    for label_items, series in parts.items():
        labels = dict(label_items)
        histogram = _finish_histogram(family, labels, series)
        key = _series_key(metric, labels)
        if key is None:  # unreachable: series without model_name were skipped above
            continue
        known = values.get(key)
        values[key] = histogram if known is None else _merge(family, labels, known, histogram)
    return values


def _number(value: float) -> float:
    """A sample value as float (the text parser keeps ints exact; float() of a huge one fails)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _bucket_edge(family: str, sample: Sample) -> float:
    raw = sample.labels.get("le")
    try:
        edge = float(raw) if raw is not None else math.nan
    except ValueError:
        edge = math.nan
    if math.isnan(edge):
        msg = f"bucket without a numeric le in {_describe(family, sample.labels)}"
        raise ExpositionError("inconsistent", msg)
    return edge


def _finish_histogram(family: str, labels: Mapping[str, str], parts: _HistogramParts) -> Histogram:
    where = _describe(family, labels)
    edges = tuple(sorted(parts.buckets))
    if not edges or not math.isinf(edges[-1]) or edges[-1] < 0:
        raise ExpositionError("inconsistent", f"histogram {where} has no +Inf bucket")
    counts = [parts.buckets[edge] for edge in edges]
    previous = 0.0
    for edge, cumulative in zip(edges, counts, strict=True):
        if math.isnan(cumulative) or cumulative < 0:
            msg = f"histogram {where} bucket le={edge} holds {cumulative}"
            raise ExpositionError("inconsistent", msg)
        if cumulative < previous:
            msg = f"histogram {where} buckets decrease at le={edge} ({previous} -> {cumulative})"
            raise ExpositionError("inconsistent", msg)
        previous = cumulative
    total = counts[-1]
    count = total if parts.count is None else parts.count
    if math.isnan(count) or not math.isclose(count, total, rel_tol=1e-9):
        msg = f"histogram {where} _count {count} differs from its +Inf bucket {total}"
        raise ExpositionError("inconsistent", msg)
    if parts.sum is None or math.isnan(parts.sum):
        raise ExpositionError("inconsistent", f"histogram {where} has no usable _sum")
    return Histogram.from_columns(edges, counts, count=count, sum=parts.sum)


def _merge(family: str, labels: Mapping[str, str], left: Histogram, right: Histogram) -> Histogram:
    """Sum two series that collapse onto one key; only exact when their bucket edges agree."""
    if left.edges != right.edges:
        msg = f"series of {family} collapse onto one key but have different buckets near {labels}"
        raise ExpositionError("inconsistent", msg)
    counts = [a + b for a, b in zip(left.counts, right.counts, strict=True)]
    return Histogram.from_columns(
        left.edges, counts, count=left.count + right.count, sum=left.sum + right.sum
    )


def _start_time(by_name: Mapping[str, _Family]) -> float | None:
    family = by_name.get(PROCESS_START_FAMILY)
    if family is None:
        return None
    for sample in family.samples:
        if sample.name == PROCESS_START_FAMILY and math.isfinite(_number(sample.value)):
            return _number(sample.value)
    return None


def _cache_info(families: Iterable[_Family]) -> dict[str, str]:
    """Capacity labels of ``vllm:cache_config_info`` from the lowest engine.

    Matched by sample name, so both today's gauge and the V0 ``Info('vllm:cache_config')`` (an
    ``info`` family in OpenMetrics) are found.
    """
    candidates = [
        sample.labels
        for family in families
        for sample in family.samples
        if sample.name == CACHE_CONFIG_FAMILY
    ]
    if not candidates:
        return {}
    first = min(candidates, key=lambda labels: engine_order(labels.get("engine", "")))
    return {name: first[name] for name in INFO_LABELS if name in first}
