"""The subscriber: reaction events in, the moment each frame's first event arrived out.

It binds to one label only when it can. With the score threshold at 0 the colour
model gives every frame one event per label, so one label gives exactly one event per
frame, and the subscriber (which is measurement, not pipeline) costs a third of what
listening to all of them would. The worker still publishes, and waits for the confirms
of, every event. For another model the subscriber binds to every label and counts a
frame at its first event: that model must report at least one detection per frame at
threshold 0 (top-N exports do), or its frames are not counted.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType
from typing import Self

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from worker.events import EVENTS_EXCHANGE, ReactionEvent, binding_key


@dataclass(frozen=True, slots=True)
class Arrival:
    """A frame's first event: when it was received, and what the frame says."""

    meeting_id: str
    capture_ms: int
    received_ms: float  # wall clock, comparable with capture_ms
    received_mono: float


class EventCounter:
    """``async with EventCounter(url, label) as events:`` is subscribed before it
    returns, so no event published afterwards is missed."""

    def __init__(self, amqp_url: str, label: str | None) -> None:
        self._url = amqp_url
        self._label = label
        self._connection: AbstractConnection | None = None
        self.arrivals: dict[str, Arrival] = {}
        self.duplicates = 0
        # Shared with the load process, which keeps its backlog bounded by it.
        self.seen: Synchronized[int] = multiprocessing.get_context("spawn").Value("q", 0)
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._connection = await aio_pika.connect(
            self._url, client_properties={"connection_name": "memelearning-bench-events"}
        )
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=binding_key(label=self._label))
        # No acks: this queue is ours alone and an ack per event would be measured too.
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def count(self) -> int:
        return len(self.arrivals)

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` distinct frames have had an event."""
        async with asyncio.timeout(timeout_s):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        received_ms = time.time() * 1000
        received_mono = time.monotonic()
        event = ReactionEvent.from_json(message.body)
        if event.frame_id in self.arrivals:
            self.duplicates += 1
            return
        self.arrivals[event.frame_id] = Arrival(
            event.meeting_id, event.capture_ms, received_ms, received_mono
        )
        self.seen.value += 1
        self._changed.set()
