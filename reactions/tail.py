"""``memelearning reactions tail``: print reaction events as JSON lines.

The smallest API-side consumer, for people (``… | jq``) and for checking that events
flow end to end. Bad messages are reported and acked: a tail must never stop on one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from memelearning.amqp import AmqpSettings, BrokerConnectError
from memelearning.logs import redact_url
from reactions.subscription import binding_keys, connect, subscribe
from worker.events import ReactionEvent

logger = logging.getLogger(__name__)


def format_event(body: bytes) -> str | None:
    """One JSON line for a valid event body; None (after a warning) for anything else."""
    try:
        event = ReactionEvent.from_json(body)
    except ValidationError as exc:
        logger.warning("skipping a message that is not a reaction event: %s", _first_error(exc))
        return None
    return event.model_dump_json()


async def tail(
    amqp_url: str,
    write_line: Callable[[str], None],
    *,
    meeting: str | None = None,
    label: str | None = None,
    connection_name: str = "memelearning-reactions-tail",
    ready: asyncio.Event | None = None,
    tls: AmqpSettings | None = None,
) -> None:
    """Consume events until cancelled, calling ``write_line`` with one JSON document per
    event. ``ready`` is set once the queue is bound (nothing published before that can
    arrive). ``tls`` holds the TLS settings for an ``amqps://`` URL."""
    connection = await connect(amqp_url, connection_name, tls)
    logger.info("tailing reaction events from %s", redact_url(amqp_url))
    try:
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=100)
            queue = await subscribe(channel, binding_keys([meeting] if meeting else (), label))
        except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            # Once subscribed, the robust connection rides out an outage; before that
            # there is no queue to come back to, so say so in one line.
            raise BrokerConnectError(
                f"lost {redact_url(amqp_url)} before the tail was subscribed "
                f"({type(exc).__name__}: {_first_line(exc)}); run it again when the broker "
                "answers"
            ) from exc
        if ready is not None:
            ready.set()
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    line = format_event(message.body)
                    if line is not None:
                        write_line(line)
    finally:
        await connection.close()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "body"
    return f"{where}: {err['msg']} ({exc.error_count()} problem(s))"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["no detail"])[0]
