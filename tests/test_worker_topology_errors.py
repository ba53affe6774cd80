"""A queue that an older release declared with other arguments stops the worker with
one line that says what to do, not an 80-line traceback (a clean-clone demo run met it:
the triage queue was a classic queue before 2026-11-29)."""

from __future__ import annotations

import aio_pika
import pytest

from memelearning.settings import SettingsError
from tests.workers import ThumbsUpDetector, worker_settings
from worker.service import Worker


async def test_a_queue_of_an_older_release_is_one_line_naming_the_fix(amqp_url: str) -> None:
    settings = worker_settings(amqp_url)
    # given the triage queue as an older release declared it: a classic queue
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(settings.triage_queue, durable=True)
    worker = Worker(settings, detector=ThumbsUpDetector())
    try:
        # when the worker starts, then it refuses with what to do
        with pytest.raises(SettingsError) as refused:
            await worker.start()
    finally:
        await worker.stop()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("MEMELEARNING_WORKER_QUEUE: ")
    assert "other arguments" in message and "docs/operations.md" in message
    # the broker's own words say which queue and which argument
    assert "inequivalent arg" in message and settings.triage_queue in message, message
