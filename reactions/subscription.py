"""Binding a private queue to the reaction-event exchange (reaction events, frame
detections): shared by ``reactions tail``, the service and the meeting simulator's live
page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from pamqp.common import FieldTable

from memelearning.amqp import AmqpSettings, build_ssl_context, connect_robust
from worker.events import EVENTS_EXCHANGE, binding_key, detections_binding_key

logger = logging.getLogger(__name__)

# Must match the worker's declaration exactly, or RabbitMQ refuses the second one.
EVENTS_EXCHANGE_TYPE: Final = aio_pika.ExchangeType.TOPIC
EVENTS_EXCHANGE_DURABLE: Final = True


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


async def subscribe(channel: AbstractChannel, keys: Sequence[str]) -> AbstractQueue:
    """Declare the events exchange and an exclusive, auto-delete, server-named queue
    bound to it with ``keys``.

    Reactions are only worth showing live: a consumer that is away misses them rather
    than finding a backlog when it comes back, so the queue dies with the connection.
    """
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, EVENTS_EXCHANGE_TYPE, durable=EVENTS_EXCHANGE_DURABLE
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in keys:
        await queue.bind(exchange, routing_key=key)
    logger.info("subscribed to %s with %s", EVENTS_EXCHANGE, ", ".join(keys))
    return queue
