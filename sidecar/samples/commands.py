"""What each ``vllm-sidecar samples`` subcommand does once its arguments are parsed.

Exit status: 0 done; 1 the work failed (S3 unreachable, a download failed, no such record, a
query that failed while running); 2 bad input (arguments, ranges, SQL that does not parse);
3 ``drift`` found drift; 4 ``drift --fail-on-insufficient`` had nothing it could judge.
Results go to stdout; progress, warnings and skipped objects to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sidecar.samples.source import Source, resolve_source
from sidecar.samples.timespec import TimeRange, bounded
from sidecar.samples.validate import Skipped
from sidecar.sampling.layout import slug

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MAX_SKIPPED_LINES = 20
TABLE_WIDTH = 150
"""Width of tables when stdout is not a terminal (logs of scheduled runs, CI)."""


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def report_skipped(skipped: list[Skipped], what: str) -> None:
    """One stderr line per skipped object (the first 20), then a count by kind."""
    if not skipped:
        return
    for item in skipped[:MAX_SKIPPED_LINES]:
        _err(f"{what}: skipped {item.kind} object {item.key}: {item.reason}")
    if len(skipped) > MAX_SKIPPED_LINES:
        _err(f"{what}: ... and {len(skipped) - MAX_SKIPPED_LINES} more")
    kinds = Counter(item.kind for item in skipped)
    _err(f"{what}: skipped " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))


def _source(args: argparse.Namespace) -> Source:
    source = resolve_source(args.source, args.cache)
    if source.is_s3 and not (source.root / "v1").is_dir() and args.command_name != "pull":
        _err(
            f"no cached samples for {source.text} in {source.root}; "
            f"run `vllm-sidecar samples pull --source {source.text}` first"
        )
    elif not source.is_s3 and not any((source.root / "v1").glob("dt=*/**/*.jsonl.gz")):
        _err(
            f"{source.root.resolve()} is empty: no sample objects under v1/dt=.../ "
            "(--source takes a sidecar's samples_dir, e.g. ./samples-data, or s3://bucket/prefix)"
        )
    return source


def _pull_range(args: argparse.Namespace, now: float) -> tuple[TimeRange, str | None]:
    return bounded(args.since, args.until, now), slug(args.model) if args.model else None


def run_pull(
    args: argparse.Namespace, time_range: TimeRange | None = None, model: str | None = None
) -> int:
    """``pull`` (also used by ``drift --pull`` with the windows' range)."""
    from sidecar.samples.dataset import scan
    from sidecar.samples.progress import pull_progress
    from sidecar.samples.pull import make_s3_client, pull

    source = _source(args)
    now = time.time()
    if time_range is None:
        time_range, model = _pull_range(args, now)
    if source.s3 is None:
        found = scan(source.root, time_range, model)
        report_skipped(found.skipped, "pull")
        _err(f"{source.root} is a local directory: {len(found.files)} usable objects, no pull")
        return EXIT_OK
    client = make_s3_client(args.endpoint_url, args.region, args.workers)
    result = pull(
        source.s3,
        source.root,
        client=client,
        time_range=time_range,
        model_slug=model,
        progress=pull_progress(False if args.no_progress else None),
        workers=args.workers,
        now=now,
    )
    report_skipped(result.skipped, "pull")
    for failure in result.failed[:MAX_SKIPPED_LINES]:
        _err(f"pull: failed to fetch {failure.key}: {failure.reason}")
    _err(
        f"pull: fetched {result.fetched} objects ({result.fetched_bytes / 1048576:.2f} MiB) into "
        f"{source.root}; {result.already_cached} already cached; {len(result.skipped)} skipped; "
        f"{len(result.failed)} failed"
    )
    return EXIT_FAILED if result.failed else EXIT_OK


def run_query(args: argparse.Namespace) -> int:
    """``query SQL``."""
    import duckdb

    from sidecar.samples.dataset import open_dataset
    from sidecar.samples.output import write_result

    source = _source(args)
    dataset = open_dataset(source.root)
    report_skipped(dataset.skipped, "query")
    try:
        relation = dataset.connection.sql(args.sql)
        if relation is None:
            return EXIT_OK
        write_result(relation, args.format, args.output)
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as exc:
        _err(f"query: {exc}")
        return EXIT_USAGE
    except duckdb.Error as exc:
        _err(f"query failed: {exc}")
        return EXIT_FAILED
    finally:
        dataset.close()
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """``show ID``."""
    from rich.console import Console

    from sidecar.samples.dataset import open_dataset
    from sidecar.samples.show import MAX_PREFIX_MATCHES, find_records, record_json, render

    source = _source(args)
    dataset = open_dataset(source.root)
    report_skipped(dataset.skipped, "show")
    try:
        records = find_records(dataset.connection, args.id)
    finally:
        dataset.close()
    ids = sorted({str(record["request_id"]) for record in records})
    if not records:
        _err(f"show: no record with id {args.id!r} in {source.text}")
        return EXIT_FAILED
    if len(ids) > 1:
        listed = ", ".join(ids[:MAX_PREFIX_MATCHES])
        more = " ..." if len(ids) > MAX_PREFIX_MATCHES else ""
        _err(f"show: {args.id!r} matches several records: {listed}{more}")
        return EXIT_USAGE
    for record in records:
        if args.json:
            print(record_json(record))
        else:
            render(record, Console())
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    """``export`` for a labelling tool."""
    import duckdb

    from sidecar.samples.dataset import open_dataset
    from sidecar.samples.export import export_rows, export_to

    source = _source(args)
    time_range, model = _pull_range(args, time.time())
    dataset = open_dataset(source.root, time_range, model)
    report_skipped(dataset.skipped, "export")
    clauses: list[str] = []
    params: list[Any] = []
    if time_range.start is not None:
        clauses.append("started_at_unix >= ?")
        params.append(time_range.start)
    if time_range.end is not None:
        clauses.append("started_at_unix < ?")
        params.append(time_range.end)
    if args.model:
        clauses.append("(model_name = ? OR model = ?)")
        params.extend([args.model, slug(args.model)])
    if args.where:
        clauses.append(f"({args.where})")
    rows = export_rows(
        dataset.connection,
        where=" AND ".join(clauses) or "TRUE",
        params=params,
        order=args.order,
        seed=args.seed,
        limit=args.limit,
    )
    try:
        count = export_to(args.output, args.format, rows)
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as exc:
        _err(f"export: bad --where: {exc}")
        return EXIT_USAGE
    finally:
        dataset.close()
    _err(f"export: {count} records" + (f" written to {args.output}" if args.output else ""))
    return EXIT_OK


def _drift_config(args: argparse.Namespace) -> Any:
    from sidecar.samples.drift.config import DriftConfig, load_config_file

    config = load_config_file(args.config) if args.config else DriftConfig()
    openings = None
    if args.refusal_opening:
        openings = (*config.refusal_openings, *args.refusal_opening)
    return config.with_changes(
        alpha=args.alpha,
        min_samples=args.min_samples,
        min_psi=args.min_psi,
        min_share_change=args.min_share_change,
        min_relative_change=args.min_relative_change,
        min_semantic_shift=getattr(args, "min_semantic_shift", None),
        refusal_openings=openings,
        disabled_signals=args.disable_signal or None,
    )


def _embedder(args: argparse.Namespace) -> Any:
    """The local embedding model when ``--semantic`` asks for it (fails fast without the extra)."""
    if not getattr(args, "semantic", False):
        return None
    from sidecar.samples.semantic.embed import load_embedder

    return load_embedder()


def run_drift(args: argparse.Namespace) -> int:
    """``drift --baseline RANGE --current RANGE``."""
    from rich.console import Console

    from sidecar.samples.drift.report import write_report
    from sidecar.samples.drift.run import check_windows, compare, exit_code
    from sidecar.samples.drift.table import print_result
    from sidecar.samples.progress import status
    from sidecar.samples.windows import parse_window

    config = _drift_config(args)
    now = time.time()
    baseline = parse_window(args.baseline, now).with_model(args.model)
    current = parse_window(args.current, now).with_model(args.model)
    check_windows(baseline, current)
    source = resolve_source(args.source, args.cache)
    if args.pull:
        if source.s3 is None:
            _err("drift: --pull needs an s3:// source; a local directory is read directly")
            return EXIT_USAGE
        model = slug(args.model) if args.model else None
        pulled = run_pull(args, baseline.time.union(current.time), model)
        if pulled != EXIT_OK:
            _err("drift: the pull did not complete; comparing what is cached")
    source = _source(args)
    embedder = _embedder(args)
    with status("drift: loading samples and comparing windows ..."):
        result, skipped = compare(source.root, baseline, current, config)
        if embedder is not None:
            from sidecar.samples.semantic.drift import add_semantic_signals

            add_semantic_signals(result, source.root, baseline, current, embedder)
    report_skipped(skipped, "drift")
    print_result(result, Console(width=None if sys.stdout.isatty() else TABLE_WIDTH))
    if args.report is not None:
        write_report(result, args.report, source.text)
        _err(f"drift: report written to {args.report}")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    return exit_code(result, fail_on_insufficient=args.fail_on_insufficient)


def resolve_report(value: str) -> Path | None:
    """``--report none`` turns the report off."""
    return None if value.lower() in ("none", "-", "") else Path(value)
