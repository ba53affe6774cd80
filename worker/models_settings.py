"""Settings of ``memelearning models list|promote|rollback``: one pydantic-settings
class, ``MEMELEARNING_MODELS_*``. Only promote and rollback use the broker, to tell
every worker to serve what the repository now says."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from memelearning.amqp import AmqpSettings
from worker.control import CONTROL_EXCHANGE


class ModelsSettings(AmqpSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_MODELS_", extra="forbid")

    # amqp_url and tls_*: memelearning.amqp.AmqpSettings
    connection_name: Annotated[str, Field(min_length=1, max_length=128)] = "memelearning-models"
    """Names the connection in the RabbitMQ management UI."""
    control_exchange: Annotated[str, Field(min_length=1, max_length=200)] = CONTROL_EXCHANGE
    """The fanout exchange every worker listens to for model changes (the workers'
    `MEMELEARNING_WORKER_CONTROL_EXCHANGE`)."""
    confirm_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """How long to wait for the broker to confirm the control message."""
