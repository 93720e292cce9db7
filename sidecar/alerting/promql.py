"""Small PromQL builders: selectors with configurable matchers, bucket-edge matchers, numbers.

Kept apart from the catalogue so every rule spells selectors, groupings and numbers the same way
(a single misspelt ``_total`` is how other vLLM alert packs came to never fire).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sidecar.scrape.catalogue import BY_NAME, CanonicalMetric, Kind


def selector(name: str, *matchers: str) -> str:
    """``name{m1,m2}`` from the non-empty matchers, or the bare name."""
    present = [matcher for matcher in matchers if matcher]
    return f"{name}{{{','.join(present)}}}" if present else name


def spellings(sample: str) -> tuple[str, str]:
    """``vllm:x`` -> (``vllm:x``, ``vllm_x``): as vLLM exposes it, and as OpenMetrics escapes it.

    vLLM's prometheus_client answers an OpenMetrics scrape (Prometheus 2.x asks for one by
    default) with underscore escaping, so the same series arrives as ``vllm_kv_cache_usage_perc``
    there and as ``vllm:kv_cache_usage_perc`` with the classic text format.
    """
    if not sample.startswith("vllm:"):
        raise ValueError(f"not a vLLM sample name: {sample!r}")
    return sample, "vllm_" + sample.removeprefix("vllm:")


def each_spelling(template: Callable[[str], str], sample: str) -> str:
    """``(template(vllm:x) or template(vllm_x))``: one vLLM sample in either spelling.

    The one home for this, used by the rule generator and the dashboards. ``template`` gets a
    plain metric name, so ``rate()`` and friends never see both spellings in one range vector:
    a ``{__name__=~"vllm[:_]x"}`` selector would, whenever both are in the window (a scrape that
    switched between OpenMetrics and the text format, or a target scraped both ways), and fail
    with "vector cannot contain metrics with the same labelset". ``or`` keeps the left side's
    label sets, so a series is never counted twice: while both spellings are in the window the
    classic one decides (over its part of the window: exact for ratios and quantiles, a rate
    reads low for at most one window after a switch), then the escaped one alone.
    """
    return "(" + " or ".join(template(name) for name in spellings(sample)) + ")"


def either_spelling(sample: str) -> str:
    """A ``__name__`` regex matching a vLLM sample under ``vllm:`` and ``vllm_``.

    Only for selectors that keep the metric name (presence checks under an aggregation); a range
    function over it fails when both spellings are present (see :func:`each_spelling`).
    """
    return "vllm[:_]" + spellings(sample)[0].removeprefix("vllm:")


def number(value: float) -> str:
    """A threshold as PromQL reads it: ``0.85``, ``600``, ``0.144`` (no float noise)."""
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite, got {value}")
    return f"{value:.10g}"


def le_matcher(edge: float) -> str:
    """Match one bucket edge however the exposition spelt it (``20``, ``20.0``).

    Prometheus 2.x keeps the ``le`` string as scraped and prometheus_client writes ``20.0``,
    while other clients write ``20``; a plain ``le="20"`` would silently match nothing.
    """
    if edge == int(edge):
        return f'le=~"{int(edge)}(\\\\.0+)?"'
    text = repr(edge).replace(".", "\\\\.")
    return f'le=~"{text}0*"'


def exposed_sample(metric: CanonicalMetric, exposed: str, suffix: str = "") -> str:
    """The sample name Prometheus stores for one exposed family (counters gain ``_total``)."""
    if metric.kind is Kind.COUNTER:
        return f"{exposed}_total"
    return f"{exposed}{suffix}"


def folded(canonical: str, template: Callable[[str], str], suffix: str = "") -> str:
    """``template(sample)`` for each vLLM name of ``canonical``, newest first, joined by ``or``.

    ``or`` keeps the left side's series where both exist (vLLM 0.9.2-0.11 expose old and new
    names side by side), so a value is never counted twice, and old vLLM builds still feed the
    same recorded series.
    """
    metric = BY_NAME[canonical]
    parts = [template(exposed_sample(metric, exposed, suffix)) for exposed in metric.exposed]
    if len(parts) == 1:
        return parts[0]
    return "\nor\n".join(parts)


def presence_regex(canonical: str) -> str:
    """A ``__name__`` regex matching every sample name that proves ``canonical`` is exposed."""
    metric = BY_NAME[canonical]
    suffix = "_count" if metric.kind is Kind.HISTOGRAM else ""
    return "|".join(
        either_spelling(exposed_sample(metric, exposed, suffix)) for exposed in metric.exposed
    )


def aggregate(op: str, labels: str, inner: str) -> str:
    """``op by (labels) (inner)``, or ``op(inner)`` when ``labels`` is empty."""
    return f"{op} by ({labels}) ({inner})" if labels else f"{op}({inner})"


def joined(*labels: str) -> str:
    """Label lists joined for ``by (...)``/``on (...)``, skipping empty parts."""
    return ", ".join(label for label in labels if label)
