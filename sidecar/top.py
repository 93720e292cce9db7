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
from urllib.parse import urlsplit

import aiohttp

from sidecar.durations import seconds_flag
from sidecar.topview import Recent, render

__all__ = ["render", "sidecar_url"]

DEFAULT_SIDECAR = "http://127.0.0.1:9400"


def sidecar_url(text: str) -> str:
    """``--sidecar`` as a base URL: ``host:port`` and ``:port`` get ``http://`` (argparse type)."""
    value = text.strip().rstrip("/")
    if value.startswith(":"):
        value = "127.0.0.1" + value
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    try:
        _ = parts.port
    except ValueError:
        ok = False
    else:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"expected the sidecar's admin address, such as 127.0.0.1:9400, got {text!r}"
        )
    return value


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
        from sidecar.signals_api import document

        snapshot = await self.scraper.scrape_once()
        status = self.scraper.status
        if snapshot is not None and status.vllm_version is None:
            status.vllm_version = await self.scraper.fetch_version()
        signals = derive(self.history) if len(self.history) else None
        return document(status, signals)


async def _fetch_sidecar(
    session: aiohttp.ClientSession, base: str
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The signals and the alerts of a sidecar (alerts None when it could not be read)."""
    try:
        async with session.get(base + "/api/v1/signals") as response:
            data: dict[str, Any] = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = f"sidecar unreachable at {base}: {exc}"
        return {"scrape": {"ready": False, "last_error": reason}}, None
    try:
        async with session.get(base + "/api/v1/alerts") as response:
            alerts = (await response.json())["data"]["alerts"]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        alerts = None
    return data, alerts


async def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    # Piped output (logs, CI) gets a wide fixed width instead of a squashed table.
    console = Console() if sys.stdout.isatty() else Console(width=180)
    timeout = aiohttp.ClientTimeout(total=max(args.interval, 2.0))
    recent = Recent()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        direct = _DirectSource(args.upstream, args.interval, session) if args.upstream else None
        source = args.upstream or args.sidecar
        deadline = time.monotonic() + args.duration if args.duration else None
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while deadline is None or time.monotonic() < deadline:
                if direct:
                    payload, alerts = await direct.payload(), None
                else:
                    payload, alerts = await _fetch_sidecar(session, source)
                recent.observe(payload, time.monotonic())
                view = render(payload, source, alerts=alerts, recent=recent, width=console.width)
                live.update(view, refresh=True)
                await asyncio.sleep(args.interval)
    return 0


def _main(args: argparse.Namespace) -> int:
    from sidecar import logs

    logs.configure("error", "console")  # scrape failures are shown in the view, not logged over it
    if not args.upstream and not args.sidecar:
        args.sidecar = DEFAULT_SIDECAR
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``top`` to the command line."""
    parser = subparsers.add_parser(
        "top",
        help="Live terminal view of vLLM's derived signals.",
        description="Live terminal view of vLLM's derived signals and the sidecar's alerts. "
        "Below 190 columns each model gets a block with the 1m and 5m windows.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--sidecar",
        metavar="HOST:PORT",
        type=sidecar_url,
        help=f"A sidecar's admin address or URL (default {DEFAULT_SIDECAR}); shows its alerts.",
    )
    source.add_argument(
        "--upstream", metavar="URL", help="Scrape this vLLM directly instead (no alerts)."
    )
    parser.add_argument(
        "--interval",
        type=seconds_flag,
        default=2.0,
        metavar="SECONDS",
        help="Refresh every SECONDS (or 1s, 500ms; default 2).",
    )
    parser.add_argument(
        "--duration",
        type=seconds_flag,
        default=0.0,
        metavar="SECONDS",
        help="Stop after SECONDS (or 30s, 5m; default 0 = until Ctrl-C).",
    )
    parser.set_defaults(func=_main)
