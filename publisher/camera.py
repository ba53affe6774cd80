"""A browser's camera as a meeting participant: the page captures the webcam
(getUserMedia), sends JPEG frames over a WebSocket, and each one is published through
:class:`~publisher.publishing.FramePublisher` exactly as the MCU publishes a
participant's frames. The meeting simulator serves it at ``/camera`` for the demo.

Frames are biometric data: they are held only while being published, never written
to disk or logged (a refusal names its size or dimensions, never its content).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable
from typing import Final

from aiohttp import WSMsgType, web
from PIL import Image, UnidentifiedImageError

from publisher.errors import BrokerUnavailableError, PublishError
from publisher.protocol import (
    ID_PATTERN,
    WORKER_MAX_FRAME_BYTES,
    WORKER_MAX_FRAME_PIXELS,
    Frame,
)
from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings

log = logging.getLogger(__name__)

DEFAULT_MEETING: Final = "demo"
DEFAULT_PARTICIPANT: Final = "you"
_JPEG_START: Final = b"\xff\xd8"


class CameraFrameError(ValueError):
    """A camera frame the worker would refuse; the message says why, for the page."""


def check_camera_frame(jpeg: bytes) -> None:
    """Refuse what the worker would dead-letter (not a JPEG, over its byte or pixel
    limit) before it is published. Reads only the JPEG header."""
    if len(jpeg) > WORKER_MAX_FRAME_BYTES:
        raise CameraFrameError(
            f"a frame of {len(jpeg)} bytes is over the worker's limit of {WORKER_MAX_FRAME_BYTES}"
        )
    if not jpeg.startswith(_JPEG_START):
        raise CameraFrameError("a frame is not a JPEG (send canvas.toBlob(…, 'image/jpeg'))")
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError):
        raise CameraFrameError("a frame is not a readable JPEG") from None
    if width * height > WORKER_MAX_FRAME_PIXELS:
        raise CameraFrameError(
            f"a {width}x{height} frame is over the worker's limit of "
            f"{WORKER_MAX_FRAME_PIXELS} pixels; capture a smaller size"
        )


class CameraBridge:
    """Serves the ``/camera`` WebSocket: ``?meeting=M&participant=P`` (default
    ``demo``/``you``), binary messages of one JPEG each; answers one JSON text message
    per frame: ``{"published": n}`` or ``{"error": "…"}``.

    One publisher serves every camera, started on first use. Sequence numbers go on
    per participant across reconnections, because hold-to-confirm counts frames by
    their sequence and a number that starts over would look like old frames.
    """

    def __init__(
        self, settings: PublisherSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._publisher: FramePublisher | None = None
        self._starting = asyncio.Lock()
        self._sequences: dict[tuple[str, str], int] = {}
        self.published = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        meeting = request.query.get("meeting", DEFAULT_MEETING)
        participant = request.query.get("participant", DEFAULT_PARTICIPANT)
        for name, value in (("meeting", meeting), ("participant", participant)):
            if not ID_PATTERN.fullmatch(value):
                raise web.HTTPBadRequest(text=f"{name} must match {ID_PATTERN.pattern}")
        # A bigger message is refused by aiohttp before it is read into memory.
        ws = web.WebSocketResponse(max_msg_size=WORKER_MAX_FRAME_BYTES, heartbeat=20)
        await ws.prepare(request)
        try:
            publisher = await self._started()
        except BrokerUnavailableError as exc:
            await ws.send_str(json.dumps({"error": str(exc)}))
            await ws.close()
            return ws
        log.info("camera of %s in meeting %s connected", participant, meeting)
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            reply = await self._publish(publisher, meeting, participant, message.data)
            try:
                await ws.send_str(json.dumps(reply))
            except ConnectionResetError:
                break  # the page went away mid-frame
        log.info("camera of %s in meeting %s disconnected", participant, meeting)
        return ws

    async def _publish(
        self, publisher: FramePublisher, meeting: str, participant: str, jpeg: bytes
    ) -> dict[str, object]:
        try:
            check_camera_frame(jpeg)
        except CameraFrameError as exc:
            return {"error": str(exc)}
        key = (meeting, participant)
        sequence = self._sequences.get(key, 0)
        self._sequences[key] = sequence + 1
        frame = Frame(
            meeting_id=meeting,
            participant_id=participant,
            capture_ms=int(self._clock() * 1000),
            sequence=sequence,
            jpeg=jpeg,
        )
        try:
            # Returns once the frame is in the in-flight window: a slow broker holds up
            # the socket, and the page skips frames while its send buffer is not empty.
            await publisher.publish(frame)
        except PublishError as exc:
            # An earlier frame failed (this one was not sent): say so and keep going,
            # a live camera has the next frame a moment later.
            log.warning("camera frame not published: %s", exc)
            return {"error": str(exc)}
        self.published += 1
        return {"published": self.published}

    async def _started(self) -> FramePublisher:
        async with self._starting:
            if self._publisher is None:
                publisher = FramePublisher(self._settings)
                await publisher.start()
                self._publisher = publisher
            return self._publisher

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
