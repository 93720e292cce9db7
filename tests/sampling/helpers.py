"""Builders for exchanges and wire bodies, and readers for what the sinks hold."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sidecar.config import Settings
from sidecar.metrics import REGISTRY
from sidecar.sampling.exchange import Exchange


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with the spool and the local sink under ``tmp_path``."""
    values: dict[str, Any] = {
        "sample_rate": 1.0,
        "spool_dir": tmp_path / "spool",
        "samples_dir": tmp_path / "samples",
        "pod_name": "pod-a",
        "deployment": "blue",
        "upload_batch_max_seconds": 0.2,
        "upload_retry_initial_seconds": 0.05,
        "upload_retry_max_seconds": 0.3,
    }
    values.update(overrides)
    return Settings(**values)


def sse_event(payload: dict[str, Any]) -> bytes:
    """One SSE event exactly as vLLM frames it."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chat_stream(*pieces: str, finish: str = "stop", usage: bool = True) -> list[bytes]:
    """A streamed chat completion whose deltas are ``pieces``, with usage chunk and [DONE]."""
    chunks = [
        sse_event(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
        )
    ]
    chunks += [
        sse_event(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        )
        for piece in pieces
    ]
    chunks.append(sse_event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    if usage:
        chunks.append(
            sse_event(
                {
                    "choices": [],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                }
            )
        )
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def chat_json(text: str, finish: str = "stop") -> bytes:
    """A non-streamed chat completion body."""
    return json.dumps(
        {
            "id": "chatcmpl-2",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()


def error_json(message: str, status: int = 400) -> bytes:
    """vLLM's (OpenAI-style) error body."""
    return json.dumps(
        {"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}}
    ).encode()


def chat_request(
    content: str, *, model: str = "meta-llama/Llama-3-8B", stream: bool = False
) -> bytes:
    """A chat request body."""
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 64,
            "temperature": 0.2,
            "stream": stream,
        }
    ).encode()


def exchange(
    request_id: str,
    *,
    model: str = "meta-llama/Llama-3-8B",
    request_body: bytes | None = None,
    response_chunks: Iterable[bytes] | None = None,
    streamed: bool = False,
    status: int = 200,
    started_at: float | None = None,
    e2e_seconds: float = 0.5,
    finish_reason: str | None = None,
    error: str | None = None,
) -> Exchange:
    """An exchange like the proxy builds, with sensible defaults."""
    return Exchange(
        request_id=request_id,
        method="POST",
        path="/v1/chat/completions",
        model=model,
        key_name="team-a",
        status=status,
        request_body=request_body if request_body is not None else chat_request("hello"),
        response_chunks=list(response_chunks)
        if response_chunks is not None
        else [chat_json("hi there")],
        streamed=streamed,
        started_at=time.time() if started_at is None else started_at,
        ttft_seconds=0.05,
        e2e_seconds=e2e_seconds,
        finish_reason=finish_reason,
        error=error,
    )


def local_objects(root: Path) -> dict[str, bytes]:
    """Every object under a local sink directory, key -> gzip body."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*.jsonl.gz"))
    }


def records_of(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    """All JSON records in a set of gzip JSON-lines objects."""
    return [
        json.loads(line)
        for body in objects.values()
        for line in gzip.decompress(body).splitlines()
        if line
    ]


def metric(name: str, **labels: str) -> float:
    """Current value of one of the sidecar's own series (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(reason: str) -> float:
    """Current count of dropped samples for ``reason``."""
    return metric("vllm_sidecar_samples_dropped_total", reason=reason)
