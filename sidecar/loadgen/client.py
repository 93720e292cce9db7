"""One timed request against an OpenAI-compatible server.

Times are taken on the client, as a user would feel them: TTFT is the arrival of the first
non-empty content delta (the role chunk does not count), inter-token gaps are between content
events, e2e ends at ``[DONE]`` (or the whole body when not streaming). Failures are classified
into a small closed set so the summary can count them by kind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

Endpoint = Literal["chat", "completions"]
ErrorKind = Literal["http_4xx", "http_5xx", "stream_error", "connect", "disconnect", "timeout"]


@dataclass(slots=True)
class RequestResult:
    """What happened to one request."""

    started: float
    """Monotonic start time."""
    e2e: float = 0.0
    ttft: float | None = None
    status: int | None = None
    error: ErrorKind | None = None
    detail: str = ""
    cancelled: bool = False
    output_tokens: int = 0
    finish_reason: str | None = None
    gaps: list[float] = field(default_factory=list)
    """Seconds between consecutive content events (streaming only)."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """The fixed part of every request of a run."""

    base_url: str
    model: str
    endpoint: Endpoint = "chat"
    stream: bool = True
    max_tokens: int = 128
    headers: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        path = "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"
        return self.base_url + path

    def body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


def _content(chunk: dict[str, Any]) -> tuple[str, str | None]:
    """Text and finish reason of the first choice of a chunk or response."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        text = delta.get("content") or ""
    elif isinstance(choice.get("message"), dict):
        text = choice["message"].get("content") or ""
    else:
        text = choice.get("text") or ""
    return str(text), choice.get("finish_reason")


async def _read_stream(response: aiohttp.ClientResponse, result: RequestResult) -> None:
    last_event: float | None = None
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        chunk = json.loads(payload)
        if "error" in chunk or chunk.get("object") == "error":
            result.error = "stream_error"
            result.detail = str(chunk.get("error", chunk))[:200]
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict) and not chunk.get("choices"):
            result.output_tokens = int(usage.get("completion_tokens") or result.output_tokens)
            continue
        text, finish = _content(chunk)
        if finish:
            result.finish_reason = finish
        if not text:
            continue
        now = time.monotonic()
        if result.ttft is None:
            result.ttft = now - result.started
        elif last_event is not None:
            result.gaps.append(now - last_event)
        last_event = now
        result.output_tokens += 1
    result.error = "disconnect"
    result.detail = "stream ended without [DONE]"


async def send(session: aiohttp.ClientSession, spec: RequestSpec, prompt: str) -> RequestResult:
    """Send one request and time it; failures end up in the result, only cancellation raises."""
    result = RequestResult(started=time.monotonic())
    try:
        async with session.post(
            spec.url(), json=spec.body(prompt), headers=dict(spec.headers)
        ) as response:
            result.status = response.status
            if response.status >= 400:
                result.error = "http_4xx" if response.status < 500 else "http_5xx"
                result.detail = (await response.text())[:200]
            elif spec.stream:
                await _read_stream(response, result)
            else:
                body = await response.json()
                text, result.finish_reason = _content(body)
                result.ttft = time.monotonic() - result.started
                usage = body.get("usage") or {}
                result.output_tokens = int(usage.get("completion_tokens") or 0) or int(bool(text))
    except TimeoutError:
        result.error = "timeout"
    except aiohttp.ClientConnectorError as exc:
        result.error, result.detail = "connect", str(exc)[:200]
    except (aiohttp.ClientError, json.JSONDecodeError, ValueError) as exc:
        result.error, result.detail = "disconnect", f"{type(exc).__name__}: {exc}"[:200]
    result.e2e = time.monotonic() - result.started
    return result
