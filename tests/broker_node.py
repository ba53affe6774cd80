"""A private RabbitMQ node for tests that must stop, restart or reconfigure a broker
(broker restarts, TLS listeners), which the shared broker on :5672 must never be.

Each :class:`PrivateBroker` is its own Erlang node (``<unique>@localhost``) with its
own ports, data and log directories, config file and Erlang cookie, all in a
temporary directory. The data directory is kept across :meth:`PrivateBroker.restart`,
so durable exchanges and queues (quorum queues included) and their messages survive a
full node restart, as they would in production.

Use the ``private_broker`` fixture (module scope: one node per test module, always
stopped afterwards) or ``PrivateBroker`` as a context manager. Nodes are started in
their own process group, so stopping one ends the whole tree; ``atexit`` stops any
node a failed test run left behind, and a watchdog in the node's group stops it if the
test process is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

import pytest

from memelearning.management import ManagementClient

if TYPE_CHECKING:
    from tests.broker_cluster import BrokerCluster

# The Debian package's /usr/sbin wrappers switch to the rabbitmq user (and its HOME,
# hence its cookie); the scripts behind them run as whoever calls them.
_SBIN: Final = Path("/usr/lib/rabbitmq/bin")
USER: Final = "guest"
PASSWORD: Final = "guest"
# A cold node with the management plugin boots in 5-10 s on a busy two-core machine,
# several times that on one loaded by other work as well; the deadline is only reached
# when the node cannot start.
START_TIMEOUT_S: Final = 180.0
STOP_TIMEOUT_S: Final = 30.0

_running: set[PrivateBroker] = set()

# Stops the node if the test process dies without stopping it (SIGKILL, a CI timeout):
# no stray RabbitMQ nodes on a shared machine, and no node data (frames) left behind.
# $1: the test process, $2: the node's process group (which includes this watchdog,
# so the final SIGKILL ends it too), $3: a directory to remove ('' for none).
_WATCHDOG: Final = (
    'trap "" TERM INT HUP; while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
    'kill -TERM -"$2"; sleep 15; if [ -n "$3" ]; then rm -rf "$3"; fi; kill -KILL -"$2"'
)


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsListener:
    """An ``amqps`` listener. Paths are PEM files; ``verify_peer`` asks clients for a
    certificate, ``fail_if_no_peer_cert`` refuses clients that send none."""

    certfile: Path
    keyfile: Path
    cacertfile: Path
    verify_peer: bool = False
    fail_if_no_peer_cert: bool = False


class PrivateBroker:
    """A RabbitMQ node of our own: start, stop, restart, URLs, a management client."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        tls: TlsListener | None = None,
        extra_config: str = "",
        cookie: str | None = None,
    ) -> None:
        """``cookie``: the Erlang cookie (nodes of one cluster share it); a fresh one by
        default."""
        if not (_SBIN / "rabbitmq-server").exists():
            raise RuntimeError(f"RabbitMQ is not installed ({_SBIN}/rabbitmq-server missing)")
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="rmq-")) if base_dir is None else base_dir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.nodename = f"test-{uuid.uuid4().hex[:10]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self.extra_config = extra_config
        self.cookie = cookie or uuid.uuid4().hex.upper()
        self._process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._write_files()
        self.management = ManagementClient(self.amqp_url(), self.management_url)

    # -- files and environment

    @property
    def home(self) -> Path:
        # HOME holds .erlang.cookie: the node and rabbitmqctl must read the same one.
        return self.base_dir / "home"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.out"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def _write_files(self) -> None:
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        for name in ("mnesia", "log"):
            (self.base_dir / name).mkdir(exist_ok=True)
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            f"management.tcp.port = {self.management_port}",
            "management.tcp.ip = 127.0.0.1",
            f"default_user = {USER}",
            f"default_pass = {PASSWORD}",
            "log.console = false",
            "log.file.level = info",
            # Low disk space on a shared CI machine must not block publishers here.
            "disk_free_limit.absolute = 1MB",
        ]
        if self.tls is not None:
            t = self.tls
            lines += [
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
                f"ssl_options.cacertfile = {t.cacertfile}",
                f"ssl_options.certfile = {t.certfile}",
                f"ssl_options.keyfile = {t.keyfile}",
                f"ssl_options.verify = {'verify_peer' if t.verify_peer else 'verify_none'}",
                f"ssl_options.fail_if_no_peer_cert = {str(t.fail_if_no_peer_cert).lower()}",
            ]
        if self.extra_config:
            lines.append(self.extra_config.strip())
        (self.base_dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # Our own (empty) env file: the system one names the shared node.
        (self.base_dir / "rabbitmq-env.conf").write_text("")

    def environment(self) -> dict[str, str]:
        """The environment of this node's server and of rabbitmqctl calls on it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.base_dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base_dir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base_dir / "log"),
            RABBITMQ_PID_FILE=str(self.base_dir / "node.pid"),
            # rabbitmqctl must find the node's epmd on the same loopback address.
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the node and return once it accepts AMQP connections (and its
        management API answers). Raises with the end of the node's log if it does not."""
        if self.running:
            raise RuntimeError(f"{self.nodename} is already running")
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                [str(_SBIN / "rabbitmq-server")],
                env=self.environment(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, so stop() can end the whole tree (and a
                # Ctrl-C in the terminal reaches pytest, not the node).
                process_group=0,
            )
        _running.add(self)
        try:
            # In the node's group, so stop() ends it too; it outlives SIGTERM to the group.
            self._watchdog = subprocess.Popen(
                [
                    *("/bin/sh", "-c", _WATCHDOG, "watchdog"),
                    *(str(os.getpid()), str(self._process.pid)),
                    str(self.base_dir) if self._own_dir else "",
                ],
                process_group=self._process.pid,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait_started(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.nodename} exited while starting:\n{self.log_tail()}")
            if _amqp_answers(self.port) and self._management_answers():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.nodename} did not answer on AMQP port {self.port} within {timeout:.0f} s:\n"
            f"{self.log_tail()}"
        )

    def _management_answers(self) -> bool:
        try:
            self.management.overview()
        except (OSError, urllib.error.URLError):
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the node (gracefully: SIGTERM makes the server script run a clean
        shutdown; SIGKILL to the whole group if that takes longer than ``timeout``;
        at once with ``timeout=0``). Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None and timeout > 0:
            with contextlib.suppress(ProcessLookupError):
                # A paused node would only act on SIGTERM once continued.
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # Whatever is left of the group (beam, erl_child_setup) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)
            self._watchdog = None
        self._process = None
        self.paused = False
        _running.discard(self)
        self._wait_port_closed(self.port, timeout=10)

    def kill(self) -> None:
        """Crash the node: SIGKILL to its whole process group, no clean shutdown (what
        an OOM kill or a lost machine does). Data written to disk so far is kept."""
        self.stop(timeout=0)

    def pause(self) -> None:
        """Freeze the node (SIGSTOP to its process group): it keeps its sockets open and
        answers nothing, as a node stuck in a long GC or a frozen VM would."""
        assert self._process is not None, f"{self.nodename} is not running"
        os.killpg(self._process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        assert self._process is not None, f"{self.nodename} is not running"
        os.killpg(self._process.pid, signal.SIGCONT)
        self.paused = False

    def restart(self, down_s: float = 0.0, *, crash: bool = False) -> None:
        """Stop the whole node (cleanly, or ``crash``: SIGKILL), stay down ``down_s``
        seconds, start it again on the same ports and data directory (durable queues
        and their persisted messages survive)."""
        if crash:
            self.kill()
        else:
            self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def close(self) -> None:
        """Stop the node and remove its directory (if this object created it). A node
        whose data goes with it is killed rather than shut down cleanly: nothing on
        its disk is kept, and the clean shutdown took 6 s a node."""
        self.stop(timeout=0 if self._own_dir else STOP_TIMEOUT_S)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _wait_port_closed(port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return
            time.sleep(0.1)

    # -- using it

    def amqp_url(self, vhost: str = "/") -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{_quote(vhost)}"

    def amqps_url(self, vhost: str = "/", host: str = "localhost") -> str:
        """The TLS listener's URL (``host`` must match the server certificate)."""
        if self.tls_port is None:
            raise RuntimeError("this node has no TLS listener (pass tls=TlsListener(...))")
        return f"amqps://{USER}:{PASSWORD}@{host}:{self.tls_port}/{_quote(vhost)}"

    def create_vhost(self, prefix: str = "private") -> str:
        return self.management.create_vhost(prefix, "memelearning private-node test")

    def rabbitmqctl(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``rabbitmqctl -n <this node> ARGS``; its stdout, or raise with stderr.
        (It boots an Erlang VM of its own: seconds, and over 30 s on a loaded machine.)"""
        result = subprocess.run(
            [str(_SBIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in [self.log_path, *sorted((self.base_dir / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(
                    f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:])
                )
        return "\n".join(texts)


def _quote(vhost: str) -> str:
    return urllib.parse.quote(vhost, safe="")


# AMQP 0-9-1 protocol header; a broker that is up answers with a method frame
# (type 1, connection.start). A port that merely accepts TCP is not enough: the
# listener opens before the node is done booting only in some versions, and a
# half-dead node may accept and close.
_PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"


def _amqp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(_PROTOCOL_HEADER)
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


@atexit.register
def _stop_leftovers() -> None:
    for broker in list(_running):
        broker.stop(timeout=10)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[PrivateBroker]:
    """A private RabbitMQ node for the tests of one module; stopped afterwards even
    if a test failed. Tests may stop, restart and reconfigure it."""
    # Not under tmp_path: pytest keeps those directories, and the node's data holds
    # the test's frames (synthetic, but frames are never left on disk).
    broker = PrivateBroker()
    try:
        broker.start()
    except RuntimeError as exc:
        broker.close()
        # A broker that cannot start is a failure, never a skip.
        pytest.fail(str(exc), pytrace=False)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def broker_cluster() -> Iterator[BrokerCluster]:
    """A three-node RabbitMQ cluster (tests/broker_cluster.py) for the tests of one
    module, always stopped and removed afterwards. A cluster that cannot start is a
    failure, never a skip."""
    from tests.broker_cluster import BrokerCluster

    cluster = BrokerCluster()
    try:
        cluster.start()
    except (RuntimeError, AssertionError) as exc:
        cluster.close()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.close()
