"""The OpenMetrics parser conformance corpus, run through the scraper's own OpenMetrics path."""

from __future__ import annotations

import json

import pytest

from sidecar.scrape.errors import REASONS
from sidecar.scrape.parse import ExpositionError, Format, exposition_format, parse_snapshot
from tests.support import TEST_DATA

CORPUS = TEST_DATA / "conformance" / "openmetrics" / "parsers"
CASES = sorted(path.name for path in CORPUS.iterdir() if path.is_dir())
CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _case(name: str) -> tuple[bytes, bool]:
    spec = json.loads((CORPUS / name / "test.json").read_text())
    assert spec["type"] == "text", f"{name}: only text cases are expected in this corpus"
    body = (CORPUS / name / spec["file"]).read_bytes()
    return body, bool(spec["shouldParse"])


def test_corpus_is_complete() -> None:
    """All 211 cases are there (44 valid, 167 invalid), so a lost folder cannot pass silently."""
    verdicts = [_case(name)[1] for name in CASES]
    assert len(CASES) == 211
    assert verdicts.count(True) == 44
    assert verdicts.count(False) == 167


def test_openmetrics_content_type_selects_the_openmetrics_parser() -> None:
    """The content type used below really routes to the OpenMetrics parser, not the text one."""
    assert exposition_format(CONTENT_TYPE, b"a 1\n") is Format.OPENMETRICS


@pytest.mark.parametrize("name", CASES)
def test_case_verdict(name: str) -> None:
    """parse_snapshot on the OpenMetrics path accepts exactly the cases marked shouldParse."""
    body, should_parse = _case(name)
    if should_parse:
        snapshot = parse_snapshot(body, CONTENT_TYPE, timestamp=1.0, monotonic=2.0)
        assert snapshot.timestamp == 1.0
    else:
        with pytest.raises(ExpositionError) as caught:
            parse_snapshot(body, CONTENT_TYPE, timestamp=1.0, monotonic=2.0)
        assert caught.value.reason in REASONS
        assert str(caught.value)
