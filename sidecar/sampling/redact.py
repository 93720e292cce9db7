"""Redaction of sample records before anything is queued to disk: fail closed.

Every string in the request and the assembled response (keys and values, at any depth) goes
through the same patterns, whatever path produced it (streamed, non-streamed, error body).
Values under credential-named keys (``api_key``, ``password``, ``authorization`` ...) are
replaced whole. After replacing, a post-check scans the output again; if anything still matches
(a pattern that re-matches its own output, a user pattern that matches the replacement token),
:class:`RedactionError` is raised and the caller drops the record instead of writing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sidecar.config import Settings
from sidecar.sampling.patterns import BUILTIN_PATTERNS, Pattern, custom_patterns

CREDENTIAL_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "session_token",
        "aws_secret_access_key",
        "aws_session_token",
        "private_key",
        "cookie",
        "set-cookie",
    }
)
"""JSON keys (case-insensitive) whose values are dropped whatever they look like."""

MAX_PASSES = 2


class RedactionError(Exception):
    """The record could not be proven clean; it must be dropped, never written."""


def token(kind: str) -> str:
    """The text that replaces a redacted span."""
    return f"[REDACTED:{kind}]"


WINDOW = 32 * 1024
"""Characters one regex call scans. Python's ``re`` holds the GIL for a whole call, so long
texts are scanned in windows: between calls the proxy's event-loop thread gets to run."""
OVERLAP = 1024
"""Windows overlap by more than the longest bounded match (an e-mail address is at most ~700)."""


def _spans(pattern: Pattern, text: str) -> Iterable[tuple[int, int]]:
    """Accepted (start, end) spans of one pattern, left to right, non-overlapping."""
    if pattern.hint is not None and pattern.hint not in text:
        return
    position = 0
    length = len(text)
    while position <= length:
        window_end = min(length, position + WINDOW)
        match = pattern.regex.search(text, position, window_end)
        if match is None:
            if window_end >= length:
                return
            position = max(position + 1, window_end - OVERLAP)
            continue
        if match.end() >= window_end < length:
            # The window may have cut the match short (or faked an end of text): redo it whole.
            whole = pattern.regex.match(text, match.start(), length)
            if whole is None:
                position = match.start() + 1
                continue
            match = whole
        start, end = match.span(pattern.group)
        accepted: int | None = None
        if start >= 0:  # -1: the group did not take part in the match
            accepted = (
                (end - start) if pattern.validate is None else pattern.validate(text[start:end])
            )
        if not accepted:
            position = match.start() + 1
            continue
        yield start, start + accepted
        position = max(start + accepted, match.start() + 1)


class Redactor:
    """Replaces every span any pattern accepts; raises when the result is not clean."""

    def __init__(self, patterns: Sequence[Pattern] = BUILTIN_PATTERNS) -> None:
        self._patterns = tuple(patterns)

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """The built-in patterns plus the user's ``redact_patterns``."""
        return cls((*BUILTIN_PATTERNS, *custom_patterns(settings.redact_patterns)))

    def redact_text(self, text: str, counts: Counter[str] | None = None) -> str:
        """One pass of every pattern over ``text``; ``counts`` collects replacements by kind."""
        for pattern in self._patterns:
            pieces: list[str] = []
            cursor = 0
            for start, end in _spans(pattern, text):
                pieces.append(text[cursor:start])
                pieces.append(token(pattern.kind))
                cursor = end
                if counts is not None:
                    counts[pattern.kind] += 1
            if pieces:
                pieces.append(text[cursor:])
                text = "".join(pieces)
        return text

    def find(self, text: str) -> str | None:
        """The kind of the first pattern that still matches ``text``, if any."""
        for pattern in self._patterns:
            for _span in _spans(pattern, text):
                return pattern.kind
        return None

    def clean_text(self, text: str, counts: Counter[str] | None = None) -> str:
        """Redact until no pattern matches; raise :class:`RedactionError` if that fails."""
        for _ in range(MAX_PASSES):
            text = self.redact_text(text, counts)
            kind = self.find(text)
            if kind is None:
                return text
        raise RedactionError(f"pattern {kind!r} still matches after redaction")

    def clean(self, value: Any, counts: Counter[str] | None = None) -> Any:
        """Redact a JSON-like tree (dicts, lists, strings, numbers); returns a new tree."""
        if isinstance(value, str):
            return self.clean_text(value, counts)
        if isinstance(value, dict):
            cleaned: dict[str, Any] = {}
            for key, item in value.items():
                clean_key = self.clean_text(str(key), counts)
                if str(key).lower() in CREDENTIAL_KEYS and item is not None:
                    cleaned[clean_key] = token("credential")
                    if counts is not None:
                        counts["credential"] += 1
                else:
                    cleaned[clean_key] = self.clean(item, counts)
            return cleaned
        if isinstance(value, list | tuple):
            return [self.clean(item, counts) for item in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            # A card or phone number sent as a JSON number still counts.
            text = str(value)
            redacted = self.clean_text(text, counts)
            return value if redacted == text else redacted
        return value

    def check(self, value: Any) -> None:
        """Raise :class:`RedactionError` if any string in the tree still matches a pattern."""
        if isinstance(value, str):
            kind = self.find(value)
            if kind is not None:
                raise RedactionError(f"pattern {kind!r} still matches after redaction")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check(str(key))
                self.check(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self.check(item)
