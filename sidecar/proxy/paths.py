"""One canonical request path: what the key check looks at is exactly what vLLM receives.

The client's raw target used to be forwarded while the key check read aiohttp's decoded path,
so ``//v1/...``, ``/./v1/...``, ``/x/../v1/...``, ``/%2e/v1/...`` or ``/V1/...`` passed the check
as "not guarded" and still reached vLLM carrying the upstream key. Now the proxy forwards
:func:`canonical_target` (dot segments resolved, repeated slashes collapsed, percent-encoded
unreserved characters decoded: RFC 3986 section 6.2.2) and decides about keys on
:func:`guard_view` of the same path: fully decoded and lower-cased, so any spelling a server
might route to a guarded path needs a key. A target that cannot be normalised (a ``..`` above
the root, a broken ``%`` escape, no leading ``/``) is refused with 400.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _resolve(path: str) -> str | None:
    """Collapse ``//`` and resolve ``.``/``..``; None when ``..`` climbs above the root."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if not out:
                return None
            out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        elif segment or last:
            out.append(segment)
    return "/" + "/".join(out)


def canonical_target(raw_target: str) -> str | None:
    """The path (and query, untouched) to forward, or None when the target is not usable."""
    path, mark, query = raw_target.partition("?")
    if not path.startswith("/") or _BAD_ESCAPE.search(path):
        return None
    resolved = _resolve(_ESCAPE.sub(_decode_unreserved, path))
    if resolved is None:
        return None
    return resolved + mark + query


def guard_view(target: str) -> str:
    """The path as the most lenient server could read it: decoded, normalised, lower-case."""
    path = target.partition("?")[0]
    decoded = _resolve(unquote(path)) or path
    return decoded.lower()
