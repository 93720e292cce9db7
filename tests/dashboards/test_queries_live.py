"""Every panel's every query, variables substituted, returns data from a real Prometheus.

One Prometheus scrapes four emulated vLLM servers under load, each with ``vllm-sidecar run`` in
front: current vLLM, a data-parallel one (two engines), vLLM 0.9.2 (old and new names side by
side) and vLLM 0.6.3 (legacy names only). Each board is evaluated per server (job, model and
instance selected, as a user picking one server would) and for the whole fleet (*All*).

Per-panel decisions, so "non-empty" always means "telling the truth":

* error ratios fall back to 0 when no request failed (``... or finished * 0``);
* "Firing alerts" counts with ``or vector(0)``; the alert table needs a firing alert, so this
  Prometheus loads one always-firing canary rule named like the alert pack's (``VLLM*``);
* prefix-cache hit ratio on vLLM 0.6 shows vLLM's own gauge, -1 = "disabled" (mapped in Grafana);
* sampling and upload panels need samples: the sidecars sample 50% into the local sink.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards import promql
from tests.dashboards.live import Load, Prometheus, Stack, finite_values
from tests.dashboards.support import (
    committed_dashboards,
    defaults,
    regex_value,
    substitute,
    targets,
    variables,
)
from tests.support import Processes

pytestmark = pytest.mark.slow

RATE_INTERVAL = "15s"
BUILTINS = {"__rate_interval": RATE_INTERVAL, "__range": "1m", "__interval": "2s"}
KV_PRESSURE = 0.6
FLEET_MODEL = "fleet/llama-8b"
STACK_NAMES = ("current", "dp2", "v0.9", "v0.6")


def make_stacks() -> dict[str, Stack]:
    """One model on three servers of mixed vLLM versions (KV >= 60% each), one legacy server."""
    stacks = (
        Stack("current", "current", FLEET_MODEL, kv_pressure=KV_PRESSURE),
        Stack("dp2", "current", FLEET_MODEL, data_parallel=2, kv_pressure=KV_PRESSURE),
        Stack("v0.9", "v0.9", FLEET_MODEL, kv_pressure=KV_PRESSURE),
        Stack("v0.6", "v0.6", "legacy/qwen-7b"),
    )
    return {stack.name: stack for stack in stacks}


BOARDS = committed_dashboards()
SIDECAR_BOARD = "vllm-sidecar-requests"
WARM_UP_DEADLINE = 120.0


class Fleet:
    """The running stacks and the Prometheus that scrapes them."""

    def __init__(self, stacks: dict[str, Stack], prometheus: Prometheus) -> None:
        self.stacks = stacks
        self.prometheus = prometheus

    def values(self, board: str, stack: str | None) -> dict[str, str]:
        """Variable values for ``board``: one stack's job/model/instance, or *All* for None."""
        values = defaults(BOARDS[board], BUILTINS)
        if stack is not None:
            chosen = self.stacks[stack]
            sidecar = board == SIDECAR_BOARD
            values["job"] = regex_value(chosen.sidecar_job if sidecar else chosen.vllm_job)
            values["instance"] = regex_value(
                chosen.sidecar_instance if sidecar else chosen.vllm_instance
            )
            values["model_name"] = regex_value(chosen.model)
        return values

    def failures(self, board: str, stack: str | None) -> list[str]:
        """Queries of ``board`` that error or return no finite value."""
        values = self.values(board, stack)
        problems = []
        for panel, target in targets(BOARDS[board]):
            expr = substitute(target["expr"], values)
            body = self.prometheus.query(expr, instant=bool(target.get("instant")))
            if body.get("status") != "success":
                problems.append(f"{panel['title']} [{target['refId']}]: {body.get('error')}")
            elif not finite_values(body):
                problems.append(f"{panel['title']} [{target['refId']}]: no data\n    {expr}")
        return problems

    def all_failures(self) -> list[str]:
        """Failures of every board for every stack and for the fleet."""
        return [
            f"{board}/{stack}: {problem}"
            for board in BOARDS
            for stack in [*self.stacks, None]
            for problem in self.failures(board, stack)
        ]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four stacks under load and a Prometheus that has scraped them long enough for rates."""
    workdir: Path = tmp_path_factory.mktemp("live-dashboards")
    processes = Processes()
    stacks = make_stacks()
    load = Load(list(stacks.values()))
    try:
        for stack in stacks.values():
            stack.start(processes, workdir)
        prometheus = Prometheus(list(stacks.values()), workdir)
        prometheus.start(processes)
        load.start()
        ready = Fleet(stacks, prometheus)
        time.sleep(float(RATE_INTERVAL.rstrip("s")))  # the first rate window has to fill
        deadline = time.monotonic() + WARM_UP_DEADLINE
        while ready.all_failures() and time.monotonic() < deadline:
            time.sleep(2)
        yield ready
    finally:
        load.stop()
        processes.stop_all()


@pytest.mark.parametrize("stack", STACK_NAMES)
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_query_returns_data_for_one_server(fleet: Fleet, board: str, stack: str) -> None:
    """With one server's job, model and instance selected, every query has finite data."""
    problems = fleet.failures(board, stack)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_query_returns_data_for_the_fleet(fleet: Fleet, board: str) -> None:
    """With every variable on *All*, across mixed vLLM versions, every query has finite data."""
    problems = fleet.failures(board, None)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_variables_offer_every_server(fleet: Fleet, board: str) -> None:
    """The job, model and instance variables list each stack's values (as Grafana would ask)."""
    found = variables(BOARDS[board])
    offered: dict[str, set[str]] = {}
    for name in ("job", "model_name", "instance"):
        query = substitute(found[name]["query"], {"job": ".*", "model_name": ".*"})
        series, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        offered[name] = set(fleet.prometheus.label_values(label, series))
    sidecar = board == SIDECAR_BOARD
    for stack in fleet.stacks.values():
        assert (stack.sidecar_job if sidecar else stack.vllm_job) in offered["job"]
        assert (stack.sidecar_instance if sidecar else stack.vllm_instance) in offered["instance"]
        assert stack.model in offered["model_name"]


def _values_of(fleet: Fleet, expr: str, *, job: str | None = None) -> list[float]:
    """Instant values of ``expr`` over the fleet, or over one vLLM job."""
    if job is not None:
        expr = expr.replace('job=~"$job"', f'job="{job}"')
    body = fleet.prometheus.query(
        substitute(expr, fleet.values("vllm-overview", None)), instant=True
    )
    assert body["status"] == "success", body
    return finite_values(body)


def test_kv_cache_is_not_summed_across_pods(fleet: Fleet) -> None:
    """Three servers of one model at >= 60% KV each: the board shows <= 100%, a sum would not."""
    kv = promql.kv_cache_usage()
    shown = _values_of(fleet, promql.agg("max", kv, ("model_name",)))
    shown += _values_of(fleet, promql.agg("avg", kv, ("model_name",)))
    assert shown
    assert all(value <= 1.0 for value in shown)
    assert max(shown) >= KV_PRESSURE
    naive_sum = _values_of(fleet, promql.agg("sum", kv, ("model_name",)))
    assert max(naive_sum) > 1.0, "the scenario must be one where summing would be wrong"


def test_old_and_new_names_are_counted_once(fleet: Fleet) -> None:
    """vLLM 0.9.2 exposes old and new names for the same series; the fallbacks keep one.

    Read until it holds (within a few scrapes): one scrape of the emulator that times out on
    this busy box marks its series stale, and an instant query then sees none for a moment.
    """
    job = fleet.stacks["v0.9"].vllm_job
    hits = promql.first_present(
        promql.engine_rate("vllm:prefix_cache_hits_total"),
        promql.engine_rate("vllm:gpu_prefix_cache_hits_total"),
    )

    def observed() -> dict[str, list[float]]:
        names = ("gpu_cache_usage_perc", "kv_cache_usage_perc", "gpu_prefix_cache_hits_total")
        seen = {
            name: _values_of(fleet, f'count({{__name__=~"vllm[:_]{name}", job=~"$job"}})', job=job)
            for name in names
        }
        seen["kv fallback"] = _values_of(fleet, f"count({promql.kv_cache_usage()})", job=job)
        seen["hits fallback"] = _values_of(fleet, f"count({hits})", job=job)
        return seen

    deadline = time.monotonic() + 20
    seen = observed()
    while any(values != [1] for values in seen.values()) and time.monotonic() < deadline:
        time.sleep(1)
        seen = observed()
    assert all(values == [1] for values in seen.values()), seen
