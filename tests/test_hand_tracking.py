"""Stage one's geometry (rotated hand regions, landmarks back to the frame, NMS) on
synthetic images where the answer is known, then on real hands and real faces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from PIL import Image

from models.dataset.voc import read_voc_dir
from models.evaluate.evaluation import GroundTruth
from models.evaluate.frame_scores import frame_truths, load_frame, truth_found
from models.networks.base_models import base_model_paths
from models.networks.gesture_classifier import GestureHead
from models.networks.hand_detector import antialias_factor, shrink_antialiased
from models.networks.hand_tracking import (
    greedy_nms_mask,
    landmark_boxes,
    landmarks_to_frame,
    rotated_crops,
)
from models.serving.gesture_model import GestureModel, ModelConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _coordinates(height: int, width: int) -> npt.NDArray[np.float32]:
    """An image whose channels hold each pixel's row, column and 1."""
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width))
    return np.stack([rows, cols, np.ones_like(rows)], axis=-1)[None]


def test_an_upright_region_is_the_axis_aligned_square_around_its_centre() -> None:
    image = _coordinates(100, 120)
    # Centre (x=60, y=50), side 40, no rotation: rows 30..70, columns 40..80.
    crop = rotated_crops(tf.constant(image), tf.constant([[60.0, 50.0, 40.0, 0.0]]), [0])
    crop = crop[0].numpy()
    assert crop.shape == (224, 224, 3)
    # Nearest pixel: the first sample sits just inside (30, 40), the last just inside
    # (70, 80), so they show pixels (30, 40) and (69, 79).
    assert crop[0, 0, :2].tolist() == [30.0, 40.0]
    assert crop[-1, -1, :2].tolist() == [69.0, 79.0]
    assert np.all(crop[..., 2] == pytest.approx(1.0))


def test_a_region_turned_a_quarter_turn_is_the_upright_crop_rotated() -> None:
    image = _coordinates(100, 120)
    rois = tf.constant([[60.0, 50.0, 40.0, 0.0], [60.0, 50.0, 40.0, math.pi / 2]])
    upright, turned = rotated_crops(tf.constant(image), rois, [0, 0]).numpy()
    # The crop's x axis runs down the frame (turned[i, j] = upright[j, n - 1 - i]).
    np.testing.assert_array_equal(turned, np.rot90(upright, k=1))


def test_outside_the_frame_is_zero() -> None:
    image = _coordinates(100, 120)
    crop = rotated_crops(tf.constant(image), tf.constant([[0.0, 0.0, 40.0, 0.3]]), [0])
    ones = crop[0, ..., 2].numpy()
    assert ones[:50, :50].max() == 0.0  # the corner region lies above-left of the frame
    assert ones[150:, 150:].min() == pytest.approx(1.0)


def test_landmarks_map_back_to_where_the_crop_took_them_from() -> None:
    image = _coordinates(200, 300)
    roi = [150.0, 90.0, 80.0, 0.7]
    crop = rotated_crops(tf.constant(image), tf.constant([roi]), [0])[0].numpy()
    # A "landmark" at a crop pixel must map back to the frame pixel that pixel shows.
    picks = np.array([[20, 30], [112, 112], [200, 10]], np.float32)  # (x, y) in the crop
    points = np.concatenate([picks + 0.5, np.zeros((3, 1), np.float32)], axis=1)[None]
    frame_xy = landmarks_to_frame(tf.constant(points), tf.constant([roi]))[0].numpy()
    for (x, y), (fx, fy) in zip(picks.astype(int), frame_xy, strict=True):
        row, column = crop[y, x, 0], crop[y, x, 1]
        # The crop pixel shows the frame pixel the landmark falls in.
        assert row <= fy < row + 1 and column <= fx < column + 1, ((fy, fx), (row, column))


def test_the_box_is_the_landmarks_bounds_grown_about_their_centre() -> None:
    points = tf.constant([[[100.0, 50.0], [140.0, 130.0], [120.0, 90.0]]])
    box = landmark_boxes(points, tf.constant([200.0, 400.0]), 1.5)[0].numpy()
    # Bounds x 100..140, y 50..130 → centre (120, 90), grown to 60 x 120.
    np.testing.assert_allclose(box, [30 / 200, 90 / 400, 150 / 200, 150 / 400], atol=1e-6)


def test_greedy_nms_keeps_the_best_of_overlapping_candidates() -> None:
    boxes = tf.constant(
        [[[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5], [0.6, 0.6, 0.9, 0.9], [0, 0, 0, 0]]]
    )
    keep = greedy_nms_mask(boxes, tf.constant([[True, True, True, False]]), 0.3)
    assert keep.numpy().tolist() == [[True, False, True, False]]


@pytest.fixture(scope="module")
def model() -> GestureModel:
    return GestureModel.from_base_models(
        base_model_paths(), GestureHead(("fist", "none"), 736), ModelConfig()
    )


def test_real_hands_of_one_person_are_found_where_labelimg_boxed_them(model: GestureModel) -> None:
    annotations = read_voc_dir(DATA / "hands" / "test").annotations[::12]
    hands = tf.function(model.hands)
    found = total = 0
    for annotation in annotations:
        frame = load_frame(annotation.image_path, (360, 480))
        boxes, _, count = hands(tf.constant(frame[None]))
        predicted = boxes[0, : int(count[0])].numpy().astype(np.float64)
        for box in annotation.boxes:
            truth = GroundTruth(
                "hand",
                (
                    box.ymin / annotation.height,
                    box.xmin / annotation.width,
                    box.ymax / annotation.height,
                    box.xmax / annotation.width,
                ),
            )
            total += 1
            found += truth_found(truth, predicted)
    # Measured on all of hands/test with `memelearning evaluate` (docs/models.md).
    assert total >= 25
    assert found >= 0.9 * total, (found, total)


def test_faces_are_not_hands(model: GestureModel) -> None:
    # Real faces of many people (genki-smile), each pasted into a meeting-sized frame
    # as a participant's head: the presence score must turn them away.
    faces = sorted((DATA / "genki-smile" / "neutral").glob("*.jpg"))[:24]
    hands = tf.function(model.hands)
    reported = 0
    for path in faces:
        canvas = Image.new("RGB", (480, 360), (90, 90, 90))
        with Image.open(path) as face:
            canvas.paste(face.convert("RGB").resize((180, 180)), (150, 60))
        _, _, count = hands(tf.constant(np.asarray(canvas)[None]))
        reported += int(count[0])
    assert reported <= 1, reported


def test_the_antialiased_shrink_keeps_flat_light_and_takes_out_pixel_noise() -> None:
    assert antialias_factor(192) == 1 and antialias_factor(480) == 2 and antialias_factor(1280) == 6
    flat = tf.fill([1, 36, 48, 3], 0.4)
    unchanged = shrink_antialiased(flat, 192)
    assert unchanged is flat
    np.testing.assert_allclose(shrink_antialiased(flat, 480).numpy(), 0.4, atol=1e-6)
    noise = np.random.default_rng(0).normal(0.5, 0.1, (1, 360, 480, 3)).astype(np.float32)
    shrunk = shrink_antialiased(tf.constant(noise), 480).numpy()
    assert shrunk.shape == (1, 180, 240, 3)
    assert shrunk.std() == pytest.approx(noise.std() / 2, rel=0.05)


def test_hands_in_a_dim_room_are_found_once_the_palm_input_is_antialiased(
    model: GestureModel,
) -> None:
    # The dim room of `memelearning evaluate --conditions dim`: a quarter of the light,
    # the camera's gain and its noise. Shrunk without antialiasing, the noise hid
    # most hands (all of hands/test, v4's lite palm detector: 0.39 found, against 0.72
    # with the frame blurred first).
    plain = model.with_settings(model.head, ModelConfig(palm_antialias=False))
    annotations = read_voc_dir(DATA / "hands" / "test").annotations[::12]
    found = {}
    for name, which in (("antialiased", model), ("plain", plain)):
        hands = tf.function(which.hands)
        found[name] = total = 0
        for annotation in annotations:
            frame = load_frame(annotation.image_path, (360, 480), "dim")
            boxes, _, count = hands(tf.constant(frame[None]))
            predicted = boxes[0, : int(count[0])].numpy().astype(np.float64)
            for truth in frame_truths(annotation, str, "dim"):
                total += 1
                found[name] += truth_found(truth, predicted)
    assert found["antialiased"] >= 0.55 * total, (found, total)
    assert found["antialiased"] > found["plain"], found
