"""A wave is a moving hand: an open palm going side to side across consecutive frames
confirms a wave sooner than holding it still, and tells a wave from a raised hand.

It needs frames close together: at the MCU's usual 2 frames a second a waving hand
moves a whole stroke or more between two frames, and the centre of its box jumps
rather than swings. So a participant's motion counts only while their frames come at
the rule's ``min_fps`` or faster; slower, the static hold alone decides.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from reactions.catalog import Motion
from worker.events import Box

# The frame rate is measured over this much of the participant's newest frames.
FPS_SPAN_MS = 2000
# Frames kept per participant: enough for the frame rate and a stroke or two.
FRAMES_KEPT = 64
# A frame without the hand (a blurred palm the model missed) does not end a wave; two
# in a row do.
MAX_MISSED = 1


@dataclass(frozen=True, slots=True)
class _Seen:
    sequence: int
    capture_ms: int
    # (centre x, width) of each hand in the frame whose label maps to the reaction.
    hands: tuple[tuple[float, float], ...]


@dataclass
class _Track:
    frames: list[_Seen] = field(default_factory=list)


class SideToSide:
    """Per participant and reaction, the recent frames, every frame included (a frame
    without the hand breaks a wave), from the worker's per-frame detections."""

    def __init__(self, max_tracks: int = 100_000) -> None:
        self._max_tracks = max_tracks
        self._tracks: OrderedDict[tuple[str, str, str], _Track] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def observe(
        self,
        meeting_id: str,
        participant_id: str,
        reaction: str,
        sequence: int,
        capture_ms: int,
        boxes: Sequence[Box],
        rule: Motion,
    ) -> bool:
        """Add one frame (``boxes``: its hands that map to ``reaction``, maybe none);
        True when the participant's frames now show a wave, which starts the track
        over."""
        key = (meeting_id, participant_id, reaction)
        track = self._tracks.get(key)
        if track is None:
            if not boxes:
                return False  # nothing to follow yet: keep no state for hands down
            track = self._tracks[key] = _Track()
            while len(self._tracks) > self._max_tracks:
                self._tracks.popitem(last=False)
        self._tracks.move_to_end(key)
        frames = track.frames
        if any(f.sequence == sequence for f in frames):
            return False  # the same frame again
        hands = tuple(((b.xmin + b.xmax) / 2, b.xmax - b.xmin) for b in boxes)
        frames.append(_Seen(sequence, capture_ms, hands))
        frames.sort(key=lambda f: f.sequence)
        newest_ms = max(f.capture_ms for f in frames)
        keep_ms = max(FPS_SPAN_MS, rule.window_ms)
        track.frames = frames = [f for f in frames if f.capture_ms >= newest_ms - keep_ms][
            -FRAMES_KEPT:
        ]
        if not any(f.hands for f in frames):
            del self._tracks[key]  # hand down long enough: forget the participant
            return False
        if _fps(frames, newest_ms) < rule.min_fps:
            return False
        recent = [f for f in frames if f.capture_ms >= newest_ms - rule.window_ms]
        if any(_reversals(run, rule.min_amplitude) >= rule.reversals for run in _runs(recent)):
            del self._tracks[key]
            return True
        return False

    def forget(self, meeting_id: str, participant_id: str, reaction: str) -> None:
        self._tracks.pop((meeting_id, participant_id, reaction), None)

    def forget_meeting(self, meeting_id: str) -> None:
        for key in [k for k in self._tracks if k[0] == meeting_id]:
            del self._tracks[key]


def _fps(frames: Sequence[_Seen], newest_ms: int) -> float:
    """Frames a second, from sequence numbers over capture time: the publisher numbers
    every frame it samples, so frames dropped on the way do not lower the rate."""
    span = [f for f in frames if f.capture_ms >= newest_ms - FPS_SPAN_MS]
    if len(span) < 3:
        return 0.0
    elapsed_ms = max(f.capture_ms for f in span) - min(f.capture_ms for f in span)
    counted = span[-1].sequence - span[0].sequence
    if elapsed_ms <= 0:
        return 0.0
    return 1000.0 * counted / elapsed_ms


def _runs(frames: Sequence[_Seen]) -> list[list[tuple[float, float]]]:
    """Consecutive frames that show the hand, as (centre x, width) of the one hand
    followed: the hand nearest to where it was in the frame before."""
    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    missed = 0
    previous: int | None = None
    for frame in frames:
        lost = previous is not None and frame.sequence - previous > MAX_MISSED + 1
        previous = frame.sequence
        if not frame.hands:
            missed += 1
            lost = lost or missed > MAX_MISSED
        if lost and run:
            runs.append(run)
            run = []
        if not frame.hands:
            continue
        missed = 0
        if run:
            last_x = run[-1][0]
            run.append(min(frame.hands, key=lambda h: abs(h[0] - last_x)))
        else:
            run.append(max(frame.hands, key=lambda h: h[1]))  # the biggest: the nearest
    if run:
        runs.append(run)
    return runs


def _reversals(run: Sequence[tuple[float, float]], min_amplitude: float) -> int:
    """Changes of direction of the hand's centre, counting only strokes of at least
    ``min_amplitude`` box widths (a zig-zag with that much hysteresis), so the jitter
    of a box around a still hand is no wave."""
    if len(run) < 3:
        return 0
    step = min_amplitude * statistics.median(w for _, w in run)
    start = run[0][0]
    extreme = start
    direction = 0
    reversals = 0
    for x, _ in run[1:]:
        if direction == 0:
            if abs(x - start) >= step:
                direction = 1 if x > start else -1
                extreme = x
        elif (x - extreme) * direction > 0:
            extreme = x  # further the same way
        elif abs(x - extreme) >= step:
            reversals += 1
            direction = -direction
            extreme = x
    return reversals
