"""Fault tests on the API side: the meeting API answers 5xx for one meeting, hangs for
another, or is not there at all. The reactions service retries with backoff, gives up
with a failure metric, and a healthy meeting's reactions keep flowing meanwhile.
(Retry policy details are in test_reactions_injection.py; these are the outages.)

Run: python -m pytest tests/test_faults_reactions.py -x -q -s
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from reactions.meeting_api import MeetingApi, RetryPolicy, TransientError
from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.simulator import MeetingSimulator
from reactions.testing import make_event, publish_events
from tests.faults import free_port
from tests.workers import wait_until
from worker.events import ReactionEvent

T0 = 1_750_000_000_000
ATTEMPTS = 3
# The hung meeting's outage lasts at least ATTEMPTS of these: long beside what the
# healthy meeting needs to show a reaction even on a loaded machine, so "while the
# others are still retrying" holds with seconds to spare.
REQUEST_TIMEOUT_S = 4.0


def hold(meeting: str, participant: str, start: int = 1) -> list[ReactionEvent]:
    """A thumbs up held for three frames: one confirmed reaction."""
    return [
        make_event(
            meeting_id=meeting,
            participant_id=participant,
            label="like",
            sequence=s,
            capture_ms=T0 + s * 100,
        )
        for s in range(start, start + 3)
    ]


@pytest.mark.timeout(120)
async def test_a_meeting_api_down_or_hanging_gives_up_with_a_metric_and_blocks_no_other_meeting(
    amqp_url: str, sim: MeetingSimulator
) -> None:
    settings = ReactionsSettings(
        amqp_url=amqp_url,
        meeting_api_url=sim.url,
        http_host="127.0.0.1",
        http_port=0,
        display_s=0.2,
        request_timeout_s=REQUEST_TIMEOUT_S,
        max_attempts=ATTEMPTS,
        backoff_base_s=0.1,
        backoff_max_s=0.5,
        ready_poll_s=0.02,
    )
    # given one meeting whose API answers 503 to everything, one whose API hangs
    sim.fail("down", *[503] * 50)
    sim.delay("hung", 600.0)  # cut short by sim.stop(); every request times out first
    service = ReactionService(settings)
    await service.start()
    m = service.metrics

    def failures(reason: str) -> float:
        return m.value(
            "memelearning_reactions_injection_failures_total", operation="show", reason=reason
        )

    def injected() -> float:
        return m.value("memelearning_reactions_injected_total", reaction="thumbs_up", mode="layer")

    try:
        started, started_wall = time.monotonic(), time.time()
        # when each of three meetings confirms a reaction
        await publish_events(
            amqp_url, *hold("down", "alice"), *hold("hung", "alice"), *hold("healthy", "alice")
        )
        # then the healthy meeting shows it at once, while the others are still retrying
        first = await sim.wait_for_call(
            lambda c: c.access_key == "healthy" and c.endpoint == "layers" and c.method == "POST"
        )
        first_s = first.at - started_wall
        assert failures("timeout") == 0
        # and keeps showing new reactions during the outage
        await publish_events(amqp_url, *hold("healthy", "bob", start=10))
        await wait_until(lambda: injected() == 2)
        second_s = time.monotonic() - started
        assert failures("timeout") == 0, "the hung meeting should still be retrying"
        # and the broken meetings give up after their attempts, each with a failure metric
        await wait_until(lambda: failures("http_503") == 1 and failures("timeout") == 1)
        gave_up_s = time.monotonic() - started
        down_calls = sim.calls_to("down")
    finally:
        await service.stop()

    retries = m.value("memelearning_reactions_injection_retries_total")
    confirmed = m.value("memelearning_reactions_confirmed_total", reaction="thumbs_up")
    print(
        f"FAULT meeting API outage: confirmed={confirmed:g} injected={injected():g} "
        f"failed_http_503={failures('http_503'):g} failed_timeout={failures('timeout'):g} "
        f"lost={confirmed - injected() - failures('http_503') - failures('timeout'):g} "
        f"retries={retries:g} healthy_first_s={first_s:.2f} healthy_second_s={second_s:.2f} "
        f"gave_up_s={gave_up_s:.2f}"
    )
    # shown before the hung meeting's first request had even timed out
    assert first_s < REQUEST_TIMEOUT_S
    assert [c.status for c in down_calls] == [503] * ATTEMPTS
    # (ATTEMPTS - 1) retries for each broken meeting, none for the healthy one
    assert retries == 2 * (ATTEMPTS - 1)
    # every confirmed reaction is shown or counted as a failure
    assert confirmed == 4
    assert injected() + failures("http_503") + failures("timeout") == confirmed


async def test_an_unreachable_meeting_api_is_retried_with_backoff_then_reported() -> None:
    # Nothing listens on this port: every attempt is refused at once, so the time
    # spent is the backoff alone.
    url = f"http://127.0.0.1:{free_port()}"
    retries: list[float] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        # The waits the client asks for, not the wall clock: a loaded machine
        # stretches every sleep and request, never what the policy chose.
        waits.append(seconds)
        await asyncio.sleep(seconds)

    policy = RetryPolicy(max_attempts=4, base_s=0.05, max_s=1.0)
    async with aiohttp.ClientSession() as session:
        api = MeetingApi(
            session,
            url,
            retry=policy,
            sleep=sleep,
            on_retry=lambda: retries.append(time.monotonic()),
        )
        started = time.monotonic()
        with pytest.raises(TransientError) as caught:
            await api.set_layer("m1", "http://media/x.gif", 1)
        spent = time.monotonic() - started
    print(
        f"FAULT meeting API unreachable: attempts={len(retries) + 1} spent_s={spent:.3f} "
        f"backoff_s={sum(waits):.3f}"
    )
    assert caught.value.reason == "connection"
    assert len(retries) == policy.max_attempts - 1
    # one wait before each retry, exponential with full jitter: at most base·2^n each,
    # base·(1 + 2 + 4) in all
    assert len(waits) == len(retries)
    for n, wait in enumerate(waits):
        assert 0 <= wait <= policy.base_s * 2**n
    assert sum(waits) <= 0.05 * 7
