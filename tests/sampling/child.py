"""A child process holding a sampling pipeline, for the crash and SIGTERM tests.

Settings come from ``VLLM_SIDECAR_*`` environment variables (as in production). Usage:

``python -m tests.sampling.child spool-and-hang N RESULT`` offers N exchanges, waits until all
are in the spool, writes RESULT and then waits to be killed.

``python -m tests.sampling.child load-until-sigterm GRACE RESULT`` offers an exchange every few
milliseconds until SIGTERM, then stops the pipeline with GRACE seconds and writes RESULT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from sidecar.config import load
from sidecar.sampling.pipeline import SamplingPipeline
from tests.sampling.helpers import chat_stream, exchange


async def spool_and_hang(count: int, result: Path) -> None:
    pipeline = SamplingPipeline(load())
    await pipeline.start()
    for n in range(count):
        pipeline.offer(exchange(f"req-{n:04d}", response_chunks=chat_stream("x")), sampled=True)
    for _ in range(3000):  # up to 30 s
        if pipeline.status()["spool_records"] >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.to_thread(result.write_text, json.dumps(pipeline.status()))
    await asyncio.Event().wait()  # until SIGKILL


async def load_until_sigterm(grace: float, result: Path) -> None:
    pipeline = SamplingPipeline(load())
    await pipeline.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    offered = 0
    while not stop.is_set():
        item = exchange(f"req-{offered:06d}", response_chunks=chat_stream("a", "b"), streamed=True)
        pipeline.offer(item, sampled=True)
        offered += 1
        if offered == 50:
            await asyncio.to_thread(Path(f"{result}.ready").touch)
        await asyncio.sleep(0.002)
    await pipeline.stop(grace)
    report = json.dumps({"offered": offered, **pipeline.status()})
    await asyncio.to_thread(result.write_text, report)


def main() -> None:
    mode, value, result = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "spool-and-hang":
        asyncio.run(spool_and_hang(int(value), result))
    else:
        asyncio.run(load_until_sigterm(float(value), result))


if __name__ == "__main__":
    main()
