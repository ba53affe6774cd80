"""Hot swap: load and warm a new model version beside the serving one, switch between
two batches, unload the old one once no batch needs it.

What to serve comes from the model repository (:mod:`worker.repository`): read at
start, on a control message (:mod:`worker.control`), at each poll
(``MEMELEARNING_WORKER_MODEL_POLL_S``) and after a reconnect to the broker (a control
message may have been sent while the worker was away). Changes are carried out one at
a time, in steps that never hold more than two models:

1. a candidate the new plan does not keep, or one in the way of a load while two are
   loaded, stops serving first (its participants return to the default);
2. a new default is loaded and warmed beside the serving one (or an existing candidate
   takes over), then serves, and the old one is unloaded;
3. a new candidate is loaded and warmed, then serves its share;
4. the share changes.

A version that fails its checks, to load or to warm up, or that lacks labels the
reactions catalog uses and the serving version reports, is refused: a warning says why,
``memelearning_worker_model_refused_total{reason}`` counts it, and what served before
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from memelearning.settings import SettingsError
from worker.control import MAX_CONTROL_BYTES, ServingChanged
from worker.events import ModelRef
from worker.metrics import WorkerMetrics
from worker.repository import (
    LATEST,
    ModelRepository,
    RepositoryError,
    ServingPlan,
    ServingState,
    catalog_labels,
    dropped_labels,
    open_repository,
)
from worker.routing import Routing, ServedModel
from worker.settings import WorkerSettings

if TYPE_CHECKING:
    from worker.service import DetectorLike

log = logging.getLogger(__name__)

T = TypeVar("T")
Loader = Callable[[Path], "DetectorLike"]

# Reasons on memelearning_worker_model_refused_total.
MISSING: Final = "missing"  # no such version, or serving.json names one that is not there
INVALID: Final = "invalid"  # the folder is not a model the worker can read
LABELS: Final = "labels"  # it lacks labels the reactions catalog uses
LOAD: Final = "load"  # the runtime could not load it
WARM_UP: Final = "warm_up"  # it failed on zero frames


class Refused(Exception):
    """A version that will not serve; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Request:
    plan: ServingPlan
    asked: float
    """time.monotonic() when the worker learned of it."""
    why: str
    sent_ms: int | None = None
    """When the control message was sent (the sender's clock)."""


class ModelSwapper:
    """The loaded models of one worker (at most two) and which of them serve."""

    def __init__(
        self, settings: WorkerSettings, metrics: WorkerMetrics, *, loader: Loader | None = None
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._loader: Loader = loader or self._load_with_settings
        self._repository: ModelRepository | None = None
        self._catalog: frozenset[str] = frozenset()
        self._routing: Routing | None = None
        self._loaded: list[ServedModel] = []
        self._pool: ThreadPoolExecutor | None = None
        self._wanted: _Request | None = None
        self._changed = asyncio.Event()
        self._revision = 0
        """The newest serving-state revision seen; older messages are ignored."""
        self._refused: ServingPlan | None = None
        self._unloaded: str | None = None
        """The model _unload just dropped, until it is collected."""
        self._switched = (0.0, 0.0)
        """When routing last changed: time.monotonic() and time.time()."""
        self._poll_problem: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._checks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- what the batch loop reads

    @property
    def routing(self) -> Routing:
        if self._routing is None:
            raise RuntimeError("the worker has not loaded its model yet")
        return self._routing

    @property
    def repository(self) -> ModelRepository | None:
        return self._repository

    @property
    def loaded(self) -> tuple[ServedModel, ...]:
        return tuple(self._loaded)

    # -- lifecycle

    async def start(self, given: DetectorLike | None = None) -> None:
        """Load and warm what to serve (blocking work in a thread of its own); a model
        the worker cannot start with raises :class:`SettingsError` naming the variable."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        s = self._settings
        if given is not None:
            _freeze_imports()
            served = ServedModel(ModelRef(name=given.name, version=given.version), given, "given")
            await self._warm(served)
            self._add(served)
            self._switch(Routing(served), "start")
        else:
            try:
                self._repository = open_repository(s.model_dir)
            except RepositoryError as exc:
                raise SettingsError(f"{s.variable('model_dir')}: {exc}") from None
            if self._repository is None:
                await self._start_plain()
            else:
                await self._start_repository(self._repository)
        self._tasks.append(asyncio.create_task(self._run(), name="model-swapper"))
        if self._repository is not None and s.model_poll_s > 0:
            self._tasks.append(asyncio.create_task(self._poll(), name="model-poll"))

    async def _start_plain(self) -> None:
        from worker.runtime import load_detector

        s = self._settings
        await self._in_pool(_import_runtime, s, s.model_dir)
        _freeze_imports()
        detector = await self._in_pool(load_detector, s, s.model_dir)
        served = ServedModel(
            ModelRef(name=detector.name, version=detector.version),
            detector,
            detector.runtime,
            s.model_dir,
            frozenset(detector.labels.names),
        )
        await self._warm(served)
        self._add(served)
        self._switch(Routing(served), "start")

    async def _start_repository(self, repository: ModelRepository) -> None:
        s = self._settings
        try:
            self._catalog = catalog_labels(s.reactions_catalog)
        except RepositoryError as exc:
            raise SettingsError(f"{s.variable('reactions_catalog')}: {exc}") from None
        try:
            plan = await asyncio.to_thread(repository.plan, s.model_version_policy)
        except RepositoryError as exc:
            setting = "model_dir" if s.model_version_policy == LATEST else "model_version_policy"
            raise SettingsError(f"{s.variable(setting)}: {exc}") from None
        self._revision = plan.revision
        await self._in_pool(_import_runtime, s, repository.version_dir(plan.default))
        _freeze_imports()
        try:
            default = await self._load(plan.default, serving=None, under_load=False)
        except Refused as exc:
            raise SettingsError(f"{s.variable('model_dir')}: {exc}") from None
        self._switch(Routing(default), "start")
        if plan.candidate is not None:
            try:
                candidate = await self._load(plan.candidate, serving=default, under_load=False)
            except Refused as exc:
                self._refuse(plan, exc)
            else:
                self._switch(Routing(default, candidate, plan.canary_percent), "start")
        log.info(
            "model repository %s (policy %s): serving %s",
            repository.path,
            s.model_version_policy,
            self.routing.describe(),
        )

    async def close(self) -> None:
        for task in [*self._tasks, *self._checks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def wait_settled(self) -> None:
        """Return once no change is pending or under way (tests, measurements)."""
        await asyncio.sleep(0)
        while self._changed.is_set() or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- requests

    async def on_control_message(self, message: AbstractIncomingMessage) -> None:
        """A message from the control exchange (consumed without acks: a change is
        idempotent, and a bad message must not come back)."""
        asked = time.monotonic()
        if len(message.body) > MAX_CONTROL_BYTES:
            log.warning("ignoring a control message of %d bytes", len(message.body))
            return
        try:
            change = ServingChanged.model_validate_json(message.body)
        except ValidationError as exc:
            log.warning("ignoring a control message that is not one: %s", _first_error(exc))
            return
        self.apply_state(change.model, change.state, asked=asked, sent_ms=change.sent_ms)

    def apply_state(
        self,
        model: str,
        state: ServingState,
        *,
        asked: float | None = None,
        sent_ms: int | None = None,
    ) -> None:
        """Serve what ``state`` says for ``model``, if that is this worker's model and
        the state is newer than any seen."""
        repository = self._repository
        asked = time.monotonic() if asked is None else asked
        if repository is None:
            log.info("control message for model %s ignored: serving a plain model folder", model)
            return
        if model != repository.name:
            log.debug("control message for model %s ignored: serving %s", model, repository.name)
            return
        if self._settings.model_version_policy != LATEST:
            log.info(
                "control message ignored: pinned to version %s (%s)",
                self._settings.model_version_policy,
                self._settings.variable("model_version_policy"),
            )
            return
        if state.revision <= self._revision:
            log.debug(
                "control message with revision %d ignored: at %d", state.revision, self._revision
            )
            return
        self._revision = state.revision
        plan = ServingPlan(
            default=state.default,
            candidate=state.candidate,
            canary_percent=state.canary_percent,
            revision=state.revision,
        )
        self._want(_Request(plan, asked, "control message", sent_ms))

    def refresh(self, why: str) -> None:
        """Read the repository again soon (after a reconnect, a control message may have
        been missed)."""
        if self._repository is not None and self._tasks:
            task = asyncio.create_task(self._check_repository(why))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.model_poll_s)
            await self._check_repository("poll")

    async def _check_repository(self, why: str) -> None:
        repository = self._repository
        assert repository is not None
        asked = time.monotonic()
        try:
            plan = await asyncio.to_thread(repository.plan, self._settings.model_version_policy)
        except RepositoryError as exc:
            # Logged once per distinct problem: a poll every few seconds must not flood.
            if str(exc) != self._poll_problem:
                self._poll_problem = str(exc)
                log.warning("model repository: %s; serving %s", exc, self.routing.describe())
            return
        self._poll_problem = None
        if plan.revision < self._revision or plan == self._refused:
            return
        target = self._wanted.plan if self._wanted is not None else None
        if plan == target or (target is None and self._serves(plan)):
            return
        self._revision = plan.revision
        self._want(_Request(plan, asked, why))

    def _want(self, request: _Request) -> None:
        self._wanted = request
        self._idle.clear()
        self._changed.set()

    # -- carrying changes out

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            request = self._wanted
            if request is None:
                continue
            try:
                await self._apply(request)
            except Refused as exc:
                self._refuse(request.plan, exc)
            except Exception:
                log.exception("changing models to %s failed", request.plan.describe())
            finally:
                if not self._changed.is_set():
                    self._wanted = None
                    self._idle.set()

    async def _apply(self, request: _Request) -> None:
        plan = request.plan
        if self._serves(plan):
            log.info("already serving %s (%s)", plan.describe(), request.why)
            return
        log.info("%s: changing to %s", request.why, plan.describe())
        while not self._serves(plan):
            if self._changed.is_set():
                # A newer request replaces this one; carry that one out instead.
                return
            await self._step(plan)
            # (once _step's references to an unloaded model are gone)
            if self._unloaded is not None:
                await self._collect()
                self._unloaded = None
        # Serving starts at the last switch; unloading the old version (once its last
        # batch is through) and freeing its memory come after.
        switched, switched_wall = self._switched
        elapsed = switched - request.asked
        self._metrics.model_swaps.inc()
        self._metrics.model_swap_seconds.observe(elapsed)
        sent = ""
        if request.sent_ms is not None:
            sent = f", {switched_wall - request.sent_ms / 1000:.2f} s after it was sent"
        log.info(
            "serving %s, %.2f s after the %s%s (all unloaded %.2f s later)",
            self.routing.describe(),
            elapsed,
            request.why,
            sent,
            time.monotonic() - switched,
        )

    async def _step(self, plan: ServingPlan) -> None:
        """One step towards ``plan`` (see the module docstring)."""
        current = self.routing
        default, candidate = current.default, current.candidate
        wanted = {plan.default, plan.candidate}
        loads = plan.default not in self._versions() or (
            plan.candidate is not None and plan.candidate not in self._versions()
        )
        if candidate is not None and (
            candidate.version not in wanted or (loads and len(self._loaded) >= 2)
        ):
            self._switch(Routing(default), "the candidate steps aside")
            await self._unload(candidate)
        elif default.version != plan.default:
            if candidate is not None and candidate.version == plan.default:
                new = candidate
            else:
                new = await self._load(plan.default, serving=default, under_load=True)
            self._switch(Routing(new), "new default")
            await self._unload(default)
        elif plan.candidate is not None and (
            candidate is None or candidate.version != plan.candidate
        ):
            new = await self._load(plan.candidate, serving=default, under_load=True)
            self._switch(Routing(default, new, plan.canary_percent), "new candidate")
        else:
            self._switch(Routing(default, candidate, plan.canary_percent), "new share")

    def _serves(self, plan: ServingPlan) -> bool:
        r = self._routing
        if r is None:
            return False
        candidate = r.candidate.version if r.candidate is not None else None
        return (r.default.version, candidate, r.canary_percent) == (
            plan.default,
            plan.candidate,
            plan.canary_percent if plan.candidate is not None else 0.0,
        )

    def _versions(self) -> set[str]:
        return {m.version for m in self._loaded}

    async def _load(
        self, version: str, *, serving: ServedModel | None, under_load: bool
    ) -> ServedModel:
        """Check, load and warm ``version`` beside what serves (``under_load``: while it
        serves frames); raises :class:`Refused`."""
        repository = self._repository
        assert repository is not None
        if len(self._loaded) >= 2:  # pragma: no cover - _step never gets here
            raise RuntimeError("two models are loaded already")
        try:
            info = await self._in_pool(repository.check, version)
        except RepositoryError as exc:
            missing = not repository.version_dir(version).is_dir()
            raise Refused(MISSING if missing else INVALID, str(exc)) from None
        if serving is not None and serving.labels is not None:
            lost = dropped_labels(serving.labels, info.labels, self._catalog)
            if lost:
                raise Refused(
                    LABELS,
                    f"version {version} lacks labels the reactions catalog uses and version "
                    f"{serving.version} reports: {', '.join(lost)}",
                )
        path = repository.version_dir(version)
        started = time.perf_counter()
        try:
            detector = await self._in_pool(self._loader, path)
        except Exception as exc:
            raise Refused(LOAD, f"{path}: cannot load: {_one_line(exc)}") from None
        loaded = time.perf_counter()
        try:
            # Beside a model serving frames, one frame: the first call's graph
            # optimisation is the cost that matters (0.8-1 s for the gesture model on
            # TensorFlow), and a first call at batch 16 costs only ~30 ms more than later
            # ones. Warming batch 16 too made the two models share the cores and
            # TensorFlow's thread pools for a whole batch's compute, which held frames
            # up by 0.3 s under load (tests/test_model_swap.py).
            sizes = [1] if under_load else self._warm_sizes(detector)
            await self._in_pool(detector.warm_up, sizes)
        except Exception as exc:
            raise Refused(WARM_UP, f"{path}: failed to warm up: {_one_line(exc)}") from None
        runtime = str(getattr(detector, "runtime", "given"))
        served = ServedModel(
            ModelRef(name=repository.name, version=version), detector, runtime, path, info.labels
        )
        self._add(served)
        log.info(
            "loaded %s version %s on %s in %.2f s, warm in %.2f s more",
            served.ref.name,
            version,
            runtime,
            loaded - started,
            time.perf_counter() - loaded,
        )
        return served

    def _add(self, served: ServedModel) -> None:
        self._loaded.append(served)
        self._metrics.models_loaded.set(len(self._loaded))

    async def _unload(self, served: ServedModel) -> None:
        # A batch routed to it before the switch may still be decoding or in the model.
        await served.wait_idle()
        self._loaded.remove(served)
        self._metrics.models_loaded.set(len(self._loaded))
        with contextlib.suppress(KeyError):
            self._metrics.model_share.remove(served.ref.name, served.version)
        self._unloaded = f"{served.ref.name} version {served.version}"

    async def _collect(self) -> None:
        """Free the model just unloaded. A TensorFlow model is reference cycles that
        only a full collection frees, and a collection holds the GIL throughout (the
        event loop waits): better now, measured, than at a random moment later."""
        started = time.perf_counter()
        await self._in_pool(gc.collect)
        log.info(
            "unloaded %s (memory freed in %.2f s)", self._unloaded, time.perf_counter() - started
        )

    def _switch(self, routing: Routing, why: str) -> None:
        """Serve ``routing`` from the next batch on."""
        self._routing = routing
        self._switched = (time.monotonic(), time.time())
        for model in self._loaded:
            self._metrics.model_share.labels(model.ref.name, model.version).set(
                routing.share(model)
            )
        default = routing.default
        detector = default.detector
        self._metrics.model.info(
            {
                "name": default.ref.name,
                "version": default.version,
                "runtime": default.runtime,
                "input_size": "x".join(map(str, detector.input_size)),
                "max_batch": str(detector.max_batch or "dynamic"),
            }
        )
        log.debug("routing: %s (%s)", routing.describe(), why)

    def _refuse(self, plan: ServingPlan, exc: Refused) -> None:
        self._refused = plan
        self._metrics.model_refused.labels(exc.reason).inc()
        log.warning(
            "refused %s: %s; still serving %s",
            plan.describe(),
            exc,
            self.routing.describe(),
        )

    # -- helpers

    async def _warm(self, served: ServedModel) -> None:
        """Warm a model the worker cannot start without (its errors stop the worker)."""
        sizes = self._warm_sizes(served.detector)
        started = time.perf_counter()
        await self._in_pool(served.detector.warm_up, sizes)
        log.info(
            "model %s version %s warm on runtime %s (batch sizes %s, %.1f s), input %dx%d",
            served.ref.name,
            served.version,
            served.runtime,
            sizes,
            time.perf_counter() - started,
            *served.detector.input_size,
        )

    def _warm_sizes(self, detector: DetectorLike) -> list[int]:
        limit = detector.max_batch
        top = self._settings.max_batch if limit is None else min(self._settings.max_batch, limit)
        return sorted({1, top})

    def _load_with_settings(self, path: Path) -> DetectorLike:
        from worker.runtime import load_model

        return load_model(self._settings, path)

    async def _in_pool(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, function, *args)


def _import_runtime(settings: WorkerSettings, model_dir: Path) -> None:
    """Import what will run the model in ``model_dir`` before it is loaded, so that
    `_freeze_imports` freezes the import-time objects and not a model's. (A missing
    runtime is the loader's to report.)"""
    from worker.runtime import choose_runtime

    with contextlib.suppress(ImportError):
        if choose_runtime(settings, model_dir) == "tensorflow":
            import tensorflow  # noqa: F401
        else:
            import ai_edge_litert.interpreter  # noqa: F401


_frozen = False


def _freeze_imports() -> None:
    """Keep the import-time objects out of every later full collection, once a process.

    TensorFlow's import leaves some 340,000 objects that each full collection walks:
    about 0.25 s with the GIL held on a 2-core machine, during which the event loop
    stands still. Loading a model allocates enough to trigger one, so without this a
    swap under load held frames up by a quarter of a second (tests/test_model_swap.py).
    Objects alive now are never collected afterwards, hence the collection first."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(map(str, error["loc"])) or "body"
    return f"{where}: {error['msg']}"
