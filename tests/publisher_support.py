"""Helpers for the publisher's tests: a test queue bound to the frames exchange (the
worker, which owns the real queue, is not part of these tests) and small frames."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from PIL import Image

from publisher.protocol import (
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    FRAMES_EXCHANGE_DURABLE,
    FRAMES_EXCHANGE_TYPE,
    Frame,
)


def jpeg_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_frame(
    sequence: int = 0,
    *,
    meeting_id: str = "m1",
    participant_id: str = "alice",
    capture_ms: int | None = None,
    jpeg: bytes | None = None,
) -> Frame:
    return Frame(
        meeting_id=meeting_id,
        participant_id=participant_id,
        capture_ms=int(time.time() * 1000) if capture_ms is None else capture_ms,
        sequence=sequence,
        jpeg=jpeg or jpeg_bytes(),
    )


@dataclass
class FramesQueue:
    """A plain queue bound to the frames exchange, read from its own connection."""

    queue: AbstractQueue

    async def drain(self) -> list[AbstractIncomingMessage]:
        """Every message now in the queue (acked)."""
        messages = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages


@asynccontextmanager
async def frames_queue(
    amqp_url: str,
    *,
    name: str = "test.frames",
    arguments: dict[str, Any] | None = None,
    bind: bool = True,
) -> AsyncIterator[FramesQueue]:
    """Declare the frames exchange exactly as the contract says, and a test queue bound
    to it (unless ``bind`` is False: then only the exchange exists)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            FRAMES_EXCHANGE,
            aio_pika.ExchangeType(FRAMES_EXCHANGE_TYPE),
            durable=FRAMES_EXCHANGE_DURABLE,
        )
        queue = await channel.declare_queue(name, arguments=arguments)
        if bind:
            await queue.bind(exchange, FRAME_ROUTING_KEY)
        yield FramesQueue(queue)
    finally:
        await connection.close()
