"""Reactions service configuration: one pydantic-settings class, ``MEMELEARNING_REACTIONS_*``.

What a reaction *is* (label → reaction mapping, GIFs, hold-to-confirm and cooldown per
reaction) lives in the catalog file (:mod:`reactions.catalog`), which an operator edits
as a whole; this class holds what a process needs to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyUrl, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from memelearning.amqp import AmqpSettings
from memelearning.settings import HttpUrl
from publisher.protocol import ID_PATTERN

# Anchored: pydantic matches `pattern` anywhere in the string otherwise.
MeetingId = Annotated[str, Field(pattern=rf"^{ID_PATTERN.pattern}$")]
Positive = Annotated[float, Field(gt=0)]


class ReactionsSettings(AmqpSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_REACTIONS_", extra="forbid")

    # -- broker (amqp_url and tls_*: memelearning.amqp.AmqpSettings)
    connection_name: str = "memelearning-reactions"
    # Meetings this process serves; empty = every meeting. One process per partition of
    # meetings: two processes serving the same meeting would both inject.
    meetings: list[MeetingId] = []
    # Unacked events in flight; events are tiny and handled in microseconds.
    prefetch: Annotated[int, Field(ge=1)] = 256

    # -- decisions
    # The catalog (labels → reactions → GIFs/videos, confirm and cooldown per reaction);
    # unset = the packaged reactions/catalog.json.
    catalog: Path | None = None
    # Event ids remembered for de-duplication (at-least-once delivery), and for how long.
    dedup_size: Annotated[int, Field(ge=1)] = 100_000
    dedup_ttl_s: Positive = 600.0
    # Whether a meeting nobody has toggled shows reactions.
    enabled_by_default: bool = True
    # Per-meeting token bucket: sustained rate and burst of injected reactions.
    rate_limit_per_minute: Positive = 12.0
    rate_limit_burst: Annotated[int, Field(ge=1)] = 3

    # -- injection (eyeson-style meeting REST API)
    meeting_api_url: HttpUrl = AnyUrl("http://127.0.0.1:8090")
    # Sent as the Authorization header when set; never logged.
    api_key: SecretStr | None = None
    # meeting id → room access key, e.g. '{"standup": "VgoCc…"}'. A meeting not listed
    # uses its meeting id as the access key (unless access_key_fallback is false, in
    # which case its reactions are dropped). Access keys grant room control: they are
    # never logged either.
    access_keys: dict[str, SecretStr] = {}
    access_key_fallback: bool = True
    # layer = overlay image/GIF via POST /rooms/{key}/layers (cleared after display_s);
    # playback = the catalog's video via POST /rooms/{key}/playbacks.
    injection_mode: Literal["layer", "playback"] = "layer"
    layer_z_index: Literal[-1, 1] = 1
    display_s: Positive = 4.0
    # Where the meeting platform fetches media from: catalog paths are resolved against
    # it. Unset = this process's own /media/ route (fine for local runs and the demo).
    media_base_url: HttpUrl | None = None
    request_timeout_s: Positive = 3.0
    # Attempts per request (first try included) on 5xx, 429, timeouts, connection errors.
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff_base_s: Positive = 0.2
    backoff_max_s: Positive = 5.0
    # Room-ready gate: a layer set before the room is ready is lost, so wait for it.
    ready_timeout_s: Positive = 15.0
    ready_poll_s: Positive = 0.5
    # Once seen ready, a room is trusted for this long before asking again.
    ready_cache_s: Positive = 60.0
    # A reaction that waited longer than this (slow API, room not ready) is dropped.
    stale_after_s: Positive = 20.0
    # Reactions waiting per meeting while its API is slow; more are dropped.
    meeting_queue_size: Annotated[int, Field(ge=1)] = 4
    # A meeting's injection task ends after this long idle.
    meeting_idle_s: Positive = 120.0

    # -- process
    http_host: str = "0.0.0.0"
    # /metrics, /livez, /readyz, /media/, /meetings/{id}/reactions; 0 = a free port.
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9102
    drain_timeout_s: Positive = 10.0

    def access_key_for(self, meeting_id: str) -> str | None:
        key = self.access_keys.get(meeting_id)
        if key is not None:
            return key.get_secret_value()
        return meeting_id if self.access_key_fallback else None
