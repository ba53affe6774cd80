"""Publisher configuration: one pydantic-settings class, ``MEMELEARNING_PUBLISHER_*``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from memelearning.amqp import AmqpSettings


class PublisherSettings(AmqpSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_PUBLISHER_", extra="forbid")

    # amqp_url and tls_*: memelearning.amqp.AmqpSettings
    connection_name: Annotated[str, Field(min_length=1, max_length=128)] = "memelearning-publisher"
    """Shown in the RabbitMQ management UI next to the connection."""
    max_in_flight: Annotated[int, Field(ge=1)] = 256
    """Frames published but not yet confirmed by the broker; publishing waits when the
    window is full, so a slow broker slows the publisher down instead of growing its
    memory."""
    confirm_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """How long one publish attempt may wait for the broker's confirm."""
    declare_exchange: bool = True
    """False for least-privilege deployments where the publisher may only write to the
    frames exchange: it then relies on a worker having declared it."""
    max_frame_age_ms: Annotated[int, Field(ge=0)] = 2000
    """Frames older than this (capture to now) are not re-sent after a reconnect: the
    worker queue's TTL would expire them anyway. 0 = never re-send."""
    reconnect_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """Seconds before each reconnect attempt after the broker went away; aio-pika's
    default (5 s) outlasts every frame in flight."""
    heartbeat_s: Annotated[int, Field(ge=0)] = 10
    """AMQP heartbeat in seconds: how soon a dead broker (no TCP reset) is noticed."""

    @field_validator("connection_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable")
        return value

    def connection_url(self) -> str:
        """The broker URL with the connection parameters aio-pika reads from it
        (``name``, ``heartbeat``, ``reconnect_interval``); these settings win over the
        same parameters in ``amqp_url``."""
        parts = urlsplit(str(self.amqp_url))
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.update(
            name=self.connection_name,
            heartbeat=str(self.heartbeat_s),
            reconnect_interval=f"{self.reconnect_interval_s:g}",
        )
        return urlunsplit(parts._replace(query=urlencode(query)))
