"""Every background task is supervised: a crash is logged, counted and acted on, never silent.

Two policies. :func:`restarting` runs a loop that can recover on its own (the scrape loop): a
crash is logged with its traceback, the caller marks itself not ready, and the loop is started
again after a capped exponential backoff. :func:`watch` is for tasks that must never end while
the process runs (the sampler's worker and uploader, the alert loops): if one ends, the process
is stopped with a non-zero exit code so the orchestrator restarts it, instead of serving on with
a part missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter

from sidecar.metrics import REGISTRY

TASK_FAILURES = Counter(
    "vllm_sidecar_task_failures_total",
    "Background tasks that crashed (restarted, or the process stopped), by task.",
    ["task"],
    registry=REGISTRY,
)

log = structlog.get_logger("sidecar.supervise")

RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0


async def restarting(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    on_crash: Callable[[], None],
    initial: float = RESTART_INITIAL_SECONDS,
    maximum: float = RESTART_MAX_SECONDS,
) -> None:
    """Run ``run()`` until it returns or ``stop`` is set; restart it with backoff after a crash."""
    failures = 0
    while not stop.is_set():
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            TASK_FAILURES.labels(task=name).inc()
            log.exception("background_task_crashed", task=name, restarts=failures)
            on_crash()
            delay = min(maximum, initial * 2.0 ** min(failures - 1, 30))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        else:
            return


def watch(task: asyncio.Task[None], *, name: str, on_failure: Callable[[], None]) -> None:
    """Call ``on_failure`` (after logging) if ``task`` ends other than by cancellation."""

    def done(finished: asyncio.Task[None]) -> None:
        if finished.cancelled():
            return
        error = finished.exception()
        TASK_FAILURES.labels(task=name).inc()
        if error is not None:
            log.error(
                "background_task_failed",
                task=name,
                error=f"{type(error).__name__}: {error}",
                exc_info=error,
            )
        else:
            log.error("background_task_ended", task=name)
        on_failure()

    task.add_done_callback(done)
