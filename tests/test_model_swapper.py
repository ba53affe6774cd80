"""The swapper's rules without a broker or a real model: every change goes through
steps that never hold more than two models, newer revisions win, and what it must
ignore it ignores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.repositories import make_repository
from worker.control import ServingChanged
from worker.decode import FrameFit
from worker.detector import Detection
from worker.metrics import WorkerMetrics
from worker.repository import ModelRepository, ServingState
from worker.settings import WorkerSettings
from worker.swapper import ModelSwapper


class FakeDetector:
    """Stands in for a loaded version: loading and warming cost nothing here."""

    max_batch: int | None = None
    frame_fit: FrameFit = "stretch"
    input_size = (32, 32)

    def __init__(self, path: Path, fail_warm_up: bool) -> None:
        self.name = path.parent.name
        self.version = path.name
        self._fail = fail_warm_up

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        if self._fail:
            raise RuntimeError("simulated warm-up failure")

    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]:
        return [[] for _ in images]


class Loads:
    """A loader that records how many models were loaded when each load began."""

    def __init__(self) -> None:
        self.swapper: ModelSwapper | None = None
        self.loaded_before: list[int] = []
        self.fail_warm_up: set[str] = set()

    def __call__(self, path: Path) -> FakeDetector:
        assert self.swapper is not None
        self.loaded_before.append(len(self.swapper.loaded))
        return FakeDetector(path, path.name in self.fail_warm_up)


@pytest.fixture
def colour(tmp_path: Path, colour_model_dir: Path) -> ModelRepository:
    versions = ["1", "2", "3", "4"]
    repository = ModelRepository(make_repository(tmp_path / "models", colour_model_dir, versions))
    repository.write_state(ServingState(revision=1, default="1"))
    return repository


@pytest.fixture
async def swapper(colour: ModelRepository) -> AsyncIterator[tuple[ModelSwapper, Loads]]:
    loads = Loads()
    swapper = ModelSwapper(WorkerSettings(model_dir=colour.path), WorkerMetrics(), loader=loads)
    loads.swapper = swapper
    await swapper.start()
    yield swapper, loads
    await swapper.close()


def serving(swapper: ModelSwapper) -> tuple[str, str | None, float]:
    routing = swapper.routing
    candidate = routing.candidate.version if routing.candidate is not None else None
    return routing.default.version, candidate, routing.canary_percent


async def test_changing_default_and_candidate_at_once_never_holds_three_models(
    swapper: tuple[ModelSwapper, Loads],
) -> None:
    worker, loads = swapper
    worker.apply_state(
        "colour", ServingState(revision=2, default="1", candidate="2", canary_percent=10)
    )
    await worker.wait_settled()
    assert serving(worker) == ("1", "2", 10)

    # When both the default and the candidate change
    worker.apply_state(
        "colour", ServingState(revision=3, default="3", candidate="4", canary_percent=20)
    )
    await worker.wait_settled()

    # Then it gets there, with at most one model loaded whenever another one loads
    assert serving(worker) == ("3", "4", 20)
    assert max(loads.loaded_before) <= 1
    assert [m.version for m in worker.loaded] == ["3", "4"]


async def test_promoting_the_candidate_loads_nothing(swapper: tuple[ModelSwapper, Loads]) -> None:
    worker, loads = swapper
    worker.apply_state(
        "colour", ServingState(revision=2, default="1", candidate="2", canary_percent=50)
    )
    await worker.wait_settled()
    count = len(loads.loaded_before)

    worker.apply_state("colour", ServingState(revision=3, default="2", history=("1",)))
    await worker.wait_settled()

    assert serving(worker) == ("2", None, 0)
    assert len(loads.loaded_before) == count
    assert [m.version for m in worker.loaded] == ["2"]


async def test_an_older_revision_or_another_model_is_ignored(
    swapper: tuple[ModelSwapper, Loads],
) -> None:
    worker, _ = swapper
    worker.apply_state("colour", ServingState(revision=5, default="2"))
    await worker.wait_settled()

    worker.apply_state("colour", ServingState(revision=4, default="3"))  # late
    worker.apply_state("signs", ServingState(revision=9, default="3"))  # not ours
    await worker.wait_settled()

    assert serving(worker) == ("2", None, 0)


async def test_a_version_that_fails_to_warm_up_is_refused(colour: ModelRepository) -> None:
    loads, metrics = Loads(), WorkerMetrics()
    loads.fail_warm_up.add("3")
    worker = ModelSwapper(WorkerSettings(model_dir=colour.path), metrics, loader=loads)
    loads.swapper = worker
    await worker.start()
    try:
        worker.apply_state("colour", ServingState(revision=2, default="3"))
        await worker.wait_settled()

        assert serving(worker) == ("1", None, 0)
        assert metrics.model_refused.labels("warm_up")._value.get() == 1
    finally:
        await worker.close()


async def test_a_control_message_that_is_not_one_is_dropped(
    swapper: tuple[ModelSwapper, Loads],
) -> None:
    worker, _ = swapper
    good = ServingChanged(model="colour", state=ServingState(revision=2, default="2"), sent_ms=1)

    for body in (b"{", b'{"kind": "serving"}', b"x" * 20_000):
        await worker.on_control_message(_message(body))
    await worker.on_control_message(_message(good.to_json()))
    await worker.wait_settled()

    assert serving(worker) == ("2", None, 0)


async def test_a_pinned_worker_ignores_what_is_promoted(colour: ModelRepository) -> None:
    loads = Loads()
    settings = WorkerSettings(model_dir=colour.path, model_version_policy="3")
    worker = ModelSwapper(settings, WorkerMetrics(), loader=loads)
    loads.swapper = worker
    await worker.start()
    try:
        worker.apply_state("colour", ServingState(revision=2, default="4"))
        await worker.wait_settled()

        assert serving(worker) == ("3", None, 0)
    finally:
        await worker.close()


def _message(body: bytes) -> Any:
    # All the swapper reads of an incoming message.
    return SimpleNamespace(body=body)
