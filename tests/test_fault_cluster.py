"""Faults on a three-node RabbitMQ cluster under a steady load of frames.

One cluster (tests/broker_cluster.py) serves the module; each test has its own vhost,
hence its own frames queue: a quorum queue with a replica on each node. A real worker,
a publisher and an events subscriber (tests/cluster_load.py) are each given all three
addresses and start on different nodes; the frames queue's leader is on the
subscriber's node. Then one fault:

- SIGKILL to the node that leads the frames queue;
- SIGKILL to the node the worker is connected to;
- SIGKILL to the node the publisher is connected to;
- a clean stop of one node (a minority) for 30 s, then started again;
- SIGSTOP to the node the worker is connected to, past the clients' heartbeat timeout
  (7 s), then SIGCONT.

A killed node is started again once the fleet has recovered (as Kubernetes would
restart it). Counted per frame id: confirmed to the publisher, processed, events
received, duplicates (the same event id again), dead-lettered (with the reason), lost
(confirmed frames that neither became an event nor were counted stale, expired or
dead-lettered), and the time to recover (from the fault to the first event of a frame
captured after it). The queue TTL and stale budget (30 s) outlast every outage here,
so every confirmed frame must become its event. Run with -s to see the ``FAULT cluster …`` lines.

Run: python -m pytest tests/test_fault_cluster.py -q -s
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aio_pika
import pytest

from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings
from tests.broker_cluster import BrokerCluster
from tests.broker_node import PrivateBroker
from tests.cluster_load import FPS, Accounting, Stream, Subscriber
from tests.faults import WorkerProcess, drain_dead_letters
from tests.workers import Worker, wait_until, worker_settings
from worker import topology
from worker.service import DetectorLike
from worker.settings import WorkerSettings

# The frames' budgets in the queue, before the model and for a re-send: longer than
# any outage here, so the expected result is exact.
BUDGET_MS: Final = 30_000
# Short, so a frozen node is left quickly: aiormq gives up on a silent connection after
# (heartbeat + 1) x 3 s.
HEARTBEAT_S: Final = 1
MINORITY_DOWN_S: Final = 30.0
# Past the clients' heartbeat timeout, and well short of the nodes' net_ticktime (60 s),
# after which the others would declare the frozen node down (docs/reliability.md).
PAUSE_S: Final = 3 * (HEARTBEAT_S + 1) + 1.0
# The target; a fault that takes longer fails the test.
RECOVERY_TARGET_S: Final = 10.0
# Events flowing steadily before the fault and after recovery.
STEADY_S: Final = 2.0
WORKER_CONNECTION: Final = "cluster-test-worker"
PUBLISHER_CONNECTION: Final = "cluster-test-publisher"


@dataclass(frozen=True)
class Fault:
    # Which node: "leader" (of the frames queue), "worker" or "publisher" (the node its
    # connection is on).
    target: str
    action: str  # "kill", "stop" or "pause"


FAULTS: Final = {
    "leader-sigkill": Fault("leader", "kill"),
    "worker-node-sigkill": Fault("worker", "kill"),
    "publisher-node-sigkill": Fault("publisher", "kill"),
    "minority-stop-30s": Fault("leader", "stop"),
    "pause-past-heartbeat": Fault("worker", "pause"),
}


@pytest.fixture
def whole_cluster(broker_cluster: BrokerCluster) -> BrokerCluster:
    """The module's cluster with all three nodes running (a test before may have left
    one down if it failed)."""
    broker_cluster.heal()
    return broker_cluster


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
@pytest.mark.timeout(300)
async def test_a_node_lost_under_load_loses_no_frame_and_the_fleet_recovers_within_10_s(
    whole_cluster: BrokerCluster, colour_detector: DetectorLike, fault: Fault
) -> None:
    cluster = whole_cluster
    vhost = await asyncio.to_thread(cluster.create_vhost, "cluster")
    budgets: dict[str, Any] = {"queue_ttl_ms": BUDGET_MS, "stale_after_ms": BUDGET_MS}
    # Each client starts on a node of its own and knows the other two.
    settings = worker_settings(
        cluster.amqp_url(vhost, 0) + f"?heartbeat={HEARTBEAT_S}",
        amqp_hosts=cluster.other_hosts(0),
        connection_name=WORKER_CONNECTION,
        max_batch=8,
        max_wait_ms=20,
        **budgets,
    )
    # The frames queue's leader on the subscriber's node (a quorum queue's leader is
    # where it is declared): then the leader, the worker's node and the publisher's
    # node are three different nodes, and each fault hits one of them.
    await _declare_frames_queue(cluster.amqp_url(vhost, 2), settings)
    worker = Worker(settings, detector=colour_detector)
    accounting = Accounting(worker)
    publisher = FramePublisher(
        PublisherSettings(
            amqp_url=cluster.amqp_url(vhost, 1),
            amqp_hosts=cluster.other_hosts(1),
            connection_name=PUBLISHER_CONNECTION,
            heartbeat_s=HEARTBEAT_S,
            max_in_flight=4096,
            max_frame_age_ms=BUDGET_MS,
            # A queue electing a new leader holds confirms back; giving up on a frame
            # is not what is tested.
            confirm_timeout_s=60.0,
        )
    )
    subscriber = Subscriber(cluster.amqp_url(vhost, 2), cluster.other_hosts(2))
    stream = Stream(publisher)
    await worker.start()
    await subscriber.start()
    await publisher.start()
    worker_connection = f"{WORKER_CONNECTION} {settings.worker_id}"
    try:
        members = (await asyncio.to_thread(cluster.queue, vhost, settings.queue))["members"]
        assert len(members) == 3, f"the frames queue has replicas on {members} only"
        # Given frames flowing and events arriving,
        stream.start()
        await wait_until(lambda: len(subscriber.deliveries) >= FPS * STEADY_S)

        # when a node is lost,
        target = await asyncio.to_thread(
            _target, cluster, vhost, settings.queue, fault.target, worker_connection
        )
        fault_at, fault_ms = time.monotonic(), time.time() * 1000
        await asyncio.to_thread(_inject, target, fault.action)
        resumed: asyncio.Task[None] | None = None
        if fault.action == "pause":
            resumed = asyncio.create_task(_resume_after(target, fault_at + PAUSE_S))

        # then the fleet recovers: an event for a frame captured after the fault,
        def recovered() -> bool:
            return subscriber.first_event_captured_after(fault_ms) is not None

        await wait_until(recovered, timeout=90)
        back_at = subscriber.first_event_captured_after(fault_ms)
        assert back_at is not None
        recovery_s = back_at - fault_at
        # and the node comes back (a minority stays down its 30 s, the load going on),
        if fault.action == "stop":
            await asyncio.sleep(max(0.0, fault_at + MINORITY_DOWN_S - time.monotonic()))
        elif resumed is not None:
            await resumed
        await asyncio.to_thread(cluster.heal)
        healed_at = time.monotonic()
        # and events keep flowing with the cluster whole again.
        await wait_until(
            lambda: any(at > healed_at + STEADY_S for at, _ in subscriber.deliveries), timeout=60
        )
        await stream.stop()
        ledger = stream.ledger
        dead: dict[str, str] = {}
        settled: Callable[[], set[str]] = lambda: (  # noqa: E731
            subscriber.frame_ids() | accounting.stale | accounting.expired | set(dead)
        )
        # Until every confirmed frame has an outcome (the dead-letter queue read as it
        # fills); what is missing after that is reported below.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while not set(ledger.confirmed) <= settled():
                    for message in await drain_dead_letters(cluster.amqp_url(vhost, 2), 0.2):
                        reason = (message.headers or {}).get("x-reject-reason")
                        dead[str(message.message_id)] = str(reason)
                    await asyncio.sleep(0.2)
        running = worker.is_ready() and not _done(worker) and publisher.connected
        ends = await asyncio.to_thread(
            _connection_nodes,
            cluster,
            vhost,
            [worker_connection, PUBLISHER_CONNECTION, "cluster-test-subscriber"],
        )
    finally:
        with contextlib.suppress(Exception):  # a failure above is the one to report
            await stream.stop(timeout=10)
        await publisher.close()
        await worker.stop()
        await subscriber.close()

    processed = int(worker.metrics.frames_processed._value.get())
    lost = set(ledger.confirmed) - settled()
    line = (
        f"FAULT cluster {fault.action} {fault.target} node ({target.nodename}): "
        f"sent={len(ledger.sent)} confirmed={len(ledger.confirmed)} processed={processed} "
        f"events={len(subscriber.deliveries)} "
        f"frames_with_event={len(subscriber.frame_ids() & set(ledger.confirmed))} "
        f"duplicates={subscriber.duplicates()} stale={len(accounting.stale)} "
        f"expired={len(accounting.expired)} dead_lettered={len(dead)} lost={len(lost)} "
        f"not_resent_too_old={len(ledger.too_old_to_resend)} "
        f"publisher_retried={publisher.stats.retried} recovery_s={recovery_s:.1f} "
        f"crashes={0 if running else 1}"
    )
    print("\n" + line)
    assert not ledger.failed, f"publisher gave up on frames: {list(ledger.failed.values())[:3]}"
    assert not lost, f"{len(lost)} confirmed frames neither became events nor were counted"
    # Every frame is a good one: a broker fault must not cost any its event.
    assert not dead, f"frames dead-lettered: {Counter(dead.values())}"
    assert not ledger.too_old_to_resend
    assert set(ledger.confirmed) == set(ledger.sent)
    assert running, "the worker or the publisher is no longer running"
    # The clients ended connected to the cluster again.
    assert "none" not in ends.values(), ends
    assert recovery_s <= RECOVERY_TARGET_S, line


def _target(
    cluster: BrokerCluster, vhost: str, queue: str, target: str, worker_connection: str
) -> PrivateBroker:
    if target == "leader":
        name = str(cluster.queue(vhost, queue)["leader"])
    else:
        connection = worker_connection if target == "worker" else PUBLISHER_CONNECTION
        # The management API lists a new connection within its statistics interval.
        deadline = time.monotonic() + 30
        while (found := cluster.connection_node(vhost, connection)) is None:
            assert time.monotonic() < deadline, f"no connection named {connection!r} listed"
            time.sleep(0.5)
        name = found
    return cluster.node(name)


def _connection_nodes(cluster: BrokerCluster, vhost: str, names: list[str]) -> dict[str, str]:
    """The node each named connection is on, once the management API lists them all (a
    connection made by a reconnect is listed within its statistics interval)."""
    deadline = time.monotonic() + 30
    while True:
        found = {name: cluster.connection_node(vhost, name) for name in names}
        if all(found.values()) or time.monotonic() > deadline:
            return {name: node or "none" for name, node in found.items()}
        time.sleep(0.5)


def _inject(node: PrivateBroker, action: str) -> None:
    if action == "kill":
        node.kill()
    elif action == "stop":
        node.stop()
    else:
        node.pause()


async def _declare_frames_queue(url: str, settings: WorkerSettings) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await topology.declare_dead_letters(channel, settings)
        await topology.declare_frames_queue(channel, settings)


async def _resume_after(node: PrivateBroker, at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    await asyncio.to_thread(node.resume)


def _done(worker: Worker) -> bool:
    task = worker._batch_task
    return task is None or task.done()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_worker_process_says_once_that_it_lost_its_node_and_once_where_it_is_back(
    whole_cluster: BrokerCluster, colour_model_dir: Path
) -> None:
    cluster = whole_cluster
    vhost = await asyncio.to_thread(cluster.create_vhost, "cluster-log")
    settings = {
        "amqp_hosts": ",".join(cluster.other_hosts(0)),
        "reconnect_interval_s": 0.5,
    }
    url = cluster.amqp_url(vhost, 0) + f"?heartbeat={HEARTBEAT_S}"
    async with WorkerProcess(url, colour_model_dir, "log-worker", settings) as worker:
        await worker.wait_ready()
        # given a `memelearning worker` on the first node
        node = await asyncio.to_thread(
            _target, cluster, vhost, "", "worker", "memelearning-worker log-worker"
        )
        cut_at = len(worker.stderr.splitlines())
        # when that node dies
        await asyncio.to_thread(node.kill)
        async with asyncio.timeout(60):
            while "reconnected to RabbitMQ" not in worker.stderr:
                await asyncio.sleep(0.2)
        await worker.wait_ready()
        logged = worker.stderr.splitlines()[cut_at:]
    await asyncio.to_thread(cluster.heal)

    # then it warned once when it lost the node and said once, at INFO, that it was
    # back on another
    noteworthy = [line for line in logged if " WARNING " in line or " ERROR " in line]
    assert len(noteworthy) == 1, "\n".join(noteworthy)
    (lost,) = noteworthy
    (back,) = [line for line in logged if "reconnected to RabbitMQ" in line]
    assert " INFO " in back
    assert "lost the connection to RabbitMQ at " in lost
    assert "(+2 more address(es))" in lost
    assert "reconnected to RabbitMQ at " in back
    assert f"(on 127.0.0.1:{node.port})" not in back
    assert "Traceback" not in "\n".join(logged)
