"""Writing a query's result as a terminal table, CSV (with a header line), JSON lines or Parquet.

``JSON`` columns (``request``, ``response``) are embedded as objects in JSON lines and as compact
JSON text in CSV; timestamps are ISO 8601. Files given with ``--output`` are written to a
temporary name and renamed at the end, so a failed query never leaves half a file behind (nor
destroys the one that was there).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import decimal
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

Format = Literal["table", "csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("table", "csv", "jsonl", "parquet")
TABLE_MAX_ROWS = 500
TABLE_MAX_CELL = 160
_BATCH = 2048


class OutputError(ValueError):
    """An output request that cannot be met (``parquet`` without ``--output`` ...)."""


def plain(value: Any, *, json_text: bool) -> Any:  # noqa: PLR0911 - one return per type
    """A DuckDB value as plain JSON data (``json_text``: the value is JSON to be parsed)."""
    if value is None:
        return None
    if json_text and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(item, json_text=False) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item, json_text=False) for key, item in value.items()}
    return value


def _cell(value: Any, *, json_text: bool) -> str:
    """One value as text for CSV and tables."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if json_text and isinstance(value, str):
        return value
    converted = plain(value, json_text=False)
    if isinstance(converted, list | dict):
        return json.dumps(converted, ensure_ascii=False, separators=(",", ":"))
    return str(converted)


def _rows(relation: Any) -> Iterator[tuple[Any, ...]]:
    """Stream a relation's rows (``iter_rows`` since DuckDB 2.0, ``fetchmany`` before)."""
    if hasattr(relation, "iter_rows"):
        yield from relation.iter_rows(_BATCH)
        return
    while batch := relation.fetchmany(_BATCH):
        yield from batch


@contextlib.contextmanager
def open_target(output: Path | None, stream: TextIO) -> Iterator[TextIO]:
    """``stream`` or an atomically replaced file."""
    if output is None:
        yield stream
        return
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        temporary.replace(output)
    finally:
        temporary.unlink(missing_ok=True)


def write_result(
    relation: Any, fmt: Format, output: Path | None = None, stream: TextIO | None = None
) -> int:
    """Write a DuckDB relation in ``fmt``; returns the number of rows written."""
    out = stream or sys.stdout
    columns: list[str] = list(relation.columns)
    is_json = [str(kind) == "JSON" for kind in relation.types]
    if fmt == "parquet":
        if output is None:
            raise OutputError("--format parquet needs --output FILE")
        temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        try:
            relation.write_parquet(str(temporary))
            temporary.replace(output)
        finally:
            temporary.unlink(missing_ok=True)
        import duckdb

        with duckdb.connect(":memory:") as connection:
            counted = connection.execute(
                "SELECT count(*) FROM read_parquet(?)", [str(output)]
            ).fetchone()
        return int(counted[0]) if counted else 0
    if fmt == "table":
        return _write_table(relation, columns, is_json, out, output)
    count = 0
    with open_target(output, out) as handle:
        if fmt == "csv":
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in _rows(relation):
                writer.writerow([_cell(v, json_text=j) for v, j in zip(row, is_json, strict=True)])
                count += 1
        else:
            for row in _rows(relation):
                record = {
                    name: plain(value, json_text=j)
                    for name, value, j in zip(columns, row, is_json, strict=True)
                }
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                count += 1
    return count


def _clip(text: str) -> str:
    return text if len(text) <= TABLE_MAX_CELL else text[: TABLE_MAX_CELL - 1] + "…"


def _write_table(
    relation: Any, columns: list[str], is_json: list[bool], out: TextIO, output: Path | None
) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, header_style="bold", show_lines=False)
    count = 0
    for row in _rows(relation):
        count += 1
        if count > TABLE_MAX_ROWS:
            continue
        cells = [_cell(v, json_text=j) for v, j in zip(row, is_json, strict=True)]
        table.add_row(*(_clip(cell) for cell in cells))
    with open_target(output, out) as handle:
        console = Console(file=handle, width=None if handle.isatty() else 200)
        console.print(table)
        shown = min(count, TABLE_MAX_ROWS)
        more = f" (showing the first {shown}; use --format csv for all)" if count > shown else ""
        console.print(f"{count} row{'s' if count != 1 else ''}{more}", style="dim")
    return count
