"""The one error a scrape body can produce, with a short reason fit for a metric label.

It lives in its own module so that both the parser front end (``parse``) and the normaliser
(``normalise``) can raise it without importing each other.
"""

from __future__ import annotations

from typing import Literal, get_args

Reason = Literal[
    "empty",
    "truncated",
    "syntax",
    "encoding",
    "unsupported_content_type",
    "inconsistent",
]
"""Why a body was rejected: a closed set, so a ``reason`` label never grows unbounded."""

REASONS: frozenset[str] = frozenset(get_args(Reason))

_MAX_MESSAGE = 300
"""Parser messages quote the offending line; a garbage body can be one 60 KB line."""


class ExpositionError(ValueError):
    """The body could not be read as a metrics exposition.

    The message says what and, when known, which line; ``reason`` is the short label the scraper
    counts failures by.
    """

    reason: Reason
    line: int | None

    def __init__(self, reason: Reason, message: str | None = None, *, line: int | None = None):
        self.reason = reason
        self.line = line
        text = message or reason
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 3] + "..."
        if line is not None:
            text = f"line {line}: {text}"
        super().__init__(text)
