"""Fire-drill endpoints under ``/_emulator/`` (not part of vLLM; off with ``--no-admin-enabled``).

``GET  /_emulator/state``      engine state per rank, current faults and behaviour
``POST /_emulator/faults``     JSON subset of latency_ms, token_latency_ms, error_rate, stall,
                               stall_share, outage (none|unhealthy|refuse), outage_seconds,
                               kv_pressure, defer; answers the new faults
``DELETE /_emulator/faults``   clear every fault
``POST /_emulator/behaviour``  JSON subset of output_tokens_mean, output_tokens_sigma,
                               length_cutoff_share, refusal_share
``POST /_emulator/abort``      engine-side abort of every request (or ``{"request_id": ...}``),
                               counted as ``finished_reason="abort"``

They are never behind ``--api-key`` (like ``/metrics``) and never count in the ``http_*`` families.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sidecar.emulator import keys
from sidecar.emulator.controls import ControlError


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "expected a JSON object"}), content_type="application/json"
        )
    return body


def _bad(exc: ControlError) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


async def state(request: web.Request) -> web.Response:
    emulator = request.app[keys.STATE]
    return web.json_response(
        {
            "model": emulator.options.model,
            "metrics_profile": emulator.options.metrics_profile,
            "engine": emulator.engine.state(),
            "faults": emulator.controls.faults.to_json(),
            "behaviour": emulator.controls.behaviour.to_json(),
        }
    )


async def set_faults(request: web.Request) -> web.Response:
    controls = request.app[keys.STATE].controls
    try:
        faults = controls.set_faults(**await _json_body(request))
    except ControlError as exc:
        return _bad(exc)
    return web.json_response(faults.to_json())


async def clear_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[keys.STATE].controls.reset_faults().to_json())


async def set_behaviour(request: web.Request) -> web.Response:
    controls = request.app[keys.STATE].controls
    try:
        behaviour = controls.set_behaviour(**await _json_body(request))
    except ControlError as exc:
        return _bad(exc)
    return web.json_response(behaviour.to_json())


async def abort(request: web.Request) -> web.Response:
    body = await _json_body(request)
    request_id = body.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        return web.json_response({"error": "request_id must be a string"}, status=400)
    count = request.app[keys.STATE].engine.engine_abort(request_id)
    return web.json_response({"aborted": count})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/state", state)
    app.router.add_post("/_emulator/faults", set_faults)
    app.router.add_delete("/_emulator/faults", clear_faults)
    app.router.add_post("/_emulator/behaviour", set_behaviour)
    app.router.add_post("/_emulator/abort", abort)
