"""The load: frames published by the real :class:`publisher.FramePublisher`, from a
process of its own so that it does not share an interpreter (and its GIL) with the
subscriber that times the results.

Two shapes. *Saturating*: as fast as the confirm window allows, but never more than
``backlog`` frames ahead of what the subscriber has seen, so the worker always has
work waiting while the broker holds a bounded queue (an unbounded one would only
measure how the broker copes with gigabytes of backlog). *Paced*: meeting
participants simulated at a steady total rate by
:class:`publisher.ParticipantSimulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Final

from bench.frames import MemorySource
from publisher import (
    Frame,
    FramePublisher,
    ParticipantSimulator,
    PublishError,
    PublisherSettings,
    participant_names,
)

# How often the saturating publisher looks again when it is `backlog` frames ahead.
_GATE_POLL_S: Final = 0.002


@dataclass(frozen=True)
class LoadJob:
    amqp_url: str
    jpegs: Sequence[bytes]
    meeting_id: str
    participants: int
    # Saturating when None; otherwise frames per second over all participants.
    rate_fps: float | None = None
    # Saturating only: frames published and not yet seen by the subscriber, at most.
    backlog: int = 256
    # Paced only: the simulator stops after this long.
    duration_s: float | None = None
    max_in_flight: int = 256


@dataclass
class LoadReport:
    published: int = 0
    confirmed: int = 0
    failed: int = 0
    resyncs: int = 0
    error: str | None = None


class LoadProcess:
    """Start with :meth:`start`; :meth:`stop` asks it to finish (a paced load also
    finishes on its own) and :meth:`wait` returns its :class:`LoadReport`.
    ``seen`` is the subscriber's count of frames with events."""

    def __init__(self, job: LoadJob, seen: Synchronized[int]) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_main, args=(job, seen, self._stop, send), name="bench-load", daemon=True
        )

    @property
    def pid(self) -> int:
        pid = self._process.pid
        if pid is None:
            raise RuntimeError("the load process is not started")
        return pid

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._stop.set()

    async def wait(self, timeout_s: float = 60) -> LoadReport:
        # Whichever comes first: its report, or its end without one (a crash).
        if not await asyncio.to_thread(self._finished, timeout_s):
            self._process.kill()
            raise TimeoutError(f"the load process did not finish within {timeout_s:.0f} s")
        if not self._receive.poll():
            await asyncio.to_thread(self._process.join, 10)
            raise RuntimeError(
                f"the load process died (exit code {self._process.exitcode}) without a report"
            )
        report: LoadReport = self._receive.recv()
        await asyncio.to_thread(self._process.join, 10)
        if report.error is not None:
            raise RuntimeError(f"the load process failed: {report.error}")
        return report

    def _finished(self, timeout_s: float) -> bool:
        return bool(
            multiprocessing.connection.wait([self._receive, self._process.sentinel], timeout_s)
        )


def _main(job: LoadJob, seen: Synchronized[int], stop: Event, send: Connection) -> None:
    logging.basicConfig(level=logging.WARNING, format="load: %(levelname)s %(message)s")
    report = LoadReport()
    try:
        asyncio.run(_publish(job, seen, stop, report))
    except (PublishError, OSError, RuntimeError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    send.send(report)
    send.close()


async def _publish(job: LoadJob, seen: Synchronized[int], stop: Event, report: LoadReport) -> None:
    settings = PublisherSettings(
        amqp_url=job.amqp_url,
        connection_name="memelearning-bench-load",
        max_in_flight=job.max_in_flight,
    )
    publisher = FramePublisher(settings)
    try:
        async with publisher:
            if job.rate_fps is None:
                await _saturate(publisher, job, seen, stop)
            else:
                report.resyncs = await _pace(publisher, job, stop)
    finally:
        report.published = publisher.stats.published
        report.confirmed = publisher.stats.confirmed
        report.failed = publisher.stats.failed


async def _saturate(
    publisher: FramePublisher, job: LoadJob, seen: Synchronized[int], stop: Event
) -> None:
    names = participant_names(job.participants)
    base = seen.value
    sequence = 0
    while not stop.is_set():
        if publisher.stats.published - (seen.value - base) >= job.backlog:
            # The subscriber's count lives in shared memory; there is nothing to await.
            await asyncio.sleep(_GATE_POLL_S)
            continue
        await publisher.publish(
            Frame(
                meeting_id=job.meeting_id,
                participant_id=names[sequence % job.participants],
                capture_ms=int(time.time() * 1000),
                sequence=sequence // job.participants,
                jpeg=job.jpegs[sequence % len(job.jpegs)],
            )
        )
        sequence += 1


async def _pace(publisher: FramePublisher, job: LoadJob, stop: Event) -> int:
    assert job.rate_fps is not None
    simulator = ParticipantSimulator(
        MemorySource(job.jpegs),
        meeting_id=job.meeting_id,
        participants=participant_names(job.participants),
        fps=job.rate_fps / job.participants,
        duration_s=job.duration_s,
    )
    async with contextlib.aclosing(simulator.frames()) as frames:
        async for frame in frames:
            if stop.is_set():
                break
            await publisher.publish(frame)
    return simulator.resyncs
