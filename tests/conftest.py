from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Final

import pytest

from tests.broker import BROKER, Broker

if TYPE_CHECKING:
    from reactions.simulator import MeetingSimulator

pytest_plugins = ["tests.model_fixtures", "tests.broker_node", "tests.chart_fixtures"]

# The files that take longest (one to three minutes each on two busy cores), longest
# first. scripts/check runs pytest-xdist with `--dist loadfile --no-loadscope-reorder`:
# each worker takes the next file in collection order when it runs out, so these start
# first and the many short files fill in at the end, rather than one worker running
# the last long file alone while the other idles. Order only: a file missing from
# this list runs all the same (in its usual place, after these).
LONGEST_FILES_FIRST: Final = (
    "test_fault_cluster.py",
    "test_training.py",
    "test_gesture_model.py",
    "test_fault_quarantine.py",
    "test_fault_broker_restart.py",
    "test_bench_smoke.py",
    "test_fuzz.py",
    "test_faults_worker.py",
    "test_model_swap.py",
    "test_default_model.py",
    "test_faults_poison.py",
    "test_tls.py",
    "test_secrets.py",
    "test_frames_private.py",
    "test_hand_tracking.py",
    "test_detector.py",
    "test_faults_backlog.py",
    "test_worker_process.py",
    "test_chart.py",
)


# A test run started in the background by a script (`cmd &`) inherits SIGINT ignored,
# and so would every command the tests start and then stop with SIGINT as a person
# presses Ctrl-C (`reactions tail`, the simulator): they would never stop. Give the
# tests and their children the disposition of a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Only in an xdist worker: a plain `pytest` run keeps the alphabetical order.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    # A stable sort: the tests of one file keep their order.
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def broker() -> Broker:
    # A missing broker is a failure, never a skip: CI must not go green without it.
    try:
        BROKER.check()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return BROKER


@pytest.fixture
def vhost(broker: Broker) -> Iterator[str]:
    """A fresh vhost for one test, holding only the events exchange (as wherever a
    worker has run: reactions-side subscribers wait for it, tests/test_reactions_tail.py);
    deleted (with everything in it) afterwards."""
    name = broker.create_vhost()
    broker.declare_events_exchange(name)
    yield name
    broker.delete_vhost(name)


@pytest.fixture
def amqp_url(broker: Broker, vhost: str) -> str:
    return broker.url_for(vhost)


@pytest.fixture
def worker_url(broker: Broker, vhost: str) -> Iterator[str]:
    """The test's vhost as a broker user with exactly the worker's permissions."""
    import uuid

    from memelearning.permissions import worker_permissions

    name, password = f"test-worker-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    broker.create_user(name, password)
    try:
        broker.set_permissions(vhost, name, **worker_permissions().as_json())
        yield broker.url_as(vhost, name, password)
    finally:
        broker.delete_user(name)


@pytest.fixture
async def sim() -> AsyncIterator[MeetingSimulator]:
    """A local meeting-API simulator whose rooms are ready at once."""
    from reactions.simulator import MeetingSimulator

    simulator = MeetingSimulator(rooms_ready=True)
    await simulator.start()
    yield simulator
    await simulator.stop()
