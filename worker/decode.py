"""JPEG decoding for the model: bounded, reduced-size, straight into the batch array.

Runs in a thread pool: Pillow releases the GIL while it decodes, so two threads
decode two frames at once on two cores.

A frame whose shape differs from the model's input is either stretched to fill it
(``stretch``: what every model before v7 was built and measured on, and what a
TF Object Detection API reader assumes: a box on the input is the same normalized
box on the frame) or scaled whole into it between black bands (``letterbox``: hands
keep their shape, so a 16:9 camera's hands are not squeezed to 3/4 of their width).
The model's ``model.json`` says which it expects (``frame_fit``); a letterboxed
frame's :class:`Placement` maps the model's boxes back onto the frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from worker.outcomes import FrameRejected

# Pillow's own bomb check warns (or raises) above its global MAX_IMAGE_PIXELS; the
# worker applies its own, stricter limit before decoding anything.
_PIL_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

FrameFit = Literal["stretch", "letterbox"]
FRAME_FITS: Final[tuple[FrameFit, ...]] = get_args(FrameFit)

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the frame lies in the model's input, as shares of the input's height and
    width (the whole input unless the frame was letterboxed)."""

    top: float = 0.0
    left: float = 0.0
    height: float = 1.0
    width: float = 1.0

    @property
    def whole(self) -> bool:
        return self == WHOLE

    @property
    def bounds(self) -> Box:
        """(top, left, bottom, right) of the frame on the input, normalized."""
        return (self.top, self.left, self.top + self.height, self.left + self.width)

    def to_frame(self, box: Box) -> Box | None:
        """A normalized box on the input as a normalized box on the frame, clipped to
        the frame; None when none of it lies on the frame (it lies in a band)."""
        if self.whole:
            return box
        ymin, xmin, ymax, xmax = box
        top = min(max((ymin - self.top) / self.height, 0.0), 1.0)
        bottom = min(max((ymax - self.top) / self.height, 0.0), 1.0)
        left = min(max((xmin - self.left) / self.width, 0.0), 1.0)
        right = min(max((xmax - self.left) / self.width, 0.0), 1.0)
        if bottom <= top or right <= left:
            return None
        return (top, left, bottom, right)

    def to_input(self, box: Box) -> Box:
        """A normalized box on the frame as a normalized box on the input."""
        ymin, xmin, ymax, xmax = box
        return (
            self.top + ymin * self.height,
            self.left + xmin * self.width,
            self.top + ymax * self.height,
            self.left + xmax * self.width,
        )


WHOLE: Final = Placement()


def letterbox_size(frame: tuple[int, int], into: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a ``frame`` (H, W) scaled whole into ``into`` (H, W), aspect kept.

    Within a pixel of ``into`` it is ``into``: a 640x480 frame fills a 480x360 input
    exactly as it did when stretched, and a rounding error is no reason for a band."""
    scale = min(into[0] / frame[0], into[1] / frame[1])
    height = min(into[0], max(1, round(frame[0] * scale)))
    width = min(into[1], max(1, round(frame[1] * scale)))
    if into[0] - height <= 1 and into[1] - width <= 1:
        return into
    return height, width


def decode_into(
    data: bytes,
    out: npt.NDArray[np.uint8],
    *,
    max_pixels: int,
) -> tuple[int, int]:
    """Decode JPEG ``data`` into ``out`` (uint8 [H, W, 3]), stretched to out's size.

    Returns the frame's original (height, width). Raises :class:`FrameRejected` for
    anything that is not a decodable JPEG within the limits.
    """
    original, _ = decode_fitted(data, out, max_pixels=max_pixels, fit="stretch")
    return original


def decode_fitted(
    data: bytes,
    out: npt.NDArray[np.uint8],
    *,
    max_pixels: int,
    fit: FrameFit,
) -> tuple[tuple[int, int], Placement]:
    """Decode JPEG ``data`` into ``out`` (uint8 [H, W, 3]) as ``fit`` says.

    Returns the frame's original (height, width) and where it lies in ``out``.
    Raises :class:`FrameRejected` for anything that is not a decodable JPEG within
    the limits.
    """
    height, width = out.shape[0], out.shape[1]
    try:
        image = Image.open(io.BytesIO(data), formats=("JPEG",))
    except _PIL_BOMB_ERRORS as exc:
        raise FrameRejected("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise FrameRejected("not_jpeg", "body is not a JPEG image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FrameRejected("corrupt_jpeg", f"cannot read the JPEG header: {exc}") from None
    with image:
        original = (image.height, image.width)
        if image.width * image.height > max_pixels or image.width <= 0 or image.height <= 0:
            raise FrameRejected(
                "decompression_bomb",
                f"{image.width}x{image.height} pixels exceeds the limit of {max_pixels}",
            )
        if fit == "letterbox":
            inner_h, inner_w = letterbox_size(original, (height, width))
        else:
            inner_h, inner_w = height, width
        try:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (its DCT scaling) when the
            # model input is at most that share of the frame: most of the decode
            # cost disappears. Pillow offers no 3/4 scale, so a 640x480 frame for a
            # 480x360 input decodes whole and is resized once.
            image.draft("RGB", (inner_w, inner_h))
            image.load()
            # convert() copies even an RGB image: ~10 % of the decode's CPU, for nothing.
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            if rgb.size != (inner_w, inner_h):
                # The one resize, straight to the model's input; bilinear (with
                # Pillow's antialiasing support) is what the model is evaluated on.
                rgb = rgb.resize((inner_w, inner_h), Image.Resampling.BILINEAR)
            if (inner_h, inner_w) == (height, width):
                out[...] = np.asarray(rgb)
                return original, WHOLE
            top, left = (height - inner_h) // 2, (width - inner_w) // 2
            out[:top] = 0
            out[top + inner_h :] = 0
            out[top : top + inner_h, :left] = 0
            out[top : top + inner_h, left + inner_w :] = 0
            out[top : top + inner_h, left : left + inner_w] = np.asarray(rgb)
        except _PIL_BOMB_ERRORS as exc:
            raise FrameRejected("decompression_bomb", str(exc)) from None
        except (OSError, ValueError, SyntaxError, MemoryError) as exc:
            raise FrameRejected("corrupt_jpeg", f"cannot decode the JPEG: {exc}") from None
    placement = Placement(top / height, left / width, inner_h / height, inner_w / width)
    return original, placement
