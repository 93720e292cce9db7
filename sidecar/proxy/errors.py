"""Errors the proxy itself produces, in the shape vLLM and the OpenAI SDK use.

vLLM answers errors with ``{"error": {"message", "type", "param", "code"}}``; the SDK turns that
into a typed exception. The proxy's own failures (upstream down, upstream silent, body too large,
bad key) use the same shape so a client cannot tell them from vLLM's except by ``type``.
After a stream has started, the status line is gone; vLLM then sends the error in-band as one
SSE event followed by ``[DONE]``, and so does the proxy.
"""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web

JSON_CONTENT_TYPE: Final = "application/json"


def error_body(message: str, error_type: str, status: int) -> bytes:
    """The OpenAI-shaped error object, serialised."""
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": status}}
    return json.dumps(payload, separators=(",", ":")).encode()


def error_response(
    status: int, message: str, error_type: str, *, request_id: str | None = None
) -> tuple[web.Response, bytes]:
    """A complete error response and its body (the body is also what the sampler is offered)."""
    body = error_body(message, error_type, status)
    response = web.Response(status=status, body=body, content_type=JSON_CONTENT_TYPE)
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
    return response, body


def sse_error_events(message: str, error_type: str, status: int) -> bytes:
    """An in-band stream error exactly as vLLM frames it: the error event, then ``[DONE]``."""
    return b"data: " + error_body(message, error_type, status) + b"\n\ndata: [DONE]\n\n"
