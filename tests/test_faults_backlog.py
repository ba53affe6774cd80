"""Fault test: a slow consumer under a backlog. Frames are published far faster than a
`memelearning worker` process can take them. The frames queue must stay within its
length limit, old frames must expire or be counted as stale (never run through the
model), the worker's memory must stay flat, and every frame must end in a counted
outcome. Prints what it counted.

Run: python -m pytest tests/test_faults_backlog.py -x -q -s
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aio_pika
import pytest

from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE
from tests.faults import Tally, WorkerProcess, drain_dead_letters, metric, queue_depth
from tests.frames import RED, EventCollector, make_frame, make_jpeg

MAX_LENGTH = 400
TTL_MS = 2000
STALE_AFTER_MS = 500
SENT = 6000


async def publish_burst(url: str, count: int, window: int = 250) -> float:
    """Publish ``count`` frames as fast as confirms allow (``window`` in flight), each
    captured just before it is sent; returns the rate achieved (frames/s)."""
    jpeg = make_jpeg(RED)
    connection = await aio_pika.connect(url)
    started = time.monotonic()
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(FRAMES_EXCHANGE)
        for first in range(0, count, window):
            chunk = [
                make_frame(participant=f"p{i % 20}", sequence=i, jpeg=jpeg)
                for i in range(first, min(count, first + window))
            ]
            await asyncio.gather(
                *(exchange.publish(f.to_message(), routing_key=FRAME_ROUTING_KEY) for f in chunk)
            )
    return count / (time.monotonic() - started)


@pytest.mark.slow
# A TensorFlow import and a 6,000-frame burst, on a loaded machine.
@pytest.mark.timeout(300)
async def test_a_backlog_stays_bounded_and_every_dropped_frame_is_counted(
    amqp_url: str, colour_model_dir: Path
) -> None:
    async with (
        WorkerProcess(
            amqp_url,
            colour_model_dir,
            "slow",
            {
                "max_batch": 8,
                "queue_max_length": MAX_LENGTH,
                "queue_ttl_ms": TTL_MS,
                "stale_after_ms": STALE_AFTER_MS,
            },
        ) as worker,
        EventCollector(amqp_url) as collector,
    ):
        await worker.wait_ready()
        rss_ready = worker.rss_mib()
        depths: list[int] = []
        rss: list[float] = []

        async def watch() -> None:
            while True:
                depths.append(await queue_depth(amqp_url, "memelearning.frames.queue"))
                rss.append(worker.rss_mib())
                await asyncio.sleep(0.1)

        watching = asyncio.create_task(watch())
        # when frames arrive far faster than the worker can take them
        rate = await publish_burst(amqp_url, SENT)
        # then, once the queue has drained (TTL), every frame has an outcome
        deadline = time.monotonic() + 120
        while True:
            samples = await worker.metrics()
            outcomes = {
                "processed": metric(samples, "memelearning_worker_frames_processed_total"),
                "stale": metric(samples, "memelearning_worker_frames_stale_total"),
                "expired": metric(
                    samples, "memelearning_worker_frames_lost_in_queue_total", reason="expired"
                ),
                "maxlen": metric(
                    samples, "memelearning_worker_frames_lost_in_queue_total", reason="maxlen"
                ),
            }
            if sum(outcomes.values()) >= SENT or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        # and the events of the processed frames all arrive (the worker counts a frame
        # as processed once its events are confirmed, a moment before they get here)
        with contextlib.suppress(TimeoutError):  # what is missing is reported below
            async with asyncio.timeout(60):
                while len({e.frame_id for e in collector.events}) < outcomes["processed"]:
                    await asyncio.sleep(0.1)
        watching.cancel()
        left = await queue_depth(amqp_url, "memelearning.frames.queue")
        triage_left = await queue_depth(amqp_url, "memelearning.frames.triage")
        rss_after = worker.rss_mib()
    dead = await drain_dead_letters(amqp_url, timeout=1)

    processed_frames = {e.frame_id for e in collector.events}
    tally = Tally(
        "backlog",
        sent=SENT,
        processed=int(outcomes["processed"]),
        dead_lettered=len(dead),
        extra_outcomes={
            "stale": int(outcomes["stale"]),
            "expired_in_queue": int(outcomes["expired"]),
            "dropped_maxlen": int(outcomes["maxlen"]),
            "still_queued": left + triage_left,
        },
        extra={
            "publish_rate_fps": round(rate),
            "max_queue_depth": max(depths),
            "queue_max_length": MAX_LENGTH,
            "rss_ready_mib": round(rss_ready, 1),
            "rss_peak_mib": round(max(rss), 1),
            "rss_after_mib": round(rss_after, 1),
        },
    )
    tally.report()
    # the backlog was real: most frames never reached the model
    assert outcomes["processed"] < SENT / 2
    assert outcomes["stale"] > 0 and outcomes["maxlen"] > 0
    # the queue never held more than its limit (a passive declare counts ready frames)
    assert max(depths) <= MAX_LENGTH
    # stale frames were counted, not processed: only processed frames have events
    assert len(processed_frames) == outcomes["processed"]
    # every frame is accounted for by a metric
    assert tally.lost == 0, tally.report()
    assert not dead
    # memory stays flat: at most prefetch frames are held, whatever the backlog
    assert max(rss) - rss_ready < 64, (rss_ready, max(rss))
