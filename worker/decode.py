"""JPEG decoding for the model: bounded, reduced-size, straight into the batch array.

Runs in a thread pool: Pillow releases the GIL while it decodes, so two threads
decode two frames at once on two cores.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from worker.outcomes import FrameRejected

# Pillow's own bomb check warns (or raises) above its global MAX_IMAGE_PIXELS; the
# worker applies its own, stricter limit before decoding anything.
_PIL_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_into(
    data: bytes,
    out: npt.NDArray[np.uint8],
    *,
    max_pixels: int,
) -> tuple[int, int]:
    """Decode JPEG ``data`` into ``out`` (uint8 [H, W, 3]), resized to out's size.

    Returns the frame's original (height, width). Raises :class:`FrameRejected` for
    anything that is not a decodable JPEG within the limits.
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
        try:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (its DCT scaling) when the
            # model input is at most that share of the frame: most of the decode
            # cost disappears. Pillow offers no 3/4 scale, so a 640x480 frame for a
            # 480x360 input decodes whole and is resized once.
            image.draft("RGB", (width, height))
            image.load()
            # convert() copies even an RGB image: ~10 % of the decode's CPU, for nothing.
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            if rgb.size != (width, height):
                # The one resize, straight to the model's input; bilinear (with
                # Pillow's antialiasing support) is what the model is evaluated on.
                rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
            out[...] = np.asarray(rgb)
        except _PIL_BOMB_ERRORS as exc:
            raise FrameRejected("decompression_bomb", str(exc)) from None
        except (OSError, ValueError, SyntaxError, MemoryError) as exc:
            raise FrameRejected("corrupt_jpeg", f"cannot decode the JPEG: {exc}") from None
    return original
