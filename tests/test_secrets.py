"""Credentials never leave the settings: not in logs (start-up, connection failure,
reconnects, injection failures, at DEBUG), not in CLI error output, not in /metrics,
not on a process command line when launched the documented way."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from memelearning.logs import setup_logging
from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings
from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.testing import make_event, publish_events
from tests.broker import Broker
from tests.frames import GREEN, EventCollector, make_frame
from tests.workers import Worker, wait_until, worker_settings

ROOT: Final = Path(__file__).resolve().parent.parent
UNREACHABLE: Final = "127.0.0.1:1"


def secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


@pytest.fixture
def password_url(broker: Broker, vhost: str) -> Iterator[tuple[str, str, str]]:
    """(URL, user, password) of a fresh user with a password, allowed on the vhost."""
    name, password = f"secrets-{vhost}", secret("amqp-password")
    quoted = urllib.parse.quote(name, safe="")
    broker.api("PUT", f"users/{quoted}", {"password": password, "tags": ""})
    broker.api(
        "PUT",
        f"permissions/{urllib.parse.quote(vhost, safe='')}/{quoted}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    parts = urllib.parse.urlsplit(broker.url_for(vhost))
    netloc = f"{name}:{password}@{parts.hostname}:{parts.port or 5672}"
    yield urllib.parse.urlunsplit(parts._replace(netloc=netloc)), name, password
    broker.api("DELETE", f"users/{quoted}")


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at DEBUG, configured the way the CLI's --log-level DEBUG does."""
    aiormq = logging.getLogger("aiormq")
    level = aiormq.level
    caplog.set_level(logging.DEBUG)
    setup_logging("DEBUG")
    yield caplog
    aiormq.setLevel(level)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


async def test_no_component_logs_or_exports_the_broker_password_or_meeting_keys(
    broker: Broker,
    amqp_url: str,
    password_url: tuple[str, str, str],
    debug_logging: pytest.LogCaptureFixture,
    colour_detector: Any,
) -> None:
    url, user, password = password_url
    api_key, room_key = secret("api-key"), secret("room-key")
    worker = Worker(worker_settings(url), detector=colour_detector)
    service = ReactionService(
        ReactionsSettings(
            amqp_url=url,
            api_key=api_key,
            access_keys={"m1": room_key},
            meeting_api_url=f"http://{UNREACHABLE}",  # every injection fails and retries
            max_attempts=2,
            backoff_base_s=0.01,
            http_host="127.0.0.1",
            http_port=0,
        )
    )
    # A frame is re-sent after the reconnect however long that takes on a loaded
    # machine (the shipped 2 s would drop it as too old).
    publisher = FramePublisher(PublisherSettings(amqp_url=url, max_frame_age_ms=120_000))
    await worker.start()
    await service.start()
    await publisher.start()
    try:
        # The test's own subscriber connects as another user: it must not miss an event
        # while the components reconnect.
        async with EventCollector(amqp_url) as collector:
            await publisher.publish_and_confirm(make_frame(GREEN, sequence=0))
            await collector.wait_for(1)
            # Events enough to pass hold-to-confirm, so the service calls the meeting API.
            await publish_events(url, *(make_event(sequence=i, label="like") for i in range(8)))
            await wait_until(lambda: service.metrics.injection_retries._value.get() > 0)
            # An operator closes every connection: each component logs and reconnects.
            broker.api("DELETE", f"connections/username/{urllib.parse.quote(user, safe='')}")
            # The publisher and the worker are back once a new frame becomes its event,
            await publisher.publish_and_confirm(make_frame(GREEN, sequence=1))
            await collector.wait_for(2)
            # and the service once it consumes events again (its queue went with its
            # connection: events published before it is back are not for it).
            events = service.metrics.events
            before = events._value.get()
            async with asyncio.timeout(60):
                for i in itertools.count(100):
                    await publish_events(amqp_url, make_event(sequence=i, label="palm"))
                    if events._value.get() > before:
                        break
                    await asyncio.sleep(0.2)
        # In a thread: the servers answer from this event loop.
        metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{worker.http_port}/metrics")
        metrics += await asyncio.to_thread(
            http_get, f"http://127.0.0.1:{service.http_port}/metrics"
        )
    finally:
        await publisher.close()
        await service.stop()
        await worker.stop()

    logged = debug_logging.text  # every record, formatted with its traceback
    # The records that would leak are there: the connection URLs, with the user name.
    assert user in logged and "127.0.0.1:5672" in logged
    assert service.metrics.injection_retries._value.get() > 0
    for value in (password, api_key, room_key):
        assert value not in logged
        assert value not in metrics


def _cli(args: list[str], env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Run ``memelearning ARGS`` as documented (credentials in the environment) at
    DEBUG; stop it after ``timeout`` if it is still retrying. Returns (output,
    command line as the process list shows it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "memelearning", "--log-level", "DEBUG", *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # Popen can return a moment before the kernel has set up the new program's
    # arguments (the file reads empty then), and a child that has exited shows none
    # either: read it as soon as it is there.
    cmdline = ""
    while not cmdline and process.poll() is None:
        raw = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        cmdline = raw.replace(b"\0", b" ").decode()
        time.sleep(0.001)
    assert "memelearning" in cmdline, f"no command line read for {args}"
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    return out.decode(errors="replace"), cmdline


@pytest.mark.slow
def test_cli_connection_failures_never_print_the_password(colour_model_dir: Path) -> None:
    password, api_key = secret("amqp-password"), secret("api-key")
    url = f"amqp://user:{password}@{UNREACHABLE}/"
    frames = ROOT.parent / "shared" / "data" / "hagrid-crops" / "like"
    runs = {
        "worker": (["worker"], {"MEMELEARNING_WORKER_MODEL_DIR": str(colour_model_dir)}),
        "reactions serve": (["reactions", "serve"], {"MEMELEARNING_REACTIONS_HTTP_PORT": "0"}),
        "reactions tail": (["reactions", "tail"], {}),
        "publish": (["publish", "--meeting", "m1", "--participant", "a", str(frames)], {}),
    }
    env = {f"MEMELEARNING_{c}_AMQP_URL": url for c in ("WORKER", "REACTIONS", "PUBLISHER")} | {
        "MEMELEARNING_REACTIONS_API_KEY": api_key
    }
    outputs = {}
    for name, (args, extra) in runs.items():
        out, cmdline = _cli(args, env | extra, timeout=45)
        outputs[name] = out
        assert password not in cmdline and api_key not in cmdline, name
        assert password not in out and api_key not in out, f"{name}:\n{out[-2000:]}"
        # It did try, and said so: the test saw a real connection failure.
        assert "127.0.0.1" in out or "connect" in out.lower(), f"{name}:\n{out[-2000:]}"
    # The one command that takes a URL argument refuses one with a password.
    out, _ = _cli(["reactions", "tail", "--url", url], {}, timeout=30)
    assert "password" in out and password not in out
