"""The worker's batch loop keeps the model busy: the next batch is formed and decoded
while the current one is in the model, and it keeps filling past max_wait_ms while the
model is still busy (it could not start sooner anyway)."""

from __future__ import annotations

from typing import Any

from tests.frames import RED, EventCollector, make_frame, publish_frames
from tests.workers import SpyDetector, Worker, messages_ready, wait_until, worker_settings


def decoded_batches(worker: Worker) -> float:
    value = worker.metrics.registry.get_sample_value("memelearning_worker_decode_seconds_count")
    return value or 0.0


async def test_the_next_batch_is_decoded_while_the_model_runs_and_fills_up(
    amqp_url: str, colour_detector: Any
) -> None:
    # Given a worker whose model is held on its first call
    spy = SpyDetector(colour_detector)
    spy.gate.clear()
    worker = Worker(worker_settings(amqp_url, max_batch=4, max_wait_ms=5), detector=spy)
    await worker.start()
    try:
        async with EventCollector(amqp_url) as collector:
            # When one frame arrives, and then more while the model holds the first
            await publish_frames(amqp_url, [make_frame(RED, sequence=0)])
            await wait_until(spy.entered.is_set)
            await publish_frames(amqp_url, [make_frame(RED, sequence=i) for i in range(1, 5)])

            # Then a second batch of the 4 later frames forms, well past max_wait_ms,
            # and is decoded before the model returns from the first
            await wait_until(lambda: decoded_batches(worker) == 2)
            assert spy.calls == []
            spy.gate.set()
            await collector.wait_for(5)
        assert spy.calls == [1, 4]
    finally:
        spy.gate.set()
        await worker.stop()
    assert await messages_ready(amqp_url) == 0
