"""The worker publishes every hand of every frame it ran through the model (one
``detections.<meeting>.<participant>`` message per frame), beside the reaction events."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import numpy as np
import numpy.typing as npt
import pytest
from aio_pika.abc import AbstractIncomingMessage
from PIL import Image

from tests.frames import BLUE, RED, EventCollector, make_frame, publish_frames
from tests.workers import Worker, worker_settings
from worker.decode import FrameFit
from worker.detector import Detection, Detector
from worker.events import (
    EVENTS_EXCHANGE,
    FrameDetections,
    detections_binding_key,
    detections_id,
)


class TwoHandsOnRed:
    """Two hands (a peace sign and a fist) on a red frame, none on any other."""

    name = "two-hands"
    version = "1"
    input_size = (32, 32)
    max_batch: int | None = None
    frame_fit: FrameFit = "stretch"

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        pass

    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]:
        return [
            [
                Detection("fist", 2, 0.7, (0.5, 0.5, 0.9, 0.9)),
                Detection("peace", 1, 0.9, (0.1, 0.1, 0.4, 0.3)),
            ]
            if image[..., 0].mean() > 128
            else []
            for image in images
        ]


class DetectionsTail:
    """Every frame-detections message of meeting ``m1``, as it arrives."""

    def __init__(self) -> None:
        self.received: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()

    async def keep(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.received.append(message)
            self._arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(60):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()


@asynccontextmanager
async def detections_tail(amqp_url: str) -> AsyncIterator[DetectionsTail]:
    tail = DetectionsTail()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=detections_binding_key("m1"))
        await queue.consume(tail.keep)
        yield tail
    finally:
        await connection.close()


async def test_every_processed_frame_has_one_detections_message_with_all_its_hands(
    amqp_url: str,
) -> None:
    worker = Worker(worker_settings(amqp_url), detector=TwoHandsOnRed())
    await worker.start()
    try:
        async with (
            detections_tail(amqp_url) as tail,
            EventCollector(amqp_url, meeting="m1") as events,
        ):
            # given a frame with two hands and one with none
            two = make_frame(RED, sequence=7)
            none = make_frame(BLUE, sequence=8)
            # when the worker processes them
            await publish_frames(amqp_url, [two, none])
            await tail.wait_for(2)
            # then each frame has its detections message: both hands, best first
            by_sequence = {
                found.sequence: (found, message)
                for message in tail.received
                for found in [FrameDetections.from_json(message.body)]
            }
            found, message = by_sequence[7]
            assert [(h.label, h.score) for h in found.hands] == [("peace", 0.9), ("fist", 0.7)]
            assert found.hands[0].box.xmax == 0.3
            assert found.frame_id == two.message_id
            assert message.message_id == str(detections_id(two.message_id))
            assert message.routing_key == "detections.m1.alice"
            # and the frame without hands says so, rather than saying nothing
            assert by_sequence[8][0].hands == ()
            # while reaction events stay one per label, for the frame with hands only
            await events.wait_for(2)
            assert sorted((e.sequence, e.label) for e in events.events) == [
                (7, "fist"),
                (7, "peace"),
            ]
    finally:
        await worker.stop()


async def test_a_letterboxing_model_gets_whole_frames_and_its_boxes_land_on_the_frame(
    amqp_url: str, tmp_path: Path
) -> None:
    from models.serving.contract_model import export_colour_model

    # Given a model that asks for letterboxed frames (4:3 input)
    model = export_colour_model(tmp_path / "m", input_size=(48, 64))
    metadata = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**metadata, "frame_fit": "letterbox"}))
    detector = Detector.load(model, default_threshold=0.05)
    # and a 16:9 frame, blue with a red block over rows 1/4..3/4 and columns 1/4..1/2
    pixels = np.zeros((72, 128, 3), np.uint8)
    pixels[...] = BLUE
    pixels[18:54, 32:64] = RED
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    worker = Worker(worker_settings(amqp_url, score_threshold=0.05), detector=detector)
    await worker.start()
    try:
        async with detections_tail(amqp_url) as tail:
            # When the worker processes it
            await publish_frames(amqp_url, [make_frame(jpeg=buffer.getvalue())])
            await tail.wait_for(1)
        found = FrameDetections.from_json(tail.received[0].body)
        hands = {hand.label: hand for hand in found.hands}
        # Then the model saw the frame between black bands: the colours cover 3/4 of
        # its input (stretched, blue alone would have covered 7/8)
        assert hands["blue"].score == pytest.approx(0.75 * 7 / 8, abs=0.03)
        assert hands["red"].score == pytest.approx(0.75 * 1 / 8, abs=0.03)
        # and the red block's box is where it lies on the frame, not on the input
        box = hands["red"].box
        assert (box.ymin, box.xmin, box.ymax, box.xmax) == pytest.approx(
            (0.25, 0.25, 0.75, 0.5), abs=0.04
        )
    finally:
        await worker.stop()
