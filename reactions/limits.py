"""Cooldowns, per-meeting rate limits and opt-outs (of a meeting, or of one reaction in
it): the reasons a confirmed reaction is not shown."""

from __future__ import annotations

import time
from collections.abc import Callable


class Cooldowns:
    """At most one reaction of a kind per participant per cooldown."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str, str], float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def allow(self, meeting_id: str, participant_id: str, reaction: str, cooldown_s: float) -> bool:
        """True (and the cooldown starts) unless one is running."""
        now = self._clock()
        key = (meeting_id, participant_id, reaction)
        if self._until.get(key, float("-inf")) > now:
            return False
        self._until[key] = now + cooldown_s
        self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        # Amortised: only when the table has grown, drop cooldowns that have run out.
        if len(self._until) > 1024 and len(self._until) % 1024 == 0:
            for key in [k for k, until in self._until.items() if until <= now]:
                del self._until[key]


class RateLimiter:
    """A token bucket per meeting: ``burst`` reactions at once, ``per_minute`` sustained,
    so a meeting full of enthusiastic people is not buried in GIFs."""

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # meeting → (tokens, at)

    def allow(self, meeting_id: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.get(meeting_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[meeting_id] = (tokens, now)
            return False
        self._buckets[meeting_id] = (tokens - 1.0, now)
        self._prune(now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those, amortised,
        # so a service that sees many meetings over days keeps a bounded table.
        if len(self._buckets) > 1024 and len(self._buckets) % 1024 == 0:
            full = [
                meeting
                for meeting, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self._rate >= self._burst
            ]
            for meeting in full:
                del self._buckets[meeting]

    def forget(self, meeting_id: str) -> None:
        self._buckets.pop(meeting_id, None)


class OptOuts:
    """Which meetings show reactions, and which reactions each meeting shows.

    Meetings nobody has set follow the default, so "off unless a host turns it on" and
    "on unless a host turns it off" are both one setting. Within a meeting that shows
    reactions, each reaction follows the catalog's ``enabled_by_default`` until the
    meeting switches it (``thinking`` is off until a meeting turns it on). Changes take
    effect for the next event."""

    def __init__(self, enabled_by_default: bool) -> None:
        self.enabled_by_default = enabled_by_default
        self._explicit: dict[str, bool] = {}
        self._reactions: dict[tuple[str, str], bool] = {}

    def enabled(self, meeting_id: str) -> bool:
        return self._explicit.get(meeting_id, self.enabled_by_default)

    def set(self, meeting_id: str, enabled: bool) -> None:
        self._explicit[meeting_id] = enabled

    def reset(self, meeting_id: str) -> None:
        self._explicit.pop(meeting_id, None)

    def snapshot(self) -> dict[str, bool]:
        return dict(self._explicit)

    def reaction_enabled(self, meeting_id: str, reaction: str, default: bool) -> bool:
        """Whether the meeting shows ``reaction`` (``default``: the catalog's), leaving
        aside whether it shows reactions at all (:meth:`enabled`)."""
        return self._reactions.get((meeting_id, reaction), default)

    def set_reaction(self, meeting_id: str, reaction: str, enabled: bool) -> None:
        self._reactions[(meeting_id, reaction)] = enabled

    def reset_reaction(self, meeting_id: str, reaction: str) -> None:
        self._reactions.pop((meeting_id, reaction), None)

    def reactions(self, meeting_id: str) -> dict[str, bool]:
        """The reactions this meeting has switched, on or off."""
        return {r: on for (m, r), on in self._reactions.items() if m == meeting_id}
