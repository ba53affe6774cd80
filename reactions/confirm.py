"""Hold to confirm: a reaction counts only when a participant holds the gesture, the way
FaceTime, Webex and Meet avoid firing on a hand that passes through the picture."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from reactions.catalog import Confirm


@dataclass
class _Hold:
    # (sequence, capture_ms) of recent frames showing the gesture, newest last.
    frames: deque[tuple[int, int]] = field(default_factory=deque)


class HoldToConfirm:
    """Confirms a (meeting, participant, reaction) when ``k`` of the participant's last
    ``n`` frames show it, all captured within ``window_ms``.

    Events exist only for frames where the gesture was seen, so "the last n frames" is
    measured with the participant's frame sequence numbers: frames in between without
    the gesture simply have no event. Time is the frames' capture time, not arrival
    time, so a backlog or a slow worker does not change the outcome. After a
    confirmation the hold starts over: keeping the hand up fires again only after
    another k frames (and the cooldown decides whether that is shown).
    """

    def __init__(self, max_holds: int = 100_000) -> None:
        self._holds: dict[tuple[str, str, str], _Hold] = {}
        self._max_holds = max_holds

    def __len__(self) -> int:
        return len(self._holds)

    def observe(
        self,
        meeting_id: str,
        participant_id: str,
        reaction: str,
        sequence: int,
        capture_ms: int,
        rule: Confirm,
    ) -> bool:
        key = (meeting_id, participant_id, reaction)
        hold = self._holds.get(key)
        if hold is None:
            if len(self._holds) >= self._max_holds:
                # Bounded memory: forget the oldest hold (dicts keep insertion order).
                del self._holds[next(iter(self._holds))]
            hold = self._holds[key] = _Hold()
        frames = hold.frames
        if any(seq == sequence for seq, _ in frames):
            return False  # the same frame again (another label mapping to this reaction)
        frames.append((sequence, capture_ms))
        newest_seq = max(seq for seq, _ in frames)
        newest_ms = max(ms for _, ms in frames)
        # Keep only frames among the last n and within the window of the newest one.
        kept = [
            (seq, ms)
            for seq, ms in frames
            if seq > newest_seq - rule.n and ms >= newest_ms - rule.window_ms
        ]
        frames.clear()
        frames.extend(sorted(kept))
        if len(frames) >= rule.k:
            del self._holds[key]
            return True
        return False

    def held(
        self,
        meeting_id: str,
        participant_id: str,
        reaction: str,
        rule: Confirm,
        *,
        sequence: int,
        capture_ms: int,
    ) -> int:
        """How many frames of the hold still count once the participant's newest frame
        is ``(sequence, capture_ms)``: the progress toward ``rule.k``, without changing
        the hold (a view can show it while the frames go by)."""
        hold = self._holds.get((meeting_id, participant_id, reaction))
        if hold is None:
            return 0
        return sum(
            1
            for seq, ms in hold.frames
            if seq > sequence - rule.n and ms >= capture_ms - rule.window_ms
        )

    def forget(self, meeting_id: str, participant_id: str, reaction: str) -> None:
        """Start a hold over (the reaction was confirmed another way)."""
        self._holds.pop((meeting_id, participant_id, reaction), None)

    def forget_meeting(self, meeting_id: str) -> None:
        for key in [k for k in self._holds if k[0] == meeting_id]:
            del self._holds[key]
