"""A client that went away (499) is a client abort, reported apart from server errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import main
from sidecar.samples.dataset import open_dataset
from sidecar.samples.drift.analyse import evaluate_signals
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.observe import observations
from tests.samples.synthetic import Traffic, make_records, row_of, write_objects


def _abort(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "status": 499, "finish_reason": None, "output_chars": 12}


def _records() -> list[dict[str, Any]]:
    records = make_records(3, Traffic(error_share=0.0), 40, time.time() - 3600, span=1800.0)
    records[0] = {**records[0], "status": 500, "error_type": "InternalServerError"}
    for index in (1, 2, 3):
        records[index] = _abort(records[index])
    return records


def test_drift_counts_aborts_apart_from_errors() -> None:
    """A 499 is neither an error nor an ok response; its own signal measures it."""
    obs = observations([row_of(r) for r in _records()], refusal_openings=())
    assert int(obs.error.sum()) == 1
    assert int(obs.client_abort.sum()) == 3
    assert int(obs.ok.sum()) == 36
    names = {r.spec.name: r for r in evaluate_signals(obs, obs, DriftConfig(min_samples=2))}
    assert names["errors"].spec.title == "Server errors"
    assert "client_aborts" in names


def test_query_has_an_outcome_column(tmp_path: Path) -> None:
    """``outcome`` says ok, error or client_abort, so a GROUP BY tells them apart."""
    write_objects(tmp_path, _records())
    dataset = open_dataset(tmp_path)
    try:
        counts = dict(
            dataset.connection.execute(
                "SELECT outcome, count(*) FROM samples GROUP BY outcome"
            ).fetchall()
        )
    finally:
        dataset.close()
    assert counts == {"ok": 36, "error": 1, "client_abort": 3}


def test_show_explains_a_499(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The record view says the client aborted, not that the server failed."""
    records = _records()
    write_objects(tmp_path, records)
    code = main(["samples", "show", "--source", str(tmp_path), records[1]["request_id"]])
    out = capsys.readouterr().out
    assert code == 0
    assert "499 (client aborted" in " ".join(out.split())
