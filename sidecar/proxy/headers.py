"""Which headers cross the proxy, in each direction.

Everything passes except hop-by-hop headers (RFC 9110 section 7.6.1, plus any a ``Connection``
header names) and the framing aiohttp recomputes (``Host``, ``Content-Length`` on requests,
``Transfer-Encoding``). ``Authorization`` follows the key rules in :mod:`sidecar.proxy.keys`:
with inbound keys on, the client's header never leaves the proxy; a configured upstream key
always replaces it. ``X-Request-Id`` is forwarded and returned, generated if the client sent none.
"""

from __future__ import annotations

import os
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

REQUEST_ID: Final = "X-Request-Id"


def new_request_id() -> str:
    """A random 128-bit id as 32 hex digits (the shape of ``uuid4().hex``, at a quarter of the
    cost: one ``getrandom`` call, no UUID object)."""
    return os.urandom(16).hex()


_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED: Final = _HOP_BY_HOP | {"host", "content-length", "expect", "x-request-id"}
_NOT_RETURNED: Final = _HOP_BY_HOP | {"x-request-id"}


def _named_by_connection(headers: CIMultiDictProxy[str]) -> tuple[str, ...]:
    """Header names listed in ``Connection`` (hop-by-hop by declaration)."""
    return tuple(
        token.strip()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    )


def _without(headers: CIMultiDictProxy[str], dropped: frozenset[str]) -> CIMultiDict[str]:
    """A copy minus ``dropped`` and whatever ``Connection`` names (a C-level copy, then deletes:
    ~10x cheaper than filtering header by header in Python)."""
    copy = CIMultiDict(headers)
    for name in dropped:
        copy.popall(name, None)
    if "Connection" in headers:
        for name in _named_by_connection(headers):
            copy.popall(name, None)
    return copy


def upstream_headers(
    incoming: CIMultiDictProxy[str],
    *,
    request_id: str,
    authorization: str | None,
    keep_client_authorization: bool,
) -> CIMultiDict[str]:
    """Headers for the request to vLLM.

    ``authorization`` (the upstream key's header value) replaces the client's; without it the
    client's header is kept only when ``keep_client_authorization`` (inbound keys off).
    """
    outgoing = _without(incoming, _NOT_FORWARDED)
    if authorization or not keep_client_authorization:
        outgoing.popall("Authorization", None)
    if authorization:
        outgoing["Authorization"] = authorization
    outgoing[REQUEST_ID] = request_id
    return outgoing


def client_headers(upstream: CIMultiDictProxy[str], *, request_id: str) -> CIMultiDict[str]:
    """Headers for the response to the client: vLLM's, minus hop-by-hop, plus the request id."""
    outgoing = _without(upstream, _NOT_RETURNED)
    outgoing[REQUEST_ID] = request_id
    return outgoing
