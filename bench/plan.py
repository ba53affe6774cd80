"""How long each measurement runs: the full benchmark, and the quick one a smoke
test uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    # In process, per batch size: back-to-back intervals, whose spread shows how
    # steady the (shared) machine was.
    in_process_intervals: int
    in_process_interval_s: float
    # End to end, per batch size: warm-up after the first event, then the steady
    # window in intervals.
    warmup_s: float
    steady_intervals: int
    steady_interval_s: float
    # The latency run: warm-up, then the frames that count.
    latency_warmup_s: float
    latency_steady_s: float
    participants: int
    # The longest wait for events: the first one, or a backlog to drain.
    patience_s: float

    @property
    def steady_s(self) -> float:
        return self.steady_intervals * self.steady_interval_s


def plan_for(quick: bool, *, participants: int = 8) -> Plan:
    if quick:
        return Plan(2, 0.5, 1.0, 2, 1.0, 0.5, 2.0, participants, patience_s=30.0)
    return Plan(5, 3.0, 5.0, 6, 5.0, 3.0, 20.0, participants, patience_s=60.0)
