"""A steady load of frames through the whole fleet for the cluster fault tests
(tests/test_fault_cluster.py), and what happened to each frame, by id.

The fleet runs in the test process: a real :class:`~worker.service.Worker` (colour
plumbing model), a :class:`~publisher.publishing.FramePublisher` handing over ``FPS``
JPEG frames a second whatever the broker's state, and a subscriber on a quorum queue
bound to the events exchange (a quorum queue, so events published while it moves to
another node wait for it). Each is given all three nodes' addresses, each starting on
a different node.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from memelearning.amqp import connect_robust
from publisher.errors import FrameExpiredError, PublishError
from publisher.protocol import Frame
from publisher.publishing import FramePublisher
from tests.frames import RED, make_frame, make_jpeg
from tests.workers import Worker
from worker.events import EVENTS_EXCHANGE, ReactionEvent, binding_key
from worker.outcomes import FrameStale
from worker.topology import HEADER_FIRST_DEATH_REASON

FPS = 20
# A webcam-sized JPEG: the frames the MCU sends, not a thumbnail.
FRAME_SIZE = (320, 240)
EVENTS_QUEUE = "cluster-test.events"


@dataclass
class Ledger:
    """What happened to each frame handed to the publisher, by message id."""

    sent: dict[str, Frame] = field(default_factory=dict)
    confirmed: dict[str, Frame] = field(default_factory=dict)
    too_old_to_resend: set[str] = field(default_factory=set)
    failed: dict[str, PublishError] = field(default_factory=dict)


class Subscriber:
    """A reactions-service stand-in on a quorum queue of the events exchange."""

    def __init__(self, url: str, other_hosts: list[str]) -> None:
        self._url = url
        self._other_hosts = other_hosts
        self.deliveries: list[tuple[float, ReactionEvent]] = []
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        self._connection = await connect_robust(
            self._url + "?reconnect_interval=0.5&heartbeat=2",
            client_properties={"connection_name": "cluster-test-subscriber"},
            other_hosts=self._other_hosts,
        )
        # Held: a robust connection keeps its channels only weakly, and one collected
        # while the node is down is never restored (docs/reliability.md).
        self._channel = channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=200)
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            EVENTS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key=binding_key())
        await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.deliveries.append((time.monotonic(), ReactionEvent.from_json(message.body)))

    def frame_ids(self) -> set[str]:
        return {event.frame_id for _, event in self.deliveries}

    def duplicates(self) -> int:
        ids = Counter(str(event.event_id) for _, event in self.deliveries)
        return sum(ids.values()) - len(ids)

    def first_event_captured_after(self, capture_ms: float) -> float | None:
        """When (monotonic) the first event of a frame captured after ``capture_ms``
        arrived; None before there is one."""
        for at, event in self.deliveries:
            if event.capture_ms > capture_ms:
                return at
        return None


class Accounting:
    """Frame ids the worker settled without an event: acked as stale, or counted as
    expired in the queue (the metrics count the same, without ids)."""

    def __init__(self, worker: Worker) -> None:
        self.stale: set[str] = set()
        self.expired: set[str] = set()
        settle, triage = worker._settle, worker._on_dead_letter

        async def _settle(item: Any, outcome: Exception | None, detected_ms: int) -> None:
            await settle(item, outcome, detected_ms)
            if isinstance(outcome, FrameStale) and item.message.processed:
                self.stale.add(item.message.message_id)

        async def _on_dead_letter(message: AbstractIncomingMessage) -> None:
            await triage(message)
            reason = (message.headers or {}).get(HEADER_FIRST_DEATH_REASON)
            if message.processed and reason in ("expired", b"expired"):
                self.expired.add(str(message.message_id))

        # Before start(): the worker passes these bound attributes to consume().
        worker._settle = _settle  # type: ignore[method-assign]
        worker._on_dead_letter = _on_dead_letter  # type: ignore[method-assign]


class Stream:
    """Hands the publisher ``FPS`` frames a second until stopped; each frame's fate
    goes into :attr:`ledger`."""

    def __init__(self, publisher: FramePublisher) -> None:
        self.publisher = publisher
        self.ledger = Ledger()
        self._stop = asyncio.Event()
        self._confirms: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, timeout: float = 90.0) -> None:
        """Stop making frames and wait until each one handed over is settled."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await asyncio.wait_for(asyncio.gather(*self._confirms), timeout=timeout)

    async def _run(self) -> None:
        jpeg = make_jpeg(RED, size=FRAME_SIZE)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        sequence = 0
        while not self._stop.is_set():
            frame = make_frame(
                RED, meeting="cluster", participant="alice", sequence=sequence, jpeg=jpeg
            )
            self.ledger.sent[frame.message_id] = frame
            self._confirms.append(asyncio.create_task(self._confirm(frame)))
            sequence += 1
            next_at += 1 / FPS
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _confirm(self, frame: Frame) -> None:
        try:
            await self.publisher.publish_and_confirm(frame)
        except FrameExpiredError:
            self.ledger.too_old_to_resend.add(frame.message_id)
        except PublishError as exc:
            self.ledger.failed[frame.message_id] = exc
        else:
            self.ledger.confirmed[frame.message_id] = frame
