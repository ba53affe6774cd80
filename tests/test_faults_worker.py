"""Fault tests on a fleet of two `memelearning worker` processes: one is killed with
SIGKILL, or stopped with SIGTERM, while frames flow. Every frame must end with its
event (or in an accounted outcome); each test prints what it counted.

Run: python -m pytest tests/test_faults_worker.py -x -q -s
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from publisher.protocol import Frame
from tests.faults import (
    Tally,
    WorkerProcess,
    drain_dead_letters,
    duplicates,
    events_by_frame,
    metric,
    publish_paced,
    queue_depth,
)
from tests.frames import RED, EventCollector, make_frame, make_jpeg
from tests.workers import wait_until
from worker.settings import WorkerSettings

FRAMES_QUEUE = WorkerSettings().queue
# Long enough that no frame expires or goes stale during the test: a loss would then
# show as a missing event, not hide behind a routine drop.
FLEET: dict[str, object] = {"max_batch": 8, "queue_ttl_ms": 120_000, "stale_after_ms": 120_000}


def frames(count: int) -> list[Frame]:
    jpeg = make_jpeg(RED)
    return [make_frame(participant=f"p{i % 4}", sequence=i, jpeg=jpeg) for i in range(count)]


async def frames_with_events(collector: EventCollector, expected: int, timeout: float) -> int:
    """Frames with events, once all ``expected`` are in, or at the deadline: the test's
    tally then reports what is missing."""
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: len(events_by_frame(collector.events)) >= expected, timeout)
    return len(events_by_frame(collector.events))


async def idle_beside_a_frozen_worker(
    url: str, survivor: WorkerProcess, collector: EventCollector, timeout: float
) -> None:
    """Return once the survivor has taken every frame the frozen worker does not hold:
    the queue is empty, the survivor has processed all it received, and the events of
    those frames are in."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await survivor.metrics()
            received = metric(samples, "memelearning_worker_frames_received_total")
            processed = metric(samples, "memelearning_worker_frames_processed_total")
            with_event = {e.frame_id for e in collector.events if e.worker_id == survivor.name}
            if (
                await queue_depth(url, FRAMES_QUEUE) == 0
                and received == processed
                and len(with_event) >= processed
            ):
                return
            await asyncio.sleep(0.2)


def logged_drain_s(stderr: str) -> float:
    """From the worker's own log: SIGTERM received → worker stopped (connection closed)."""
    stamps = {}
    for line in stderr.splitlines():
        for key, marker in (("start", "SIGTERM: draining"), ("end", " stopped")):
            if marker in line and line[:4].isdigit():
                stamps[key] = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    assert set(stamps) == {"start", "end"}, stderr
    return (stamps["end"] - stamps["start"]).total_seconds()


@pytest.mark.slow
# Two TensorFlow imports and the waits below, on a loaded machine.
@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_batch_has_its_frames_redelivered_and_none_lost(
    amqp_url: str, colour_model_dir: Path
) -> None:
    batch = frames(600)
    # The second part is published only once the victim is frozen, however long the
    # first part takes to reach it: frames then keep coming to a frozen worker.
    first, rest = batch[:400], batch[400:]
    async with (
        WorkerProcess(amqp_url, colour_model_dir, "victim", FLEET) as victim,
        WorkerProcess(amqp_url, colour_model_dir, "survivor", FLEET) as survivor,
        EventCollector(amqp_url) as collector,
    ):
        await asyncio.gather(victim.wait_ready(), survivor.wait_ready())
        publishing = asyncio.create_task(publish_paced(amqp_url, first, per_second=150))
        # given both workers are taking frames
        await wait_until(lambda: any(e.worker_id == "victim" for e in collector.events))
        # when the victim freezes (mid-batch, wherever it was) while frames keep coming,
        # the broker keeps its prefetch window full: those frames are now unacked there
        victim.signal(signal.SIGSTOP)
        await publishing
        await publish_paced(amqp_url, rest, per_second=150)
        await idle_beside_a_frozen_worker(amqp_url, survivor, collector, timeout=60)
        before_kill = len(events_by_frame(collector.events))
        held = len(batch) - before_kill
        # ... and is killed
        victim.signal(signal.SIGKILL)
        await victim.wait(30)
        after_kill = await frames_with_events(collector, len(batch), timeout=60)
        left = await queue_depth(amqp_url, FRAMES_QUEUE)
    dead = await drain_dead_letters(amqp_url, timeout=1)

    by_frame = events_by_frame(collector.events)
    repeated, same_ids = duplicates(collector.events)
    tally = Tally(
        "worker SIGKILL",
        sent=len(batch),
        processed=after_kill,
        dead_lettered=len(dead),
        duplicated=repeated,
        extra_outcomes={"still_queued": left},
        extra={
            "held_by_victim_at_kill": held,
            "redelivered_and_processed": after_kill - before_kill,
        },
    )
    tally.report()
    # then the frames it held went to the survivor, and nothing is missing
    assert victim.exit_code == -signal.SIGKILL
    assert held > 0, "the victim held no frames when it was killed: the test proved nothing"
    assert after_kill - before_kill == held
    late = {f for f, es in by_frame.items() if all(e.worker_id == "survivor" for e in es)}
    assert len(late) >= held
    assert tally.lost == 0 and left == 0 and not dead
    # at-least-once: a frame seen twice (confirmed, not yet acked when the victim froze)
    # repeats the same event id, which consumers drop
    assert same_ids


@pytest.mark.slow
# Two TensorFlow imports and the waits below, on a loaded machine.
@pytest.mark.timeout(300)
async def test_sigterm_under_load_drains_in_time_and_the_fleet_loses_nothing(
    amqp_url: str, colour_model_dir: Path
) -> None:
    # Complements test_worker_process.py's single-worker drain: here the fleet goes on,
    # so every frame must end with an event, and the drain must beat its timeout.
    drain_timeout_s = 5.0
    batch = frames(600)
    # The second part is published only after the SIGTERM, however long the first
    # part takes to reach the leaver: the stop always comes mid-stream.
    first, rest = batch[:300], batch[300:]
    async with (
        WorkerProcess(
            amqp_url, colour_model_dir, "leaver", {**FLEET, "drain_timeout_s": drain_timeout_s}
        ) as leaver,
        WorkerProcess(amqp_url, colour_model_dir, "stayer", FLEET) as stayer,
        EventCollector(amqp_url) as collector,
    ):
        await asyncio.gather(leaver.wait_ready(), stayer.wait_ready())
        publishing = asyncio.create_task(publish_paced(amqp_url, first, per_second=150))
        await wait_until(lambda: any(e.worker_id == "leaver" for e in collector.events))

        async def keep_publishing() -> None:
            await publishing
            await publish_paced(amqp_url, rest, per_second=150)

        # when one worker is told to stop while frames keep coming
        signalled_ms = time.time() * 1000
        signalled = time.monotonic()
        leaver.signal(signal.SIGTERM)
        more = asyncio.create_task(keep_publishing())
        # Generous: what this bounds is interpreter and TensorFlow teardown, which a
        # loaded machine slows down; the drain itself is checked from the log below.
        exit_code = await leaver.wait(120)
        exit_s = time.monotonic() - signalled
        await more
        seen = await frames_with_events(collector, len(batch), timeout=60)
        left = await queue_depth(amqp_url, FRAMES_QUEUE)
    dead = await drain_dead_letters(amqp_url, timeout=1)

    repeated, _ = duplicates(collector.events)
    per_worker = {
        name: sum(1 for e in collector.events if e.worker_id == name)
        for name in ("leaver", "stayer")
    }
    drained = sum(
        1 for e in collector.events if e.worker_id == "leaver" and e.detected_ms >= signalled_ms
    )
    tally = Tally(
        "worker SIGTERM",
        sent=len(batch),
        processed=seen,
        dead_lettered=len(dead),
        duplicated=repeated,
        extra_outcomes={"still_queued": left},
        extra={
            "drain_s": round(logged_drain_s(leaver.stderr), 2),
            "sigterm_to_exit_s": round(exit_s, 2),
            "drain_timeout_s": drain_timeout_s,
            "processed_by_leaver": per_worker["leaver"],
            "processed_by_stayer": per_worker["stayer"],
            "leaver_events_after_sigterm": drained,
        },
    )
    tally.report()
    stderr = leaver.stderr
    # then it drained and left in time, cleanly
    assert exit_code == 0, stderr
    assert "draining" in stderr
    assert "drain timed out" not in stderr
    assert logged_drain_s(stderr) < drain_timeout_s
    # Interpreter and TensorFlow teardown come on top of the drain (measured 2 s on an
    # idle machine, up to 11 s on this loaded 2-core one): nothing is unsettled by
    # then, but a grace period must cover both to avoid a needless SIGKILL. How long
    # it took is in the tally (sigterm_to_exit_s); it depends on the machine's load,
    # so the test only requires that the process exits on its own, cleanly.
    # and the fleet lost nothing and processed nothing twice: a double ack would have
    # closed the channel (PRECONDITION_FAILED) and a frame settled twice would repeat
    assert tally.lost == 0 and left == 0 and not dead
    assert repeated == 0
    assert per_worker["leaver"] + per_worker["stayer"] == len(batch)
    assert "PRECONDITION_FAILED" not in stderr + stayer.stderr
    assert "could not settle" not in stderr + stayer.stderr
