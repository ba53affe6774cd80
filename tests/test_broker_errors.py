"""Broker problems as operators meet them, in the real command: a broker that is not
there, a wrong password or an unknown virtual host is one line naming the URL (password
hidden) and what to check, exit status 1; an outage while running is one line when it
starts and one when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

import pytest

from tests.broker import Broker
from tests.faults import free_port
from tests.publisher_support import PERSON
from tests.workers import wait_until

# (command line, the variable holding its broker URL); the worker serves the shipped
# model, as an operator's would.
COMMANDS = {
    "worker": (["worker"], "MEMELEARNING_WORKER_AMQP_URL"),
    "reactions tail": (["reactions", "tail"], "MEMELEARNING_REACTIONS_AMQP_URL"),
    "reactions serve": (["reactions", "serve"], "MEMELEARNING_REACTIONS_AMQP_URL"),
    "publish": (
        ["publish", "--meeting", "m1", "--count", "1", "--no-progress", str(PERSON)],
        "MEMELEARNING_PUBLISHER_AMQP_URL",
    ),
}
# Loopback, a free port and one thread: several of these run side by side on two cores.
QUIET = {
    "MEMELEARNING_WORKER_HTTP_HOST": "127.0.0.1",
    "MEMELEARNING_WORKER_HTTP_PORT": "0",
    "MEMELEARNING_WORKER_LITERT_THREADS": "1",
    "MEMELEARNING_REACTIONS_HTTP_HOST": "127.0.0.1",
    "MEMELEARNING_REACTIONS_HTTP_PORT": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def run_command(command: str, url: str) -> subprocess.CompletedProcess[str]:
    argv, variable = COMMANDS[command]
    return subprocess.run(
        [sys.executable, "-m", "memelearning", *argv],
        env={**os.environ, **QUIET, variable: url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's one line about what went wrong (the rest of stderr is its log)."""
    print(result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("memelearning ")]
    assert len(lines) == 1, lines
    return lines[0]


def with_netloc(url: str, *, password: str | None = None, port: int | None = None) -> str:
    parts = urllib.parse.urlsplit(url)
    user = parts.username or "guest"
    secret = password if password is not None else (parts.password or "guest")
    netloc = f"{user}:{urllib.parse.quote(secret, safe='')}@{parts.hostname}:{port or parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


# -- at start-up


def test_an_unreachable_broker_is_one_line_with_the_url_and_the_fix(broker: Broker) -> None:
    # a closed port on this machine
    port = free_port()
    url = f"amqp://mcu:s3cret-pw@127.0.0.1:{port}/"
    result = run_command("reactions tail", url)
    assert result.returncode == 1
    assert error_line(result) == (
        f"memelearning reactions: cannot connect to RabbitMQ at amqp://mcu:***@127.0.0.1:{port}/: "
        f"connection refused: nothing listens on 127.0.0.1:{port}; start RabbitMQ there, or "
        "fix the host and port in MEMELEARNING_REACTIONS_AMQP_URL"
    )
    assert "s3cret-pw" not in result.stderr


def test_a_wrong_password_is_one_line_naming_the_user(broker: Broker, vhost: str) -> None:
    wrong = f"not-the-password-{uuid.uuid4().hex[:8]}"
    url = with_netloc(broker.url_for(vhost), password=wrong)
    result = run_command("reactions tail", url)
    assert result.returncode == 1
    shown = url.replace(f":{wrong}@", ":***@")
    assert error_line(result) == (
        f"memelearning reactions: cannot connect to RabbitMQ at {shown}: the broker refused "
        f"the login of user {broker.user!r} (ACCESS_REFUSED); check the user name and "
        "password in MEMELEARNING_REACTIONS_AMQP_URL"
    )
    assert wrong not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_vhost_is_one_line_naming_it_in_every_command(
    broker: Broker, command: str
) -> None:
    missing = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    url = broker.url_for(missing)
    result = run_command(command, url)
    assert result.returncode == 1
    password = urllib.parse.urlsplit(url).password
    shown = url.replace(f":{password}@", ":***@")
    name = command.split()[0]
    variable = COMMANDS[command][1]
    assert error_line(result) == (
        f"memelearning {name}: cannot connect to RabbitMQ at {shown}: virtual host "
        f"{missing!r} does not exist or user {broker.user!r} may not use it; fix the URL's "
        f"path in {variable}, or create it: rabbitmqctl add_vhost {missing} && "
        f"rabbitmqctl set_permissions -p {missing} {broker.user} '.*' '.*' '.*'"
    )
    assert "Connection.OpenOk" not in result.stderr


# -- an outage while running


class BrokerLink:
    """A TCP relay from a process to the broker that a test can cut. While cut it still
    accepts connections but closes each at once, the way a broker that went away
    answers. ``connections`` counts every connection the process opened: its reconnect
    attempts among them."""

    def __init__(self, broker_url: str) -> None:
        parts = urllib.parse.urlsplit(broker_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()
        self.connections = 0
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.close()
        self.cut()

    def cut(self) -> None:
        self._cut = True
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._cut = False

    async def wait_connections(self, count: int) -> None:
        try:
            async with asyncio.timeout(60):
                while self.connections < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.connections} connection attempts in a minute, waited for {count}"
            ) from None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._changed.set()
        if self._cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._open |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class Running:
    """A ``memelearning`` command running in the background, its stderr read all along
    (a full pipe would block its logging)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._argv = argv
        self._env = {**os.environ, **QUIET, **env}
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "memelearning",
            *self._argv,
            env=self._env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader
        print("\n".join(self.lines))

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, count: int = 1) -> None:
        """Until ``count`` lines of the log hold ``text`` (a failure after a minute shows
        what the process logged instead, rather than pytest-timeout's bare stack)."""
        try:
            async with asyncio.timeout(60):
                while self.count(text) < count:
                    self._changed.clear()
                    assert self.process.returncode is None, f"exited before logging {text!r}"
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {text!r} in a minute; exit status {self.process.returncode}; "
                "last lines:\n" + "\n".join(self.lines[-15:])
            ) from None

    async def wait_consuming(self, consuming: Callable[[list[str]], bool]) -> None:
        """Until ``consuming`` (asked with the log so far) holds."""
        await wait_until(lambda: consuming(self.lines) or self.process.returncode is not None, 120)
        assert self.process.returncode is None, "exited before it consumed"

    async def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        try:
            async with asyncio.timeout(60):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(
                f"still running a minute after {sig.name}; last lines:\n"
                + "\n".join(self.lines[-15:])
            ) from None


def worker_consuming(lines: list[str]) -> bool:
    # logged once it consumes both of its queues
    return any(" consuming memelearning.frames.queue " in line for line in lines)


def consumer_in(broker: Broker, vhost: str) -> Callable[[list[str]], bool]:
    # the tail logs nothing once it consumes: ask the broker
    quoted = urllib.parse.quote(vhost, safe="")
    return lambda lines: bool(broker.api("GET", f"consumers/{quoted}"))


def shown(url: str) -> str:
    """``url`` as logs show it (the password hidden, no query)."""
    parts = urllib.parse.urlsplit(url)
    return url.split("?")[0].replace(f":{parts.password}@", ":***@")


def noteworthy(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if " WARNING " in line or " ERROR " in line]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["worker", "reactions tail"])
async def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    broker: Broker, vhost: str, command: str
) -> None:
    async with BrokerLink(broker.amqp_url) as link:
        url = with_netloc(broker.url_for(vhost), port=link.port)
        argv, variable = COMMANDS[command]
        consuming: Callable[[list[str]], bool]
        if command == "worker":
            env = {variable: url, "MEMELEARNING_WORKER_RECONNECT_INTERVAL_S": "0.2"}
            consuming, stop = worker_consuming, signal.SIGTERM
        else:
            env = {variable: url + "?reconnect_interval=0.2"}
            consuming, stop = consumer_in(broker, vhost), signal.SIGINT
        async with Running(argv, env) as running:
            # given a process consuming from the broker
            await running.wait_consuming(consuming)
            cut_at = len(running.lines)
            # when the broker goes away for several reconnect attempts, then comes back
            link.cut()
            await running.wait_for("lost the connection to RabbitMQ")
            await link.wait_connections(link.connections + 4)
            link.restore()
            await running.wait_for("reconnected to RabbitMQ")
            assert await running.stop(stop) == 0
            logged = running.lines[cut_at:]

    # then it warned once when the outage began and said once, at INFO, when it ended
    (lost,) = noteworthy(logged)
    assert f"WARNING memelearning.broker: lost the connection to RabbitMQ at {shown(url)} (" in lost
    assert lost.endswith("); reconnecting every 0.2 s")
    (back,) = [line for line in logged if "reconnected to RabbitMQ" in line]
    assert f"INFO memelearning.broker: reconnected to RabbitMQ at {shown(url)} after " in back
    everything = "\n".join(logged)
    assert "Traceback" not in everything
    assert "Reconnecting after" not in everything


@pytest.mark.slow
async def test_a_reconnect_refused_for_good_reason_is_said_once(broker: Broker, vhost: str) -> None:
    async with BrokerLink(broker.amqp_url) as link:
        url = with_netloc(broker.url_for(vhost), port=link.port) + "?reconnect_interval=0.2"
        env = {"MEMELEARNING_REACTIONS_AMQP_URL": url}
        async with Running(["reactions", "tail"], env) as running:
            await running.wait_consuming(consumer_in(broker, vhost))
            cut_at = len(running.lines)
            # given an outage during which its virtual host was deleted
            link.cut()
            await running.wait_for("lost the connection to RabbitMQ")
            await asyncio.to_thread(broker.delete_vhost, vhost)
            # when the broker is back but refuses the virtual host, attempt after attempt
            link.restore()
            await running.wait_for("cannot reconnect to RabbitMQ")
            await link.wait_connections(link.connections + 4)
            # and the virtual host comes back, with the events exchange a worker declares
            # when it reconnects (the tail only finds it, passively)
            await asyncio.to_thread(recreate_vhost, broker, vhost)
            await asyncio.to_thread(broker.declare_events_exchange, vhost)
            await running.wait_for("reconnected to RabbitMQ")
            assert await running.stop(signal.SIGINT) == 0
            logged = running.lines[cut_at:]

    # then the refusal was said once, with what to check, between the outage's warning
    # and its end (INFO)
    lost, refused = noteworthy(logged)
    (back,) = [line for line in logged if "reconnected to RabbitMQ" in line]
    assert "lost the connection" in lost
    assert refused.endswith(
        f"WARNING memelearning.broker: cannot reconnect to RabbitMQ at {shown(url)}: virtual "
        f"host {vhost!r} does not exist or user {broker.user!r} may not use it; fix the URL's "
        f"path in MEMELEARNING_REACTIONS_AMQP_URL, or create it: rabbitmqctl add_vhost {vhost} "
        f"&& rabbitmqctl set_permissions -p {vhost} {broker.user} '.*' '.*' '.*' (still trying)"
    )
    assert " INFO memelearning.broker: reconnected" in back
    assert "Traceback" not in "\n".join(logged)


def recreate_vhost(broker: Broker, name: str) -> None:
    quoted = urllib.parse.quote(name, safe="")
    broker.api("PUT", f"vhosts/{quoted}", {"description": "memelearning test"})
    user = urllib.parse.quote(broker.user, safe="")
    broker.api(
        "PUT", f"permissions/{quoted}/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
