"""Frames are biometric data: no component writes one to disk or to a log, and the
frames that end in the dead-letter queue expire there too."""

from __future__ import annotations

import asyncio
import io
import os
import random
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aio_pika
import numpy as np
import pytest
from PIL import Image

from memelearning.logs import setup_logging
from publisher.protocol import Frame
from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings
from tests.broker import Broker
from tests.frames import GREEN, EventCollector, make_frame, now_ms, publish_raw
from tests.workers import Worker, messages_ready, wait_until, worker_settings
from worker.settings import WorkerSettings

ROOT: Final = Path(__file__).resolve().parent.parent
SOI: Final = b"\xff\xd8\xff"

# Absolute: CI runs pytest as `.venv/bin/python`, relative to a cwd the worker leaves.
PYTHON = os.path.abspath(sys.executable)


def marked_jpeg(marker: bytes, seed: int) -> bytes:
    """A green JPEG (the colour model sees it) with a patch of seeded noise at the
    bottom right (a pixel pattern no other test makes, coded in the file's last
    bytes) and ``marker`` in a comment segment."""
    pixels = np.zeros((96, 128, 3), dtype=np.uint8)
    pixels[...] = GREEN
    pixels[-40:, -48:] = np.random.default_rng(seed).integers(0, 256, (40, 48, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, comment=marker)
    data = buffer.getvalue()
    assert marker in data
    return data


def fingerprints(marker: bytes, jpegs: list[bytes]) -> list[bytes]:
    """Byte strings that only a copy of these frames (or of the marker) contains: the
    marker, as is and hex-encoded, and a run of each frame's entropy-coded pixels."""
    return [marker, marker.hex().encode(), *(jpeg[-200:-100] for jpeg in jpegs)]


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


@pytest.mark.slow
# A TensorFlow import at DEBUG, then the frames: minutes on a loaded machine.
@pytest.mark.timeout(300)
async def test_a_worker_at_debug_writes_no_frame_to_its_logs_or_disk(
    amqp_url: str,
    tmp_path: Path,
    colour_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = f"FRAME-MARKER-{random.randrange(10**12)}".encode()
    good = [marked_jpeg(marker, seed) for seed in range(3)]
    bad = good[0][: len(good[0]) // 2]  # truncated: dead-lettered with its detail logged
    dirs = {name: tmp_path / name for name in ("cwd", "tmp", "home")}
    for path in dirs.values():
        path.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(dirs["tmp"]),
        "HOME": str(dirs["home"]),
        "TF_CPP_MIN_LOG_LEVEL": "0",  # everything TensorFlow says, too
        "MEMELEARNING_WORKER_AMQP_URL": amqp_url,
        "MEMELEARNING_WORKER_MODEL_DIR": str(colour_model_dir),
        "MEMELEARNING_WORKER_HTTP_PORT": "0",
        "MEMELEARNING_WORKER_STALE_AFTER_MS": "120000",
        "MEMELEARNING_WORKER_QUEUE_TTL_MS": "120000",
    }
    caplog.set_level("DEBUG")
    setup_logging("DEBUG")
    worker = await asyncio.create_subprocess_exec(
        *[PYTHON, "-m", "memelearning", "--log-level", "DEBUG", "worker"],
        cwd=dirs["cwd"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_until(lambda: _consumers(amqp_url) > 0 or worker.returncode is not None, 120)
        assert worker.returncode is None, "the worker exited"
        publisher = FramePublisher(PublisherSettings(amqp_url=amqp_url))
        await publisher.start()
        async with EventCollector(amqp_url) as collector:
            for i, jpeg in enumerate(good):
                await publisher.publish_and_confirm(make_frame(sequence=i, jpeg=jpeg))
            await publish_raw(amqp_url, [make_frame(jpeg=bad).to_message()])
            await collector.wait_for(len(good), timeout=60)
        await publisher.close()
        dead = WorkerSettings().dead_letter_queue
        await wait_until_async(lambda: messages_ready(amqp_url, dead), 1, 30)
    finally:
        worker.terminate()
        async with asyncio.timeout(60):
            output, _ = await worker.communicate()

    logged = output + caplog.text.encode()
    assert b"dead-lettering frame" in output  # the bad frame's path was logged, at least
    for needle in fingerprints(marker, [*good, bad]):
        assert needle not in logged
    written = list(files_under(*dirs.values()))
    for path in written:
        content = path.read_bytes()
        for needle in [*fingerprints(marker, [*good, bad]), SOI + b"\xe0", SOI + b"\xfe"]:
            assert needle not in content, f"{path} holds frame data"
    print(f"\nlogs: {len(logged)} bytes; files written under cwd, TMPDIR, HOME: {len(written)}")


def _consumers(url: str) -> int:
    from tests.broker import BROKER

    vhost = urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))
    queue = urllib.parse.quote(WorkerSettings().queue, safe="")
    try:
        info = BROKER.api("GET", f"queues/{urllib.parse.quote(vhost, safe='')}/{queue}")
    except OSError:
        return 0
    return int(info.get("consumers", 0))


def _entered(broker: Broker, vhost: str, queue: str) -> int:
    """Messages that ever entered ``queue``, by the management API's statistics (they
    lag by seconds, and only ever grow)."""
    path = f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}"
    stats = broker.api("GET", path).get("message_stats", {})
    return int(stats.get("publish", 0))


async def _queue_state(url: str, name: str) -> tuple[int, int]:
    """(messages, consumers) of a queue, exactly (a passive declare)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        assert result.message_count is not None and result.consumer_count is not None
        return result.message_count, result.consumer_count


async def wait_until_async(count: Any, expected: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await count() < expected:
            await asyncio.sleep(0.2)


async def test_the_dead_letter_queue_has_its_own_ttl_and_poison_frames_expire(
    amqp_url: str, broker: Broker, vhost: str, colour_detector: Any
) -> None:
    settings = worker_settings(amqp_url, dead_letter_ttl_ms=1500)
    worker = Worker(settings, detector=colour_detector)
    await worker.start()
    try:
        info = broker.api(
            "GET",
            f"queues/{urllib.parse.quote(vhost, safe='')}/"
            f"{urllib.parse.quote(settings.dead_letter_queue, safe='')}",
        )
        assert info["arguments"]["x-message-ttl"] == 1500
        assert info["arguments"]["x-max-length"] == settings.dead_letter_max_length
        poison = Frame(
            meeting_id="m1", participant_id="alice", capture_ms=now_ms(), sequence=0, jpeg=b"no"
        )
        await publish_raw(amqp_url, [poison.to_message()])
        # The frame went into the dead-letter queue: the broker's count of what entered
        # it says so whenever it is read, unlike the queue's depth, which the TTL may
        # have taken back to 0 before a slow test looks.
        await wait_until(lambda: _entered(broker, vhost, settings.dead_letter_queue) >= 1)
        # Nobody reads the dead-letter queue; the broker drops the frame on its own.
        async with asyncio.timeout(60):
            while True:
                held, consumers = await _queue_state(amqp_url, settings.dead_letter_queue)
                assert consumers == 0
                if held == 0:
                    break
                await asyncio.sleep(0.2)
    finally:
        await worker.stop()


def test_the_default_dead_letter_ttl_is_finite() -> None:
    settings = WorkerSettings()
    # Poison frames are still frames of people: kept for a day at most by default.
    assert 0 < settings.dead_letter_ttl_ms <= 24 * 3600 * 1000
