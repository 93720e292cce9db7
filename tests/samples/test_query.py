"""``query``, ``show`` and ``export`` over a local sample directory (the embedded sink's layout)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sidecar.cli import main
from sidecar.samples.dataset import COLUMNS, PARTITION_COLUMNS, open_dataset
from sidecar.samples.export import EXPORT_COLUMNS
from sidecar.sampling.schema import SampleRecord

Tree = tuple[Path, list[dict[str, Any]]]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _plant_bad_objects(root: Path) -> None:
    """A truncated gzip, a line of garbage, a v2 record and a stray file inside v1/."""
    partition = next(root.glob("v1/dt=*/hour=*/model=*"))
    good = next(partition.glob("*.jsonl.gz")).read_bytes()
    (partition / "pod-z-20260101T000000Z-000000000990.jsonl.gz").write_bytes(good[: len(good) // 2])
    (partition / "pod-z-20260101T000000Z-000000000991.jsonl.gz").write_bytes(
        gzip.compress(gzip.decompress(good) + b"}{ not json\n")
    )
    v2 = {"schema_version": 2, "request_id": "x", "started_at_unix": 1.0}
    (partition / "pod-z-20260101T000000Z-000000000992.jsonl.gz").write_bytes(
        gzip.compress(json.dumps(v2).encode())
    )
    (root / "v1" / "notes.txt").write_text("not a sample")


def test_view_columns_follow_the_record_schema() -> None:
    """Every schema v1 field has an explicit column type, in the schema's order."""
    assert list(COLUMNS) == list(SampleRecord.__struct_fields__)
    assert list(PARTITION_COLUMNS) == ["dt", "hour", "model"]


def test_view_reads_every_record_with_partitions(sample_tree: Tree) -> None:
    """The ``samples`` view holds each record once, typed, with dt/hour/model from the path."""
    root, records = sample_tree
    dataset = open_dataset(root)
    try:
        rows = dataset.connection.execute(
            "SELECT request_id, dt, hour, model, started_at, status, response_text "
            "FROM samples ORDER BY started_at_unix"
        ).fetchall()
        types = dict(
            dataset.connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'samples'"
            ).fetchall()
        )
    finally:
        dataset.close()
    assert [row[0] for row in rows] == [record["request_id"] for record in records]
    first = rows[0]
    assert str(first[1]) == records[0]["started_at"][:10]
    assert first[2] == int(records[0]["started_at"][11:13])
    assert first[3] == "meta-llama-llama-3.1-8b-instruct"
    assert types["request"] == "JSON"
    assert types["started_at"] == "TIMESTAMP"
    assert types["hour"] == "INTEGER"
    assert dataset.skipped == []


def test_corrupt_and_foreign_files_are_skipped_at_query_time(
    sample_tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad objects do not break the view: they are listed on stderr and left out."""
    root, records = sample_tree
    _plant_bad_objects(root)
    code, out, err = _run(
        ["samples", "query", "--source", str(root), "--format", "csv",
         "SELECT count(*) AS n FROM samples"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == ["n", str(len(records))]
    assert "skipped corrupt object" in err
    assert "line 2" in err or "not valid JSON" in err
    assert "schema_version 2" in err
    assert "v1/notes.txt" in err
    assert "skipped 2 corrupt, 2 foreign" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "table"])
def test_query_output_formats(
    fmt: str, sample_tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CSV has a header line, JSON lines embed JSON columns, Parquet round-trips, tables print."""
    root, records = sample_tree
    sql = (
        "SELECT request_id, dt, started_at, output_chars, request "
        "FROM samples ORDER BY started_at_unix LIMIT 5"
    )
    target = tmp_path / f"out.{fmt}"
    argv = ["samples", "query", "--source", str(root), "--format", fmt]
    if fmt == "parquet":
        argv += ["--output", str(target)]
    code, out, _ = _run([*argv, sql], capsys)
    assert code == 0
    first = records[0]
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert list(rows[0]) == ["request_id", "dt", "started_at", "output_chars", "request"]
        assert rows[0]["request_id"] == first["request_id"]
        assert json.loads(rows[0]["request"]) == first["request"]
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == 5
        assert lines[0]["request"] == first["request"]
        assert lines[0]["output_chars"] == first["output_chars"]
        assert lines[0]["dt"] == first["started_at"][:10]
    elif fmt == "parquet":
        read = duckdb.sql(f"SELECT request_id FROM read_parquet('{target}')").fetchall()
        assert [row[0] for row in read] == [record["request_id"] for record in records[:5]]
    else:
        assert first["request_id"] in out
        assert "5 rows" in out


def test_query_errors_are_one_line_and_leave_no_file(
    sample_tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad SQL exits 2; parquet without --output exits 2; an existing output is untouched."""
    root, _ = sample_tree
    existing = tmp_path / "keep.csv"
    existing.write_text("precious\n")
    base = ["samples", "query", "--source", str(root)]
    code, _, err = _run([*base, "--output", str(existing), "SELEC nothing"], capsys)
    assert code == 2
    assert "syntax error" in err.lower()
    assert existing.read_text() == "precious\n"
    code, _, err = _run([*base, "--format", "parquet", "SELECT 1"], capsys)
    assert code == 2
    assert "needs --output" in err
    code, _, err = _run(
        ["samples", "query", "--source", str(tmp_path / "nope"), "SELECT 1"], capsys
    )
    assert code == 2
    assert "no such directory" in err


def test_show_prints_one_record_readably(
    sample_tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    """By full id or unique prefix: metadata, the prompt and the answer; --json is the record."""
    root, records = sample_tree
    record = next(r for r in records if r["status"] == 200 and r["response"]["choices"][0]["text"])
    code, out, _ = _run(["samples", "show", "--source", str(root), record["request_id"]], capsys)
    assert code == 0
    assert record["request_id"] in out
    assert record["request"]["messages"][0]["content"][:30] in out
    assert record["response"]["choices"][0]["text"][:30] in out
    assert "finish reason" in out
    code, out, _ = _run(
        ["samples", "show", "--source", str(root), "--json", record["request_id"]], capsys
    )
    assert code == 0
    shown = json.loads(out)
    assert shown["request"] == record["request"]
    assert shown["response"]["choices"][0]["text"] == record["response"]["choices"][0]["text"]


def test_show_missing_and_ambiguous_ids(
    sample_tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    """No match exits 1; a prefix matching several records lists them and exits 2."""
    root, _ = sample_tree
    code, _, err = _run(["samples", "show", "--source", str(root), "nope-000"], capsys)
    assert code == 1
    assert "no record" in err
    code, _, err = _run(["samples", "show", "--source", str(root), "r-0000"], capsys)
    assert code == 2
    assert "matches several records" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_for_labelling(
    fmt: str, sample_tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flat rows with prompt, response, ids and metadata; filters and a fixed random order."""
    root, records = sample_tree
    target = tmp_path / f"labels.{fmt}"
    argv = ["samples", "export", "--source", str(root), "--format", fmt, "--output", str(target)]
    chosen = ["--where", "status = 200", "--order", "random", "--limit", "20"]
    code, _, err = _run([*argv, *chosen], capsys)
    assert code == 0
    assert "20 records" in err
    text = target.read_text()
    rows: list[dict[str, Any]]
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert tuple(rows[0]) == EXPORT_COLUMNS
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert rows[0]["messages"][0]["role"] == "user"
    by_id = {record["request_id"]: record for record in records}
    assert len(rows) == 20
    for row in rows:
        record = by_id[row["id"]]
        assert row["response"] == record["response"]["choices"][0]["text"]
        assert row["prompt"] == "user: " + record["request"]["messages"][0]["content"]
        assert str(row["status"]) == "200"
    again = tmp_path / f"again.{fmt}"
    argv = ["samples", "export", "--source", str(root), "--format", fmt, "--output", str(again)]
    assert main([*argv, *chosen]) == 0
    assert again.read_text() == text


def test_documented_duckdb_query_runs_over_the_layout(sample_tree: Tree) -> None:
    """The DuckDB example in docs/query-engines.md works on the layout (local path for S3)."""
    root, records = sample_tree
    doc = (Path(__file__).resolve().parents[2] / "docs" / "query-engines.md").read_text()
    block = doc.split("## DuckDB directly on S3", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    query = block.split("GROUP BY ALL;", 1)[0].split("SELECT", 1)[1]
    sql = "SELECT" + query.replace("s3://BUCKET/PREFIX", root.as_posix()) + "GROUP BY ALL"
    sql = sql.replace("DATE '2026-11-01'", "DATE '2000-01-01'")
    rows = duckdb.sql(sql).fetchall()
    assert sum(row[3] for row in rows) == len(records)
