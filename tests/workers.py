"""Running Worker instances in the test process."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import aio_pika
import numpy as np
import numpy.typing as npt

from worker.decode import FrameFit
from worker.detector import Detection
from worker.service import DetectorLike, Worker
from worker.settings import WorkerSettings

FRAMES_QUEUE = WorkerSettings.model_fields["queue"].default


class ThumbsUpDetector:
    """Sees a thumbs-up in every frame: the model is not what these tests are about."""

    name = "thumbs-up"
    version = "1"
    input_size = (32, 32)
    max_batch: int | None = None
    frame_fit: FrameFit = "stretch"

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        pass

    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]:
        return [[Detection("like", 1, 0.9, (0.1, 0.1, 0.5, 0.5))] for _ in images]


def worker_settings(amqp_url: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "worker_id": f"test-{uuid.uuid4().hex[:8]}",
        "drain_timeout_s": 10.0,
        "score_threshold": 0.5,
        # The shipped budgets (2 s in the queue, 1.5 s from capture) are shorter than a
        # loaded test machine may take between making a frame and the worker taking
        # it: a frame dropped as stale would leave a test waiting for its event. Tests
        # of the budgets themselves set them.
        "queue_ttl_ms": 120_000,
        "stale_after_ms": 120_000,
    }
    values.update(overrides)
    return WorkerSettings(**values)


class SpyDetector:
    """Wraps a real detector: records every call, and can block or fail on demand."""

    def __init__(
        self,
        inner: DetectorLike,
        *,
        fail_if: Callable[[npt.NDArray[np.uint8]], bool] | None = None,
    ) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.fail_if = fail_if
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inner.input_size

    @property
    def max_batch(self) -> int | None:
        return self.inner.max_batch

    @property
    def frame_fit(self) -> FrameFit:
        return self.inner.frame_fit

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        self.inner.warm_up(batch_sizes)

    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]:
        self.entered.set()
        # Bounded so a failing test cannot hang the model thread forever.
        self.gate.wait(timeout=30)
        if self.fail_if is not None and self.fail_if(images):
            raise RuntimeError("simulated model crash")
        self.calls.append(len(images))
        return self.inner.detect(images)


async def messages_ready(url: str, name: str = FRAMES_QUEUE) -> int:
    """Messages waiting in a queue (a passive declare: exact, unlike the management
    API's statistics, which lag by seconds)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        assert queue.declaration_result.message_count is not None
        return queue.declaration_result.message_count


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Return once ``predicate()`` holds; the deadline is generous because it is only
    reached when the test fails, and a loaded machine may be slow to get there."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


__all__ = ["SpyDetector", "Worker", "messages_ready", "wait_until", "worker_settings"]
