"""``vllm-sidecar demo``: the whole product on one laptop, no GPU, one command.

It starts the vLLM emulator (a small KV pool so a laptop can saturate it), the sidecar in front
of it (proxy, scraper, alert engine, sampling into a local directory, the embedded stand-in for
S3) and a load that walks normal -> saturation -> recovery, so the KV "OOM canary" fires and
resolves while you watch. Alert ``for`` durations and the sample rate are shortened so that
happens within a minute; everything else runs exactly as ``vllm-sidecar run`` would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PHASES: tuple[tuple[str, float], ...] = (("normal", 0.3), ("saturation", 0.4), ("recovery", 0.3))
"""Phase name and share of one cycle."""

DEMO_ALERT_FOR = {
    "VLLMKVCacheSaturation": 5.0,
    "VLLMKVCacheExhausted": 5.0,
    "VLLMKVCacheFillingUp": 5.0,
    "VLLMRequestQueueGrowing": 10.0,
    "VLLMPreemptionsSustained": 10.0,
}
"""Seconds instead of minutes, so the fire drill is visible during a short demo."""


def _port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    msg = "no free port on 127.0.0.1"
    raise OSError(msg)


@dataclass(slots=True)
class DemoState:
    """What the live view shows besides the signals."""

    phase: str = "starting"
    requests: int = 0
    errors: int = 0


def _load_options(phase: str, seconds: float, target: str) -> Any:
    from sidecar.loadgen import LoadOptions

    common: dict[str, Any] = {"target": target, "duration": seconds, "prompt_words": 150}
    if phase == "saturation":
        return LoadOptions(
            profile="ramp", concurrency=64, ramp_seconds=seconds * 0.5, max_tokens=160, **common
        )
    if phase == "normal":
        return LoadOptions(profile="steady", concurrency=4, max_tokens=96, **common)
    return LoadOptions(profile="steady", concurrency=2, max_tokens=64, **common)


async def _drive_load(target: str, cycle: float, state: DemoState, stop: asyncio.Event) -> None:
    """Walk the phases (repeating) until ``stop``."""
    from sidecar.loadgen import run_load

    while not stop.is_set():
        for phase, share in PHASES:
            if stop.is_set():
                return
            state.phase = phase
            report = await run_load(_load_options(phase, cycle * share, target))
            state.requests += report.tally.ok + report.tally.error_count
            state.errors += report.tally.error_count


def _samples_written(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*.jsonl.gz")) if directory.exists() else 0


def _view(sidecar: Any, state: DemoState, urls: dict[str, str], samples_dir: Path) -> Any:
    from rich.console import Group
    from rich.text import Text

    from sidecar.top import render

    admin = sidecar.admin_state
    payload = {
        "scrape": {
            "ready": admin.scrape.ready,
            "last_error": admin.scrape.last_error,
            "missing_metrics": list(admin.scrape.missing_metrics),
            "vllm_version": admin.scrape.vllm_version,
        },
        "signals": admin.signals.to_json() if admin.signals else None,
    }
    alerts = sidecar.engine.alert_list()
    states: dict[str, str] = {}
    for alert in alerts:
        name = alert.get("labels", {}).get("alertname")
        if name and states.get(name) != "firing":  # several windows of one alert: show it once
            states[name] = alert.get("state", "?")
    alert_text = ", ".join(f"{name} ({state})" for name, state in sorted(states.items())) or "none"
    lines = [
        Text.assemble(("phase: ", "bold"), (state.phase, "cyan")),
        Text(
            f"requests {state.requests} (errors {state.errors})   "
            f"sample files {_samples_written(samples_dir)} in {samples_dir}"
        ),
        Text.assemble(("alerts: ", "bold"), (alert_text, "red" if alerts else "green")),
        render(payload, urls["proxy"]),
    ]
    return Group(*lines)


async def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from sidecar import app as sidecar_app
    from sidecar import logs
    from sidecar.config import load
    from sidecar.emulator import EmulatorOptions

    console = Console()
    logs.configure("warning", "console")
    workdir = Path(args.workdir)
    samples_dir = Path(args.samples_dir)
    emulator_options = EmulatorOptions(
        num_gpu_blocks=1024, max_model_len=4096, max_num_seqs=256, seed=args.seed
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with _upstream(args, emulator_options, workdir) as (upstream_name, upstream_url):
        settings = load(
            upstream=upstream_url,
            listen=f"127.0.0.1:{_port(8080)}",
            admin_listen=f"127.0.0.1:{_port(9400)}",
            scrape_interval=1.0,
            sample_rate=args.sample_rate,
            samples_dir=samples_dir,
            spool_dir=workdir / "spool",
            upload_batch_max_seconds=3.0,
            alert_evaluation_interval=1.0,
            alert_for=DEMO_ALERT_FOR,
            shutdown_grace_seconds=10.0,
            log_level="warning",
        )
        sidecar = sidecar_app.build(settings)
        await sidecar_app.start(sidecar)
        urls = {
            upstream_name: upstream_url,
            "proxy": "http://{}:{}/v1".format(*sidecar.bound["proxy"]),
            "admin": "http://{}:{}".format(*sidecar.bound["admin"]),
        }
        for name, url in urls.items():
            console.print(f"[bold]{name:>16}[/] {url}")
        console.print(f"{'try':>16} curl -s {urls['admin']}/api/v1/signals")
        console.print(f"{'or':>16} OPENAI_BASE_URL={urls['proxy']} python your_app.py")
        state = DemoState()
        cycle = args.duration if args.duration else args.cycle
        load_task = asyncio.create_task(_drive_load(urls["proxy"], cycle, state, stop))
        deadline = time.monotonic() + args.duration if args.duration else None
        try:
            await _watch(
                sidecar=sidecar,
                state=state,
                urls=urls,
                samples_dir=samples_dir,
                stop=stop,
                deadline=deadline,
                console=console,
                live_cls=Live,
            )
        finally:
            stop.set()
            load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await load_task
            await sidecar_app.shutdown(sidecar)
    written = _samples_written(samples_dir)
    console.print(
        f"done: {state.requests} requests, {state.errors} errors, "
        f"{written} sample file(s) under {samples_dir}"
    )
    return 0


@contextlib.asynccontextmanager
async def _upstream(
    args: argparse.Namespace, options: Any, workdir: Path
) -> AsyncIterator[tuple[str, str]]:
    """(name, URL) of what the sidecar fronts: the emulator, or a real vLLM with --real-vllm."""
    if args.real_vllm:
        from sidecar.realvllm.demo import real_vllm_upstream

        async with real_vllm_upstream(workdir, _port(8000), args.seed) as url:
            yield "vllm (real, CPU)", url
        return
    from sidecar.emulator import run_emulator

    async with run_emulator(options, port=_port(8000)) as emulator:
        yield "vllm (emulated)", emulator.url


async def _watch(
    *,
    sidecar: Any,
    state: DemoState,
    urls: dict[str, str],
    samples_dir: Path,
    stop: asyncio.Event,
    deadline: float | None,
    console: Any,
    live_cls: Any,
) -> None:
    """Refresh a live view on a terminal; print a status line every 5 s otherwise."""

    def finished() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    if console.is_terminal:
        with live_cls(console=console, auto_refresh=False) as live:
            while not finished():
                live.update(_view(sidecar, state, urls, samples_dir), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        return
    next_line = 0.0
    while not finished():
        if time.monotonic() >= next_line:
            signals = sidecar.admin_state.signals
            target = signals.targets[0] if signals and signals.targets else None
            kv = target.kv_cache_usage if target else None
            alerts = [a["labels"].get("alertname") for a in sidecar.engine.alert_list()]
            print(
                f"phase={state.phase} requests={state.requests} "
                f"kv={'-' if kv is None else f'{kv:.2f}'} alerts={alerts}",
                file=sys.stderr,
                flush=True,
            )
            next_line = time.monotonic() + 5.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def _main(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


def register(subparsers: Any) -> None:
    """Add ``demo`` to the command line."""
    parser = subparsers.add_parser(
        "demo", help="Emulated vLLM + sidecar + load: normal -> saturation -> recovery."
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="Stop after N seconds (0 = until Ctrl-C)."
    )
    parser.add_argument(
        "--cycle", type=float, default=120.0, help="Length of one normal/saturation/recovery walk."
    )
    parser.add_argument(
        "--sample-rate", type=float, default=0.2, help="Higher than production so files appear."
    )
    parser.add_argument("--samples-dir", default="./samples-data", help="Local sample sink.")
    parser.add_argument("--workdir", default="./.demo", help="Spool and scratch files.")
    parser.add_argument("--seed", type=int, default=0, help="Emulator seed (deterministic text).")
    parser.add_argument(
        "--real-vllm",
        action="store_true",
        help="A real vLLM (CPU build, tiny model; installed on first use) instead of the emulator.",
    )
    parser.set_defaults(func=_main)
