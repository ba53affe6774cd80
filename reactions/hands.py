"""Raised hands: a confirmed ``raise_hand`` gesture raises the participant's hand in the
meeting (the ✋ beside their name) instead of showing a GIF, and the service lowers it
again the way Google Meet does: when the participant starts speaking. A hand nobody
calls on is lowered after ``timeout_s``, because a gesture can raise a hand by mistake
and its owner may never notice; Zoom and Meet keep a hand raised by a click until it is
lowered, but a click is never an accident.

The calls for one participant go out in the order they were made (a raise and the
lowering that follows at once must not overtake each other), each with the meeting
API's retries; different participants do not wait for each other, nor for the GIF
lanes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from reactions.meeting_api import MeetingApi, MeetingApiError
from reactions.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Hand:
    access_key: str
    reaction: str
    timer: asyncio.Task[None]


class RaisedHands:
    def __init__(
        self,
        api: MeetingApi,
        metrics: Metrics,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._clock = clock
        self._hands: dict[tuple[str, str], _Hand] = {}
        # The newest call per participant: the next one waits for it.
        self._calls: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._closing = False

    def raised(self, meeting_id: str) -> list[str]:
        return sorted(p for m, p in self._hands if m == meeting_id)

    def raise_hand(
        self,
        meeting_id: str,
        access_key: str,
        participant_id: str,
        *,
        reaction: str = "raise_hand",
        confirmed_at: float | None = None,
    ) -> bool:
        """Raise it (again: the timeout starts over); False while closing."""
        if self._closing:
            return False
        key = (meeting_id, participant_id)
        old = self._hands.get(key)
        if old is not None:
            old.timer.cancel()
        timer = asyncio.create_task(self._expire(key), name=f"reactions-hand-{meeting_id}")
        hand = self._hands[key] = _Hand(access_key, reaction, timer)
        at = self._clock() if confirmed_at is None else confirmed_at
        self._call(key, lambda: self._raise(key, hand, at))
        return True

    def lower(self, meeting_id: str, participant_id: str, reason: str) -> bool:
        """Lower it if the service raised it; ``reason`` (speaking, timeout, shutdown)
        is a metric label."""
        key = (meeting_id, participant_id)
        hand = self._hands.pop(key, None)
        if hand is None:
            return False
        if hand.timer is not asyncio.current_task():
            hand.timer.cancel()
        self._call(key, lambda: self._lower(key, hand.access_key, reason))
        return True

    async def close(self, timeout_s: float) -> None:
        """Lower every hand the service raised (nothing else would lower them), within
        ``timeout_s``."""
        self._closing = True
        for meeting_id, participant_id in list(self._hands):
            self.lower(meeting_id, participant_id, "shutdown")
        calls = list(self._calls.values())
        if calls:
            _, pending = await asyncio.wait(calls, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    # -- internals

    def _call(self, key: tuple[str, str], call: Callable[[], Awaitable[None]]) -> None:
        previous = self._calls.get(key)

        async def in_turn() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await call()

        task = asyncio.create_task(in_turn(), name=f"reactions-hand-call-{key[0]}")
        self._calls[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._calls.get(key) is finished:
                del self._calls[key]

        task.add_done_callback(done)

    async def _expire(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self._timeout_s)
        self.lower(*key, "timeout")

    async def _raise(self, key: tuple[str, str], hand: _Hand, confirmed_at: float) -> None:
        meeting_id, participant_id = key
        try:
            await self._api.raise_hand(hand.access_key, participant_id)
        except MeetingApiError as exc:
            self._metrics.injection_failures.labels("raise", exc.reason).inc()
            logger.warning("meeting %s: could not raise a hand: %s", meeting_id, exc)
            if self._hands.get(key) is hand:
                # Not raised, so nothing to lower later.
                del self._hands[key]
                hand.timer.cancel()
            return
        self._metrics.injected.labels(hand.reaction, "hand").inc()
        self._metrics.injection_latency.observe(self._clock() - confirmed_at)
        logger.info("meeting %s: raised a hand", meeting_id)

    async def _lower(self, key: tuple[str, str], access_key: str, reason: str) -> None:
        meeting_id, participant_id = key
        try:
            await self._api.lower_hand(access_key, participant_id)
        except MeetingApiError as exc:
            self._metrics.injection_failures.labels("lower", exc.reason).inc()
            logger.warning("meeting %s: could not lower a hand: %s", meeting_id, exc)
            return
        self._metrics.hands_lowered.labels(reason).inc()
        logger.info("meeting %s: lowered a hand (%s)", meeting_id, reason)
