"""The worker's HTTP endpoint: ``/metrics`` (Prometheus), ``/livez`` and ``/readyz``.

A few lines on asyncio streams instead of a web framework: three GET routes do
not justify a dependency, and serving them on the worker's own event loop means a
blocked loop shows up as a failing liveness probe, which is what it should do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from memelearning.listening import listen_error

log = logging.getLogger(__name__)

_MAX_REQUEST_LINE = 8192


class HealthServer:
    def __init__(
        self, registry: CollectorRegistry, is_ready: Callable[[], bool], host: str, port: int
    ) -> None:
        self._registry = registry
        self._is_ready = is_ready
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the health server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen; raises :class:`~memelearning.listening.ListenError` when the address
        cannot be had (port taken by another process, host not local)."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self._host, self._port, limit=_MAX_REQUEST_LINE
            )
        except OSError as exc:
            raise listen_error(
                exc,
                host=self._host,
                port=self._port,
                serves="metrics and health",
                env_prefix="MEMELEARNING_WORKER_",
            ) from None
        log.info("metrics and health on http://%s:%d/", self._host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                # Headers are read and ignored: every route answers the same to anyone.
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
            parts = request_line.decode("latin-1").split()
            status, content_type, body = self._route(parts[1] if len(parts) >= 2 else "")
            if parts and parts[0] not in ("GET", "HEAD"):
                status, content_type, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if parts and parts[0] == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, target: str) -> tuple[str, str, bytes]:
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/livez":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self._is_ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        return "404 Not Found", "text/plain", b"not found\n"
