"""The reactions service end to end on its own side: events on the real broker in,
recorded calls on the meeting simulator out; its HTTP endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.simulator import Call, MeetingSimulator
from reactions.testing import make_event, publish_events
from worker.events import ReactionEvent

T0 = 1_750_000_000_000


def settings_for(amqp_url: str, sim: MeetingSimulator, **overrides: Any) -> ReactionsSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "meeting_api_url": sim.url,
        "http_host": "127.0.0.1",
        "http_port": 0,
        # Longer than any test: an overlay a test expects still showing (stop clears
        # it) is never cleared by its timer first, however slow the machine.
        "display_s": 3600.0,
        "backoff_base_s": 0.01,
        "ready_poll_s": 0.02,
    }
    values.update(overrides)
    return ReactionsSettings(**values)


@pytest.fixture
async def service(amqp_url: str, sim: MeetingSimulator) -> AsyncIterator[ReactionService]:
    svc = ReactionService(settings_for(amqp_url, sim))
    await svc.start()
    yield svc
    await svc.stop()


def hold(
    meeting: str = "m1",
    participant: str = "alice",
    label: str = "like",
    start: int = 1,
    frames: int = 3,
) -> list[ReactionEvent]:
    return [
        make_event(
            meeting_id=meeting,
            participant_id=participant,
            label=label,
            sequence=s,
            capture_ms=T0 + s * 100,
        )
        for s in range(start, start + frames)
    ]


def layer_shown(meeting: str) -> Any:
    def match(call: Call) -> bool:
        return call.access_key == meeting and call.endpoint == "layers" and call.method == "POST"

    return match


async def test_a_held_gesture_becomes_a_gif_in_the_meeting(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    # when alice holds a thumbs up for three frames
    await publish_events(amqp_url, *hold())
    # then the meeting gets a thumbs-up GIF overlay that the service itself serves
    call = await sim.wait_for_call(layer_shown("m1"))
    url = call.params["url"]
    assert url.startswith(service.media_base_url + "gifs/thumbs_up_")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"GIF89a")
    m = service.metrics
    assert m.value("memelearning_reactions_confirmed_total", reaction="thumbs_up") == 1
    assert m.value("memelearning_reactions_injected_total", reaction="thumbs_up", mode="layer") == 1


async def test_duplicates_do_not_count_towards_a_hold(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    first, second, third = hold()
    # given the first frame's event delivered three times, then the second frame
    await publish_events(amqp_url, first, first, first, second)
    # when the third frame arrives, the hold completes (3 distinct frames), once
    await publish_events(amqp_url, third)
    await sim.wait_for_call(layer_shown("m1"))
    assert service.metrics.value("memelearning_reactions_suppressed_total", reason="duplicate") == 2
    assert (
        service.metrics.value("memelearning_reactions_confirmed_total", reaction="thumbs_up") == 1
    )


async def test_opt_out_can_be_changed_at_run_time_over_http(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    base = f"http://127.0.0.1:{service.http_port}/meetings"
    async with aiohttp.ClientSession() as session:
        # given meeting m1 opted out
        async with session.put(f"{base}/m1/reactions", json={"enabled": False}) as r:
            assert r.status == 200
        # when both m1 and m2 hold a gesture
        await publish_events(amqp_url, *hold("m1"), *hold("m2"))
        # then only m2 gets a GIF (m2's events were published after m1's)
        await sim.wait_for_call(layer_shown("m2"))
        assert sim.calls_to("m1") == []
        assert (
            service.metrics.value("memelearning_reactions_suppressed_total", reason="opt_out") == 3
        )
        # and once m1 opts back in, its next hold shows
        async with session.put(f"{base}/m1/reactions", json={"enabled": True}) as r:
            assert (await r.json()) == {"meeting_id": "m1", "enabled": True}
        await publish_events(amqp_url, *hold("m1", start=10))
        await sim.wait_for_call(layer_shown("m1"))
        async with session.put(f"{base}/m1/reactions", json={"on": 1}) as r:
            assert r.status == 400
        async with session.get(f"{base}/bad.id/reactions") as r:
            assert r.status == 400


async def test_metrics_and_health_endpoints(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    await publish_events(amqp_url, *hold(label="palm", frames=4))  # wave: k=4
    await sim.wait_for_call(layer_shown("m1"))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{service.http_port}/metrics") as r:
            text = await r.text()
        async with session.get(f"http://127.0.0.1:{service.http_port}/readyz") as r:
            assert r.status == 200
    assert 'memelearning_reactions_injected_total{mode="layer",reaction="wave"} 1.0' in text
    assert 'memelearning_reactions_suppressed_total{reason="not_confirmed"} 3.0' in text
    assert "memelearning_reactions_injection_latency_seconds_count 1.0" in text


async def test_meetings_map_to_configured_access_keys(amqp_url: str, sim: MeetingSimulator) -> None:
    settings = settings_for(
        amqp_url, sim, access_keys={"standup": "AK-standup"}, access_key_fallback=False
    )
    svc = ReactionService(settings)
    await svc.start()
    try:
        await publish_events(amqp_url, *hold("other"), *hold("standup"))
        await sim.wait_for_call(layer_shown("AK-standup"))
        assert sim.calls_to("other") == []
        assert svc.metrics.value("memelearning_reactions_suppressed_total", reason="no_room") == 3
    finally:
        await svc.stop()


async def test_a_meeting_api_failing_with_5xx_is_retried(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    sim.fail("m1", 503)  # the ready check fails once, then everything works
    await publish_events(amqp_url, *hold())
    await sim.wait_for_call(layer_shown("m1"))
    assert [c.status for c in sim.calls_to("m1", "room")][:2] == [503, 200]
    assert service.metrics.value("memelearning_reactions_injection_retries_total") == 1


async def test_stop_clears_the_overlay_still_showing(amqp_url: str, sim: MeetingSimulator) -> None:
    svc = ReactionService(settings_for(amqp_url, sim))
    await svc.start()
    await publish_events(amqp_url, *hold())
    await sim.wait_for_call(layer_shown("m1"))
    await svc.stop()
    assert sim.calls_to("m1", "layers")[-1].method == "DELETE"
    assert sim.room("m1").layers == {}
