"""The worker against a real broker: events out, acks, batching, staleness, dead letters."""

from __future__ import annotations

import asyncio
import io
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from PIL import Image

from publisher.protocol import HEADER_MEETING, Frame
from tests.frames import (
    BLUE,
    GREEN,
    RED,
    EventCollector,
    make_frame,
    make_jpeg,
    now_ms,
    publish_frames,
    publish_raw,
)
from tests.workers import SpyDetector, Worker, messages_ready, wait_until, worker_settings
from worker.events import event_id
from worker.service import DetectorLike
from worker.settings import WorkerSettings

StartWorker = Callable[..., Any]


@pytest.fixture
async def start_worker(amqp_url: str) -> AsyncIterator[StartWorker]:
    """Factory: start a Worker on this test's vhost; every one is stopped afterwards."""
    started: list[Worker] = []

    async def start(detector: DetectorLike, **overrides: Any) -> Worker:
        worker = Worker(worker_settings(amqp_url, **overrides), detector=detector)
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.stop()


@pytest.fixture(scope="module")
def colour_detector_batch1(colour_model_dir_batch1: Path) -> DetectorLike:
    from worker.detector import Detector

    return Detector.load(colour_model_dir_batch1)


async def assert_all_settled(worker: Worker, url: str) -> None:
    """Nothing of the worker's is left unacked: once it stops, anything it still held
    would be back in the queue."""
    await worker.stop()
    assert await messages_ready(url) == 0


async def dead_letters(url: str, count: int, timeout: float = 60.0) -> list[Any]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(WorkerSettings().dead_letter_queue)
        found = []
        async with queue.iterator(timeout=timeout) as messages:
            async for message in messages:
                await message.ack()
                found.append(message)
                if len(found) == count:
                    break
        return found


async def test_a_frame_becomes_a_confirmed_event_and_is_acked(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    worker = await start_worker(colour_detector)
    frame = make_frame(RED, meeting="standup", participant="bob", sequence=7)
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [frame])
        [event] = await collector.wait_for(1)

    assert event.label == "red"
    assert event.score > 0.9
    assert (event.meeting_id, event.participant_id, event.sequence) == ("standup", "bob", 7)
    assert event.event_id == event_id(frame.message_id, "red")
    assert event.capture_ms == frame.capture_ms
    assert event.detected_ms >= frame.capture_ms
    assert event.model.name == colour_detector.name
    assert event.worker_id == worker.settings.worker_id
    assert collector.messages[0].routing_key == "reaction.standup.red"
    await wait_until(lambda: worker.metrics.frames_processed._value.get() == 1)
    await assert_all_settled(worker, amqp_url)


async def test_frames_of_many_participants_form_batches_under_load(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    spy = SpyDetector(colour_detector)
    spy.gate.clear()  # hold the first model call so a backlog builds behind it
    await start_worker(spy, max_batch=8, max_wait_ms=50)
    colours = [RED, GREEN, BLUE]
    frames = [make_frame(colours[i % 3], participant=f"p{i % 5}", sequence=i) for i in range(40)]
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, frames)
        spy.gate.set()
        events = await collector.wait_for(40)

    assert max(spy.calls) == 8
    assert sum(spy.calls) == 40
    assert len(spy.calls) < 40
    assert {e.participant_id for e in events} == {f"p{i}" for i in range(5)}


async def test_a_lone_frame_does_not_wait_longer_than_max_wait(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    spy = SpyDetector(colour_detector)
    await start_worker(spy, max_batch=32, max_wait_ms=20)
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [make_frame(GREEN)])
        # (a worker waiting for a full batch would wait for ever: the deadline is long)
        [event] = await collector.wait_for(1)

    assert spy.calls == [1]
    assert event.label == "green"


async def test_stale_frames_are_acked_and_counted_but_never_run_through_the_model(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    spy = SpyDetector(colour_detector)
    # A budget far from both kinds of frame: the fresh one stays fresh however slow the
    # machine is to get it to the worker, the old ones are old from the start.
    worker = await start_worker(spy, stale_after_ms=60_000, queue_ttl_ms=120_000)
    old = [make_frame(RED, sequence=i, capture_ms=now_ms() - 600_000) for i in range(5)]
    fresh = make_frame(BLUE, sequence=9)
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [*old, fresh])
        [event] = await collector.wait_for(1)
        await wait_until(lambda: worker.metrics.frames_stale._value.get() == 5)

    assert event.label == "blue"
    assert sum(spy.calls) == 1
    await assert_all_settled(worker, amqp_url)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), RED).save(buffer, "PNG")
    return buffer.getvalue()


def _bad_messages() -> dict[str, aio_pika.Message]:
    good = make_frame(RED)
    truncated = make_jpeg(RED, size=(320, 240))

    def variant(**changes: Any) -> aio_pika.Message:
        message = good.to_message()
        headers = dict(message.headers)
        for key, value in changes.pop("headers", {}).items():
            if value is None:
                headers.pop(key)
            else:
                headers[key] = value
        return aio_pika.Message(
            changes.get("body", message.body),
            content_type=changes.get("content_type", message.content_type),
            message_id=uuid.uuid4().hex,
            headers=headers,
        )

    return {
        "content_type": variant(content_type="image/png"),
        "missing_header": variant(headers={HEADER_MEETING: None}),
        "invalid_header": variant(headers={HEADER_MEETING: "a.b#c"}),
        "empty_body": variant(body=b""),
        "too_large": variant(body=b"\xff\xd8" + bytes(20_000)),
        "corrupt_jpeg": variant(body=truncated[: len(truncated) // 3]),
        "not_jpeg": variant(body=_png()),
        "decompression_bomb": variant(body=make_jpeg(RED, size=(400, 400))),
    }


async def test_each_kind_of_bad_frame_is_dead_lettered_with_its_reason_and_work_goes_on(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    bad = _bad_messages()
    worker = await start_worker(colour_detector, max_frame_bytes=10_000, max_frame_pixels=300 * 300)
    async with EventCollector(amqp_url) as collector:
        await publish_raw(amqp_url, bad.values())
        await publish_frames(amqp_url, [make_frame(GREEN)])
        [event] = await collector.wait_for(1)
        dead = await dead_letters(amqp_url, len(bad))

    assert event.label == "green"
    reasons = {m.message_id: m.headers["x-reject-reason"] for m in dead}
    assert sorted(reasons.values()) == sorted(bad)
    for expected, message in bad.items():
        assert reasons[message.message_id] == expected
    for message in dead:
        assert message.headers["x-reject-detail"]
        assert message.headers["x-rejected-by"] == worker.settings.worker_id
    assert worker.metrics.frames_rejected.labels("not_jpeg")._value.get() == 1
    await assert_all_settled(worker, amqp_url)


async def test_a_frame_is_redelivered_when_its_worker_dies_before_the_events_are_confirmed(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    stuck = SpyDetector(colour_detector)
    stuck.gate.clear()
    first = await start_worker(stuck)
    frame = make_frame(BLUE)
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [frame])
        await wait_until(stuck.entered.is_set)
        # The worker "dies": its connection goes away with the frame unacked.
        assert first._connection is not None
        await first._connection.close()
        second = await start_worker(colour_detector)
        [event] = await collector.wait_for(1)
        stuck.gate.set()

    assert event.worker_id == second.settings.worker_id
    assert event.event_id == event_id(frame.message_id, "blue")
    await wait_until(lambda: second.metrics.frames_processed._value.get() == 1)
    await assert_all_settled(second, amqp_url)


async def test_a_frame_that_keeps_crashing_the_model_is_dead_lettered_after_the_delivery_limit(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    # Only a frame that is mostly blue crashes the "model".
    def poison(images: Any) -> bool:
        return bool((images[..., 2].mean(axis=(1, 2)) > 150).any())

    spy = SpyDetector(colour_detector, fail_if=poison)
    worker = await start_worker(spy, delivery_limit=2, max_batch=4, max_wait_ms=30)
    good = [make_frame(RED, sequence=i) for i in range(3)]
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [good[0], make_frame(BLUE), *good[1:]])
        events = await collector.wait_for(3)
        [dead] = await dead_letters(amqp_url, 1)

    assert {e.frame_id for e in events} == {f.message_id for f in good}
    assert dead.headers["x-reject-reason"] == "delivery_limit"
    assert worker.metrics.frames_requeued.labels("inference_failed")._value.get() >= 2


async def test_a_batch_1_export_serves_batches_one_frame_per_call(
    amqp_url: str, start_worker: StartWorker, colour_detector_batch1: Any
) -> None:
    spy = SpyDetector(colour_detector_batch1)
    spy.gate.clear()
    await start_worker(spy, max_batch=8, max_wait_ms=50)
    frames = [make_frame(GREEN, sequence=i) for i in range(6)]
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, frames)
        spy.gate.set()
        events = await collector.wait_for(6)

    assert {e.label for e in events} == {"green"}
    assert colour_detector_batch1.max_batch == 1


async def test_health_endpoints_report_ready_and_metrics(
    amqp_url: str, start_worker: StartWorker, colour_detector: Any
) -> None:
    worker = await start_worker(colour_detector)
    base = f"http://127.0.0.1:{worker.http_port}"
    async with EventCollector(amqp_url) as collector:
        await publish_frames(amqp_url, [make_frame(RED)])
        await collector.wait_for(1)
    await wait_until(lambda: worker.metrics.frames_processed._value.get() == 1)

    # The endpoint is served by the worker's own event loop: fetch from a thread.
    ready = await asyncio.to_thread(http_get, base + "/readyz")
    text = (await asyncio.to_thread(http_get, base + "/metrics")).decode()
    assert ready == b"ready\n"
    assert "memelearning_worker_frames_processed_total 1.0" in text
    # Detection metrics name the model version that produced them.
    model = f'model="{colour_detector.name}",version="{colour_detector.version}"'
    assert f'memelearning_worker_events_published_total{{label="red",{model}}} 1.0' in text
    assert f"memelearning_worker_batch_size_count{{{model}}} 1.0" in text
    assert f"memelearning_worker_frames_detected_total{{{model}}} 1.0" in text


async def test_not_ready_until_started(amqp_url: str, colour_detector: Any) -> None:
    worker = Worker(worker_settings(amqp_url), detector=colour_detector)
    assert not worker.is_ready()
    await worker.start()
    try:
        assert worker.is_ready()
    finally:
        await worker.stop()
    assert not worker.is_ready()


def test_frames_are_built_with_the_contract_ids_only() -> None:
    with pytest.raises(ValueError, match="meeting_id"):
        Frame(meeting_id="a.b", participant_id="x", capture_ms=now_ms(), sequence=0, jpeg=b"x")
