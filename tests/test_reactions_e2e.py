"""End to end: published frames → worker (colour plumbing model) → reaction events →
reactions service → a recorded injection call on the meeting simulator."""

from __future__ import annotations

from typing import Any

from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.simulator import MeetingSimulator
from tests.frames import RED, make_frame, now_ms, publish_frames
from tests.workers import Worker, worker_settings


async def test_held_frames_become_a_gif_injected_into_the_meeting(
    amqp_url: str, colour_detector: Any
) -> None:
    sim = MeetingSimulator(rooms_ready=True)
    await sim.start()
    service = ReactionService(
        ReactionsSettings(
            amqp_url=amqp_url,
            meeting_api_url=sim.url,
            http_host="127.0.0.1",
            http_port=0,
        )
    )
    worker = Worker(worker_settings(amqp_url), detector=colour_detector)
    await service.start()
    await worker.start()
    try:
        # given alice holding up something red (the plumbing model's "red" maps to
        # the heart reaction in the packaged catalog) for three consecutive frames
        start = now_ms()
        frames = [
            make_frame(
                RED, meeting="e2e", participant="alice", sequence=s, capture_ms=start + s * 100
            )
            for s in range(3)
        ]
        # when the frames are published
        await publish_frames(amqp_url, frames)
        # then a heart GIF is set as an overlay in room "e2e"
        call = await sim.wait_for_call(
            lambda c: c.access_key == "e2e" and c.endpoint == "layers", timeout=30
        )
        assert call.method == "POST"
        assert "/media/gifs/heart_" in call.params["url"]
        assert (
            service.metrics.value("memelearning_reactions_confirmed_total", reaction="heart") == 1
        )
    finally:
        await worker.stop()
        await service.stop()
        await sim.stop()
