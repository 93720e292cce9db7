"""Typed aiohttp storage keys shared by the emulator's handlers (plain strings warn)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from sidecar.emulator.server import EmulatorState

STATE: web.AppKey[EmulatorState] = web.AppKey("emulator")
ARRIVAL = web.RequestKey("arrival", float)
"""Monotonic time the request reached the API server (TTFT and e2e start here)."""
REQUEST_ID = web.RequestKey("request_id", str)
"""The ``X-Request-Id`` echoed on the response (the caller's, or a fresh uuid4 hex)."""
STREAMING = web.RequestKey("streaming", bool)
"""Set once an SSE response has been prepared (a disconnect then counts as HTTP 200)."""
