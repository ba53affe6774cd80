"""The control channel: ``memelearning models promote|rollback`` tells every worker
that what serves has changed.

A fanout exchange (``memelearning.control``) delivers each message to every worker:
each binds a queue of its own to it, exclusive to its connection and deleted with it,
named ``memelearning.control.<worker id>.<random>``. The message carries the new
serving state of one model; the repository's ``serving.json`` holds the same state for
workers that start later or missed the message (they read it at start, and at every
poll with ``MEMELEARNING_WORKER_MODEL_POLL_S``). The producer owns the schema: it is
here, beside the worker that consumes it, because both come from this component.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Annotated, Final, Literal

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from memelearning.settings import SettingsError
from worker.repository import ServingState

if TYPE_CHECKING:
    from worker.models_settings import ModelsSettings

CONTROL_EXCHANGE: Final = "memelearning.control"
CONTENT_TYPE: Final = "application/json"
# Control messages are a few hundred bytes; a worker does not parse anything far bigger.
MAX_CONTROL_BYTES: Final = 16 * 1024


class ServingChanged(BaseModel):
    """What serves for ``model`` is now ``state`` (``revision`` orders the changes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["serving"] = "serving"
    model: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    state: ServingState
    sent_ms: Annotated[int, Field(ge=0)]

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def control_queue_name(exchange: str, worker_id: str) -> str:
    # The random part keeps two processes that share an id (a misconfiguration) from
    # locking each other out of an exclusive queue.
    return f"{exchange}.{worker_id}.{secrets.token_hex(4)}"


async def declare_control_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)


async def declare_control_queue(
    channel: AbstractChannel, exchange: str, worker_id: str, *, setting: str
) -> AbstractQueue:
    """This worker's queue on the control exchange: exclusive and auto-deleted, so it
    goes with the connection, and a robust channel declares it again after a
    reconnect. A broker user without the grants for it is a :class:`SettingsError`
    naming ``setting`` (the variable that names the exchange)."""
    try:
        control = await declare_control_exchange(channel, exchange)
        queue = await channel.declare_queue(
            control_queue_name(exchange, worker_id), exclusive=True, auto_delete=True
        )
        await queue.bind(control)
    except aiormq.exceptions.ChannelAccessRefused as exc:
        # Users set up before model swaps existed lack these grants: say what to do.
        raise SettingsError(
            f"{setting}: the broker refused this worker a queue on the control exchange "
            f"({exc}); grant its user the control exchange entries of docs/security.md, "
            f"or set {setting}= (empty) to run without control messages"
        ) from None
    return queue


async def notify_workers(settings: ModelsSettings, model: str, state: ServingState) -> None:
    """Publish ``state`` for ``model`` to every worker and wait for the broker's
    confirm. Raises :class:`memelearning.amqp.BrokerConnectError` when the broker
    cannot be reached."""
    message = ServingChanged(model=model, state=state, sent_ms=int(time.time() * 1000))
    connection = await settings.connect_robust(
        client_properties={"connection_name": settings.connection_name}
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_control_exchange(channel, settings.control_exchange)
        await exchange.publish(
            aio_pika.Message(
                message.to_json(),
                content_type=CONTENT_TYPE,
                # A worker that is not running when it is sent reads serving.json at start.
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            ),
            routing_key="",
            timeout=settings.confirm_timeout_s,
        )
