"""Through the real proxy: bytes a client controls outside the body still end up redacted, and
bytes that are not UTF-8 never cost a record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.proxy import ProxyServer
from sidecar.sampling.pipeline import SamplingPipeline
from tests.sampling.helpers import local_objects, records_of, settings


async def _raw_request(port: int, head: bytes, body: bytes) -> bytes:
    """One HTTP/1.1 request written byte for byte (no client library would send these)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


async def _records(
    tmp_path: Path, requests: list[tuple[bytes, bytes]], **overrides: Any
) -> list[dict[str, Any]]:
    config = settings(tmp_path, listen="127.0.0.1:0", **overrides)
    pipeline = SamplingPipeline(config)
    await pipeline.start()
    async with run_emulator(EmulatorOptions.for_tests(), port=0) as emulator:
        proxy = ProxyServer(config.replace(upstream=emulator.url), pipeline)
        await proxy.start()
        try:
            for head, body in requests:
                response = await _raw_request(proxy.port, head, body)
                assert response.startswith(b"HTTP/1.1 ")
        finally:
            await proxy.stop()
    await pipeline.stop(5.0)
    return records_of(local_objects(config.samples_dir))


async def test_an_invalid_utf8_request_id_is_replaced_not_a_reason_to_drop(tmp_path: Path) -> None:
    """A 0xFF byte in X-Request-Id: the record is written, the byte shown as U+FFFD."""
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-Id: abc\xff\xfedef\r\n"
    )
    records = await _records(tmp_path, [(head, body)], sample_rate=1.0)
    assert len(records) == 1
    assert records[0]["request_id"].startswith("abc\ufffd")
    assert records[0]["request_id"].endswith("def")


async def test_an_error_kept_by_a_rule_survives_a_bad_id_and_redacts_the_url_path(
    tmp_path: Path,
) -> None:
    """At rate 0 an error is still kept; the path's e-mail and key are redacted, the id replaced."""
    body = b'{"model": "m", "prompt": "x"}'
    head = (
        b"POST /v1/completions/alice@example.com/AKIAIOSFODNN7EXAMPLE HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nX-Request-Id: \xc3(\r\n"
    )
    records = await _records(tmp_path, [(head, body)], sample_rate=0.0)
    assert len(records) == 1
    (record,) = records
    assert record["sample_reason"] == "error"
    assert "alice@example.com" not in json.dumps(record)
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(record)
    assert record["endpoint"] == "/v1/completions/[REDACTED:email]/[REDACTED:aws_key]"
    assert record["request_id"] == "\ufffd("
