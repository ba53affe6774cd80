"""Room conditions (models/evaluate/conditions.py): each one changes a real frame the
way its room would, repeatably, and a condition that moves the picture moves its
labels alike."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from models.evaluate import conditions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRAME = sorted((DATA / "signs" / "Condzi").glob("*.jpg"))[0]


def _pixels(data: bytes) -> npt.NDArray[np.float64]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), np.float64)


def _jpeg(rgb: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def frame() -> bytes:
    return FRAME.read_bytes()


@pytest.mark.parametrize("name", [n for n in conditions.CONDITIONS if n not in conditions.CUTS])
def test_each_condition_sends_a_frame_of_the_same_size_repeatably(frame: bytes, name: str) -> None:
    changed = conditions.apply(name, frame, FRAME.name)
    assert changed == conditions.apply(name, frame, FRAME.name)
    assert _pixels(changed).shape == _pixels(frame).shape
    assert np.abs(_pixels(changed) - _pixels(frame)).mean() > 2.0, "the frame did not change"


def test_light_goes_where_the_room_sends_it(frame: bytes) -> None:
    original = _pixels(frame)

    def changed(name: str) -> npt.NDArray[np.float64]:
        return _pixels(conditions.apply(name, frame, FRAME.name))

    assert changed("dim").mean() < 0.8 * original.mean()
    assert changed("overexposed").mean() > 1.15 * original.mean()
    assert (changed("overexposed") >= 250).mean() > 2 * (original >= 250).mean()
    warm = changed("warm_lamp")
    assert warm[..., 0].mean() / warm[..., 2].mean() > 1.3 * (
        original[..., 0].mean() / original[..., 2].mean()
    )
    # Glare from the window lifts the darkest parts: less contrast.
    assert np.percentile(changed("backlight"), 5) > np.percentile(original, 5)


def test_noise_follows_the_frame_name(frame: bytes) -> None:
    assert conditions.apply("dim", frame, "a.jpg") != conditions.apply("dim", frame, "b.jpg")


def test_motion_smears_sideways_and_the_webcam_loses_detail(frame: bytes) -> None:
    def gradients(pixels: npt.NDArray[np.float64]) -> tuple[float, float]:
        grey = pixels.mean(axis=-1)
        return float(np.abs(np.diff(grey, axis=1)).mean()), float(
            np.abs(np.diff(grey, axis=0)).mean()
        )

    across, down = gradients(_pixels(frame))
    blurred_across, blurred_down = gradients(_pixels(conditions.apply("motion_blur", frame, "x")))
    assert blurred_across < 0.7 * across
    assert blurred_across / blurred_down < across / down
    webcam_across, webcam_down = gradients(_pixels(conditions.apply("webcam", frame, "x")))
    assert webcam_across + webcam_down < across + down


def test_a_low_camera_moves_a_labelled_object_where_its_box_goes() -> None:
    height, width = 240, 320
    for box in ((0.05, 0.1, 0.3, 0.4), (0.6, 0.55, 0.95, 0.9), (0.4, 0.05, 0.7, 0.3)):
        rgb = np.zeros((height, width, 3), np.uint8)
        top, left = int(box[0] * height), int(box[1] * width)
        bottom, right = int(box[2] * height), int(box[3] * width)
        rgb[top:bottom, left:right] = 255
        moved = _pixels(conditions.apply("low_angle", _jpeg(rgb), "x"))[..., 0] > 128
        ys, xs = np.nonzero(moved)
        seen = (
            ys.min() / height,
            xs.min() / width,
            (ys.max() + 1) / height,
            (xs.max() + 1) / width,
        )
        expected = conditions.move_box("low_angle", box)
        np.testing.assert_allclose(seen, expected, atol=0.02)
    # Near the top the picture barely moves; near the bottom it grows.
    top_box = conditions.move_box("low_angle", (0.0, 0.4, 0.05, 0.6))
    bottom_box = conditions.move_box("low_angle", (0.95, 0.4, 1.0, 0.6))
    assert top_box[3] - top_box[1] < bottom_box[3] - bottom_box[1]
    assert conditions.move_box("dim", (0.1, 0.2, 0.3, 0.4)) == (0.1, 0.2, 0.3, 0.4)


def test_a_far_person_is_smaller_in_the_middle_and_the_boxes_follow() -> None:
    height, width = 360, 480
    rgb = np.zeros((height, width, 3), np.uint8)
    box = (0.1, 0.6, 0.5, 0.9)
    rgb[36:180, 288:432] = 255
    far = _pixels(conditions.apply("far", _jpeg(rgb), "x"))
    assert far.shape[:2] == (height, width)
    ys, xs = np.nonzero(far[..., 0] > 128)
    seen = (ys.min() / height, xs.min() / width, (ys.max() + 1) / height, (xs.max() + 1) / width)
    moved = conditions.move_box("far", box)
    np.testing.assert_allclose(seen, moved, atol=0.01)
    # Half the size each way, about the middle: a quarter of the pixels.
    assert moved == pytest.approx((0.3, 0.55, 0.5, 0.7))
    assert conditions.move_box("far", (0.0, 0.0, 1.0, 1.0)) == pytest.approx(
        (0.25, 0.25, 0.75, 0.75)
    )
    # The border carries the picture's edge out: no new bright object appears there.
    assert far[: int(0.25 * height) - 2].max() < 40


def test_an_unknown_condition_is_named_with_the_choices() -> None:
    with pytest.raises(conditions.ConditionError, match="unknown condition 'fog': choose from dim"):
        conditions.check("fog")


def test_turned_is_a_view_not_a_room(frame: bytes) -> None:
    assert conditions.TURN not in conditions.parse_names("all")
    assert conditions.check(conditions.TURN) == conditions.TURN
    turned = _pixels(conditions.apply(conditions.TURN, frame, FRAME.name))
    # Re-encoded once more: the same pixels turned half a circle, within JPEG's loss.
    assert np.abs(turned - _pixels(frame)[::-1, ::-1]).mean() < 2.0
    box = (0.1, 0.2, 0.4, 0.5)
    moved = conditions.move_box(conditions.TURN, box)
    assert moved == pytest.approx((0.6, 0.5, 0.9, 0.8))
    assert conditions.move_box(conditions.TURN, moved) == pytest.approx(box)


def test_a_wide_camera_cuts_a_4_3_frame_to_16_9_and_the_boxes_follow() -> None:
    height, width = 360, 480
    rgb = np.zeros((height, width, 3), np.uint8)
    box = (0.3, 0.25, 0.6, 0.5)  # rows 108..216: inside the kept rows 45..315
    rgb[108:216, 120:240] = 255
    cut = _pixels(conditions.apply("wide", _jpeg(rgb), "x"))
    assert cut.shape[:2] == (270, 480)
    ys, xs = np.nonzero(cut[..., 0] > 128)
    seen = (ys.min() / 270, xs.min() / 480, (ys.max() + 1) / 270, (xs.max() + 1) / 480)
    moved = conditions.frame_box("wide", box, (height, width))
    assert moved is not None
    np.testing.assert_allclose(seen, moved, atol=0.01)
    # A hand raised to the top edge keeps what is left of it; one mostly cut away is
    # no longer one to find; a 16:9 frame is left as it is.
    assert conditions.frame_box("wide", (0.05, 0.1, 0.4, 0.3), (360, 480)) == pytest.approx(
        (0.0, 0.1, (0.4 * 360 - 45) / 270, 0.3)
    )
    assert conditions.frame_box("wide", (0.0, 0.1, 0.2, 0.3), (360, 480)) is None
    assert conditions.frame_box("wide", box, (360, 640)) == pytest.approx(box)
    wide = _jpeg(np.zeros((360, 640, 3), np.uint8))
    assert _pixels(conditions.apply("wide", wide, "x")).shape[:2] == (360, 640)
    # Its boxes need the frame's shape: move_box alone cannot place them.
    with pytest.raises(conditions.ConditionError, match="cuts the frame"):
        conditions.move_box("wide", box)
    # Other rooms place boxes as move_box does.
    assert conditions.frame_box("low_angle", box, (360, 480)) == conditions.move_box(
        "low_angle", box
    )
