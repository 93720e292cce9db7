"""Paired signals: the same prompt answered by the baseline and by the candidate.

| signal | over pairs | test | effect | regression when |
|---|---|---|---|---|
| output length (chars, tokens) | both ok | Wilcoxon (log ratio) | typical ratio - 1 | either way |
| TTFT, end-to-end latency | both ok | Wilcoxon (log ratio) | typical ratio - 1 | slower |
| finished naturally (``stop``) | both ok | McNemar (exact) | net share of flips | fewer stop |
| cut off by ``length``, empty, refusal | both ok | McNemar (exact) | net share of flips | more |
| invalid JSON | both ok, JSON asked | McNemar (exact) | net share of flips | more |
| errors | all pairs | McNemar (exact) | net share of flips | more |

Pairing removes the prompt mix from the comparison, so paired tests see smaller changes than
drift's two-sample tests with the same data. The "typical ratio" is ``exp(median(log ratio))``;
the net share of flips is ``(bad flips - good flips) / pairs``. Thresholds are drift's
(:class:`~sidecar.samples.drift.config.DriftConfig`): ``min_relative_change`` for ratios,
``min_share_change`` for flips, ``min_samples`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from sidecar.samples.compare.pairs import Pairs
from sidecar.samples.drift.config import DriftConfig

Kind = Literal["ratio", "flip", "similarity"]
Worse = Literal["up", "down", "either"]
Status = Literal["regression", "improved", "ok", "insufficient"]
FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PairedSpec:
    """One paired signal."""

    name: str
    title: str
    kind: Kind
    worse: Worse
    """Which direction of change is a regression."""
    population: str


@dataclass(slots=True)
class PairedResult:
    """A paired signal's numbers and verdict."""

    spec: PairedSpec
    n: int = 0
    test: str = ""
    p_value: float = math.nan
    p_adjusted: float = math.nan
    effect: float = 0.0
    """Ratio signals: typical ratio - 1; flip signals: net share of bad flips."""
    effect_threshold: float = 0.0
    worse_flips: int = 0
    better_flips: int = 0
    baseline_text: str = ""
    candidate_text: str = ""
    change_text: str = ""
    status: Status = "ok"
    note: str = ""
    log_ratios: FloatArray = field(default_factory=lambda: np.empty(0))

    @property
    def enough_data(self) -> bool:
        return self.status != "insufficient"

    @property
    def large_enough(self) -> bool:
        if self.spec.kind == "similarity":
            return self.effect < 0  # the median itself is below the floor
        return abs(self.effect) >= self.effect_threshold

    @property
    def direction_is_worse(self) -> bool:
        if self.spec.worse == "either":
            return True
        return (self.effect > 0) == (self.spec.worse == "up")


Evaluator = Callable[[Pairs, DriftConfig], PairedResult]


def wilcoxon_p(differences: FloatArray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zero differences dropped; 1.0 if all are zero)."""
    from scipy import stats

    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 1.0
    return float(stats.wilcoxon(nonzero, zero_method="wilcox").pvalue)


def mcnemar_p(worse: int, better: int) -> float:
    """Exact McNemar test: the discordant pairs split 50/50 when nothing changed."""
    from scipy import stats

    if worse + better == 0:
        return 1.0
    return float(stats.binomtest(worse, worse + better, 0.5).pvalue)


def _ratio(spec: PairedSpec, pick: Callable[[Pairs], tuple[FloatArray, FloatArray]]) -> Evaluator:
    def evaluate(pairs: Pairs, config: DriftConfig) -> PairedResult:
        base, cand = pick(pairs)
        both_ok = pairs.baseline.ok & pairs.candidate.ok & ~np.isnan(base) & ~np.isnan(cand)
        result = PairedResult(spec, n=int(both_ok.sum()), test="Wilcoxon")
        result.effect_threshold = config.min_relative_change
        if result.n < config.min_samples:
            return _insufficient(result, config)
        offset = 1.0 if spec.name in ("output_chars", "completion_tokens") else 1e-6
        logs = np.log((cand[both_ok] + offset) / (base[both_ok] + offset))
        result.log_ratios = logs
        result.p_value = wilcoxon_p(logs)
        result.effect = float(math.exp(float(np.median(logs))) - 1)
        b_med, c_med = float(np.median(base[both_ok])), float(np.median(cand[both_ok]))
        unit = "s" if spec.name in ("ttft", "e2e_latency") else ""
        result.baseline_text = f"median {_number(b_med, unit)}"
        result.candidate_text = f"median {_number(c_med, unit)}"
        result.change_text = f"typical ratio {result.effect + 1:.2f}"
        return result

    return evaluate


def _flip(spec: PairedSpec, pick: Callable[[Pairs], tuple[Mask, Mask, Mask]]) -> Evaluator:
    """``pick`` gives (population, baseline event, candidate event); the event is the bad one."""

    def evaluate(pairs: Pairs, config: DriftConfig) -> PairedResult:
        population, base, cand = pick(pairs)
        result = PairedResult(spec, n=int(population.sum()), test="McNemar")
        result.effect_threshold = config.min_share_change
        if result.n < config.min_samples:
            return _insufficient(result, config)
        worse = int((population & ~base & cand).sum())
        better = int((population & base & ~cand).sum())
        result.worse_flips, result.better_flips = worse, better
        result.p_value = mcnemar_p(worse, better)
        result.effect = (worse - better) / result.n
        b_share = float(base[population].mean())
        c_share = float(cand[population].mean())
        result.baseline_text = f"{b_share * 100:.1f}%"
        result.candidate_text = f"{c_share * 100:.1f}%"
        result.change_text = f"{worse} worse, {better} better flips ({result.effect * 100:+.1f} pp)"
        return result

    return evaluate


def _number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.0f}"


def _insufficient(result: PairedResult, config: DriftConfig) -> PairedResult:
    result.status = "insufficient"
    result.note = f"{result.n} pairs, need {config.min_samples}"
    return result


def _both_ok(pairs: Pairs) -> Mask:
    mask: Mask = pairs.baseline.ok & pairs.candidate.ok
    return mask


_CHARS = PairedSpec("output_chars", "Output length (characters)", "ratio", "either", "both ok")
_TOKENS = PairedSpec("completion_tokens", "Output length (tokens)", "ratio", "either", "both ok")
_TTFT = PairedSpec("ttft", "Time to first token", "ratio", "up", "both ok")
_E2E = PairedSpec("e2e_latency", "End-to-end latency", "ratio", "up", "both ok")
_STOP = PairedSpec("finish_reasons", "Finish-reason flips (stop)", "flip", "up", "both ok")
_LENGTH = PairedSpec("length_cutoff", "Cut off by length", "flip", "up", "both ok")
_EMPTY = PairedSpec("empty_output", "Empty answers", "flip", "up", "both ok")
_REFUSAL = PairedSpec("refusals", "Refusal-style openings", "flip", "up", "both ok")
_JSON = PairedSpec("json_invalid", "Invalid JSON", "flip", "up", "both ok, JSON asked")
_ERRORS = PairedSpec("errors", "Errors", "flip", "up", "all pairs")

PAIRED_SIGNALS: tuple[tuple[PairedSpec, Evaluator], ...] = (
    (_CHARS, _ratio(_CHARS, lambda p: (p.baseline.output_chars, p.candidate.output_chars))),
    (
        _TOKENS,
        _ratio(_TOKENS, lambda p: (p.baseline.completion_tokens, p.candidate.completion_tokens)),
    ),
    (
        _STOP,
        _flip(
            _STOP,
            lambda p: (
                _both_ok(p),
                p.baseline.finish_reason != "stop",
                p.candidate.finish_reason != "stop",
            ),
        ),
    ),
    (
        _LENGTH,
        _flip(
            _LENGTH,
            lambda p: (
                _both_ok(p),
                p.baseline.finish_reason == "length",
                p.candidate.finish_reason == "length",
            ),
        ),
    ),
    (_EMPTY, _flip(_EMPTY, lambda p: (_both_ok(p), p.baseline.empty, p.candidate.empty))),
    (_REFUSAL, _flip(_REFUSAL, lambda p: (_both_ok(p), p.baseline.refusal, p.candidate.refusal))),
    (
        _JSON,
        _flip(
            _JSON,
            lambda p: (
                _both_ok(p) & p.baseline.json_requested,
                ~p.baseline.json_valid,
                ~p.candidate.json_valid,
            ),
        ),
    ),
    (_TTFT, _ratio(_TTFT, lambda p: (p.baseline.ttft, p.candidate.ttft))),
    (_E2E, _ratio(_E2E, lambda p: (p.baseline.e2e, p.candidate.e2e))),
    (
        _ERRORS,
        _flip(
            _ERRORS,
            lambda p: (np.ones(p.size, dtype=bool), p.baseline.error, p.candidate.error),
        ),
    ),
)
SEMANTIC = PairedSpec(
    "semantic_similarity", "Answer meaning (cosine similarity)", "similarity", "down", "both ok"
)


def semantic_signal(pairs: Pairs, config: DriftConfig, floor: float) -> PairedResult:
    """Is the typical pair less similar than ``floor``? (see :mod:`..semantic.similarity`)."""
    from sidecar.samples.semantic.similarity import below_floor_p

    result = PairedResult(SEMANTIC, test="sign test")
    similarity = pairs.similarity if pairs.similarity is not None else np.empty(0)
    values = similarity[~np.isnan(similarity)]
    result.n = int(values.size)
    result.effect_threshold = 0.0
    if result.n < config.min_samples:
        return _insufficient(result, config)
    median = float(np.median(values))
    result.p_value = below_floor_p(values, floor)
    result.effect = median - floor
    result.baseline_text = f"floor {floor:g}"
    result.candidate_text = f"median {median:.3f} · p10 {float(np.quantile(values, 0.1)):.3f}"
    result.change_text = f"{float(np.mean(values < floor)) * 100:.0f}% of pairs below the floor"
    result.log_ratios = values
    return result
