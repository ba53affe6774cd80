"""The worker's broker user moves frames into the quarantine and dead-letter queues
through their own exchange, and may publish into no other queue: the grant on the
default exchange it once needed let it publish into any queue of the vhost."""

from __future__ import annotations

import aio_pika
import aiormq.exceptions
import pytest

from tests.frames import EventCollector, make_frame, publish_raw
from tests.workers import ThumbsUpDetector, Worker, wait_until, worker_settings
from worker.settings import WorkerSettings
from worker.topology import moves_exchange_name, quarantine_queue_name

SETTINGS = WorkerSettings(amqp_url="amqp://unused/")


async def test_the_worker_user_may_not_publish_through_the_default_exchange(
    worker_url: str,
) -> None:
    worker = Worker(worker_settings(worker_url), detector=ThumbsUpDetector())
    await worker.start()
    await worker.stop()
    connection = await aio_pika.connect(worker_url)
    async with connection:
        channel = await connection.channel()
        # not into the frames queue (forged frames), nor any other queue by name
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=r"amq\.default"):
            await channel.default_exchange.publish(
                aio_pika.Message(b"x"), routing_key=SETTINGS.queue
            )


async def test_a_redelivered_frame_goes_through_quarantine_with_the_worker_user(
    worker_url: str, amqp_url: str
) -> None:
    # given a frame the frames queue hands out a second time (its first taker died)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        worker = Worker(worker_settings(worker_url), detector=ThumbsUpDetector())
        await worker.start()
        await worker.stop()  # (its topology stays)
        frame = make_frame()
        await publish_raw(amqp_url, [frame.to_message()])
        queue = await channel.get_queue(SETTINGS.queue)
        taken = await queue.get(timeout=10)
        assert taken is not None
        await taken.nack(requeue=True)
        # when a worker with the worker user takes it
        async with EventCollector(amqp_url) as collector:
            worker = Worker(worker_settings(worker_url), detector=ThumbsUpDetector())
            await worker.start()
            try:
                # then it is moved to quarantine through the moves exchange and processed
                events = await collector.wait_for(1, timeout=30)
                await wait_until(lambda: worker.metrics.frames_processed._value.get() == 1)
            finally:
                await worker.stop()
    assert [e.frame_id for e in events] == [frame.message_id]
    assert moves_exchange_name(SETTINGS) == "memelearning.frames.moves"
    assert quarantine_queue_name(SETTINGS) == "memelearning.frames.quarantine"
