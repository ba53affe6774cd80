"""Two-handed reactions, as FaceTime has them: two thumbs up in one frame are fireworks,
not a thumbs up. Reaction events carry one event per label and frame, so two hands
showing the same gesture are one event; the worker's per-frame detections list every
hand, and this module reads them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from reactions.catalog import Confirm
from worker.events import Box, Hand

# Two boxes overlapping more than this are one hand found twice, not two hands.
SAME_HAND_IOU = 0.5


def two_handed_reactions(hands: Iterable[Hand], two_hands: Mapping[str, str]) -> list[str]:
    """The two-handed reactions of one frame: those that at least two distinct hands
    show (their labels map to it in ``two_hands``), sorted by name."""
    boxes: dict[str, list[Box]] = {}
    for hand in hands:
        reaction = two_hands.get(hand.label)
        if reaction is None:
            continue
        seen = boxes.setdefault(reaction, [])
        if all(_iou(hand.box, other) <= SAME_HAND_IOU for other in seen):
            seen.append(hand.box)
    return sorted(r for r, found in boxes.items() if len(found) >= 2)


def _iou(a: Box, b: Box) -> float:
    width = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    height = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a.xmax - a.xmin) * (a.ymax - a.ymin) + (b.xmax - b.xmin) * (b.ymax - b.ymin) - inter
    return inter / union if union > 0 else 1.0


class PairSightings:
    """When each participant last showed each two-handed gesture, so that the one-handed
    reaction confirming meanwhile gives way to it: someone holding up two thumbs gets
    fireworks, not a thumbs up first."""

    def __init__(self, max_size: int = 100_000) -> None:
        self._max_size = max_size
        # (meeting, participant, two-handed reaction) → (sequence, capture_ms)
        self._last: OrderedDict[tuple[str, str, str], tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def saw(
        self, meeting_id: str, participant_id: str, reaction: str, sequence: int, capture_ms: int
    ) -> None:
        key = (meeting_id, participant_id, reaction)
        last = self._last.get(key)
        if last is None or sequence > last[0]:
            self._last[key] = (sequence, capture_ms)
        self._last.move_to_end(key)
        while len(self._last) > self._max_size:
            self._last.popitem(last=False)

    def near(
        self,
        meeting_id: str,
        participant_id: str,
        reaction: str,
        rule: Confirm,
        *,
        sequence: int,
        capture_ms: int,
    ) -> bool:
        """Whether the two-handed gesture was seen within ``rule`` (its last n frames
        and its window) of frame ``sequence``, before or after it: frames arrive in any
        order."""
        last = self._last.get((meeting_id, participant_id, reaction))
        if last is None:
            return False
        seq, ms = last
        return abs(sequence - seq) < rule.n and abs(capture_ms - ms) <= rule.window_ms

    def forget_meeting(self, meeting_id: str) -> None:
        for key in [k for k in self._last if k[0] == meeting_id]:
            del self._last[key]
