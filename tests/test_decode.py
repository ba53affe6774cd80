"""How a frame goes into the model's input: stretched (models up to v6) or whole
between black bands (``frame_fit: letterbox``), and the boxes back onto the frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.decode import (
    WHOLE,
    Placement,
    decode_fitted,
    decode_into,
    letterbox_size,
)
from worker.detector import Detection
from worker.outcomes import FrameRejected
from worker.service import on_frame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INPUT = (360, 480)


def jpeg_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ((480, 640), (360, 480)),  # 4:3: fills the input, as stretched
        ((720, 1280), (270, 480)),  # 16:9: bands above and below
        ((640, 480), (360, 270)),  # portrait: bands left and right
        ((481, 640), (360, 480)),  # within a pixel: no band for a rounding error
        ((100, 1000), (48, 480)),
    ],
)
def test_letterbox_keeps_the_frames_shape(
    frame: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert letterbox_size(frame, INPUT) == expected


def test_a_4_3_frame_comes_out_the_same_stretched_or_letterboxed() -> None:
    data = sorted((DATA / "hands" / "test").glob("*.jpg"))[0].read_bytes()
    stretched = np.empty((*INPUT, 3), np.uint8)
    boxed = np.full((*INPUT, 3), 7, np.uint8)
    assert decode_into(data, stretched, max_pixels=10**8) == (360, 480)
    shape, placement = decode_fitted(data, boxed, max_pixels=10**8, fit="letterbox")
    assert (shape, placement) == ((360, 480), WHOLE)
    np.testing.assert_array_equal(boxed, stretched)


def test_a_16_9_frame_lies_whole_between_black_bands() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(40, 255, (360, 640, 3), dtype=np.uint8)
    data = jpeg_of(pixels)
    # Garbage in the batch array first: the bands must be written, not assumed.
    out = np.full((*INPUT, 3), 99, np.uint8)
    shape, placement = decode_fitted(data, out, max_pixels=10**8, fit="letterbox")
    assert shape == (360, 640)
    assert placement == Placement(top=45 / 360, left=0.0, height=270 / 360, width=1.0)
    assert not out[:45].any() and not out[315:].any()
    # Between the bands: the frame, resized as a 270x480 input would have it.
    inner = np.empty((270, 480, 3), np.uint8)
    decode_into(data, inner, max_pixels=10**8)
    np.testing.assert_array_equal(out[45:315], inner)


def test_a_portrait_frame_gets_bands_left_and_right() -> None:
    data = jpeg_of(np.full((640, 480, 3), 200, np.uint8))
    out = np.full((*INPUT, 3), 99, np.uint8)
    _, placement = decode_fitted(data, out, max_pixels=10**8, fit="letterbox")
    assert placement == Placement(top=0.0, left=105 / 480, height=1.0, width=270 / 480)
    assert not out[:, :105].any() and not out[:, 375:].any()
    assert (out[:, 105:375] > 150).all()


def test_bad_input_is_rejected_the_same_way_either_fit() -> None:
    for fit in ("stretch", "letterbox"):
        out = np.empty((*INPUT, 3), np.uint8)
        with pytest.raises(FrameRejected) as rejected:
            decode_fitted(b"not a jpeg", out, max_pixels=10**8, fit=fit)
        assert rejected.value.reason == "not_jpeg"
        with pytest.raises(FrameRejected) as rejected:
            decode_fitted(jpeg_of(np.zeros((64, 64, 3), np.uint8)), out, max_pixels=100, fit=fit)
        assert rejected.value.reason == "decompression_bomb"


def test_boxes_go_back_onto_the_frame() -> None:
    placement = Placement(top=0.125, left=0.0, height=0.75, width=1.0)
    frame_box = (0.2, 0.3, 0.6, 0.5)
    on_input = placement.to_input(frame_box)
    assert on_input == pytest.approx((0.275, 0.3, 0.575, 0.5))
    assert placement.to_frame(on_input) == pytest.approx(frame_box)
    # A box reaching into a band is cut at the frame's edge; one wholly in it is none.
    assert placement.to_frame((0.05, 0.1, 0.5, 0.2)) == pytest.approx((0.0, 0.1, 0.5, 0.2))
    assert placement.to_frame((0.0, 0.1, 0.1, 0.2)) is None
    assert WHOLE.to_frame(frame_box) == frame_box
    assert placement.bounds == (0.125, 0.0, 0.875, 1.0)


def test_the_worker_reports_detections_on_the_frame() -> None:
    placement = Placement(top=0.125, left=0.0, height=0.75, width=1.0)
    found = [
        Detection("like", 3, 0.9, (0.275, 0.3, 0.575, 0.5)),
        Detection("fist", 2, 0.6, (0.0, 0.1, 0.1, 0.2)),  # in the top band
    ]
    placed = on_frame(found, placement)
    assert [d.label for d in placed] == ["like"]
    assert placed[0].box == pytest.approx((0.2, 0.3, 0.6, 0.5))
    assert placed[0].score == 0.9
    assert on_frame(found, WHOLE) is found
