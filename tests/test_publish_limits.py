"""``memelearning publish`` with sources holding what the worker would refuse: an
unreadable file does not stop the stream, a picture over the worker's pixel limit is
sent downscaled, and the end summary says so (against the real broker)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from memelearning.cli import main
from publisher.protocol import WORKER_MAX_FRAME_PIXELS
from tests.publisher_support import frames_queue
from worker.decode import decode_into


@pytest.fixture
def env_url(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MEMELEARNING_PUBLISHER_AMQP_URL", amqp_url)
    return amqp_url


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _summary_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("published ", "source: "))]


async def test_an_unreadable_file_is_skipped_and_the_loop_goes_on(
    env_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a folder with a broken file between two good images
    Image.new("RGB", (32, 24), "red").save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    Image.new("RGB", (32, 24), "blue").save(tmp_path / "c.jpg")
    argv = ["publish", "--meeting", "m1", "--fps", "50", "--count", "5", "--loop"]
    async with frames_queue(env_url) as queue:
        # when
        code = await asyncio.to_thread(main, [*argv, "--no-progress", str(tmp_path)])
        messages = await queue.drain()
    # then every frame asked for was sent, from the good images, and the broken file
    # is named once and counted in the summary
    assert code == 0
    assert len(messages) == 5
    assert _warnings(caplog) == [f"skipping {tmp_path / 'b.jpg'}: not an image Pillow can read"]
    published, source = _summary_lines(capsys.readouterr().out)
    assert published.startswith("published 5, confirmed 5, failed 0 ")
    assert source == "source: skipped 1 unreadable image"


async def test_a_picture_over_the_worker_pixel_limit_is_sent_downscaled(
    env_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a photo just over the worker's default limit (4096 x 4096 pixels)
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((4100, 4200, 3), 90, np.uint8)).save(big)
    argv = ["publish", "--meeting", "m1", "--fps", "50", "--count", "1", "--no-progress"]
    async with frames_queue(env_url) as queue:
        # when
        code = await asyncio.to_thread(main, [*argv, str(tmp_path)])
        [message] = await queue.drain()
    # then the frame sent is one the worker decodes, and the publisher says what it did
    assert code == 0
    height, width = decode_into(
        message.body, np.zeros((8, 8, 3), np.uint8), max_pixels=WORKER_MAX_FRAME_PIXELS
    )
    assert width * height <= WORKER_MAX_FRAME_PIXELS
    assert (width, height) == (4145, 4046)
    assert _warnings(caplog) == [
        f"{big} is 4200x4100 pixels, over the worker's limit of 16777216: sending it at 4145x4046"
    ]
    assert _summary_lines(capsys.readouterr().out)[1] == (
        "source: downscaled 1 image to the worker's limit of 16777216 pixels"
    )


async def test_a_folder_where_no_image_can_be_sent_stops_with_one_line(
    env_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    argv = ["publish", "--meeting", "m1", "--fps", "50", "--loop", "--no-progress"]
    async with frames_queue(env_url):
        code = await asyncio.to_thread(main, [*argv, str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines() == [
        f"memelearning publish: no image in {tmp_path} can be sent (1 image tried, "
        "each unreadable or too large; see the warnings)"
    ]
    assert _summary_lines(captured.out)[1] == "source: skipped 1 unreadable image"
