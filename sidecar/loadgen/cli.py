"""``vllm-sidecar loadgen``: drive an OpenAI-compatible server and summarise what it felt like.

Prints a live progress line on stderr (when stderr is a terminal, or with ``--progress``) and a
summary table on stdout (``--json`` for machines). Exit status: 0 when at least one request
succeeded, 1 when none did, 2 for bad arguments or an unreachable target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from sidecar.durations import seconds_flag
from sidecar.loadgen.profiles import PROFILE_NAMES
from sidecar.loadgen.report import Progress, progress_line
from sidecar.loadgen.runner import LoadError, LoadOptions, run_load

DEFAULT_DURATION = 30.0


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION
    return LoadOptions(
        target=args.target,
        profile=args.profile,
        concurrency=args.concurrency,
        requests=args.requests,
        duration=duration,
        ramp_seconds=args.ramp_seconds,
        burst_seconds=args.burst_seconds,
        idle_seconds=args.idle_seconds,
        endpoint=args.endpoint,
        stream=args.stream,
        model=args.model,
        prompt_words=args.prompt_words,
        max_tokens=args.max_tokens,
        api_key=os.environ.get("OPENAI_API_KEY") or None,
        timeout=args.timeout,
        seed=args.seed,
        drain=args.drain,
    )


def _printer(enabled: bool) -> Any:
    def show(progress: Progress) -> None:
        sys.stderr.write("\r" + progress_line(progress) + "\x1b[K")
        sys.stderr.flush()

    return show if enabled else None


def _main(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"vllm-sidecar loadgen: {exc}", file=sys.stderr)
        return 2
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        report = asyncio.run(run_load(options, on_progress=_printer(show_progress)))
    except LoadError as exc:
        print(f"vllm-sidecar loadgen: {exc}", file=sys.stderr)
        return 2
    finally:
        if show_progress:
            sys.stderr.write("\n")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console

        Console().print(report.table())
    return 0 if report.tally.ok else 1


def register(subparsers: Any) -> None:
    """Add ``loadgen`` to the command line."""
    parser = subparsers.add_parser(
        "loadgen",
        help="Load an OpenAI-compatible server (steady, ramp or burst) and summarise latencies.",
        description="Closed-loop load: keeps --concurrency requests in flight (ramped or in "
        "bursts), bounded by --requests and/or --duration (default 30 s). The API key, if any, "
        "is read from OPENAI_API_KEY.",
    )
    parser.add_argument(
        "--target",
        required=True,
        metavar="URL",
        help="Base URL of the server (the sidecar's proxy, http://127.0.0.1:8080, or vLLM).",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default="steady",
        help="steady: --concurrency from the start; ramp: 1 up to it over --ramp-seconds; "
        "burst: --burst-seconds on, --idle-seconds off (default steady).",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="Requests in flight (peak; default 8).",
    )
    parser.add_argument(
        "--requests", type=int, default=None, metavar="N", help="Stop after starting N."
    )
    parser.add_argument(
        "--duration",
        type=seconds_flag,
        default=None,
        metavar="SECONDS",
        help="Stop after SECONDS (or 30s, 5m; default 30 unless --requests is given).",
    )
    parser.add_argument(
        "--ramp-seconds",
        type=seconds_flag,
        default=None,
        metavar="SECONDS",
        help="Ramp length (default: the duration).",
    )
    parser.add_argument(
        "--burst-seconds",
        type=seconds_flag,
        default=5.0,
        metavar="SECONDS",
        help="burst: time at full concurrency (default 5).",
    )
    parser.add_argument(
        "--idle-seconds",
        type=seconds_flag,
        default=5.0,
        metavar="SECONDS",
        help="burst: silence between bursts (default 5).",
    )
    parser.add_argument(
        "--endpoint",
        choices=["chat", "completions"],
        default="chat",
        help="/v1/chat/completions or /v1/completions (default chat).",
    )
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Ask for SSE streams (default on).",
    )
    parser.add_argument(
        "--model", default=None, metavar="NAME", help="Default: the first of /v1/models."
    )
    parser.add_argument(
        "--prompt-words",
        type=int,
        default=200,
        metavar="N",
        help="Words in each generated prompt (default 200).",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=128, metavar="N", help="max_tokens (default 128)."
    )
    parser.add_argument(
        "--timeout",
        type=seconds_flag,
        default=120.0,
        metavar="SECONDS",
        help="Per request (or 2m; default 120).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="Seed of the prompts (default 0)."
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="At the end of --duration, wait for requests in flight instead of cancelling.",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Live progress line on stderr (default: only on a terminal).",
    )
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    parser.set_defaults(func=_main)
