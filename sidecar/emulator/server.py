"""The aiohttp application that answers like ``vllm serve``.

One middleware does what vLLM's middleware stack does, in the same order: request id, API-key
check (only on the guarded prefixes, never for OPTIONS), error shapes, and the
prometheus-fastapi-instrumentator bookkeeping. An ``unhealthy`` outage answers 503 on ``/health``
and on the API while ``/metrics`` keeps working, as a dead engine behind a live API server would.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.emulator import admin, exposition, generate, keys, protocol
from sidecar.emulator.controls import Controls
from sidecar.emulator.engine import Engine
from sidecar.emulator.families import FACTS, ProfileFacts
from sidecar.emulator.httpstats import HttpStats
from sidecar.emulator.options import EmulatorOptions

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUTHORIZED = b'{"error":"Unauthorized"}'


@dataclass(slots=True)
class EmulatorState:
    """Everything the handlers share for one emulator instance."""

    options: EmulatorOptions
    controls: Controls
    engine: Engine
    facts: ProfileFacts
    http: HttpStats | None
    registry: CollectorRegistry
    started: float = field(default_factory=time.time)
    key_digests: tuple[bytes, ...] = ()

    @classmethod
    def create(cls, options: EmulatorOptions) -> EmulatorState:
        controls = Controls(options)
        engine = Engine(options, controls)
        http = None if options.metrics_profile == "v0.6" else HttpStats()
        return cls(
            options=options,
            controls=controls,
            engine=engine,
            facts=FACTS[options.metrics_profile],
            http=http,
            registry=exposition.build_registry(engine, http),
            key_digests=tuple(hashlib.sha256(key.encode()).digest() for key in options.api_keys),
        )

    @property
    def fingerprint(self) -> str | None:
        """``system_fingerprint``: ``vllm-<version>-<8 hex>`` per server start (>= 0.32)."""
        if not self.facts.system_fingerprint:
            return None
        version = self.options.vllm_version or self.facts.version
        digest = hashlib.sha256(f"{self.started}-{self.options.seed}".encode()).hexdigest()
        return f"vllm-{version}-{digest[:8]}"

    def authorized(self, header: str | None) -> bool:
        """vLLM's check: ``Bearer <key>`` (scheme case-insensitive), SHA-256 + compare_digest."""
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        digest = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for expected in self.key_digests:
            matched |= secrets.compare_digest(digest, expected)
        return matched


def _json_error(error: protocol.ApiError, flat: bool) -> web.Response:
    return web.Response(
        status=error.status,
        body=protocol.dumps(error.body(flat=flat)).encode(),
        content_type="application/json",
    )


def _json_response(value: object, status: int = 200) -> web.Response:
    """JSON as FastAPI sends it: ``content-type: application/json``, no charset parameter."""
    return web.Response(
        status=status, body=protocol.dumps(value).encode(), content_type="application/json"
    )


def _handler_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "none"


def _gate(state: EmulatorState, request: web.Request) -> web.Response | None:
    """The API-key check and an ``unhealthy`` outage, before any handler runs."""
    path = request.path
    guarded = path.startswith(state.facts.guarded_prefixes)
    needs_key = state.key_digests and guarded and request.method != "OPTIONS"
    if needs_key and not state.authorized(request.headers.get("Authorization")):
        return web.Response(status=401, body=UNAUTHORIZED, content_type="application/json")
    if state.controls.faults.outage != "unhealthy":
        return None
    if path == "/health":
        return web.Response(status=503)
    if guarded:
        outage = protocol.ApiError(
            503, "ServiceUnavailableError", "The engine is unavailable (emulated outage)."
        )
        return _json_error(outage, state.facts.flat_errors)
    return None


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state: EmulatorState = request.app[keys.STATE]
    request[keys.ARRIVAL] = time.monotonic()
    request[keys.REQUEST_ID] = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    if request.path.startswith("/_emulator/"):
        return await handler(request)
    refusal = _gate(state, request)
    if refusal is not None:
        return refusal
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except protocol.ApiError as exc:
        response = _json_error(exc, state.facts.flat_errors)
        status = exc.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        response = _json_response({"detail": exc.reason}, status=exc.status)
        return response
    except asyncio.CancelledError:
        status = 200 if request.get(keys.STREAMING) else 499
        raise
    finally:
        if state.http is not None and status != 499:
            state.http.observe(
                _handler_label(request),
                method=request.method,
                status=status,
                seconds=time.perf_counter() - started,
                request_bytes=request.content_length or 0,
                response_bytes=(response.content_length or 0) if response is not None else 0,
            )


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    state: EmulatorState = request.app[keys.STATE]
    if state.options.enable_request_id_headers and keys.REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[keys.REQUEST_ID]


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def version(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[keys.STATE]
    return _json_response({"version": state.options.vllm_version or state.facts.version})


async def models(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[keys.STATE]
    created = int(state.started)
    card = {
        "id": state.options.model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": state.options.model,
        "parent": None,
        "max_model_len": state.options.max_model_len,
        "permission": [
            {
                "id": "modelperm-" + uuid.uuid5(uuid.NAMESPACE_URL, state.options.model).hex,
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }
    return _json_response({"object": "list", "data": [card]})


async def metrics(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[keys.STATE]
    if state.facts.metrics_text_1_0 and not request.path.endswith("/"):
        body, content_type = exposition.render_fixed_text(state.registry)
    else:
        body, content_type = exposition.render(state.registry, request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await generate.handle(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await generate.handle(request, "completion")


def build_app(state: EmulatorState) -> web.Application:
    """The application for one emulator (the caller starts and stops ``state.engine``)."""
    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024 * 1024)
    app[keys.STATE] = state
    app.on_response_prepare.append(_add_request_id)
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/metrics/", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    if state.options.admin_enabled:
        admin.add_routes(app)
    return app
