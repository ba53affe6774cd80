"""What can happen to a frame besides being processed: each outcome is an exception
raised where it is detected and handled in one place, the worker's settle step."""

from __future__ import annotations


class FrameOutcome(Exception):
    """Base class: the frame leaves the normal path."""


class FrameRejected(FrameOutcome):
    """Bad input: the frame goes to the dead-letter queue with ``reason`` (a short
    stable code, also a metric label) and ``detail`` (for a person) in its headers.
    Retrying cannot help, so it is never requeued."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameStale(FrameOutcome):
    """Too old to matter: acked and counted, never run through the model."""
