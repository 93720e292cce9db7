"""Bytes of a ``/metrics`` response -> a :class:`~sidecar.snapshot.Snapshot`, or ExpositionError.

Parsing is prometheus_client's own (text 0.0.4 and OpenMetrics parsers); this module decides which
one to use, guards the edges the parsers do not (truncation, encoding), folds the ``vllm_``
escaping back to ``vllm:``, and hands the families to :mod:`sidecar.scrape.normalise`.

Content negotiation (by the media type of ``Content-Type``; parameters are ignored, the body is
always read as UTF-8, which both formats mandate):

* ``application/openmetrics-text`` -> OpenMetrics parser (strict; requires ``# EOF``).
* ``text/plain`` (version 0.0.4, 1.0.0 or none) -> text-format parser.
* no header, ``application/octet-stream``, ``*/*`` or another ``text/*`` type (servers label
  loosely) -> sniffed: OpenMetrics if the last line is ``# EOF``, else text format.
* anything else (``text/html`` or ``text/xml`` error pages, JSON, protobuf, ...) ->
  ``unsupported_content_type``: parsing an HTML error page as metrics would only produce a
  confusing syntax error.

The ``vllm_`` fold: asked for OpenMetrics, prometheus_client >= 0.2x escapes ``vllm:x`` in sample
names to ``vllm_x`` but leaves ``# TYPE vllm:x`` alone, so the typed family comes out empty and its
samples land in untyped families. Every line whose name starts with ``vllm_`` (sample, ``HELP``,
``TYPE`` or ``UNIT``) is rewritten to ``vllm:`` before parsing, in both formats (text format 1.0.0
can escape the same way). vLLM has no genuine ``vllm_`` names, so nothing else is renamed.

Truncation: OpenMetrics needs a ``# EOF`` line; the text format has no end marker, so a non-empty
text body that does not end in a newline is taken as cut off.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from enum import StrEnum

from prometheus_client import parser as text_parser
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser

from sidecar.scrape.errors import REASONS, ExpositionError, Reason
from sidecar.scrape.normalise import snapshot_from_families
from sidecar.snapshot import Snapshot

__all__ = [
    "REASONS",
    "ExpositionError",
    "Format",
    "Reason",
    "exposition_format",
    "parse_families",
    "parse_snapshot",
]

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"
TEXT_MEDIA_TYPE = "text/plain"
_SNIFFED_MEDIA_TYPES = frozenset({"", "application/octet-stream", "*/*"})
_REFUSED_TEXT_TYPES = frozenset({"text/html", "text/xml"})

_ESCAPED_VLLM_NAME = re.compile(r"^(# (?:HELP|TYPE|UNIT) )?vllm_", re.MULTILINE)
_EOF_LINE = re.compile(rb"^# EOF$", re.MULTILINE)


class Format(StrEnum):
    """Which exposition format a body is parsed as."""

    TEXT = "text"
    OPENMETRICS = "openmetrics"


def parse_snapshot(
    body: bytes, content_type: str | None, *, timestamp: float, monotonic: float
) -> Snapshot:
    """Parse one scrape into a Snapshot; bad input raises ExpositionError and nothing else."""
    families = parse_families(body, content_type)
    return snapshot_from_families(families, timestamp=timestamp, monotonic=monotonic)


def parse_families(body: bytes, content_type: str | None) -> list[Metric]:
    """The metric families of a body, with ``vllm_`` names folded back to ``vllm:``."""
    chosen = exposition_format(content_type, body)
    if not body.strip():
        raise ExpositionError("empty", "the body is empty")
    _check_complete(body, chosen)
    text = _decode(body)
    if "vllm_" in text:
        text = _ESCAPED_VLLM_NAME.sub(r"\1vllm:", text)
    if chosen is Format.OPENMETRICS:
        return _run(_openmetrics_families, text)
    return _run(text_parser.text_fd_to_metric_families, text)


def exposition_format(content_type: str | None, body: bytes) -> Format:
    """Pick the parser from the Content-Type (sniffing the body only when the header is vague)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == OPENMETRICS_MEDIA_TYPE:
        return Format.OPENMETRICS
    if media_type == TEXT_MEDIA_TYPE:
        return Format.TEXT
    if media_type in _SNIFFED_MEDIA_TYPES or (
        media_type.startswith("text/") and media_type not in _REFUSED_TEXT_TYPES
    ):
        last_line = body.rstrip().rsplit(b"\n", 1)[-1]
        return Format.OPENMETRICS if last_line == b"# EOF" else Format.TEXT
    msg = f"content type {content_type!r} is not a metrics exposition format"
    raise ExpositionError("unsupported_content_type", msg)


def _check_complete(body: bytes, chosen: Format) -> None:
    if chosen is Format.TEXT:
        if not body.endswith(b"\n"):
            line = body.count(b"\n") + 1
            raise ExpositionError("truncated", "the body does not end with a newline", line=line)
    elif not body.endswith((b"# EOF", b"# EOF\n")) and _EOF_LINE.search(body) is None:
        raise ExpositionError("truncated", "OpenMetrics body has no '# EOF' line")


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        msg = f"not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}"
        raise ExpositionError("encoding", msg, line=line) from exc


class _CountingLines(io.StringIO):
    """A text stream that remembers how many lines the parser has read, to say where it failed."""

    lines_read = 0

    def __next__(self) -> str:  # type: ignore[override]  # typeshed: StringIO inherits bytes
        line = super().__next__()
        self.lines_read += 1
        return line


def _openmetrics_families(stream: _CountingLines) -> Iterable[Metric]:
    families: Iterable[Metric] = openmetrics_parser.text_fd_to_metric_families(stream)  # type: ignore[no-untyped-call]
    return families


def _run(parse: Callable[[_CountingLines], Iterable[Metric]], text: str) -> list[Metric]:
    """Drain a (lazy) prometheus_client parser; any exception it raises becomes a syntax error.

    The parsers are generators that fail part-way, so the whole body is consumed before any family
    is used. They raise ValueError for bad input, but also OverflowError (huge timestamps) or
    KeyError (malformed native histograms); all of them mean "not a valid exposition", so all are
    caught here. The line is the one the parser had reached: the offending line itself, or for a
    family-level check (histogram shape, clashing names) the first line after that family.
    """
    stream = _CountingLines(text)
    try:
        return list(parse(stream))
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        line = stream.lines_read or None
        raise ExpositionError("syntax", detail, line=line) from exc
