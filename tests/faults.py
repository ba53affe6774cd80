"""Helpers for the fault tests (tests/test_faults_*.py): `memelearning worker`
processes that a test can kill, freeze or signal, their metrics and memory, and the
tally each fault test prints (sent, processed, dead-lettered, duplicated, lost)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import aio_pika
from prometheus_client.parser import text_string_to_metric_families

from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE, Frame
from worker.events import ReactionEvent
from worker.settings import WorkerSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    # A worker busy with a backlog on a loaded machine can take seconds to answer.
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


class WorkerProcess:
    """One `memelearning worker` subprocess on its own metrics port.

    ``settings`` are ``MEMELEARNING_WORKER_*`` values, named without the prefix. stderr is
    read all along (a full pipe would block the worker's logging) and kept in
    :attr:`stderr`.
    """

    def __init__(
        self,
        amqp_url: str,
        model_dir: Path,
        name: str,
        settings: Mapping[str, object] | None = None,
        *,
        module: str = "memelearning",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        # `python -m module`: memelearning (with the `worker` argument) or a fault injector.
        self.argv = ["-m", module, "worker"] if module == "memelearning" else ["-m", module]
        self.port = free_port()
        values: dict[str, object] = {
            "amqp_url": amqp_url,
            "model_dir": model_dir,
            "http_host": "127.0.0.1",
            "http_port": self.port,
            "worker_id": name,
            # Two workers share two cores with the test: one TensorFlow thread each.
            "intra_op_threads": 1,
            "inter_op_threads": 1,
        }
        values.update(settings or {})
        self.env = {
            **os.environ,
            **{f"MEMELEARNING_WORKER_{key.upper()}": str(value) for key, value in values.items()},
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(env or {}),
        }
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: list[bytes] = []
        self._reader: asyncio.Task[None] | None = None
        self.exit_code: int | None = None

    async def __aenter__(self) -> Self:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_stderr())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            # Gone already (ProcessLookupError) is what we wanted; SIGCONT first, for
            # a process a test froze with SIGSTOP.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
            await process.wait()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
            self._reader.cancel()

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self._stderr.append(chunk)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait_ready(self, timeout: float = 180.0) -> None:
        # A TensorFlow import takes 20 s and more on a loaded two-core machine, two
        # workers' imports at once longer still; only a worker that cannot start
        # reaches the deadline.
        async with asyncio.timeout(timeout):
            while True:
                assert self.running, f"{self.name} exited before it was ready:\n{self.stderr}"
                status, _ = await asyncio.to_thread(
                    _http_get, f"http://127.0.0.1:{self.port}/readyz", 1.0
                )
                if status == 200:
                    return
                await asyncio.sleep(0.2)

    async def metrics(self) -> dict[str, float]:
        """The worker's /metrics as ``{"name{label=value,...}": value}``; labels sorted."""
        status, text = await asyncio.to_thread(_http_get, f"http://127.0.0.1:{self.port}/metrics")
        assert status == 200, f"{self.name} /metrics answered {status}"
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def rss_mib(self) -> float:
        """Resident memory of the worker process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc status")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            self.exit_code = await self.process.wait()
        return self.exit_code


class CrashingFleet:
    """``async with CrashingFleet(...) as fleet``: worker processes of
    :mod:`tests.crashing_worker` that die when they decode the JPEG whose SHA-256 is
    ``crash_sha256``, each dead one replaced by a new process as Kubernetes would, until
    :meth:`stop_replacing`. ``deaths`` holds the exit codes of the dead; every process
    is stopped on exit."""

    def __init__(
        self,
        amqp_url: str,
        model_dir: Path,
        settings: Mapping[str, object],
        crash_sha256: str,
        size: int = 2,
    ) -> None:
        self._args = (amqp_url, model_dir)
        self._settings = settings
        self._env = {"FAULT_CRASH_ON_SHA256": crash_sha256}
        self._size = size
        self._stack = contextlib.AsyncExitStack()
        self._workers: list[WorkerProcess] = []
        self._supervisor: asyncio.Task[None] | None = None
        self.deaths: list[int] = []

    async def _spawn(self, n: int) -> WorkerProcess:
        worker = WorkerProcess(
            *self._args, f"w{n}", self._settings, module="tests.crashing_worker", env=self._env
        )
        return await self._stack.enter_async_context(worker)

    async def _supervise(self) -> None:
        while True:
            for i, worker in enumerate(self._workers):
                if not worker.running:
                    assert worker.process is not None
                    self.deaths.append(await worker.process.wait())
                    self._workers[i] = await self._spawn(len(self.deaths) + 1)
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            self._workers = [await self._spawn(n) for n in range(self._size)]
            await asyncio.gather(*(w.wait_ready() for w in self._workers))
        except BaseException:
            await self._stack.aclose()
            raise
        self._supervisor = asyncio.create_task(self._supervise())
        return self

    def stop_replacing(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_replacing()
        await self._stack.__aexit__(exc_type, exc, traceback)


def metric(samples: Mapping[str, float], name: str, **labels: str) -> float:
    key = name
    if labels:
        key += "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    return samples.get(key, 0.0)


async def queue_depth(url: str, name: str) -> int:
    """Messages ready in a queue, exactly (a passive declare)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count


async def drain_dead_letters(url: str, timeout: float = 3.0) -> list[aio_pika.IncomingMessage]:
    """Everything in the dead-letter queue (acked), after ``timeout`` s of silence."""
    connection = await aio_pika.connect(url)
    found: list[aio_pika.IncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(WorkerSettings().dead_letter_queue)
        try:
            async with queue.iterator(timeout=timeout) as messages:
                async for message in messages:
                    await message.ack()
                    found.append(message)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return found


@dataclass
class Tally:
    """What a fault test counted. ``lost`` is what no outcome accounts for."""

    scenario: str
    sent: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    # Outcomes besides processed and dead-lettered (stale, expired, maxlen, still queued).
    extra_outcomes: dict[str, int] = field(default_factory=dict)
    # Measurements printed with the counts (seconds, MiB…), not outcomes.
    extra: dict[str, float] = field(default_factory=dict)

    def accounted(self) -> int:
        return self.processed + self.dead_lettered + sum(self.extra_outcomes.values())

    @property
    def lost(self) -> int:
        return self.sent - self.accounted()

    def report(self) -> str:
        parts = [
            f"sent={self.sent}",
            f"processed={self.processed}",
            f"dead_lettered={self.dead_lettered}",
            f"duplicated={self.duplicated}",
            *(f"{k}={v}" for k, v in self.extra_outcomes.items()),
            f"lost={self.lost}",
            *(f"{k}={v:g}" for k, v in self.extra.items()),
        ]
        line = f"FAULT {self.scenario}: " + " ".join(parts)
        print(line)
        return line


def events_by_frame(events: Iterable[ReactionEvent]) -> dict[str, list[ReactionEvent]]:
    by_frame: dict[str, list[ReactionEvent]] = {}
    for event in events:
        by_frame.setdefault(event.frame_id, []).append(event)
    return by_frame


def duplicates(events: Iterable[ReactionEvent]) -> tuple[int, bool]:
    """(events beyond the first per event id, whether every repeat of a frame's event
    carried the same event id as the first)."""
    events = list(events)
    ids = Counter(e.event_id for e in events)
    extra = sum(n - 1 for n in ids.values())
    same = all(
        len({e.event_id for e in group if e.label == label}) == 1
        for group in events_by_frame(events).values()
        for label in {e.label for e in group}
    )
    return extra, same


async def publish_paced(url: str, frames: Iterable[Frame], per_second: float) -> int:
    """Publish frames at about ``per_second`` (confirmed one by one), like an MCU that
    samples at a steady rate rather than dumping a backlog; returns how many."""
    connection = await aio_pika.connect(url)
    sent = 0
    started = time.monotonic()
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(FRAMES_EXCHANGE)
        for frame in frames:
            await exchange.publish(frame.to_message(), routing_key=FRAME_ROUTING_KEY)
            sent += 1
            ahead = sent / per_second - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return sent
