"""Frame sources keep every frame within the worker's limits from the frame contract:
an unreadable image is skipped, a picture over the pixel limit is downscaled, a JPEG
still over the byte limit is left out; each is warned about once and counted."""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from publisher.protocol import WORKER_MAX_FRAME_BYTES, WORKER_MAX_FRAME_PIXELS
from publisher.sources import ImageFolderSource, SourceError, SourceStats, VideoSource
from tests.publisher_support import write_video
from worker.settings import WorkerSettings


def _size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return image.size


def _noise(path: Path, size: tuple[int, int]) -> None:
    """An image that no JPEG quality setting makes small."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_publisher_reads_the_worker_limits_from_the_contract() -> None:
    worker = WorkerSettings()
    assert (worker.max_frame_bytes, worker.max_frame_pixels) == (
        WORKER_MAX_FRAME_BYTES,
        WORKER_MAX_FRAME_PIXELS,
    )


def test_an_unreadable_image_is_skipped_with_one_warning_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a folder with one broken file among good images
    Image.new("RGB", (32, 24), "red").save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"this is not a JPEG")
    Image.new("RGB", (32, 24), "blue").save(tmp_path / "c.png")
    source = ImageFolderSource(tmp_path, loop=True)
    # when it is shown twice over
    frames = list(itertools.islice(source.frames(), 4))
    # then the good images keep coming, and the broken one is reported once
    assert [f.index for f in frames] == [0, 2, 0, 2]
    assert _warnings(caplog) == [f"skipping {tmp_path / 'b.jpg'}: not an image Pillow can read"]
    assert source.stats == SourceStats(unreadable=1)
    assert source.report() == "skipped 1 unreadable image"


def test_a_truncated_jpeg_is_skipped_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:-40])
    Image.new("RGB", (32, 24), "red").save(tmp_path / "ok.jpg")
    frames = list(ImageFolderSource(tmp_path).frames())
    assert [f.index for f in frames] == [1]
    [message] = _warnings(caplog)
    assert message.startswith(f"skipping {tmp_path / 'cut.png'}: cannot read it")


def test_a_folder_where_nothing_can_be_sent_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(SourceError) as raised:
        list(ImageFolderSource(tmp_path, loop=True).frames())
    assert str(raised.value) == (
        f"no image in {tmp_path} can be sent (2 images tried, each unreadable or too "
        "large; see the warnings)"
    )


def test_an_image_over_the_pixel_limit_is_sent_downscaled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a JPEG of 400x300 = 120,000 pixels and a worker limit of 30,000
    Image.new("RGB", (400, 300), "red").save(tmp_path / "big.jpg")
    source = ImageFolderSource(tmp_path, max_pixels=30_000, loop=True)
    # when
    frames = list(itertools.islice(source.frames(), 3))
    # then it is sent within the limit, keeping its shape, warned about and counted once
    assert {_size(f.jpeg) for f in frames} == {(200, 150)}
    assert _warnings(caplog) == [
        f"{tmp_path / 'big.jpg'} is 400x300 pixels, over the worker's limit of 30000: "
        "sending it at 200x150"
    ]
    assert source.stats == SourceStats(downscaled=1)
    assert source.report() == "downscaled 1 image to the worker's limit of 30000 pixels"


def test_an_image_over_the_byte_limit_even_reencoded_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given an image whose JPEG cannot fit in 20,000 bytes beside one that fits
    _noise(tmp_path / "a-noise.png", (200, 200))
    Image.new("RGB", (200, 200), "red").save(tmp_path / "b-plain.jpg")
    source = ImageFolderSource(tmp_path, max_bytes=20_000, loop=True)
    # when
    frames = list(itertools.islice(source.frames(), 2))
    # then only the one that fits is sent
    assert [f.index for f in frames] == [1, 1]
    [message] = _warnings(caplog)
    assert message.startswith(f"skipping {tmp_path / 'a-noise.png'}: ")
    assert message.endswith(
        " bytes as a JPEG, over the worker's limit of 20000 (try a smaller --max-side or --quality)"
    )
    assert source.stats == SourceStats(refused=1)
    assert source.report() == "left out 1 image over the worker's limit of 20000 bytes"


def test_an_oversized_jpeg_within_the_pixel_limit_is_reencoded_to_fit(tmp_path: Path) -> None:
    # given a JPEG saved at top quality, over a byte limit its re-encoding fits in
    _noise(tmp_path / "a.jpg", (120, 90))
    original = (tmp_path / "a.jpg").read_bytes()
    source = ImageFolderSource(tmp_path, max_bytes=len(original) - 1, quality=30)
    [frame] = source.frames()
    assert len(frame.jpeg) < len(original)
    assert source.report() is None


def test_video_frames_over_the_pixel_limit_are_downscaled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(10)])
    width, height = _size(next(VideoSource(video, fps=10).frames()).jpeg)
    limit = width * height // 4
    # when
    source = VideoSource(video, fps=10, max_pixels=limit)
    frames = list(source.frames())
    # then every frame fits, one warning says so and each frame is counted
    assert len(frames) == 10
    assert {_size(f.jpeg) for f in frames} == {(width // 2, height // 2)}
    assert _warnings(caplog) == [
        f"{video}: frames are {width}x{height} pixels, over the worker's limit of {limit}: "
        f"sending them at {width // 2}x{height // 2}"
    ]
    assert source.report() == f"downscaled 10 frames to the worker's limit of {limit} pixels"


def test_video_frames_over_the_byte_limit_are_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(5)])
    source = VideoSource(video, fps=10, max_bytes=10)
    assert list(source.frames()) == []
    [message] = _warnings(caplog)
    assert message.startswith(
        f"{video}: leaving out frames over the worker's limit of 10 bytes as a JPEG (the first, "
        "at 0.00 s, is "
    )
    assert source.stats == SourceStats(refused=5)
    assert source.report() == "left out 5 frames over the worker's limit of 10 bytes"
