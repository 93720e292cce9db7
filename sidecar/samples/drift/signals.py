"""The signals a reviewer cares about, each with its test and its effect size.

| signal | over | test | effect |
|---|---|---|---|
| output length (chars), completion tokens | ok responses | KS | PSI (baseline deciles) |
| finish-reason mix | ok responses | chi-square | PSI over reasons (Cramér's V shown) |
| cut off by ``length``, empty, refusal opening | ok responses | two-proportion | share change |
| invalid JSON | ok responses that asked for JSON | two-proportion | change in share |
| TTFT, end-to-end latency | ok responses | KS | PSI |
| errors | all responses | two-proportion | change in share |

Each signal is computed independently here; :mod:`~sidecar.samples.drift.analyse` adjusts the
p-values for multiple testing and decides the verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from sidecar.samples.drift import stats
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.observe import Observations

Kind = Literal["distribution", "proportion", "mix", "semantic"]
Status = Literal["drift", "ok", "insufficient"]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal: what it is called, what it measures, how it is shown."""

    name: str
    title: str
    kind: Kind
    unit: str
    population: str


@dataclass(slots=True)
class SideData:
    """One window's side of a signal, kept for the plots."""

    values: stats.FloatArray = field(default_factory=lambda: np.empty(0))
    weights: stats.FloatArray = field(default_factory=lambda: np.empty(0))
    share: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    shares: dict[str, float] = field(default_factory=dict)
    n_eff: float = 0.0
    n: int = 0


@dataclass(slots=True)
class SignalResult:
    """A signal's numbers and verdict."""

    spec: SignalSpec
    baseline: SideData
    current: SideData
    baseline_text: str = ""
    current_text: str = ""
    change_text: str = ""
    test: str = ""
    p_value: float = 1.0
    p_adjusted: float = 1.0
    effect_name: str = ""
    effect: float = 0.0
    effect_threshold: float = 0.0
    large_enough: bool = False
    """Whether the effect reaches the configured minimum (set with the effect)."""
    small_because: str = ""
    """Why the effect is too small to count, for the note."""
    extra: dict[str, float] = field(default_factory=dict)
    status: Status = "ok"
    note: str = ""

    @property
    def enough_data(self) -> bool:
        return self.status != "insufficient"


Evaluator = Callable[[Observations, Observations, DriftConfig], SignalResult]


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.0f}"


def _relative(before: float, after: float) -> float:
    """``|after / before - 1|``; infinite when something appears from zero."""
    if math.isnan(before) or math.isnan(after):
        return 0.0
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return abs(after / before - 1)


def _percent(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{share * 100:.1f}%"


def _distribution(
    spec: SignalSpec, pick: Callable[[Observations], tuple[stats.FloatArray, Mask]]
) -> Evaluator:
    def evaluate(base: Observations, cur: Observations, config: DriftConfig) -> SignalResult:
        sides = []
        for obs in (base, cur):
            values, mask = pick(obs)
            keep = mask & ~np.isnan(values)
            weights = obs.weight[keep]
            sides.append(
                SideData(values[keep], weights, n_eff=stats.kish_n(weights), n=int(keep.sum()))
            )
        result = SignalResult(spec, sides[0], sides[1], test="KS", effect_name="PSI")
        result.effect_threshold = config.min_psi
        if min(sides[0].n_eff, sides[1].n_eff) < config.min_samples:
            return _insufficient(result, config)
        b, c = sides
        statistic, result.p_value = stats.weighted_ks(b.values, b.weights, c.values, c.weights)
        result.effect = stats.distribution_psi(
            b.values, b.weights, c.values, c.weights, config.psi_bins
        )
        b_med, b_p90 = stats.weighted_quantiles(b.values, b.weights, (0.5, 0.9))
        c_med, c_p90 = stats.weighted_quantiles(c.values, c.weights, (0.5, 0.9))
        moved = max(_relative(b_med, c_med), _relative(b_p90, c_p90))
        result.extra = {"ks_d": statistic, "relative_change": moved}
        result.large_enough = (
            result.effect >= config.min_psi and moved >= config.min_relative_change
        )
        if result.effect < config.min_psi:
            result.small_because = f"PSI {result.effect:.3f} is below {config.min_psi:g}"
        elif not result.large_enough:
            result.small_because = (
                f"median and p90 moved {moved * 100:.0f}%, less than "
                f"{config.min_relative_change * 100:g}%"
            )
        result.baseline_text = (
            f"median {_number(b_med, spec.unit)} · p90 {_number(b_p90, spec.unit)}"
        )
        result.current_text = (
            f"median {_number(c_med, spec.unit)} · p90 {_number(c_p90, spec.unit)}"
        )
        if b_med > 0:
            result.change_text = f"median {(c_med / b_med - 1) * 100:+.0f}%"
        else:
            result.change_text = f"median {_number(b_med, spec.unit)} → {_number(c_med, spec.unit)}"
        return result

    return evaluate


def _proportion(spec: SignalSpec, pick: Callable[[Observations], tuple[Mask, Mask]]) -> Evaluator:
    def evaluate(base: Observations, cur: Observations, config: DriftConfig) -> SignalResult:
        sides = []
        for obs in (base, cur):
            population, events = pick(obs)
            weights = obs.weight[population]
            share, n_eff = stats.weighted_share(events[population], weights)
            sides.append(
                SideData(
                    share=share,
                    interval=stats.wilson_interval(share, n_eff),
                    n_eff=n_eff,
                    n=int(population.sum()),
                )
            )
        result = SignalResult(spec, sides[0], sides[1], test="2-prop", effect_name="Δ share")
        result.effect_threshold = config.min_share_change
        if min(sides[0].n_eff, sides[1].n_eff) < config.min_samples:
            return _insufficient(result, config)
        b, c = sides
        result.p_value = stats.two_proportion_p(b.share, b.n_eff, c.share, c.n_eff)
        result.effect = abs(c.share - b.share)
        result.large_enough = result.effect >= config.min_share_change
        result.small_because = (
            f"the share moved {result.effect * 100:.1f} pp, less than "
            f"{config.min_share_change * 100:g} pp"
        )
        result.baseline_text = _percent(b.share)
        result.current_text = _percent(c.share)
        result.change_text = f"{(c.share - b.share) * 100:+.1f} pp"
        return result

    return evaluate


def _finish_mix(spec: SignalSpec) -> Evaluator:
    def evaluate(base: Observations, cur: Observations, config: DriftConfig) -> SignalResult:
        sides = []
        for obs in (base, cur):
            weights = obs.weight[obs.ok]
            shares = stats.category_shares(obs.finish_reason[obs.ok], weights)
            sides.append(SideData(shares=shares, n_eff=stats.kish_n(weights), n=int(obs.ok.sum())))
        result = SignalResult(spec, sides[0], sides[1], test="χ²", effect_name="PSI")
        result.effect_threshold = config.min_psi
        if min(sides[0].n_eff, sides[1].n_eff) < config.min_samples:
            return _insufficient(result, config)
        b, c = sides
        result.p_value, cramers_v, result.effect = stats.mix_test(
            b.shares, b.n_eff, c.shares, c.n_eff
        )
        result.extra = {"cramers_v": cramers_v}
        result.large_enough = result.effect >= config.min_psi
        result.small_because = f"PSI {result.effect:.3f} is below {config.min_psi:g}"
        result.baseline_text = _mix_text(b.shares)
        result.current_text = _mix_text(c.shares)
        labels = set(b.shares) | set(c.shares)
        moved = max(labels, key=lambda label: abs(c.shares.get(label, 0) - b.shares.get(label, 0)))
        delta = c.shares.get(moved, 0.0) - b.shares.get(moved, 0.0)
        result.change_text = f"{moved} {delta * 100:+.1f} pp · V={cramers_v:.2f}"
        return result

    return evaluate


def _mix_text(shares: dict[str, float]) -> str:
    top = sorted(shares.items(), key=lambda item: -item[1])[:3]
    return " · ".join(f"{label} {share * 100:.0f}%" for label, share in top)


def _insufficient(result: SignalResult, config: DriftConfig) -> SignalResult:
    result.status = "insufficient"
    result.p_value = result.p_adjusted = math.nan
    result.baseline_text = f"n={result.baseline.n}"
    result.current_text = f"n={result.current.n}"
    result.note = (
        f"effective n {result.baseline.n_eff:.0f} / {result.current.n_eff:.0f}, "
        f"need {config.min_samples} in each window"
    )
    return result


_OUTPUT_CHARS = SignalSpec(
    "output_chars", "Output length (characters)", "distribution", "chars", "ok responses"
)
_TOKENS = SignalSpec(
    "completion_tokens",
    "Output length (tokens)",
    "distribution",
    "tokens",
    "ok responses with usage",
)
_FINISH = SignalSpec("finish_reasons", "Finish-reason mix", "mix", "", "ok responses")
_LENGTH = SignalSpec("length_cutoff", "Cut off by length", "proportion", "", "ok responses")
_EMPTY = SignalSpec("empty_output", "Empty outputs", "proportion", "", "ok responses")
_REFUSAL = SignalSpec("refusals", "Refusal-style openings", "proportion", "", "ok responses")
_JSON = SignalSpec(
    "json_invalid",
    "Invalid JSON (JSON requested)",
    "proportion",
    "",
    "ok responses that asked for JSON",
)
_TTFT = SignalSpec("ttft", "Time to first token", "distribution", "s", "ok responses")
_E2E = SignalSpec("e2e_latency", "End-to-end latency", "distribution", "s", "ok responses")
_ERRORS = SignalSpec("errors", "Server errors", "proportion", "", "all responses")
_ABORTS = SignalSpec("client_aborts", "Client aborts (499)", "proportion", "", "all responses")

SIGNALS: tuple[tuple[SignalSpec, Evaluator], ...] = (
    (_OUTPUT_CHARS, _distribution(_OUTPUT_CHARS, lambda o: (o.output_chars, o.ok))),
    (_TOKENS, _distribution(_TOKENS, lambda o: (o.completion_tokens, o.ok))),
    (_FINISH, _finish_mix(_FINISH)),
    (_LENGTH, _proportion(_LENGTH, lambda o: (o.ok, o.finish_reason == "length"))),
    (_EMPTY, _proportion(_EMPTY, lambda o: (o.ok, o.empty))),
    (_REFUSAL, _proportion(_REFUSAL, lambda o: (o.ok, o.refusal))),
    (_JSON, _proportion(_JSON, lambda o: (o.ok & o.json_requested, ~o.json_valid))),
    (_TTFT, _distribution(_TTFT, lambda o: (o.ttft, o.ok))),
    (_E2E, _distribution(_E2E, lambda o: (o.e2e, o.ok))),
    (_ERRORS, _proportion(_ERRORS, lambda o: (np.ones(o.size, dtype=bool), o.error))),
    (_ABORTS, _proportion(_ABORTS, lambda o: (np.ones(o.size, dtype=bool), o.client_abort))),
)
