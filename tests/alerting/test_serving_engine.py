"""The in-process side of the serving alerts in the cases promtool checks in serving.test.yaml:
silent when idle, firing on a queue alone, resolving when the engine moves again, silent on one
engine, and not fooled by a missed scrape."""

from __future__ import annotations

from sidecar.alerting.inputs import EngineInputs
from tests.alerting.builders import Harness, Model, World

STALLED = "VLLMEngineStalled"
IMBALANCE = "VLLMEngineImbalance"


def test_an_idle_server_is_not_stalled() -> None:
    """Nothing in flight and nothing moving is idleness, not a hang."""
    harness = Harness(World(Model(running=0, waiting=0, stalled=True)))
    harness.run(600, step=15)
    assert harness.state(STALLED) == []


def test_waiting_requests_alone_make_a_stall_that_resolves_when_the_engine_moves() -> None:
    """A scheduler that admits nothing (running 0, waiting 3) is stalled; progress resolves it."""
    harness = Harness(World(Model(running=0, waiting=3, stalled=True)))
    harness.run(300, step=15)
    assert harness.firing(STALLED) == [
        {"alertname": STALLED, "severity": "critical", "model_name": "llama"}
    ]
    harness.world.model().stalled = False
    harness.run(30, step=15)
    assert harness.state(STALLED) == ["resolved"]


def test_missed_scrapes_of_a_busy_server_are_not_a_stall() -> None:
    """Every other scrape fails (the engine reuses the newest good snapshot): no pending stall."""
    harness = Harness(World(Model(running=3)))
    last: EngineInputs | None = None
    for tick in range(40):
        harness.now += 15.0
        if tick % 2 == 0 or last is None:
            last = harness.inputs()
        harness.engine.evaluate(last)
        assert harness.state(STALLED) == [], f"at {harness.now}s"


def test_one_engine_however_full_is_no_imbalance() -> None:
    """A single-engine server has nothing to be imbalanced against."""
    harness = Harness(World(Model(engines=("0",), engine_kv=(0.99,), engine_waiting=(50,))))
    harness.run(900, step=15)
    assert harness.state(IMBALANCE) == []


def test_one_full_engine_among_eight_is_an_imbalance() -> None:
    """Eight engines, one at 95% and one at 10%: the gap (0.85) is reported, not the average."""
    kv = (0.95, *(0.5,) * 6, 0.1)
    harness = Harness(World(Model(engines=tuple(str(i) for i in range(8)), engine_kv=kv)))
    harness.run(900, step=15)
    assert harness.firing(IMBALANCE) == [
        {"alertname": IMBALANCE, "severity": "warning", "model_name": "llama", "signal": "kv_cache"}
    ]
    (instance,) = [i for i in harness.engine.alerts() if i.labels["alertname"] == IMBALANCE]
    assert "by 0.85 " in instance.annotations["description"]
