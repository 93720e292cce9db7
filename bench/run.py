"""``python -m bench.run``: what the sidecar costs in the request path, against nginx and direct.

One command starts the fake upstream (:mod:`bench.upstream`), nginx and the sidecar variants
(:mod:`bench.targets`), then for several rounds drives the same load at each target in turn
(the order rotates every round) with the load client (:mod:`bench.client`), and prints:

* added TTFT p50/p99 idle (one stream at a time, targets interleaved request by request; short
  streams with tokens 1 ms apart, so no other work runs on the machine when a request starts);
* added TTFT p50/p99 under load (``--concurrency`` closed-loop streams, tokens every
  ``--step-ms``), with CPU per event at that realistic pace;
* events/s at saturation (``--saturation-streams`` streams, tokens as fast as possible) with
  CPU seconds per 1M relayed events and RSS;
* ratios to nginx and to direct, the issue's goals, the counters that prove every sidecar
  feature was working, and the scrape-cost table (:mod:`bench.scrape_cost`).

Medians over rounds. ``--quick`` is a one-round run of ~1 minute; ``--soak 600`` adds a
10-minute RSS soak of the sidecar under load; ``--json FILE`` keeps every raw figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import report, scrape_cost
from bench.procstat import CpuTimes, cpu_times, memory, pin, settle
from bench.targets import DEFAULT_TARGETS, NGINX, Fleet, Settings, Target, admin_metrics
from bench.targets import directory_bytes as dir_bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """How much load, for how long."""

    rounds: int = 3
    tokens: int = 256
    idle_requests: int = 300
    idle_warmup: int = 20
    idle_tokens: int = 16
    idle_step_ms: float = 1.0
    concurrency: int = 64
    step_ms: float = 10.0
    loaded_warmup: float = 2.0
    loaded_window: float = 6.0
    saturation_streams: int = 128
    saturation_warmup: float = 1.5
    saturation_window: float = 5.0


QUICK = Plan(
    rounds=1, idle_requests=100, loaded_window=3.0, saturation_window=3.0, saturation_warmup=1.0
)


class LoadClient:
    """The load client process (:mod:`bench.client`), one JSON command at a time."""

    def __init__(self, root: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(root / "client.log").open("wb"),
            cwd=Path(__file__).resolve().parents[1],
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def call(
        self, command: dict[str, Any], *, every: float = 0.0, tick: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Send one command; call ``tick`` every ``every`` seconds while it runs."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        while tick is not None:
            ready, _, _ = select.select([self._process.stdout], [], [], every)
            if ready:
                break
            tick()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"load client exited with {self._process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"load client failed: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _pin(targets: list[Target], others: list[int]) -> str:
    """Proxies on the last core, upstream, client and orchestrator on the rest."""
    count = os.cpu_count() or 1
    if count < 2:
        raise SystemExit("--pin needs at least 2 cores")
    proxy_core, rest = {count - 1}, set(range(count - 1))
    for target in targets:
        pin(target.pids, proxy_core)
    pin(others, rest)
    return f"proxies on core {count - 1}; upstream, load client and orchestrator on 0-{count - 2}"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _rotated(items: list[Target], by: int) -> list[Target]:
    shift = by % len(items)
    return items[shift:] + items[:shift]


def run_rounds(
    client: LoadClient, targets: list[Target], upstream_pids: list[int], plan: Plan
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every phase for every target, ``plan.rounds`` times; raw client results."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        target.name: {"idle": [], "loaded": [], "saturation": []} for target in targets
    }
    everyone = [pid for target in targets for pid in target.pids] + upstream_pids
    for number in range(plan.rounds):
        _log(f"round {number + 1}/{plan.rounds}: idle TTFT, {plan.idle_requests} per target")
        settle(everyone)
        idle = client.call(
            {
                "op": "idle",
                "targets": {target.name: target.url for target in targets},
                "requests": plan.idle_requests,
                "warmup": plan.idle_warmup,
                "tokens": plan.idle_tokens,
                "step_ms": plan.idle_step_ms,
            }
        )
        for name, result in idle.items():
            results[name]["idle"].append(result)
        for phase, streams, step, warmup, window in (
            ("loaded", plan.concurrency, plan.step_ms, plan.loaded_warmup, plan.loaded_window),
            (
                "saturation",
                plan.saturation_streams,
                0.0,
                plan.saturation_warmup,
                plan.saturation_window,
            ),
        ):
            for target in _rotated(targets, number):
                _log(
                    f"round {number + 1}/{plan.rounds}: {phase}, {streams} streams -> {target.name}"
                )
                settle(everyone)
                result = client.call(
                    {
                        "op": "streams",
                        "url": target.url,
                        "concurrency": streams,
                        "tokens": plan.tokens,
                        "step_ms": step,
                        "warmup": warmup,
                        "window": window,
                        "pids": target.pids,
                        "upstream_pids": upstream_pids,
                    }
                )
                _charge_deferred_work(result, target)
                results[target.name][phase].append(result)
    return results


def _charge_deferred_work(result: dict[str, Any], target: Target) -> None:
    """CPU from the window's start until the target is quiet again, over every event relayed
    since the window opened: what the sampler queues during the window is paid for there."""
    if not target.pids:
        return
    settle(target.pids)
    start = CpuTimes(**result["cpu_start"])
    result["cpu_total"] = asdict(cpu_times(target.pids) - start)
    result["events_total"] = result["events"] + result["events_after"]


def soak(
    client: LoadClient, target: Target, upstream_pids: list[int], plan: Plan, seconds: float
) -> dict[str, Any]:
    """Paced load on one sidecar for ``seconds``, RSS sampled every 5 s."""
    samples: list[tuple[float, int]] = []
    started = time.monotonic()

    def sample() -> None:
        samples.append((time.monotonic() - started, memory(target.pids).rss))

    _log(f"soak: {seconds:.0f} s of {plan.concurrency} paced streams -> {target.name}")
    result = client.call(
        {
            "op": "streams",
            "url": target.url,
            "concurrency": plan.concurrency,
            "tokens": plan.tokens,
            "step_ms": plan.step_ms,
            "warmup": 0.0,
            "window": seconds,
            "pids": target.pids,
            "upstream_pids": upstream_pids,
        },
        every=5.0,
        tick=sample,
    )
    if not samples:
        sample()
    baseline_after = min(60.0, seconds / 4)
    settled = [rss for at, rss in samples if at >= baseline_after] or [rss for _, rss in samples]
    first, last = settled[0], samples[-1][1]
    per_minute = [round(rss / report.MB, 1) for at, rss in samples if int(at) % 60 < 5 and at >= 55]
    return {
        "seconds": seconds,
        "target": target.name,
        "events": result["events"],
        "errors": result["errors"],
        "first_mb": first / report.MB,
        "last_mb": last / report.MB,
        "max_mb": max(rss for _, rss in samples) / report.MB,
        "growth_pct": 100.0 * (last - first) / first,
        "baseline_at_seconds": baseline_after,
        "per_minute_mb": per_minute,
        "samples": samples,
    }


FEATURE_COUNTERS = (
    ("requests relayed", "vllm_sidecar_proxy_requests_total"),
    ("scrapes", "vllm_sidecar_scrapes_total"),
    ("scrape errors", "vllm_sidecar_scrape_errors_total"),
    ("alert evaluations", "vllm_sidecar_alert_evaluations_total"),
    ("samples taken", "vllm_sidecar_samples_taken_total"),
    ("samples written", "vllm_sidecar_samples_written_total"),
    ("upload failures", "vllm_sidecar_upload_failures_total"),
    ("spool bytes", "vllm_sidecar_spool_bytes"),
)


def feature_counters(targets: list[Target]) -> dict[str, dict[str, float]]:
    """Per sidecar: the totals that show each feature ran during the benchmark."""
    out: dict[str, dict[str, float]] = {}
    for target in targets:
        if target.admin_url is None:
            continue
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(admin_metrics(target)):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        row = {label: totals.get(name, math.nan) for label, name in FEATURE_COUNTERS}
        if target.workdir is not None:
            row["spool dir bytes"] = float(dir_bytes(target.workdir / "spool"))
            row["sink dir bytes"] = float(dir_bytes(target.workdir / "samples"))
        out[target.name] = row
    return out


def feature_table(counters: dict[str, dict[str, float]]) -> str:
    if not counters:
        return ""
    labels = list(next(iter(counters.values())))
    lines = ["| sidecar | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, row in counters.items():
        cells = ("—" if math.isnan(row[label]) else f"{row[label]:,.0f}" for label in labels)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("aiohttp", "uvloop", "prometheus_client"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": f"{memory_kb / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "nginx": nginx.stderr.strip().removeprefix("nginx version: "),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = Plan()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (about a minute)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--tokens", type=int, help=f"tokens per stream (default {defaults.tokens})")
    parser.add_argument("--idle-requests", type=int)
    parser.add_argument("--concurrency", type=int, help="streams of the loaded phase (64)")
    parser.add_argument("--step-ms", type=float, help="token spacing of the loaded phase (10)")
    parser.add_argument("--saturation-streams", type=int)
    parser.add_argument("--window", type=float, help="seconds measured per loaded/saturation phase")
    parser.add_argument("--warmup", type=float, help="seconds before each window")
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help="comma-separated, from: direct,nginx,sidecar,sidecar-sample-all,sidecar-s3-outage",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=5.0,
        help="sidecar scrape and alert evaluation interval in seconds (5: both defaults' "
        "faster one)",
    )
    parser.add_argument(
        "--soak", type=float, default=0.0, help="seconds of RSS soak (600 = the goal)"
    )
    parser.add_argument("--no-scrape-cost", action="store_true")
    parser.add_argument("--nginx", default=NGINX, help="nginx binary")
    parser.add_argument(
        "--metrics-page",
        type=Path,
        help="the /metrics page the fake vLLM serves (default: tests/data/vllm/v1-1model.prom)",
    )
    parser.add_argument("--json", type=Path, help="write every raw figure here")
    parser.add_argument(
        "--from-json", type=Path, help="print the report of a run saved with --json; run nothing"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give the proxies (nginx, sidecars) the last core and everything else the others",
    )
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes: dict[str, Any] = {}
    for name in (
        "rounds",
        "tokens",
        "idle_requests",
        "concurrency",
        "step_ms",
        "saturation_streams",
    ):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.window is not None:
        changes |= {"loaded_window": args.window, "saturation_window": args.window}
    if args.warmup is not None:
        changes |= {"loaded_warmup": args.warmup, "saturation_warmup": args.warmup}
        changes["idle_warmup"] = max(2, int(args.warmup * 10))
    return Plan(**{**asdict(plan), **changes})


def render(data: dict[str, Any]) -> str:
    """The Markdown report of one run (what ``--json`` saved is enough to render it again)."""
    plan = Plan(**data["plan"])
    extra = data["extra"]
    table = report.rows(data["raw"])
    out = ["## Machine\n", *(f"- {key}: {value}" for key, value in data["machine"].items())]
    out += [
        f"\n## Relay cost ({plan.rounds} rounds, medians; {plan.tokens}-token streams; "
        f"saturation = {plan.saturation_streams} streams, tokens as fast as possible)\n",
        report.main_table(table, concurrency=plan.concurrency, step_ms=plan.step_ms),
        "\n## Ratios\n",
        report.ratio_table(table),
        "\n## Sidecar features during the run\n",
        feature_table(data["features"]),
    ]
    if "soak" in extra:
        soaked = extra["soak"]
        out.append(
            f"\n## Soak\n\n{soaked['seconds']:.0f} s, {soaked['events']:,} events: RSS "
            f"{soaked['first_mb']:.1f} MB at {soaked['baseline_at_seconds']:.0f} s -> "
            f"{soaked['last_mb']:.1f} MB at the end ({soaked['growth_pct']:+.1f}%), max "
            f"{soaked['max_mb']:.1f} MB; each minute: {soaked['per_minute_mb']} MB"
        )
    if data["scrape_cost"]:
        costs = [scrape_cost.from_json(item) for item in data["scrape_cost"]]
        out += ["\n## Scrape cost (parse + derive per scrape)\n", scrape_cost.table(costs)]
    out += ["\n## Goals (issue 9)\n", report.goals_table(report.goals(table, extra))]
    return "\n".join(out)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through Fleet, which stops every child


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = _arguments(argv)
    if args.from_json is not None:
        print(render(json.loads(args.from_json.read_text())))
        return 0
    plan = _plan(args)
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    if "direct" not in names:
        names.insert(0, "direct")  # every "added" figure is relative to it
    host = machine()
    root = Path(tempfile.mkdtemp(prefix="vllm-sidecar-bench-"))
    _log(f"working directory {root}")
    extra: dict[str, Any] = {}
    settings = Settings(
        scrape_interval=args.scrape_interval, metrics_page=args.metrics_page, nginx=args.nginx
    )
    with Fleet(root, settings) as fleet:
        targets = fleet.start(names)
        client = LoadClient(root)
        if args.pin:
            host["pinning"] = _pin(targets, [*fleet.upstream_pids, client.pid, os.getpid()])
        try:
            raw = run_rounds(client, targets, fleet.upstream_pids, plan)
            if args.soak > 0:
                sidecar = next((t for t in targets if t.name == "sidecar"), None)
                if sidecar is None:
                    raise SystemExit("--soak needs the 'sidecar' target")
                extra["soak"] = soak(client, sidecar, fleet.upstream_pids, plan, args.soak)
            counters = feature_counters(targets)
        finally:
            client.close()
    if not args.no_scrape_cost:
        _log("scrape cost")
        costs = scrape_cost.measure()
        judged = scrape_cost.closest_to_100kb(costs)
        extra["scrape_cost"] = {"kb": judged.kb, "core_pct": judged.core_pct}

    data = {
        "machine": host,
        "plan": asdict(plan),
        "raw": raw,
        "features": counters,
        "extra": extra,
        "scrape_cost": None if args.no_scrape_cost else scrape_cost.as_json(costs),
    }
    if args.json:
        rows = [asdict(row) for row in report.rows(raw)]
        args.json.write_text(json.dumps({**data, "rows": rows}, indent=1))
    print(render(data))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
