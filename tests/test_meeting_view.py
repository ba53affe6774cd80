"""The meeting view behind the demo page: each participant's frames (in memory only,
bounded), the worker's hands for each frame, and the simulator following both through
the broker."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memelearning.permissions import reactions_permissions
from reactions.catalog import Catalog
from reactions.meeting_view import ANALYSIS_LATE_S, FRAMES_KEPT, MeetingView
from reactions.simulator import FRAME_COPY_ARGUMENTS, MeetingSimulator
from reactions.testing import make_event, make_hand, publish_events, publish_raw
from tests.broker import Broker
from tests.frames import RED, make_frame, make_jpeg, publish_frames
from tests.workers import wait_until
from worker.events import Box, FrameDetections, Hand, ModelRef

T0 = 1_795_000_000_000
PEACE = Hand(label="peace", score=0.9, box=Box(ymin=0.1, xmin=0.2, ymax=0.5, xmax=0.4))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def found(sequence: int, *hands: Hand, participant: str = "alice") -> FrameDetections:
    return FrameDetections(
        frame_id=f"f{sequence}",
        meeting_id="m1",
        participant_id=participant,
        sequence=sequence,
        capture_ms=T0 + sequence * 250,
        detected_ms=T0 + sequence * 250 + 50,
        model=ModelRef(name="test", version="1"),
        worker_id="w1",
        hands=hands,
    )


def add_frame(view: MeetingView, sequence: int, participant: str = "alice") -> bytes:
    jpeg = f"jpeg-{participant}-{sequence}".encode()
    view.add_frame("m1", participant, sequence, T0 + sequence * 250, jpeg)
    return jpeg


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def view(clock: Clock) -> MeetingView:
    return MeetingView(Catalog.load(), frame_kept_s=10.0, max_participants=3, clock=clock)


def test_a_frame_is_shown_with_the_hands_the_worker_found_in_that_frame(
    view: MeetingView,
) -> None:
    # given three frames, and the worker's answer for the second only
    for sequence in (1, 2, 3):
        add_frame(view, sequence)
    view.add_detections(found(2, PEACE))
    # then the page shows the second frame with its box, not the newest with a wrong one
    shown = view.state("m1", "alice")["frame"]
    assert (shown["sequence"], shown["analysed"]) == (2, True)
    assert [(h["label"], h["reaction"], h["box"]["xmin"]) for h in shown["hands"]] == [
        ("peace", "peace", 0.2)
    ]
    # and an answer that arrives before its frame is kept for it
    view.add_detections(found(4))
    add_frame(view, 4)
    shown = view.state("m1", "alice")["frame"]
    assert (shown["sequence"], shown["analysed"], shown["hands"]) == (4, True, [])


def test_faces_are_shown_with_their_expression_beside_the_hands(view: MeetingView) -> None:
    add_frame(view, 1)
    face = Hand(label="smile", score=0.8, box=Box(ymin=0.1, xmin=0.4, ymax=0.6, xmax=0.7))
    view.add_detections(found(1, PEACE).model_copy(update={"faces": (face,)}))
    shown = view.state("m1", "alice")["frame"]
    assert [(h["label"], h["reaction"]) for h in shown["hands"]] == [
        ("peace", "peace"),
        ("smile", "smile"),
    ]


def test_the_newest_frame_is_shown_unanalysed_once_the_worker_is_late(
    view: MeetingView, clock: Clock
) -> None:
    add_frame(view, 1)
    view.add_detections(found(1, PEACE))
    add_frame(view, 2)
    assert view.state("m1", "alice")["frame"]["sequence"] == 1
    clock.now += ANALYSIS_LATE_S + 0.5
    add_frame(view, 3)
    shown = view.state("m1", "alice")["frame"]
    assert (shown["sequence"], shown["analysed"], shown["hands"]) == (3, False, [])


def test_frames_are_few_per_person_few_people_and_gone_when_they_stop(
    view: MeetingView, clock: Clock
) -> None:
    # given a long stream: only the newest frames are held
    jpegs = [add_frame(view, sequence) for sequence in range(100)]
    assert view.frame_jpeg("m1", "alice", 99) == jpegs[99]
    assert view.frame_jpeg("m1", "alice", 99 - FRAMES_KEPT) is None
    # and more people than the view holds: the one heard from least recently goes
    for person in ("bob", "carol", "dan"):
        add_frame(view, 1, person)
    assert view.participants("m1") == ["bob", "carol", "dan"]
    # and once a person's frames stop coming, their frames are forgotten
    clock.now += 11
    assert view.state("m1", "dan")["frame"] is None
    assert view.frame_jpeg("m1", "dan", 1) is None
    assert view.participants("m1") == []


def test_a_publisher_that_starts_counting_again_is_followed(view: MeetingView) -> None:
    for sequence in range(500, 520):
        add_frame(view, sequence)
    # given a frame that arrives late: it is kept in its place
    view.add_frame("m1", "alice", 499, T0, b"late")
    assert view.state("m1", "alice")["frame"]["sequence"] == 519
    # when the participant's publisher restarts, numbering from 0
    view.add_frame("m1", "alice", 0, T0 + 600 * 250, b"restarted")
    view.add_detections(found(0))
    # then the page shows the new frame, not the last one before the restart
    assert view.state("m1", "alice")["frame"]["sequence"] == 0
    assert view.frame_jpeg("m1", "alice", 519) is None


def test_the_hold_ring_follows_the_reactions_services_rule(view: MeetingView, clock: Clock) -> None:
    # given two frames of a peace sign (the packaged catalog needs 3 of 5)
    for sequence in (1, 2):
        add_frame(view, sequence)
        view.observe(make_event(meeting_id="m1", label="peace", sequence=sequence))
    hold = view.state("m1", "alice")["hold"]
    assert (hold["reaction"], hold["held"], hold["needed"], hold["confirmed_ms"]) == (
        "peace",
        2,
        3,
        None,
    )
    # when the third comes, the hold is confirmed and starts over, as in the service
    view.observe(make_event(meeting_id="m1", label="peace", sequence=3))
    hold = view.state("m1", "alice")["hold"]
    assert hold["held"] == 0 and hold["confirmed_ms"] is not None
    # and a gesture that is no reaction starts no ring
    view.observe(make_event(meeting_id="m1", participant_id="bob", label="fist"))
    assert view.state("m1", "bob")["hold"] is None


def test_the_ring_follows_the_two_handed_hold_when_two_hands_show_the_gesture(
    view: MeetingView,
) -> None:
    both = (make_hand("like", x=0.25), make_hand("like", x=0.75))

    def frame(sequence: int) -> dict[str, Any]:
        # as the worker sends them: the frame's event, then its detections
        add_frame(view, sequence)
        event = make_event(label="like", sequence=sequence, capture_ms=T0 + sequence * 250)
        view.observe(event)
        view.add_detections(found(sequence, *both))
        hold: dict[str, Any] = view.state("m1", "alice")["hold"]
        return hold

    # given two frames of two thumbs up: the ring is the fireworks' (4 frames)
    frame(1)
    hold = frame(2)
    assert (hold["reaction"], hold["held"], hold["needed"]) == ("fireworks", 2, 4)
    # the one-handed hold confirming on the third frame is not shown as done
    hold = frame(3)
    assert (hold["reaction"], hold["held"], hold["confirmed_ms"]) == ("fireworks", 3, None)
    # the fourth confirms the fireworks
    assert frame(4)["confirmed_ms"] is not None


@pytest.fixture
async def following(amqp_url: str) -> AsyncIterator[MeetingSimulator]:
    """A simulator following a fresh vhost's events, detections and frames."""
    sim = MeetingSimulator()
    await sim.start()
    ready = asyncio.Event()
    task = asyncio.create_task(sim.follow_events(amqp_url, ready))
    await asyncio.wait_for(ready.wait(), 30)
    yield sim
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.stop()


async def test_the_simulator_gets_frames_and_detections_through_the_broker_in_memory_only(
    amqp_url: str,
    broker: Broker,
    vhost: str,
    following: MeetingSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (Every process keeps aiormq at INFO or above: at DEBUG it prints message bodies.)
    for name in ("reactions", "publisher", "memelearning"):
        caplog.set_level(logging.DEBUG, logger=name)
    sim = following
    # given a frame published as the MCU does, and the worker's detections for it
    jpeg = make_jpeg(RED, size=(64, 48))
    frame = make_frame(meeting="m1", participant="alice", sequence=5, jpeg=jpeg)
    await publish_frames(amqp_url, [frame])
    answer = found(5, PEACE)
    await publish_raw(amqp_url, answer.routing_key, answer.to_json())

    def participant() -> dict[str, object]:
        state = sim.state()
        people = state["meetings"][0]["participants"] if state["meetings"] else []
        return people[0] if people else {}

    # then the page's state has the frame with its hands, and the JPEG is served
    await wait_until(lambda: bool(participant().get("frame", {}) or {}))
    await wait_until(lambda: participant()["frame"]["analysed"])  # type: ignore[index]
    assert participant()["frame"]["hands"][0]["label"] == "peace"  # type: ignore[index]
    assert sim.view.frame_jpeg("m1", "alice", 5) == jpeg

    # and the page's copy of the frames is a private, bounded queue that dies with it
    def copies() -> list[dict[str, Any]]:
        queues = broker.api("GET", f"queues/{urllib.parse.quote(vhost, safe='')}")
        return [q for q in queues if q["arguments"].get("x-max-length")]

    await wait_until(lambda: len(copies()) == 1)  # the management API lags a little
    (copy,) = copies()
    assert (copy["durable"], copy["auto_delete"], copy["exclusive"]) == (False, True, True)
    assert copy["arguments"] == FRAME_COPY_ARGUMENTS
    # and nothing of the frame reached a log
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert repr(jpeg[:16])[2:-1] not in logged and jpeg.hex()[:32] not in logged


async def test_without_read_on_the_frames_the_page_shows_no_video_and_follows_the_rest(
    broker: Broker, vhost: str, caplog: pytest.LogCaptureFixture
) -> None:
    # given the simulator running as the reactions' least-privilege user
    user, password = "test-sim-" + vhost[-8:], "pw-" + vhost[-8:]
    broker.create_user(user, password)
    sim = MeetingSimulator()
    await sim.start()
    task = None
    try:
        broker.set_permissions(vhost, user, **reactions_permissions().as_json())
        ready = asyncio.Event()
        task = asyncio.create_task(sim.follow_events(broker.url_as(vhost, user, password), ready))
        await asyncio.wait_for(ready.wait(), 30)
        # then it says once why the page has no video
        assert any("the page shows no video" in r.getMessage() for r in caplog.records)
        # and still follows the gestures
        await publish_events(broker.url_for(vhost), make_event(meeting_id="m1"))
        await wait_until(lambda: "alice" in sim.gestures.get("m1", {}))
    finally:
        if task is not None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await sim.stop()
        broker.delete_user(user)
