"""A three-node RabbitMQ cluster for tests, on this machine: three private nodes
(tests/broker_node.py: own node names, ports, data directories) sharing one Erlang
cookie, the second and third joined to the first with ``rabbitmqctl join_cluster``.

Use the ``broker_cluster`` fixture (in tests/broker_node.py; module scope: the fault
tests of one module share it; stopped and its data removed afterwards). A test may
kill, stop, pause and restart nodes; :meth:`BrokerCluster.heal` brings every node back
and waits until all three run in the cluster again, so the next test starts from a
whole cluster.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from tests.broker_node import PASSWORD, USER, PrivateBroker

SIZE: Final = 3
# A cluster is whole again when every node runs and sees the others; on a loaded
# two-core machine a node's boot and sync take tens of seconds.
HEAL_TIMEOUT_S: Final = 180.0


class BrokerCluster:
    """Three :class:`PrivateBroker` nodes in one RabbitMQ cluster."""

    def __init__(self, size: int = SIZE) -> None:
        cookie = uuid.uuid4().hex.upper()
        self.nodes = [PrivateBroker(cookie=cookie) for _ in range(size)]

    @property
    def seed(self) -> PrivateBroker:
        return self.nodes[0]

    def start(self) -> None:
        """Boot the nodes side by side, then join the others to the first."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.start(), self.nodes))
        for node in self.nodes[1:]:
            node.rabbitmqctl("stop_app")
            node.rabbitmqctl("join_cluster", self.seed.nodename)
            node.rabbitmqctl("start_app")
        self.wait_whole()

    def close(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.close(), self.nodes))

    # -- state

    def running_nodes(self) -> set[str]:
        """Node names the cluster reports running, asked of any node that answers."""
        for node in self.up():
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                found = node.management.api("GET", "nodes")
                return {n["name"] for n in found if n.get("running")}
        return set()

    def up(self) -> list[PrivateBroker]:
        return [node for node in self.nodes if node.running and not node.paused]

    def wait_whole(self, timeout: float = HEAL_TIMEOUT_S) -> None:
        """Return once all nodes run and the cluster lists all of them as running."""
        want = {node.nodename for node in self.nodes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running_nodes() == want:
                return
            time.sleep(0.5)
        raise AssertionError(
            f"the cluster did not become whole within {timeout:.0f} s: running "
            f"{sorted(self.running_nodes())} of {sorted(want)}"
        )

    def heal(self) -> None:
        """Continue paused nodes, start stopped ones, wait until the cluster is whole."""
        for node in self.nodes:
            if node.paused:
                node.resume()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.start(), [n for n in self.nodes if not n.running]))
        self.wait_whole()

    def node(self, nodename: str) -> PrivateBroker:
        for node in self.nodes:
            if node.nodename == nodename:
                return node
        raise KeyError(nodename)

    def api(self, path: str) -> Any:
        """GET ``path`` on the management API of a node that answers."""
        error: BaseException | None = None
        for node in self.up():
            try:
                return node.management.api("GET", path)
            except (OSError, urllib.error.URLError, ValueError, json.JSONDecodeError) as exc:
                error = exc
        raise AssertionError(f"no node's management API answers {path}: {error}")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        path = f"queues/{_quote(vhost)}/{_quote(name)}"
        found: dict[str, Any] = self.api(path)
        return found

    def connection_node(self, vhost: str, connection_name: str) -> str | None:
        """The node a client's connection (by its ``connection_name``) is on now."""
        for connection in self.api(f"vhosts/{_quote(vhost)}/connections"):
            name = (connection.get("client_properties") or {}).get("connection_name")
            if name == connection_name:
                return str(connection["node"])
        return None

    # -- addresses

    def amqp_url(self, vhost: str, first: int = 0) -> str:
        """The URL of node ``first`` (clients take the others as more hosts)."""
        return self.nodes[first].amqp_url(vhost)

    def other_hosts(self, first: int = 0) -> list[str]:
        return [f"127.0.0.1:{n.port}" for i, n in enumerate(self.nodes) if i != first]

    def create_vhost(self, prefix: str = "cluster") -> str:
        return self.seed.create_vhost(prefix)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


__all__ = ["PASSWORD", "USER", "BrokerCluster"]
