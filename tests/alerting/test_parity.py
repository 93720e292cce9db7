"""The in-process engine sends what Prometheus sends: same labels, same rendered annotations.

Each case drives the real engine (over the real signal derivation) into the situation a promtool
unit test in ``alerts/tests`` describes, then compares the engine's alert with that test's
expected labels and annotations. Since promtool checks those expectations against Prometheus'
own evaluation of the generated rule file, passing here means both paths agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sidecar.alerting import catalogue
from tests.alerting.builders import Harness, Model, SidecarMetrics, World
from tests.alerting.promtool_cases import expected_alert


def run_for(seconds: float) -> Callable[[Harness], None]:
    """Play: just evaluate for ``seconds``."""
    return lambda harness: harness.run(seconds)


def with_metrics(arrange: Callable[[SidecarMetrics], object]) -> Callable[[Harness], None]:
    """Play: set some of the sidecar's own series, then evaluate for a minute."""

    def play(harness: Harness) -> None:
        arrange(harness.sidecar)
        harness.run(60)

    return play


@dataclass
class Case:
    """One alert's situation: the simulated vLLM model and what happens over time."""

    alertname: str
    labels: dict[str, str]
    model: Model = field(default_factory=Model)
    play: Callable[[Harness], None] = field(default=run_for(300))


def proxy_errors(harness: Harness) -> None:
    """10% of proxied requests answered 502."""
    ok = harness.sidecar.requests.labels("llama", "team-a", "200", "/v1/chat/completions")
    bad = harness.sidecar.requests.labels("llama", "team-a", "502", "/v1/chat/completions")

    def step(seconds: float) -> None:
        ok.inc(9 * seconds)
        bad.inc(1 * seconds)

    harness.run(300, each=step)


def proxy_overhead(harness: Harness) -> None:
    """90% of requests under 1 ms, 97% under 50 ms, all under 100 ms: p99 = 83.33 ms."""

    def step(seconds: float) -> None:
        for value, count in ((0.0005, 90), (0.03, 7), (0.08, 3)):
            for _ in range(int(count * seconds)):
                harness.sidecar.overhead.observe(value)

    harness.run(120, each=step)


def samples_dropped(harness: Harness) -> None:
    """Five records lost to a full spool, forty skipped by the keep-rule budget (policy)."""
    harness.run(30)
    harness.sidecar.dropped.labels("spool_full").inc(5)
    harness.sidecar.dropped.labels("keep_budget").inc(40)
    harness.run(30)


def spool_nine_tenths_full(metrics: SidecarMetrics) -> None:
    """900 of 1000 spool bytes used."""
    metrics.spool_bytes.set(900)
    metrics.spool_capacity.set(1000)


def clients_abandon(harness: Harness) -> None:
    """A fifth of proxied requests end with the client gone (status 499)."""
    ok = harness.sidecar.requests.labels("llama", "team-a", "200", "/v1/chat/completions")
    gone = harness.sidecar.requests.labels("llama", "team-a", "499", "/v1/chat/completions")

    def step(seconds: float) -> None:
        ok.inc(80 / 60 * seconds)
        gone.inc(20 / 60 * seconds)

    harness.run(600, each=step)


CASES = [
    Case("VLLMKVCacheSaturation", {"model_name": "llama"}, Model(kv=0.9)),
    Case("VLLMKVCacheExhausted", {"model_name": "llama"}, Model(kv=0.97, waiting=3)),
    # 0.929 at the end of a 1.7-points-a-minute ramp: 250.6 s to full, as in the promtool test
    Case(
        "VLLMKVCacheFillingUp",
        {"model_name": "llama"},
        Model(kv=0.929 - 0.017 / 60 * 300, kv_slope=0.017 / 60),
    ),
    Case("VLLMRequestQueueGrowing", {"model_name": "llama"}, Model(waiting_slope=0.1)),
    Case(
        "VLLMRequestQueueTimeHigh", {"model_name": "llama"}, Model(requests=1, slow_queue_share=0.2)
    ),
    Case("VLLMPreemptionsSustained", {"model_name": "llama"}, Model(preemptions=0.05)),
    Case("VLLMRequestErrorsHigh", {"model_name": "llama"}, Model(requests=10, error_share=0.1)),
    Case("VLLMEngineStalled", {"model_name": "llama"}, Model(running=3, stalled=True)),
    Case("VLLMAdmissionRejections", {"model_name": "llama"}, Model(requests=1.0, rejections=0.25)),
    Case("VLLMRequestsDeferred", {"model_name": "llama"}, Model(deferred=2)),
    Case(
        "VLLMEngineImbalance",
        {"model_name": "llama", "signal": "kv_cache"},
        Model(engines=("0", "1"), engine_kv=(0.9, 0.3)),
    ),
    Case(
        "VLLMEngineImbalance",
        {"model_name": "llama", "signal": "queue"},
        Model(engines=("0", "1"), engine_waiting=(12, 0)),
    ),
    Case("VLLMDown", {}, play=with_metrics(lambda m: m.upstream_up.set(0))),
    Case(
        "VLLMMetricsMissing",
        {"metric": "kv_cache_usage"},
        play=with_metrics(lambda m: m.missing.labels("kv_cache_usage").set(1)),
    ),
    Case(
        "VLLMTTFTBudgetBurn",
        {"long": "1h", "model_name": "llama"},
        Model(requests=10, slow_ttft_share=0.2),
    ),
    Case(
        "VLLME2ELatencyBudgetBurn",
        {"long": "1h", "model_name": "llama"},
        Model(requests=10, slow_e2e_share=0.25),
    ),
    Case("VLLMServerErrorsHigh", {"model_name": "llama"}, play=proxy_errors),
    Case("VLLMClientAbortsHigh", {"model_name": "llama"}, play=clients_abandon),
    Case(
        "VLLMSidecarSampleBacklog",
        {},
        play=with_metrics(spool_nine_tenths_full),
    ),
    Case("VLLMSidecarSamplesDropped", {"reason": "spool_full"}, play=samples_dropped),
    Case("VLLMSidecarUploadsStalled", {}, play=with_metrics(lambda m: m.oldest.set(2160))),
    Case("VLLMSidecarProxyOverheadHigh", {}, play=proxy_overhead),
]


def test_every_in_process_alert_has_a_parity_case() -> None:
    """Each alert the engine evaluates is compared with Prometheus' rendering below."""
    in_process = {rule.name for rule in catalogue.RULES if rule.evaluate is not None}
    assert {case.alertname for case in CASES} == in_process


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.alertname)
def test_engine_matches_prometheus(case: Case) -> None:
    """The engine's alert has the labels and annotations promtool expects from the rule file."""
    overridable = {rule.name for rule in catalogue.RULES if rule.overridable}
    hold = {case.alertname: 0.0} if case.alertname in overridable else {}
    harness = Harness(World(case.model), alert_for=hold)
    case.play(harness)
    want = expected_alert(case.alertname, **case.labels)
    matching = [
        instance
        for instance in harness.engine.alerts()
        if instance.labels["alertname"] == case.alertname
        and all(instance.labels.get(k) == v for k, v in case.labels.items())
    ]
    assert [instance.state.value for instance in matching] == ["firing"]
    assert matching[0].labels == want["labels"]
    assert matching[0].annotations == want["annotations"]


def test_requests_without_a_model_are_not_client_aborts() -> None:
    """Requests the proxy could not tie to a model (``model_name="none"``: health checks a load
    balancer gave up on, bodies never read, unauthenticated 401s) say nothing about users
    abandoning a model's answers; as in the promtool case, only llama's aborts alert."""
    harness = Harness(World(Model()))
    ok = harness.sidecar.requests.labels("llama", "team-a", "200", "/v1/chat/completions")
    gone = harness.sidecar.requests.labels("llama", "team-a", "499", "/v1/chat/completions")
    health = harness.sidecar.requests.labels("none", "none", "499", "/health")
    unauthenticated = harness.sidecar.requests.labels("none", "none", "401", "other")

    def step(seconds: float) -> None:
        ok.inc(80 / 60 * seconds)
        gone.inc(20 / 60 * seconds)
        health.inc(10 / 60 * seconds)
        unauthenticated.inc(30 / 60 * seconds)

    harness.run(900, each=step)
    assert harness.firing("VLLMClientAbortsHigh") == [
        expected_alert("VLLMClientAbortsHigh", model_name="llama")["labels"]
    ]
