"""The worker process: consume frames, batch them, detect, publish reaction events.

Lifecycle (see docs/architecture.md):
  start()  load and warm up the model, serve /metrics /livez /readyz, connect,
           declare the topology, start consuming; ready only after all of that.
  run()    start(), then serve until stop is requested (SIGTERM/SIGINT), then drain.
  stop()   stop consuming, finish what is in flight within drain_timeout_s,
           close; frames not settled by then are requeued by the broker when the
           connection closes, so nothing is lost, only redelivered.

Each frame is settled (acked, dead-lettered or requeued) in exactly one place,
``_settle``, and acked only after its events are confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import aio_pika
import aiormq.exceptions
import numpy as np
import numpy.typing as npt
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from memelearning.logs import redact_url
from memelearning.settings import SettingsError
from publisher.protocol import FrameError, FrameMeta, parse_frame
from worker import topology
from worker.control import declare_control_queue
from worker.decode import WHOLE, FrameFit, Placement, decode_fitted
from worker.events import (
    CONTENT_TYPE,
    FACE_LABELS,
    MAX_HANDS,
    NOT_REACTIONS,
    FrameDetections,
    Hand,
    ModelRef,
    ReactionEvent,
    event_id,
)
from worker.events import Box as EventBox
from worker.health import HealthServer
from worker.metrics import WorkerMetrics
from worker.outcomes import FrameRejected, FrameStale
from worker.routing import ServedModel
from worker.settings import WorkerSettings
from worker.swapper import Loader, ModelSwapper

if TYPE_CHECKING:
    from worker.detector import Detection

log = logging.getLogger(__name__)

# Dead-lettered frames the triage consumer may hold unacked; triage only counts or
# moves them, so a wide window costs little and keeps it ahead of a backlog.
TRIAGE_PREFETCH = 512
# How long to keep trying to move a frame into quarantine while the broker refuses it
# (a quorum queue electing a leader after losing a node takes seconds).
QUARANTINE_PATIENCE_S = 10.0
# How long a suspect waits for moves to quarantine in progress (see _on_suspect).
MOVES_WAIT_S = 2.0


class DetectorLike(Protocol):
    """What the worker needs from a detector (worker.detector.Detector)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def input_size(self) -> tuple[int, int]: ...
    @property
    def max_batch(self) -> int | None: ...
    @property
    def frame_fit(self) -> FrameFit: ...
    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]: ...
    def warm_up(self, batch_sizes: Iterable[int]) -> None: ...


@dataclass(eq=False)
class _Item:
    """One delivered frame on its way through the worker."""

    message: AbstractIncomingMessage
    received: float = field(default_factory=time.monotonic)
    meta: FrameMeta | None = None
    detections: list[Detection] = field(default_factory=list)
    placement: Placement = WHOLE
    """Where the frame lies in the model's input (letterboxed frames only: the
    model's boxes are mapped back onto the frame before they are published)."""
    settling: bool = False
    model: ModelRef | None = None
    """The model version the frame was routed to (not the loaded model itself: a
    frame waiting for its confirms must not keep an unloaded model in memory)."""


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        detector: DetectorLike | None = None,
        metrics: WorkerMetrics | None = None,
        loader: Loader | None = None,
    ) -> None:
        """``detector``: serve this one instead of loading ``settings.model_dir``;
        ``loader``: how to load a model version folder of a repository (tests)."""
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self._detector = detector
        # The models loaded and which serve; swaps them while running.
        self._swapper = ModelSwapper(settings, self.metrics, loader=loader)
        self._health = HealthServer(
            self.metrics.registry, self.is_ready, settings.http_host, settings.http_port
        )
        self._connection: AbstractRobustConnection | None = None
        self._consume_channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        # Into the quarantine and dead-letter queues (see topology.moves_exchange_name).
        self._moves: AbstractExchange | None = None
        self._frames_queue: AbstractQueue | None = None
        self._quarantine_queue: AbstractQueue | None = None
        # Frames being moved to quarantine; `_no_moves` is set whenever it is zero.
        self._moving = 0
        self._no_moves = asyncio.Event()
        self._no_moves.set()
        self._triage_queue: AbstractQueue | None = None
        self._control_queue: AbstractQueue | None = None
        self._consumer_tags: list[tuple[AbstractQueue, str]] = []
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._batch_task: asyncio.Task[None] | None = None
        # The batch in the model while the batch loop prepares the next one.
        self._inferring: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()
        self._model_pool: ThreadPoolExecutor | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        self._ready = False
        self._stopped = False
        self._stop_requested = asyncio.Event()
        # Frames delivered and not yet settled; `_idle` is set whenever it is zero.
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle --------------------------------------------------------------

    @property
    def detector(self) -> DetectorLike:
        """The default model's detector (the one serving every participant outside a
        canary)."""
        return self._swapper.routing.default.detector

    @property
    def swapper(self) -> ModelSwapper:
        return self._swapper

    @property
    def http_port(self) -> int:
        return self._health.port

    def is_ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        s = self.settings
        # One model thread: TensorFlow parallelises inside a call, and concurrent
        # calls would only fight over the same cores.
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._decode_pool = ThreadPoolExecutor(s.decode_threads, thread_name_prefix="decode")
        await self._health.start()
        # Loads and warms the model (two in a canary) in a thread of its own.
        await self._swapper.start(self._detector)
        await self._connect()
        self._batch_task = asyncio.create_task(self._batch_loop(), name="batcher")
        await self._start_consuming()
        self._ready = True
        self.metrics.ready.set(1)
        log.info(
            "worker %s consuming %s (max_batch %d, max_wait %.1f ms, prefetch %d)",
            s.worker_id,
            s.queue,
            s.max_batch,
            s.max_wait_ms,
            s.effective_prefetch,
        )

    async def _connect(self) -> None:
        s = self.settings
        url = s.connection_url()
        log.info("connecting to %s as %r", redact_url(url), s.connection_name)
        self._connection = await s.connect_robust(
            url, client_properties={"connection_name": f"{s.connection_name} {s.worker_id}"}
        )
        self._consume_channel = await self._connection.channel()
        await self._consume_channel.set_qos(prefetch_count=s.effective_prefetch)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._events = await topology.declare_events_exchange(self._publish_channel)
        self._moves = await topology.declare_moves_exchange(self._publish_channel, s)
        # Triage gets its own channel and a wide window: under a backlog the frames
        # queue dead-letters at the publishers' rate, and a triage consumer held to
        # the frames' prefetch fell behind until the triage queue's length limit
        # dropped frames uncounted (tests/test_faults_backlog.py).
        triage_channel = await self._connection.channel()
        await triage_channel.set_qos(prefetch_count=TRIAGE_PREFETCH)
        try:
            self._triage_queue, _ = await topology.declare_dead_letters(triage_channel, s)
            self._frames_queue = await topology.declare_frames_queue(self._consume_channel, s)
            # Suspects one at a time, on a channel of their own (see
            # topology.declare_quarantine).
            quarantine_channel = await self._connection.channel()
            await quarantine_channel.set_qos(prefetch_count=1)
            self._quarantine_queue = await topology.declare_quarantine(quarantine_channel, s)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            # A queue an older release declared with other arguments (the triage and
            # dead-letter queues were classic queues before 2026-11-29).
            raise SettingsError(
                f"{s.variable('queue')}: a queue of this worker exists on the broker with "
                f"other arguments than this release declares ({exc.args[0] if exc.args else exc}); "
                "move or delete it as docs/operations.md says (a RabbitMQ cluster losing a "
                "node: migration), or use another vhost"
            ) from None
        legacy = await topology.legacy_frames_queue(self._connection, s)
        if legacy is not None:
            log.warning(
                "the frames queue of a release before 2026-11-29, %s, is still on the broker "
                "(%d frames, %d consumers) beside %s: while it is bound, every frame goes to "
                "both; delete it once no worker of that release runs (docs/operations.md, "
                "upgrading a running broker)",
                legacy.name,
                legacy.frames,
                legacy.consumers,
                s.queue,
            )
        if s.control_exchange:
            # A channel of its own: a control problem must not close the frames' channel.
            control_channel = await self._connection.channel()
            self._control_queue = await declare_control_queue(
                control_channel,
                s.control_exchange,
                s.worker_id,
                setting=s.variable("control_exchange"),
            )
        # A control message sent while the connection was down is lost: read the
        # repository again once it is back.
        self._connection.reconnect_callbacks.add(
            lambda *_: self._swapper.refresh("reconnected to the broker")
        )

    async def _start_consuming(self) -> None:
        assert self._frames_queue is not None and self._triage_queue is not None
        tag = await self._frames_queue.consume(self._on_frame)
        self._consumer_tags.append((self._frames_queue, tag))
        tag = await self._triage_queue.consume(self._on_dead_letter)
        self._consumer_tags.append((self._triage_queue, tag))
        assert self._quarantine_queue is not None
        tag = await self._quarantine_queue.consume(self._on_suspect)
        self._consumer_tags.append((self._quarantine_queue, tag))
        if self._control_queue is not None:
            # No acks: a change is idempotent, and a bad message must not come back.
            tag = await self._control_queue.consume(self._swapper.on_control_message, no_ack=True)
            self._consumer_tags.append((self._control_queue, tag))

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or request_stop), then drain. A second signal
        exits at once."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop_requested.is_set():
            log.warning("second %s: exiting now without draining", sig.name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            # At once means at once: not even waiting for a model call in a thread.
            # Unsettled frames are requeued by the broker when the socket closes.
            os._exit(128 + sig.value)
        log.info("%s: draining (up to %.0f s)", sig.name, self.settings.drain_timeout_s)
        self.request_stop()

    async def stop(self) -> None:
        """Stop consuming, settle what is in flight (bounded), close everything.
        Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._ready = False
        self.metrics.ready.set(0)
        await self._stop_consuming()
        try:
            async with asyncio.timeout(self.settings.drain_timeout_s):
                # The batch loop keeps going while frames remain in the inbox.
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "drain timed out after %.0f s with %d frames unsettled; "
                "the broker will redeliver them",
                self.settings.drain_timeout_s,
                self._in_flight,
            )
        for running in (self._batch_task, self._inferring):
            if running is not None:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        for task in list(self._settling):
            task.cancel()
        await self._swapper.close()
        if self._connection is not None:
            await self._connection.close()
        await self._health.close()
        for pool in (self._model_pool, self._decode_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker %s stopped", self.settings.worker_id)

    async def _stop_consuming(self) -> None:
        channel = self._consume_channel
        if channel is not None and not channel.is_closed:
            for queue, tag in self._consumer_tags:
                # A robust channel waits for the broker to come back before it
                # cancels; a broker that is down must not hold up the shutdown (closing
                # the connection ends the consumers anyway).
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await queue.cancel(tag)
        self._consumer_tags.clear()

    # -- consuming --------------------------------------------------------------

    async def _on_frame(self, message: AbstractIncomingMessage) -> None:
        self.metrics.frames_received.inc()
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        self._idle.clear()
        if message.redelivered:
            # It may be what killed the worker that held it: quarantine it rather than
            # batch it again (see topology.declare_quarantine).
            task = asyncio.create_task(self._quarantine(message))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            return
        self._inbox.put_nowait(_Item(message))

    async def _quarantine(self, message: AbstractIncomingMessage) -> None:
        """Move a redelivered frame to the quarantine queue, confirmed, then ack it;
        it is never decoded here."""
        assert self._moves is not None
        self._moving += 1
        self._no_moves.clear()
        moved = aio_pika.Message(
            message.body,
            headers=topology.moved_headers(message.headers or {}),
            content_type=message.content_type,
            message_id=message.message_id,
            timestamp=message.timestamp,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUARANTINE_PATIENCE_S
        try:
            attempt = 0
            while True:
                attempt += 1
                try:
                    await self._moves.publish(
                        moved,
                        routing_key=topology.quarantine_queue_name(self.settings),
                        timeout=self.settings.confirm_timeout_s,
                    )
                    break
                except _BROKER_AWAY as exc:
                    # Refused while the quarantine queue elects a leader, or the
                    # publishing channel not back yet after a lost node: requeueing at
                    # once would come straight back here and count a delivery against
                    # an innocent frame each time, up to the delivery limit
                    # (tests/test_fault_cluster.py). Wait for the broker instead.
                    if loop.time() >= deadline or message.channel.is_closed:
                        raise
                    log.debug("quarantine of %s refused (%r); retrying", message.message_id, exc)
                    await self._publishing_again(deadline - loop.time())
                    await asyncio.sleep(min(0.25 * attempt, 1.0))
            await message.ack()
        except Exception as exc:
            self.metrics.frames_requeued.labels("settle_failed").inc()
            log.log(
                _settle_failure_level(exc),
                "could not quarantine frame %s (%s: %s); it will be redelivered",
                message.message_id,
                type(exc).__name__,
                exc,
            )
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            self._moving -= 1
            if self._moving == 0:
                self._no_moves.set()
            self._done_with_one()

    async def _publishing_again(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the publishing channel is open again after
        a lost connection; at once when it is."""
        channel = self._publish_channel
        if not isinstance(channel, AbstractRobustChannel):
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                # Set once the connection is back and this channel reopened.
                await channel.ready()

    async def _on_suspect(self, message: AbstractIncomingMessage) -> None:
        """A frame from the quarantine queue: checked, decoded and detected alone."""
        self.metrics.frames_received.inc()
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        self._idle.clear()
        item = _Item(message)
        # Frames on their way to quarantine were already redelivered once; if this
        # suspect kills the process while they are held, they come back again and near
        # the delivery limit without any fault of theirs. Moves take milliseconds.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MOVES_WAIT_S):
                await self._no_moves.wait()
        try:
            groups = await self._prepare([item])
            if groups:
                # The model thread still takes one call at a time, batches and suspects.
                await self._infer(groups)
        except Exception:
            self._requeue_unsettled([item])

    async def _batch_loop(self) -> None:
        """Form batches: a batch closes at max_batch frames or max_wait_ms after its
        first frame arrived, whichever comes first.

        Two batches are in the works at once: while one is in the model, the next is
        formed and decoded, so the model waits neither for the decoding nor for the
        event loop between two calls (prefetch 2 x max_batch holds both)."""
        s = self.settings
        max_wait = s.max_wait_ms / 1000
        inferring: asyncio.Task[None] | None = None
        while True:
            first = await self._inbox.get()
            batch = [first]
            try:
                deadline = first.received + max_wait
                while len(batch) < s.max_batch:
                    if not self._inbox.empty():
                        batch.append(self._inbox.get_nowait())
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # Past the deadline, a batch still fills while the model is
                        # busy with the previous one: it could not start sooner anyway.
                        if inferring is None or inferring.done():
                            break
                        if not await self._next_frame_or(inferring, batch):
                            break
                        continue
                    try:
                        async with asyncio.timeout(remaining):
                            batch.append(await self._inbox.get())
                    except TimeoutError:
                        continue
                prepared = await self._prepare(batch)
                if inferring is not None:
                    # One batch in the model at a time: the model thread is one thread.
                    await inferring
                    inferring = None
                if prepared:
                    inferring = asyncio.create_task(self._infer(prepared), name="infer")
                    self._inferring = inferring
                # Holds the batch's models: one swapped out must not wait for the next
                # batch to be freed.
                del prepared
            except Exception:
                self._requeue_unsettled(batch)

    async def _next_frame_or(self, busy: asyncio.Task[None], batch: list[_Item]) -> bool:
        """Wait for the next frame or for ``busy`` to end, whichever comes first;
        True when a frame was added to ``batch``."""
        getting = asyncio.ensure_future(self._inbox.get())
        try:
            await asyncio.wait({getting, busy}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                # A cancelled get leaves the frame in the inbox.
                getting.cancel()
        if getting.done() and not getting.cancelled():
            batch.append(getting.result())
            return True
        return False

    def _requeue_unsettled(self, batch: Sequence[_Item]) -> None:
        # A bug in the worker must not kill the batch loop, nor leave frames
        # unsettled until the connection closes.
        log.exception("batch of %d failed; requeueing what is unsettled", len(batch))
        for item in batch:
            if not item.settling:
                self._spawn_settle(item, _Requeue("worker_error"))

    async def _prepare(self, batch: list[_Item]) -> list[_Group]:
        """Check, route and decode a batch; settles the frames that fail. Returns the
        frames of each model version with their images (none when nothing is left).
        Each version returned is held (``ServedModel.acquire``) until ``_infer`` is
        done with it, so a swap never unloads a model a batch still needs."""
        now_ms = time.time() * 1000
        fresh: list[_Item] = []
        for item in batch:
            try:
                item.meta = self._check(item.message, now_ms)
            except (FrameRejected, FrameStale) as outcome:
                self._spawn_settle(item, outcome)
                continue
            fresh.append(item)
        if not fresh:
            return []
        # One routing for the whole batch: a swap takes effect between two batches.
        routing = self._swapper.routing
        routed: dict[ServedModel, list[_Item]] = {}
        for item in fresh:
            assert item.meta is not None
            served = routing.pick(item.meta.meeting_id, item.meta.participant_id)
            item.model = served.ref
            routed.setdefault(served, []).append(item)
        for served in routed:
            served.acquire()
        return await self._decode_routed(routed)

    async def _decode_routed(self, routed: dict[ServedModel, list[_Item]]) -> list[_Group]:
        loop = asyncio.get_running_loop()
        # Each version gets frames at its own input size.
        arrays = {
            served: np.empty((len(items), *served.detector.input_size, 3), dtype=np.uint8)
            for served, items in routed.items()
        }
        jobs = [(s, i, item) for s, items in routed.items() for i, item in enumerate(items)]
        started = time.perf_counter()
        try:
            decoded = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        self._decode_pool,
                        self._decode,
                        item,
                        arrays[served][i],
                        served.detector.frame_fit,
                    )
                    for served, i, item in jobs
                )
            )
        except BaseException:
            for served in routed:
                served.release()
            raise
        self.metrics.decode_seconds.observe(time.perf_counter() - started)
        ok: dict[ServedModel, list[int]] = {served: [] for served in routed}
        for (served, i, item), error in zip(jobs, decoded, strict=True):
            if error is None:
                ok[served].append(i)
            else:
                self._spawn_settle(item, error)
        groups: list[_Group] = []
        for served, items in routed.items():
            keep = ok[served]
            if not keep:
                served.release()
                continue
            images = arrays[served] if len(keep) == len(items) else arrays[served][keep]
            groups.append((served, images, [items[i] for i in keep]))
        return groups

    async def _infer(self, groups: list[_Group]) -> None:
        """Detect, then settle every frame of the batch (never raises); one model call
        per version (two during a canary)."""
        for served, images, items in groups:
            try:
                results = await self._detect(served, images, items)
                detected_ms = int(time.time() * 1000)
                for item, detections in zip(items, results, strict=True):
                    if detections is None:
                        self._spawn_settle(item, _Requeue("inference_failed"))
                    else:
                        item.detections = on_frame(detections, item.placement)
                        self._spawn_settle(item, None, detected_ms)
            except Exception:
                self._requeue_unsettled(items)
            finally:
                served.release()

    def _check(self, message: AbstractIncomingMessage, now_ms: float) -> FrameMeta:
        try:
            meta = parse_frame(
                body=message.body,
                content_type=message.content_type,
                message_id=message.message_id,
                headers=message.headers,
                max_bytes=self.settings.max_frame_bytes,
            )
        except FrameError as exc:
            raise FrameRejected(exc.reason, exc.detail) from None
        age_s = max(0.0, now_ms - meta.capture_ms) / 1000
        self.metrics.frame_age_at_pickup.observe(age_s)
        if age_s * 1000 > self.settings.stale_after_ms:
            raise FrameStale()
        return meta

    def _decode(
        self, item: _Item, out: npt.NDArray[np.uint8], fit: FrameFit
    ) -> FrameRejected | _Requeue | None:
        try:
            _, item.placement = decode_fitted(
                item.message.body, out, max_pixels=self.settings.max_frame_pixels, fit=fit
            )
        except FrameRejected as exc:
            return exc
        except Exception:
            # A crash inside the JPEG library, not input we know to be bad: requeue this
            # frame alone (an exception here would requeue its whole batch, and
            # batch-mates redelivered with it again and again would reach the delivery
            # limit too). If it keeps crashing, the broker dead-letters it.
            log.exception("decoding crashed on a frame; requeueing it")
            return _Requeue("decode_failed")
        return None

    async def _detect(
        self, served: ServedModel, images: npt.NDArray[np.uint8], items: Sequence[_Item]
    ) -> list[list[Detection] | None]:
        loop = asyncio.get_running_loop()
        detector = served.detector
        model = (served.ref.name, served.version)
        started = time.perf_counter()
        try:
            results: list[list[Detection] | None] = list(
                await loop.run_in_executor(self._model_pool, detector.detect, images)
            )
        except Exception:
            log.exception("inference failed on a batch of %d; retrying frame by frame", len(items))
        else:
            self.metrics.inference_seconds.labels(*model).observe(time.perf_counter() - started)
            self.metrics.batch_size.labels(*model).observe(len(items))
            self.metrics.frames_detected.labels(*model).inc(len(items))
            return results
        # One bad frame must not sink its batch-mates: isolate it. The frames that
        # still fail are requeued and the broker's delivery limit decides their fate.
        results = []
        for i in range(len(items)):
            try:
                single = await loop.run_in_executor(
                    self._model_pool, detector.detect, images[i : i + 1]
                )
                results.append(single[0])
                self.metrics.frames_detected.labels(*model).inc()
            except Exception:
                log.exception("inference failed on frame %s", items[i].message.message_id)
                results.append(None)
        return results

    # -- settling ---------------------------------------------------------------

    def _spawn_settle(self, item: _Item, outcome: Exception | None, detected_ms: int = 0) -> None:
        # Settling waits for broker confirms; it runs beside the next batch so the
        # model never waits for the network.
        item.settling = True
        task = asyncio.create_task(self._settle(item, outcome, detected_ms))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, item: _Item, outcome: Exception | None, detected_ms: int) -> None:
        """The one place where a frame is acked, dead-lettered or requeued."""
        message = item.message
        try:
            if outcome is None:
                await self._publish_events(item, detected_ms)
                await message.ack()
                self.metrics.frames_processed.inc()
            elif isinstance(outcome, FrameStale):
                await message.ack()
                self.metrics.frames_stale.inc()
            elif isinstance(outcome, FrameRejected):
                log.warning(
                    "dead-lettering frame %r: %s: %s",
                    message.message_id,
                    outcome.reason,
                    outcome.detail,
                )
                try:
                    await self._dead_letter(message, outcome.reason, outcome.detail)
                except Exception:
                    log.exception("could not publish to the dead-letter queue; rejecting")
                    # The broker dead-letters it (through triage), without our reason.
                    await message.reject(requeue=False)
                self.metrics.frames_rejected.labels(outcome.reason).inc()
            elif isinstance(outcome, _Requeue):
                await message.nack(requeue=True)
                self.metrics.frames_requeued.labels(outcome.reason).inc()
            else:  # pragma: no cover - every outcome is handled above
                raise TypeError(f"unknown outcome {outcome!r}")
        except Exception as exc:
            # Typically the channel closed (broker restart) or a confirm timed out.
            # Requeue when we still can; if the channel is gone the broker has
            # already requeued the frame, and its events (same ids) may be repeated.
            self.metrics.frames_requeued.labels("settle_failed").inc()
            log.log(
                _settle_failure_level(exc),
                "could not settle frame %s (%s: %s); it will be redelivered",
                message.message_id,
                type(exc).__name__,
                exc,
            )
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            self._done_with_one()

    def _done_with_one(self) -> None:
        self._in_flight -= 1
        self.metrics.in_flight.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()

    async def _publish_events(self, item: _Item, detected_ms: int) -> None:
        """Publish the frame's reaction events and its detections, confirmed."""
        assert item.meta is not None and self._events is not None and item.model is not None
        # The version the frame was routed to: during a canary, not every frame's.
        model = item.model
        worker_id = self.settings.worker_id
        events = build_events(
            item.meta, item.detections, detected_ms=detected_ms, model=model, worker_id=worker_id
        )
        found = build_frame_detections(
            item.meta, item.detections, detected_ms=detected_ms, model=model, worker_id=worker_id
        )
        messages = [
            (
                aio_pika.Message(
                    event.to_json(),
                    content_type=CONTENT_TYPE,
                    message_id=str(event.event_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                event.routing_key,
            )
            for event in events
        ]
        # Not persistent: boxes of a frame are for showing it live, worthless after a
        # broker restart.
        messages.append(
            (
                aio_pika.Message(
                    found.to_json(),
                    content_type=CONTENT_TYPE,
                    message_id=str(found.message_id),
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                ),
                found.routing_key,
            )
        )
        exchange = self._events
        timeout = self.settings.confirm_timeout_s
        await asyncio.gather(
            *(
                # Nobody listening to a meeting is normal for a topic exchange.
                exchange.publish(message, routing_key=key, mandatory=False, timeout=timeout)
                for message, key in messages
            )
        )
        if not events:
            return
        age_s = max(0.0, time.time() * 1000 - item.meta.capture_ms) / 1000
        self.metrics.frame_age_at_event.labels(model.name, model.version).observe(age_s)
        for event in events:
            self.metrics.events_published.labels(event.label, model.name, model.version).inc()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, detail: str
    ) -> None:
        """Move a frame to the dead-letter queue with a reason header, then ack it.
        Raises if the dead-letter publish is not confirmed; the caller decides."""
        assert self._moves is not None
        headers = topology.republishable(message.headers or {})
        headers.update(
            {
                topology.HEADER_REJECT_REASON: reason,
                topology.HEADER_REJECT_DETAIL: detail[:512],
                topology.HEADER_REJECTED_BY: self.settings.worker_id,
            }
        )
        # Not persistent, like the frame itself: a poison frame is evidence for an
        # operator, not something to keep (it is biometric data). The dead-letter queue
        # is a quorum queue, which writes it to disk all the same: its TTL bounds that.
        await self._moves.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                message_id=message.message_id,
                timestamp=message.timestamp,
            ),
            routing_key=self.settings.dead_letter_queue,
            timeout=self.settings.confirm_timeout_s,
        )
        await message.ack()

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        """Triage what the frames queue dead-lettered (see worker/topology.py)."""
        headers = message.headers or {}
        reason = headers.get(topology.HEADER_FIRST_DEATH_REASON)
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        try:
            if reason in ("expired", "maxlen"):
                self.metrics.frames_lost_in_queue.labels(reason).inc()
                await message.ack()
                return
            detail = {
                "delivery_limit": f"delivered more than {self.settings.delivery_limit} times "
                "without being settled (it may crash workers)",
                "rejected": "rejected by a worker without a reason",
            }.get(reason, f"dead-lettered by the broker ({reason})")
            log.warning("dead-lettering frame %r: %s: %s", message.message_id, reason, detail)
            await self._dead_letter(message, reason, detail)
            self.metrics.frames_rejected.labels(reason).inc()
        except Exception as exc:
            if _settle_failure_level(exc) == logging.WARNING:
                log.exception("could not triage a dead-lettered frame; it stays queued")
            # Requeued at once, it would come straight back while the broker is away.
            await self._publishing_again(self.settings.confirm_timeout_s)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)


# The frames of one batch routed to one model version, with their decoded images.
_Group = tuple[ServedModel, npt.NDArray[np.uint8], list[_Item]]


# How aiormq reports a broker (node) that went away, or a quorum queue without a leader
# refusing a publish (basic.nack) for the while.
_BROKER_AWAY = (
    aiormq.exceptions.DeliveryError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
)


def _settle_failure_level(exc: BaseException) -> int:
    """A frame that cannot be settled because the connection went away is part of an
    outage, which the broker log line already reports once (memelearning/outages.py):
    one line per frame held would bury it. Anything else is worth a warning."""
    lost = isinstance(exc, _BROKER_AWAY) and not isinstance(exc, aiormq.exceptions.DeliveryError)
    return logging.DEBUG if lost else logging.WARNING


class _Requeue(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build_events(
    meta: FrameMeta,
    detections: Iterable[Detection],
    *,
    detected_ms: int,
    model: ModelRef,
    worker_id: str,
) -> list[ReactionEvent]:
    """One event per label seen in the frame: the best-scoring detection of it.
    (Event ids are per frame and label, so two hands showing the same gesture are
    one reaction.) States that are no reaction (:data:`NOT_REACTIONS`) get none."""
    best: dict[str, Detection] = {}
    for detection in detections:
        if detection.label in NOT_REACTIONS:
            continue
        if detection.label not in best or detection.score > best[detection.label].score:
            best[detection.label] = detection
    return [
        ReactionEvent(
            event_id=event_id(meta.message_id, d.label),
            frame_id=meta.message_id,
            meeting_id=meta.meeting_id,
            participant_id=meta.participant_id,
            sequence=meta.sequence,
            label=d.label,
            score=d.score,
            box=EventBox(ymin=d.box[0], xmin=d.box[1], ymax=d.box[2], xmax=d.box[3]),
            capture_ms=meta.capture_ms,
            detected_ms=detected_ms,
            model=model,
            worker_id=worker_id,
        )
        for d in sorted(best.values(), key=lambda d: -d.score)
    ]


def on_frame(detections: list[Detection], placement: Placement) -> list[Detection]:
    """The model's detections with their boxes on the frame instead of the model's
    input; a detection that lies wholly in a letterbox band is no detection."""
    if placement.whole:
        return detections
    placed = []
    for detection in detections:
        box = placement.to_frame(detection.box)
        if box is not None:
            placed.append(replace(detection, box=box))
    return placed


def build_frame_detections(
    meta: FrameMeta,
    detections: Iterable[Detection],
    *,
    detected_ms: int,
    model: ModelRef,
    worker_id: str,
) -> FrameDetections:
    """Every detection of the frame, best first: hands in ``hands`` and faces in
    ``faces`` (at most ``MAX_HANDS`` of each, the best ones)."""
    ordered = sorted(detections, key=lambda d: -d.score)
    best = [d for d in ordered if d.label not in FACE_LABELS][:MAX_HANDS]
    faces = [d for d in ordered if d.label in FACE_LABELS][:MAX_HANDS]
    return FrameDetections(
        frame_id=meta.message_id,
        meeting_id=meta.meeting_id,
        participant_id=meta.participant_id,
        sequence=meta.sequence,
        capture_ms=meta.capture_ms,
        detected_ms=detected_ms,
        model=model,
        worker_id=worker_id,
        hands=tuple(map(_found, best)),
        faces=tuple(map(_found, faces)),
    )


def _found(d: Detection) -> Hand:
    return Hand(
        label=d.label,
        score=d.score,
        box=EventBox(ymin=d.box[0], xmin=d.box[1], ymax=d.box[2], xmax=d.box[3]),
    )
