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
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.durations import seconds_flag

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
    """What the live view shows besides the signals.

    Counts move with every progress report of the running phase (twice a second), not only when a
    phase ends: finished phases plus the running phase's tally so far.
    """

    phase: str = "starting"
    done_requests: int = 0
    done_errors: int = 0
    phase_requests: int = 0
    phase_errors: int = 0

    @property
    def requests(self) -> int:
        return self.done_requests + self.phase_requests

    @property
    def errors(self) -> int:
        return self.done_errors + self.phase_errors

    def on_progress(self, progress: Any) -> None:
        """``run_load``'s progress callback: the running phase's finished requests so far."""
        self.phase_requests = progress.tally.ok + progress.tally.error_count
        self.phase_errors = progress.tally.error_count

    def end_phase(self, ok: int, errors: int) -> None:
        self.done_requests += ok + errors
        self.done_errors += errors
        self.phase_requests = self.phase_errors = 0


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
            report = await run_load(
                _load_options(phase, cycle * share, target),
                on_progress=state.on_progress,
                progress_interval=0.5,
            )
            state.end_phase(report.tally.ok, report.tally.error_count)


def _samples_written(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*.jsonl.gz")) if directory.exists() else 0


def _view(
    sidecar: Any,
    state: DemoState,
    *,
    urls: dict[str, str],
    samples_dir: Path,
    recent: Any,
    width: int,
) -> Any:
    from rich.console import Group
    from rich.text import Text

    from sidecar.signals_api import document
    from sidecar.topview import render

    payload = document(sidecar.admin_state.scrape, sidecar.admin_state.signals)
    recent.observe(payload, time.monotonic())
    lines = [
        Text.assemble(("phase: ", "bold"), (state.phase, "cyan")),
        Text(
            f"requests {state.requests} (errors {state.errors})   "
            f"sample files {_samples_written(samples_dir)} in {samples_dir}"
        ),
        render(
            payload,
            urls["admin"],
            alerts=sidecar.engine.alert_list(),
            recent=recent,
            width=width,
        ),
    ]
    return Group(*lines)


QUERY_EXAMPLE = '"SELECT finish_reason, status, count(*) FROM samples GROUP BY ALL"'


def _one_request_id(samples_dir: Path) -> str:
    """A request id from the newest sample file, so the printed ``show`` works as is."""
    import gzip
    import json

    files = sorted(samples_dir.rglob("*.jsonl.gz"), key=lambda path: path.stat().st_mtime)
    for path in reversed(files):
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            first = gzip.decompress(path.read_bytes()).decode().splitlines()[0]
            return str(json.loads(first)["request_id"])
    return "REQUEST_ID"


def program() -> str:
    """How to call this command again: ``vllm-sidecar`` when the shell finds this one by that name,
    else the path it was started by (``make demo`` runs ``.venv/bin/vllm-sidecar``, which an
    unactivated shell does not find)."""
    invoked = Path(sys.argv[0])
    if invoked.name != "vllm-sidecar":
        return "vllm-sidecar"
    found = shutil.which("vllm-sidecar")
    if found is not None and Path(found).resolve() == invoked.resolve():
        return "vllm-sidecar"
    return str(sys.argv[0])


def _utc(unix_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


def next_commands(
    samples_dir: Path,
    admin_url: str | None = None,
    span: tuple[float, float] | None = None,
) -> list[str]:
    """What to run next on what the demo recorded (printed when it ends).

    ``span`` (unix seconds) is when the demo ran: drift compares its first half with its second,
    in absolute times, so the command finds this run's records whenever it is pasted.
    """
    cli = program()
    source = str(samples_dir)
    if span is None:
        windows = "--baseline now-2h..now-10m --current last:10m"
    else:
        start, end = int(span[0]), int(span[1]) + 1
        middle = (start + end) // 2
        windows = f"--baseline {_utc(start)}..{_utc(middle)} --current {_utc(middle)}..{_utc(end)}"
    commands = [
        f"{cli} samples query --source {source} {QUERY_EXAMPLE}",
        f"{cli} samples show --source {source} {_one_request_id(samples_dir)}",
        f"{cli} samples drift --source {source} {windows}",
    ]
    if admin_url:
        commands.append(f"{cli} top --sidecar {admin_url}   (while a sidecar runs)")
    return commands


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
        admin_hostport = urls["admin"].removeprefix("http://")
        console.print(f"{'watch':>16} {program()} top --sidecar {admin_hostport}")
        state = DemoState()
        cycle = args.duration if args.duration else args.cycle
        started = time.time()
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
    console.print("next, look at what was recorded:", style="bold")
    for command in next_commands(samples_dir, admin_address(settings), (started, time.time())):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
    return 0


def admin_address(settings: Any) -> str:
    """``host:port`` of a plain ``vllm-sidecar run`` with these settings' admin port."""
    from sidecar.config import split_host_port

    _, port = split_host_port(settings.admin_listen)
    return f"127.0.0.1:{port}"


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

    from sidecar.topview import Recent

    recent = Recent()
    if console.is_terminal:
        with live_cls(console=console, auto_refresh=False) as live:
            while not finished():
                view = _view(
                    sidecar,
                    state,
                    urls=urls,
                    samples_dir=samples_dir,
                    recent=recent,
                    width=console.width,
                )
                live.update(view, refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        return
    from sidecar.topview import active_alerts

    next_line = 0.0
    while not finished():
        if time.monotonic() >= next_line:
            signals = sidecar.admin_state.signals
            target = signals.targets[0] if signals and signals.targets else None
            kv = target.kv_cache_usage if target else None
            alerts = sorted(active_alerts(sidecar.engine.alert_list()))
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
        "demo",
        help="Emulated vLLM + sidecar + load: normal -> saturation -> recovery.",
        description="Start the vLLM emulator (a small KV pool), a sidecar in front of it and a "
        "load generator walking normal -> saturation -> recovery, with a live view; no GPU. "
        "Listens on 127.0.0.1 (8000, 8080, 9400, or free ports when taken). Ends by printing "
        "commands to look at what it recorded.",
    )
    parser.add_argument(
        "--duration",
        type=seconds_flag,
        default=0.0,
        metavar="SECONDS",
        help="Stop after SECONDS (or 30s, 5m; default 0 = until Ctrl-C).",
    )
    parser.add_argument(
        "--cycle",
        type=seconds_flag,
        default=120.0,
        metavar="SECONDS",
        help="Length of one normal/saturation/recovery walk (default 120).",
    )
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=0.2,
        metavar="RATE",
        help="Share of requests recorded; higher than production so files appear (default 0.2).",
    )
    parser.add_argument(
        "--samples-dir",
        default="./samples-data",
        metavar="DIR",
        help="Local sample sink (default ./samples-data).",
    )
    parser.add_argument(
        "--workdir", default="./.demo", metavar="DIR", help="Spool files (default ./.demo)."
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="Emulator seed (deterministic text)."
    )
    parser.add_argument(
        "--real-vllm",
        action="store_true",
        help="A real vLLM (CPU build, tiny model; installed on first use) instead of the emulator.",
    )
    parser.set_defaults(func=_main)
