"""The meeting API client and the per-meeting injection lanes, against the local
meeting simulator on an ephemeral port."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from reactions.injector import Injection, Injector, InjectorConfig
from reactions.meeting_api import (
    MeetingApi,
    PermanentError,
    RetryPolicy,
    RoomNotReady,
    TransientError,
)
from reactions.metrics import Metrics
from reactions.simulator import MeetingSimulator
from tests.workers import wait_until

FAST = RetryPolicy(max_attempts=4, base_s=0.001, max_s=0.01)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def api_for(sim: MeetingSimulator, session: aiohttp.ClientSession, **kwargs: object) -> MeetingApi:
    kwargs.setdefault("retry", FAST)
    return MeetingApi(session, sim.url, **kwargs)  # type: ignore[arg-type]


# -- retries


async def test_5xx_is_retried_until_it_succeeds(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    retries: list[int] = []
    api = api_for(sim, session, on_retry=lambda: retries.append(1))
    sim.fail("r1", 503, 502)
    await api.set_layer("r1", "http://media/x.gif", 1)
    assert [c.status for c in sim.calls_to("r1", "layers")] == [503, 502, 201]
    assert sim.room("r1").layers == {1: "http://media/x.gif"}
    assert len(retries) == 2


async def test_429_is_retried(sim: MeetingSimulator, session: aiohttp.ClientSession) -> None:
    sim.fail("r1", 429)
    await api_for(sim, session).set_layer("r1", "http://media/x.gif", 1)
    assert [c.status for c in sim.calls_to("r1", "layers")] == [429, 201]


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "http_400"), (403, "http_403"), (410, "gone")]
)
async def test_4xx_is_not_retried(
    sim: MeetingSimulator, session: aiohttp.ClientSession, status: int, reason: str
) -> None:
    sim.fail("r1", status)
    with pytest.raises(PermanentError) as caught:
        await api_for(sim, session).set_layer("r1", "http://media/x.gif", 1)
    assert caught.value.reason == reason
    assert len(sim.calls_to("r1")) == 1


async def test_retries_are_bounded(sim: MeetingSimulator, session: aiohttp.ClientSession) -> None:
    sim.fail("r1", 500, 500, 500, 500, 500)
    with pytest.raises(TransientError) as caught:
        await api_for(sim, session).set_layer("r1", "http://media/x.gif", 1)
    assert caught.value.reason == "http_500"
    assert len(sim.calls_to("r1")) == FAST.max_attempts


async def test_a_timeout_is_retried_then_reported(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    # An API that answers only after the test (sim.stop() cuts the wait short), so the
    # client's timeout is the only way out, however slow the machine.
    sim.delay("r1", 600.0)
    retries: list[int] = []
    api = api_for(
        sim,
        session,
        timeout_s=0.1,
        retry=RetryPolicy(2, 0.001, 0.01),
        on_retry=lambda: retries.append(1),
    )
    # (a client without a timeout would wait for the answer: the test's own deadline)
    async with asyncio.timeout(60):
        with pytest.raises(TransientError) as caught:
            await api.set_layer("r1", "http://media/x.gif", 1)
    assert caught.value.reason == "timeout"
    assert len(retries) == 1  # two attempts, each given up by the client


def test_backoff_is_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.5, max_s=3.0)
    rng = random.Random(3)
    for retry, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert max(delays) <= cap
        assert max(delays) > cap * 0.9  # spread over the whole range: full jitter
        assert min(delays) < cap * 0.1


async def test_the_api_key_is_sent_as_authorization(session: aiohttp.ClientSession) -> None:
    sim = MeetingSimulator(api_key="team-key")
    await sim.start()
    try:
        await api_for(sim, session, api_key="team-key").set_layer("r1", "http://m/x.gif", 1)
        with pytest.raises(PermanentError):
            await api_for(sim, session).set_layer("r1", "http://m/x.gif", 1)
        assert [c.authorized for c in sim.calls_to("r1")] == [True, False]
    finally:
        await sim.stop()


async def test_errors_never_show_the_access_key(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    sim.fail("SECRETKEY1", 403)
    with pytest.raises(PermanentError) as caught:
        await api_for(sim, session).set_layer("SECRETKEY1", "http://m/x.gif", 1)
    assert "SECRETKEY1" not in str(caught.value)


# -- raised hands


async def test_a_hand_goes_up_and_down_and_lowering_is_idempotent(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    api = api_for(sim, session)
    sim.fail("r1", 503)
    await api.raise_hand("r1", "alice")
    await api.raise_hand("r1", "bob")
    await api.raise_hand("r1", "alice")  # raising it again keeps alice first in line
    assert list(sim.room("r1").hands) == ["alice", "bob"]
    await api.lower_hand("r1", "alice")
    await api.lower_hand("r1", "alice")  # already down: no error
    # a platform that answers 404 for a hand that is down is no error either
    sim.fail("r1", 404)
    await api.lower_hand("r1", "carol")
    assert list(sim.room("r1").hands) == ["bob"]
    hands = sim.calls_to("r1", "hands")
    assert [(c.method, c.status) for c in hands] == [
        ("PUT", 503),
        ("PUT", 200),
        ("PUT", 200),
        ("PUT", 200),
        ("DELETE", 200),
        ("DELETE", 200),
        ("DELETE", 404),
    ]
    assert hands[0].params == {"participant_id": "alice"}


# -- the ready gate


async def test_a_layer_before_the_room_is_ready_is_lost_on_the_simulator(
    session: aiohttp.ClientSession,
) -> None:
    # given a room that is not ready (why the gate exists)
    sim = MeetingSimulator(rooms_ready=False)
    await sim.start()
    try:
        await api_for(sim, session).set_layer("r1", "http://m/x.gif", 1)
        assert sim.calls_to("r1", "layers")[0].lost
        assert sim.room("r1").layers == {}
    finally:
        await sim.stop()


async def test_wait_until_ready_polls_until_the_room_is_ready(
    session: aiohttp.ClientSession,
) -> None:
    sim = MeetingSimulator(rooms_ready=False)
    await sim.start()
    try:
        api = api_for(sim, session)
        # A wait longer than the test: it ends because the room got ready, not by itself.
        waiting = asyncio.create_task(api.wait_until_ready("r1", timeout_s=600, poll_s=0.01))
        await sim.wait_for_call(lambda c: c.endpoint == "room")
        assert not waiting.done()
        sim.set_ready("r1")
        await asyncio.wait_for(waiting, 30)
        with pytest.raises(RoomNotReady):
            await api.wait_until_ready("r2", timeout_s=0.05, poll_s=0.01)
    finally:
        await sim.stop()


# -- injection lanes


def injection(
    meeting: str,
    url: str = "http://m/x.gif",
    reaction: str = "wave",
    participant: str | None = None,
) -> Injection:
    return Injection(
        meeting_id=meeting,
        access_key=meeting,
        reaction=reaction,
        url=url,
        play_id=f"p-{meeting}",
        confirmed_at=time.monotonic(),
        participant_id=participant,
    )


@pytest.fixture
async def lanes(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Injector, Metrics]]:
    metrics = Metrics()
    # The ready wait outlasts any test step: a room a test makes ready late is still
    # waited for, however slow the machine.
    config = InjectorConfig(display_s=0.2, ready_poll_s=0.01, ready_timeout_s=600, queue_size=2)
    injector = Injector(api_for(sim, session, timeout_s=5), config, metrics)
    yield injector, metrics
    await injector.close(timeout_s=1)


async def test_injects_after_the_room_is_ready_and_clears_after_the_display_time(
    sim: MeetingSimulator, lanes: tuple[Injector, Metrics]
) -> None:
    injector, metrics = lanes
    sim.rooms_ready = False
    assert injector.submit(injection("m1"))
    await sim.wait_for_call(lambda c: c.endpoint == "room")
    sim.set_ready("m1")
    shown = await sim.wait_for_call(lambda c: c.endpoint == "layers" and c.method == "POST")
    cleared = await sim.wait_for_call(lambda c: c.method == "DELETE")
    assert shown.params == {"url": "http://m/x.gif", "z-index": "1"}
    assert not shown.lost
    assert cleared.at - shown.at >= 0.15
    assert (
        metrics.value("memelearning_reactions_injected_total", reaction="wave", mode="layer") == 1
    )
    assert metrics.value("memelearning_reactions_injection_latency_seconds_count") == 1


async def test_a_burst_is_shown_one_at_a_time_each_for_its_whole_display_time_on_its_sender(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    metrics = Metrics()
    display_s = 0.3
    config = InjectorConfig(display_s=display_s, ready_poll_s=0.01, queue_size=4)
    injector = Injector(api_for(sim, session, timeout_s=5), config, metrics)
    try:
        # given three participants confirming a reaction at the same moment
        for who in ("ana", "bo", "cy"):
            assert injector.submit(injection("m1", f"http://m/{who}.gif", participant=who))
        # when the lane has shown them all and cleared the last
        cleared = await sim.wait_for_call(lambda c: c.method == "DELETE", timeout=60)
        shown = [c for c in sim.calls_to("m1", "layers") if c.method == "POST"]
        # then each was shown, in order, on the participant who made the gesture
        assert [c.params.get("participant_id") for c in shown] == ["ana", "bo", "cy"]
        assert [c.params["url"] for c in shown] == [
            f"http://m/{w}.gif" for w in ("ana", "bo", "cy")
        ]
        # and each stayed for its whole display time before the next replaced it
        # (the lane sleeps that long: a slow machine can only make the gaps longer)
        ends = [c.at for c in [*shown[1:], cleared]]
        assert all(end - c.at >= display_s * 0.95 for c, end in zip(shown, ends, strict=True))
        # and the room was cleared once, after the last
        assert [c.method for c in sim.calls_to("m1", "layers")] == ["POST"] * 3 + ["DELETE"]
        assert sim.room("m1").layers == {}
    finally:
        await injector.close()


async def test_the_simulator_tells_whose_gesture_the_overlay_answers(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    api = api_for(sim, session)
    await api.set_layer("r1", "http://m/x.gif", 1, participant_id="ana")
    assert sim.state()["meetings"][0]["overlay_participant"] == "ana"
    with pytest.raises(PermanentError):
        await api.set_layer("r1", "http://m/x.gif", 1, participant_id="not.an.id")
    await api.clear_layer("r1", 1)
    assert sim.state()["meetings"][0]["overlay_participant"] is None


async def test_a_room_that_never_gets_ready_is_a_counted_failure(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    sim.rooms_ready = False
    metrics = Metrics()
    config = InjectorConfig(ready_poll_s=0.01, ready_timeout_s=0.1)
    injector = Injector(api_for(sim, session), config, metrics)
    try:
        injector.submit(injection("m1"))

        def not_ready_failures() -> float:
            return metrics.value(
                "memelearning_reactions_injection_failures_total",
                operation="ready",
                reason="room_not_ready",
            )

        await wait_until(lambda: not_ready_failures() > 0)
        assert sim.calls_to("m1", "layers") == []
        assert not_ready_failures() == 1
    finally:
        await injector.close()


async def test_a_slow_meeting_does_not_block_another(
    sim: MeetingSimulator, lanes: tuple[Injector, Metrics]
) -> None:
    injector, _ = lanes
    # Slow for longer than the test waits for the fast meeting: were the fast one
    # queued behind it, the wait below would fail.
    sim.delay("slow", 600.0)
    injector.submit(injection("slow"))
    injector.submit(injection("fast"))
    await sim.wait_for_call(lambda c: c.access_key == "fast" and c.endpoint == "layers", timeout=60)
    assert sim.calls_to("slow") == []  # still stuck in its first request


async def test_a_full_lane_refuses_more(
    sim: MeetingSimulator, lanes: tuple[Injector, Metrics]
) -> None:
    injector, _ = lanes
    sim.delay("m1", 3.0)
    # one in flight (taken off the queue), two queued, the fourth refused
    results = [injector.submit(injection("m1")) for _ in range(4)]
    assert results[:2] == [True, True]
    assert results[-1] is False


async def test_playback_mode_posts_the_video(
    sim: MeetingSimulator, session: aiohttp.ClientSession
) -> None:
    metrics = Metrics()
    injector = Injector(api_for(sim, session), InjectorConfig(mode="playback"), metrics)
    try:
        injector.submit(injection("m1", url="http://m/wave.webm"))
        call = await sim.wait_for_call(lambda c: c.endpoint == "playbacks")
        assert call.params["url"] == "http://m/wave.webm"
        assert call.params["play_id"] == "p-m1"
        assert sim.room("m1").playbacks == ["http://m/wave.webm"]
    finally:
        await injector.close()
