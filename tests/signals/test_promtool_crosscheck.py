"""Cross-check derive() against real Prometheus (promtool) on the same series and window.

promtool evaluates ``histogram_quantile(q, sum by (le) (rate(...[w])))`` and friends on the very
samples our snapshots carry, scraped every minute, with a restart of vLLM in the middle. Our value
is written as the expectation; when promtool disagrees it prints what it got, and the test reads
that back and requires agreement to 1e-9 (an exact match passes without any reading back).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import yaml

from sidecar.signals.derive import Signals, derive
from sidecar.signals.history import History
from sidecar.snapshot import Histogram, SeriesKey
from tests.signals.synthetic import INF, key, snapshot

PROMTOOL = "/usr/bin/promtool"
TTFT = "vllm:time_to_first_token_seconds"
EDGES = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, INF)
STEPS = 11  # samples at 0m, 1m, ... 10m
RESTART_AT = 7  # vLLM restarts between 6m and 7m: every series starts again from zero
ENGINES = ("0", "1")
REASONS = ("stop", "length", "abort", "error")


LATENCY_SHAPE = (1, 2, 4, 6, 8, 8, 6, 5, 4, 3, 2, 1, 0.5, 0.2, 0.05)
"""Mean new observations per bucket per minute: most in the middle, a thin tail to +Inf."""


def _cumulative_runs(
    rng: np.random.Generator, width: int, baseline: float, shape: tuple[float, ...] = ()
) -> np.ndarray:
    """STEPS readings of ``width`` cumulative counters that restart at RESTART_AT."""
    steps = rng.poisson(shape or (3.0,) * width, size=(STEPS, width)).astype(float)
    before = baseline + np.cumsum(steps[:RESTART_AT], axis=0)
    after = np.cumsum(steps[RESTART_AT:], axis=0)
    return np.vstack([before, after])


def _bucket_series(labels: str, le: float) -> str:
    """The exposed name of one TTFT bucket series."""
    return f'{TTFT}_bucket{{{labels},le="{"+Inf" if le == INF else repr(le)}"}}'


def _series() -> dict[str, np.ndarray]:
    """Every input series (Prometheus name with labels) -> its STEPS values."""
    rng = np.random.default_rng(1122)
    series: dict[str, np.ndarray] = {}
    for engine in ENGINES:
        labels = f'engine="{engine}",model_name="m"'
        per_bucket = _cumulative_runs(rng, len(EDGES), baseline=1000.0, shape=LATENCY_SHAPE)
        buckets = np.cumsum(per_bucket, axis=1)  # cumulative over le, as exposed
        for index, le in enumerate(EDGES):
            series[_bucket_series(labels, le)] = buckets[:, index]
        series[f"{TTFT}_count{{{labels}}}"] = buckets[:, -1]
        series[f"{TTFT}_sum{{{labels}}}"] = _cumulative_runs(rng, 1, baseline=5e4)[:, 0] * 0.37
        series[f"vllm:prompt_tokens_total{{{labels}}}"] = _cumulative_runs(rng, 1, 1e6)[:, 0] * 97
        for reason in REASONS:
            name = f'vllm:request_success_total{{{labels},finished_reason="{reason}"}}'
            series[name] = _cumulative_runs(rng, 1, baseline=1e4)[:, 0] * (
                7 if reason == "stop" else 1
            )
    return series


def _derive(series: dict[str, np.ndarray]) -> Signals:
    """Our signals at 10m from snapshots holding the same samples (no start time: multiprocess)."""
    history = History(900.0)
    for step in range(STEPS):
        histograms: dict[str, dict[SeriesKey, Histogram]] = {"ttft": {}}
        counters: dict[str, dict[SeriesKey, float]] = {"prompt_tokens": {}, "request_success": {}}
        for engine in ENGINES:
            labels = f'engine="{engine}",model_name="m"'
            buckets = tuple((le, float(series[_bucket_series(labels, le)][step])) for le in EDGES)
            histograms["ttft"][key("m", engine)] = Histogram(
                buckets=buckets,
                count=float(series[f"{TTFT}_count{{{labels}}}"][step]),
                sum=float(series[f"{TTFT}_sum{{{labels}}}"][step]),
            )
            counters["prompt_tokens"][key("m", engine)] = float(
                series[f"vllm:prompt_tokens_total{{{labels}}}"][step]
            )
            for reason in REASONS:
                name = f'vllm:request_success_total{{{labels},finished_reason="{reason}"}}'
                counters["request_success"][key("m", engine, finished_reason=reason)] = float(
                    series[name][step]
                )
        history.append(snapshot(step * 60.0, histograms=histograms, counters=counters))
    return derive(history, min_requests_for_ratio=0.0)


def _expectations(signals: Signals) -> dict[str, float]:
    """PromQL expression -> the value our derive() produced for it."""
    whole = signals.for_model("m")
    assert whole is not None
    found: dict[str, float | None] = {}
    for window in ("1m", "5m"):
        for q in ("0.5", "0.95", "0.99"):
            found[f"histogram_quantile({q}, sum by (le) (rate({TTFT}_bucket[{window}])))"] = (
                whole.latency["ttft"][window][q]
            )
        found[f"sum(rate({TTFT}_sum[{window}])) / sum(rate({TTFT}_count[{window}]))"] = (
            whole.latency_mean["ttft"][window]
        )
        found[f"sum(rate(vllm:prompt_tokens_total[{window}]))"] = whole.prompt_tokens_per_second[
            window
        ]
        found[
            f'sum(rate(vllm:request_success_total{{finished_reason=~"error|abort"}}[{window}]))'
            f" / sum(rate(vllm:request_success_total[{window}]))"
        ] = whole.error_ratio[window]
    for engine in ENGINES:
        per_engine = signals.for_model("m", engine)
        assert per_engine is not None
        found[
            f'histogram_quantile(0.99, sum by (le) (rate({TTFT}_bucket{{engine="{engine}"}}[5m])))'
        ] = per_engine.latency["ttft"]["5m"]["0.99"]
    assert all(value is not None for value in found.values()), found
    return {expr: float(value) for expr, value in found.items() if value is not None}


def _run_promtool(tmp_path: Path, series: dict[str, np.ndarray], expected: dict[str, float]) -> str:
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": " ".join(repr(float(v)) for v in values)}
                    for name, values in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "10m",
                        "exp_samples": [{"labels": "{}", "value": value}],
                    }
                    for expr, value in expected.items()
                ],
            }
        ],
    }
    path = tmp_path / "crosscheck_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout + done.stderr


def test_derive_matches_promtool(tmp_path: Path) -> None:
    """Quantiles, mean, rate and error ratio equal Prometheus' own evaluation to 1e-9."""
    series = _series()
    prompt = series['vllm:prompt_tokens_total{engine="0",model_name="m"}']
    assert prompt[-1] < prompt[STEPS - 6], "the 5m window must span the restart"
    expected = _expectations(_derive(series))
    assert len(set(expected.values())) == len(expected), "values too alike to tell bugs apart"
    output = _run_promtool(tmp_path, series, expected)
    if "SUCCESS" in output:
        return  # every value matched promtool exactly
    got = {
        json.loads(expr): float(value)
        for expr, value in re.findall(
            r'expr: (".*?"), time: .*?\n\s*exp: .*?\n\s*got: \{\} (\S+)', output
        )
    }
    assert got, (
        output
    )  # a failure we cannot read back is a real failure (bad input, promtool error)
    for expr, prometheus_value in got.items():
        ours = expected[expr]
        assert abs(ours - prometheus_value) <= 1e-9 * max(1.0, abs(prometheus_value)), (
            f"{expr}: ours {ours!r}, Prometheus {prometheus_value!r}"
        )
