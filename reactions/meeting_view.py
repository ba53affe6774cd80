"""What the demo page shows of each participant: their latest frames, the hands the
worker found in each, and how far their gesture is toward hold-to-confirm.

Frames are biometric data. The view holds the newest few JPEGs of each participant
in memory only, for as long as they keep coming (``frame_kept_s``), for at most
``max_participants`` people: nothing here writes a frame to disk or to a log.

The progress ring mirrors the reactions service: the same :class:`HoldToConfirm` rule
and catalog, fed the same reaction events. It is a view of the rule, computed beside
the service (which decides on its own and may still suppress a confirmed gesture for
cooldown or the rate limit).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from reactions.catalog import Catalog
from reactions.confirm import HoldToConfirm
from reactions.two_hands import PairSightings, two_handed_reactions
from worker.events import FrameDetections, Hand, ReactionEvent

# Frames kept per participant: the worker's answer for a frame comes a few frames
# later under load, and the frame must still be here to show its boxes on it.
FRAMES_KEPT: Final = 12
# Forget a participant's frames this long after their last one (they left, or the
# publisher stopped): a person who is gone is not shown.
FRAME_KEPT_S: Final = 10.0
# Show the newest frame without boxes once the worker's answer is this late (worker
# down, frame dropped as stale), rather than freezing on the last analysed frame.
ANALYSIS_LATE_S: Final = 1.5
MAX_PARTICIPANTS: Final = 64


@dataclass(eq=False)
class _Frame:
    sequence: int
    capture_ms: int
    jpeg: bytes
    received: float
    hands: tuple[Hand, ...] | None = None


@dataclass(eq=False)
class _Participant:
    frames: deque[_Frame] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))
    # Detections that came before their frame (another connection, another order).
    early: OrderedDict[int, tuple[Hand, ...]] = field(default_factory=OrderedDict)
    newest_sequence: int = -1
    newest_capture_ms: int = 0
    last_frame: float = 0.0
    last_seen: float = 0.0  # a frame, its detections or a reaction event
    reaction: str | None = None  # of the last gesture seen that maps to one
    confirmed_ms: int | None = None


class MeetingView:
    def __init__(
        self,
        catalog: Catalog,
        *,
        max_participants: int = MAX_PARTICIPANTS,
        frame_kept_s: float = FRAME_KEPT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.max_participants = max_participants
        self.frame_kept_s = frame_kept_s
        self._clock = clock
        self._people: OrderedDict[tuple[str, str], _Participant] = OrderedDict()
        self._holds = HoldToConfirm(max_holds=10 * max_participants)
        self._pairs = PairSightings(max_size=10 * max_participants)

    # -- what comes in

    def add_frame(
        self, meeting_id: str, participant_id: str, sequence: int, capture_ms: int, jpeg: bytes
    ) -> None:
        person = self._person(meeting_id, participant_id)
        newest = person.frames[-1] if person.frames else None
        if newest is not None and sequence < newest.sequence and capture_ms > newest.capture_ms:
            # Captured later with a lower number: the numbering started over (the
            # participant's publisher restarted), and the old frames would otherwise
            # stay "newest" for good. (A late frame has an older capture time too.)
            person.frames.clear()
            person.early.clear()
            person.newest_sequence = -1
        now = self._clock()
        frame = _Frame(sequence, capture_ms, jpeg, now, person.early.pop(sequence, None))
        # Newest last: a frame that arrives late goes where its sequence says.
        frames = [f for f in person.frames if f.sequence != sequence] + [frame]
        frames.sort(key=lambda f: f.sequence)
        person.frames.clear()
        person.frames.extend(frames[-FRAMES_KEPT:])
        person.last_frame = now
        self._saw(person, sequence, capture_ms)

    def add_detections(self, found: FrameDetections) -> None:
        person = self._person(found.meeting_id, found.participant_id)
        # Faces are drawn like hands, labelled with their expression (smile, neutral).
        boxes = found.hands + found.faces
        for frame in person.frames:
            if frame.sequence == found.sequence:
                frame.hands = boxes
                break
        else:
            person.early[found.sequence] = boxes
            while len(person.early) > FRAMES_KEPT:
                person.early.popitem(last=False)
        self._saw(person, found.sequence, found.capture_ms)
        # Two hands of one gesture: the ring follows the two-handed hold, as the
        # service prefers that reaction.
        for reaction in two_handed_reactions(found.hands, self.catalog.two_hands):
            key = (found.meeting_id, found.participant_id, reaction)
            self._pairs.saw(*key, found.sequence, found.capture_ms)
            person.reaction = reaction
            rule = self.catalog.confirm_for(reaction)
            if self._holds.observe(*key, found.sequence, found.capture_ms, rule):
                person.confirmed_ms = int(time.time() * 1000)

    def observe(self, event: ReactionEvent) -> None:
        """Follow the hold of a gesture the way the reactions service does."""
        reaction = self.catalog.reaction_for(event.label)
        person = self._person(event.meeting_id, event.participant_id)
        self._saw(person, event.sequence, event.capture_ms)
        if reaction is None:
            return
        pair = self.catalog.two_handed_for(event.label)
        if pair is None or not self._pairs.near(
            event.meeting_id,
            event.participant_id,
            pair,
            self.catalog.confirm_for(pair),
            sequence=event.sequence,
            capture_ms=event.capture_ms,
        ):
            person.reaction = reaction
        confirmed = self._holds.observe(
            event.meeting_id,
            event.participant_id,
            reaction,
            event.sequence,
            event.capture_ms,
            self.catalog.confirm_for(reaction),
        )
        if confirmed and person.reaction == reaction:
            person.confirmed_ms = int(time.time() * 1000)

    # -- what goes out

    def frame_jpeg(self, meeting_id: str, participant_id: str, sequence: int) -> bytes | None:
        self._forget_gone()
        person = self._people.get((meeting_id, participant_id))
        if person is None:
            return None
        for frame in person.frames:
            if frame.sequence == sequence:
                return frame.jpeg
        return None

    def participants(self, meeting_id: str) -> list[str]:
        self._forget_gone()
        return sorted(p for m, p in self._people if m == meeting_id)

    def meetings(self) -> set[str]:
        self._forget_gone()
        return {m for m, _ in self._people}

    def state(self, meeting_id: str, participant_id: str) -> dict[str, Any]:
        """The participant's frame to show (with its hands) and their hold's progress."""
        self._forget_gone()
        person = self._people.get((meeting_id, participant_id))
        if person is None:
            return {"frame": None, "hold": None}
        return {"frame": self._shown(person), "hold": self._hold(meeting_id, participant_id)}

    def _shown(self, person: _Participant) -> dict[str, Any] | None:
        if not person.frames:
            return None
        newest = person.frames[-1]
        analysed = next((f for f in reversed(person.frames) if f.hands is not None), None)
        late = analysed is None or newest.received - analysed.received > ANALYSIS_LATE_S
        frame = newest if late else analysed
        assert frame is not None
        return {
            "sequence": frame.sequence,
            "capture_ms": frame.capture_ms,
            "analysed": frame.hands is not None,
            "hands": [
                {
                    "label": hand.label,
                    "reaction": self.catalog.reaction_for(hand.label),
                    "score": round(hand.score, 3),
                    "box": hand.box.model_dump(),
                }
                for hand in frame.hands or ()
            ],
        }

    def _hold(self, meeting_id: str, participant_id: str) -> dict[str, Any] | None:
        person = self._people[(meeting_id, participant_id)]
        # Progress is counted in the participant's frames: with none coming any more
        # (they left, the worker stopped) it would stand still, so it goes with them.
        if person.reaction is None or self._clock() - person.last_seen > self.frame_kept_s:
            return None
        rule = self.catalog.confirm_for(person.reaction)
        held = self._holds.held(
            meeting_id,
            participant_id,
            person.reaction,
            rule,
            sequence=person.newest_sequence,
            capture_ms=person.newest_capture_ms,
        )
        return {
            "reaction": person.reaction,
            "held": held,
            "needed": rule.k,
            "confirmed_ms": person.confirmed_ms,
        }

    # -- bookkeeping

    def _person(self, meeting_id: str, participant_id: str) -> _Participant:
        key = (meeting_id, participant_id)
        person = self._people.get(key)
        if person is None:
            while len(self._people) >= self.max_participants:
                # Bounded memory: the one heard from least recently goes first.
                self._people.popitem(last=False)
            now = self._clock()
            person = self._people[key] = _Participant(last_frame=now, last_seen=now)
        self._people.move_to_end(key)
        return person

    def _saw(self, person: _Participant, sequence: int, capture_ms: int) -> None:
        person.last_seen = self._clock()
        if sequence > person.newest_sequence:
            person.newest_sequence = sequence
            person.newest_capture_ms = capture_ms

    def _forget_gone(self) -> None:
        now = self._clock()
        for key, person in list(self._people.items()):
            if now - person.last_frame > self.frame_kept_s:
                person.frames.clear()
                person.early.clear()
                if now - person.last_seen > self.frame_kept_s:
                    del self._people[key]
