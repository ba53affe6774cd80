"""Where simulated camera frames come from: a folder of images or a video file, turned
into JPEG bytes the way an MCU would send them.

A source is iterated in *passes*: ``frames(start=f)`` begins a fraction ``f`` of the way
into the source, runs to its end and wraps around to just before ``f``, so every frame
is shown once per pass whatever the start; with ``loop=True`` passes repeat forever.
Iteration is blocking (file reads, video decoding, JPEG encoding): run it off the event
loop, as :class:`publisher.simulation.ParticipantSimulator` does. Frames stay in memory.

Every frame a source yields is within the worker's default limits from the frame
contract (:data:`~publisher.protocol.WORKER_MAX_FRAME_PIXELS`, ``…_BYTES``): a bigger
picture is downscaled, a JPEG still too large after re-encoding is left out, and so is
an image file that cannot be read, each with one warning; ``stats`` counts them.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

from publisher.protocol import WORKER_MAX_FRAME_BYTES, WORKER_MAX_FRAME_PIXELS

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_QUALITY: Final = 85
# Presentation times are exact fractions; this only absorbs odd time bases.
_TIME_SLACK: Final = Fraction(1, 1000)


# What Pillow raises for a file it cannot read as an image (UnidentifiedImageError is an
# OSError; a truncated or broken file may raise any of the others).
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class SourceError(Exception):
    """A source that cannot be read (missing, empty, not an image or video)."""


@dataclass
class SourceStats:
    """What a source changed or left out to keep its frames within the worker's limits.
    An image folder counts images (each once, however often it is shown); a video
    counts sampled frames."""

    # Image files that could not be read, skipped.
    unreadable: int = 0
    # Over the pixel limit: sent downscaled to fit it.
    downscaled: int = 0
    # Over the byte limit even re-encoded: left out.
    refused: int = 0


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


class _FittingSource:
    """What both sources share: encoding settings, the worker's limits, and counting
    (and warning once about) what was changed or left out to stay within them. A
    simulator reads one iterator per participant, each in its own thread: hence the
    lock."""

    # What ``stats`` counts; an image is counted once, a frame every time it is sampled.
    unit = "frame"

    def __init__(self, max_side: int | None, quality: int, max_bytes: int, max_pixels: int) -> None:
        _check_encoding(max_side, quality)
        if max_bytes < 1 or max_pixels < 1:
            raise ValueError(f"frame limits must be >= 1, got {max_bytes} bytes, {max_pixels} px")
        self.max_side = max_side
        self.quality = quality
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.stats = SourceStats()
        self._lock = threading.Lock()
        self._noted: set[tuple[str, object]] = set()

    def report(self) -> str | None:
        """One line on what was changed or left out so far, None when nothing was."""
        stats, parts = self.stats, []
        if stats.unreadable:
            parts.append(f"skipped {_count(stats.unreadable, 'unreadable image')}")
        if stats.downscaled:
            parts.append(
                f"downscaled {_count(stats.downscaled, self.unit)} "
                f"to the worker's limit of {self.max_pixels} pixels"
            )
        if stats.refused:
            parts.append(
                f"left out {_count(stats.refused, self.unit)} "
                f"over the worker's limit of {self.max_bytes} bytes"
            )
        return "; ".join(parts) or None

    def _note(self, kind: str, key: object, message: str, *args: object) -> None:
        """Count one ``kind`` (a :class:`SourceStats` field) for ``key``, the image or
        the video; warn only the first time for that key."""
        with self._lock:
            first = (kind, key) not in self._noted
            self._noted.add((kind, key))
            if first or self.unit == "frame":
                setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        if first:
            log.warning(message, *args)

    def _encode(self, image: Image.Image) -> tuple[bytes, tuple[int, int]]:
        """Baseline RGB JPEG within ``max_side`` and the pixel limit, and its size."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if not _fits(image.size, self.max_side):
            assert self.max_side is not None
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        if image.width * image.height > self.max_pixels:
            image = image.resize(
                _within_pixels(image.size, self.max_pixels),
                Image.Resampling.BILINEAR,
                reducing_gap=2.0,
            )
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.quality)
        return buffer.getvalue(), image.size


class ImageFolderSource(_FittingSource):
    """The folder's ``*.jpg``/``*.jpeg``/``*.png`` files in name order. JPEGs that need
    no change are sent as they are; the rest (PNGs, too large, EXIF metadata, unusual
    colour modes) are re-encoded to baseline RGB JPEG. With ``hold`` > 1 each image is
    sent that many times in a row, like a participant holding a pose: a folder of
    unrelated stills otherwise changes gesture every frame, which hold-to-confirm
    (rightly) never confirms. An image that cannot be read, or that is over the byte
    limit even re-encoded, is skipped (see the module docstring); a pass in which no
    image could be sent raises :class:`SourceError`."""

    unit = "image"

    def __init__(
        self,
        folder: Path,
        *,
        max_side: int | None = None,
        quality: int = DEFAULT_QUALITY,
        loop: bool = False,
        hold: int = 1,
        max_bytes: int = WORKER_MAX_FRAME_BYTES,
        max_pixels: int = WORKER_MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(max_side, quality, max_bytes, max_pixels)
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        if not folder.is_dir():
            raise SourceError(f"{folder} is not a folder")
        self.folder = folder
        self.paths = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.paths:
            raise SourceError(f"{folder} holds no .jpg, .jpeg or .png images")
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
            sent = False
            for index, path in enumerate(order):
                jpeg = self._load(path)
                if jpeg is None:
                    continue
                sent = True
                for _ in range(self.hold):
                    yield SourceFrame(jpeg, index)
            if not sent:
                raise SourceError(
                    f"no image in {self.folder} can be sent ({_count(count, 'image')} "
                    "tried, each unreadable or too large; see the warnings)"
                )
            if not self.loop:
                return

    def _load(self, path: Path) -> bytes | None:
        """The image as a JPEG within the limits, or None (counted, warned) when it
        cannot be read or fitted."""
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                original = image.size
                over_pixels = image.width * image.height > self.max_pixels
                if (
                    image.format == "JPEG"
                    and image.mode in ("RGB", "L")
                    and "exif" not in image.info
                    and not image.info.get("progressive")
                    and _fits(image.size, self.max_side)
                    and not over_pixels
                    and len(data) <= self.max_bytes
                ):
                    return data
                if over_pixels:
                    # libjpeg decodes at 1/2, 1/4 or 1/8 scale: most of a huge frame's
                    # decode is never done (no-op for PNG).
                    image.draft(None, _within_pixels(image.size, self.max_pixels))
                jpeg, size = self._encode(ImageOps.exif_transpose(image))
        except _UNREADABLE as exc:
            self._note("unreadable", path, "skipping %s: %s", path, _unreadable_reason(exc))
            return None
        if len(jpeg) > self.max_bytes:
            self._note(
                "refused",
                path,
                "skipping %s: %d bytes as a JPEG, over the worker's limit of %d "
                "(try a smaller --max-side or --quality)",
                path,
                len(jpeg),
                self.max_bytes,
            )
            return None
        if over_pixels:
            self._note(
                "downscaled",
                path,
                "%s is %dx%d pixels, over the worker's limit of %d: sending it at %dx%d",
                path,
                *original,
                self.max_pixels,
                *size,
            )
        return jpeg


def _pyav() -> ModuleType:
    """PyAV, imported when a video is opened: 100 MB of FFmpeg that processes which
    only import the frame contract (workers) should not need installed or loaded."""
    try:
        import av
    except ImportError:
        raise SourceError(
            "reading a video needs PyAV, which is not installed: "
            "pip install 'memelearning[video]' (or publish a folder of images)"
        ) from None
    return av


class VideoSource(_FittingSource):
    """A video file decoded with PyAV and sampled at ``fps`` by presentation time: the
    first frame at or after each multiple of ``1/fps`` seconds (no frame is repeated to
    fill gaps of a variable-frame-rate video). Frames over the pixel limit are sent
    downscaled, those over the byte limit even re-encoded are left out (see the module
    docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        fps: float,
        max_side: int | None = None,
        quality: int = DEFAULT_QUALITY,
        loop: bool = False,
        max_bytes: int = WORKER_MAX_FRAME_BYTES,
        max_pixels: int = WORKER_MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(max_side, quality, max_bytes, max_pixels)
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = path
        self.step = 1 / Fraction(fps).limit_denominator(1_000_000)
        self.loop = loop
        av = _pyav()
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
        av = _pyav()
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
                    # The next sample slot after this frame; slots a gap skipped stay empty.
                    due += self.step * (max(math.floor((t - due) / self.step), 0) + 1)
                    jpeg = self._fit(Image.fromarray(frame.to_ndarray(format="rgb24")), t)
                    if jpeg is not None:
                        yield jpeg, float(t)
        except av.FFmpegError as exc:
            raise SourceError(f"cannot decode video {self.path}: {exc}") from exc

    def _fit(self, image: Image.Image, time_s: Fraction) -> bytes | None:
        original = image.size
        jpeg, size = self._encode(image)
        if len(jpeg) > self.max_bytes:
            self._note(
                "refused",
                self.path,
                "%s: leaving out frames over the worker's limit of %d bytes as a JPEG "
                "(the first, at %.2f s, is %d bytes; try a smaller --max-side or --quality)",
                self.path,
                self.max_bytes,
                float(time_s),
                len(jpeg),
            )
            return None
        if original[0] * original[1] > self.max_pixels:
            self._note(
                "downscaled",
                self.path,
                "%s: frames are %dx%d pixels, over the worker's limit of %d: sending them at %dx%d",
                self.path,
                *original,
                self.max_pixels,
                *size,
            )
        return jpeg


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction | None:
    if stream.duration is not None and stream.time_base is not None:
        return Fraction(stream.duration) * Fraction(stream.time_base)
    if container.duration is not None:
        return Fraction(container.duration, _pyav().time_base)
    return None


def _within_pixels(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """``size`` scaled down, keeping its aspect ratio, to at most ``max_pixels``."""
    width, height = size
    scale = math.sqrt(max_pixels / (width * height))
    while True:
        fitted = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        if fitted[0] * fitted[1] <= max_pixels:
            return fitted
        scale *= 0.999  # floating-point rounding, or a side already at 1 pixel


def _unreadable_reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read it ({exc.strerror})"
    return f"cannot read it as an image ({exc})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
