"""How bench.quantization compares a network's answers in one precision with its fp32
answers. Arithmetic on given answers: nothing here converts or times a network."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quantization import agreement, box_iou, landmark_answers, markdown


def test_box_iou_is_row_wise() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float64)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1]], np.float64)
    np.testing.assert_allclose(box_iou(a, b), [1 / 7, 1.0])


def test_agreement_counts_moved_boxes_flipped_decisions_and_joint_error() -> None:
    reference = np.array([[0, 0, 1, 1]] * 4, np.float64)
    moved = reference.copy()
    moved[0] += 0.6  # IoU 0.087: no longer the same box
    joints = np.zeros((4, 21, 2))
    shifted = joints + np.array([0.03, 0.04])  # 0.05 of the region

    got = agreement(
        moved, np.array([0.9, 0.6, 0.4, 0.1]), reference, np.array([0.9, 0.4, 0.4, 0.1]),
        0.5, shifted, joints,
    )  # fmt: skip

    assert got.inputs == 4
    assert got.same_box == 0.75
    assert got.same_decision == 0.75  # the second input crossed the threshold
    assert got.joint_error == pytest.approx(0.05)


def test_agreement_needs_answers() -> None:
    empty = np.zeros((0, 4))
    with pytest.raises(ValueError, match="no inputs"):
        agreement(empty, np.zeros(0), empty, np.zeros(0), 0.5)


def test_landmark_answers_are_in_region_units() -> None:
    # A landmark network answers 63 values (x, y, z in 224-px region pixels), presence,
    # handedness and world landmarks.
    points = np.zeros((21, 3), np.float32)
    points[:, 0] = np.linspace(56, 168, 21)
    points[:, 1] = 112
    answer = [points.reshape(1, 63), np.array([[0.8]]), np.array([[0.1]]), np.zeros((1, 63))]
    boxes, presence, joints = landmark_answers([answer])
    np.testing.assert_allclose(boxes, [[0.25, 0.5, 0.75, 0.5]])
    assert presence.tolist() == pytest.approx([0.8])
    assert joints.shape == (1, 21, 2)
    table = markdown(
        [
            {
                "network": "n.tflite",
                "precision": "int8",
                "bytes": 2_000_000,
                "ms": 3.0,
                "joint_error": None,
                "same_box": 1.0,
                "same_decision": 0.5,
            }
        ]
    )
    assert "| n.tflite | int8 | 2.00 | 3.00 | 1.000 | 0.500 | n/a |" in table
