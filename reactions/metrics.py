"""Prometheus metrics of the reactions service, on a registry per service instance (so
tests, and two services in one process, never share counters)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SUPPRESS_REASONS: Final = (
    "duplicate",
    "unmapped",
    "no_room",
    "opt_out",
    "disabled",
    "speaking",
    "not_confirmed",
    "two_handed",
    "cooldown",
    "rate_limit",
    "backlog",
)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "memelearning_reactions_events", "Reaction events received.", registry=r
        )
        self.frames = Counter(
            "memelearning_reactions_frames",
            "Frame detections received (every hand of a frame: two-handed reactions, waves).",
            registry=r,
        )
        self.invalid_events = Counter(
            "memelearning_reactions_invalid_events",
            "Messages that broke the reaction-event or frame-detections contract (acked "
            "and dropped).",
            registry=r,
        )
        self.confirmed = Counter(
            "memelearning_reactions_confirmed",
            "Reactions confirmed by hold-to-confirm.",
            ["reaction"],
            registry=r,
        )
        self.motion_confirmed = Counter(
            "memelearning_reactions_motion_confirmed",
            "Reactions confirmed by a hand moving side to side (also in confirmed).",
            ["reaction"],
            registry=r,
        )
        self.suppressed = Counter(
            "memelearning_reactions_suppressed",
            "Events or confirmed reactions not shown, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in SUPPRESS_REASONS:
            self.suppressed.labels(reason)
        self.injected = Counter(
            "memelearning_reactions_injected",
            "Reactions the meeting API accepted.",
            ["reaction", "mode"],
            registry=r,
        )
        self.injection_failures = Counter(
            "memelearning_reactions_injection_failures",
            "Meeting API operations that failed after retries, by operation and reason.",
            ["operation", "reason"],
            registry=r,
        )
        self.hands_lowered = Counter(
            "memelearning_reactions_hands_lowered",
            "Raised hands the service lowered, by why: speaking, timeout, shutdown.",
            ["reason"],
            registry=r,
        )
        self.injection_retries = Counter(
            "memelearning_reactions_injection_retries",
            "Meeting API requests retried (5xx, 429, timeouts, connection errors).",
            registry=r,
        )
        self.injection_latency = Histogram(
            "memelearning_reactions_injection_latency_seconds",
            "From confirmation to the meeting API accepting the reaction.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.meetings_active = Gauge(
            "memelearning_reactions_meetings_active",
            "Meetings with an injection lane (recent reactions).",
            registry=r,
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 if absent): for tests and the health endpoint."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found
