"""One broker user per component with only the permissions of memelearning.permissions:
each component still works end to end, and each user is refused what it must not do.

Runs on the shared broker, in the test's own vhost, with users made for the test (unique
names) and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import urllib.error
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from memelearning.management import ManagementClient
from memelearning.permissions import (
    KEDA_PERMISSIONS,
    Permissions,
    component_permissions,
    worker_permissions,
)
from memelearning.settings import SettingsError
from publisher.errors import PublishError
from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE
from publisher.publishing import FramePublisher
from publisher.settings import PublisherSettings
from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.simulator import MeetingSimulator
from reactions.tail import tail
from tests.broker import Broker
from tests.frames import make_frame
from tests.workers import ThumbsUpDetector, messages_ready, worker_settings
from worker.control import CONTROL_EXCHANGE, notify_workers
from worker.events import EVENTS_EXCHANGE
from worker.models_settings import ModelsSettings
from worker.repository import ServingState
from worker.service import Worker

QUEUE = "memelearning.frames.queue"
DEAD = "memelearning.frames.dead"
TRIAGE = "memelearning.frames.triage"
QUARANTINE = "memelearning.frames.quarantine"


@dataclass(frozen=True)
class Users:
    """AMQP URLs of the test's vhost, one per component user (and the admin's)."""

    publisher: str
    worker: str
    reactions: str
    models: str
    admin: str


@pytest.fixture
def users(broker: Broker, vhost: str, amqp_url: str) -> Iterator[Users]:
    tag = uuid.uuid4().hex[:8]
    created: dict[str, str] = {}
    try:
        for component, permissions in component_permissions().items():
            name, password = f"test-{component}-{tag}", uuid.uuid4().hex
            broker.create_user(name, password)
            created[component] = name
            broker.set_permissions(vhost, name, **permissions.as_json())
            created[component + "_url"] = broker.url_as(vhost, name, password)
        yield Users(
            publisher=created["publisher_url"],
            worker=created["worker_url"],
            reactions=created["reactions_url"],
            models=created["models_url"],
            admin=amqp_url,
        )
    finally:
        for component in component_permissions():
            if component in created:
                broker.delete_user(created[component])


@asynccontextmanager
async def running_worker(url: str) -> AsyncIterator[Worker]:
    worker = Worker(worker_settings(url), detector=ThumbsUpDetector())
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@asynccontextmanager
async def tailing(url: str) -> AsyncIterator[asyncio.Queue[str]]:
    lines: asyncio.Queue[str] = asyncio.Queue()
    ready = asyncio.Event()
    task = asyncio.create_task(tail(url, lines.put_nowait, ready=ready))
    try:
        async with asyncio.timeout(60):
            done, _ = await asyncio.wait(
                [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        if task in done:
            task.result()
        yield lines
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _refused(url: str, action: Callable[[AbstractChannel], Awaitable[object]]) -> str:
    """Run ``action`` on a fresh channel as the user of ``url``; the broker's refusal."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
            await action(channel)
    return str(refused.value)


# -- each component works with its own user


async def test_every_component_works_end_to_end_with_its_own_user(
    users: Users, sim: MeetingSimulator
) -> None:
    service = ReactionService(
        ReactionsSettings(
            amqp_url=users.reactions, meeting_api_url=sim.url, http_host="127.0.0.1", http_port=0
        )
    )
    async with running_worker(users.worker), tailing(users.reactions) as lines:
        await service.start()
        try:
            settings = PublisherSettings(amqp_url=users.publisher, declare_exchange=False)
            async with FramePublisher(settings) as publisher:
                # a good frame becomes an event the reactions side receives
                await publisher.publish_and_confirm(make_frame(meeting="lp", participant="bo"))
                async with asyncio.timeout(60):
                    event = json.loads(await lines.get())
                assert (event["meeting_id"], event["label"]) == ("lp", "like")
                # a frame that is no JPEG goes to the dead-letter queue (default exchange)
                await publisher.publish_and_confirm(make_frame(jpeg=b"not a jpeg"))
            async with asyncio.timeout(60):
                while await messages_ready(users.admin, DEAD) < 1:
                    await asyncio.sleep(0.1)
            # the service consumed the same event with its own queue
            async with asyncio.timeout(60):
                while service.metrics.value("memelearning_reactions_events_total") < 1:
                    await asyncio.sleep(0.1)
        finally:
            await service.stop()
    print("worker, publisher, reactions service and tail each ran with their own user")


# -- and each is refused what it must not do


async def test_the_publisher_user_may_only_publish_frames(users: Users) -> None:
    async with running_worker(users.worker):
        pass  # the topology now exists, as in production
    url = users.publisher
    # consume frames (they are biometric data)
    print(await _refused(url, lambda ch: _consume(ch, QUEUE)))
    # delete the frames queue, or the exchange it writes to
    await _refused(url, lambda ch: ch.queue_delete(QUEUE))
    await _refused(url, lambda ch: ch.exchange_delete(FRAMES_EXCHANGE))
    # forge reaction events
    await _refused(url, lambda ch: _publish(ch, EVENTS_EXCHANGE, "reaction.m.like"))
    # declare the frames exchange: the publisher must run with DECLARE_EXCHANGE=false
    declaring = FramePublisher(PublisherSettings(amqp_url=url))
    with pytest.raises(PublishError, match="MEMELEARNING_PUBLISHER_DECLARE_EXCHANGE=false"):
        await declaring.start()


async def test_the_reactions_user_may_not_touch_frames_or_forge_events(users: Users) -> None:
    async with running_worker(users.worker):
        pass
    url = users.reactions
    await _refused(url, lambda ch: _publish(ch, FRAMES_EXCHANGE, FRAME_ROUTING_KEY))
    await _refused(url, lambda ch: _consume(ch, QUEUE))
    await _refused(url, lambda ch: _consume(ch, DEAD))
    await _refused(url, lambda ch: ch.queue_delete(QUEUE))
    await _refused(url, lambda ch: _publish(ch, EVENTS_EXCHANGE, "reaction.m.like"))
    # nor delete the events exchange (it only finds it, passively: the worker owns it)
    await _refused(url, lambda ch: ch.exchange_delete(EVENTS_EXCHANGE))
    # a queue with a name of its choosing (not server-named) either
    await _refused(url, lambda ch: ch.declare_queue("memelearning.mine"))


async def test_the_worker_user_may_not_read_events_or_the_dead_letter_queue(users: Users) -> None:
    async with running_worker(users.worker):
        pass
    url = users.worker
    # publish frames (until 2026-11-29 its write on the frames queue, which had the
    # exchange's name, allowed it)
    await _refused(url, lambda ch: _publish(ch, FRAMES_EXCHANGE, FRAME_ROUTING_KEY))
    # the dead-letter queue is for operators
    await _refused(url, lambda ch: _consume(ch, DEAD))
    # no queue of its own on the events exchange (it may not read events)
    await _refused(url, lambda ch: ch.declare_queue(exclusive=True))
    await _refused(url, lambda ch: _bind(ch, TRIAGE, EVENTS_EXCHANGE))
    # nor tell the fleet to serve another model
    await _refused(url, lambda ch: _publish(ch, CONTROL_EXCHANGE, ""))


async def test_the_models_user_may_only_tell_workers_what_serves(users: Users) -> None:
    async with running_worker(users.worker) as worker:
        # promote/rollback announce a serving state on the control exchange
        state = ServingState(revision=1, default="1")
        await notify_workers(ModelsSettings(amqp_url=users.models), "gestures", state)
        # (the worker serves a detector it was given, so it only logs the message)
        assert worker.is_ready()
    url = users.models
    await _refused(url, lambda ch: _consume(ch, QUEUE))
    await _refused(url, lambda ch: _publish(ch, FRAMES_EXCHANGE, FRAME_ROUTING_KEY))
    await _refused(url, lambda ch: _publish(ch, EVENTS_EXCHANGE, "reaction.m.like"))
    # nor listen to the control exchange (a queue of its own)
    await _refused(url, lambda ch: ch.declare_queue(exclusive=True))


async def _consume(channel: AbstractChannel, queue: str) -> None:
    async def ignore(message: AbstractIncomingMessage) -> None:
        pass

    q = await channel.get_queue(queue, ensure=False)
    await q.consume(ignore)


async def _publish(channel: AbstractChannel, exchange: str, routing_key: str) -> None:
    # A channel with confirms: the refusal arrives as the answer to this publish.
    ex = await channel.get_exchange(exchange, ensure=False)
    await ex.publish(aio_pika.Message(b"{}"), routing_key=routing_key)
    # Without confirms the refusal closes the channel a moment later.
    await channel.declare_exchange(exchange, passive=True)


async def _bind(channel: AbstractChannel, queue: str, exchange: str) -> None:
    q = await channel.get_queue(queue, ensure=False)
    await q.bind(exchange, routing_key="#")


def _alternatives(pattern: str) -> list[str]:
    """The alternatives of a pattern made by permissions.exactly (``^(a|b\\.c|d\\..+)$``),
    as written: escaped names and patterns."""
    return pattern[2:-2].split("|")


def _without(pattern: str, alternative: str) -> str:
    rest = [a for a in _alternatives(pattern) if a != alternative]
    return f"^({'|'.join(rest)})$" if rest else ""


async def test_every_grant_of_the_worker_is_needed_to_start_it(broker: Broker, vhost: str) -> None:
    """Nothing in the worker's table is there just in case: without any one name the
    worker cannot declare its topology. (Writes it needs only later, to the events
    exchange and the moves exchange, are exercised by the end-to-end test above.)"""
    full = worker_permissions().as_json()
    later = {
        ("write", re.escape(EVENTS_EXCHANGE)),
        ("write", re.escape("memelearning.frames.moves")),
    }
    checked = []
    for kind, pattern in full.items():
        for name in _alternatives(pattern):
            if (kind, name) in later:
                continue
            user, password = f"test-min-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
            broker.create_user(user, password)
            try:
                reduced = dict(full, **{kind: _without(pattern, name)})
                broker.set_permissions(vhost, user, **reduced)
                worker = Worker(
                    worker_settings(broker.url_as(vhost, user, password)),
                    detector=ThumbsUpDetector(),
                )
                # (the control exchange's refusals come with what to do about them)
                with pytest.raises((aiormq.exceptions.ChannelAccessRefused, SettingsError)):
                    await worker.start()
                await worker.stop()
            finally:
                broker.delete_user(user)
            # The topology must not exist yet for the next try to hit the same check.
            for queue in (QUEUE, TRIAGE, DEAD, QUARANTINE):
                await _delete_queue(broker.url_for(vhost), queue)
            checked.append(f"{kind} {name}")
    print("worker refused without:", "; ".join(checked))
    # Frames (exchange and queue), triage, quarantine, dead letters and events; the
    # control exchange and its own queue.
    assert len(checked) == 24


async def _delete_queue(admin_url: str, queue: str) -> None:
    connection = await aio_pika.connect(admin_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def test_the_autoscaler_user_reads_queue_depth_and_nothing_else(
    broker: Broker, vhost: str, users: Users
) -> None:
    async with running_worker(users.worker):
        pass
    user, password = f"test-keda-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    broker.create_user(user, password, tags="management")
    try:
        broker.set_permissions(vhost, user, **KEDA_PERMISSIONS.as_json())
        keda = ManagementClient(broker.url_as(vhost, user, password), broker.management_url)
        # KEDA's rabbitmq scaler (protocol http) reads the queue's message count
        assert keda.queue(vhost, QUEUE)["name"] == QUEUE
        # but it cannot touch a message over AMQP
        url = broker.url_as(vhost, user, password)
        await _refused(url, lambda ch: _consume(ch, QUEUE))
        await _refused(url, lambda ch: _publish(ch, FRAMES_EXCHANGE, FRAME_ROUTING_KEY))
        # nor purge the queue through the HTTP API
        with pytest.raises(urllib.error.HTTPError) as purge:
            keda.api("DELETE", f"queues/{urllib.parse.quote(vhost, safe='')}/{QUEUE}/contents")
        purge.value.close()  # an HTTPError holds the response's socket
        assert purge.value.code in (401, 403), purge.value
    finally:
        broker.delete_user(user)


def test_the_commands_in_docs_security_grant_exactly_these_permissions() -> None:
    """docs/security.md's rabbitmqctl lines are what operators copy: they must not drift
    from memelearning.permissions."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text()
    commands = " ".join(text.replace("\\\n", " ").splitlines())
    documented = {
        user.removeprefix("memelearning-"): Permissions(*patterns)
        for user, *patterns in (
            shlex.split(match)
            for match in re.findall(r'set_permissions -p "\$V" (\S+ +\S+ +\S+ +\S+)', commands)
        )
    }
    assert documented == {**component_permissions(), "keda": KEDA_PERMISSIONS}
