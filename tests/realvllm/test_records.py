"""Sampled records hold what vLLM really answered: outputs, usage, finish reasons, redacted.

Every request is sampled (rate 1.0) and the records land in the local sink; each one must carry
the same text, token counts and finish reason the client read, and no e-mail address from the
prompt.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from tests.realvllm.conftest import Backend
from tests.realvllm.drill import until
from tests.realvllm.front import sidecar_in_front

SECRET = "alice.smith@example.com"


def _records(root: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(root.rglob("*.jsonl.gz")):
        found += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    return found


async def test_sampled_records_hold_real_outputs_usage_and_finish_reasons(
    backend: Backend, tmp_path: Path
) -> None:
    async with sidecar_in_front(
        backend.url, tmp_path, sample_rate=1.0, upload_batch_max_records=1
    ) as front:
        client = AsyncOpenAI(base_url=f"{front.url}/v1", api_key="unused", max_retries=0)
        async with client:
            messages = [{"role": "user", "content": f"Write to {SECRET} about the sea."}]
            whole = await client.chat.completions.create(
                model=backend.model, messages=messages, max_tokens=7, temperature=0,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            stream = await client.completions.create(
                model=backend.model, prompt=f"Mail {SECRET}", max_tokens=5, temperature=0,
                stream=True, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            streamed_text = ""
            streamed_usage = None
            async for chunk in stream:
                streamed_text += "".join(choice.text for choice in chunk.choices)
                streamed_usage = chunk.usage or streamed_usage
        await until_records(tmp_path / "samples", 2)
    records = {r["endpoint"]: r for r in _records(tmp_path / "samples")}
    chat = records["/v1/chat/completions"]
    assert chat["status"] == 200
    assert chat["finish_reason"] == whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )
    assert chat["response"]["choices"][0]["text"] == whole.choices[0].message.content
    completion = records["/v1/completions"]
    assert completion["stream"] is True
    assert completion["response"]["choices"][0]["text"] == streamed_text
    assert streamed_usage is not None
    assert completion["completion_tokens"] == streamed_usage.completion_tokens == 5
    for record in (chat, completion):
        assert SECRET not in json.dumps(record)
        assert record["redactions"] >= 1


async def until_records(root: Path, count: int) -> None:
    async def written() -> bool:
        return len(_records(root)) >= count

    await until(written, f"{count} records in the local sink", within=30)
