"""Start-up of the proxy server: a taken port is a clean error that leaves nothing open."""

from __future__ import annotations

import gc
import socket

import pytest

from sidecar.config import Settings
from sidecar.proxy import PROXY_HANDLER, NoSampling, ProxyServer
from tests.support import free_port


async def test_taken_port_raises_and_closes_the_session() -> None:
    """Binding a busy port raises OSError after closing the upstream session it had opened."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        server = ProxyServer(Settings(listen=f"127.0.0.1:{port}"), NoSampling())
        with pytest.raises(OSError, match="address already in use"):
            await server.start()
    session = server.app[PROXY_HANDLER].session
    assert session is not None
    assert session.closed
    gc.collect()  # an unclosed session would warn (and fail the run) here
