"""Redaction of sample records before anything is queued to disk: fail closed.

Every string in the request and the assembled response (keys and values, at any depth) goes
through the same patterns, whatever path produced it (streamed, non-streamed, error body).
Values under credential-named keys (``api_key``, ``password``, ``authorization`` ...) are
replaced whole. After replacing, a post-check scans the output again; if anything still matches
(a pattern that re-matches its own output, a user pattern that matches the replacement token),
:class:`RedactionError` is raised and the caller drops the record instead of writing it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sidecar.config import Settings
from sidecar.sampling.patterns import BUILTIN_PATTERNS, Pattern, custom_patterns

CREDENTIAL_KEYS = frozenset((
    "authorization", "proxy-authorization", "api_key", "apikey", "api-key", "x-api-key",
    "password", "passwd", "secret", "client_secret", "access_token", "refresh_token", "id_token",
    "session_token", "aws_secret_access_key", "aws_session_token", "private_key", "cookie",
    "set-cookie",
))  # fmt: skip
"""JSON keys (case-insensitive) whose values are dropped whatever they look like."""

MAX_PASSES = 2


class RedactionError(Exception):
    """The record could not be proven clean; it must be dropped, never written."""


_SURROGATE = re.compile("[\ud800-\udfff]")
"""A code point UTF-8 cannot encode: aiohttp decodes an invalid header byte to one (surrogate
escape), ``json`` leaves a lone ``\\ud800`` escape as one."""


def scrub(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD (ASCII and valid text returned as is)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def token(kind: str) -> str:
    """The text that replaces a redacted span."""
    return f"[REDACTED:{kind}]"


def _regex_spans(pattern: Pattern, text: str) -> Iterable[tuple[int, int]]:
    """Accepted (start, end) spans of one pattern, left to right, non-overlapping: one search over
    the whole text, never in windows, so no seam can hide a long token."""
    if pattern.validate is None and pattern.group == 0:
        # Every match is accepted whole: one pass (RE2 encodes the text once per call).
        for found in pattern.regex.finditer(text):
            start, end = found.span()
            if end > start:
                yield start, end
        return
    position = 0
    length = len(text)
    search = pattern.regex.search
    while position <= length:
        match = search(text, position)
        if match is None:
            return
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

    def _redact(self, text: str, counts: Counter[str] | None) -> tuple[str, bool]:
        """One pass of every pattern over ``text``, and whether anything was replaced."""
        replaced = False
        for pattern in self._patterns:
            if pattern.hint is not None and pattern.hint not in text:
                continue
            pieces: list[str] = []
            cursor = 0
            for start, end in _regex_spans(pattern, text):
                pieces += (text[cursor:start], token(pattern.kind))
                cursor = end
                if counts is not None:
                    counts[pattern.kind] += 1
            if pieces:
                pieces.append(text[cursor:])
                text = "".join(pieces)
                replaced = True
        return text, replaced

    def find(self, text: str) -> str | None:
        """The kind of the first pattern that still matches ``text``, if any."""
        for pattern in self._patterns:
            if (pattern.hint is None or pattern.hint in text) and any(_regex_spans(pattern, text)):
                return pattern.kind
        return None

    def clean_text(self, text: str, counts: Counter[str] | None = None) -> str:
        """Redact until no pattern matches; raise :class:`RedactionError` if that fails.

        Lone surrogates (a header or body that was not valid UTF-8) become U+FFFD first, so
        every string that leaves here can be encoded: bad bytes never cost a record.
        """
        text = scrub(text)
        for _ in range(MAX_PASSES):
            text, replaced = self._redact(text, counts)
            # Nothing replaced: every pattern has just scanned this very text and found nothing,
            # so the post-check would find nothing either.
            kind = self.find(text) if replaced else None
            if kind is None:
                return text
        raise RedactionError(f"pattern {kind!r} still matches after redaction")

    def clean(
        self,
        value: Any,
        counts: Counter[str] | None = None,
        leaf: Callable[[str], str] | None = None,
    ) -> Any:
        """Redact a JSON-like tree (dicts, lists, strings, numbers); returns a new tree.

        Every string in the result has passed :meth:`clean_text`'s post-check, and the token
        that replaces a credential-named key's value is checked too (a user pattern could match
        it), so the result needs no further check. ``leaf``, if given, cleans string values
        instead of :meth:`clean_text` (the record cuts long ones there) and must call it.
        """
        if isinstance(value, str):
            return self.clean_text(value, counts) if leaf is None else leaf(value)
        if isinstance(value, dict):
            cleaned: dict[str, Any] = {}
            for key, item in value.items():
                clean_key = self.clean_text(str(key), counts)
                if str(key).lower() in CREDENTIAL_KEYS and item is not None:
                    if (kind := self.find(token("credential"))) is not None:
                        raise RedactionError(f"pattern {kind!r} matches the credential token")
                    cleaned[clean_key] = token("credential")
                    if counts is not None:
                        counts["credential"] += 1
                else:
                    cleaned[clean_key] = self.clean(item, counts, leaf)
            return cleaned
        if isinstance(value, list | tuple):
            return [self.clean(item, counts, leaf) for item in value]
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 10**7:
            # A card or phone number sent as a JSON number still counts, negative or written as
            # an integral float (``4111111111111111.0``) too.
            if isinstance(value, float) and not value.is_integer():
                return value
            text = str(abs(int(value)))
            redacted = self.clean_text(text, counts)
            return value if redacted == text else redacted
        return value
