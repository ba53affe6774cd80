"""Broker outages in the log: one warning when a connection is lost, one info line when
it is back.

aio-pika's robust connections reconnect on their own, and log each attempt as it goes
(about three lines a second, the first with a traceback) but not when one succeeds.
:func:`watch_outages` logs an outage once, when the connection is lost, and its end;
:class:`ReconnectNoiseFilter` (installed by :func:`memelearning.logs.setup_logging`)
drops aio-pika's and aiormq's records of each attempt for the connections watched. A
failed attempt is logged only when it needs a person (a refused login or virtual host:
configuration, not an outage), once per reason.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Final

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

log = logging.getLogger("memelearning.broker")

# An exception → (what happened and what to check, whether it is configuration that
# waiting will not fix).
Diagnose = Callable[[BaseException], tuple[str, bool]]

_NOISY_LOGGERS: Final = ("aio_pika.robust_connection", "aiormq.connection", "aio_pika.tools")


class _Watch:
    def __init__(self, shown_url: str, interval: float, diagnose: Diagnose) -> None:
        self.shown_url = shown_url
        self.interval = interval
        self.diagnose = diagnose
        self.down_since: float | None = None
        self.reported: str | None = None

    def closed(self, connection: AbstractConnection | None, exc: BaseException | None, /) -> None:
        # Each failed reconnect attempt closes the connection again: only the first counts;
        # a connection closed on purpose is no outage.
        if connection is None or connection.close_called or connection.is_closed:
            return
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        log.warning(
            "lost the connection to RabbitMQ at %s (%s); reconnecting every %g s",
            self.shown_url,
            _reason(exc),
            self.interval,
        )

    def attempt_failed(self, exc: BaseException) -> None:
        message, lasting = self.diagnose(exc)
        if lasting and message != self.reported:
            self.reported = message
            log.warning(
                "cannot reconnect to RabbitMQ at %s: %s (still trying)", self.shown_url, message
            )

    def reconnected(self, connection: AbstractRobustConnection | None, /) -> None:
        if self.down_since is None:
            return
        # A client of a cluster may be back on another node than the one it lost.
        several = len(getattr(connection, "addresses", ())) > 1
        node = getattr(connection, "address", None) if several else None
        # The outage's warning already asked for attention; its end needs none.
        log.info(
            "reconnected to RabbitMQ at %s after %.1f s%s",
            self.shown_url,
            time.monotonic() - self.down_since,
            f" (on {node})" if node else "",
        )
        self.down_since = None
        self.reported = None


_watches: weakref.WeakKeyDictionary[object, _Watch] = weakref.WeakKeyDictionary()


def watch_outages(connection: AbstractRobustConnection, shown_url: str, diagnose: Diagnose) -> None:
    """Log ``connection``'s outages once each: a warning when it is lost and an info line
    when it is back (after its channels and consumers are restored). ``shown_url`` is the URL
    as logs may show it (password hidden); ``diagnose`` explains a failed attempt."""
    watch = _Watch(shown_url, float(getattr(connection, "reconnect_interval", 5)), diagnose)
    _watches[connection] = watch
    connection.close_callbacks.add(watch.closed)
    connection.reconnect_callbacks.add(watch.reconnected)


class ReconnectNoiseFilter(logging.Filter):
    """Drops the records aio-pika and aiormq write at every reconnect attempt of a
    watched connection; :func:`watch_outages` says what matters instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name == "aio_pika.robust_connection":
            watch = _watches.get(args[0]) if args else None
            if watch is None:
                return True
            if message.startswith("Connection attempt to") and len(args) > 1:
                error = args[1]
                if isinstance(error, BaseException):
                    watch.attempt_failed(error)
                return False
            return not (message.startswith("Connection to") and "Reconnecting" in message)
        if record.name == "aiormq.connection":
            # Every attempt that cannot reach the broker (the first is reported by
            # BrokerConnectError, the rest by the watch).
            if message.startswith("error when creating transport"):
                return False
            # The connection was lost: the watch logs it, without the traceback.
            if message.startswith("Cancelling cause reader exited abnormally"):
                error = record.exc_info[1] if record.exc_info else None
                return not isinstance(error, ConnectionError | EOFError)
            return True
        if record.name == "aio_pika.tools" and message.startswith("Callback %r error"):
            # A robust channel trying to reopen on a connection that has just gone; the
            # connection restores it once it is back.
            down = any(watch.down_since is not None for watch in _watches.values())
            return not (down and args and "RobustChannel._on_close" in repr(args[0]))
        return True


def install_log_filter() -> None:
    """Attach :class:`ReconnectNoiseFilter` to the loggers it filters (once)."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ReconnectNoiseFilter) for f in logger.filters):
            logger.addFilter(ReconnectNoiseFilter())


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    args = [a for a in exc.args if not isinstance(a, int)]
    text = " ".join(str(a) for a in args) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
