"""Frame sources (image folder, video file) and the participant simulator."""

from __future__ import annotations

import asyncio
import io
import itertools
import sys
from contextlib import aclosing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from publisher.simulation import ParticipantSimulator, participant_names
from publisher.sources import ImageFolderSource, SourceError, VideoSource, open_source
from tests.publisher_support import PERSON, write_video


def _image(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def _shown_time(jpeg: bytes) -> float:
    """The presentation time a frame of write_video shows, read back from its colour."""
    red = float(np.asarray(_image(jpeg))[..., 0].mean())
    return red / 255 * 3


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 3 s: the first half at 30 fps, the second at 10 fps, so sampling by presentation
    # time and taking every k-th frame give different frames.
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, [i / 30 for i in range(45)] + [1.5 + i / 10 for i in range(15)])
    return path


def test_folder_source_yields_every_image_once_in_name_order() -> None:
    source = ImageFolderSource(PERSON)
    frames = list(source.frames())
    names = sorted(p.name for p in PERSON.iterdir() if p.suffix == ".jpg")
    assert len(frames) == len(names) > 10
    assert [f.index for f in frames] == list(range(len(names)))
    # the real frames are already baseline JPEGs that fit: sent byte for byte
    assert frames[0].jpeg == (PERSON / names[0]).read_bytes()


def test_folder_source_downscales_to_the_longest_side() -> None:
    frames = list(itertools.islice(ImageFolderSource(PERSON, max_side=160).frames(), 5))
    for frame in frames:
        image = _image(frame.jpeg)
        assert image.format == "JPEG"
        assert max(image.size) == 160


def test_folder_source_reencodes_png_to_jpeg(tmp_path: Path) -> None:
    Image.new("RGBA", (40, 30), (10, 200, 10, 255)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "b.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(ImageFolderSource(tmp_path, quality=90).frames())
    assert [_image(f.jpeg).format for f in frames] == ["JPEG", "JPEG"]
    assert _image(frames[0].jpeg).getpixel((20, 15))[1] > 150  # type: ignore[index]


def test_folder_source_starts_part_way_and_wraps_around() -> None:
    source = ImageFolderSource(PERSON)
    plain = [f.jpeg for f in source.frames()]
    half = len(plain) // 2
    rotated = [f.jpeg for f in source.frames(start=0.5)]
    assert rotated == plain[half:] + plain[:half]


def test_a_looping_folder_source_repeats() -> None:
    source = ImageFolderSource(PERSON, loop=True)
    count = len(source)
    frames = list(itertools.islice(source.frames(), count + 2))
    assert [f.jpeg for f in frames[count:]] == [f.jpeg for f in frames[:2]]


def test_an_empty_folder_or_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="holds no"):
        ImageFolderSource(tmp_path)
    with pytest.raises(SourceError, match="neither a video file nor a folder"):
        open_source(tmp_path / "missing.mp4", fps=2)
    (tmp_path / "not-a-video.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(tmp_path / "not-a-video.mp4", fps=2)


def test_a_video_without_pyav_installed_is_a_clear_error(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PyAV is the `video` extra: an environment without it (the slim worker's) still
    # publishes image folders, and names the extra when asked to read a video.
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(SourceError, match=r"memelearning\[video\]"):
        open_source(video, fps=2)
    assert open_source(PERSON, fps=2) is not None


def test_video_is_sampled_by_presentation_time(video: Path) -> None:
    frames = list(VideoSource(video, fps=2).frames())
    assert [f.time_s for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    # and each JPEG really is the frame shown at that time
    assert [round(_shown_time(f.jpeg), 1) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_video_frames_are_reencoded_with_the_given_size(video: Path) -> None:
    [frame] = itertools.islice(VideoSource(video, fps=1, max_side=32).frames(), 1)
    image = _image(frame.jpeg)
    assert (image.format, image.size) == ("JPEG", (32, 24))


def test_video_starts_part_way_and_loops(video: Path) -> None:
    source = VideoSource(video, fps=2, loop=True)
    times = [f.time_s for f in itertools.islice(source.frames(start=0.5), 12)]
    assert times[0] is not None
    assert 1.3 <= times[0] <= 1.6
    assert times[1] is not None
    assert times[1] > times[0]
    # it wraps to the beginning within the first pass and keeps going after it
    assert 0.0 in times[1:8]
    assert times.count(times[0]) >= 2


async def test_simulated_participants_are_paced_and_spread_in_phase() -> None:
    # given 3 participants at 10 fps each, 4 frames each
    source = ImageFolderSource(PERSON, max_side=64, loop=True)
    sim = ParticipantSimulator(
        source, meeting_id="m1", participants=participant_names(3), fps=10, count=4
    )
    loop = asyncio.get_running_loop()
    # when
    arrivals, frames = [], []
    start = loop.time()
    async with aclosing(sim.frames()) as stream:
        async for frame in stream:
            arrivals.append(loop.time() - start)
            frames.append(frame)
    # then frames come round-robin, one every 1/30 s, none early and none far behind
    # (the bound on lateness is loose: reading and resizing a frame took 0.15 s in a
    # clean-clone run on a loaded machine; "never early" and the capture times below
    # are what show the pacing)
    assert [(f.participant_id, f.sequence) for f in frames] == [
        (f"p{i % 3 + 1}", i // 3) for i in range(12)
    ]
    for tick, arrived in enumerate(arrivals):
        assert tick / 30 - 0.002 <= arrived <= tick / 30 + 1.0
    capture = [f.capture_ms for f in frames]
    assert capture == sorted(capture)
    assert 300 <= capture[-1] - capture[0] <= 470  # 11 ticks of 33 ms
    # and the participants start at different places in the source
    assert len({f.jpeg for f in frames[:3]}) == 3


async def test_the_simulator_stops_after_the_duration(video: Path) -> None:
    sim = ParticipantSimulator(
        VideoSource(video, fps=20, loop=True),
        meeting_id="m1",
        participants=["alice", "bob"],
        fps=20,
        duration_s=0.2,
    )
    async with aclosing(sim.frames()) as stream:
        frames = [frame async for frame in stream]
    assert [f.participant_id for f in frames] == ["alice", "bob"] * 4


async def test_a_source_that_does_not_loop_ends_the_simulation(tmp_path: Path) -> None:
    for name in "abc":
        Image.new("RGB", (8, 8), (0, 0, 0)).save(tmp_path / f"{name}.png")
    sim = ParticipantSimulator(
        ImageFolderSource(tmp_path), meeting_id="m1", participants=["alice"], fps=100
    )
    async with aclosing(sim.frames()) as stream:
        frames = [frame async for frame in stream]
    assert [f.sequence for f in frames] == [0, 1, 2]


@pytest.mark.parametrize(
    ("meeting", "participants", "fps", "message"),
    [
        ("m.1", ["alice"], 2.0, "meeting id"),
        ("m1", ["al ice"], 2.0, "participant id"),
        ("m1", ["alice", "alice"], 2.0, "unique"),
        ("m1", [], 2.0, "at least one"),
        ("m1", ["alice"], 0.0, "fps"),
    ],
)
def test_the_simulator_rejects_bad_arguments(
    meeting: str, participants: list[str], fps: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ParticipantSimulator(
            ImageFolderSource(PERSON), meeting_id=meeting, participants=participants, fps=fps
        )


def test_an_image_folder_can_hold_each_image_for_several_frames(tmp_path: Path) -> None:
    for name, colour in (("a.jpg", "red"), ("b.jpg", "blue")):
        Image.new("RGB", (32, 24), colour).save(tmp_path / name, "JPEG")
    held = list(ImageFolderSource(tmp_path, hold=3).frames())
    assert [f.index for f in held] == [0, 0, 0, 1, 1, 1]
    assert len({f.jpeg for f in held[:3]}) == 1 and held[0].jpeg != held[3].jpeg
    with pytest.raises(ValueError, match="hold"):
        ImageFolderSource(tmp_path, hold=0)
