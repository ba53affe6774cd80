"""Real webcam frames for the benchmark, held in memory only.

Frames of people are biometric data: they are read from the shared data folder once,
passed between processes in memory and never written anywhere.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image

from publisher.sources import ImageFolderSource, SourceFrame

SIGNS: Final = Path(__file__).resolve().parents[2] / "shared" / "data" / "signs"


def load_jpegs(root: Path, count: int) -> list[bytes]:
    """``count`` frames spread evenly over every person's folder under ``root``, as
    the publisher's own image-folder source sends them (non-baseline or EXIF JPEGs
    re-encoded, the rest byte for byte)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{root} holds no folders of frames")
    every = [f.jpeg for folder in folders for f in ImageFolderSource(folder).frames()]
    if count >= len(every):
        return every
    # Evenly spaced, so a small sample still covers every person and camera.
    return [every[i * len(every) // count] for i in range(count)]


def describe_jpegs(jpegs: Sequence[bytes]) -> dict[str, Any]:
    sizes = []
    for data in jpegs:
        # Reads the header only; nothing is decoded.
        with Image.open(io.BytesIO(data)) as image:
            sizes.append(image.size)
    pixels = sorted(w * h for w, h in sizes)
    median_pixels = pixels[len(pixels) // 2]
    typical = next(f"{w}x{h}" for w, h in sizes if w * h == median_pixels)
    return {
        "count": len(jpegs),
        "mean_bytes": round(statistics.fmean(len(j) for j in jpegs)),
        "median_resolution": typical,
        "resolutions": len(set(sizes)),
    }


class MemorySource:
    """A :class:`publisher.sources.FrameSource` over frames already in memory, looping
    forever (the participant simulator decides when to stop)."""

    def __init__(self, jpegs: Sequence[bytes]) -> None:
        if not jpegs:
            raise ValueError("no frames")
        self._jpegs = list(jpegs)

    def frames(self, start: float = 0.0) -> Iterator[SourceFrame]:
        count = len(self._jpegs)
        first = int(start * count) % count
        index = 0
        while True:
            yield SourceFrame(self._jpegs[(first + index) % count], index % count)
            index += 1
