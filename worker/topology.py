"""Exchanges and queues the worker declares. The worker owns its input queue's
arguments; publishers only need the frames exchange to exist."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from publisher.protocol import (
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    FRAMES_EXCHANGE_DURABLE,
    FRAMES_EXCHANGE_TYPE,
)
from worker.events import EVENTS_EXCHANGE
from worker.settings import WorkerSettings

# Set on every frame in the dead-letter queue, next to the reason.
HEADER_REJECT_REASON: Final = "x-reject-reason"
HEADER_REJECT_DETAIL: Final = "x-reject-detail"
HEADER_REJECTED_BY: Final = "x-rejected-by"
# RabbitMQ sets this on everything it dead-letters: "expired", "maxlen",
# "rejected", "delivery_limit".
HEADER_FIRST_DEATH_REASON: Final = "x-first-death-reason"

# The triage queue's length limit, in frames-queue lengths (see declare_dead_letters).
TRIAGE_LENGTH_FACTOR: Final = 10
# Headers the broker sets per queue; a frame moved to quarantine starts afresh there.
_QUEUE_HEADERS: Final = ("x-delivery-count",)


def republishable(value: Any) -> Any:
    """Received headers in types the AMQP client can encode again. A header that is
    not UTF-8 arrives as ``bytes`` (pamqp's long strings), which pamqp refuses to
    publish: without this, such a frame could never be dead-lettered and went round
    the triage queue for ever. It goes out as a byte array, content unchanged."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {key: republishable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [republishable(item) for item in value]
    return value


def frames_queue_arguments(settings: WorkerSettings) -> dict[str, Any]:
    return {
        # Quorum: the delivery limit is counted by the broker across the whole fleet,
        # so a frame that kills workers stops being redelivered. (Classic queues on
        # 3.10 reject x-delivery-limit.)
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
        "x-message-ttl": settings.queue_ttl_ms,
        "x-max-length": settings.queue_max_length,
        # Under a backlog the oldest frames are the least useful ones.
        "x-overflow": "drop-head",
        "x-dead-letter-exchange": settings.dead_letter_exchange,
    }


def quarantine_queue_name(settings: WorkerSettings) -> str:
    return settings.quarantine_queue


def moves_exchange_name(settings: WorkerSettings) -> str:
    """The direct exchange through which workers move frames into the quarantine and
    dead-letter queues (each bound by its own name). Publishing through the default
    exchange instead would need a grant that lets a worker publish into any queue of
    the vhost (docs/security.md)."""
    return settings.moves_exchange


async def declare_moves_exchange(
    channel: AbstractChannel, settings: WorkerSettings
) -> AbstractExchange:
    return await channel.declare_exchange(
        moves_exchange_name(settings), aio_pika.ExchangeType.DIRECT, durable=True
    )


def quarantine_queue_arguments(settings: WorkerSettings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        # A suspect already came back once from the frames queue: with one delivery
        # fewer here, the fleet-wide limit (`DELIVERY_LIMIT`) counts both queues.
        "x-delivery-limit": settings.delivery_limit - 1,
        "x-message-ttl": settings.queue_ttl_ms,
        "x-max-length": settings.queue_max_length,
        "x-overflow": "drop-head",
        "x-dead-letter-exchange": settings.dead_letter_exchange,
    }


def moved_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """A received frame's headers, ready to publish into another queue."""
    return {k: v for k, v in republishable(headers).items() if k not in _QUEUE_HEADERS}


async def declare_quarantine(channel: AbstractChannel, settings: WorkerSettings) -> AbstractQueue:
    """The quarantine queue: frames the frames queue delivered again, which may be what
    killed a worker (a crash inside a native library takes the process and every frame
    it held). Workers take them one at a time (prefetch 1, never batched), so a frame
    that kills again takes no other frame with it, and the broker dead-letters it at
    the delivery limit while its former batch-mates are processed."""
    queue = await channel.declare_queue(
        quarantine_queue_name(settings),
        durable=True,
        arguments=quarantine_queue_arguments(settings),
    )
    await queue.bind(await declare_moves_exchange(channel, settings), routing_key=queue.name)
    return queue


async def declare_frames_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        FRAMES_EXCHANGE,
        aio_pika.ExchangeType(FRAMES_EXCHANGE_TYPE),
        durable=FRAMES_EXCHANGE_DURABLE,
    )


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_dead_letters(
    channel: AbstractChannel, settings: WorkerSettings
) -> tuple[AbstractQueue, AbstractQueue]:
    """Declare (triage queue, dead-letter queue).

    A quorum queue dead-letters *every* frame it loses: the routine ones (TTL expiry,
    drop-head under a backlog) as well as the real failures (delivery limit). The
    reason is only in ``x-`` headers, which a headers exchange ignores, so the broker
    cannot tell them apart by routing. Everything therefore goes to a triage queue;
    the worker counts and drops the routine losses and moves the failures, with a
    reason header, to the dead-letter queue, which then holds only frames an
    operator should look at.
    """
    exchange = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    triage = await channel.declare_queue(
        settings.triage_queue,
        durable=True,
        arguments={
            # Quorum, like the frames queue: a classic queue lives on one node, and
            # while that node is down no worker can declare it again after a
            # reconnect, so none could reconnect at all (tests/test_fault_cluster.py).
            "x-queue-type": "quorum",
            # With no worker running, routine losses must not pile up here either.
            "x-message-ttl": settings.queue_ttl_ms * 30,
            # A burst drops frames from the frames queue faster than triage counts them
            # (measured: 2,500 frames/s published against a 400-frame queue lost 344
            # uncounted when this was also 400), so triage takes ten queues' worth.
            "x-max-length": settings.queue_max_length * TRIAGE_LENGTH_FACTOR,
        },
    )
    await triage.bind(exchange)
    dead = await channel.declare_queue(
        settings.dead_letter_queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            # Poison frames are still frames of people: they expire too.
            "x-message-ttl": settings.dead_letter_ttl_ms,
            "x-max-length": settings.dead_letter_max_length,
        },
    )
    await dead.bind(await declare_moves_exchange(channel, settings), routing_key=dead.name)
    return triage, dead


async def declare_frames_queue(channel: AbstractChannel, settings: WorkerSettings) -> AbstractQueue:
    frames_exchange = await declare_frames_exchange(channel)
    queue = await channel.declare_queue(
        settings.queue, durable=True, arguments=frames_queue_arguments(settings)
    )
    await queue.bind(frames_exchange, routing_key=FRAME_ROUTING_KEY)
    return queue


# Releases before 2026-11-29 gave the frames queue the frames exchange's name.
LEGACY_FRAMES_QUEUE: Final = FRAMES_EXCHANGE


@dataclass(frozen=True, slots=True)
class LegacyQueue:
    name: str
    frames: int
    consumers: int


async def legacy_frames_queue(
    connection: AbstractRobustConnection, settings: WorkerSettings
) -> LegacyQueue | None:
    """The frames queue an earlier release declared under the exchange's name, when it
    is still on the broker beside this worker's queue: while it is bound, the exchange
    routes every frame to it as well (the upgrade: docs/operations.md)."""
    if settings.queue == LEGACY_FRAMES_QUEUE:
        return None
    # A passive declaration of a missing queue closes its channel: a throwaway one. Not
    # robust: after a reconnect, declaring it again would fail once it is deleted, and
    # aio-pika gives up a reconnect attempt when a channel cannot be restored.
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(LEGACY_FRAMES_QUEUE, passive=True, robust=False)
    except (aiormq.exceptions.ChannelNotFoundEntity, aiormq.exceptions.ChannelAccessRefused):
        return None
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    result = queue.declaration_result
    return LegacyQueue(queue.name, int(result.message_count or 0), int(result.consumer_count or 0))
