"""The sidecar (the real composition root, in-process) in front of one backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sidecar import app
from sidecar.config import Settings


class Front:
    """A running sidecar: its proxy and admin URLs and its parts (history, alert engine...)."""

    def __init__(self, sidecar: app.Sidecar) -> None:
        self.sidecar = sidecar

    @property
    def url(self) -> str:
        host, port = self.sidecar.bound["proxy"]
        return f"http://{host}:{port}"

    def scraped_after(self, instant: float) -> bool:
        """Whether the sidecar's newest snapshot of vLLM was taken after ``instant`` (Unix s)."""
        latest = self.sidecar.history.latest()
        return latest is not None and latest.timestamp > instant

    @property
    def admin_url(self) -> str:
        host, port = self.sidecar.bound["admin"]
        return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def sidecar_in_front(upstream: str, workdir: Path, **overrides: Any) -> AsyncIterator[Front]:
    """Start the whole sidecar (proxy, scraper, alert engine, sampler) before ``upstream``."""
    values: dict[str, Any] = {
        "upstream": upstream,
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "scrape_interval": 1.0,
        "alert_evaluation_interval": 1.0,
        "spool_dir": workdir / "spool",
        "samples_dir": workdir / "samples",
        "sample_rate": 0.0,
        "shutdown_grace_seconds": 2.0,
        "upload_batch_max_seconds": 0.5,
    }
    values.update(overrides)
    sidecar = app.build(Settings(**values))
    await app.start(sidecar)
    try:
        yield Front(sidecar)
    finally:
        await app.shutdown(sidecar)
