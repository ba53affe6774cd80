"""The rules beyond one held gesture, through the real broker and the service, into the
meeting simulator: two-handed reactions and waves from the worker's per-frame
detections, reactions a meeting switches over HTTP, the active speaker, raised hands,
and each reaction's own hold. Tests wait for states (calls, metrics), never on timers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from reactions.service import ReactionService
from reactions.simulator import Call, MeetingSimulator
from reactions.testing import make_detections, make_event, make_hand, publish_events
from tests.test_reactions_service import layer_shown, settings_for
from tests.workers import wait_until
from worker.events import FrameDetections, Hand, ReactionEvent

T0 = 1_750_000_000_000


class Clock:
    """The service's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def service(amqp_url: str, sim: MeetingSimulator) -> AsyncIterator[ReactionService]:
    svc = ReactionService(settings_for(amqp_url, sim))
    await svc.start()
    yield svc
    await svc.stop()


def frames(
    *hands: Hand,
    start: int = 1,
    count: int = 4,
    step_ms: int = 500,
    meeting: str = "m1",
    participant: str = "alice",
) -> list[ReactionEvent | FrameDetections]:
    """Frames as the worker publishes them: per frame, one event per label (the best
    hand), then the frame's detections."""
    out: list[ReactionEvent | FrameDetections] = []
    for s in range(start, start + count):
        at = T0 + s * step_ms
        frame_id = f"{meeting}-{participant}-{s}"
        for label in sorted({h.label for h in hands}):
            out.append(
                make_event(
                    meeting_id=meeting,
                    participant_id=participant,
                    label=label,
                    sequence=s,
                    capture_ms=at,
                    frame_id=frame_id,
                )
            )
        out.append(
            make_detections(
                *hands,
                meeting_id=meeting,
                participant_id=participant,
                sequence=s,
                capture_ms=at,
                frame_id=frame_id,
            )
        )
    return out


def value(service: ReactionService, name: str, **labels: str) -> float:
    return service.metrics.value(name, **labels)


def hand_call(meeting: str, participant: str, method: str) -> Any:
    def match(call: Call) -> bool:
        return (
            call.access_key == meeting
            and call.endpoint == "hands"
            and call.method == method
            and call.params.get("participant_id") == participant
        )

    return match


async def test_two_thumbs_up_become_fireworks_not_a_thumbs_up(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    # when alice holds up two thumbs for four frames
    both = (make_hand("like", x=0.25), make_hand("like", x=0.75))
    await publish_events(amqp_url, *frames(*both))
    # then the first (and only) GIF in her meeting is fireworks, on her
    call = await sim.wait_for_call(layer_shown("m1"))
    assert "/media/gifs/fireworks_" in call.params["url"]
    assert call.params["participant_id"] == "alice"
    await wait_until(lambda: value(service, "memelearning_reactions_frames_total") == 4)
    await wait_until(lambda: value(service, "memelearning_reactions_events_total") == 4)
    assert [c.method for c in sim.calls_to("m1", "layers")] == ["POST"]
    reason = "memelearning_reactions_suppressed_total"
    assert value(service, reason, reason="two_handed") == 1


async def test_a_palm_waving_at_8_fps_is_a_wave_before_the_static_hold(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    # when alice's open palm goes over and back across three frames 125 ms apart
    waving = [
        *frames(make_hand("palm", x=0.30), start=1, count=1, step_ms=125),
        *frames(make_hand("palm", x=0.45), start=2, count=1, step_ms=125),
        *frames(make_hand("palm", x=0.30), start=3, count=1, step_ms=125),
    ]
    await publish_events(amqp_url, *waving)
    # then a wave is shown (the static hold needs four frames of the palm)
    call = await sim.wait_for_call(layer_shown("m1"))
    assert "/media/gifs/wave_" in call.params["url"]
    assert value(service, "memelearning_reactions_motion_confirmed_total", reaction="wave") == 1


async def test_thinking_is_off_until_the_meeting_turns_it_on(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    base = f"http://127.0.0.1:{service.http_port}/meetings/m1/reactions"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/thinking") as r:
            assert await r.json() == {
                "meeting_id": "m1",
                "reaction": "thinking",
                "enabled": False,
                "default": False,
            }
        # given alice holding her chin for four frames: nothing
        await publish_events(amqp_url, *frames(make_hand("thinking")))
        await wait_until(
            lambda: (
                value(service, "memelearning_reactions_suppressed_total", reason="disabled") == 4
            )
        )
        assert sim.calls_to("m1", "layers") == []
        # when the meeting turns thinking on, her next hold shows it
        async with session.put(f"{base}/thinking", json={"enabled": True}) as r:
            assert (await r.json())["enabled"] is True
        async with session.get(base) as r:
            state = await r.json()
            assert state["enabled"] is True and state["reactions"]["thinking"] is True
        await publish_events(amqp_url, *frames(make_hand("thinking"), start=10))
        call = await sim.wait_for_call(layer_shown("m1"))
        assert "/media/gifs/thinking_" in call.params["url"]
        # and bad requests say what to send
        async with session.put(f"{base}/nope", json={"enabled": True}) as r:
            assert r.status == 404
            assert "thinking" in await r.text()
        async with session.put(f"{base}/thinking", json={"on": True}) as r:
            assert r.status == 400
            assert '{"enabled": false}' in await r.text()


async def test_an_active_speakers_gestures_wait_until_the_mark_runs_out(
    amqp_url: str, sim: MeetingSimulator
) -> None:
    clock = Clock()
    service = ReactionService(settings_for(amqp_url, sim, speaker_ttl_s=5.0), clock=clock)
    await service.start()
    base = f"http://127.0.0.1:{service.http_port}/meetings/m1/speakers"
    confirmed = "memelearning_reactions_confirmed_total"
    try:
        async with aiohttp.ClientSession() as session:
            # given alice marked as the active speaker
            async with session.put(f"{base}/alice") as r:
                assert (await r.json())["expires_in_s"] == 5.0
            async with session.get(base) as r:
                assert (await r.json())["speakers"] == ["alice"]
            # when alice and bob both hold a thumbs up
            await publish_events(
                amqp_url,
                *frames(make_hand("like"), count=3),
                *frames(make_hand("like"), count=3, participant="bob"),
            )
            # then only bob's is shown
            call = await sim.wait_for_call(layer_shown("m1"))
            assert call.params["participant_id"] == "bob"
            await wait_until(
                lambda: (
                    value(service, "memelearning_reactions_suppressed_total", reason="speaking")
                    == 3
                )
            )
            # and once her mark runs out unrefreshed, her next hold counts again
            clock.now += 5.1
            async with session.get(base) as r:
                assert (await r.json())["speakers"] == []
            await publish_events(amqp_url, *frames(make_hand("like"), start=10, count=3))
            await wait_until(lambda: value(service, confirmed, reaction="thumbs_up") == 2)
            async with session.put(f"{base}/no.dots") as r:
                assert r.status == 400
    finally:
        await service.stop()


async def test_a_raised_hand_goes_up_and_comes_down_when_its_owner_speaks(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    speakers = f"http://127.0.0.1:{service.http_port}/meetings/m1/speakers"
    lowered = "memelearning_reactions_hands_lowered_total"
    # when alice raises her hand and holds it
    await publish_events(amqp_url, *frames(make_hand("raise_hand", y=0.15)))
    # then the meeting raises her hand: no GIF
    await sim.wait_for_call(hand_call("m1", "alice", "PUT"))
    assert list(sim.room("m1").hands) == ["alice"]
    assert sim.calls_to("m1", "layers") == []
    assert sim.state()["meetings"][0]["raised_hands"] == ["alice"]
    async with aiohttp.ClientSession() as session:
        # and when she starts speaking, it comes down
        async with session.put(f"{speakers}/alice") as r:
            assert r.status == 200
        await sim.wait_for_call(hand_call("m1", "alice", "DELETE"))
        assert sim.room("m1").hands == {}
        await wait_until(lambda: value(service, lowered, reason="speaking") == 1)
        # given bob speaking: his raised hand still goes up (the one gesture a speaker
        # keeps), and refreshing his mark does not lower it
        async with session.put(f"{speakers}/bob") as r:
            assert r.status == 200
        await publish_events(amqp_url, *frames(make_hand("raise_hand"), participant="bob"))
        await sim.wait_for_call(hand_call("m1", "bob", "PUT"))
        async with session.put(f"{speakers}/bob") as r:
            assert r.status == 200
        assert service.hands is not None and service.hands.raised("m1") == ["bob"]
        # when his turn ends and he speaks again, it comes down
        async with session.delete(f"{speakers}/bob") as r:
            assert (await r.json())["speaking"] is False
        async with session.put(f"{speakers}/bob") as r:
            assert r.status == 200
        await sim.wait_for_call(hand_call("m1", "bob", "DELETE"))
        await wait_until(lambda: value(service, lowered, reason="speaking") == 2)


async def test_a_raised_hand_nobody_calls_on_comes_down_after_the_timeout(
    amqp_url: str, sim: MeetingSimulator
) -> None:
    service = ReactionService(settings_for(amqp_url, sim, hand_timeout_s=0.2))
    await service.start()
    try:
        await publish_events(amqp_url, *frames(make_hand("raise_hand")))
        await sim.wait_for_call(hand_call("m1", "alice", "PUT"))
        await sim.wait_for_call(hand_call("m1", "alice", "DELETE"))
        await wait_until(
            lambda: (
                value(service, "memelearning_reactions_hands_lowered_total", reason="timeout") == 1
            )
        )
        assert sim.room("m1").hands == {}
    finally:
        await service.stop()


async def test_stop_lowers_the_hands_the_service_raised(
    amqp_url: str, sim: MeetingSimulator
) -> None:
    service = ReactionService(settings_for(amqp_url, sim))
    await service.start()
    await publish_events(amqp_url, *frames(make_hand("raise_hand")))
    await sim.wait_for_call(hand_call("m1", "alice", "PUT"))
    await service.stop()
    assert [c.method for c in sim.calls_to("m1", "hands")] == ["PUT", "DELETE"]
    assert sim.room("m1").hands == {}


async def test_each_reaction_holds_for_its_own_length(
    amqp_url: str, sim: MeetingSimulator, service: ReactionService
) -> None:
    # given three frames of a thumbs down (a thumbs up would be confirmed by now)
    await publish_events(amqp_url, *frames(make_hand("dislike"), count=3))
    await wait_until(lambda: value(service, "memelearning_reactions_frames_total") == 3)
    assert sim.calls_to("m1", "layers") == []
    # when the fourth comes, it is shown
    await publish_events(amqp_url, *frames(make_hand("dislike"), start=4, count=1))
    call = await sim.wait_for_call(layer_shown("m1"))
    assert "/media/gifs/thumbs_down_" in call.params["url"]
