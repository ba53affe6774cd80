"""Worker configuration: one pydantic-settings class, ``MEMELEARNING_WORKER_*``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from memelearning.amqp import AmqpSettings
from publisher.protocol import WORKER_MAX_FRAME_BYTES, WORKER_MAX_FRAME_PIXELS
from worker.control import CONTROL_EXCHANGE
from worker.repository import LATEST, check_policy

# The shipped model; until the trained one lands this directory may not exist and
# the operator must point MEMELEARNING_WORKER_MODEL_DIR at an exported model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(AmqpSettings):
    model_config = SettingsConfigDict(env_prefix="MEMELEARNING_WORKER_", extra="forbid")

    # -- broker (amqp_url and tls_*: memelearning.amqp.AmqpSettings)
    connection_name: str = "memelearning-worker"
    """Names the connection in the RabbitMQ management UI (followed by `WORKER_ID`)."""
    reconnect_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """Seconds before each reconnect attempt after the broker went away. aio-pika's
    default (5 s) outlasts `QUEUE_TTL_MS`: frames published once the broker is back
    would expire while the worker still waited to reconnect."""
    queue: str = "memelearning.frames.queue"
    """The frames queue every worker of the fleet consumes (a quorum queue), bound to
    the frames exchange. Its own name since 2026-11-29: it shared the exchange's,
    `memelearning.frames`, so a grant on one was a grant on the other (the upgrade:
    docs/operations.md, "Upgrading a running broker")."""
    quarantine_queue: str = "memelearning.frames.quarantine"
    """Frames the frames queue delivered again, taken one at a time (worker/topology.py)."""
    moves_exchange: str = "memelearning.frames.moves"
    """The direct exchange through which workers move frames into the quarantine and
    dead-letter queues."""
    dead_letter_exchange: str = "memelearning.frames.dlx"
    """Where the frames queue dead-letters frames (see worker/topology.py)."""
    triage_queue: str = "memelearning.frames.triage"
    """Receives everything the frames queue dead-letters: workers count the frames that
    expired or overflowed and move the rest to `DEAD_LETTER_QUEUE`, with a reason."""
    dead_letter_queue: str = "memelearning.frames.dead"
    """Frames an operator should look at, each with an `x-reject-reason` header."""
    queue_ttl_ms: Annotated[int, Field(gt=0)] = 2000
    """Frames older than this expire in the queue: only fresh frames matter. A queue
    argument, so every worker must use the same value."""
    queue_max_length: Annotated[int, Field(gt=0)] = 10_000
    """Bounds the broker's memory during a backlog; the oldest frames go first."""
    delivery_limit: Annotated[int, Field(gt=0)] = 3
    """Deliveries (across the whole fleet) before the broker dead-letters a frame that
    keeps crashing workers."""
    dead_letter_ttl_ms: Annotated[int, Field(gt=0)] = 3_600_000
    """How long dead-lettered frames are kept: frames are biometric data, so even
    poison frames must not stay on the broker forever."""
    dead_letter_max_length: Annotated[int, Field(gt=0)] = 10_000
    """At most this many dead-lettered frames are kept; the oldest go first."""
    prefetch: Annotated[int, Field(ge=0)] = 0
    """Unacked frames this worker may hold; 0 = 2 x `MAX_BATCH` (one batch in the
    model, one filling up behind it)."""

    # -- batching
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 16
    """Frames per model call at most."""
    max_wait_ms: Annotated[float, Field(ge=0)] = 10.0
    """How long a partial batch waits for more frames before it goes to the model."""
    stale_after_ms: Annotated[int, Field(gt=0)] = 1500
    """Frames older than this (capture to start of processing) are acked as stale and
    never run through the model."""
    max_frame_bytes: Annotated[int, Field(gt=0)] = WORKER_MAX_FRAME_BYTES
    """Larger frames are dead-lettered as `too_large` (the default is the frame
    contract's, which publishers read to stay within it)."""
    max_frame_pixels: Annotated[int, Field(gt=0)] = WORKER_MAX_FRAME_PIXELS
    """Frames with more pixels are dead-lettered as `decompression_bomb` (the default
    is the frame contract's)."""
    decode_threads: Annotated[int, Field(ge=1)] = 2
    """Threads decoding JPEG frames beside the model."""

    # -- model
    model_dir: Path = DEFAULT_MODEL_DIR
    """The exported model to serve (a SavedModel and/or `model.tflite`, with
    `label_map.pbtxt`); the shipped gesture model by default. Or a model repository:
    `MODELS_DIR/<name>` holding numbered version folders (or `MODELS_DIR` when it holds
    one model), served by `MODEL_VERSION_POLICY` and swapped while running (see
    docs/operations.md, "Rolling out a model")."""
    model_version_policy: str = LATEST
    """Which version of a repository to serve: `latest` (what `memelearning models
    promote` last chose, including its canary; before any promote, the highest version)
    or a version number (pinned: that version only, whatever is promoted)."""
    model_poll_s: Annotated[float, Field(ge=0)] = 0.0
    """Also look at the repository every this many seconds for a new serving state (or,
    under `latest` before any promote, a new highest version); 0 = only on control
    messages and at start."""
    control_exchange: Annotated[str, Field(max_length=200)] = CONTROL_EXCHANGE
    """The fanout exchange `memelearning models promote|rollback` announce changes on;
    each worker binds a queue of its own to it. Empty = no control messages (the broker
    user then needs no grant on it; use `MODEL_POLL_S`)."""
    reactions_catalog: Path | None = None
    """The reactions catalog (what `MEMELEARNING_REACTIONS_CATALOG` points the reactions
    service at); a new model version that lacks a label it maps and the serving version
    reports is refused. Unset = the packaged reactions/catalog.json."""
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Minimum score for a detection to become an event, for labels the model and
    `THRESHOLDS` do not set."""
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    """Per-label minimum scores as JSON, e.g. `{"like": 0.7}`; they override those the
    model ships. Every label must be one the model has."""
    ignore_labels: list[str] = []
    """Labels (a JSON list) the model has but that never become events."""
    input_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = (320, 320)
    """Model input `[height, width]` when neither the model's signature nor its
    `model.json` fixes it."""
    runtime: Literal["auto", "tensorflow", "litert"] = "auto"
    """What runs the model: `litert` (`model.tflite` with LiteRT/XNNPACK, the fastest on
    CPU), `tensorflow` (the SavedModel; the reference and the GPU path), or `auto`:
    litert when the model has `model.tflite` and ai-edge-litert is installed."""
    litert_threads: Annotated[int, Field(ge=0)] = 1
    """LiteRT threads inside one model call; 0 = one per usable core. One, with one
    worker process per core, serves more frames than one process with a thread per core
    (the model's many small ops and conditions leave a second thread waiting:
    docs/benchmarks.md, "Processes and threads")."""
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    """TensorFlow threads inside one operation; 0 lets TensorFlow decide."""
    inter_op_threads: Annotated[int, Field(ge=0)] = 0
    """TensorFlow threads running operations side by side; 0 lets TensorFlow decide."""

    # -- process
    worker_id: str = Field(default_factory=_default_worker_id, min_length=1, max_length=128)
    """This worker in events, logs and the management UI; default `<host name>-<pid>`."""
    http_host: str = "127.0.0.1"
    """Address for `/metrics`, `/livez`, `/readyz`: loopback unless configured (the
    chart and docker-compose set 0.0.0.0 for probes and scrapes from outside the
    container)."""
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9100
    """Port for `/metrics`, `/livez`, `/readyz`; 0 = pick a free port (tests)."""
    drain_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    """On SIGTERM, how long to finish the frames in hand before closing; must stay below
    Kubernetes' terminationGracePeriodSeconds."""
    confirm_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """How long to wait for the broker to confirm an event (or a dead-lettered frame)
    before the frame goes back to the queue for another try."""

    @field_validator("model_version_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_policy(value)

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
