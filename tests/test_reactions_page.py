"""The demo page: its server-sent events, and how it looks in a real browser."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reactions.simulator import MeetingSimulator
from reactions.testing import make_event, publish_events

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def next_state(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """The next ``state`` event of an SSE stream."""
    event, data = "", ""
    while True:
        line = (await asyncio.wait_for(stream.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event == "state":
            parsed: dict[str, Any] = json.loads(data)
            return parsed


async def test_the_event_stream_delivers_gestures_and_overlays(
    amqp_url: str, sim: MeetingSimulator
) -> None:
    ready = asyncio.Event()
    follower = asyncio.create_task(sim.follow_events(amqp_url, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            first = await next_state(r.content)
            assert first["meetings"] == []
            # when bob makes a gesture (seen through the broker)
            await publish_events(amqp_url, make_event(meeting_id="demo", participant_id="bob"))
            state = await next_state(r.content)
            people = state["meetings"][0]["participants"]
            assert people[0]["id"] == "bob"
            assert people[0]["reaction"] == "thumbs_up"
            # and when the service sets an overlay in that room
            async with session.post(
                f"{sim.url}/rooms/demo/layers", data={"url": "http://x/up.gif", "z-index": "1"}
            ):
                pass
            state = await next_state(r.content)
            assert state["meetings"][0]["overlay"] == "http://x/up.gif"
            assert state["log"][-1]["status"] == 201
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (CI installs the Debian package 'chromium')",
)
async def test_the_page_renders_participants_and_the_overlay_in_chromium(
    sim: MeetingSimulator,
) -> None:
    assert CHROMIUM is not None, "CI must have chromium (apt-get install chromium)"
    # given a meeting where alice shows a thumbs up and the room shows a GIF
    sim.observe(make_event(meeting_id="demo", participant_id="alice", label="like"))
    sim.observe(make_event(meeting_id="demo", participant_id="bob", label="palm"))
    gif = f"{sim.url}/media/gifs/thumbs_up_1.gif"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/rooms/demo/layers", data={"url": gif, "z-index": "1"}) as r,
    ):
        assert r.status == 201
    # when a headless browser loads the page
    with tempfile.TemporaryDirectory() as profile:
        screenshot = Path(profile) / "page.png"
        dom = await _chromium(profile, "--dump-dom", f"{sim.url}/")
        await _chromium(
            profile, f"--screenshot={screenshot}", "--window-size=1280,800", f"{sim.url}/"
        )
        # then the live state is on it: both people with their gestures, and the GIF
        assert 'data-testid="participant"' in dom
        assert "alice" in dom
        assert "like" in dom
        assert "thumbs up" in dom
        assert "bob" in dom
        assert f'src="{gif}"' in dom
        assert screenshot.stat().st_size > 10_000
        keep = os.environ.get("MEMELEARNING_TEST_SCREENSHOT")
        if keep:
            shutil.copy(screenshot, keep)


async def _chromium(profile: str, *args: str) -> str:
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
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
