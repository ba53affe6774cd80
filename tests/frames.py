"""Helpers to make and publish frames and to collect reaction events in tests."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from PIL import Image

from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE, Frame
from reactions.subscription import connect
from worker.events import EVENTS_EXCHANGE, ReactionEvent, binding_key

RED = (230, 20, 20)
GREEN = (20, 230, 20)
BLUE = (20, 20, 230)


def make_jpeg(
    color: tuple[int, int, int] = RED, size: tuple[int, int] = (64, 48), quality: int = 90
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def now_ms() -> int:
    return int(time.time() * 1000)


def make_frame(
    color: tuple[int, int, int] = RED,
    *,
    meeting: str = "m1",
    participant: str = "alice",
    sequence: int = 0,
    capture_ms: int | None = None,
    jpeg: bytes | None = None,
) -> Frame:
    return Frame(
        meeting_id=meeting,
        participant_id=participant,
        capture_ms=now_ms() if capture_ms is None else capture_ms,
        sequence=sequence,
        jpeg=jpeg if jpeg is not None else make_jpeg(color),
    )


async def publish_raw(url: str, messages: Iterable[aio_pika.Message]) -> None:
    """Publish prepared messages to the frames exchange, each confirmed."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(FRAMES_EXCHANGE)
        for message in messages:
            await exchange.publish(message, routing_key=FRAME_ROUTING_KEY)


async def publish_frames(url: str, frames: Iterable[Frame]) -> None:
    await publish_raw(url, (frame.to_message() for frame in frames))


class EventCollector:
    """Subscribes to reaction events (before anything is published) and collects them."""

    def __init__(self, url: str, meeting: str | None = None) -> None:
        self._url = url
        self._meeting = meeting
        self.events: list[ReactionEvent] = []
        self.messages: list[AbstractIncomingMessage] = []
        self._changed = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> EventCollector:
        # Connected as the reactions service connects (a timeout on every connect
        # attempt): a bare aio_pika.connect_robust can wait for good on one attempt.
        self._connection = await connect(self._url, "test-event-collector")
        # Held: a robust connection keeps its channels only weakly (docs/reliability.md).
        self._channel = channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=binding_key(self._meeting))
        await queue.consume(self._on_message)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.events.append(ReactionEvent.from_json(message.body))
            self.messages.append(message)
            self._changed.set()

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[ReactionEvent]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events
