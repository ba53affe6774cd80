"""The worker as operators run it: a `memelearning worker` process and its signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from memelearning.cli import main
from memelearning.settings import SettingsError, load_settings
from tests.frames import EventCollector, make_frame, publish_frames
from tests.workers import messages_ready
from worker.settings import WorkerSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigterm_drains_in_flight_frames_and_loses_none(
    amqp_url: str, colour_model_dir: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MEMELEARNING_WORKER_AMQP_URL": amqp_url,
        "MEMELEARNING_WORKER_MODEL_DIR": str(colour_model_dir),
        "MEMELEARNING_WORKER_HTTP_HOST": "127.0.0.1",
        "MEMELEARNING_WORKER_HTTP_PORT": str(port),
        "MEMELEARNING_WORKER_MAX_BATCH": "8",
        "MEMELEARNING_WORKER_QUEUE_TTL_MS": "120000",
        "MEMELEARNING_WORKER_STALE_AFTER_MS": "120000",
        "MEMELEARNING_WORKER_DRAIN_TIMEOUT_S": "20",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "memelearning", "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    # Read stderr all along, or a full pipe would block the worker's logging.
    stderr_task = asyncio.create_task(process.stderr.read())
    try:
        async with asyncio.timeout(90):
            while not await asyncio.to_thread(ready, port):
                assert process.returncode is None, "the worker exited before it was ready"
                await asyncio.sleep(0.2)
        frames = [make_frame(participant=f"p{i % 4}", sequence=i) for i in range(1500)]
        async with EventCollector(amqp_url) as collector:
            publishing = asyncio.create_task(publish_frames(amqp_url, frames))
            await collector.wait_for(1)
            process.send_signal(signal.SIGTERM)
            await publishing
            async with asyncio.timeout(60):
                returncode = await process.wait()

            # Every frame was either processed (its event arrives: the worker acks only
            # once its events are confirmed) or is back in the queue: none lost. A lost
            # frame leaves this waiting until the deadline; the assertion below says so.
            async def accounted() -> int:
                with_event = {event.frame_id for event in collector.events}
                return len(with_event) + await messages_ready(amqp_url)

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    while await accounted() < len(frames):
                        await asyncio.sleep(0.2)
            processed = {event.frame_id for event in collector.events}
        stderr = (await stderr_task).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr_task.cancel()

    assert returncode == 0, stderr
    assert "draining" in stderr
    left = await messages_ready(amqp_url)
    assert len(processed) + left == len(frames), (len(processed), left)
    assert 0 < len(processed) < len(frames)
    # A double ack would have closed the channel with PRECONDITION_FAILED.
    assert "PRECONDITION_FAILED" not in stderr
    assert "could not settle" not in stderr


def test_settings_errors_name_the_variable_and_hide_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMELEARNING_WORKER_MAX_BATCH", "lots")
    monkeypatch.setenv("MEMELEARNING_WORKER_AMQP_URL", "http://user:hunter2@broker/")
    with pytest.raises(SettingsError) as error:
        load_settings(WorkerSettings)
    message = str(error.value)
    assert "MEMELEARNING_WORKER_MAX_BATCH" in message
    assert "MEMELEARNING_WORKER_AMQP_URL" in message
    assert "hunter2" not in message


def test_cross_field_settings_errors_are_explained() -> None:
    with pytest.raises(SettingsError, match="prefetch"):
        load_settings(WorkerSettings, max_batch=32, prefetch=8)


def test_the_cli_reports_bad_settings_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMELEARNING_WORKER_MAX_WAIT_MS", "-5")
    assert main(["worker"]) == 2
    assert "MEMELEARNING_WORKER_MAX_WAIT_MS" in capsys.readouterr().err


def test_the_readiness_probe_fails_when_no_worker_answers() -> None:
    assert main(["worker", "check", "--port", str(free_port()), "--timeout", "1"]) == 1


def test_settings_errors_never_echo_a_secret_inside_a_container_type() -> None:
    from pydantic import SecretStr
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Keys(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="MEMELEARNING_TEST_")
        keys: dict[str, SecretStr] = {}

    with pytest.raises(SettingsError) as error:
        load_settings(Keys, keys=["topsecret"])
    assert "MEMELEARNING_TEST_KEYS" in str(error.value)
    assert "topsecret" not in str(error.value)
