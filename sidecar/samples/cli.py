"""``vllm-sidecar samples pull|query|show|export|drift``: review sampled completions.

Every subcommand takes ``--source`` as ``s3://bucket/prefix`` (read through the local cache that
``pull`` fills; ``--cache`` overrides where) or a local directory written by the embedded sink
(``vllm-sidecar demo`` writes ``./samples-data``). See ``docs/samples.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.extras import require
from sidecar.samples import commands
from sidecar.samples.output import FORMATS

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
Review sampled completions. Every subcommand takes --source: s3://bucket/prefix (read through
the local cache that `pull` fills; --cache overrides where) or a local directory written by the
sidecar's embedded sink (`vllm-sidecar demo` and `run` without a bucket write ./samples-data).
query, show, export and drift need: pip install 'vllm-sidecar[review]'. Guide: docs/samples.md."""

EXAMPLES = """\
examples:
  vllm-sidecar samples pull  --source s3://acme-llm/samples --since now-7d
  vllm-sidecar samples query --source ./samples-data \\
      "SELECT model_name, finish_reason, count(*) FROM samples GROUP BY ALL"
  vllm-sidecar samples show  --source ./samples-data REQUEST_ID
  vllm-sidecar samples drift --source ./samples-data --baseline now-2h..now-1h --current last:1h"""

NEEDS: dict[str, tuple[str, ...]] = {
    "pull": (),
    "query": ("duckdb",),
    "show": ("duckdb",),
    "export": ("duckdb",),
    "drift": ("duckdb", "numpy", "scipy", "matplotlib"),
    "replay": ("duckdb",),
    "compare": ("duckdb", "numpy", "scipy", "matplotlib"),
}
"""Subcommand -> the modules of the ``review`` extra it imports (``pull`` needs only boto3)."""


def _guarded(handler: Handler) -> Handler:
    """Turn the errors a reviewer can cause or meet into one line and an exit status."""

    def run(args: argparse.Namespace) -> int:
        from sidecar.samples.drift.config import DriftConfigError
        from sidecar.samples.manifest import CacheBusyError
        from sidecar.samples.output import OutputError
        from sidecar.samples.pull import PullError
        from sidecar.samples.semantic.errors import SemanticUnavailable
        from sidecar.samples.source import SourceError
        from sidecar.samples.timespec import TimeSpecError

        prefix = f"vllm-sidecar samples {args.command_name}"
        require(prefix, "review", NEEDS[args.command_name])
        try:
            return handler(args)
        except (
            SourceError,
            TimeSpecError,
            DriftConfigError,
            OutputError,
            SemanticUnavailable,
        ) as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return commands.EXIT_USAGE
        except (PullError, CacheBusyError) as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return commands.EXIT_FAILED
        except OSError as exc:
            print(f"{prefix}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
            return commands.EXIT_FAILED

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="s3://bucket/prefix (read through the local cache) or a local sample directory.",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="Cache directory for an s3:// source "
        "(default $XDG_CACHE_HOME/vllm-sidecar/samples/<bucket>/<prefix>).",
    )


def _s3_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="S3 endpoint (MinIO, R2, moto); AWS_ENDPOINT_URL works too.",
    )
    parser.add_argument("--region", default=None, help="S3 region (default: the AWS chain).")
    parser.add_argument("--workers", type=int, default=8, help="Parallel downloads.")
    parser.add_argument(
        "--no-progress", action="store_true", help="No progress bar or progress lines."
    )


def _range_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="Start: now-7d (or --since=-7d), 2026-11-01, 2026-11-01T05:00Z."
    )
    parser.add_argument("--until", help="End (exclusive; a bare date includes that day).")
    parser.add_argument("--model", help="Only this model (name or partition slug).")


def _add(subparsers: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text
    )
    _common(parser)
    parser.set_defaults(func=_guarded(handler), command_name=name)
    return parser


def _semantic_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="Add embedding-based signals (needs the [semantic] extra; local model, no network).",
    )
    parser.add_argument(
        "--min-semantic-shift",
        type=float,
        help="Smallest share of embedding variance between the two sides (default 0.01).",
    )


def _add_drift(subparsers: Any) -> None:
    from sidecar.samples.drift.names import SIGNAL_NAMES

    drift = _add(
        subparsers,
        "drift",
        commands.run_drift,
        "Compare two windows; exit 3 when drift passes the thresholds.",
    )
    drift.add_argument(
        "--baseline",
        required=True,
        help="RANGE[@pin=value,...]: e.g. now-14d..now-7d, last:7d@deployment=blue, "
        "2026-11-01..2026-11-07@vllm=0.32.0 (pins: deployment, vllm, sidecar, model, pod).",
    )
    drift.add_argument("--current", required=True, help="RANGE[@pin=value,...] to compare.")
    drift.add_argument("--model", help="Pin both windows to this model.")
    drift.add_argument(
        "--report",
        type=commands.resolve_report,
        default=Path("drift-report.html"),
        help="HTML report path (default drift-report.html; 'none' for no report).",
    )
    drift.add_argument("--json", type=Path, default=None, help="Also write the result as JSON.")
    drift.add_argument("--config", type=Path, help="YAML file of thresholds (names as flags).")
    drift.add_argument("--alpha", type=float, help="Family-wise significance (default 0.05).")
    drift.add_argument("--min-samples", type=int, help="Per window and signal (default 50).")
    drift.add_argument("--min-psi", type=float, help="Smallest PSI that counts (default 0.1).")
    drift.add_argument(
        "--min-share-change", type=float, help="Smallest share change that counts (0.01 = 1 pp)."
    )
    drift.add_argument(
        "--min-relative-change",
        type=float,
        help="Distributions: smallest move of median or p90 that counts (default 0.1 = 10%%).",
    )
    drift.add_argument(
        "--refusal-opening",
        action="append",
        default=[],
        help="Extra refusal opening (repeatable), e.g. 'Lo siento'.",
    )
    drift.add_argument(
        "--disable-signal", action="append", choices=SIGNAL_NAMES, help="Leave a signal out."
    )
    drift.add_argument(
        "--fail-on-insufficient",
        action="store_true",
        help="Exit 4 when no signal has enough data (for scheduled runs).",
    )
    drift.add_argument("--pull", action="store_true", help="Pull the windows' range first.")
    _semantic_flags(drift)
    _s3_flags(drift)


def _run_replay(args: argparse.Namespace) -> int:
    from sidecar.samples.replay.command import run_replay

    return run_replay(args)


def _run_compare(args: argparse.Namespace) -> int:
    from sidecar.samples.compare.command import run_compare

    return run_compare(args)


def _add_replay(subparsers: Any) -> None:
    replay = _add(
        subparsers,
        "replay",
        _run_replay,
        "Re-send sampled requests to a candidate; answers stored as a replay run.",
    )
    replay.add_argument(
        "--target", required=True, help="Candidate base URL, e.g. http://green:8000."
    )
    _range_flags(replay)
    replay.add_argument("--where", help="Extra SQL condition over the samples view.")
    replay.add_argument("--limit", type=int, help="At most this many requests.")
    replay.add_argument(
        "--concurrency", type=int, default=4, help="Requests in flight (default 4)."
    )
    replay.add_argument("--rate", type=float, help="Requests started per second (default: no cap).")
    replay.add_argument("--api-key-file", type=Path, help="File holding the target's API key.")
    replay.add_argument("--out", type=Path, help="Runs directory (default <source>/.replays).")
    replay.add_argument("--run-id", help="Name of the run (default: derived from the flags).")
    replay.add_argument("--label", default="candidate", help="deployment of candidate records.")
    replay.add_argument("--temperature", type=float, help="Override every request's temperature.")
    replay.add_argument("--seed", type=int, help="Override every request's seed.")
    replay.add_argument("--target-model", help="Override the model name sent.")
    replay.add_argument("--timeout", type=float, default=300.0, help="Per request, seconds.")
    replay.add_argument(
        "--retry-interrupted",
        action="store_true",
        help="On resume, re-send requests in flight when the last run stopped (at least once).",
    )
    replay.add_argument("--no-progress", action="store_true", help="No progress bar or lines.")


def _add_compare(subparsers: Any) -> None:
    from sidecar.samples.compare.names import PAIRED_SIGNAL_NAMES

    compare = _add(
        subparsers,
        "compare",
        _run_compare,
        "Pair a replay run with its originals; exit 3 on a regression (a CI gate).",
    )
    compare.add_argument(
        "run", metavar="RUN", help="Replay run id (under <source>/.replays) or dir."
    )
    compare.add_argument("--report", type=commands.resolve_report, help="HTML report path.")
    compare.add_argument("--json", type=Path, default=None, help="Also write the result as JSON.")
    compare.add_argument("--config", type=Path, help="YAML thresholds, as for drift.")
    compare.add_argument("--alpha", type=float, help="Family-wise significance (default 0.05).")
    compare.add_argument("--min-samples", type=int, help="Pairs needed per signal (default 50).")
    compare.add_argument("--min-share-change", type=float, help="Flips: smallest net share (0.01).")
    compare.add_argument(
        "--min-relative-change", type=float, help="Ratios: smallest typical change (0.1 = 10%%)."
    )
    compare.add_argument("--refusal-opening", action="append", default=[], help="Extra opening.")
    compare.add_argument(
        "--disable-signal", action="append", choices=PAIRED_SIGNAL_NAMES, help="Leave one out."
    )
    _semantic_flags(compare)
    compare.add_argument(
        "--min-similarity",
        type=float,
        default=0.9,
        help="--semantic: the typical pair must be at least this similar (default 0.9).",
    )
    compare.set_defaults(min_psi=None)


def register(subparsers: Any) -> None:
    """Add ``samples`` and its subcommands to the top-level parser."""
    samples = subparsers.add_parser(
        "samples",
        help="Review sampled completions: pull, query, show, export, drift.",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = samples.add_subparsers(dest="samples_command", required=True, metavar="SUBCOMMAND")

    pull = _add(actions, "pull", commands.run_pull, "Sync sample objects from S3 into the cache.")
    _range_flags(pull)
    _s3_flags(pull)

    query = _add(actions, "query", commands.run_query, "Run SQL (DuckDB) over the `samples` view.")
    query.add_argument("--format", choices=FORMATS, default="table")
    query.add_argument("--output", type=Path, help="Write to FILE (needed for parquet).")
    query.add_argument(
        "sql",
        metavar="SQL",
        help='e.g. "SELECT model_name, count(*) FROM samples GROUP BY 1" (the view `samples` has '
        "one row per record; `model` holds the partition slug, `model_name` the served name)",
    )

    show = _add(actions, "show", commands.run_show, "Print one record readably.")
    show.add_argument("--json", action="store_true", help="Print the raw record as JSON.")
    show.add_argument("id", metavar="ID", help="request_id (or a unique prefix of it).")

    export = _add(actions, "export", commands.run_export, "Write CSV/JSONL for a labelling tool.")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", type=Path, help="Write to FILE instead of stdout.")
    _range_flags(export)
    export.add_argument("--where", help="Extra SQL condition over the samples view.")
    export.add_argument("--limit", type=int, help="At most this many records.")
    export.add_argument("--order", choices=("time", "random"), default="time")
    export.add_argument("--seed", type=int, default=0, help="Seed of --order random.")

    _add_drift(actions)
    _add_replay(actions)
    _add_compare(actions)
