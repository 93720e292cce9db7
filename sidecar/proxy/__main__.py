"""``python -m sidecar.proxy [--config FILE]``: the pass-through alone, without sampling.

For tests, benchmarks and debugging; production runs it inside ``vllm-sidecar run``. Settings
come from ``VLLM_SIDECAR_*`` and the optional YAML file. SIGTERM or SIGINT drains in-flight
requests within ``shutdown_grace_seconds`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog

from sidecar import logs
from sidecar.config import ConfigError, Settings, load
from sidecar.masking import mask_url
from sidecar.proxy.server import ProxyServer
from sidecar.sampling.exchange import NoSampling


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    server = ProxyServer(settings, NoSampling())
    await server.start()
    log = structlog.get_logger("sidecar.proxy")
    log.info("proxy listening", listen=settings.listen, upstream=mask_url(settings.upstream))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("proxy draining", grace_seconds=settings.shutdown_grace_seconds)
    await server.stop()
    log.info("proxy stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m sidecar.proxy", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML file of settings (flat keys).")
    args = parser.parse_args(argv)
    try:
        settings = load(config_file=args.config)
        logs.configure(settings.log_level, settings.log_format)
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"sidecar.proxy: invalid config: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # typically the listen address is taken
        print(f"sidecar.proxy: cannot serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
