"""Publishing frames to the broker with publisher confirms, a bounded in-flight window
and re-sends after a lost connection.

Every frame handed to :class:`FramePublisher` ends in exactly one of: confirmed by the
broker, a :class:`~publisher.errors.PublishError` raised to the caller, or a counter in
:class:`PublisherStats` (``dropped_stale``, ``abandoned``) with a warning in the log.
A frame re-sent after a reconnect keeps its ``message_id``; when the first copy reached
the broker but its confirm was lost, the worker sees it twice and can tell by that id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from memelearning.amqp import BrokerConnectError
from memelearning.logs import redact_url
from publisher.errors import (
    MISSING_EXCHANGE_HINT,
    UNROUTABLE_HINT,
    BrokerUnavailableError,
    FrameConfirmTimeoutError,
    FrameExpiredError,
    FrameNackedError,
    FrameRefusedError,
    FrameUnroutableError,
    PublishError,
    describe,
)
from publisher.protocol import (
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    FRAMES_EXCHANGE_DURABLE,
    FRAMES_EXCHANGE_TYPE,
    Frame,
)
from publisher.settings import PublisherSettings

log = logging.getLogger(__name__)

# Pause between a failed attempt and waiting for the channel: right after a connection
# drops, aio-pika may still report the channel ready, and retrying at once would spin.
_BACKOFF_MIN_S: Final = 0.05
_BACKOFF_MAX_S: Final = 1.0
# Repeated warnings (one per frame during an outage) are logged once, then every Nth.
_LOG_EVERY: Final = 100

# How aio-pika 10 / aiormq 7 report a connection or channel that went away under a
# publish: ChannelInvalidStateError when the channel is already known to be closed,
# the connection's close reason (ConnectionClosed & co, all AMQPConnectionError) or a
# bare ChannelClosed for pending confirms, socket errors from the transport. A
# CancelledError of the confirm future is handled separately (see _attempt).
_CONNECTION_LOST: Final = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
)


@dataclass
class PublisherStats:
    """Counters since start. ``published`` = ``confirmed`` + ``failed`` + frames still
    in flight."""

    published: int = 0
    confirmed: int = 0
    nacked: int = 0
    returned: int = 0
    # Refused by the broker for another reason, timed out, or an unexpected error.
    errored: int = 0
    # Re-publish attempts after a lost connection (one frame may count several times).
    retried: int = 0
    dropped_stale: int = 0
    # Still unconfirmed when close() stopped waiting for them.
    abandoned: int = 0

    @property
    def failed(self) -> int:
        return self.nacked + self.returned + self.errored + self.dropped_stale + self.abandoned


@dataclass(eq=False)
class _Pending:
    frame: Frame
    message: aio_pika.Message
    outcome: asyncio.Future[None]
    # True while publish_and_confirm waits for this frame: its failure goes to that
    # caller instead of the queue of failures that publish()/flush() raise.
    awaited: bool = False


class FramePublisher:
    """Publishes :class:`~publisher.protocol.Frame` objects to the frames exchange.

    Use as ``async with FramePublisher(settings) as pub:`` or call :meth:`start` and
    :meth:`close`. :meth:`publish` returns as soon as the frame is in the in-flight
    window (at most ``settings.max_in_flight`` unconfirmed frames; it waits while the
    window is full). A frame that fails after :meth:`publish` returned is raised by the
    next :meth:`publish` or :meth:`flush` call (the frame passed to that ``publish``
    is then *not* published). :meth:`publish_and_confirm` waits for one frame's confirm.
    Leaving the ``async with`` block normally flushes, so failures are raised there.
    """

    def __init__(self, settings: PublisherSettings) -> None:
        self._settings = settings
        self._window = asyncio.Semaphore(settings.max_in_flight)
        self._tasks: dict[asyncio.Task[None], _Pending] = {}
        self._failures: list[PublishError] = []
        self._warned: dict[str, int] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._closing = False
        self.stats = PublisherStats()

    @property
    def in_flight(self) -> int:
        """Frames published and not yet confirmed (or failed)."""
        return len(self._tasks)

    @property
    def max_in_flight(self) -> int:
        return self._settings.max_in_flight

    async def start(self) -> None:
        """Connect, open a channel with publisher confirms and (unless told not to)
        declare the frames exchange. Raises :class:`BrokerUnavailableError`."""
        if self._connection is not None:
            raise RuntimeError("FramePublisher.start() called twice")
        url = self._settings.connection_url()
        try:
            self._connection = await self._settings.connect_robust(url)
        except BrokerConnectError as exc:
            # One line naming the URL (password hidden) and what to check.
            raise BrokerUnavailableError(str(exc)) from None
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            assert isinstance(channel, AbstractRobustChannel)  # connect_robust gives robust ones
            self._channel = channel
            if self._settings.declare_exchange:
                # Registered with the robust channel, so it is declared again after a
                # reconnect (the broker may have lost it if it was restarted empty).
                self._exchange = await channel.declare_exchange(
                    FRAMES_EXCHANGE,
                    aio_pika.ExchangeType(FRAMES_EXCHANGE_TYPE),
                    durable=FRAMES_EXCHANGE_DURABLE,
                )
            else:
                # No passive declare either: with write permission only, publishing is
                # the one thing we may do; a missing exchange is reported per frame.
                self._exchange = await channel.get_exchange(FRAMES_EXCHANGE, ensure=False)
        except (
            aiormq.exceptions.ChannelAccessRefused,
            aiormq.exceptions.ChannelPreconditionFailed,
        ) as exc:
            await self._connection.close()
            self._connection = None
            raise PublishError(
                f"cannot declare the exchange {FRAMES_EXCHANGE!r} ({exc}); if this user may "
                "only write to it, set MEMELEARNING_PUBLISHER_DECLARE_EXCHANGE=false"
            ) from None
        except BaseException:
            await self._connection.close()
            self._connection = None
            raise
        log.info(
            "publishing frames to %s (exchange %s, window %d)",
            redact_url(url),
            FRAMES_EXCHANGE,
            self._settings.max_in_flight,
        )

    @property
    def connected(self) -> bool:
        """Whether the channel is open now (False while reconnecting)."""
        return self._channel is not None and not self._channel.is_closed

    async def ready(self) -> None:
        """Wait until the connection and channel are up (again, after a reconnect)."""
        if self._channel is None:
            raise RuntimeError("FramePublisher is not started; use start() or `async with`")
        await self._channel.ready()

    async def publish(self, frame: Frame) -> None:
        """Put ``frame`` in the in-flight window, waiting while the window is full.
        Raises the failure of an earlier frame, if one failed since the last call."""
        self._check_open()
        self._raise_failures()
        await self._admit(frame)

    async def publish_and_confirm(self, frame: Frame) -> None:
        """Publish ``frame`` and wait until the broker confirms it; raise its
        :class:`PublishError` (including :class:`FrameExpiredError`) if it fails."""
        self._check_open()
        pending = await self._admit(frame, awaited=True)
        try:
            await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            # The caller stopped waiting: a failure must still reach someone.
            pending.awaited = False
            outcome = pending.outcome
            if outcome.done() and not outcome.cancelled():
                error = outcome.exception()
                if isinstance(error, PublishError) and not isinstance(error, FrameExpiredError):
                    self._failures.append(error)
            raise

    async def flush(self) -> None:
        """Wait until every frame in flight is confirmed or failed; raise the first
        failure not raised yet (with a note on how many more there were)."""
        while self._tasks:
            await asyncio.wait(tuple(self._tasks))
        self._raise_failures()

    async def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (default: the confirm timeout) for the frames
        in flight, give up on the rest (``stats.abandoned``) and close the connection.
        Does not raise publish failures; call :meth:`flush` first for that."""
        if self._closing:
            return
        self._closing = True
        wait_s = self._settings.confirm_timeout_s if timeout is None else timeout
        if self._tasks:
            await asyncio.wait(tuple(self._tasks), timeout=wait_s)
        left = tuple(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
            log.warning("closed with %d frame(s) still unconfirmed; they may be lost", len(left))
        if self._failures:
            log.error(
                "closed with %d failed frame(s) never raised to the caller; first: %s",
                len(self._failures),
                self._failures[0],
            )
        if self._connection is not None:
            await self._connection.close()
        log.info(
            "publisher closed: %d published, %d confirmed, %d failed",
            self.stats.published,
            self.stats.confirmed,
            self.stats.failed,
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.close()

    # -- internals

    def _check_open(self) -> None:
        if self._exchange is None:
            raise RuntimeError("FramePublisher is not started; use start() or `async with`")
        if self._closing:
            raise RuntimeError("FramePublisher is closed")

    def _raise_failures(self) -> None:
        if not self._failures:
            return
        first, more = self._failures[0], len(self._failures) - 1
        self._failures.clear()
        if more:
            first.add_note(f"{more} more frame(s) failed after it (see the publisher's stats)")
        raise first

    async def _admit(self, frame: Frame, *, awaited: bool = False) -> _Pending:
        await self._window.acquire()
        if self._closing:
            self._window.release()
            raise RuntimeError("FramePublisher is closed")
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # An outcome nobody awaits must not log "exception was never retrieved".
        outcome.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        pending = _Pending(frame, frame.to_message(), outcome, awaited)
        self.stats.published += 1
        task = asyncio.create_task(self._deliver(pending), name=f"publish-{frame.message_id}")
        self._tasks[task] = pending
        task.add_done_callback(self._delivered)
        return pending

    def _delivered(self, task: asyncio.Task[None]) -> None:
        # A done callback rather than a `finally` in _deliver: a task cancelled before
        # its first step never runs its body.
        pending = self._tasks.pop(task)
        self._window.release()
        if task.cancelled():
            self.stats.abandoned += 1
            error = PublishError(f"{describe(pending.frame)} abandoned at close", pending.frame)
        elif (exc := task.exception()) is not None:
            log.error("bug while publishing %s", describe(pending.frame), exc_info=exc)
            self.stats.errored += 1
            error = PublishError(f"{describe(pending.frame)}: unexpected {exc!r}", pending.frame)
            if not pending.awaited:
                self._failures.append(error)
        else:
            return
        if not pending.outcome.done():
            pending.outcome.set_exception(error)

    async def _deliver(self, pending: _Pending) -> None:
        backoff = _BACKOFF_MIN_S
        while True:
            failure = await self._attempt(pending)
            if failure is None:
                self.stats.confirmed += 1
                pending.outcome.set_result(None)
                return
            if isinstance(failure, PublishError):
                self._fail(pending, failure)
                return
            # The connection (or channel) went away; aio-pika reconnects on its own.
            self._warn("lost", "connection lost while publishing (%r); re-sending", failure)
            if not await self._wait_for_channel(pending, backoff):
                self.stats.dropped_stale += 1
                self._warn(
                    "stale",
                    "dropped a frame older than %d ms instead of re-sending it",
                    self._settings.max_frame_age_ms,
                )
                if pending.awaited:
                    pending.outcome.set_exception(
                        FrameExpiredError(
                            f"{describe(pending.frame)} was not confirmed before the "
                            f"connection was lost and is older than "
                            f"{self._settings.max_frame_age_ms} ms",
                            pending.frame,
                        )
                    )
                else:
                    pending.outcome.cancel()
                return
            self.stats.retried += 1
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _attempt(self, pending: _Pending) -> PublishError | BaseException | None:
        """One publish; None when confirmed, a PublishError when the frame failed for
        good, any other exception when the connection was lost and it may be re-sent."""
        assert self._exchange is not None
        frame = pending.frame
        try:
            await self._exchange.publish(
                pending.message,
                FRAME_ROUTING_KEY,
                mandatory=True,
                timeout=self._settings.confirm_timeout_s,
            )
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # close() gave up on this frame
            # aiormq cancels a pending confirm future when its channel closes; only our
            # own task being cancelled means stop.
            return exc
        except aiormq.exceptions.PublishError:  # basic.return: no queue bound
            self.stats.returned += 1
            return FrameUnroutableError(
                f"{describe(frame)} is unroutable: {UNROUTABLE_HINT}", frame
            )
        except aiormq.exceptions.DeliveryError as exc:  # basic.nack
            self.stats.nacked += 1
            return FrameNackedError(
                f"the broker refused {describe(frame)} ({exc}); the worker queue is "
                "probably full: are the workers keeping up?",
                frame,
            )
        except TimeoutError:  # before OSError: it is one
            self.stats.errored += 1
            return FrameConfirmTimeoutError(
                f"no confirm for {describe(frame)} within {self._settings.confirm_timeout_s:g} s",
                frame,
            )
        except aiormq.exceptions.ChannelNotFoundEntity:
            self.stats.returned += 1
            return FrameUnroutableError(
                f"{describe(frame)} is unroutable: {MISSING_EXCHANGE_HINT}", frame
            )
        except (
            aiormq.exceptions.ChannelAccessRefused,
            aiormq.exceptions.ChannelPreconditionFailed,
        ) as exc:
            self.stats.errored += 1
            return FrameRefusedError(f"the broker refused {describe(frame)}: {exc}", frame)
        except _CONNECTION_LOST as exc:
            return exc
        except Exception as exc:
            # aiormq rejects pending confirms with a bare Exception when a channel
            # closes without a reason.
            if type(exc) is Exception:
                return exc
            raise
        return None

    async def _wait_for_channel(self, pending: _Pending, backoff: float) -> bool:
        """Wait for the robust channel to be back; False if the frame got too old."""
        assert self._channel is not None
        remaining_s = self._remaining_s(pending.frame)
        if remaining_s <= 0:
            return False
        await asyncio.sleep(min(backoff, remaining_s))
        remaining_s = self._remaining_s(pending.frame)
        if remaining_s <= 0:
            return False
        try:
            async with asyncio.timeout(remaining_s):
                await self._channel.ready()
        except TimeoutError:
            return False
        return self._remaining_s(pending.frame) > 0

    def _remaining_s(self, frame: Frame) -> float:
        age_ms = time.time() * 1000 - frame.capture_ms
        return (self._settings.max_frame_age_ms - age_ms) / 1000

    def _fail(self, pending: _Pending, error: PublishError) -> None:
        self._warn(type(error).__name__, "%s", error)
        if pending.awaited:
            pending.outcome.set_exception(error)
        else:
            self._failures.append(error)
            pending.outcome.cancel()

    def _warn(self, kind: str, message: str, *args: object) -> None:
        count = self._warned.get(kind, 0) + 1
        self._warned[kind] = count
        if count == 1 or count % _LOG_EVERY == 0:
            suffix = "" if count == 1 else f" ({count} times so far)"
            log.warning(message + suffix, *args)
