"""From one reaction event to "show this GIF" or a reason not to."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reactions.catalog import Catalog, Media, MediaPicker
from reactions.confirm import HoldToConfirm
from reactions.dedup import Deduplicator
from reactions.limits import Cooldowns, OptOuts, RateLimiter
from reactions.metrics import Metrics
from worker.events import ReactionEvent


@dataclass(frozen=True, slots=True)
class Decision:
    """``reaction`` and ``media`` are set when the reaction is to be shown; otherwise
    ``reason`` (a metric label) says why not."""

    reaction: str | None = None
    media: Media | None = None
    reason: str | None = None

    @property
    def show(self) -> bool:
        return self.media is not None


class Decider:
    """The checks in order, cheapest and most certain first: duplicate, unmapped label,
    opt-out, hold-to-confirm, cooldown, rate limit. Each suppression is counted once,
    under the first reason that applies."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        dedup: Deduplicator,
        optouts: OptOuts,
        rate_limiter: RateLimiter,
        metrics: Metrics,
        media_kind: str = "gifs",
        picker: MediaPicker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.dedup = dedup
        self.optouts = optouts
        self.rate_limiter = rate_limiter
        self.metrics = metrics
        self.media_kind = media_kind
        self.picker = picker or MediaPicker()
        self.holds = HoldToConfirm()
        self.cooldowns = Cooldowns(clock)

    def decide(self, event: ReactionEvent) -> Decision:
        self.metrics.events.inc()
        if self.dedup.seen_before(event.event_id):
            return self._suppress("duplicate")
        reaction = self.catalog.reaction_for(event.label)
        if reaction is None:
            return self._suppress("unmapped")
        if not self.optouts.enabled(event.meeting_id):
            return self._suppress("opt_out", reaction)
        rule = self.catalog.confirm_for(reaction)
        confirmed = self.holds.observe(
            event.meeting_id,
            event.participant_id,
            reaction,
            event.sequence,
            event.capture_ms,
            rule,
        )
        if not confirmed:
            return self._suppress("not_confirmed", reaction)
        self.metrics.confirmed.labels(reaction).inc()
        cooldown = self.catalog.cooldown_for(reaction)
        if not self.cooldowns.allow(event.meeting_id, event.participant_id, reaction, cooldown):
            return self._suppress("cooldown", reaction)
        if not self.rate_limiter.allow(event.meeting_id):
            return self._suppress("rate_limit", reaction)
        entry = self.catalog.reactions[reaction]
        items = entry.videos if self.media_kind == "videos" and entry.videos else entry.gifs
        media = self.picker.pick(event.meeting_id, reaction, self.media_kind, items)
        return Decision(reaction=reaction, media=media)

    def suppress(self, reason: str, reaction: str | None = None) -> Decision:
        """Count a suppression decided outside (e.g. the meeting's lane is full)."""
        return self._suppress(reason, reaction)

    def _suppress(self, reason: str, reaction: str | None = None) -> Decision:
        self.metrics.suppressed.labels(reason).inc()
        return Decision(reaction=reaction, reason=reason)
