"""One home for keeping secrets out of output: settings printouts, log lines, error messages.

Secrets the settings can carry live in URLs: a password in ``upstream`` or ``alertmanager_url``
(``https://user:pass@host``), a token in a webhook URL's path or query
(``https://hooks.example.com/services/T0/B0/XXXX``, ``?token=...``). :func:`mask_url` keeps
what an operator needs to recognise the target (scheme, user, host, port) and masks the rest;
:func:`scrub` removes the secret parts of known URLs from free text such as an exception message.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def mask_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` with its password and query values masked, and its path too unless
    ``keep_path`` (webhook URLs carry their token in the path)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not parts.hostname:
        return MASK if url else url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None:
        user = parts.username + (f":{MASK}" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    path = parts.path if keep_path else (f"/{MASK}" if parts.path.strip("/") else "")
    query = ""
    if parts.query:
        names = [item.partition("=")[0] for item in parts.query.split("&")]
        query = "?" + "&".join(f"{name}={MASK}" for name in names)
    return f"{parts.scheme}://{netloc}{path}{query}"


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that :func:`mask_url` (path masked) hides, longest first."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    pieces = [parts.password or "", parts.query, parts.path.strip("/")]
    pieces += [value for item in parts.query.split("&") for value in item.split("=")[1:]]
    pieces += [segment for segment in parts.path.split("/") if len(segment) >= 4]
    return sorted({piece for piece in pieces if piece}, key=len, reverse=True)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` with every secret part of ``urls`` replaced by the mask."""
    for url in urls:
        if url:
            for piece in secret_parts(url):
                text = text.replace(piece, MASK)
    return text
