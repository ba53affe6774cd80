"""Benchmark configuration: one pydantic-settings class, ``MEMELEARNING_BENCH_*``.

Only where the broker is comes from the environment; the shape of a run (quick or
full, batch sizes, frames) is given on the command line, where it is recorded.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyUrl, UrlConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

AmqpUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["amqp", "amqps"])]
HttpUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"])]


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_BENCH_", extra="forbid")

    # The broker the benchmark runs against. Its user must be allowed to create
    # vhosts: every run gets a fresh one and deletes it afterwards.
    amqp_url: AmqpUrl = AnyUrl("amqp://guest:guest@127.0.0.1:5672/")
    # The management API of that broker (vhosts, RabbitMQ version).
    management_url: HttpUrl = AnyUrl("http://127.0.0.1:15672")
