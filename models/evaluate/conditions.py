"""Room conditions our frames rarely show, put on frames that we have labels for.

Meeting products live in dim rooms, beside bright windows and warm lamps, behind cheap
webcams looking up at people who move. ``signs/`` and ``hands/`` are mostly bright
webcam frames, so ``memelearning evaluate --conditions`` scores the same labelled frames
again under each condition below, for our model and the peer alike, to show what holds
up where the data does not reach.

Each condition turns a frame's JPEG bytes into the JPEG bytes a camera in that room
would have sent (at the frame's own size, in memory: nothing is written; ``wide``, a
16:9 camera, cuts the frame to that shape), so the frame then takes the worker's own
decode path. Noise is seeded from the frame's name, so a
run is repeatable and both detectors see the same pixels. Light is changed in linear
light (sRGB decoded with gamma 2.2), as a sensor sees it.

Pure NumPy and Pillow, with no imports from the project: the peer's environment
(:mod:`models.evaluate.peer`) loads this file too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

Float = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]
"""Normalized ``(ymin, xmin, ymax, xmax)``."""

QUALITY: Final = 90
"""JPEG quality a changed frame is sent at (the MCU's, about)."""
_GAMMA: Final = 2.2
KEYSTONE: Final = 0.8
"""``low_angle``: the bottom row shows this share of the width the top row shows."""


def _linear(rgb: npt.NDArray[np.uint8]) -> Float:
    out: Float = (rgb.astype(np.float32) / 255.0) ** _GAMMA
    return out


def _srgb(linear: Float) -> npt.NDArray[np.uint8]:
    encoded = np.clip(linear, 0.0, 1.0) ** (1.0 / _GAMMA)
    return np.asarray(np.round(encoded * 255.0), np.uint8)


def _sensor_noise(linear: Float, rng: np.random.Generator, gain: float) -> Float:
    """Shot noise (grows with the light) and read noise, both amplified by ``gain``,
    as a webcam turning its gain up in the dark makes them."""
    sigma = gain * (0.002 + 0.01 * np.sqrt(np.clip(linear, 0.0, 1.0) / gain))
    noisy: Float = linear + rng.normal(0.0, 1.0, linear.shape).astype(np.float32) * sigma
    return noisy


def _radial(shape: tuple[int, ...], centre: tuple[float, float], radius: float) -> Float:
    """A soft disc of light falling off from ``centre`` (normalized y, x), ``[H, W, 1]``."""
    height, width = shape[0], shape[1]
    ys = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height - centre[0]
    xs = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width - centre[1]
    distance = np.sqrt(ys**2 + (xs * width / height) ** 2)
    out: Float = np.exp(-((distance / radius) ** 2))[..., None]
    return out


def _side(rng: np.random.Generator) -> float:
    """Left or right edge, normalized x: where a window or a lamp stands."""
    return float(rng.choice([0.05, 0.95]))


def dim(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A dim room: an eighth of the light, which the camera's gain brings partly back
    (to 30 %), with the noise that gain brings."""
    light = _linear(rgb) * 0.12
    return _srgb(_sensor_noise(light, rng, gain=2.5) * 2.5)


def backlight(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A bright window to one side behind the person: auto-exposure darkens the
    person and the window's glare washes out the contrast near it."""
    window = _radial(rgb.shape, (0.35, _side(rng)), 0.45)
    light: Float = _linear(rgb) * 0.35 + 0.9 * window + np.float32(0.04)
    return _srgb(_sensor_noise(light, rng, gain=1.5))


def overexposed(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Too much light for the exposure: highlights (skin among them) clip to white."""
    return _srgb(_sensor_noise(_linear(rgb) * 3.5, rng, gain=1.0))


def warm_lamp(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Lit by a warm (about 2700 K) lamp beside the person that the camera's white
    balance corrects only partly, the lamp itself bright in the frame."""
    tint = np.asarray([1.0, 0.7, 0.4], np.float32)
    lamp = _radial(rgb.shape, (0.3, _side(rng)), 0.3) * tint
    light = _linear(rgb) * tint * 0.6 + 1.2 * lamp
    return _srgb(_sensor_noise(light, rng, gain=1.5))


def _keystone_scale(y: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Share of the input width output row ``y`` (normalized) samples."""
    out: npt.NDArray[np.float32] = 1.0 - (1.0 - KEYSTONE) * y
    return out


def low_angle(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A camera below the face looking up (a laptop on the desk): what is near its
    lower edge looms larger than what is higher up, the keystone that tilt gives."""
    del rng  # a fixed geometry, so that the labels can follow it
    height, width = rgb.shape[:2]
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    source_x = 0.5 + (xs[None, :] - 0.5) * _keystone_scale(ys)[:, None]
    columns = np.clip((source_x * width).astype(np.int64), 0, width - 1)
    out: npt.NDArray[np.uint8] = rgb[np.arange(height)[:, None], columns]
    return out


def low_angle_box(box: Box) -> Box:
    """Where ``box`` lies after :func:`low_angle` (bounds of its moved corners)."""
    ymin, xmin, ymax, xmax = box
    xs = [
        0.5 + (x - 0.5) / (1.0 - (1.0 - KEYSTONE) * y) for y in (ymin, ymax) for x in (xmin, xmax)
    ]
    return (ymin, max(0.0, min(xs)), ymax, min(1.0, max(xs)))


def motion_blur(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A hand moving sideways during the exposure: a horizontal smear over about 2.5 %
    of the frame's width (a wave at a webcam's 1/30 s)."""
    length = max(3, round(rgb.shape[1] * 0.025 * float(rng.uniform(0.8, 1.2))))
    light = _linear(rgb)
    padded = np.pad(light, ((0, 0), (length, length), (0, 0)), mode="edge")
    sums = np.cumsum(padded, axis=1, dtype=np.float64)
    half = length // 2
    start = length - half
    window = (
        sums[:, start + length - 1 : start + length - 1 + rgb.shape[1]]
        - sums[:, start - 1 : start - 1 + rgb.shape[1]]
    )
    return _srgb((window / length).astype(np.float32))


def webcam(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A cheap webcam on a poor link: half the resolution, sensor noise, heavy JPEG
    compression, scaled back up."""
    height, width = rgb.shape[:2]
    small = Image.fromarray(rgb).resize((width // 2, height // 2), Image.Resampling.BILINEAR)
    noisy = _srgb(_sensor_noise(_linear(np.asarray(small)), rng, gain=2.0))
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=25)
    with Image.open(buffer) as image:
        back = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(back, np.uint8)


WIDE: Final = 9 / 16
"""``wide``: the height of a 16:9 camera's frame, as a share of its width."""
KEPT: Final = 0.5
"""``wide``: a labelled hand with less than this share of its height left in the cut
frame is no longer one to find."""


def _wide_rows(height: int, width: int) -> tuple[int, int]:
    """(first row, rows) of a ``height`` x ``width`` frame that a 16:9 camera framing
    the same person keeps: the middle rows; all of them for a frame as wide or wider."""
    rows = min(height, round(width * WIDE))
    return (height - rows) // 2, rows


def wide(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A 16:9 camera, as most meeting cameras are, framing the same person: the frame's
    top and bottom cut away (the people and hands of our frames are mostly 4:3). Not
    a light but a shape: a model fed stretched frames sees the hands squeezed."""
    del rng  # a fixed geometry, so that the labels can follow it
    top, rows = _wide_rows(*rgb.shape[:2])
    return np.ascontiguousarray(rgb[top : top + rows])


def wide_box(box: Box, size: tuple[int, int]) -> Box | None:
    """Where ``box`` lies after :func:`wide` on a frame of ``size`` (H, W): cut at the
    new edges; None when less than :data:`KEPT` of its height is left."""
    height, width = size
    top, rows = _wide_rows(height, width)
    ymin, xmin, ymax, xmax = box
    low = (ymin * height - top) / rows
    high = (ymax * height - top) / rows
    cut_low, cut_high = max(low, 0.0), min(high, 1.0)
    if high <= low or (cut_high - cut_low) < KEPT * (high - low):
        return None
    return (cut_low, xmin, cut_high, xmax)


FAR: Final = 0.5
"""``far``: the size a person twice as far from the camera takes in the frame."""


FAR_VIEW: Final = "far"


def far(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A person twice as far from the camera (a room camera on the wall, a laptop pushed
    back): the picture shrunk to :data:`FAR` of its size in the middle of the frame,
    its edge rows and columns carried out to the frame's edges. Our frames show people
    close to their webcams (a hand is 100-340 px of a 640 px frame); farther away a hand
    has a quarter of the pixels, for stage one and for the gesture's crop alike."""
    del rng  # a fixed geometry, so that the labels can follow it
    height, width = rgb.shape[:2]
    rows, columns = max(1, round(height * FAR)), max(1, round(width * FAR))
    # reducing_gap: an antialiased shrink, as a sensor farther away integrates the light.
    small = Image.fromarray(rgb).resize(
        (columns, rows), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    top, left = (height - rows) // 2, (width - columns) // 2
    pad = ((top, height - rows - top), (left, width - columns - left), (0, 0))
    # Carried-out edges make no new hands, as a mirrored border would.
    out: npt.NDArray[np.uint8] = np.pad(np.asarray(small, np.uint8), pad, mode="edge")
    return out


def far_box(box: Box) -> Box:
    """Where ``box`` lies after :func:`far`."""
    ymin, xmin, ymax, xmax = (0.5 + (v - 0.5) * FAR for v in box)
    return (ymin, xmin, ymax, xmax)


Condition = Callable[[npt.NDArray[np.uint8], np.random.Generator], npt.NDArray[np.uint8]]
CONDITIONS: Final[dict[str, Condition]] = {
    "dim": dim,
    "backlight": backlight,
    "overexposed": overexposed,
    "warm_lamp": warm_lamp,
    "low_angle": low_angle,
    "motion_blur": motion_blur,
    "webcam": webcam,
    "wide": wide,
    FAR_VIEW: far,
}
"""Every room condition, by the name reports use."""


def turned(rgb: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """The frame turned half a circle: not a room, but how a thumbs up becomes a thumbs
    down (:data:`models.dataset.labels.TURNED_GESTURES`), which none of our frames show."""
    return np.ascontiguousarray(rgb[::-1, ::-1])


def turned_box(box: Box) -> Box:
    ymin, xmin, ymax, xmax = box
    return (1.0 - ymax, 1.0 - xmax, 1.0 - ymin, 1.0 - xmin)


TURN: Final = "turned"
VIEWS: Final[dict[str, Condition]] = {**CONDITIONS, TURN: turned}
"""Every way this module changes a frame: the rooms, and views that are no room."""
BOX_MOVES: Final[dict[str, Callable[[Box], Box]]] = {
    "low_angle": low_angle_box,
    FAR_VIEW: far_box,
    TURN: turned_box,
}
"""Changes that move what is in the frame, and where they move a labelled box."""
CUTS: Final[dict[str, Callable[[Box, tuple[int, int]], Box | None]]] = {"wide": wide_box}
"""Changes that cut the frame: where a labelled box lies depends on the frame's shape,
and a box may be cut out."""


class ConditionError(ValueError):
    """An unknown condition name."""


def parse_names(
    text: str, known: Sequence[str] = tuple(CONDITIONS), what: str = "condition"
) -> list[str]:
    """``'all'`` (every one of ``known``) or a comma-separated list of them, as command
    lines take them; an unknown name raises :class:`ConditionError` naming the choices."""
    names = list(known) if text.strip() == "all" else [n.strip() for n in text.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConditionError(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(known)}")
    return names


def names_argument(
    known: Sequence[str] = tuple(CONDITIONS), what: str = "condition"
) -> Callable[[str], list[str]]:
    """:func:`parse_names` as an ``argparse`` type: an unknown name becomes the
    parser's one-line usage error."""

    def parse(text: str) -> list[str]:
        try:
            return parse_names(text, known, what)
        except ConditionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def check(name: str) -> str:
    if name not in VIEWS:
        raise ConditionError(f"unknown condition {name!r}: choose from {', '.join(VIEWS)}")
    return name


def rng_for(name: str, key: str) -> np.random.Generator:
    """The same noise for the same frame and condition, in every process."""
    digest = hashlib.sha256(f"{name}\0{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def apply(name: str, data: bytes, key: str) -> bytes:
    """JPEG ``data`` as a camera in condition ``name`` would have sent it; ``key`` (the
    frame's name) seeds its noise."""
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
        rgb = np.asarray(image.convert("RGB"), np.uint8)
    changed = VIEWS[check(name)](rgb, rng_for(name, key))
    buffer = io.BytesIO()
    Image.fromarray(changed).save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def move_box(name: str, box: Box) -> Box:
    """Where a labelled box lies in the frame condition ``name`` made (a change that
    cuts the frame needs the frame's size: :func:`frame_box`)."""
    if check(name) in CUTS:
        raise ConditionError(f"{name} cuts the frame: its boxes move with the frame's size")
    move = BOX_MOVES.get(name)
    return move(box) if move else box


def frame_box(name: str, box: Box, size: tuple[int, int]) -> Box | None:
    """Where a labelled box lies in the frame condition ``name`` made of a frame of
    ``size`` (H, W); None when the change cut it out."""
    cut = CUTS.get(check(name))
    return cut(box, size) if cut else move_box(name, box)
