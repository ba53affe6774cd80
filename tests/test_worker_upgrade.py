"""Upgrading a running broker: until 2026-11-29 the frames queue had the frames
exchange's name (`memelearning.frames`), so the grant that let a worker bind it also
let it publish frames. Workers of this release consume `memelearning.frames.queue`,
and say once at start when the old queue is still there."""

from __future__ import annotations

import logging

import aio_pika
import pytest

from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE
from tests.frames import EventCollector, make_frame, publish_raw
from tests.workers import ThumbsUpDetector, Worker, messages_ready, worker_settings
from worker.topology import LEGACY_FRAMES_QUEUE, frames_queue_arguments

EARLIER = "release before 2026-11-29"


async def _declare_earlier_topology(admin_url: str) -> None:
    """The frames exchange and queue as an earlier release's workers declared them."""
    settings = worker_settings(admin_url)
    connection = await aio_pika.connect(admin_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            FRAMES_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(
            LEGACY_FRAMES_QUEUE, durable=True, arguments=frames_queue_arguments(settings)
        )
        await queue.bind(exchange, routing_key=FRAME_ROUTING_KEY)


def _earlier_queue_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if EARLIER in r.getMessage()]


async def test_a_worker_says_once_that_the_earlier_frames_queue_is_still_there(
    worker_url: str, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # given a vhost an earlier release ran on, its queue still bound
    await _declare_earlier_topology(amqp_url)
    caplog.set_level(logging.WARNING, logger="worker.service")
    async with EventCollector(amqp_url) as collector:
        # when a worker of this release starts there with the worker user
        worker = Worker(worker_settings(worker_url), detector=ThumbsUpDetector())
        await worker.start()
        try:
            # then it says so, once, with what to do
            (line,) = _earlier_queue_lines(caplog)
            assert f"{LEGACY_FRAMES_QUEUE}, is still on the broker" in line
            assert "delete it once no worker of that release runs" in line
            # and it serves the frames of its own queue, while the exchange still
            # routes a copy of each into the old one
            frame = make_frame()
            await publish_raw(amqp_url, [frame.to_message()])
            (event,) = await collector.wait_for(1, timeout=30)
        finally:
            await worker.stop()
    assert event.frame_id == frame.message_id
    assert await messages_ready(amqp_url, LEGACY_FRAMES_QUEUE) == 1


async def test_a_worker_on_a_new_broker_says_nothing_of_an_earlier_queue(
    worker_url: str, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.service")
    worker = Worker(worker_settings(worker_url), detector=ThumbsUpDetector())
    await worker.start()
    await worker.stop()
    assert _earlier_queue_lines(caplog) == []
    # (and no queue has the exchange's name)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(LEGACY_FRAMES_QUEUE, passive=True)
