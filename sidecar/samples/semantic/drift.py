"""``drift --semantic``: did what users ask change, did what the model answers change?

Two signals, each a permutation MMD test (:mod:`.twosample`) on sentence embeddings of one window
against the other: **prompts** (the users ask different things) and **answers** (the model
answers differently). Reading them together tells the two apart: answers moving while prompts
stay put points at the model; both moving points at the traffic. They form their own Holm family
of two (the shape signals keep theirs), are unweighted (every sampled record counts once), and
use at most ``MAX_TEXTS`` random records per window so the CPU model stays quick.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from sidecar.samples.dataset import open_dataset
from sidecar.samples.drift.analyse import DriftResult
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.signals import SideData, SignalResult, SignalSpec
from sidecar.samples.drift.stats import holm
from sidecar.samples.prompts import load_request, prompt_text
from sidecar.samples.semantic.embed import Embedder
from sidecar.samples.semantic.twosample import shift_test
from sidecar.samples.windows import Window

MAX_TEXTS = 1000
TEXT_SQL = """
SELECT request, response_text, status, error FROM samples
WHERE sample_reason = 'random' AND {where}
"""
PROMPTS = SignalSpec(
    "semantic_prompts", "Prompt meaning (embeddings)", "semantic", "", "all requests"
)
ANSWERS = SignalSpec(
    "semantic_answers", "Answer meaning (embeddings)", "semantic", "", "ok, non-empty answers"
)
SEMANTIC_SIGNAL_NAMES = (PROMPTS.name, ANSWERS.name)


def window_texts(connection: Any, window: Window) -> tuple[list[str], list[str]]:
    """The prompts and the (ok, non-empty) answers of one window."""
    where, params = window.sql_filter()
    prompts: list[str] = []
    answers: list[str] = []
    rows = connection.execute(TEXT_SQL.format(where=where), params).fetchall()
    for request, text, status, error in rows:
        prompts.append(prompt_text(load_request(request)))
        if int(status or 0) < 400 and not error and text:
            answers.append(str(text))
    return prompts, answers


def _subsample(texts: list[str], seed: int) -> list[str]:
    if len(texts) <= MAX_TEXTS:
        return texts
    return random.Random(seed).sample(texts, MAX_TEXTS)  # noqa: S311 - a sample, not a secret


def shift_signal(
    spec: SignalSpec,
    baseline: list[str],
    current: list[str],
    config: DriftConfig,
    embedder: Embedder,
) -> SignalResult:
    """One semantic signal, before the Holm adjustment."""
    result = SignalResult(
        spec,
        SideData(n=len(baseline), n_eff=float(len(baseline))),
        SideData(n=len(current), n_eff=float(len(current))),
        test="MMD perm.",
        effect_name="shift",
    )
    result.effect_threshold = config.min_semantic_shift
    if min(len(baseline), len(current)) < config.min_samples:
        result.status = "insufficient"
        result.p_value = result.p_adjusted = float("nan")
        result.note = f"n {len(baseline)} / {len(current)}, need {config.min_samples} in each"
        return result
    vectors_b = embedder.embed(_subsample(baseline, 1))
    vectors_c = embedder.embed(_subsample(current, 2))
    test = shift_test(vectors_b, vectors_c)
    result.p_value = test.p_value
    result.effect = test.effect
    result.large_enough = test.effect >= config.min_semantic_shift
    result.small_because = (
        f"only {test.effect * 100:.2f}% of the variance lies between the windows, "
        f"less than {config.min_semantic_shift * 100:g}%"
    )
    similarity = float(vectors_b.mean(axis=0) @ vectors_c.mean(axis=0))
    norms = float(np.linalg.norm(vectors_b.mean(axis=0)) * np.linalg.norm(vectors_c.mean(axis=0)))
    result.baseline_text = f"n={len(baseline)}"
    result.current_text = f"n={len(current)}"
    result.change_text = (
        f"{test.effect * 100:.1f}% of variance between windows; "
        f"centre cosine {similarity / norms if norms else 0.0:.3f}"
    )
    return result


def semantic_signals(
    connection: Any,
    baseline: Window,
    current: Window,
    config: DriftConfig,
    embedder: Embedder,
) -> list[SignalResult]:
    """Both semantic signals, Holm-adjusted together, with their verdicts."""
    base_prompts, base_answers = window_texts(connection, baseline)
    cur_prompts, cur_answers = window_texts(connection, current)
    results = [
        shift_signal(PROMPTS, base_prompts, cur_prompts, config, embedder),
        shift_signal(ANSWERS, base_answers, cur_answers, config, embedder),
    ]
    judge(results, config)
    return results


def judge(results: list[SignalResult], config: DriftConfig) -> None:
    """Holm over the judged semantic signals, then the effect floor."""
    judged = [result for result in results if result.enough_data]
    for result, adjusted in zip(judged, holm([r.p_value for r in judged]), strict=True):
        result.p_adjusted = adjusted
        significant = adjusted < config.alpha
        if significant and result.large_enough:
            result.status = "drift"
        elif significant:
            result.note = f"significant, but {result.small_because}"


def add_semantic_signals(
    result: DriftResult,
    root: Path,
    baseline: Window,
    current: Window,
    embedder: Embedder,
) -> None:
    """Append both semantic signals to a drift result (``drift --semantic``)."""
    dataset = open_dataset(root, baseline.time.union(current.time))
    try:
        result.signals += semantic_signals(
            dataset.connection, baseline, current, result.config, embedder
        )
    finally:
        dataset.close()
