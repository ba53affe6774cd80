"""The frame wire contract: what a Frame puts on the wire parses back, and every way a
message can break the contract is named by its FrameError reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from publisher.protocol import (
    CONTENT_TYPE,
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    HEADER_CAPTURE_MS,
    HEADER_MEETING,
    HEADER_PARTICIPANT,
    HEADER_SCHEMA,
    HEADER_SEQUENCE,
    MAX_FRAME_BYTES,
    SCHEMA_VERSION,
    Frame,
    FrameError,
    FrameMeta,
    parse_frame,
)
from tests.publisher_support import frames_queue, jpeg_bytes

CAPTURE_MS = 1_700_000_000_123
JPEG = jpeg_bytes()


def _frame(**overrides: Any) -> Frame:
    fields: dict[str, Any] = {
        "meeting_id": "m-1",
        "participant_id": "alice_2",
        "capture_ms": CAPTURE_MS,
        "sequence": 5,
        "jpeg": JPEG,
    }
    fields.update(overrides)
    return Frame(**fields)


def _envelope(**overrides: Any) -> dict[str, Any]:
    """parse_frame's arguments for a valid frame, with ``overrides``; a header set to
    ``None`` is removed."""
    message = _frame(message_id="abc123").to_message()
    headers = dict(message.headers)
    for name in list(overrides):
        if name.startswith("x-"):
            value = overrides.pop(name)
            if value is None:
                del headers[name]
            else:
                headers[name] = value
    envelope: dict[str, Any] = {
        "body": message.body,
        "content_type": message.content_type,
        "message_id": message.message_id,
        "headers": headers,
    }
    envelope.update(overrides)
    return envelope


def test_a_frame_parses_back_from_its_message() -> None:
    frame = _frame()
    message = frame.to_message()
    meta = parse_frame(
        body=message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        headers=message.headers,
    )
    assert meta == FrameMeta(frame.message_id, "m-1", "alice_2", CAPTURE_MS, 5)
    assert message.body == JPEG
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert message.timestamp == datetime.fromtimestamp(CAPTURE_MS / 1000, tz=UTC)
    assert message.headers[HEADER_SCHEMA] == SCHEMA_VERSION


def test_each_frame_gets_its_own_message_id() -> None:
    ids = {_frame().message_id for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 for i in ids)


async def test_a_frame_parses_back_after_a_trip_through_the_broker(amqp_url: str) -> None:
    # given a frame published as is, bypassing the publisher
    frame = _frame()
    async with frames_queue(amqp_url) as queue:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(FRAMES_EXCHANGE)
            await exchange.publish(frame.to_message(), FRAME_ROUTING_KEY)
        # when
        [message] = await queue.drain()
    # then the broker's header encoding still parses to the same frame
    meta = parse_frame(
        body=message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        headers=message.headers,
    )
    assert meta == FrameMeta(frame.message_id, "m-1", "alice_2", CAPTURE_MS, 5)


def test_ids_sent_as_utf8_bytes_are_accepted() -> None:
    meta = parse_frame(**_envelope(**{HEADER_MEETING: b"m-1", HEADER_PARTICIPANT: b"bob"}))
    assert (meta.meeting_id, meta.participant_id) == ("m-1", "bob")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"content_type": "image/png"}, "content_type", id="wrong-content-type"),
        pytest.param({"content_type": None}, "content_type", id="no-content-type"),
        pytest.param({"message_id": None}, "missing_header", id="no-message-id"),
        pytest.param({"message_id": "x" * 129}, "invalid_header", id="long-message-id"),
        pytest.param({"body": b""}, "empty_body", id="empty-body"),
        pytest.param({"body": b"x" * (MAX_FRAME_BYTES + 1)}, "too_large", id="oversized-body"),
        pytest.param({"headers": None}, "missing_header", id="no-headers"),
        pytest.param({HEADER_SCHEMA: None}, "missing_header", id="no-schema"),
        pytest.param({HEADER_MEETING: None}, "missing_header", id="no-meeting"),
        pytest.param({HEADER_PARTICIPANT: None}, "missing_header", id="no-participant"),
        pytest.param({HEADER_CAPTURE_MS: None}, "missing_header", id="no-capture"),
        pytest.param({HEADER_SEQUENCE: None}, "missing_header", id="no-sequence"),
        pytest.param({HEADER_SCHEMA: 2}, "unsupported_schema", id="schema-2"),
        pytest.param({HEADER_SCHEMA: "1"}, "invalid_header", id="schema-as-str"),
        pytest.param({HEADER_SCHEMA: True}, "invalid_header", id="schema-as-bool"),
        pytest.param({HEADER_CAPTURE_MS: True}, "invalid_header", id="capture-as-bool"),
        pytest.param({HEADER_CAPTURE_MS: str(CAPTURE_MS)}, "invalid_header", id="capture-as-str"),
        pytest.param({HEADER_CAPTURE_MS: 1_700_000_000}, "invalid_header", id="capture-in-s"),
        pytest.param({HEADER_CAPTURE_MS: CAPTURE_MS * 1000}, "invalid_header", id="capture-in-us"),
        pytest.param({HEADER_SEQUENCE: -1}, "invalid_header", id="negative-sequence"),
        pytest.param({HEADER_SEQUENCE: 1.0}, "invalid_header", id="sequence-as-float"),
        pytest.param({HEADER_SEQUENCE: False}, "invalid_header", id="sequence-as-bool"),
        pytest.param({HEADER_MEETING: b"m\xff\xfe"}, "invalid_header", id="non-utf8-bytes-id"),
        pytest.param({HEADER_MEETING: "m.1"}, "invalid_header", id="dot-in-meeting"),
        pytest.param({HEADER_PARTICIPANT: "a#b"}, "invalid_header", id="hash-in-participant"),
        pytest.param({HEADER_PARTICIPANT: ""}, "invalid_header", id="empty-participant"),
        pytest.param({HEADER_PARTICIPANT: "a" * 65}, "invalid_header", id="long-participant"),
        pytest.param({HEADER_MEETING: 42}, "invalid_header", id="meeting-as-int"),
    ],
)
def test_a_message_that_breaks_the_contract_names_the_reason(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame(**_envelope(**overrides))
    assert raised.value.reason == reason
    assert raised.value.detail


def test_a_consumer_may_set_a_lower_size_limit() -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame(**_envelope(), max_bytes=len(JPEG) - 1)
    assert raised.value.reason == "too_large"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"meeting_id": "m.1"}, "meeting_id", id="dot-in-meeting"),
        pytest.param({"participant_id": "a b"}, "participant_id", id="space-in-participant"),
        pytest.param({"capture_ms": 1_700_000_000}, "milliseconds", id="capture-in-s"),
        pytest.param({"sequence": -1}, "sequence", id="negative-sequence"),
        pytest.param({"jpeg": b""}, "empty", id="empty-jpeg"),
        pytest.param({"jpeg": b"x" * (MAX_FRAME_BYTES + 1)}, "limit", id="oversized-jpeg"),
    ],
)
def test_a_frame_that_would_break_the_contract_cannot_be_built(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _frame(**overrides)
