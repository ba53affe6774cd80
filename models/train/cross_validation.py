"""How the gesture head does on people it never saw: leave one person out.

The head learns from the gesture frames of the ``signs/`` people training may use,
so the shipped model cannot be scored on them. Each of those people is scored instead
by a head trained exactly like the shipped one without their frames; the people held
out of training altogether are scored by the shipped head. Stage one (MediaPipe's
stock networks) and the thresholds are the shipped ones, so every figure is what the
served model would give on a person new to it, through the same metrics as
``memelearning evaluate`` (:mod:`models.evaluate.frame_scores`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.evaluate.evaluation import GroundTruth, Prediction
from models.evaluate.frame_scores import GESTURE_ALIASES, ScoredFrame, summarize
from models.networks.gesture_classifier import NONE_LABEL, GestureHead
from models.train.classifier_training import Features, HeadTrainingConfig, predict, train_heads
from models.train.frame_hands import FrameHands, training_arrays

HAND = "hand"


def score_frame(
    frame: FrameHands,
    probabilities: npt.NDArray[np.float32],
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
) -> ScoredFrame:
    """``frame`` as the served model reports it, given the head's class probabilities
    for each hand stage one found (best gesture times hand presence, as exported)."""
    gesture = np.array([label != NONE_LABEL for label in labels])
    masked = np.where(gesture[None, :], probabilities, -1.0)
    hands, gestures, reported = [], [], []
    for k in range(len(frame.boxes)):
        ymin, xmin, ymax, xmax = (float(v) for v in frame.boxes[k])
        box = (ymin, xmin, ymax, xmax)
        presence = float(frame.presence[k])
        hands.append(Prediction(HAND, presence, box))
        label = labels[int(masked[k].argmax())]
        score = float(masked[k].max()) * presence
        found = Prediction(GESTURE_ALIASES.get(label, label), score, box)
        gestures.append(found)
        if score >= thresholds.get(label, default_threshold):
            reported.append(found)
    return ScoredFrame(
        frame.group,
        tuple(GroundTruth(label, box) for label, box in frame.truths),
        tuple(hands),
        tuple(gestures),
        tuple(reported),
    )


def leave_one_person_out(
    frames: Sequence[FrameHands],
    base: Features,
    head_config: HeadTrainingConfig,
    *,
    people: Sequence[str],
    labels: Sequence[str],
    shipped: GestureHead,
    held_out: frozenset[str],
    repeat: int,
    learn_views: Collection[str] = (),
    thresholds: Mapping[str, float],
    default_threshold: float,
    hand_score: float,
    members: int = 1,
) -> dict[str, Any]:
    """Per person and overall figures (:func:`models.evaluate.frame_scores.summarize`) of the
    frames of ``people``, each person scored by a head that never saw them: trained on
    ``base`` plus the frames of every group but theirs and the ``held_out`` ones (a
    held-out person is scored by the ``shipped`` head). Frames seen in a view
    (:attr:`~models.train.frame_hands.FrameHands.view`: turned half a circle, a person
    farther away) are scored apart, under the view's name, and learned from only for
    the ``learn_views`` named. Each person's head is an ensemble of ``members`` as the
    shipped one is."""
    scored: dict[str | None, list[ScoredFrame]] = {None: []}
    for person in people:
        mine = [frame for frame in frames if frame.group == person]
        if person in held_out:
            head = shipped
        else:
            others = [frame for frame in frames if frame.group not in held_out | {person}]
            x, y = training_arrays(others, labels, repeat, views=learn_views)
            with tempfile.TemporaryDirectory() as run_dir:
                head = train_heads(
                    labels,
                    Features(np.concatenate([base.x, x]), np.concatenate([base.y, y])),
                    Path(run_dir),
                    head_config,
                    members,
                )
        for frame in mine:
            probabilities = (
                predict(head, frame.features)
                if len(frame.boxes)
                else np.zeros((0, len(labels)), np.float32)
            )
            scored.setdefault(frame.view, []).append(
                score_frame(frame, probabilities, labels, thresholds, default_threshold)
            )
    figures = _summary(scored.pop(None), hand_score)
    figures["held_out_people"] = sorted(held_out.intersection(people))
    for view, frames_in_view in sorted(scored.items()):
        # Only the turned hands are labelled in a turned frame: there hands found and
        # AP, not false gestures, say how it did.
        figures[str(view)] = _summary(frames_in_view, hand_score)
    return figures


def _summary(frames: Sequence[ScoredFrame], hand_score: float) -> dict[str, Any]:
    classes = sorted({t.label for frame in frames for t in frame.truths})
    return summarize(frames, classes, hand_score=hand_score)
