"""The frame wire contract. The publisher (the MCU side) produces frames, so it owns
this schema; the worker imports it from here and never re-defines it.

A frame is one AMQP message whose body is the raw JPEG bytes: base64 or a JSON
wrapper would cost a third more bytes and a parse per frame on the hot path, and
everything else a consumer needs fits in AMQP properties and headers.
See docs/protocol.md for the prose version.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika

SCHEMA_VERSION: Final = 1
CONTENT_TYPE: Final = "image/jpeg"

# Publishers write to an exchange, never straight to the queue: the worker owns its
# queue's arguments (TTL, length, dead-lettering) and the publisher needs only
# write access to this exchange (least privilege).
FRAMES_EXCHANGE: Final = "memelearning.frames"
FRAME_ROUTING_KEY: Final = "frame"
# Whoever declares the exchange (the worker always; the publisher when allowed to)
# must use these exact properties, or RabbitMQ refuses the second declaration.
FRAMES_EXCHANGE_TYPE: Final = "direct"
FRAMES_EXCHANGE_DURABLE: Final = True

HEADER_SCHEMA: Final = "x-schema-version"
HEADER_MEETING: Final = "x-meeting-id"
HEADER_PARTICIPANT: Final = "x-participant-id"
HEADER_CAPTURE_MS: Final = "x-capture-ms"
HEADER_SEQUENCE: Final = "x-sequence"

# Meeting and participant ids end up in topic routing keys (`reaction.<meeting>.<label>`),
# where a '.' or '#' would change the routing, so the contract keeps them to a safe set.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

# No webcam frame at meeting resolutions comes near this; anything bigger is not a frame.
MAX_FRAME_BYTES: Final = 8 * 1024 * 1024
# What a worker accepts by default (MEMELEARNING_WORKER_MAX_FRAME_BYTES and
# MEMELEARNING_WORKER_MAX_FRAME_PIXELS); it dead-letters bigger frames as `too_large` and
# `decompression_bomb`. The reference publisher downscales or leaves out frames over
# these limits rather than send what will be refused.
WORKER_MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
WORKER_MAX_FRAME_PIXELS: Final = 4096 * 4096

# A capture time outside these bounds is a unit mistake (seconds, microseconds) or garbage.
_MIN_CAPTURE_MS: Final = 1_500_000_000_000  # 2017-07
_MAX_CAPTURE_MS: Final = 4_102_444_800_000  # 2100-01


class FrameError(ValueError):
    """A message that breaks the frame contract. ``reason`` is a short, stable code
    (used as a metric label and in the dead-letter reason header); ``detail`` says
    what exactly was wrong, for a person."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """What a frame's headers say about it."""

    message_id: str
    meeting_id: str
    participant_id: str
    capture_ms: int
    sequence: int


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled video frame of one participant, as the MCU publishes it."""

    meeting_id: str
    participant_id: str
    capture_ms: int
    sequence: int
    jpeg: bytes
    message_id: str = ""

    def __post_init__(self) -> None:
        _check_id("meeting_id", self.meeting_id)
        _check_id("participant_id", self.participant_id)
        _check_capture_ms(self.capture_ms)
        if self.sequence < 0:
            raise ValueError(f"sequence must be >= 0, got {self.sequence}")
        if not self.jpeg:
            raise ValueError("jpeg must not be empty")
        if len(self.jpeg) > MAX_FRAME_BYTES:
            raise ValueError(f"jpeg is {len(self.jpeg)} bytes, the limit is {MAX_FRAME_BYTES}")
        if not self.message_id:
            object.__setattr__(self, "message_id", uuid.uuid4().hex)

    def to_message(self) -> aio_pika.Message:
        return aio_pika.Message(
            body=self.jpeg,
            content_type=CONTENT_TYPE,
            message_id=self.message_id,
            timestamp=datetime.fromtimestamp(self.capture_ms / 1000, tz=UTC),
            # Frames are worthless after a few seconds: nothing to keep across a broker
            # restart. (A quorum queue still writes every message to its log; see
            # docs/protocol.md on the broker's data directory.)
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            headers={
                HEADER_SCHEMA: SCHEMA_VERSION,
                HEADER_MEETING: self.meeting_id,
                HEADER_PARTICIPANT: self.participant_id,
                HEADER_CAPTURE_MS: self.capture_ms,
                HEADER_SEQUENCE: self.sequence,
            },
        )


def parse_frame(
    *,
    body: bytes,
    content_type: str | None,
    message_id: str | None,
    headers: Mapping[str, Any] | None,
    max_bytes: int = MAX_FRAME_BYTES,
) -> FrameMeta:
    """Check a received message against the contract; raise :class:`FrameError` if it
    breaks it. Only the envelope is checked here; whether the body really is a JPEG is
    found out when it is decoded."""
    if content_type != CONTENT_TYPE:
        raise FrameError("content_type", f"expected {CONTENT_TYPE!r}, got {_short(content_type)}")
    if not message_id:
        raise FrameError("missing_header", "message_id property is missing")
    if len(message_id) > 128:
        raise FrameError("invalid_header", "message_id is longer than 128 characters")
    if not body:
        raise FrameError("empty_body", "body is empty")
    if len(body) > max_bytes:
        raise FrameError("too_large", f"body is {len(body)} bytes, the limit is {max_bytes}")
    h = headers or {}
    version = _int_header(h, HEADER_SCHEMA)
    if version != SCHEMA_VERSION:
        raise FrameError(
            "unsupported_schema", f"schema version {version}, expected {SCHEMA_VERSION}"
        )
    meeting = _id_header(h, HEADER_MEETING)
    participant = _id_header(h, HEADER_PARTICIPANT)
    capture_ms = _int_header(h, HEADER_CAPTURE_MS)
    try:
        _check_capture_ms(capture_ms)
    except ValueError as exc:
        raise FrameError("invalid_header", f"{HEADER_CAPTURE_MS}: {exc}") from None
    sequence = _int_header(h, HEADER_SEQUENCE)
    if sequence < 0:
        raise FrameError("invalid_header", f"{HEADER_SEQUENCE} must be >= 0, got {sequence}")
    return FrameMeta(
        message_id=message_id,
        meeting_id=meeting,
        participant_id=participant,
        capture_ms=capture_ms,
        sequence=sequence,
    )


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _get(headers: Mapping[str, Any], name: str) -> Any:
    if name not in headers:
        raise FrameError("missing_header", f"header {name} is missing")
    return headers[name]


def _int_header(headers: Mapping[str, Any], name: str) -> int:
    value = _get(headers, name)
    # bool is an int in Python but never a valid number on this wire.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError("invalid_header", f"header {name} must be an integer, got {_short(value)}")
    return value


def _id_header(headers: Mapping[str, Any], name: str) -> str:
    value = _get(headers, name)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("invalid_header", f"header {name} is not UTF-8") from None
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise FrameError(
            "invalid_header",
            f"header {name} must match {ID_PATTERN.pattern}, got {_short(value)}",
        )
    return value


def _check_id(field: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{field} must match {ID_PATTERN.pattern}, got {value!r}")


def _check_capture_ms(value: int) -> None:
    if not _MIN_CAPTURE_MS <= value <= _MAX_CAPTURE_MS:
        raise ValueError(f"capture time {value} is not milliseconds since the epoch")
