"""Injection lanes: one bounded queue and one task per meeting, so a meeting whose API
is slow or down only delays its own reactions, never another meeting's.

A lane shows one overlay at a time, each for its whole display time, in the order the
reactions were confirmed: a room has one foreground layer, and replacing it at once
(as the lanes first did) left a burst of three confirmations showing only the last.
The per-meeting rate limit (12 a minute by default) spaces reactions wider than the
4 s display, so the queue is short."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reactions.meeting_api import MeetingApi, MeetingApiError, PermanentError
from reactions.metrics import Metrics

logger = logging.getLogger(__name__)

Mode = Literal["layer", "playback"]


@dataclass(frozen=True, slots=True)
class Injection:
    meeting_id: str
    access_key: str
    reaction: str
    url: str
    play_id: str
    # Monotonic time of confirmation: the start of the latency metric and of staleness.
    confirmed_at: float
    # Who made the gesture: the overlay belongs on their video (None: the whole room).
    participant_id: str | None = None


@dataclass(frozen=True)
class InjectorConfig:
    mode: Mode = "layer"
    z_index: int = 1
    display_s: float = 4.0
    queue_size: int = 4
    idle_s: float = 120.0
    # A reaction that waited longer than this (slow API, room not ready) is dropped:
    # a thumbs-up a minute late is confusing, not cheerful.
    stale_after_s: float = 20.0
    ready_timeout_s: float = 15.0
    ready_poll_s: float = 0.5
    ready_cache_s: float = 60.0


class Injector:
    def __init__(
        self,
        api: MeetingApi,
        config: InjectorConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._closing = False

    @property
    def meetings(self) -> list[str]:
        return sorted(self._lanes)

    def submit(self, injection: Injection) -> bool:
        """Queue ``injection`` on its meeting's lane; False if that lane is full."""
        if self._closing:
            return False
        lane = self._lanes.get(injection.meeting_id)
        if lane is None:
            lane = _Lane(self, injection.meeting_id)
            self._lanes[injection.meeting_id] = lane
            self._metrics.meetings_active.set(len(self._lanes))
        try:
            lane.queue.put_nowait(injection)
        except asyncio.QueueFull:
            return False
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop every lane; clear overlays still showing (best effort, bounded)."""
        self._closing = True
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.task.cancel()
        if lanes:
            # Bounded: a request stuck in a misbehaving client must not hold up shutdown.
            await asyncio.wait([lane.task for lane in lanes], timeout=timeout_s)
        showing = [lane for lane in lanes if lane.showing is not None]
        if showing and self._config.mode == "layer":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(
                        *(lane.clear() for lane in showing), return_exceptions=True
                    )

    def _remove(self, lane: _Lane) -> None:
        if self._lanes.get(lane.meeting_id) is lane:
            del self._lanes[lane.meeting_id]
            self._metrics.meetings_active.set(len(self._lanes))


class _Lane:
    def __init__(self, injector: Injector, meeting_id: str) -> None:
        self.injector = injector
        self.meeting_id = meeting_id
        self.queue: asyncio.Queue[Injection] = asyncio.Queue(injector._config.queue_size)
        # The access key whose layer is showing, and until when.
        self.showing: str | None = None
        self.showing_until = 0.0
        self.ready_until: dict[str, float] = {}
        self.task = asyncio.create_task(self._run(), name=f"reactions-lane-{meeting_id}")

    async def _run(self) -> None:
        config = self.injector._config
        clock = self.injector._clock
        try:
            # Closing also ends a lane whose cancellation a client library swallowed.
            while not self.injector._closing:
                if self.showing is not None:
                    remaining = self.showing_until - clock()
                    if remaining > 0:
                        # The overlay showing stays for its whole display time; the
                        # next reaction waits in the queue.
                        await asyncio.sleep(remaining)
                        continue
                    if self.queue.empty():
                        await self.clear()
                        continue
                    # Else the next overlay replaces this one without a gap.
                try:
                    item = await asyncio.wait_for(self.queue.get(), config.idle_s)
                except TimeoutError:
                    if self.queue.empty():
                        return  # idle: the next reaction starts a new lane
                    continue
                try:
                    await self._inject(item)
                except Exception:
                    # A lane outlives any one reaction, whatever went wrong with it.
                    logger.exception("meeting %s: injection failed", self.meeting_id)
        finally:
            self.injector._remove(self)

    async def _inject(self, item: Injection) -> None:
        injector = self.injector
        config = injector._config
        metrics = injector._metrics
        age = injector._clock() - item.confirmed_at
        if age > config.stale_after_s:
            metrics.injection_failures.labels("show", "stale").inc()
            logger.info(
                "meeting %s: dropped a %s that waited %.1fs", self.meeting_id, item.reaction, age
            )
            return
        try:
            if config.mode == "layer":
                await self._ensure_ready(item.access_key)
                await injector._api.set_layer(
                    item.access_key, item.url, config.z_index, item.participant_id
                )
            else:
                await injector._api.start_playback(item.access_key, item.url, item.play_id)
        except MeetingApiError as exc:
            if isinstance(exc, PermanentError) and exc.status in (404, 410):
                self.ready_until.pop(item.access_key, None)
            operation = "ready" if exc.reason == "room_not_ready" else "show"
            metrics.injection_failures.labels(operation, exc.reason).inc()
            logger.warning("meeting %s: could not show %s: %s", self.meeting_id, item.reaction, exc)
            return
        metrics.injected.labels(item.reaction, config.mode).inc()
        metrics.injection_latency.observe(injector._clock() - item.confirmed_at)
        logger.info("meeting %s: showing %s", self.meeting_id, item.reaction)
        if config.mode == "layer":
            self.showing = item.access_key
            self.showing_until = injector._clock() + config.display_s

    async def _ensure_ready(self, access_key: str) -> None:
        injector = self.injector
        config = injector._config
        if self.ready_until.get(access_key, float("-inf")) > injector._clock():
            return
        await injector._api.wait_until_ready(
            access_key, config.ready_timeout_s, config.ready_poll_s, injector._clock
        )
        self.ready_until[access_key] = injector._clock() + config.ready_cache_s

    async def clear(self) -> None:
        access_key, self.showing = self.showing, None
        if access_key is None:
            return
        injector = self.injector
        try:
            await injector._api.clear_layer(access_key, injector._config.z_index)
        except MeetingApiError as exc:
            injector._metrics.injection_failures.labels("clear", exc.reason).inc()
            logger.warning("meeting %s: could not clear the overlay: %s", self.meeting_id, exc)
