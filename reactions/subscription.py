"""Binding a private queue to the reaction-event exchange (reaction events, frame
detections): shared by ``reactions tail``, the service and the meeting simulator's live
page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustConnection
from pamqp.common import FieldTable

from memelearning.amqp import AmqpSettings, build_ssl_context, connect_robust
from worker.events import EVENTS_EXCHANGE, binding_key, detections_binding_key

logger = logging.getLogger(__name__)

# Must match the worker's declaration exactly, or RabbitMQ refuses the second one.
EVENTS_EXCHANGE_TYPE: Final = aio_pika.ExchangeType.TOPIC
EVENTS_EXCHANGE_DURABLE: Final = True
EXCHANGE_WAIT_S: Final = 1.0
"""How often a subscriber looks again for an events exchange no worker declared yet."""


async def connect(
    amqp_url: str, name: str, tls: AmqpSettings | None = None
) -> AbstractRobustConnection:
    """A robust connection named for the RabbitMQ management UI; over TLS as ``tls``
    says (an ``amqps://`` URL without ``tls`` verifies against the system's CAs)."""
    properties: FieldTable = {"connection_name": name}
    if tls is not None:
        return await tls.connect_robust(amqp_url, client_properties=properties)
    context = build_ssl_context() if amqp_url.startswith("amqps:") else None
    return await connect_robust(amqp_url, ssl_context=context, client_properties=properties)


def binding_keys(meetings: Sequence[str] = (), label: str | None = None) -> list[str]:
    """Topic patterns for these meetings (all meetings when empty) and label (any when None)."""
    if not meetings:
        return [binding_key(None, label)]
    return [binding_key(meeting, label) for meeting in meetings]


def detection_keys(meetings: Sequence[str] = ()) -> list[str]:
    """Topic patterns for the frame detections of these meetings (all when empty)."""
    if not meetings:
        return [detections_binding_key()]
    return [detections_binding_key(meeting) for meeting in meetings]


async def events_exchange(
    channel: AbstractChannel, wait_s: float = EXCHANGE_WAIT_S
) -> AbstractExchange:
    """The events exchange, once a worker has declared it.

    Declared passively: its owner is the worker (the producer of events), so the
    reactions user needs no configure permission on it, which would also let it delete
    the exchange (docs/security.md). A subscriber that starts before any worker says so
    once and looks again every ``wait_s`` until one has.
    """
    waiting = False
    while True:
        try:
            exchange = await channel.declare_exchange(
                EVENTS_EXCHANGE, EVENTS_EXCHANGE_TYPE, durable=EVENTS_EXCHANGE_DURABLE, passive=True
            )
        except aiormq.exceptions.ChannelNotFoundEntity:
            if not waiting:
                waiting = True
                logger.warning(
                    "the events exchange %s does not exist yet: waiting for a worker to "
                    "declare it (start a worker on this vhost)",
                    EVENTS_EXCHANGE,
                )
            await asyncio.sleep(wait_s)
            # RabbitMQ closes a channel whose passive declaration fails.
            if channel.is_closed:
                await channel.reopen()
            continue
        if waiting:
            logger.info("the events exchange %s is there now", EVENTS_EXCHANGE)
        return exchange


async def subscribe(channel: AbstractChannel, keys: Sequence[str]) -> AbstractQueue:
    """An exclusive, auto-delete, server-named queue bound to the events exchange with
    ``keys`` (waiting for a worker to declare the exchange: :func:`events_exchange`).

    Reactions are only worth showing live: a consumer that is away misses them rather
    than finding a backlog when it comes back, so the queue dies with the connection.
    """
    exchange = await events_exchange(channel)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in keys:
        await queue.bind(exchange, routing_key=key)
    logger.info("subscribed to %s with %s", EVENTS_EXCHANGE, ", ".join(keys))
    return queue
