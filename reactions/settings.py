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
    """Names the connection in the RabbitMQ management UI."""
    meetings: list[MeetingId] = []
    """Meetings this process serves (a JSON list); empty = every meeting. One process
    per partition of meetings: two processes serving the same meeting would both
    inject."""
    prefetch: Annotated[int, Field(ge=1)] = 256
    """Unacked events in flight; events are tiny and handled in microseconds."""

    # -- decisions
    catalog: Path | None = None
    """The catalog (labels to reactions to GIFs/videos, confirm and cooldown per
    reaction); unset = the packaged reactions/catalog.json."""
    dedup_size: Annotated[int, Field(ge=1)] = 100_000
    """Event ids remembered for de-duplication (delivery is at least once)."""
    dedup_ttl_s: Positive = 600.0
    """How long an event id is remembered for de-duplication."""
    enabled_by_default: bool = True
    """Whether a meeting nobody has toggled shows reactions."""
    rate_limit_per_minute: Positive = 12.0
    """Per-meeting token bucket: the sustained rate of injected reactions."""
    rate_limit_burst: Annotated[int, Field(ge=1)] = 3
    """Per-meeting token bucket: reactions that may be injected in a burst."""
    speaker_ttl_s: Positive = 5.0
    """How long an active-speaker mark (`PUT /meetings/{id}/speakers/{participant}`)
    lasts unless refreshed: while it does, that participant's gestures other than a
    raised hand are not shown."""
    hand_timeout_s: Positive = 600.0
    """A hand raised by a gesture is lowered when its participant starts speaking, or
    after this long."""

    # -- injection (eyeson-style meeting REST API)
    meeting_api_url: HttpUrl = AnyUrl("http://127.0.0.1:8090")
    """The meeting platform's REST API (eyeson-style)."""
    api_key: SecretStr | None = None
    """Sent as the Authorization header when set; never logged."""
    access_keys: dict[str, SecretStr] = {}
    """Meeting id to room access key as JSON, e.g. `{"standup": "VgoCc…"}`. A meeting not
    listed uses its meeting id as the access key (unless `ACCESS_KEY_FALLBACK` is
    false, in which case its reactions are dropped). Access keys grant room control:
    they are never logged either."""
    access_key_fallback: bool = True
    """Whether a meeting missing from `ACCESS_KEYS` uses its meeting id as its access
    key."""
    injection_mode: Literal["layer", "playback"] = "layer"
    """`layer` = an overlay image/GIF via `POST /rooms/{key}/layers`, cleared after
    `DISPLAY_S`; `playback` = the catalog's video via `POST /rooms/{key}/playbacks`."""
    layer_z_index: Literal[-1, 1] = 1
    """The overlay's layer: 1 = in front of the video, -1 = behind it."""
    display_s: Positive = 4.0
    """How long each overlay is shown (`layer` mode): a reaction confirmed meanwhile
    waits its turn, and the last one is cleared after this long."""
    media_base_url: HttpUrl | None = None
    """Where the meeting platform fetches media from: catalog paths are resolved against
    it. Unset = this process's own `/media/` route (fine for local runs and the demo)."""
    request_timeout_s: Positive = 3.0
    """Timeout of one request to the meeting API."""
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    """Attempts per request (the first included) on 5xx, 429, timeouts and connection
    errors."""
    backoff_base_s: Positive = 0.2
    """First pause between attempts; it doubles at each retry (with full jitter)."""
    backoff_max_s: Positive = 5.0
    """Longest pause between attempts."""
    ready_timeout_s: Positive = 15.0
    """How long to wait for a room to become ready: a layer set before the room is
    ready is lost."""
    ready_poll_s: Positive = 0.5
    """How often to ask whether a room is ready while waiting for it."""
    ready_cache_s: Positive = 60.0
    """Once seen ready, a room is trusted for this long before asking again."""
    stale_after_s: Positive = 20.0
    """A reaction that waited longer than this (slow API, room not ready) is dropped."""
    meeting_queue_size: Annotated[int, Field(ge=1)] = 4
    """Reactions waiting per meeting while its API is slow; more are dropped."""
    meeting_idle_s: Positive = 120.0
    """A meeting's injection task ends after this long idle."""

    # -- process
    http_host: str = "127.0.0.1"
    """Address for `/metrics`, `/livez`, `/readyz`, `/media/` and the meeting side's
    `/meetings/{id}/…` (opt-outs, active speakers): loopback unless configured (the chart and
    docker-compose set 0.0.0.0 for probes, scrapes and media fetched from outside the
    container)."""
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9102
    """Port of those endpoints; 0 = a free port."""
    drain_timeout_s: Positive = 10.0
    """On SIGTERM, how long the injections under way may take to finish."""

    def access_key_for(self, meeting_id: str) -> str | None:
        key = self.access_keys.get(meeting_id)
        if key is not None:
            return key.get_secret_value()
        return meeting_id if self.access_key_fallback else None
