"""Headless Chromium for the page tests: one-shot runs (``--dump-dom``,
``--screenshot``) and a page kept open whose live DOM a test reads over the DevTools
protocol, waiting for a state rather than for a timer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium is only optional outside CI: a CI run without it fails instead of skipping.
needs_chromium: Final = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (CI installs the Debian package 'chromium')",
)
_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The page samples the camera and fades gestures on timers: never throttle them.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
)


def _binary() -> str:
    assert CHROMIUM is not None, "CI must have chromium (apt-get install chromium)"
    return CHROMIUM


async def run_chromium(profile: str, *args: str) -> str:
    """Run Chromium once to its end (``--dump-dom`` prints the DOM at the load event)."""
    process = await asyncio.create_subprocess_exec(
        _binary(),
        *_FLAGS,
        f"--user-data-dir={profile}",
        # No --virtual-time-budget: the page's open event stream would stall virtual time.
        # The server embeds the state in the page, so it is complete at the load event.
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out.decode()


class LivePage:
    """A page open in Chromium: ``evaluate`` runs JavaScript in it (DevTools protocol)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def evaluate(self, expression: str) -> Any:
        number = next(self._ids)
        params = {"expression": expression, "returnByValue": True}
        await self._ws.send_json({"id": number, "method": "Runtime.evaluate", "params": params})
        while True:
            message = json.loads((await self._ws.receive()).data)
            if message.get("id") == number:
                result = message["result"]
                if "exceptionDetails" in result:
                    raise AssertionError(f"the page threw: {result['exceptionDetails']}")
                return result["result"].get("value")

    async def wait_for(
        self, expression: str, until: Callable[[Any], bool], timeout: float = 60.0
    ) -> Any:
        """The value of ``expression`` once ``until`` holds for it (polled)."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if until(value):
                    return value
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_page(profile: str, url: str, *flags: str) -> AsyncIterator[LivePage]:
    """``url`` open in headless Chromium until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    browser = await asyncio.create_subprocess_exec(
        _binary(),
        *_FLAGS,
        f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}",
        *flags,
        url,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            target = await _page_target(session, port)
            async with session.ws_connect(target, max_msg_size=0) as ws:
                yield LivePage(ws)
    finally:
        browser.terminate()
        await asyncio.wait_for(browser.wait(), 30)


async def _page_target(session: aiohttp.ClientSession, port: int) -> str:
    """The DevTools WebSocket of the browser's page, once it has one."""
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    for target in await response.json():
                        if target.get("type") == "page":
                            return str(target["webSocketDebuggerUrl"])
            await asyncio.sleep(0.1)
