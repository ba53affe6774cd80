"""Simulated meeting participants: M cameras fed from one frame source.

Each participant starts at a different place in the source (participant i of M at
i/M of the way in) and is sampled at ``fps``, offset in phase by 1/(M·fps) from the
previous one, so the frames of a meeting arrive evenly spread rather than in bursts of
M, and no two participants show the same picture at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from publisher.protocol import ID_PATTERN, Frame
from publisher.sources import FrameSource, SourceFrame

log = logging.getLogger(__name__)

_MAX_THREADS = 4


class ParticipantSimulator:
    """Yields :class:`~publisher.protocol.Frame` objects for ``participants`` of
    ``meeting_id`` at ``fps`` frames per second each, paced by the event loop's clock.

    It stops after ``count`` frames per participant, after ``duration_s`` seconds, or
    when the source (if it does not loop) has been shown once to every participant,
    whichever comes first. Reading and encoding frames runs in worker threads, one frame
    ahead per participant. Use ``async with contextlib.aclosing(sim.frames()) as frames``
    so those threads are released when the consumer stops early.

    ``capture_ms`` is the wall-clock time at the frame's scheduled tick; ``sequence``
    counts each participant's frames from 0. When the consumer falls more than one frame
    period behind, the schedule restarts from now (``resyncs`` counts it) instead of
    sending a burst of late frames.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        meeting_id: str,
        participants: Sequence[str],
        fps: float,
        count: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        _check_id("meeting id", meeting_id)
        if not participants:
            raise ValueError("at least one participant is needed")
        for participant in participants:
            _check_id("participant id", participant)
        if len(set(participants)) != len(participants):
            raise ValueError(f"participant ids must be unique, got {list(participants)}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {duration_s}")
        self.source = source
        self.meeting_id = meeting_id
        self.participants = tuple(participants)
        self.fps = fps
        self.count = count
        self.duration_s = duration_s
        self.resyncs = 0

    async def frames(self) -> AsyncGenerator[Frame, None]:
        loop = asyncio.get_running_loop()
        members = len(self.participants)
        tick_s = 1 / (self.fps * members)
        period_s = 1 / self.fps
        sources: list[Iterator[SourceFrame]] = [
            self.source.frames(start=i / members) for i in range(members)
        ]
        executor = ThreadPoolExecutor(
            max_workers=min(members, _MAX_THREADS), thread_name_prefix="frame-source"
        )
        ahead: list[asyncio.Future[SourceFrame | None]] = [
            loop.run_in_executor(executor, next, it, None) for it in sources
        ]
        sequences = [0] * members
        finished = [False] * members
        origin = start = loop.time()
        tick = 0
        try:
            while not all(finished):
                i = tick % members
                offset_s = tick * tick_s
                tick += 1
                if finished[i]:
                    continue
                due = start + offset_s
                if self.duration_s is not None and due - origin >= self.duration_s - 1e-9:
                    return
                if self.count is not None and sequences[i] >= self.count:
                    finished[i] = True
                    continue
                # Each tick is due at a fixed offset from the start, so sleep overshoot
                # never accumulates.
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > period_s:
                    start -= delay
                    self.resyncs += 1
                    log.debug("%.0f ms behind schedule; restarting it from now", -delay * 1000)
                capture_ms = int(time.time() * 1000)
                item = await ahead[i]
                if item is None:
                    finished[i] = True
                    continue
                ahead[i] = loop.run_in_executor(executor, next, sources[i], None)
                frame = Frame(
                    meeting_id=self.meeting_id,
                    participant_id=self.participants[i],
                    capture_ms=capture_ms,
                    sequence=sequences[i],
                    jpeg=item.jpeg,
                )
                sequences[i] += 1
                yield frame
        finally:
            # A generator cannot be closed while a thread is inside it: let the reads
            # in progress finish first (they are one frame each).
            await asyncio.gather(*ahead, return_exceptions=True)
            for it in sources:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            executor.shutdown(wait=False)


def participant_names(count: int) -> list[str]:
    """``p1`` … ``pN``: the participants simulated when none are named."""
    if count < 1:
        raise ValueError(f"at least one participant is needed, got {count}")
    return [f"p{i}" for i in range(1, count + 1)]


def _check_id(kind: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} {value!r} must match {ID_PATTERN.pattern}")
