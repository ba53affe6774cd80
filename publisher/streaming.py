"""Feeding a simulator's frames to a publisher until the simulation ends or the caller
asks it to stop: the library behind ``memelearning publish``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing

from publisher.publishing import FramePublisher, PublisherStats
from publisher.simulation import ParticipantSimulator


async def stream_frames(
    publisher: FramePublisher,
    simulator: ParticipantSimulator,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[PublisherStats], None] | None = None,
) -> bool:
    """Publish every frame ``simulator`` yields, then wait for all confirms.

    Setting ``stop`` ends the simulation at once; the frames already published are
    still confirmed before this returns. Returns True when it was stopped that way.
    Raises the first :class:`~publisher.errors.PublishError` (the frames in flight are
    then not waited for; closing the publisher does that) or
    :class:`~publisher.sources.SourceError`.
    """

    async def produce() -> None:
        async with aclosing(simulator.frames()) as frames:
            async for frame in frames:
                await publisher.publish(frame)
                if on_progress is not None:
                    on_progress(publisher.stats)

    producer = asyncio.create_task(produce(), name="simulated-frames")
    waiters: set[asyncio.Task[object]] = {producer}
    stopper = None
    if stop is not None:
        stopper = asyncio.create_task(stop.wait(), name="stop-request")
        waiters.add(stopper)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also reached when our caller is cancelled: never leave the producer running.
        stopped = not producer.done()
        for task in waiters:
            task.cancel()
        await asyncio.wait(waiters)
    if not stopped:
        producer.result()  # the simulator's or the publisher's error, if any
    await publisher.flush()
    if on_progress is not None:
        on_progress(publisher.stats)
    return stopped
