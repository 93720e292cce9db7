"""Baseline and candidate answers to the same prompts, paired by request id.

The baseline is the original record under ``--source``; the candidate is the replay run's record
with the same ``request_id``. Both are read through the ``samples`` DuckDB view and turned into
drift's :class:`~sidecar.samples.drift.observe.Observations` (one home for "ok", "empty",
"refusal", "JSON requested/valid"), aligned index by index. Only ids present on both sides pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.samples.dataset import open_dataset
from sidecar.samples.drift.observe import Observations, observations
from sidecar.samples.prompts import load_request, prompt_text
from sidecar.samples.validate import Skipped

PAIR_SQL = """
SELECT request_id, started_at_unix, sample_rate, status, error, finish_reason, output_chars,
       completion_tokens, ttft_seconds, e2e_seconds, model_name, deployment, vllm_version,
       sidecar_version, request, response_text,
       coalesce(json_array_length(response, '$.choices[0].tool_calls'), 0) AS tool_calls
FROM samples
"""


@dataclass(slots=True)
class Pairs:
    """Aligned baseline/candidate observations plus what the report shows of each pair."""

    ids: list[str]
    baseline: Observations
    candidate: Observations
    prompts: list[str]
    baseline_text: list[str]
    candidate_text: list[str]
    unpaired_candidates: int
    skipped: list[Skipped]
    similarity: npt.NDArray[np.float64] | None = None
    """Per-pair cosine similarity of the answers (``--semantic``), NaN where a side failed."""

    @property
    def size(self) -> int:
        return len(self.ids)


def _rows(root: Path) -> tuple[dict[str, dict[str, Any]], list[Skipped]]:
    dataset = open_dataset(root)
    try:
        cursor = dataset.connection.execute(PAIR_SQL)
        names = [column[0] for column in cursor.description]
        rows: dict[str, dict[str, Any]] = {}
        while batch := cursor.fetchmany(4096):
            for values in batch:
                row = dict(zip(names, values, strict=True))
                rows.setdefault(str(row["request_id"]), row)
    finally:
        dataset.close()
    return rows, dataset.skipped


def pair_rows(
    baseline: Mapping[str, Mapping[str, Any]],
    candidate: Mapping[str, Mapping[str, Any]],
    refusal_openings: Sequence[str],
    skipped: list[Skipped] | None = None,
) -> Pairs:
    """Pair two id -> row mappings (the columns of ``PAIR_SQL``)."""
    ids = sorted(set(baseline) & set(candidate))
    base_rows = [baseline[i] for i in ids]
    cand_rows = [candidate[i] for i in ids]
    return Pairs(
        ids=ids,
        baseline=observations(base_rows, refusal_openings),
        candidate=observations(cand_rows, refusal_openings),
        prompts=[prompt_text(load_request(row.get("request"))) for row in base_rows],
        baseline_text=[str(row.get("response_text") or "") for row in base_rows],
        candidate_text=[str(row.get("response_text") or "") for row in cand_rows],
        unpaired_candidates=len(set(candidate) - set(baseline)),
        skipped=skipped or [],
    )


def load_pairs(source_root: Path, run_dir: Path, refusal_openings: Sequence[str]) -> Pairs:
    """Read both sides from disk and pair them."""
    baseline, skipped = _rows(source_root)
    candidate, skipped_run = _rows(run_dir)
    return pair_rows(baseline, candidate, refusal_openings, skipped + skipped_run)
