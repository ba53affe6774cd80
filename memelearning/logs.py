"""Logging set-up shared by every process, and redaction of broker URLs."""

from __future__ import annotations

import logging
import sys
from urllib.parse import urlsplit, urlunsplit

from memelearning.outages import install_log_filter


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiormq logs every reconnect attempt with the full URL at DEBUG; keep it quiet.
    logging.getLogger("aiormq").setLevel(max(logging.INFO, logging.getLogger().level))
    # A broker outage is one line when it starts and one when it ends, not aio-pika's
    # lines at every reconnect attempt (memelearning/outages.py).
    install_log_filter()


def redact_url(url: str) -> str:
    """The URL with its password (and query string, which may carry key paths) hidden,
    safe for logs and errors."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        user = parts.username + (":***" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
