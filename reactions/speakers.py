"""Who is speaking: the meeting side marks its active speakers, and while a participant
is marked their gestures (other than a raised hand) are not shown, as Google Meet does.
Someone who talks with their hands is not asking for a GIF.

A mark lasts ``ttl_s`` unless refreshed: the meeting side repeats it while the person
speaks, so a lost "stopped speaking" message, or a meeting side that went away, cannot
silence a participant for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ActiveSpeakers:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def mark(self, meeting_id: str, participant_id: str) -> bool:
        """Mark (or refresh) a speaker; True when this starts a turn (they were not
        marked), which is what lowers their raised hand."""
        now = self._clock()
        key = (meeting_id, participant_id)
        starts = self._until.get(key, float("-inf")) <= now
        self._until[key] = now + self.ttl_s
        self._prune(now)
        return starts

    def unmark(self, meeting_id: str, participant_id: str) -> None:
        self._until.pop((meeting_id, participant_id), None)

    def speaking(self, meeting_id: str, participant_id: str) -> bool:
        return self._until.get((meeting_id, participant_id), float("-inf")) > self._clock()

    def speakers(self, meeting_id: str) -> list[str]:
        now = self._clock()
        return sorted(p for (m, p), until in self._until.items() if m == meeting_id and until > now)

    def _prune(self, now: float) -> None:
        # Amortised, as for cooldowns: only once the table has grown.
        if len(self._until) > 1024 and len(self._until) % 1024 == 0:
            for key in [k for k, until in self._until.items() if until <= now]:
                del self._until[key]
