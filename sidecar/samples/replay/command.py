"""``vllm-sidecar samples replay``: parse-free glue from flags to a replay run."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from yarl import URL

from sidecar.samples.progress import count_progress
from sidecar.samples.replay.plan import select_items
from sidecar.samples.replay.run import ReplayOptions, replay, write_manifest
from sidecar.samples.source import SourceError, resolve_source
from sidecar.samples.timespec import bounded

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
RUNS_DIR = ".replays"
"""Default home of replay runs, inside the source's directory (a dot-name, so the originals'
scans never read candidate answers as production samples)."""


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _api_key(path: Path | None) -> str | None:
    if path is None:
        return None
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise SourceError(f"--api-key-file {path} is empty")
    return key


def run_replay(args: argparse.Namespace) -> int:
    """``replay --source ... --target URL``."""
    source = resolve_source(args.source, args.cache)
    if source.is_s3 and not (source.root / "v1").is_dir():
        _err(
            f"replay: no cached samples for {source.text} in {source.root}; "
            f"run `vllm-sidecar samples pull --source {source.text}` first"
        )
        return EXIT_FAILED
    try:
        options = ReplayOptions(
            target=URL(args.target),
            concurrency=args.concurrency,
            rate=args.rate,
            api_key=_api_key(args.api_key_file),
            temperature=args.temperature,
            seed=args.seed,
            target_model=args.target_model,
            label=args.label,
            retry_interrupted=args.retry_interrupted,
            timeout_seconds=args.timeout,
        )
    except ValueError as exc:
        _err(f"replay: {exc}")
        return EXIT_USAGE
    time_range = bounded(args.since, args.until, time.time())
    selection = select_items(source.root, time_range, args.model, args.where, args.limit)
    for reason, count in sorted(selection.skipped.items()):
        _err(f"replay: left out {count} records: {reason}")
    chosen = {
        "since": time_range.start,
        "until": time_range.end,
        "model": args.model,
        "where": args.where,
        "limit": args.limit,
    }
    run_id = args.run_id or options.fingerprint(str(source.root.resolve()), chosen)
    runs = args.out if args.out is not None else source.root / RUNS_DIR
    run_dir = runs / run_id
    write_manifest(
        run_dir,
        str(source.root.resolve()),
        options,
        {"run_id": run_id, "selection": chosen, "request_ids": len(selection.items)},
    )
    progress = count_progress("replay", False if args.no_progress else None)
    summary = asyncio.run(replay(selection.items, run_dir, options, progress))
    _err(
        f"replay {run_id}: {summary.sent} sent ({summary.failed} failed) in "
        f"{summary.seconds:.1f}s, {summary.already_done} already done, "
        f"{summary.interrupted_left_out} interrupted earlier and not re-sent (at most once); "
        f"{summary.objects} objects in {run_dir}"
    )
    print(run_id)
    return EXIT_OK
