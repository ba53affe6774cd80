"""FramePublisher against a real broker: confirms, the in-flight window, failures and
reconnects."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from publisher import (
    BrokerUnavailableError,
    FrameExpiredError,
    FrameNackedError,
    FramePublisher,
    FrameUnroutableError,
    PublishError,
    PublisherSettings,
)
from publisher.protocol import FrameMeta, parse_frame
from tests.broker import Broker
from tests.publisher_support import frames_queue, make_frame


def _settings(amqp_url: str, **overrides: Any) -> PublisherSettings:
    overrides.setdefault("connection_name", "publisher-test")
    return PublisherSettings(amqp_url=amqp_url, **overrides)


def _connections(broker: Broker, vhost: str, name: str) -> list[dict[str, Any]]:
    quoted = urllib.parse.quote(vhost, safe="")
    found: list[dict[str, Any]] = broker.api("GET", f"vhosts/{quoted}/connections")
    return [c for c in found if c["client_properties"].get("connection_name") == name]


def _wait_for_connection(broker: Broker, vhost: str, name: str) -> None:
    """Return once the management API lists a client connection called ``name`` (its
    statistics lag up to their collection interval, 5 s, behind; more under load)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _connections(broker, vhost, name):
            return
        time.sleep(0.05)
    raise AssertionError(f"no connection named {name!r} in vhost {vhost}")


@dataclass(frozen=True)
class _User:
    """A broker user of its own, so a test can cut off exactly its own connections."""

    broker: Broker
    vhost: str
    name: str
    url: str

    def _permissions_path(self) -> str:
        return (
            f"permissions/{urllib.parse.quote(self.vhost, safe='')}/"
            f"{urllib.parse.quote(self.name, safe='')}"
        )

    def grant(self) -> None:
        self.broker.api(
            "PUT", self._permissions_path(), {"configure": ".*", "write": ".*", "read": ".*"}
        )

    def revoke(self) -> None:
        """New connections to the vhost are refused until grant()."""
        self.broker.api("DELETE", self._permissions_path())

    def disconnect(self) -> None:
        """Close the user's connections as an operator would from the management UI."""
        self.broker.api("DELETE", f"connections/username/{urllib.parse.quote(self.name, safe='')}")


@pytest.fixture
def user(broker: Broker, vhost: str, amqp_url: str) -> Iterator[_User]:
    name = f"pub-{vhost}"
    broker.api("PUT", f"users/{urllib.parse.quote(name, safe='')}", {"password": "pw", "tags": ""})
    parts = urllib.parse.urlsplit(amqp_url)
    url = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{name}:pw@{parts.hostname}:{parts.port or 5672}")
    )
    created = _User(broker, vhost, name, url)
    created.grant()
    yield created
    broker.api("DELETE", f"users/{urllib.parse.quote(name, safe='')}")


async def _until_disconnected(pub: FramePublisher) -> None:
    # aio-pika has no awaitable for "connection lost"; the client notices within ms.
    async with asyncio.timeout(30):
        while pub.connected:
            await asyncio.sleep(0.002)


async def test_a_confirmed_frame_arrives_exactly_as_the_contract_says(amqp_url: str) -> None:
    # given a queue bound to the frames exchange
    frame = make_frame(7)
    async with frames_queue(amqp_url) as queue, FramePublisher(_settings(amqp_url)) as pub:
        # when
        await pub.publish_and_confirm(frame)
        [message] = await queue.drain()
    # then the body is the JPEG itself and the envelope parses back to the frame
    assert message.body == frame.jpeg
    assert parse_frame(
        body=message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        headers=message.headers,
    ) == FrameMeta(frame.message_id, "m1", "alice", frame.capture_ms, 7)
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert message.timestamp == datetime.fromtimestamp(frame.capture_ms // 1000, tz=UTC)
    assert pub.stats.confirmed == 1
    assert pub.stats.failed == 0


async def test_published_frames_are_all_confirmed_in_order(amqp_url: str) -> None:
    frames = [make_frame(i) for i in range(60)]
    async with frames_queue(amqp_url) as queue:
        async with FramePublisher(_settings(amqp_url, max_in_flight=16)) as pub:
            for frame in frames:
                await pub.publish(frame)
            await pub.flush()
            assert pub.in_flight == 0
        received = await queue.drain()
    assert [m.message_id for m in received] == [f.message_id for f in frames]
    assert (pub.stats.published, pub.stats.confirmed, pub.stats.failed) == (60, 60, 0)


async def test_the_in_flight_window_is_bounded(amqp_url: str) -> None:
    # given a window of 4
    async with frames_queue(amqp_url), FramePublisher(_settings(amqp_url, max_in_flight=4)) as pub:
        window, unconfirmed = [], []
        # when frames are published as fast as publish() lets us
        for i in range(200):
            await pub.publish(make_frame(i))
            window.append(pub.in_flight)
            unconfirmed.append(pub.stats.published - pub.stats.confirmed - pub.stats.failed)
        await pub.flush()
    # then the window filled up but never overflowed
    assert max(window) == 4
    assert max(unconfirmed) <= 4
    assert pub.stats.confirmed == 200


async def test_an_unroutable_frame_tells_the_operator_to_start_a_worker(amqp_url: str) -> None:
    # given the exchange exists but no queue is bound to it
    async with frames_queue(amqp_url, bind=False), FramePublisher(_settings(amqp_url)) as pub:
        # when / then
        with pytest.raises(FrameUnroutableError, match="no worker has declared its queue"):
            await pub.publish_and_confirm(make_frame(0))
        # and a frame that failed after publish() returned is raised by flush()
        await pub.publish(make_frame(1))
        with pytest.raises(FrameUnroutableError) as raised:
            await pub.flush()
        assert raised.value.frame is not None
        assert raised.value.frame.sequence == 1
        await pub.flush()  # raised once, not again
    assert pub.stats.returned == 2


async def test_an_earlier_failure_is_raised_by_a_later_publish(amqp_url: str) -> None:
    # given frames that cannot be routed, published without waiting for their confirms
    async with frames_queue(amqp_url, bind=False):
        pub = FramePublisher(_settings(amqp_url))
        await pub.start()
        taken = 0
        try:
            with pytest.raises(FrameUnroutableError):  # noqa: PT012
                # when publishing goes on, then a later publish() raises the first failure
                for i in range(10_000):
                    await pub.publish(make_frame(i))
                    taken += 1
                    await asyncio.sleep(0)
        finally:
            await pub.close()
    # and the frame passed to the raising call was not taken
    assert pub.stats.published == taken


async def test_a_missing_exchange_is_reported_when_the_publisher_may_not_declare_it(
    amqp_url: str,
) -> None:
    # given no exchange at all, and a publisher told not to declare it
    settings = _settings(amqp_url, declare_exchange=False)
    async with FramePublisher(settings) as pub:
        with pytest.raises(FrameUnroutableError, match="does not exist"):
            await pub.publish_and_confirm(make_frame(0))


async def test_a_write_only_user_publishes_without_declaring(
    broker: Broker, vhost: str, amqp_url: str
) -> None:
    # given a user that may only write, and the exchange declared by someone else
    user = f"writer-{vhost}"
    quoted_user = urllib.parse.quote(user, safe="")
    broker.api("PUT", f"users/{quoted_user}", {"password": "pw", "tags": ""})
    broker.api(
        "PUT",
        f"permissions/{urllib.parse.quote(vhost, safe='')}/{quoted_user}",
        {"configure": "^$", "write": ".*", "read": "^$"},
    )
    parts = urllib.parse.urlsplit(amqp_url)
    writer_url = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{user}:pw@{parts.hostname}:{parts.port or 5672}")
    )
    try:
        async with frames_queue(amqp_url) as queue:
            # when it publishes without declaring, it works
            async with FramePublisher(_settings(writer_url, declare_exchange=False)) as pub:
                await pub.publish_and_confirm(make_frame(0))
            assert len(await queue.drain()) == 1
            # and declaring fails with advice
            with pytest.raises(PublishError, match="DECLARE_EXCHANGE=false"):
                await FramePublisher(_settings(writer_url)).start()
    finally:
        broker.api("DELETE", f"users/{quoted_user}")


async def test_a_full_queue_that_rejects_publishes_nacks_the_frame(amqp_url: str) -> None:
    # given a queue that holds one frame and refuses more
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    async with (
        frames_queue(amqp_url, arguments=arguments),
        FramePublisher(_settings(amqp_url)) as pub,
    ):
        await pub.publish_and_confirm(make_frame(0))
        # when / then
        with pytest.raises(FrameNackedError, match="queue is probably full"):
            await pub.publish_and_confirm(make_frame(1))
    assert (pub.stats.confirmed, pub.stats.nacked) == (1, 1)


async def test_the_connection_is_named_in_the_management_ui(
    broker: Broker, vhost: str, amqp_url: str
) -> None:
    async with FramePublisher(_settings(amqp_url, connection_name="mcu-7")):
        await asyncio.to_thread(_wait_for_connection, broker, vhost, "mcu-7")
        assert len(_connections(broker, vhost, "mcu-7")) == 1


async def test_frames_survive_a_broker_outage(user: _User, amqp_url: str) -> None:
    # given a publisher streaming frames (re-sent however long the outage lasts on a
    # loaded machine: dropping old frames has its own test below)
    settings = _settings(
        user.url, max_in_flight=8, reconnect_interval_s=0.1, max_frame_age_ms=120_000
    )
    sent: list[str] = []

    async def outage() -> None:
        await asyncio.to_thread(user.revoke)
        await asyncio.to_thread(user.disconnect)
        await asyncio.sleep(0.3)  # how long the broker stays unreachable
        await asyncio.to_thread(user.grant)

    async with frames_queue(amqp_url) as queue:
        async with FramePublisher(settings) as pub:
            for _ in range(50):
                frame = make_frame(len(sent))
                await pub.publish(frame)
                sent.append(frame.message_id)
            # when its connection is closed and refused for a while, and frames keep coming
            # (until the outage is over, however long the broker's API takes to get there)
            cut = asyncio.create_task(outage())
            while len(sent) < 150 or not cut.done():
                frame = make_frame(len(sent))
                await pub.publish(frame)  # blocks while the window is full
                sent.append(frame.message_id)
                assert pub.in_flight <= 8
                await asyncio.sleep(0.002)
            await cut
            await pub.flush()
        # then every frame is confirmed, some after being re-sent on a new connection
        assert (pub.stats.confirmed, pub.stats.failed) == (len(sent), 0)
        assert pub.stats.retried > 0
        received = await queue.drain()
    assert {m.message_id for m in received} == set(sent)


async def test_frames_too_old_to_resend_are_dropped_and_counted(user: _User, amqp_url: str) -> None:
    # given frames that go stale fast
    settings = _settings(user.url, max_frame_age_ms=100, reconnect_interval_s=0.2)
    async with frames_queue(amqp_url) as queue, FramePublisher(settings) as pub:
        await pub.publish_and_confirm(make_frame(0))
        # when the broker is unreachable for longer than that
        await asyncio.to_thread(user.revoke)
        await asyncio.to_thread(user.disconnect)
        await _until_disconnected(pub)
        # then frames published meanwhile expire instead of being re-sent
        with pytest.raises(FrameExpiredError):
            await pub.publish_and_confirm(make_frame(1))
        await pub.publish(make_frame(2))
        await pub.flush()  # a stale drop is counted, not raised
        assert pub.stats.dropped_stale == 2
        # and once the broker is back, fresh frames go through again
        await asyncio.to_thread(user.grant)
        await pub.ready()
        await pub.publish_and_confirm(make_frame(3))
        received = await queue.drain()
    assert [m.headers["x-sequence"] for m in received] == [0, 3]


async def test_an_unreachable_broker_is_a_clear_error_without_the_password() -> None:
    settings = PublisherSettings(amqp_url="amqp://mcu:s3cret@127.0.0.1:1/")
    with pytest.raises(BrokerUnavailableError, match="cannot connect") as raised:
        await FramePublisher(settings).start()
    assert "s3cret" not in str(raised.value)


async def test_publishing_needs_a_started_publisher() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await FramePublisher(PublisherSettings()).publish(make_frame(0))
