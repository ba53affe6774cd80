"""Several broker addresses (`…_AMQP_HOSTS`, a cluster's nodes): how the setting reads,
the URLs made from it, and the first address that answers being the one used. (Moving
to the next node when one is lost: tests/test_fault_cluster.py.)"""

from __future__ import annotations

import aio_pika
import pytest

from memelearning.amqp import (
    CONNECT_HOOK,
    BrokerConnectError,
    cluster_urls,
    connect_robust,
    rotates_addresses,
)
from memelearning.settings import SettingsError, load_settings
from tests.broker_node import free_port
from worker.settings import WorkerSettings


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("rabbit-1:5672, rabbit-2", ["rabbit-1:5672", "rabbit-2"]),
        ('["rabbit-1:5672", "[::1]:5673"]', ["rabbit-1:5672", "[::1]:5673"]),
        ("", []),
    ],
)
def test_the_addresses_read_comma_separated_or_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch, value: str, hosts: list[str]
) -> None:
    monkeypatch.setenv("MEMELEARNING_WORKER_AMQP_HOSTS", value)
    assert load_settings(WorkerSettings).amqp_hosts == hosts


def test_an_address_that_is_not_host_and_port_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMELEARNING_WORKER_AMQP_HOSTS", "rabbit-1:5672,amqp://rabbit-2/")
    with pytest.raises(
        SettingsError, match=r"MEMELEARNING_WORKER_AMQP_HOSTS: .*'amqp://rabbit-2/'"
    ):
        load_settings(WorkerSettings)


def test_each_address_keeps_the_urls_credentials_vhost_and_parameters() -> None:
    urls = cluster_urls("amqps://u:p%40ss@r0:5671/v%2F1?heartbeat=5", ["r1", "r2:6000"])
    assert urls == [
        "amqps://u:p%40ss@r0:5671/v%2F1?heartbeat=5",
        "amqps://u:p%40ss@r1:5671/v%2F1?heartbeat=5",
        "amqps://u:p%40ss@r2:6000/v%2F1?heartbeat=5",
    ]
    assert cluster_urls("amqp://r0/", ["r1"]) == ["amqp://r0/", "amqp://r1:5672/"]


async def test_the_first_address_that_answers_is_used(amqp_url: str) -> None:
    # given a first node that is down and a second that is up
    down = amqp_url.replace(":5672/", f":{free_port()}/")
    up = amqp_url.split("@", 1)[1].split("/", 1)[0]
    # when connecting
    connection = await connect_robust(down, other_hosts=[up])
    try:
        # then the connection is on the second
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
        assert getattr(connection, "address", None) == up
    finally:
        await connection.close()


async def test_no_address_answering_is_one_line_naming_the_first(amqp_url: str) -> None:
    ports = [free_port(), free_port()]
    url = amqp_url.replace(":5672/", f":{ports[0]}/")
    with pytest.raises(BrokerConnectError) as caught:
        await connect_robust(url, other_hosts=[f"127.0.0.1:{ports[1]}"], setting="THE_URL")
    message = str(caught.value)
    assert "\n" not in message
    assert f"nothing listens on 127.0.0.1:{ports[0]}" in message
    assert message.endswith("(the 1 other address(es) did not answer either)")
    assert "guest:guest" not in message


def test_the_installed_aio_pika_moves_reconnects_round_the_addresses() -> None:
    # Moving a lost connection to the next node rests on a private method of aio-pika's
    # RobustConnection: an upgrade that renames it must fail here, not in production.
    assert rotates_addresses(), f"aio-pika {aio_pika.__version__} lacks {CONNECT_HOOK}"


async def test_several_addresses_without_the_hook_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(aio_pika.RobustConnection, CONNECT_HOOK)
    with pytest.raises(BrokerConnectError) as caught:
        await connect_robust("amqp://r0/", other_hosts=["r1"])
    message = str(caught.value)
    assert "\n" not in message and "install aio-pika 9.4-10.x" in message
