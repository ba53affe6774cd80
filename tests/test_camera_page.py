"""Your own camera in the demo: the page captures the camera in a real (headless)
Chromium, sends frames over a WebSocket, the simulator publishes them through
FramePublisher as a participant, and the shipped model, the reactions service and the
meeting view turn a held peace sign into a GIF on that participant.

Chromium's fake camera plays a video made at test time from real frames of
hands/test (in a temporary folder, deleted afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from publisher.camera import CameraBridge, CameraFrameError, check_camera_frame
from publisher.settings import PublisherSettings
from reactions.catalog import Catalog
from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.simulator import MeetingSimulator
from tests.chromium import needs_chromium, open_page
from tests.frames import make_jpeg
from tests.workers import Worker, wait_until, worker_settings
from worker.litert import LiteRtDetector

ROOT = Path(__file__).resolve().parents[1]
HANDS = ROOT.parent / "shared" / "data" / "hands" / "test"
# Longer than the test: nothing on the page fades while a loaded machine catches up.
STEADY_S = 3600.0
# The fake camera's video: each still held for a second, like a held pose.
VIDEO_FPS = 8


def held_frames(detector: LiteRtDetector, reaction: str, count: int) -> list[Path]:
    """Frames of hands/test in which the shipped model sees ``reaction`` clearly,
    chosen with the model itself: a retrained model still gets a video it can read."""
    catalog = Catalog.load()
    height, width = detector.input_size
    chosen = []
    for path in sorted(HANDS.glob("*.jpg")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((width, height)))
        found = detector.detect(pixels[None])[0]
        if found and catalog.reaction_for(found[0].label) == reaction and found[0].score >= 0.8:
            chosen.append(path)
            if len(chosen) == count:
                return chosen
    raise AssertionError(f"hands/test has fewer than {count} clear {reaction} frames")


def write_y4m(path: Path, stills: Sequence[Path], hold: int, fps: int) -> None:
    """A YUV4MPEG2 video (what Chromium's fake camera reads) of ``stills``, each
    repeated ``hold`` times: 4:2:0, full-range BT.601 (JPEG's own colours)."""
    planes: list[bytes] = []
    size = None
    for still in stills:
        with Image.open(still) as image:
            rgb = image.convert("RGB")
        size = size or rgb.size
        y, cb, cr = rgb.resize(size).convert("YCbCr").split()
        half = (size[0] // 2, size[1] // 2)
        chroma = [np.asarray(c.resize(half, Image.Resampling.BOX)) for c in (cb, cr)]
        planes.append(b"".join(_plane(p) for p in (np.asarray(y), *chroma)))
    assert size is not None
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for plane in planes:
            for _ in range(hold):
                out.write(b"FRAME\n" + plane)


def _plane(values: npt.NDArray[np.uint8]) -> bytes:
    return np.ascontiguousarray(values, dtype=np.uint8).tobytes()


@pytest.fixture
async def camera_meeting(amqp_url: str) -> AsyncIterator[tuple[MeetingSimulator, list[Path]]]:
    """The demo on a fresh vhost: the meeting simulator with its camera bridge, the
    reactions service, and a worker serving the shipped model with LiteRT; and three
    frames of a peace sign for the camera to film."""
    detector = LiteRtDetector.load(ROOT / "models" / "default")
    # Before the worker starts: its model thread then has the detector to itself.
    stills = await asyncio.to_thread(held_frames, detector, "peace", 3)
    sim = MeetingSimulator(
        rooms_ready=True,
        camera=CameraBridge(PublisherSettings(amqp_url=amqp_url, connection_name="test-camera")),
        gesture_shown_s=STEADY_S,
        frame_kept_s=STEADY_S,
    )
    await sim.start()
    ready = asyncio.Event()
    follower = asyncio.create_task(sim.follow_events(amqp_url, ready))
    await asyncio.wait_for(ready.wait(), 30)
    service = ReactionService(
        ReactionsSettings(
            amqp_url=amqp_url,
            meeting_api_url=sim.url,
            http_host="127.0.0.1",
            http_port=0,
            display_s=STEADY_S,
        )
    )
    await service.start()
    worker = Worker(worker_settings(amqp_url), detector=detector)
    await worker.start()
    try:
        yield sim, stills
    finally:
        await worker.stop()
        await service.stop()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await sim.stop()


@needs_chromium
async def test_a_peace_sign_on_your_own_camera_becomes_a_gif_on_your_tile(
    camera_meeting: tuple[MeetingSimulator, list[Path]],
) -> None:
    sim, stills = camera_meeting
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        # given a camera that films a person holding up a peace sign
        video = Path(folder) / "camera.y4m"
        await asyncio.to_thread(write_y4m, video, stills, VIDEO_FPS, VIDEO_FPS)
        # when the page joins the meeting with that camera, as "you"
        fake_camera = (
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        )
        url = f"{sim.url}/?camera=you&meeting=demo"
        async with open_page(f"{folder}/profile", url, *fake_camera) as page:
            # then the meeting gets a peace GIF on your video
            shown = await sim.wait_for_call(
                lambda c: (
                    c.endpoint == "layers"
                    and c.method == "POST"
                    and c.params.get("participant_id") == "you"
                ),
                timeout=90,
            )
            # and your tile on the page shows it, over your camera's frame
            overlay = await page.wait_for(
                """(document.querySelector('[data-participant="you"] [data-testid="overlay"]')
                    || {}).src""",
                lambda src: bool(src),
            )
            assert overlay == shown.params["url"]
            status = await page.evaluate("document.getElementById('camera-status').textContent")
            assert "frames sent as you" in status
        assert "/media/gifs/peace_" in shown.params["url"]
        assert sim.camera is not None and sim.camera.published >= 3
        # and the meeting view shows your camera's frames with the worker's boxes
        await wait_until(lambda: _your_frame(sim) is not None)
        frame = _your_frame(sim)
        assert frame is not None and frame["analysed"]
        assert sim.state()["meetings"][0]["overlay_participant"] == "you"


def _your_frame(sim: MeetingSimulator) -> dict[str, object] | None:
    state = sim.view.state("demo", "you")["frame"]
    return state if state and state["analysed"] else None


def test_the_camera_refuses_what_the_worker_would_dead_letter() -> None:
    check_camera_frame(make_jpeg(size=(64, 48)))
    with pytest.raises(CameraFrameError, match="not a JPEG"):
        check_camera_frame(b"GIF89a" + bytes(100))
    with pytest.raises(CameraFrameError, match="over the worker's limit of 4194304"):
        check_camera_frame(b"\xff\xd8" + bytes(4 * 1024 * 1024))
    with pytest.raises(CameraFrameError, match="5000x4000 frame is over the worker's limit"):
        check_camera_frame(make_jpeg(size=(5000, 4000), quality=10))
