"""Where simulated camera frames come from: a folder of images or a video file, turned
into JPEG bytes the way an MCU would send them.

A source is iterated in *passes*: ``frames(start=f)`` begins a fraction ``f`` of the way
into the source, runs to its end and wraps around to just before ``f``, so every frame
is shown once per pass whatever the start; with ``loop=True`` passes repeat forever.
Iteration is blocking (file reads, video decoding, JPEG encoding): run it off the event
loop, as :class:`publisher.simulation.ParticipantSimulator` does. Frames stay in memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Protocol

import av
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_QUALITY: Final = 85
# Presentation times are exact fractions; this only absorbs odd time bases.
_TIME_SLACK: Final = Fraction(1, 1000)


class SourceError(Exception):
    """A source that cannot be read (missing, empty, not an image or video)."""


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One frame of a source: the JPEG, its number within the pass and, for a video,
    its presentation time in seconds from the start of the video."""

    jpeg: bytes
    index: int
    time_s: float | None = None


class FrameSource(Protocol):
    def frames(self, start: float = 0.0) -> Iterator[SourceFrame]:
        """Frames from ``start`` (a fraction of the source, 0 ≤ start < 1) on."""
        ...


def open_source(
    path: Path,
    *,
    fps: float,
    max_side: int | None = None,
    quality: int = DEFAULT_QUALITY,
    loop: bool = False,
    hold: int = 1,
) -> ImageFolderSource | VideoSource:
    """An image folder source for a directory (each image sent ``hold`` times in a
    row), a video source (sampled at ``fps``) for a file."""
    if path.is_dir():
        return ImageFolderSource(path, max_side=max_side, quality=quality, loop=loop, hold=hold)
    if path.is_file():
        return VideoSource(path, fps=fps, max_side=max_side, quality=quality, loop=loop)
    raise SourceError(f"{path} is neither a video file nor a folder of images")


class ImageFolderSource:
    """The folder's ``*.jpg``/``*.jpeg``/``*.png`` files in name order. JPEGs that need
    no change are sent as they are; the rest (PNGs, too large, EXIF metadata, unusual
    colour modes) are re-encoded to baseline RGB JPEG. With ``hold`` > 1 each image is
    sent that many times in a row, like a participant holding a pose: a folder of
    unrelated stills otherwise changes gesture every frame, which hold-to-confirm
    (rightly) never confirms."""

    def __init__(
        self,
        folder: Path,
        *,
        max_side: int | None = None,
        quality: int = DEFAULT_QUALITY,
        loop: bool = False,
        hold: int = 1,
    ) -> None:
        _check_encoding(max_side, quality)
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        if not folder.is_dir():
            raise SourceError(f"{folder} is not a folder")
        self.paths = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.paths:
            raise SourceError(f"{folder} holds no .jpg, .jpeg or .png images")
        self.max_side = max_side
        self.quality = quality
        self.loop = loop
        self.hold = hold

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, start: float = 0.0) -> Iterator[SourceFrame]:
        _check_start(start)
        count = len(self.paths)
        first = math.floor(start * count) % count
        order = self.paths[first:] + self.paths[:first]
        while True:
            for index, path in enumerate(order):
                jpeg = self._load(path)
                for _ in range(self.hold):
                    yield SourceFrame(jpeg, index)
            if not self.loop:
                return

    def _load(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                if (
                    image.format == "JPEG"
                    and image.mode in ("RGB", "L")
                    and "exif" not in image.info
                    and not image.info.get("progressive")
                    and _fits(image.size, self.max_side)
                ):
                    return data
                return _encode(ImageOps.exif_transpose(image), self.max_side, self.quality)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise SourceError(f"cannot read image {path}: {exc}") from exc


class VideoSource:
    """A video file decoded with PyAV and sampled at ``fps`` by presentation time: the
    first frame at or after each multiple of ``1/fps`` seconds (no frame is repeated to
    fill gaps of a variable-frame-rate video)."""

    def __init__(
        self,
        path: Path,
        *,
        fps: float,
        max_side: int | None = None,
        quality: int = DEFAULT_QUALITY,
        loop: bool = False,
    ) -> None:
        _check_encoding(max_side, quality)
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = path
        self.step = 1 / Fraction(fps).limit_denominator(1_000_000)
        self.max_side = max_side
        self.quality = quality
        self.loop = loop
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise SourceError(f"{path} has no video stream")
                stream = container.streams.video[0]
                self.duration_s = _duration(container, stream)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open video {path}: {exc}") from exc

    def frames(self, start: float = 0.0) -> Iterator[SourceFrame]:
        _check_start(start)
        # Without a known duration every pass starts at the beginning.
        begin = Fraction(start).limit_denominator(1_000_000) * (self.duration_s or 0)
        while True:
            index = 0
            segments = [(begin, None)] + ([(Fraction(0), begin)] if begin else [])
            for seg_begin, seg_end in segments:
                for jpeg, time_s in self._segment(seg_begin, seg_end):
                    yield SourceFrame(jpeg, index, time_s)
                    index += 1
            if not self.loop or index == 0:
                return

    def _segment(self, begin: Fraction, end: Fraction | None) -> Iterator[tuple[bytes, float]]:
        """Sampled frames with begin ≤ time < end (seconds from the video's start)."""
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                if stream.time_base is None:
                    raise SourceError(f"{self.path}: the video stream has no time base")
                time_base = Fraction(stream.time_base)
                origin = Fraction(stream.start_time or 0) * time_base
                if begin:
                    container.seek(int((begin + origin) / time_base), stream=stream)
                due = begin
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = Fraction(frame.pts) * time_base - origin
                    if t < due - _TIME_SLACK:
                        continue
                    if end is not None and t >= end - _TIME_SLACK:
                        return
                    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
                    yield _encode(image, self.max_side, self.quality), float(t)
                    # The next sample slot after this frame; slots a gap skipped stay empty.
                    due += self.step * (max(math.floor((t - due) / self.step), 0) + 1)
        except av.FFmpegError as exc:
            raise SourceError(f"cannot decode video {self.path}: {exc}") from exc


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction | None:
    if stream.duration is not None and stream.time_base is not None:
        return Fraction(stream.duration) * Fraction(stream.time_base)
    if container.duration is not None:
        return Fraction(container.duration, av.time_base)
    return None


def _encode(image: Image.Image, max_side: int | None, quality: int) -> bytes:
    if image.mode != "RGB":
        image = image.convert("RGB")
    if not _fits(image.size, max_side):
        assert max_side is not None
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _fits(size: tuple[int, int], max_side: int | None) -> bool:
    return max_side is None or max(size) <= max_side


def _check_encoding(max_side: int | None, quality: int) -> None:
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be between 1 and 95, got {quality}")


def _check_start(start: float) -> None:
    if not 0 <= start < 1:
        raise ValueError(f"start must be a fraction in [0, 1), got {start}")
