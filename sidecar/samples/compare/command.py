"""``vllm-sidecar samples compare RUN``: pair a replay run with its originals and judge it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sidecar.samples.compare.analyse import analyse, exit_code
from sidecar.samples.compare.pairs import Pairs, load_pairs
from sidecar.samples.replay.command import RUNS_DIR
from sidecar.samples.semantic.embed import Embedder
from sidecar.samples.semantic.similarity import pair_similarity
from sidecar.samples.source import SourceError, resolve_source

TABLE_WIDTH = 150


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_dir_for(source_root: Path, run: str) -> Path:
    """``RUN`` as a directory, or a run id under ``<source>/.replays``."""
    as_path = Path(run).expanduser()
    if as_path.is_dir():
        return as_path
    candidate = source_root / RUNS_DIR / run
    if candidate.is_dir():
        return candidate
    raise SourceError(f"no replay run {run!r} (neither a directory nor under {candidate.parent})")


def answer_similarity(pairs: Pairs, embedder: Embedder) -> npt.NDArray[np.float64]:
    """Cosine similarity per pair where both answers are ok (NaN elsewhere)."""
    both = pairs.baseline.ok & pairs.candidate.ok
    similarity = np.full(pairs.size, np.nan)
    index = np.flatnonzero(both)
    similarity[index] = pair_similarity(
        [pairs.baseline_text[i] for i in index],
        [pairs.candidate_text[i] for i in index],
        embedder,
    )
    return similarity


def run_compare(args: argparse.Namespace) -> int:
    """``compare --source ... RUN``."""
    from rich.console import Console

    from sidecar.samples.commands import _drift_config, _embedder, report_skipped
    from sidecar.samples.compare.report import write_report
    from sidecar.samples.compare.table import verdict_table
    from sidecar.samples.progress import status

    config = _drift_config(args)
    source = resolve_source(args.source, args.cache)
    run_dir = run_dir_for(source.root, args.run)
    embedder = _embedder(args)
    with status("compare: pairing baseline and candidate answers ..."):
        pairs = load_pairs(source.root, run_dir, config.refusal_openings)
        if embedder is not None:
            pairs.similarity = answer_similarity(pairs, embedder)
        result = analyse(run_dir.name, pairs, config, args.min_similarity)
    report_skipped(pairs.skipped, "compare")
    if pairs.unpaired_candidates:
        _err(f"compare: {pairs.unpaired_candidates} candidate answers have no original; ignored")
    Console(width=None if sys.stdout.isatty() else TABLE_WIDTH).print(verdict_table(result))
    if args.report is not None:
        write_report(result, args.report)
        _err(f"compare: report written to {args.report}")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    return exit_code(result)
