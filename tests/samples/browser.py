"""A real headless Chromium driven over the DevTools protocol (aiohttp's websocket client).

Opens a page, collects what a person's browser would complain about (console errors and
warnings, uncaught exceptions, browser log errors, failed loads), every URL the page requested,
and a full-page PNG screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    "--window-size=1200,900",
)


@dataclass(slots=True)
class PageReport:
    """What opening one page produced."""

    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    width: int = 0
    height: int = 0


class DevTools:
    """One websocket to the browser; commands in flattened per-page sessions."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.socket.send_json(message)
        while True:
            reply = await self.socket.receive_json(timeout=30)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def wait_for(self, method: str, within: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        async with asyncio.timeout(within):
            while True:
                event = await self.socket.receive_json()
                self.events.append(event)
                if event.get("method") == method:
                    return event

    async def drain(self, seconds: float) -> None:
        """Collect events that arrive during ``seconds`` (late console messages)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self.events.append(await self.socket.receive_json())
        except TimeoutError:
            return


def _problems(events: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            texts = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            found.append(f"console.{params['type']}: {' '.join(texts)}")
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')}")
    return found


async def open_page(url: str, profile: Path) -> PageReport:
    """Load ``url`` in a fresh headless Chromium; report problems, requests and a screenshot."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium package is required (apt-get install -y chromium)"
    child = subprocess.Popen(  # noqa: ASYNC220 - a child process for the whole test
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:  # noqa: ASYNC110 - Chromium writes the file; nothing to await but time
                await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as socket,
        ):
            return await _load(DevTools(socket), url)
    finally:
        child.kill()
        child.wait(timeout=10)


async def _load(tools: DevTools, url: str) -> PageReport:
    target = await tools.call("Target.createTarget", url="about:blank")
    attached = await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    session = attached["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        await tools.call(f"{domain}.enable", session)
    tools.events.clear()
    await tools.call("Page.navigate", session, url=url)
    await tools.wait_for("Page.loadEventFired")
    await tools.drain(0.5)
    report = PageReport(problems=_problems(tools.events))
    report.requests = [
        event["params"]["request"]["url"]
        for event in tools.events
        if event.get("method") == "Network.requestWillBeSent"
    ]
    metrics = await tools.call("Page.getLayoutMetrics", session)
    size = metrics["cssContentSize"]
    report.width, report.height = int(size["width"]), int(size["height"])
    shot = await tools.call(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": report.width, "height": report.height, "scale": 1},
    )
    report.screenshot = base64.b64decode(shot["data"])
    return report
