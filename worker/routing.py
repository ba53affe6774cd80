"""Which loaded model a frame goes to: the default, or the candidate for the canary
share of participants.

The share is decided per participant by a stable hash of meeting and participant, so
one person never flips between versions from frame to frame, every worker of the fleet
decides the same, and raising the share only moves participants from the default to
the candidate (never back and forth).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from worker.events import ModelRef

if TYPE_CHECKING:
    from worker.service import DetectorLike

# Hash buckets: shares are exact to 0.01 %.
BUCKETS: Final = 10_000


def canary_bucket(meeting_id: str, participant_id: str) -> int:
    """The participant's bucket in [0, BUCKETS), the same in every process (unlike
    Python's salted ``hash``). Ids cannot hold "/", so the pair is unambiguous."""
    digest = hashlib.blake2b(f"{meeting_id}/{participant_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(eq=False)
class ServedModel:
    """A loaded, warmed model version and the batches that still need it."""

    ref: ModelRef
    detector: DetectorLike
    runtime: str
    path: Path | None = None
    labels: frozenset[str] | None = None
    """Its label names; None when unknown (a detector passed in by a caller)."""
    busy: int = 0
    """Batches routed to it and not yet through the model: it is unloaded only at 0."""
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def version(self) -> str:
        return self.ref.version

    def acquire(self) -> None:
        self.busy += 1
        self._idle.clear()

    def release(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass(frozen=True, eq=False)
class Routing:
    """The models serving now. The batch loop reads it once per batch, so a change
    takes effect between two batches."""

    default: ServedModel
    candidate: ServedModel | None = None
    canary_percent: float = 0.0

    def __post_init__(self) -> None:
        if self.candidate is None and self.canary_percent:
            raise ValueError("a canary share needs a candidate")

    @property
    def models(self) -> tuple[ServedModel, ...]:
        return (self.default,) if self.candidate is None else (self.default, self.candidate)

    def pick(self, meeting_id: str, participant_id: str) -> ServedModel:
        if self.candidate is None:
            return self.default
        if canary_bucket(meeting_id, participant_id) < self.canary_percent * BUCKETS / 100:
            return self.candidate
        return self.default

    def share(self, model: ServedModel) -> float:
        """Percent of participants ``model`` serves."""
        if model is self.candidate:
            return self.canary_percent
        return 100.0 - self.canary_percent if model is self.default else 0.0

    def describe(self) -> str:
        if self.candidate is None:
            return f"{self.default.ref.name} version {self.default.version}"
        return (
            f"{self.default.ref.name} version {self.default.version}, version "
            f"{self.candidate.version} for {self.canary_percent:g}% of participants"
        )
