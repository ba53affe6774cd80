"""``reactions tail`` against the real broker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from memelearning.amqp import BrokerConnectError
from reactions.tail import tail
from reactions.testing import make_event, publish_events, publish_raw
from tests.broker import Broker


class Tail:
    def __init__(self) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def next_line(self) -> dict[str, object]:
        line = await asyncio.wait_for(self.lines.get(), timeout=30)
        parsed: dict[str, object] = json.loads(line)
        return parsed


async def _start(
    amqp_url: str, *, meeting: str | None = None, label: str | None = None
) -> AsyncIterator[Tail]:
    t = Tail()
    ready = asyncio.Event()
    t.task = asyncio.create_task(
        tail(amqp_url, t.lines.put_nowait, ready=ready, meeting=meeting, label=label)
    )
    await asyncio.wait_for(ready.wait(), timeout=30)
    yield t
    t.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t.task


@pytest.fixture
async def all_events(amqp_url: str) -> AsyncIterator[Tail]:
    async for t in _start(amqp_url):
        yield t


async def test_prints_each_event_as_one_json_line(amqp_url: str, all_events: Tail) -> None:
    # given a tail on all meetings
    event = make_event(meeting_id="standup", label="palm")
    # when an event is published
    await publish_events(amqp_url, event)
    # then it comes out as one JSON line with the same content
    line = await all_events.next_line()
    assert line["event_id"] == str(event.event_id)
    assert line["meeting_id"] == "standup"
    assert line["label"] == "palm"


async def test_invalid_messages_are_warned_about_and_skipped(
    amqp_url: str, all_events: Tail, caplog: pytest.LogCaptureFixture
) -> None:
    # given a tail, when garbage, a schema violation and then a good event arrive
    caplog.set_level(logging.WARNING, logger="reactions.tail")
    await publish_raw(amqp_url, "reaction.m1.like", b"{not json")
    await publish_raw(amqp_url, "reaction.m1.like", json.dumps({"label": "like"}).encode())
    good = make_event()
    await publish_events(amqp_url, good)
    # then only the good one is printed, the tail still runs, and both bad ones warned
    line = await all_events.next_line()
    assert line["event_id"] == str(good.event_id)
    warnings = [r for r in caplog.records if "not a reaction event" in r.getMessage()]
    assert len(warnings) == 2
    assert all_events.task is not None
    assert not all_events.task.done()


async def test_filters_by_meeting_and_label(amqp_url: str) -> None:
    # given a tail on meeting m2, label ok
    async for t in _start(amqp_url, meeting="m2", label="ok"):
        # when events for other meetings and labels precede a matching one
        wanted = make_event(meeting_id="m2", label="ok")
        await publish_events(
            amqp_url,
            make_event(meeting_id="m1", label="ok"),
            make_event(meeting_id="m2", label="like"),
            wanted,
        )
        # then the first line is the matching one, and nothing else is queued
        line = await t.next_line()
        assert line["event_id"] == str(wanted.event_id)
        assert t.lines.empty()


async def test_cli_tail_prints_json_lines(amqp_url: str) -> None:
    # given the real command running as a process
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memelearning",
        "reactions",
        "tail",
        # The URL holds a password: from the environment, never the command line.
        env={**os.environ, "MEMELEARNING_REACTIONS_AMQP_URL": amqp_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        event = make_event(meeting_id="cli")
        reader = asyncio.create_task(process.stdout.readline())
        # when events are published (until one arrives: the process binds its queue at
        # a moment we cannot observe from here, seconds away on a loaded machine)
        async with asyncio.timeout(90):
            while not reader.done():
                await publish_events(amqp_url, event)
                await asyncio.wait({reader}, timeout=0.2)
        # then stdout carries the event as one JSON line
        assert json.loads(await reader)["event_id"] == str(event.event_id)
    finally:
        process.terminate()
        await process.wait()


async def test_a_broker_lost_before_the_subscription_is_one_line_not_a_traceback(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a broker that goes away between connecting and subscribing (what aio-pika
    # raises when the transport is gone under a channel call)
    module = sys.modules[tail.__module__]  # the package re-exports `tail`, hiding it

    async def subscribe_without_a_transport(channel, keys):  # type: ignore[no-untyped-def]
        raise ChannelInvalidStateError("No active transport in channel")

    monkeypatch.setattr(module, "subscribe", subscribe_without_a_transport)
    # when the tail starts, then it fails with one line naming the broker, no password
    with pytest.raises(BrokerConnectError) as failed:
        await asyncio.wait_for(tail(amqp_url, print), timeout=30)
    message = str(failed.value)
    assert "\n" not in message and "before the tail was subscribed" in message
    assert "guest:guest" not in message


async def test_a_tail_started_before_any_worker_waits_for_the_events_exchange(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # given a vhost where no worker has run yet: no events exchange
    caplog.set_level(logging.INFO, logger="reactions.subscription")
    vhost = broker.create_vhost()
    try:
        url = broker.url_for(vhost)
        t = Tail()
        ready = asyncio.Event()
        t.task = asyncio.create_task(tail(url, t.lines.put_nowait, ready=ready))
        # when the tail starts, it says once that it waits for a worker
        async with asyncio.timeout(30):
            while not any("does not exist yet" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
        assert not ready.is_set()
        # and once a worker has declared the exchange, it subscribes and prints events
        broker.declare_events_exchange(vhost)
        await asyncio.wait_for(ready.wait(), timeout=30)
        event = make_event(meeting_id="early", label="like")
        await publish_events(url, event)
        assert (await t.next_line())["event_id"] == str(event.event_id)
        waiting = [r for r in caplog.records if "does not exist yet" in r.getMessage()]
        assert len(waiting) == 1
        assert any("is there now" in r.getMessage() for r in caplog.records)
        t.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t.task
    finally:
        broker.delete_vhost(vhost)
