"""From one reaction event, or one frame's detections, to "show this GIF", "raise this
hand" or a reason not to."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reactions.catalog import Catalog, Media, MediaPicker
from reactions.confirm import HoldToConfirm
from reactions.dedup import Deduplicator
from reactions.limits import Cooldowns, OptOuts, RateLimiter
from reactions.metrics import Metrics
from reactions.motion import SideToSide
from reactions.speakers import ActiveSpeakers
from reactions.two_hands import PairSightings, two_handed_reactions
from worker.events import FrameDetections, ReactionEvent

# A speaker mark lasts this long unless the decider is given its own (tests, tools).
SPEAKER_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    """``reaction`` with ``media`` (shown) or ``action`` (done, e.g. ``raise_hand``) when
    it is to happen; otherwise ``reason`` (a metric label) says why not."""

    reaction: str | None = None
    media: Media | None = None
    action: str | None = None
    reason: str | None = None

    @property
    def show(self) -> bool:
        return self.media is not None or self.action is not None


class Decider:
    """The checks in order, cheapest and most certain first: duplicate, unmapped label,
    opt-out (the meeting's, then the reaction's in it), active speaker, hold-to-confirm,
    a two-handed gesture under way, cooldown, rate limit. Each suppression is counted
    once, under the first reason that applies."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        dedup: Deduplicator,
        optouts: OptOuts,
        rate_limiter: RateLimiter,
        metrics: Metrics,
        speakers: ActiveSpeakers | None = None,
        media_kind: str = "gifs",
        picker: MediaPicker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.dedup = dedup
        self.optouts = optouts
        self.rate_limiter = rate_limiter
        self.metrics = metrics
        self.speakers = speakers if speakers is not None else ActiveSpeakers(SPEAKER_TTL_S, clock)
        self.media_kind = media_kind
        self.picker = picker or MediaPicker()
        self.holds = HoldToConfirm()
        self.pairs = PairSightings()
        self.motion = SideToSide()
        self.cooldowns = Cooldowns(clock)

    # -- one gesture in one frame (reaction events)

    def decide(self, event: ReactionEvent) -> Decision:
        self.metrics.events.inc()
        if self.dedup.seen_before(event.event_id):
            return self._suppress("duplicate")
        reaction = self.catalog.reaction_for(event.label)
        if reaction is None:
            return self._suppress("unmapped")
        meeting, participant = event.meeting_id, event.participant_id
        held_back = self._held_back(meeting, participant, reaction)
        if held_back is not None:
            return self._suppress(held_back, reaction)
        rule = self.catalog.confirm_for(reaction)
        if not self.holds.observe(
            meeting, participant, reaction, event.sequence, event.capture_ms, rule
        ):
            return self._suppress("not_confirmed", reaction)
        self.metrics.confirmed.labels(reaction).inc()
        pair = self.catalog.two_handed_for(event.label)
        if (
            pair is not None
            and self._held_back(meeting, participant, pair) is None
            and self.pairs.near(
                meeting,
                participant,
                pair,
                self.catalog.confirm_for(pair),
                sequence=event.sequence,
                capture_ms=event.capture_ms,
            )
        ):
            # Two hands show it: the two-handed reaction is coming, and it says more.
            return self._suppress("two_handed", reaction)
        return self._happen(meeting, participant, reaction)

    # -- every hand of one frame (frame detections)

    def decide_frame(self, found: FrameDetections, *, room: bool = True) -> list[Decision]:
        """Two-handed reactions and waves seen as motion. Frames that show neither are
        not counted as suppressed: most frames show nothing."""
        self.metrics.frames.inc()
        meeting, participant = found.meeting_id, found.participant_id
        pairs = two_handed_reactions(found.hands, self.catalog.two_hands)
        if self.dedup.seen_before(found.message_id):
            return [self._suppress("duplicate", r) for r in pairs]
        if not room:
            return [self._suppress("no_room", r) for r in pairs]
        decisions = []
        for reaction in pairs:
            self.pairs.saw(meeting, participant, reaction, found.sequence, found.capture_ms)
            held_back = self._held_back(meeting, participant, reaction)
            if held_back is not None:
                decisions.append(self._suppress(held_back, reaction))
                continue
            rule = self.catalog.confirm_for(reaction)
            if not self.holds.observe(
                meeting, participant, reaction, found.sequence, found.capture_ms, rule
            ):
                decisions.append(self._suppress("not_confirmed", reaction))
                continue
            self.metrics.confirmed.labels(reaction).inc()
            decisions.append(self._happen(meeting, participant, reaction))
        for reaction, motion in self.catalog.motion_reactions().items():
            boxes = [h.box for h in found.hands if self.catalog.reaction_for(h.label) == reaction]
            if self._held_back(meeting, participant, reaction) is not None:
                boxes = []  # a hand waving while held back does not count toward a wave
            if self.motion.observe(
                meeting, participant, reaction, found.sequence, found.capture_ms, boxes, motion
            ):
                # The static hold of the same hand would only confirm it again.
                self.holds.forget(meeting, participant, reaction)
                self.metrics.confirmed.labels(reaction).inc()
                self.metrics.motion_confirmed.labels(reaction).inc()
                decisions.append(self._happen(meeting, participant, reaction))
        return decisions

    def suppress(self, reason: str, reaction: str | None = None) -> Decision:
        """Count a suppression decided outside (e.g. the meeting's lane is full)."""
        return self._suppress(reason, reaction)

    # -- shared

    def _held_back(self, meeting_id: str, participant_id: str, reaction: str) -> str | None:
        """Why the meeting does not want this reaction now, if it does not. Checked
        before the hold, so frames held back never count toward one."""
        if not self.optouts.enabled(meeting_id):
            return "opt_out"
        entry = self.catalog.reactions[reaction]
        if not self.optouts.reaction_enabled(meeting_id, reaction, entry.enabled_by_default):
            return "disabled"
        if not entry.while_speaking and self.speakers.speaking(meeting_id, participant_id):
            return "speaking"
        return None

    def _happen(self, meeting_id: str, participant_id: str, reaction: str) -> Decision:
        """A confirmed reaction, past the cooldown and (for media) the rate limit."""
        cooldown = self.catalog.cooldown_for(reaction)
        if not self.cooldowns.allow(meeting_id, participant_id, reaction, cooldown):
            return self._suppress("cooldown", reaction)
        entry = self.catalog.reactions[reaction]
        if entry.action is not None:
            # An action is the participant's own state (their hand), not something put
            # in front of everyone: the meeting's GIF budget does not apply.
            return Decision(reaction=reaction, action=entry.action)
        if not self.rate_limiter.allow(meeting_id):
            return self._suppress("rate_limit", reaction)
        items = entry.videos if self.media_kind == "videos" and entry.videos else entry.gifs
        media = self.picker.pick(meeting_id, reaction, self.media_kind, items)
        return Decision(reaction=reaction, media=media)

    def _suppress(self, reason: str, reaction: str | None = None) -> Decision:
        self.metrics.suppressed.labels(reason).inc()
        return Decision(reaction=reaction, reason=reason)
