"""``vllm-sidecar top``: a live terminal view for the person on a GPU box without Grafana.

It reads the derived signals either from a running sidecar (``--sidecar http://host:9400``) or
straight from a vLLM server (``--upstream http://host:8000``), in which case it scrapes and
derives locally with the same code the sidecar runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import aiohttp

Row = dict[str, Any]


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s"


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "stable"
    if seconds <= 0:
        return "FULL"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


def _latency(target: Row, signal: str, quantile: str, window: str = "1m") -> float | None:
    value = target.get("latency", {}).get(signal, {}).get(window, {}).get(quantile)
    return value if isinstance(value, int | float) else None


def _windowed(target: Row, name: str, window: str = "1m") -> float | None:
    value = target.get(name, {}).get(window)
    return value if isinstance(value, int | float) else None


def render(payload: dict[str, Any], source: str) -> Any:
    """A rich renderable for one signals payload (the ``/api/v1/signals`` shape)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    scrape = payload.get("scrape") or {}
    signals = payload.get("signals") or {}
    status = (
        Text("scrape ok", style="green")
        if scrape.get("ready")
        else Text(f"scrape failing: {scrape.get('last_error') or 'no scrape yet'}", style="red")
    )
    header = Text.assemble(
        ("vllm-sidecar top ", "bold"),
        (f"{source}  ", "dim"),
        status,
        ("  vLLM " + str(scrape.get("vllm_version") or "?"), "dim"),
    )
    missing = scrape.get("missing_metrics") or []
    table = Table(expand=True, title_justify="left")
    for column in (
        "model / engine",
        "TTFT p50/p99",
        "ITL p50/p99",
        "E2E p50/p99",
        "run",
        "wait",
        "queue trend",
        "KV use",
        "KV full in",
        "preempt/s",
        "err %",
        "in/out tok/s",
        "prefix hit",
    ):
        table.add_column(column, justify="left" if column.startswith("model") else "right")
    targets = signals.get("targets", [])
    engines_per_model: dict[str, int] = {}
    for target in targets:
        if target.get("engine") is not None:
            engines_per_model[target["model_name"]] = (
                engines_per_model.get(target["model_name"], 0) + 1
            )
    for target in targets:
        if target.get("engine") is not None and engines_per_model[target["model_name"]] < 2:
            continue  # one engine: its row would repeat the model's
        kv = target.get("kv_cache_usage")
        kv_style = "red" if kv is not None and kv >= 0.85 else ""
        slope = target.get("queue_slope")
        error_ratio = _windowed(target, "error_ratio")
        name = target["model_name"] + (f" #{target['engine']}" if target.get("engine") else "")
        table.add_row(
            name,
            f"{_fmt_seconds(_latency(target, 'ttft', '0.5'))} / "
            f"{_fmt_seconds(_latency(target, 'ttft', '0.99'))}",
            f"{_fmt_seconds(_latency(target, 'itl', '0.5'))} / "
            f"{_fmt_seconds(_latency(target, 'itl', '0.99'))}",
            f"{_fmt_seconds(_latency(target, 'e2e_latency', '0.5'))} / "
            f"{_fmt_seconds(_latency(target, 'e2e_latency', '0.99'))}",
            _fmt(target.get("requests_running"), ".0f"),
            _fmt(target.get("requests_waiting"), ".0f"),
            "-" if slope is None else f"{slope:+.2f}/s",
            Text(_fmt(None if kv is None else kv * 100, ".1f", "%"), style=kv_style),
            _fmt_eta(target.get("kv_cache_seconds_to_full")),
            _fmt(_windowed(target, "preemptions_per_second")),
            _fmt(None if error_ratio is None else error_ratio * 100, ".2f"),
            f"{_fmt(_windowed(target, 'prompt_tokens_per_second'), '.0f')} / "
            f"{_fmt(_windowed(target, 'generation_tokens_per_second'), '.0f')}",
            _fmt(_windowed(target, "prefix_cache_hit_ratio"), ".0%"),
        )
    parts: list[Any] = [header, table]
    if missing:
        parts.append(Text(f"vLLM metrics missing: {', '.join(missing)}", style="yellow"))
    parts.append(Text("windows: 1m; Ctrl-C to quit", style="dim"))
    return Group(*parts)


class _DirectSource:
    """Scrapes vLLM itself and derives locally."""

    def __init__(self, upstream: str, interval: float, session: aiohttp.ClientSession) -> None:
        from sidecar.config import load
        from sidecar.scrape.scraper import Scraper
        from sidecar.signals.history import History

        settings = load(upstream=upstream, scrape_interval=interval)
        self.history = History(max_age=settings.history_seconds)
        self.scraper = Scraper(settings, session, self.history)

    async def payload(self) -> dict[str, Any]:
        from sidecar.signals.derive import derive

        snapshot = await self.scraper.scrape_once()
        status = self.scraper.status
        if snapshot is not None and status.vllm_version is None:
            status.vllm_version = await self.scraper.fetch_version()
        signals = derive(self.history) if len(self.history) else None
        return {
            "scrape": {
                "ready": status.ready,
                "last_error": status.last_error,
                "missing_metrics": list(status.missing_metrics),
                "vllm_version": status.vllm_version,
            },
            "signals": signals.to_json() if signals else None,
        }


async def _fetch_sidecar(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    try:
        async with session.get(base.rstrip("/") + "/api/v1/signals") as response:
            data: dict[str, Any] = await response.json()
            return data
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"scrape": {"ready": False, "last_error": f"sidecar unreachable: {exc}"}}


async def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    # Piped output (logs, CI) gets a wide fixed width instead of a squashed 80-column table.
    console = Console() if sys.stdout.isatty() else Console(width=180)
    timeout = aiohttp.ClientTimeout(total=max(args.interval, 2.0))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        direct = _DirectSource(args.upstream, args.interval, session) if args.upstream else None
        source = args.upstream or args.sidecar
        deadline = time.monotonic() + args.duration if args.duration else None
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while deadline is None or time.monotonic() < deadline:
                payload = (
                    await direct.payload() if direct else await _fetch_sidecar(session, source)
                )
                live.update(render(payload, source), refresh=True)
                await asyncio.sleep(args.interval)
    return 0


def _main(args: argparse.Namespace) -> int:
    from sidecar import logs

    logs.configure("error", "console")  # scrape failures are shown in the view, not logged over it
    if not args.upstream and not args.sidecar:
        args.sidecar = "http://127.0.0.1:9400"
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``top`` to the command line."""
    parser = subparsers.add_parser("top", help="Live terminal view of vLLM's derived signals.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--sidecar", metavar="URL", help="A sidecar's admin URL (default http://127.0.0.1:9400)."
    )
    source.add_argument("--upstream", metavar="URL", help="Scrape this vLLM directly instead.")
    parser.add_argument("--interval", type=float, default=2.0, help="Refresh every N seconds.")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="Stop after N seconds (0 = until Ctrl-C)."
    )
    parser.set_defaults(func=_main)
