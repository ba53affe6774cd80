"""A burst of hostile frames through a real Worker on the broker: every bad frame ends
in the dead-letter queue with its reason, the good frames between them become events,
and the worker stays up throughout."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage
from pamqp import commands as spec

from publisher.protocol import (
    CONTENT_TYPE,
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    HEADER_CAPTURE_MS,
    HEADER_MEETING,
    HEADER_SCHEMA,
    HEADER_SEQUENCE,
)
from tests.frames import BLUE, GREEN, EventCollector, make_frame, now_ms
from tests.hostile import (
    FakeMessage,
    FrameChecker,
    idle_worker,
    other_formats,
    real_jpegs,
    valid_headers,
    with_dimensions,
)
from tests.workers import Worker, messages_ready, wait_until, worker_settings
from worker.settings import WorkerSettings
from worker.topology import HEADER_REJECT_DETAIL, HEADER_REJECT_REASON

BAD_FRAMES: Final = 300
GOOD_EVERY: Final = 10  # one good frame after every ten bad ones
MAX_BYTES: Final = 256 * 1024
FUZZ_ID: Final = "x-fuzz-id"  # finds a frame again whatever its message_id became


class RawStr(str):
    """A short string that goes on the wire as the given bytes, UTF-8 or not: what a
    hostile or broken client can send as a property value or header name (pamqp
    encodes with ``value.encode("utf-8")``; the broker passes the bytes through)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawStr:
        text = super().__new__(cls, raw.decode("latin-1"))
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out))
        match rng.choice(["truncate", "flip", "insert", "delete"]):
            case "truncate":
                del out[max(at, 1) :]
            case "flip":
                out[at] ^= 1 << rng.randrange(8)
            case "insert":
                out[at:at] = rng.randbytes(rng.randint(1, 32))
            case _:
                del out[at : at + rng.randint(1, 200)]
    return bytes(out)


def hostile_frames(rng: random.Random, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    """``count`` (body, AMQP properties) pairs, each rejected by the worker's checks
    (so each has one expected reason). Property values may be ``bytes``: sent raw."""
    seeds = real_jpegs()
    foreign = other_formats(seeds[0])
    checker = FrameChecker(idle_worker(max_frame_bytes=MAX_BYTES))
    frames: list[tuple[bytes, dict[str, Any]]] = []
    while len(frames) < count:
        seed = rng.choice(seeds)
        headers = valid_headers(now_ms())
        props: dict[str, Any] = {"content_type": CONTENT_TYPE, "message_id": uuid.uuid4().hex}
        kind = rng.randrange(12)
        body = seed
        if kind == 0:
            body = _mutate(rng, seed)
        elif kind == 1:
            body = seed[: rng.randrange(1, len(seed))]
        elif kind == 2:
            body = rng.choice(foreign)
        elif kind == 3:
            body = with_dimensions(seed, rng.choice([65000, 65535, 5000]), 65000)
        elif kind == 4:
            body = bytes(rng.choice([0, 1, 100, 5000]))
        elif kind == 5:
            body = b"\xff\xd8" + bytes(MAX_BYTES)
        elif kind == 6:
            del headers[rng.choice(list(headers))]
        elif kind == 7:
            headers[rng.choice([HEADER_MEETING, HEADER_SEQUENCE, HEADER_CAPTURE_MS])] = rng.choice(
                ["a.b#c", "x" * 300, -5, 1.5, True, [1, 2], {"a": 1}, RawStr(b"m\xff")]
            )
        elif kind == 8:
            headers[HEADER_SCHEMA] = rng.choice([2, 0, "1", None])
        elif kind == 9:
            props["content_type"] = rng.choice(["image/png", "", "text/plain", "IMAGE/JPEG"])
        elif kind == 10:
            # Not UTF-8 where AMQP wants a short string: the content type, a header name.
            if rng.random() < 0.5:
                props["content_type"] = RawStr(b"image/jpeg\xff")
            else:
                headers[RawStr(b"x-\xc3(" + rng.randbytes(2).hex().encode())] = 1
                del headers[HEADER_MEETING]
        else:
            # (An empty message_id cannot be sent: aiormq fills in a fresh one.)
            props["message_id"] = "x" * rng.choice([129, 255])
        outcome = checker.message(
            FakeMessage(
                body,
                _as_received(props["content_type"]),
                _as_received(props["message_id"]),
                {_as_received(k): _long_string(v) for k, v in headers.items()},
            ),
            now_ms(),
        )
        if outcome.kind != "rejected":
            continue  # a mutation that still decodes is a good frame, not this test's
        headers[FUZZ_ID] = f"{len(frames)}:{outcome.reason}"
        props["headers"] = headers
        frames.append((body, props))
    return frames


def _long_string(value: Any) -> Any:
    # A header value that is not UTF-8 arrives as bytes (pamqp's long strings).
    return value.raw if isinstance(value, RawStr) else value


def _as_received(value: Any) -> Any:
    # What the worker's AMQP client makes of a short string that is not UTF-8.
    return value.raw.decode("utf-8", "replace") if isinstance(value, RawStr) else value


async def publish_hostile(url: str, frames: list[tuple[bytes, dict[str, Any]]]) -> None:
    """Publish through aiormq directly: aio-pika would copy a RawStr into a str."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.confirm_delivery()
        for body, props in frames:
            await channel.basic_publish(
                body,
                exchange=FRAMES_EXCHANGE,
                routing_key=FRAME_ROUTING_KEY,
                properties=spec.Basic.Properties(**props),
            )
    finally:
        await connection.close()


class DeadLetters:
    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[AbstractIncomingMessage] = []

    @contextlib.asynccontextmanager
    async def consuming(self) -> AsyncIterator[DeadLetters]:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(WorkerSettings().dead_letter_queue)
            await queue.consume(self._on_message)
            yield self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self.messages.append(message)


async def test_a_burst_of_hostile_frames_is_dead_lettered_and_good_frames_go_on(
    amqp_url: str, colour_detector: Any
) -> None:
    bad = hostile_frames(random.Random(20260524), BAD_FRAMES)
    expected = {frame[1]["headers"][FUZZ_ID] for frame in bad}
    good = [
        make_frame(GREEN if i % 2 else BLUE, sequence=i) for i in range(BAD_FRAMES // GOOD_EVERY)
    ]
    worker = Worker(
        worker_settings(
            amqp_url, max_frame_bytes=MAX_BYTES, stale_after_ms=300_000, queue_ttl_ms=300_000
        ),
        detector=colour_detector,
    )
    await worker.start()
    try:
        async with EventCollector(amqp_url) as events, DeadLetters(amqp_url).consuming() as dlq:
            for i, frame in enumerate(good):
                chunk = bad[i * GOOD_EVERY : (i + 1) * GOOD_EVERY]
                await publish_hostile(amqp_url, chunk)
                await publish_hostile(amqp_url, [(frame.jpeg, _props(frame))])
            await events.wait_for(len(good), timeout=90)
            await wait_until(lambda: len(dlq.messages) >= len(bad), timeout=60)
            assert worker.is_ready()
    finally:
        await worker.stop()

    reasons = {m.headers[FUZZ_ID]: m.headers[HEADER_REJECT_REASON] for m in dlq.messages}
    print(f"\n{len(bad)} hostile frames, {len(good)} good: {_tally(reasons.values())}")
    assert set(reasons) == expected
    for fuzz_id, reason in reasons.items():
        assert str(fuzz_id).split(":", 1)[1] == reason
    assert all(m.headers[HEADER_REJECT_DETAIL] for m in dlq.messages)
    assert sorted(e.sequence for e in events.events) == [f.sequence for f in good]
    assert await messages_ready(amqp_url) == 0
    await asyncio.sleep(0)


def _props(frame: Any) -> dict[str, Any]:
    message = frame.to_message()
    return {
        "content_type": message.content_type,
        "message_id": message.message_id,
        "headers": message.headers,
        "delivery_mode": 1,
    }


def _tally(reasons: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))
