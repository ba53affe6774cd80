"""Worker configuration: one pydantic-settings class, ``MEMELEARNING_WORKER_*``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from memelearning.amqp import AmqpSettings

# The shipped model; until the trained one lands this directory may not exist and
# the operator must point MEMELEARNING_WORKER_MODEL_DIR at an exported model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(AmqpSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_WORKER_", extra="forbid")

    # -- broker (amqp_url and tls_*: memelearning.amqp.AmqpSettings)
    connection_name: str = "memelearning-worker"
    # aio-pika's robust connection waits this long before each reconnect attempt. Its
    # default (5 s) outlasts the queue TTL: after a broker restart, frames published
    # once it is back would expire while the worker still waits to reconnect.
    reconnect_interval_s: Annotated[float, Field(gt=0)] = 1.0
    queue: str = "memelearning.frames"
    dead_letter_exchange: str = "memelearning.frames.dlx"
    # Receives everything the frames queue dead-letters; see worker/topology.py.
    triage_queue: str = "memelearning.frames.triage"
    # Frames an operator should look at, each with an x-reject-reason header.
    dead_letter_queue: str = "memelearning.frames.dead"
    # Only fresh frames matter: older ones expire in the queue.
    queue_ttl_ms: Annotated[int, Field(gt=0)] = 2000
    # Bounds memory on the broker during a backlog; the oldest frames go first.
    queue_max_length: Annotated[int, Field(gt=0)] = 10_000
    # Deliveries (across the whole fleet) before a frame that keeps crashing workers
    # is dead-lettered by the broker.
    delivery_limit: Annotated[int, Field(gt=0)] = 3
    # Frames are biometric data: even poison frames must not stay on the broker forever.
    dead_letter_ttl_ms: Annotated[int, Field(gt=0)] = 3_600_000
    dead_letter_max_length: Annotated[int, Field(gt=0)] = 10_000
    # Unacked frames this worker may hold; 0 = 2 x max_batch (one batch in the model,
    # one filling up behind it).
    prefetch: Annotated[int, Field(ge=0)] = 0

    # -- batching
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 16
    max_wait_ms: Annotated[float, Field(ge=0)] = 10.0
    # Frames older than this (capture → start of processing) are acked as stale
    # and never run through the model.
    stale_after_ms: Annotated[int, Field(gt=0)] = 1500
    max_frame_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024
    max_frame_pixels: Annotated[int, Field(gt=0)] = 4096 * 4096
    decode_threads: Annotated[int, Field(ge=1)] = 2

    # -- model
    model_dir: Path = DEFAULT_MODEL_DIR
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    # Per-label thresholds, e.g. MEMELEARNING_WORKER_THRESHOLDS='{"like": 0.7}'.
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    # Labels the model has but that never become events (must exist in the label map).
    ignore_labels: list[str] = []
    input_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = (320, 320)
    # Which runtime runs the model: "litert" (model.tflite with LiteRT/XNNPACK, the
    # fastest on CPU), "tensorflow" (the SavedModel; the reference and the GPU path), or
    # "auto": litert when the model has model.tflite and ai-edge-litert is installed.
    runtime: Literal["auto", "tensorflow", "litert"] = "auto"
    # LiteRT threads inside one model call; 0 = one per usable core.
    litert_threads: Annotated[int, Field(ge=0)] = 0
    # TensorFlow threads; 0 lets TensorFlow decide.
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    inter_op_threads: Annotated[int, Field(ge=0)] = 0

    # -- process
    worker_id: str = Field(default_factory=_default_worker_id, min_length=1, max_length=128)
    http_host: str = "0.0.0.0"
    # /metrics, /livez, /readyz; 0 = pick a free port (tests).
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9100
    # Must stay below Kubernetes' terminationGracePeriodSeconds.
    drain_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    confirm_timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.prefetch and self.prefetch < self.max_batch:
            raise ValueError(
                f"prefetch ({self.prefetch}) must be 0 or at least max_batch ({self.max_batch}), "
                "or batches can never fill"
            )
        return self

    def connection_url(self) -> str:
        """``amqp_url`` with aio-pika's ``reconnect_interval`` from these settings (it
        wins over the same parameter in the URL)."""
        parts = urlsplit(str(self.amqp_url))
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query["reconnect_interval"] = f"{self.reconnect_interval_s:g}"
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def effective_prefetch(self) -> int:
        return self.prefetch or 2 * self.max_batch
