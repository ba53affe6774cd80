"""Scoring a person with a head that never saw them (models/train/cross_validation.py) and
the real-hand training arrays (models/train/frame_hands.py), on hand-made frames: what the
served model would report, and how many times the head sees each real hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.evaluate.conditions import FAR_VIEW, TURN
from models.train.cross_validation import score_frame
from models.train.frame_hands import FrameHands, training_arrays

LABELS = ("fist", "none", "palm", "stop")
BOXES = np.array([[0.1, 0.1, 0.4, 0.3], [0.5, 0.6, 0.9, 0.9]], np.float32)


def _frame(samples: tuple[tuple[str, np.ndarray], ...] = ()) -> FrameHands:
    return FrameHands(
        group="someone",
        truths=(("fist", (0.1, 0.1, 0.4, 0.3)),),
        boxes=BOXES,
        presence=np.array([0.9, 0.8], np.float32),
        features=np.zeros((2, 3), np.float32),
        samples=samples,
    )


def test_a_hand_is_named_its_best_gesture_never_none_scored_with_its_presence() -> None:
    probabilities = np.array([[0.30, 0.60, 0.05, 0.05], [0.05, 0.10, 0.15, 0.70]], np.float32)
    scored = score_frame(_frame(), probabilities, LABELS, {"fist": 0.5, "stop": 0.5}, 0.5)
    first, second = scored.gestures
    # `none` is likelier, but the exported model names the best gesture: the score
    # (0.3 x 0.9) keeps it from being reported.
    assert first.label == "fist" and abs(first.score - 0.27) < 1e-6
    # stop is scored as palm, as the evaluation does for all open hands.
    assert second.label == "palm" and abs(second.score - 0.56) < 1e-6
    assert [p.label for p in scored.reported] == ["palm"]
    assert [p.score for p in scored.hands] == [float(np.float32(0.9)), float(np.float32(0.8))]
    assert scored.truths[0].label == "fist" and scored.group == "someone"


def test_thresholds_decide_what_is_reported() -> None:
    probabilities = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.1, 0.1, 0.7]], np.float32)
    scored = score_frame(_frame(), probabilities, LABELS, {"fist": 0.85, "stop": 0.5}, 0.5)
    # fist 0.81 < its 0.85; stop 0.56 >= 0.5
    assert [p.label for p in scored.reported] == ["palm"]


def test_real_hands_are_repeated_with_all_their_passes() -> None:
    frame = _frame((("fist", np.ones((3, 4), np.float32)), ("none", np.zeros((3, 4), np.float32))))
    x, y = training_arrays([frame, _frame()], ("fist", "none"), repeat=2)
    assert x.shape == (12, 4)
    assert list(y) == [0, 0, 0, 1, 1, 1] * 2
    empty_x, empty_y = training_arrays([_frame()], ("fist", "none"), repeat=3)
    assert len(empty_x) == len(empty_y) == 0


def test_frames_in_a_view_are_learned_from_only_when_asked() -> None:
    hand = _frame((("fist", np.ones((3, 4), np.float32)),))
    turned, far = replace(hand, view=TURN), replace(hand, view=FAR_VIEW)
    x, _ = training_arrays([turned, far, _frame()], ("fist", "none"), repeat=1)
    assert len(x) == 0
    x, y = training_arrays([turned, far, _frame()], ("fist", "none"), repeat=1, views=(TURN,))
    assert x.shape == (3, 4) and list(y) == [0, 0, 0]
    x, _ = training_arrays([turned, far], ("fist", "none"), repeat=1, views=(TURN, FAR_VIEW))
    assert x.shape == (6, 4)


def test_frames_in_each_view_are_scored_apart_from_the_frames_as_recorded() -> None:
    from models.networks.gesture_classifier import GestureHead
    from models.train.classifier_training import Features, HeadTrainingConfig
    from models.train.cross_validation import leave_one_person_out

    labels = ("dislike", "like", "none")
    head = GestureHead(labels, 3, hidden=4)
    # A head that names every hand a thumbs down: logits from the bias alone.
    head.w2.assign(np.zeros((4, 3), np.float32))
    head.b2.assign(np.array([5.0, 0.0, 0.0], np.float32))

    def one_hand(label: str, view: str | None) -> FrameHands:
        box = (0.1, 0.1, 0.4, 0.3)
        ones, features = np.ones(1, np.float32), np.zeros((1, 3), np.float32)
        return FrameHands("someone", ((label, box),), BOXES[:1], ones, features, (), view)

    upright, turned = one_hand("like", None), one_hand("dislike", TURN)
    far = one_hand("like", FAR_VIEW)
    figures = leave_one_person_out(
        [upright, turned, far, far],
        Features(np.zeros((0, 3), np.float32), np.zeros(0, np.int64)),
        HeadTrainingConfig(epochs=1),
        people=["someone"],
        labels=labels,
        shipped=head,
        held_out=frozenset({"someone"}),
        repeat=1,
        thresholds={},
        default_threshold=0.5,
        hand_score=0.5,
    )
    # As recorded: one thumbs up named a thumbs down. Turned: the same hand, named right.
    assert figures["frames"] == 1 and figures["gestures_named_right"] == 0.0
    assert figures["false_gestures_per_100_frames"] == 100.0
    assert figures["turned"]["frames"] == 1 and figures["turned"]["gestures_named_right"] == 1.0
    assert figures["turned"]["gestures"]["per_class"]["dislike"]["ap"] == 1.0
    assert figures["far"]["frames"] == 2 and figures["far"]["gestures_named_right"] == 0.0
