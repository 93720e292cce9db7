"""The local sample objects as one DuckDB view, ``samples``, with bad objects left out.

The view reads an explicit list of checked files with ``read_json`` (newline-delimited, gzip by
extension, Hive partitioning for ``dt``/``hour``/``model``) and explicit column types taken from
the record schema, so every query sees the same columns whatever a given file happens to
contain. ``request`` and ``response`` are DuckDB ``JSON`` (``response->>'$.choices[0].text'``);
``response_text`` is that first choice's text; ``started_at`` is a UTC ``TIMESTAMP``.
Files the pull already checked (the cache manifest) are trusted; every other file is checked
before it joins the view, and corrupt or foreign ones are listed in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.samples.keys import ForeignObject, is_bookkeeping, parse_key
from sidecar.samples.manifest import Manifest
from sidecar.samples.timespec import TimeRange
from sidecar.samples.validate import InvalidObject, Skipped, check_file

VIEW = "samples"
COLUMNS: dict[str, str] = {
    "schema_version": "INTEGER",
    "request_id": "VARCHAR",
    "model_name": "VARCHAR",
    "endpoint": "VARCHAR",
    "method": "VARCHAR",
    "stream": "BOOLEAN",
    "status": "INTEGER",
    "error": "VARCHAR",
    "error_type": "VARCHAR",
    "finish_reason": "VARCHAR",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "total_tokens": "BIGINT",
    "output_chars": "BIGINT",
    "n_choices": "INTEGER",
    "started_at": "TIMESTAMP",
    "started_at_unix": "DOUBLE",
    "ttft_seconds": "DOUBLE",
    "e2e_seconds": "DOUBLE",
    "sample_rate": "DOUBLE",
    "sample_reason": "VARCHAR",
    "deployment": "VARCHAR",
    "pod": "VARCHAR",
    "sidecar_version": "VARCHAR",
    "vllm_version": "VARCHAR",
    "key_name": "VARCHAR",
    "redactions": "INTEGER",
    "truncated": "BOOLEAN",
    "request": "JSON",
    "response": "JSON",
}
"""Column types of schema v1, in record order (a test keeps them in step with the schema)."""
PARTITION_COLUMNS: dict[str, str] = {"dt": "DATE", "hour": "INTEGER", "model": "VARCHAR"}


CLIENT_CLOSED = 499
"""The proxy's status for a request whose client went away first: not a server error."""
OUTCOME_SQL = (
    f"CASE WHEN status = {CLIENT_CLOSED} THEN 'client_abort' "
    "WHEN status >= 400 OR error IS NOT NULL THEN 'error' ELSE 'ok' END AS outcome"
)
"""The view's ``outcome`` column: ok, error (vLLM or the proxy failed) or client_abort (499)."""


@dataclass(slots=True)
class Scan:
    """The usable files under a root, and what was left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def scan(root: Path, time_range: TimeRange | None = None, model_slug: str | None = None) -> Scan:
    """Find, filter (by partition) and check the sample objects under ``root``."""
    result = Scan()
    if not root.is_dir():
        return result
    window = time_range or TimeRange()
    manifest = Manifest.load(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if is_bookkeeping(relative) or not path.is_file():
            continue
        try:
            key = parse_key(relative)
        except ForeignObject as exc:
            result.skipped.append(Skipped(relative, "foreign", str(exc)))
            continue
        if not key.in_scope(window, model_slug):
            continue
        size = path.stat().st_size
        if manifest.trusted(relative, size) is None:
            try:
                check_file(path)
            except InvalidObject as exc:
                result.skipped.append(Skipped(relative, exc.kind, exc.reason))
                continue
        result.files.append(path)
    return result


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in types.items()) + "}"


def view_sql(files: list[Path]) -> str:
    """``CREATE VIEW samples`` over ``files`` (an empty view with the same columns if none)."""
    derived = f"response->>'$.choices[0].text' AS response_text, {OUTCOME_SQL}"
    if not files:
        typed = [f"NULL::{kind} AS {name}" for name, kind in (COLUMNS | PARTITION_COLUMNS).items()]
        return (
            f"CREATE OR REPLACE VIEW {VIEW} AS SELECT *, {derived} "  # noqa: S608 - constants
            f"FROM (SELECT {', '.join(typed)}) WHERE FALSE"
        )
    listing = "[" + ", ".join(_sql_string(str(path)) for path in files) + "]"
    return (  # paths are quoted by _sql_string; nothing else here comes from outside
        f"CREATE OR REPLACE VIEW {VIEW} AS SELECT *, {derived} FROM read_json({listing}, "  # noqa: S608
        "format = 'newline_delimited', compression = 'gzip', hive_partitioning = true, "
        f"union_by_name = true, hive_types = {_struct(PARTITION_COLUMNS)}, "
        f"columns = {_struct(COLUMNS)})"
    )


@dataclass(slots=True)
class Dataset:
    """An in-memory DuckDB connection with the ``samples`` view, plus what the scan skipped."""

    connection: Any
    files: list[Path]
    skipped: list[Skipped]

    def close(self) -> None:
        self.connection.close()


def open_dataset(
    root: Path, time_range: TimeRange | None = None, model_slug: str | None = None
) -> Dataset:
    """Scan ``root`` and open DuckDB over the usable files (UTC session time zone)."""
    import duckdb

    found = scan(root, time_range, model_slug)
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(view_sql(found.files))
    return Dataset(connection, found.files, found.skipped)
