"""Helpers for the publisher's tests: a test queue bound to the frames exchange (the
worker, which owns the real queue, is not part of these tests) and small frames."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aio_pika
import av
import numpy as np
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from PIL import Image

from publisher.protocol import (
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    FRAMES_EXCHANGE_DURABLE,
    FRAMES_EXCHANGE_TYPE,
    Frame,
)

# Real webcam frames of one person (see /work/shared/data/README.md).
PERSON = Path(__file__).resolve().parents[2] / "shared" / "data" / "signs" / "4-mina"


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


def write_video(path: Path, times: list[float], size: tuple[int, int] = (64, 48)) -> None:
    """A synthetic H.264 video with a frame at each of ``times`` (seconds), whose colour
    encodes that time: red goes from 0 at 0 s to 255 at 3 s (blue the other way)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for t in times:
            red = round(t / 3 * 255)
            pixels = np.full((size[1], size[0], 3), (red, 0, 255 - red), np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = round(t * 30)
            frame.time_base = Fraction(1, 30)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
