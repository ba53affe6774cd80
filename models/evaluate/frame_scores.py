"""Scores of a detector on whole frames, the way production sees them.

Each frame is decoded and resized by the worker's own code (:func:`load_frame`), and
the figures are the ones a meeting product cares about: of the hands people hold up,
how many are found (:func:`hands_found`), how well each gesture is named (per-class AP),
how often a gesture is reported that is not there (:func:`false_gestures_per_100`), and
how often a hand that makes no gesture of ours is named one (:func:`out_of_vocabulary_rate`).
Any detector's outputs can be scored: ours, or a peer's (:mod:`models.evaluate.peer_baseline`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.dataset.voc import Annotation
from models.evaluate import conditions
from models.evaluate.evaluation import (
    DetectionResult,
    GroundTruth,
    Prediction,
    average_precision,
    ground_truth_from_annotation,
    iou,
)
from worker.decode import FrameFit, Placement, decode_fitted

OUT_OF_VOCABULARY: Final = "no_gesture"
"""Truth label of a hand that makes none of our gestures (three or four fingers up)."""
UNKNOWN: Final = "unknown"
"""Truth label of a hand whose label says nothing about our gestures (a sign word)."""
IOU: Final = 0.5
INSIDE: Final = 0.6
"""A hand box lies inside a truth box when this share of its area does."""


def load_frame(
    path: Path, size: tuple[int, int], condition: str | None = None, fit: FrameFit = "stretch"
) -> npt.NDArray[np.uint8]:
    """The frame as the worker hands it to the model: its JPEG bytes (as a camera in
    room ``condition`` would have sent them, :mod:`models.evaluate.conditions`) decoded
    and fitted into ``size`` (H, W) by :func:`worker.decode.decode_fitted` as the
    model's ``frame_fit`` says."""
    return load_placed(path, size, condition, fit)[0]


def load_placed(
    path: Path, size: tuple[int, int], condition: str | None = None, fit: FrameFit = "stretch"
) -> tuple[npt.NDArray[np.uint8], Placement]:
    """:func:`load_frame`, and where the frame lies in it: boxes the model reports on
    it go back onto the frame with ``Placement.to_frame``, as the worker maps them."""
    out = np.empty((size[0], size[1], 3), np.uint8)
    data = path.read_bytes()
    if condition is not None:
        data = conditions.apply(condition, data, path.name)
    _, placement = decode_fitted(data, out, max_pixels=100_000_000, fit=fit)
    return out, placement


def frame_truths(
    annotation: Annotation, label_of: Callable[[str], str], condition: str | None = None
) -> tuple[GroundTruth, ...]:
    """The annotation's boxes, normalized, labelled by ``label_of``, and where they lie
    in the frame room ``condition`` made of it (without those it cut out)."""
    truths = ground_truth_from_annotation(annotation.relabel(label_of))
    if condition is None:
        return tuple(truths)
    size = (annotation.height, annotation.width)
    return tuple(
        replace(t, box=box)
        for t in truths
        if (box := conditions.frame_box(condition, t.box, size)) is not None
    )


GESTURE_ALIASES: Final = {"stop": "palm", "stop_inverted": "palm"}
"""Scored as ``palm``: the three open-hand labels differ only in which way the palm
faces, which ``hands/`` does not annotate, and all three are one reaction (wave)."""


@dataclass(frozen=True, slots=True)
class ScoredFrame:
    """One frame's truth and a detector's outputs on it (normalized boxes)."""

    group: str
    """Who is in the frame (a person of ``signs/``, or the data set's name)."""
    truths: tuple[GroundTruth, ...]
    hands: tuple[Prediction, ...]
    """Every hand the detector found, whatever it named it; label ``hand``."""
    gestures: tuple[Prediction, ...]
    """Every gesture it named, at any score (for AP)."""
    reported: tuple[Prediction, ...]
    """The gestures it reports at its own thresholds (what would reach the
    reactions side)."""


def _inside_share(box: Sequence[float], hands: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    low = np.maximum(hands[:, :2], box[:2])
    high = np.minimum(hands[:, 2:], box[2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(hands[:, 2:] - hands[:, :2], axis=1)
    out: npt.NDArray[np.float64] = inter / np.maximum(area, 1e-12)
    return out


def truth_found(truth: GroundTruth, hands: npt.NDArray[np.float64]) -> bool:
    """Whether a truth box is found: one hand box overlaps it at IoU >= 0.5, or — a
    two-handed sign boxed as one — the hull of the hand boxes lying inside it does."""
    if not len(hands):
        return False
    if iou(truth.box, hands).max() >= IOU:
        return True
    inside = hands[_inside_share(truth.box, hands) >= INSIDE]
    if len(inside) < 2:
        return False
    hull = np.array([[*inside[:, :2].min(axis=0), *inside[:, 2:].max(axis=0)]])
    return bool(iou(truth.box, hull)[0] >= IOU)


def _boxes(predictions: Iterable[Prediction], min_score: float) -> npt.NDArray[np.float64]:
    kept = [p.box for p in predictions if p.score >= min_score]
    return np.asarray(kept, np.float64).reshape(-1, 4)


def hands_found(frames: Sequence[ScoredFrame], min_score: float) -> tuple[int, int]:
    """(found, total) truth hands, counting hands scored at least ``min_score``."""
    found = total = 0
    for frame in frames:
        hands = _boxes(frame.hands, min_score)
        for truth in frame.truths:
            total += 1
            found += truth_found(truth, hands)
    return found, total


def false_gestures_per_100(
    frames: Sequence[ScoredFrame], *, count_unknown: bool = False
) -> float | None:
    """Reported gestures (at the shipped thresholds) that match no truth box of the
    same gesture at IoU >= 0.5, per 100 frames: a gesture on no hand, on a hand making
    another gesture or none of ours. A gesture on a hand labelled with something that
    says nothing of our gestures (a sign word) counts only with ``count_unknown``."""
    if not frames:
        return None
    false = 0
    for frame in frames:
        for gesture in frame.reported:
            same = [t.box for t in frame.truths if t.label == gesture.label]
            if same and iou(gesture.box, np.asarray(same, np.float64)).max() >= IOU:
                continue
            if not count_unknown and _on_unknown(gesture, frame.truths):
                continue
            false += 1
    return 100.0 * false / len(frames)


def _on_unknown(gesture: Prediction, truths: Sequence[GroundTruth]) -> bool:
    box = np.asarray([gesture.box], np.float64)
    for truth in truths:
        if truth.label != UNKNOWN:
            continue
        if iou(truth.box, box)[0] >= IOU or _inside_share(truth.box, box)[0] >= INSIDE:
            return True
    return False


def out_of_vocabulary_rate(frames: Sequence[ScoredFrame]) -> tuple[int, int]:
    """(named a gesture, total) hands that make none of our gestures: a reported
    gesture overlaps them at IoU >= 0.5."""
    named = total = 0
    for frame in frames:
        reported = _boxes(frame.reported, 0.0)
        for truth in frame.truths:
            if truth.label != OUT_OF_VOCABULARY:
                continue
            total += 1
            named += bool(len(reported)) and bool(iou(truth.box, reported).max() >= IOU)
    return named, total


def named_right(frames: Sequence[ScoredFrame]) -> tuple[int, int]:
    """(reported right, total) truth hands of our gestures: a gesture reported at the
    shipped thresholds with the hand's label overlaps it at IoU >= 0.5 (what reaches
    the reactions side, where AP only ranks)."""
    right = total = 0
    for frame in frames:
        for truth in frame.truths:
            if truth.label in (OUT_OF_VOCABULARY, UNKNOWN):
                continue
            total += 1
            same = _boxes((g for g in frame.reported if g.label == truth.label), 0.0)
            right += bool(len(same)) and bool(iou(truth.box, same).max() >= IOU)
    return right, total


def gesture_detection(frames: Sequence[ScoredFrame], classes: Sequence[str]) -> DetectionResult:
    """Per-class AP@0.5 over ``classes``; truth of other labels is "difficult" in
    every class (whatever is named there is neither right nor wrong), and predictions
    of other labels are left out."""
    truths = []
    predictions = []
    for frame in frames:
        image_truths: list[GroundTruth] = []
        for truth in frame.truths:
            if truth.label in classes:
                image_truths.append(truth)
            else:
                image_truths += [GroundTruth(c, truth.box, difficult=True) for c in classes]
        truths.append(image_truths)
        predictions.append([g for g in frame.gestures if g.label in classes])
    return average_precision(truths, predictions, classes=list(classes))


def gesture_ap(frames: Sequence[ScoredFrame], classes: Sequence[str]) -> dict[str, Any]:
    """:func:`gesture_detection`'s mean and per-class AP, as the report stores them."""
    result = gesture_detection(frames, classes)
    return {
        "mean_ap": result.mean_ap,
        "per_class": {label: {"ap": c.ap, "n_gt": c.n_gt} for label, c in result.per_class.items()},
    }


def summarize(
    frames: Sequence[ScoredFrame],
    classes: Sequence[str],
    *,
    hand_score: float,
    count_unknown: bool = False,
) -> dict[str, Any]:
    """Every figure of this module for ``frames``, overall and per group."""

    def figures(part: Sequence[ScoredFrame]) -> dict[str, Any]:
        found, total = hands_found(part, hand_score)
        named, oov = out_of_vocabulary_rate(part)
        right, gestures = named_right(part)
        return {
            "frames": len(part),
            "hands": total,
            "hands_found": found / total if total else None,
            "false_gestures_per_100_frames": false_gestures_per_100(
                part, count_unknown=count_unknown
            ),
            "out_of_vocabulary_hands": oov,
            "out_of_vocabulary_named": named / oov if oov else None,
            "gestures_named_right": right / gestures if gestures else None,
            "gestures": gesture_ap(part, classes) if classes else None,
        }

    groups = sorted({f.group for f in frames})
    out = figures(frames)
    if len(groups) > 1:
        out["per_group"] = {g: figures([f for f in frames if f.group == g]) for g in groups}
    return out
