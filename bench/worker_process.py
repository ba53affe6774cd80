"""A real worker (``python -m memelearning worker``) in a process of its own, configured
through its MEMELEARNING_WORKER_* environment like a deployed one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from prometheus_client.parser import text_string_to_metric_families

_ROOT: Final = Path(__file__).resolve().parent.parent
_ENV_PREFIX: Final = "MEMELEARNING_WORKER_"
# Histogram sums and counts and counters read from /metrics, without the prefix.
_METRICS: Final = (
    "frames_processed_total",
    "frames_stale_total",
    "batch_size_sum",
    "batch_size_count",
    "inference_seconds_sum",
    "inference_seconds_count",
    "decode_seconds_sum",
    "decode_seconds_count",
)


class WorkerFailedError(RuntimeError):
    """The worker process exited or never became ready; the message ends with the
    tail of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class WorkerProcess:
    """``async with WorkerProcess(settings, log_path) as worker:`` starts the worker,
    waits until /readyz says it is warm and consuming, and stops it with SIGTERM (a
    drain, as Kubernetes would) on the way out. ``settings`` are worker settings by
    field name (``max_batch=8``); the log goes to ``log_path``, which holds log lines
    only (the worker never logs frames)."""

    def __init__(
        self,
        settings: Mapping[str, object],
        log_path: Path,
        *,
        profile_path: Path | None = None,
        python: Path | None = None,
    ) -> None:
        self.port = free_port()
        # Another environment's interpreter (bench.footprint: a LiteRT-only one).
        self._python = str(python) if python else sys.executable
        # cProfile of the worker's main thread (the event loop: AMQP, events, acks,
        # batching), written when the worker exits.
        self._profile = ["-m", "cProfile", "-o", str(profile_path)] if profile_path else []
        self._env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIX)}
        self._env.update({_ENV_PREFIX + k.upper(): str(v) for k, v in settings.items()})
        self._env.update(
            {
                _ENV_PREFIX + "HTTP_HOST": "127.0.0.1",
                _ENV_PREFIX + "HTTP_PORT": str(self.port),
                "TF_CPP_MIN_LOG_LEVEL": self._env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            }
        )
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the worker is not started")
        return self._process.pid

    async def __aenter__(self) -> Self:
        self._log = self._log_path.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            self._python,
            *self._profile,
            "-m",
            "memelearning",
            "--log-level",
            "WARNING",
            "worker",
            cwd=_ROOT,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            await self._wait_ready(timeout_s=120)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self, timeout_s: float = 30) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def metrics(self) -> dict[str, float]:
        """The worker's counters and histogram sums that say where its time went."""
        text = await asyncio.to_thread(self._get, "/metrics")
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name.removeprefix("memelearning_worker_")
                if name in _METRICS:
                    values[name] = values.get(name, 0.0) + sample.value
        return values

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._process is not None
            if self._process.returncode is not None:
                raise WorkerFailedError(
                    f"the worker exited with status {self._process.returncode}:\n{self._tail()}"
                )
            try:
                await asyncio.to_thread(self._get, "/readyz")
                return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise WorkerFailedError(f"not ready after {timeout_s:.0f} s:\n{self._tail()}")
            # The worker offers no ready notification but this endpoint; poll it.
            await asyncio.sleep(0.2)

    def _get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()

    def _tail(self, lines: int = 30) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
