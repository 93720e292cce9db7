"""The built-in redaction patterns: what counts as a secret or personal data in a sample.

Each pattern is a regular expression plus, where a regex alone would over-match, a validator
that accepts or trims the candidate (Luhn for card numbers, mod-97 for IBANs, the ``ipaddress``
module for IPv6). Order matters: credentials first (a bearer token may contain an email-like
string), then contact data, numbers and addresses. Replaced values look like ``[REDACTED:kind]``
and no pattern matches such a token, so redaction is idempotent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

import re2

Validator = Callable[[str], int | None]
"""Given the matched text, return how many leading characters to redact, or None to keep it."""

NOT_REDACTED = r"(?!\[REDACTED)"


def starts_after(excluded: str) -> str:
    """A start not preceded by ``excluded`` (a character class) unless that character follows a
    backslash: tool-call arguments are recorded as JSON text, where a secret at the start of a
    line follows the ``n`` of the escape ``\\n``, which is not part of the secret. (One nested
    look-behind: cheaper than an alternative of two.)"""
    return rf"(?<!(?<!\\){excluded})"


WORD_START = starts_after(r"\w")


class Match(Protocol):
    """What the redactor reads from a match (``re.Match`` and ``re2``'s match both have it)."""

    def span(self, group: int = 0, /) -> tuple[int, int]: ...

    def start(self, group: int = 0, /) -> int: ...


class Regex(Protocol):
    """A compiled expression of either engine: Python's ``re`` for the built-in patterns (they
    need look-arounds and were written not to backtrack), RE2 for the user's."""

    def search(self, text: str, pos: int = 0, /) -> Match | None: ...

    def finditer(self, text: str, /) -> Iterator[Match]: ...


@dataclass(frozen=True, slots=True)
class Pattern:
    """One kind of sensitive span."""

    kind: str
    regex: Regex
    group: int = 0
    """The regex group to replace (0 = the whole match; e.g. only the value of ``key=value``)."""
    validate: Validator | None = None
    hint: str | None = None
    """A substring every match contains: texts without it skip the regex (a cheap pre-filter)."""


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    doubled = (int(char) * (1 + position % 2) for position, char in enumerate(reversed(digits)))
    return sum(value - 9 if value > 9 else value for value in doubled) % 10 == 0


def _card(text: str) -> int | None:
    digits = "".join(char for char in text if char.isdigit())
    return len(text) if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97."""
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _iban(text: str) -> int | None:
    """Accept the longest prefix of the candidate that is a valid IBAN (trailing words trimmed)."""
    positions = [index for index, char in enumerate(text) if char != " "][:34]
    compact = "".join(text[index] for index in positions).upper()
    for length in range(len(compact), 14, -1):
        if iban_ok(compact[:length]):
            return positions[length - 1] + 1
    return None


def _ipv6(text: str) -> int | None:
    if sum(1 for group in text.split(":") if group) < 2:
        return None
    with contextlib.suppress(ValueError):
        ipaddress.IPv6Address(text)
        return len(text)
    return None


def _phone(text: str) -> int | None:
    digits = sum(char.isdigit() for char in text)
    return len(text) if 8 <= digits <= 15 else None


def _mixed(text: str) -> bool:
    return (
        any(char.isupper() for char in text)
        and any(char.islower() for char in text)
        and any(char.isdigit() for char in text)
    )


def _aws_secret(text: str) -> int | None:
    """Accept 40 characters that mix cases and digits, alone or between slashes of a longer run
    (a URL path): then the run up to the key's end is redacted."""
    if len(text) == 40:
        return 40 if _mixed(text) else None
    starts = [0, *(index + 1 for index, char in enumerate(text) if char == "/")]
    for start in starts:
        end = start + 40
        if (end == len(text) or text[end : end + 1] == "/") and _mixed(text[start:end]):
            return end
    return None


_AT = r"(?:@|%40|\uff20|\\u0040|\\u[fF][fF]20)"
"""An at sign: plain, URL-encoded, full-width (U+FF20), or JSON-escaped inside a JSON string
(tool-call arguments are JSON text)."""
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_CREDENTIAL_WORDS = (
    r"api[_-]?key|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?access)?(?:[_-]?key)?|client[_-]?secret"
    r"|auth[_-]?token|access[_-]?token|refresh[_-]?token|id[_-]?token|session[_-]?token"
    r"|password|passwd|passphrase|pwd"
)


AWS_KEY_PREFIXES = (
    "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA",
)  # fmt: skip


def compile_user_pattern(expression: str) -> Regex:
    """A user's ``redact_patterns`` entry, compiled by RE2: matching takes time linear in the
    text, so no pattern (``(a+)+$`` included) can stall the record path. RE2 has no
    look-arounds or back-references; such a pattern raises ``ValueError`` naming the problem."""
    options = re2.Options()
    options.log_errors = False
    try:
        return cast(Regex, re2.compile(expression, options))
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"RE2 cannot compile it: {message}") from exc


BUILTIN_PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        hint="-----BEGIN",
    ),
    Pattern(
        "jwt",
        # No word boundary: "eyJ...eyJ....sig" is specific enough, and "token_eyJ..." is one too.
        re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        hint="eyJ",
    ),
    Pattern(
        "authorization",
        re.compile(
            r"(?i)\b(?:proxy-)?authorization\b[\"']?\s*+[:=]\s*+[\"']?+"
            + NOT_REDACTED
            + r"((?:[A-Za-z]+\s+)?[^\s\"']{4,})"
        ),
        group=1,
    ),
    Pattern(
        "bearer",
        re.compile(r"(?i)\bbearer\s+(?=[A-Za-z._~+/-]*\d)[A-Za-z0-9._~+/-]{12,}=*"),
    ),
    Pattern(
        "api_key",
        re.compile(
            WORD_START + r"(?:sk-[A-Za-z0-9_-]{16,}"
            r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}"
            r"|github_pat_[A-Za-z0-9_]{30,}"
            r"|glpat-[A-Za-z0-9_-]{20,}"
            r"|xox[abeprs]-[A-Za-z0-9-]{10,}"
            r"|xapp-[A-Za-z0-9-]{10,}"
            r"|AIza[0-9A-Za-z_-]{35}"
            r"|hf_[A-Za-z0-9]{30,})"
        ),
    ),
    Pattern(
        "aws_key",
        re.compile(WORD_START + r"(?:" + "|".join(AWS_KEY_PREFIXES) + r")[A-Z0-9]{16}\b"),
    ),
    Pattern(
        "aws_secret",
        # A whole run of the base64 alphabet (the look-behind makes the search start only at a
        # run's beginning, so a long base64 blob costs one pass); the validator keeps runs of
        # exactly 40 characters that mix upper case, lower case and digits, as AWS secret keys do.
        re.compile(starts_after(r"[A-Za-z0-9/+]") + r"[A-Za-z0-9/+]{40,}+(?!=)"),
        validate=_aws_secret,
    ),
    Pattern(
        "webhook",
        # Plain, URL-encoded (a query parameter) or with JSON-escaped slashes.
        re.compile(
            r"(?:https?(?::|%3[Aa])(?:/|%2[Ff]|\\/){2})?hooks\.slack\.com(?:/|%2[Ff]|\\/)"
            r"(?:services|workflows|triggers)(?:[\w-]|/|%2[Ff]|\\/)+"
        ),
        hint="hooks.slack.com",
    ),
    Pattern(
        "credential",
        re.compile(
            r"(?i)(?:"
            + _CREDENTIAL_WORDS
            + r")\b[\"']?\s*+[:=]\s*+[\"']?+"
            + NOT_REDACTED
            + r"([^\s\"',;]{6,})"
        ),
        group=1,
    ),
    Pattern(
        "email",
        re.compile(
            r"[A-Za-z0-9._%+-]{1,64}" + _AT + r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
            r"\.[A-Za-z]{2,24}"
        ),
    ),
    Pattern(
        "iban",
        re.compile(WORD_START + r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,34}\b"),
        validate=_iban,
    ),
    Pattern(
        "card",
        re.compile(
            starts_after(r"[\w+-]") + r"(?:\d{13,19}"
            r"|\d{4}([ .-])\d{4}\1\d{4}\1\d{1,7}"
            r"|\d{4}[ .-]\d{6}[ .-]\d{4,5})(?![\w-])"
        ),
        validate=_card,
    ),
    Pattern(
        "ipv6",
        re.compile(
            starts_after(r"[\w:.]") + r"(?:[0-9A-Fa-f]{0,4}:){2,7}"
            r"(?:" + _OCTET + r"(?:\." + _OCTET + r"){3}|[0-9A-Fa-f]{0,4})(?![\w:])"
        ),
        validate=_ipv6,
        hint=":",
    ),
    Pattern(
        "ipv4",
        re.compile(
            starts_after(r"[\w.]") + r"(?:" + _OCTET + r"\.){3}" + _OCTET + r"(?!\.?\d)(?!\w)"
        ),
        hint=".",
    ),
    Pattern(
        "phone",
        re.compile(
            starts_after(r"[\w+]") + r"(?:"
            r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"
            r"|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            r"|0\d{1,4}[ /-]?\d{3,4}[ -]?\d{3,4}"
            r"|0[1-9]([ .-]?)\d\d(?:\1\d\d){3}"  # French style: 06 12 34 56 78
            r"|\d{10}"  # bare ten digits (this also takes a Unix time in seconds written in text)
            r")(?![\w])"
        ),
        validate=_phone,
    ),
)


def custom_patterns(expressions: list[str]) -> tuple[Pattern, ...]:
    """User-supplied regular expressions (already validated by the settings)."""
    return tuple(Pattern("custom", compile_user_pattern(expression)) for expression in expressions)
