from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.broker import BROKER, Broker

if TYPE_CHECKING:
    from reactions.simulator import MeetingSimulator

pytest_plugins = ["tests.model_fixtures", "tests.broker_node"]


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
    """A fresh, empty vhost for one test; deleted (with everything in it) afterwards."""
    name = broker.create_vhost()
    yield name
    broker.delete_vhost(name)


@pytest.fixture
def amqp_url(broker: Broker, vhost: str) -> str:
    return broker.url_for(vhost)


@pytest.fixture
async def sim() -> AsyncIterator[MeetingSimulator]:
    """A local meeting-API simulator whose rooms are ready at once."""
    from reactions.simulator import MeetingSimulator

    simulator = MeetingSimulator(rooms_ready=True)
    await simulator.start()
    yield simulator
    await simulator.stop()
