"""Render ``alerts/tests/spellings.test.yaml``: every rate-based rule with both vLLM spellings.

Two situations, one steady workload (one model, one engine, per-minute increments below):

* **overlap**: ``vllm:x`` and ``vllm_x`` both present for the whole window with the same values
  (a target scraped both ways). Every recorded series reads exactly as with one spelling.
* **switch**: ``vllm:x`` until minute 11 (then a staleness marker), ``vllm_x`` from minute 12
  (Prometheus switched between the text format and OpenMetrics). At 14m the 5m window holds
  three samples of each; ``or`` keeps the classic spelling's part, so ratios and quantiles are
  exact and absolute rates read half (the documented cost of never double counting).

Before the fix every one of these expressions failed with "vector cannot contain metrics with
the same labelset". The committed file is compared with this rendering in ``test_spellings.py``,
which also checks that every recording rule using ``rate()`` has an expectation here.

    python -m tests.alerting.spelling_cases        # rewrite the committed file
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.alerting import catalogue, templating
from sidecar.alerting.rulefile import dump
from sidecar.alerting.spec import RuleConfig
from tests.alerting.promtool_cases import TESTS_DIR

PATH = TESTS_DIR / "spellings.test.yaml"
SWITCH_AT = 12
"""Minute at which the escaped spelling takes over in the switch case."""
END = 24
LABELS = 'job="vllm",instance="a:8000",model_name="llama"'
SCALE = 1_000_000


@dataclass(frozen=True)
class Counter:
    """One cumulative vLLM sample (classic spelling) and its increase per minute."""

    sample: str
    per_minute: float
    labels: str = ""
    engine: bool = True
    base: float = 0.0
    """Value at minute 0 (a gauge is a ``Counter`` with no increase and a base)."""

    def selector(self, name: str) -> str:
        extra = [LABELS]
        if self.engine:
            extra.append('engine="0"')
        if self.labels:
            extra.append(self.labels)
        return f"{name}{{{','.join(extra)}}}"


def _hist(name: str, buckets: dict[str, float]) -> list[Counter]:
    """Cumulative buckets plus ``_count`` (= the +Inf bucket) of one histogram."""
    parts = [Counter(f"{name}_bucket", count, f'le="{le}"') for le, count in buckets.items()]
    return [*parts, Counter(f"{name}_count", buckets["+Inf"])]


WORKLOAD: tuple[Counter, ...] = (
    Counter("vllm:num_requests_running", 0, base=3),
    Counter("vllm:num_requests_waiting", 0),
    Counter("vllm:request_success_total", 54, 'finished_reason="stop"'),
    Counter("vllm:request_success_total", 6, 'finished_reason="error"'),
    Counter("vllm:num_preemptions_total", 6),
    Counter("vllm:prompt_tokens_total", 600),
    Counter("vllm:generation_tokens_total", 1200),
    Counter("vllm:prefix_cache_hits_total", 300),
    Counter("vllm:prefix_cache_queries_total", 600),
    Counter("vllm:admission_rejections_total", 15, 'reason="max_num_queued_reqs"', engine=False),
    *_hist("vllm:iteration_tokens_total", {"8.0": 30, "+Inf": 60}),
    *_hist(
        "vllm:time_to_first_token_seconds",
        {"0.25": 30, "0.5": 48, "0.75": 57, "+Inf": 60},
    ),
    *_hist("vllm:e2e_request_latency_seconds", {"10.0": 30, "20.0": 45, "40.0": 60, "+Inf": 60}),
    *_hist("vllm:request_queue_time_seconds", {"1.0": 40, "5.0": 45, "10.0": 60, "+Inf": 60}),
    *_hist("vllm:inter_token_latency_seconds", {"0.05": 50, "0.1": 100, "+Inf": 100}),
)

HALF = "half"
"""Marks an absolute rate: in the switch case it reads half (see module docstring)."""
EXPECTED: dict[str, tuple[str, float, str]] = {
    # recorded series -> (extra labels of the sample, value with one spelling, kind)
    "model_name:vllm_preemptions:rate5m": ("", 0.1, HALF),
    "model_name:vllm_prompt_tokens:rate5m": ("", 10.0, HALF),
    "model_name:vllm_generation_tokens:rate5m": ("", 20.0, HALF),
    "model_name_finished_reason:vllm_request_success:rate5m": ('finished_reason="stop"', 0.9, HALF),
    "model_name:vllm_request_errors_per_request:ratio_rate5m": ("", 0.1, ""),
    "model_name:vllm_prefix_cache_hits_per_query:ratio_rate5m": ("", 0.5, ""),
    "model_name:vllm_admission_rejections:rate5m": ("", 0.25, HALF),
    "model_name:vllm_admission_rejections_per_request:ratio_rate5m": ("", 0.2, ""),
    "model_name:vllm_engine_iterations:rate5m": ("", 1.0, HALF),
    "model_name_le:vllm_ttft_seconds_bucket:rate5m": ('le="0.5"', 0.8, HALF),
    "model_name:vllm_ttft_seconds:p50_5m": ("", 0.25, ""),
    "model_name_le:vllm_itl_seconds_bucket:rate5m": ('le="0.05"', 50 / 60, HALF),
    "model_name:vllm_itl_seconds:p50_5m": ("", 0.05, ""),
    "model_name_le:vllm_e2e_latency_seconds_bucket:rate5m": ('le="20.0"', 0.75, HALF),
    "model_name:vllm_e2e_latency_seconds:p50_5m": ("", 10.0, ""),
    "model_name_le:vllm_queue_time_seconds_bucket:rate5m": ('le="5.0"', 0.75, HALF),
    "model_name:vllm_queue_time_seconds:p95_5m": ("", 9.0, ""),
    **{
        f"model_name:vllm_ttft_slo_errors_per_request:ratio_rate{window}": ("", 0.2, "")
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    },
    **{
        f"model_name:vllm_e2e_latency_slo_errors_per_request:ratio_rate{window}": ("", 0.25, "")
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    },
}
"""Every recorded series that takes a rate of a vLLM counter, as of minute 14."""

FIRING: tuple[tuple[str, dict[str, str], float], ...] = (
    ("VLLMPreemptionsSustained", {"model_name": "llama"}, 0.1),
    ("VLLMRequestErrorsHigh", {"model_name": "llama"}, 0.1),
    ("VLLMRequestQueueTimeHigh", {"model_name": "llama"}, 9.0),
    ("VLLMAdmissionRejections", {"model_name": "llama"}, 0.2),
    ("VLLMTTFTBudgetBurn", {"long": "1h", "short": "5m", "model_name": "llama"}, 0.2),
    ("VLLMTTFTBudgetBurn", {"long": "6h", "short": "30m", "model_name": "llama"}, 0.2),
    ("VLLME2ELatencyBudgetBurn", {"long": "1h", "short": "5m", "model_name": "llama"}, 0.25),
    ("VLLME2ELatencyBudgetBurn", {"long": "6h", "short": "30m", "model_name": "llama"}, 0.25),
)
"""Rate-based alerts that fire at minute 24 in both situations (values with one spelling)."""
SILENT = ("VLLMEngineStalled",)
"""Rate-based alerts that must stay silent: the engine progresses under either spelling."""


def _escaped(sample: str) -> str:
    return "vllm_" + sample.removeprefix("vllm:")


def _values(counter: Counter, start: int, stop: int) -> str:
    """``a+bxn`` from minute ``start`` to ``stop`` inclusive, blanks before ``start``."""
    first = counter.base + counter.per_minute * start
    series = f"{first:g}+{counter.per_minute:g}x{stop - start}"
    return f"_x{start} {series}" if start else series


def _input_series(switch: bool) -> list[dict[str, str]]:
    series = []
    for counter in WORKLOAD:
        if switch:
            classic = _values(counter, 0, SWITCH_AT - 1) + " stale"
            escaped = _values(counter, SWITCH_AT, END)
        else:
            classic = escaped = _values(counter, 0, END)
        series.append({"series": counter.selector(counter.sample), "values": classic})
        series.append({"series": counter.selector(_escaped(counter.sample)), "values": escaped})
    return series


def _value(value: float, kind: str, switch: bool) -> float:
    return value / 2 if switch and kind == HALF else value


def _expr_tests(switch: bool) -> list[dict[str, Any]]:
    """One check per recorded series, in millionths (promtool compares floats exactly)."""
    tests = []
    for record, (labels, value, kind) in EXPECTED.items():
        matcher = ",".join(part for part in ('model_name="llama"', labels) if part)
        tests.append(
            {
                "expr": f"round({record}{{{labels}}} * {SCALE})"
                if labels
                else f"round({record} * {SCALE})",
                "eval_time": f"{SWITCH_AT + 2}m",
                "exp_samples": [
                    {
                        "labels": f"{{{matcher}}}",
                        "value": round(_value(value, kind, switch) * SCALE),
                    }
                ],
            }
        )
    return tests


def _alert_tests() -> list[dict[str, Any]]:
    config = RuleConfig()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, labels, value in FIRING:
        (rule,) = [
            rule
            for rule in catalogue.rules_named(name)
            if all(rule.labels.get(k, v) == v for k, v in labels.items())
        ]
        params = rule.template_params(config)
        description = templating.fill(rule.description, params)
        by_name.setdefault(name, []).append(
            {
                "exp_labels": {"severity": rule.severity.value, **labels},
                "exp_annotations": {
                    "summary": templating.fill(rule.summary, params),
                    "description": templating.render(description, labels, value),
                    "runbook_url": config.runbook(rule),
                },
            }
        )
    return [
        *(
            {"eval_time": f"{END}m", "alertname": name, "exp_alerts": alerts}
            for name, alerts in by_name.items()
        ),
        *({"eval_time": f"{END}m", "alertname": name} for name in SILENT),
    ]


def render() -> str:
    """The whole promtool test file."""
    tests = [
        {
            "name": f"Both spellings {title}",
            "interval": "1m",
            "input_series": _input_series(switch),
            "promql_expr_test": _expr_tests(switch),
            "alert_rule_test": _alert_tests(),
        }
        for title, switch in (
            ("present for the whole window (a target scraped both ways)", False),
            (f"in one window: vllm: until {SWITCH_AT - 1}m, vllm_ from {SWITCH_AT}m", True),
        )
    ]
    data = {
        "rule_files": ["../vllm-sidecar.rules.yaml"],
        "evaluation_interval": "1m",
        "group_eval_order": ["vllm-sidecar.recording", "vllm-sidecar.slo", "vllm-sidecar.alerts"],
        "tests": tests,
    }
    header = (
        "promtool unit tests: every rate-based rule while vLLM's two spellings share a window.\n"
        "Generated by `python -m tests.alerting.spelling_cases`; do not edit by hand."
    )
    return dump(data, header)


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
