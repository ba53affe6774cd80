"""Helpers for tests and demos that need reaction events and frame detections without a
worker."""

from __future__ import annotations

import itertools
import time
from typing import Any

import aio_pika

from reactions.subscription import EVENTS_EXCHANGE_DURABLE, EVENTS_EXCHANGE_TYPE
from worker.events import (
    CONTENT_TYPE,
    EVENTS_EXCHANGE,
    Box,
    FrameDetections,
    Hand,
    ModelRef,
    ReactionEvent,
    event_id,
)

_frame_numbers = itertools.count(1)


def make_event(
    *,
    meeting_id: str = "m1",
    participant_id: str = "alice",
    label: str = "like",
    sequence: int | None = None,
    capture_ms: int | None = None,
    score: float = 0.9,
    frame_id: str | None = None,
) -> ReactionEvent:
    """A valid event; ids follow the worker's rule, so the same frame and label give
    the same event id."""
    number = next(_frame_numbers)
    seq = number if sequence is None else sequence
    frame = frame_id or f"{meeting_id}-{participant_id}-{seq}-{number}"
    captured = capture_ms if capture_ms is not None else int(time.time() * 1000)
    return ReactionEvent(
        event_id=event_id(frame, label),
        frame_id=frame,
        meeting_id=meeting_id,
        participant_id=participant_id,
        sequence=seq,
        label=label,
        score=score,
        box=Box(ymin=0.1, xmin=0.1, ymax=0.5, xmax=0.5),
        capture_ms=captured,
        detected_ms=captured + 20,
        model=ModelRef(name="test", version="1"),
        worker_id="test-worker",
    )


def make_hand(
    label: str, *, x: float = 0.3, y: float = 0.3, width: float = 0.2, score: float = 0.9
) -> Hand:
    """A hand whose box has its centre at (``x``, ``y``), ``width`` wide (and tall)."""
    half = width / 2
    box = Box(
        ymin=max(0.0, y - half),
        xmin=max(0.0, x - half),
        ymax=min(1.0, y + half),
        xmax=min(1.0, x + half),
    )
    return Hand(label=label, score=score, box=box)


def make_detections(
    *hands: Hand,
    meeting_id: str = "m1",
    participant_id: str = "alice",
    sequence: int = 0,
    capture_ms: int | None = None,
    frame_id: str | None = None,
) -> FrameDetections:
    """A valid frame-detections message; the frame id (and so the message id) is the
    same for the same meeting, participant and sequence unless given."""
    captured = capture_ms if capture_ms is not None else int(time.time() * 1000)
    return FrameDetections(
        frame_id=frame_id or f"{meeting_id}-{participant_id}-{sequence}",
        meeting_id=meeting_id,
        participant_id=participant_id,
        sequence=sequence,
        capture_ms=captured,
        detected_ms=captured + 20,
        model=ModelRef(name="test", version="1"),
        worker_id="test-worker",
        hands=hands,
    )


async def publish_raw(amqp_url: str, routing_key: str, body: bytes, **properties: Any) -> None:
    """Publish ``body`` to the events exchange (declaring it as the worker does)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, EVENTS_EXCHANGE_TYPE, durable=EVENTS_EXCHANGE_DURABLE
        )
        properties.setdefault("content_type", CONTENT_TYPE)
        await exchange.publish(aio_pika.Message(body=body, **properties), routing_key=routing_key)


async def publish_events(amqp_url: str, *events: ReactionEvent | FrameDetections) -> None:
    """Publish reaction events and frame detections, in this order, as the worker does."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, EVENTS_EXCHANGE_TYPE, durable=EVENTS_EXCHANGE_DURABLE
        )
        for event in events:
            message_id = event.event_id if isinstance(event, ReactionEvent) else event.message_id
            await exchange.publish(
                aio_pika.Message(
                    body=event.to_json(), content_type=CONTENT_TYPE, message_id=str(message_id)
                ),
                routing_key=event.routing_key,
            )
