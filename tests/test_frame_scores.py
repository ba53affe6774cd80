"""The production-view figures of `memelearning evaluate`, on hand-made cases whose
answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.evaluate.evaluation import GroundTruth, Prediction
from models.evaluate.frame_scores import (
    OUT_OF_VOCABULARY,
    UNKNOWN,
    ScoredFrame,
    false_gestures_per_100,
    hands_found,
    load_frame,
    load_placed,
    out_of_vocabulary_rate,
    truth_found,
)

LEFT = (0.2, 0.1, 0.6, 0.3)
RIGHT = (0.2, 0.6, 0.6, 0.8)
BOTH = (0.15, 0.05, 0.65, 0.85)


def _frame(
    truths: list[GroundTruth],
    hands: list[tuple[float, float, float, float]],
    reported: list[Prediction] = [],  # noqa: B006 - never mutated
) -> ScoredFrame:
    return ScoredFrame(
        "p",
        tuple(truths),
        tuple(Prediction("hand", 0.9, box) for box in hands),
        tuple(reported),
        tuple(reported),
    )


def test_a_hand_is_found_at_iou_one_half() -> None:
    assert truth_found(GroundTruth("like", LEFT), np.array([LEFT]))
    shifted = (0.2, 0.25, 0.6, 0.45)  # overlaps LEFT by a quarter
    assert not truth_found(GroundTruth("like", LEFT), np.array([shifted]))
    assert not truth_found(GroundTruth("like", LEFT), np.zeros((0, 4)))


def test_a_two_handed_sign_boxed_as_one_is_found_by_both_hands_inside_it() -> None:
    both = GroundTruth(UNKNOWN, BOTH)
    assert truth_found(both, np.array([LEFT, RIGHT]))
    # One of the two hands alone is not the sign.
    assert not truth_found(both, np.array([LEFT]))


def test_hands_found_counts_only_hands_above_the_score() -> None:
    frame = _frame([GroundTruth("like", LEFT), GroundTruth("ok", RIGHT)], [LEFT, RIGHT])
    assert hands_found([frame], 0.5) == (2, 2)
    assert hands_found([frame], 0.95) == (0, 2)


def test_false_gestures_are_those_matching_no_truth_of_the_same_gesture() -> None:
    right = Prediction("like", 0.9, LEFT)
    wrong_label = Prediction("dislike", 0.9, RIGHT)
    nowhere = Prediction("peace", 0.9, (0.7, 0.7, 0.9, 0.9))
    frames = [
        _frame([GroundTruth("like", LEFT), GroundTruth("like", RIGHT)], [], [right, wrong_label]),
        _frame([], [], [nowhere]),
    ]
    assert false_gestures_per_100(frames) == pytest.approx(100.0)  # 2 false in 2 frames
    # On a signing hand, a gesture counts only when asked (some signs are gestures).
    signing = [_frame([GroundTruth(UNKNOWN, LEFT)], [], [Prediction("fist", 0.9, LEFT)])]
    assert false_gestures_per_100(signing) == 0.0
    assert false_gestures_per_100(signing, count_unknown=True) == 100.0


def test_out_of_vocabulary_hands_named_a_gesture_are_counted() -> None:
    frames = [
        _frame([GroundTruth(OUT_OF_VOCABULARY, LEFT)], [LEFT], [Prediction("peace", 0.8, LEFT)]),
        _frame([GroundTruth(OUT_OF_VOCABULARY, RIGHT)], [RIGHT]),
    ]
    assert out_of_vocabulary_rate(frames) == (1, 2)


def test_frames_are_decoded_and_resized_as_the_worker_does(tmp_path: Path) -> None:
    from worker.decode import decode_into

    path = tmp_path / "frame.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)).save(path)
    expected = np.empty((360, 480, 3), np.uint8)
    decode_into(path.read_bytes(), expected, max_pixels=10**8)
    np.testing.assert_array_equal(load_frame(path, (360, 480)), expected)


def test_letterboxed_frames_are_loaded_as_the_worker_fits_them(tmp_path: Path) -> None:
    from worker.decode import decode_fitted

    path = tmp_path / "wide.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (360, 640, 3), np.uint8)).save(path)
    expected = np.empty((360, 480, 3), np.uint8)
    _, placement = decode_fitted(path.read_bytes(), expected, max_pixels=10**8, fit="letterbox")
    image, placed = load_placed(path, (360, 480), fit="letterbox")
    np.testing.assert_array_equal(image, expected)
    assert placed == placement and not placed.whole
    np.testing.assert_array_equal(load_frame(path, (360, 480), fit="letterbox"), expected)


def test_a_letterboxing_models_boxes_are_scored_on_the_frame(tmp_path: Path) -> None:
    # A model that finds one hand where the frame's truth box lies on its input: the
    # box it reports must be scored where the truth is, on the frame.
    import tensorflow as tf

    from models.dataset.voc import Annotation, Box
    from models.evaluate.assessment import _Model, score_frames

    path = tmp_path / "wide.jpg"
    Image.new("RGB", (640, 360), (90, 90, 90)).save(path)
    truth = (0.2, 0.25, 0.6, 0.5)  # on the frame: rows 72..216, columns 160..320
    on_input = (45 / 360 + 0.2 * 0.75, 0.25, 45 / 360 + 0.6 * 0.75, 0.5)
    boxes = tf.constant([[on_input, (0.0, 0.0, 0.1, 0.1)]], tf.float32)  # 2nd: in a band
    model = _Model(
        root=None,
        serve=lambda input_tensor: {
            "num_detections": tf.constant([2.0]),
            "detection_boxes": boxes,
            "detection_classes": tf.constant([[1.0, 1.0]]),
            "detection_scores": tf.constant([[0.9, 0.8]]),
        },
        hands=lambda input_tensor: {
            "num_hands": tf.constant([2]),
            "hand_boxes": boxes,
            "hand_scores": tf.constant([[0.95, 0.9]]),
        },
        crops=lambda crops: {},
        faces=None,
        labels={1: "like"},
        head_labels=("like", "none"),
        input_size=(360, 480),
        meta={"frame_fit": "letterbox", "thresholds": {"like": 0.5}},
    )
    annotation = Annotation(
        tmp_path / "wide.xml", path, 640, 360, (Box("like", 160, 72, 320, 216),), "p"
    )
    (frame,) = score_frames(model, [annotation], str, lambda a: a.group, "test")
    assert [h.box for h in frame.hands] == [pytest.approx(truth, abs=1e-6)]
    assert [g.box for g in frame.gestures] == [pytest.approx(truth, abs=1e-6)]
    assert hands_found([frame], 0.5) == (1, 1)
