"""Fault test: a frame that really kills its worker process (``os._exit`` while
decoding it, as a segfault in a JPEG library would), among good frames, on a fleet of
two `memelearning worker` processes that a supervisor restarts.

Every frame a dying worker held comes back redelivered; workers move such frames to
the quarantine queue and take them from there one at a time (worker/topology.py,
``declare_quarantine``). The poison frame then dies alone until the broker's delivery
limit dead-letters it, and the frames it was batched with are processed: none is
dead-lettered with it. Prints what it counted.

Run: python -m pytest tests/test_fault_quarantine.py -q -s
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

import aio_pika
import pytest

from tests.faults import (
    CrashingFleet,
    Tally,
    drain_dead_letters,
    duplicates,
    events_by_frame,
    publish_paced,
    queue_depth,
)
from tests.frames import BLUE, RED, EventCollector, make_frame, make_jpeg
from worker.settings import WorkerSettings
from worker.topology import quarantine_queue_name

# Two deaths (the first delivery and one redelivery) keep the test short: each death
# costs a replacement process its TensorFlow start-up.
DELIVERY_LIMIT = 1
GOOD_FRAMES = 200
SETTINGS = WorkerSettings(amqp_url="amqp://unused/")
# A distinct body the crashing worker recognises by its hash.
POISON_JPEG = make_jpeg(BLUE, size=(66, 50))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_frame_that_kills_its_worker_is_dead_lettered_alone(
    amqp_url: str, colour_model_dir: Path
) -> None:
    settings: dict[str, object] = {
        "max_batch": 8,
        "delivery_limit": DELIVERY_LIMIT,
        "queue_ttl_ms": 120_000,
        "stale_after_ms": 120_000,
    }
    good = [make_frame(RED, participant=f"p{i % 3}", sequence=i) for i in range(GOOD_FRAMES)]
    poison = make_frame(participant="p9", sequence=999, jpeg=POISON_JPEG)
    dead: list[aio_pika.IncomingMessage] = []
    crash = hashlib.sha256(POISON_JPEG).hexdigest()
    async with (
        CrashingFleet(amqp_url, colour_model_dir, settings, crash) as fleet,
        EventCollector(amqp_url) as collector,
    ):

        def settled() -> bool:
            done = set(events_by_frame(collector.events)) | {m.message_id for m in dead}
            return {f.message_id for f in [*good, poison]} <= done

        try:
            # given the poison frame in the middle of a steady stream, batched with others
            half = GOOD_FRAMES // 2
            await publish_paced(amqp_url, [*good[:half], poison, *good[half:]], per_second=200)
            # when the fleet has done all it can: every frame has its event or is
            # dead-lettered (read as the dead-letter queue fills)
            with contextlib.suppress(TimeoutError):  # what is missing is reported below
                async with asyncio.timeout(180):
                    while not settled():
                        dead.extend(await drain_dead_letters(amqp_url, timeout=0.2))
                        await asyncio.sleep(0.2)
        finally:
            fleet.stop_replacing()
        left = await queue_depth(amqp_url, SETTINGS.queue)
        quarantined_left = await queue_depth(amqp_url, quarantine_queue_name(SETTINGS))
    dead += await drain_dead_letters(amqp_url, timeout=1)

    by_frame = events_by_frame(collector.events)
    reasons = {m.message_id: m.headers["x-reject-reason"] for m in dead}
    innocents = set(reasons) - {poison.message_id}
    # (A frame whose event was out before its worker died counts as processed, even if
    # it was dead-lettered after: its event was not lost.)
    innocents_without_event = innocents - set(by_frame)
    tally = Tally(
        "poison frame kills its worker (quarantine)",
        sent=len(good) + 1,
        processed=len(by_frame),
        dead_lettered=len(innocents_without_event) + (poison.message_id in reasons),
        duplicated=duplicates(collector.events)[0],
        extra_outcomes={"still_queued": left + quarantined_left},
        extra={
            "worker_deaths": len(fleet.deaths),
            "good_frames_dead_lettered": len(innocents),
            "good_frames_dead_lettered_without_event": len(innocents_without_event),
        },
    )
    tally.report()
    # then the poison frame is dead-lettered by the broker's delivery limit, and no
    # good frame without its event,
    assert reasons.get(poison.message_id) == "delivery_limit"
    assert set(reasons.values()) == {"delivery_limit"}
    assert not innocents_without_event
    # after killing a worker at its first delivery and at each redelivery,
    assert fleet.deaths == [70] * (DELIVERY_LIMIT + 1)
    # and every frame batched with it was processed: none lost, none left behind.
    assert set(by_frame) == {f.message_id for f in good}
    assert tally.lost == 0 and left == 0 and quarantined_left == 0
