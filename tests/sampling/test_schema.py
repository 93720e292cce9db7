"""The record schema: one declaration, its committed JSON Schema and its docs agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.sampling.schema import SCHEMA_FILE, SampleRecord, decode, json_schema, schema_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "sample-record.md"


def test_the_committed_json_schema_is_generated_from_the_declaration() -> None:
    """Regenerate with ``python -m sidecar.sampling.schema`` when this fails."""
    assert SCHEMA_FILE.read_text() == schema_text()


def _fields(schema: dict[str, Any], name: str, prefix: str = "") -> list[str]:
    """Dotted field names of one definition and the definitions it nests (choices[].text)."""
    definition = schema["$defs"][name]
    names: list[str] = []
    for field, spec in definition["properties"].items():
        names.append(prefix + field)
        refs = re.findall(r'"#/\$defs/(\w+)"', json.dumps(spec))
        nested = "[]." if spec.get("type") == "array" else "."
        for ref in refs:
            names += _fields(schema, ref, f"{prefix}{field}{nested}")
    return names


def test_every_field_is_described_in_the_docs() -> None:
    """docs/sample-record.md names every field of the record, nested ones included."""
    doc = DOC.read_text()
    schema = json_schema()
    root = schema["$ref"].rsplit("/", 1)[1]
    names = [name.removeprefix("response.") for name in _fields(schema, root)]
    missing = [
        name
        for name in names
        if f"`{name}`" not in doc and f"`.{name.rsplit('.', 1)[-1]}`" not in doc
    ]
    assert not missing


def test_a_record_from_another_schema_version_is_refused() -> None:
    """Readers can tell a v1 record from anything else."""
    with pytest.raises(msgspec.ValidationError):
        decode(json.dumps({"schema_version": 2}))
    assert SampleRecord.__struct_fields__[0] == "schema_version"
