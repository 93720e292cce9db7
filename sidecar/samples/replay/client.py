"""One replayed request: send it to the target, read the answer, time it like a client does.

TTFT is the time to the first content (the first SSE event carrying text, or the whole body for a
non-streaming request); end-to-end is the time to the last byte. Redirects are never followed and
the environment's proxy settings are ignored, so nothing leaves for a host other than the target.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

REPLAY_HEADER = "X-Replay-Of"


class ForeignHostError(ValueError):
    """A request URL that would leave the target's host (a bug guard, never expected)."""


@dataclass(slots=True)
class Answer:
    """What the candidate said, and how long it took."""

    status: int
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    ttft_seconds: float | None = None
    e2e_seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    tool_calls: list[Any] | None = None


def target_url(target: URL, endpoint: str) -> URL:
    """``endpoint`` (``/v1/...``) under the target base URL (which may already end in /v1)."""
    base = target.path.rstrip("/")
    if base.endswith("/v1") and endpoint.startswith("/v1/"):
        base = base[: -len("/v1")]
    url = target.with_path(base + endpoint, encoded=False).with_query(None)
    if (url.scheme, url.host, url.port) != (target.scheme, target.host, target.port):
        raise ForeignHostError(f"{url} is not on the target {target}")
    return url


def _choice_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or choice.get("message")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _tool_calls(choice: dict[str, Any]) -> list[Any] | None:
    holder = choice.get("delta") or choice.get("message")
    if isinstance(holder, dict) and isinstance(holder.get("tool_calls"), list):
        return list(holder["tool_calls"])
    return None


def _error(answer: Answer, body: bytes) -> None:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer.error = body[:200].decode("utf-8", "replace") or f"HTTP {answer.status}"
        return
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        answer.error = str(error.get("message") or f"HTTP {answer.status}")[:500]
        answer.error_type = str(error.get("type") or "") or None
    else:
        answer.error = f"HTTP {answer.status}"


def _event(payload: bytes) -> dict[str, Any] | None:
    if payload == b"[DONE]":
        return None
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _take_event(event: dict[str, Any], answer: Answer, pieces: list[str], started: float) -> None:
    if isinstance(event.get("error"), dict):
        answer.error = str(event["error"].get("message") or "stream error")[:500]
        answer.error_type = str(event["error"].get("type") or "") or None
    if isinstance(event.get("usage"), dict):
        answer.usage = event["usage"]
    for choice in event.get("choices") or []:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        text = _choice_text(choice)
        if text and answer.ttft_seconds is None:
            answer.ttft_seconds = time.monotonic() - started
        pieces.append(text)
        calls = _tool_calls(choice)
        if calls:
            answer.tool_calls = (answer.tool_calls or []) + calls
        if choice.get("finish_reason"):
            answer.finish_reason = str(choice["finish_reason"])


async def _read_stream(response: aiohttp.ClientResponse, answer: Answer, started: float) -> None:
    pieces: list[str] = []
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            line = line.strip()
            event = _event(line[5:].strip()) if line.startswith(b"data:") else None
            if event is not None:
                _take_event(event, answer, pieces, started)
    answer.text = "".join(pieces)


async def send(
    session: aiohttp.ClientSession,
    url: URL,
    body: dict[str, Any],
    *,
    api_key: str | None,
    timeout_seconds: float,
    replay_of: str,
) -> Answer:
    """POST ``body`` to ``url`` and read the answer (never raises for HTTP or network errors).

    ``X-Replay-Of`` carries the original request id, so the candidate's logs can tell replayed
    traffic from real traffic.
    """
    headers = {"Content-Type": "application/json", REPLAY_HEADER: replay_of}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    stream = bool(body.get("stream"))
    started = time.monotonic()
    try:
        async with session.post(
            url,
            data=json.dumps(body).encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            answer = Answer(response.status)
            if response.status >= 300:
                _error(answer, await response.read())
            elif stream:
                await _read_stream(response, answer, started)
            else:
                raw = await response.read()
                answer.ttft_seconds = time.monotonic() - started
                data = json.loads(raw)
                choice = (data.get("choices") or [{}])[0]
                answer.text = _choice_text(choice)
                answer.tool_calls = _tool_calls(choice)
                answer.finish_reason = choice.get("finish_reason")
                answer.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, AttributeError) as exc:
        answer = Answer(
            0, error=f"{type(exc).__name__}: {exc}"[:500], error_type=type(exc).__name__
        )
    answer.e2e_seconds = time.monotonic() - started
    return answer
