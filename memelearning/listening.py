"""Opening a process's HTTP port (metrics, health, media) with an error a person can act
on: a taken port stops the process at start-up with one line naming the address it
tried and the variable that chooses it, not with a traceback."""

from __future__ import annotations

import errno
import os


class ListenError(Exception):
    """A process cannot listen on its HTTP address: the port is taken, or the host is
    not an address of this machine."""


def listen_error(
    exc: OSError, *, host: str, port: int, serves: str, env_prefix: str
) -> ListenError:
    """The :class:`ListenError` for ``exc``, raised when binding ``host``:``port``
    (which serves ``serves``, for the message) failed."""
    shown = f"[{host}]" if ":" in host else host
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno == errno.EADDRINUSE:
        hint = f"another process has that port; set {env_prefix}HTTP_PORT to a free one"
    else:
        hint = f"check {env_prefix}HTTP_HOST"
    return ListenError(f"cannot listen on http://{shown}:{port}/ ({serves}): {reason} ({hint})")
