"""Real hands in real frames, seen the way the served model sees them.

HaGRID's crops are tight, well lit and cut by hand; in production a hand is cut from
a webcam frame around the box stage one drew. The gesture head learns from both: each
annotated hand of our frames is found by the model's own stage one, cut with its own
crop, and turned into the landmark network's features. ``signs/`` people knocking a
fist at the camera (ASL "yes") showed why: trained on HaGRID alone, 62 % of such
gesture hands were named right at the reporting score; with these frames, 91 % of
the hands of people left out of training (docs/models.md).

Thumbs down is the one gesture our frames never show. A thumbs up turned half a
circle is one (the thumb points down, the curled fingers face the camera), so the
real thumbs up of ``signs/`` are also collected turned, as ``dislike``
(:data:`models.dataset.labels.TURNED_GESTURES`): each person's are scored by a head
that never saw that person (:mod:`models.train.cross_validation`). The head learns
from them only when the recipe says so; that did not name more of a new person's
turned thumbs (docs/models.md), so by default it learns thumbs down from HaGRID alone.

Our people sit close to their webcams. The same frames shrunk as if the person sat
twice as far away (:func:`models.evaluate.conditions.far`) are collected as well: each
person's are scored by a head that never saw them, and the head learns from the
training people's when the recipe says so.

Only features are kept (in the run directory's cache), never pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from models.dataset.labels import TURNED_GESTURES
from models.dataset.voc import Annotation
from models.evaluate import conditions
from models.evaluate.evaluation import iou
from models.evaluate.frame_scores import load_placed
from worker.decode import FrameFit

MATCH_IOU: Final = 0.5
"""A stage-one hand stands for an annotated one at this IoU (as the evaluation counts)."""
JITTER_SHIFT: Final = 0.05
"""Standard deviation of the box centre's shift, as a share of the box side: how far
stage one's box moves between two frames of a hand that did not move."""
JITTER_SCALE: Final = (0.9, 1.1)
JITTER_CONTRAST: Final = (0.7, 1.3)
JITTER_BRIGHTNESS: Final = 0.15


@dataclass(frozen=True, slots=True)
class FrameHands:
    """One annotated frame as stage one saw it: every hand it found (box, presence and
    the features of its crop) and the annotated hands with their gestures."""

    group: str
    truths: tuple[tuple[str, tuple[float, float, float, float]], ...]
    boxes: npt.NDArray[np.float32]
    """``[K, 4]`` normalized, every hand stage one reported."""
    presence: npt.NDArray[np.float32]
    features: npt.NDArray[np.float32]
    """``[K, D]``: the features of each found hand's crop, as served."""
    samples: tuple[tuple[str, npt.NDArray[np.float32]], ...]
    """(gesture, ``[passes, D]`` features) for each annotated hand stage one found:
    the crop as served, then jittered copies (box moved and scaled, light changed)."""
    view: str | None = None
    """How :mod:`models.evaluate.conditions` changed the frame before stage one saw it
    (None: as recorded). :data:`~models.evaluate.conditions.TURN`: turned half a circle,
    only its turned gestures' hands, relabelled; a view that moves the picture
    (``far``): every annotated hand, its box moved along."""


def _normalized(box: Any, annotation: Annotation) -> tuple[float, float, float, float]:
    return (
        box.ymin / annotation.height,
        box.xmin / annotation.width,
        box.ymax / annotation.height,
        box.xmax / annotation.width,
    )


def _jittered(
    box: npt.NDArray[np.float32], copies: int, rng: np.random.Generator
) -> list[npt.NDArray[np.float32]]:
    centre = (box[:2] + box[2:]) / 2
    side = box[2:] - box[:2]
    out = []
    for _ in range(copies):
        moved = centre + rng.normal(0.0, JITTER_SHIFT, 2) * side
        half = side * rng.uniform(*JITTER_SCALE) / 2
        out.append(np.concatenate([moved - half, moved + half]).astype(np.float32))
    return out


def collect(
    model: Any,
    annotations: Sequence[Annotation],
    label_of: Callable[[Annotation, Any], str | None],
    *,
    input_size: tuple[int, int],
    fit: FrameFit = "stretch",
    passes: int,
    seed: int,
    desc: str = "frame hands",
    view: str | None = None,
) -> list[FrameHands]:
    """Every frame of ``annotations`` through ``model``'s stage one (a
    :class:`models.serving.gesture_model.GestureModel`); ``label_of(annotation, box)`` names
    an annotated hand's gesture (``None``: not a hand to learn from or score).
    ``view``: each frame as that view of :mod:`models.evaluate.conditions` changes it,
    its boxes moved along; :data:`~models.evaluate.conditions.TURN` keeps only the
    hands of :data:`~models.dataset.labels.TURNED_GESTURES` (relabelled). Frames left
    with no annotated hand in a view are left out. Frames go in as the
    worker fits them (``fit``); found hands' boxes are kept on the frame, as the
    worker reports them."""
    import tensorflow as tf

    from models.serving.gesture_model import crop_squares

    hands = tf.function(model.hands)
    features_of = tf.function(lambda crops: model.features(crops)[0], reduce_retracing=True)
    margin = model.config.crop_margin
    rng = np.random.default_rng(seed)

    def crop_features(frame: npt.NDArray[np.uint8], boxes: Sequence[Any]) -> Any:
        images = tf.constant(np.repeat(frame[None], len(boxes), axis=0), tf.float32)
        crops = crop_squares(
            images, tf.constant(np.stack(boxes)), tf.zeros([len(boxes)], tf.int32), margin
        )
        crops = crops.numpy() / 255.0
        # The first crop is the served one; the copies also see other light.
        for i in range(1, len(crops)):
            contrast = rng.uniform(*JITTER_CONTRAST)
            brightness = rng.uniform(-JITTER_BRIGHTNESS, JITTER_BRIGHTNESS)
            crops[i] = np.clip((crops[i] - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
        return features_of(tf.constant(crops, tf.float32)).numpy()

    def labelled(annotation: Annotation) -> list[tuple[str, tuple[float, float, float, float]]]:
        named = [
            (label, _normalized(box, annotation))
            for box in annotation.boxes
            if (label := label_of(annotation, box)) is not None
        ]
        if view is None:
            return named
        if view == conditions.TURN:
            return [
                (TURNED_GESTURES[label], conditions.move_box(view, box))
                for label, box in named
                if label in TURNED_GESTURES
            ]
        return [(label, conditions.move_box(view, box)) for label, box in named]

    out = []
    for annotation in tqdm(annotations, desc=desc, unit="frame"):
        wanted = labelled(annotation)
        if view is not None and not wanted:
            continue
        frame, placement = load_placed(annotation.image_path, input_size, view, fit)
        found, presence, count = hands(tf.constant(frame[None]))
        count = int(count[0])
        boxes = found[0, :count].numpy().astype(np.float32)
        features = crop_features(frame, list(boxes)) if count else np.zeros((0, 0), np.float32)
        samples = []
        for label, truth in wanted:
            if not count:
                continue
            overlap = iou(placement.to_input(truth), boxes.astype(np.float64))
            best = int(np.argmax(overlap))
            if overlap[best] >= MATCH_IOU:
                variants = [boxes[best], *_jittered(boxes[best], passes - 1, rng)]
                samples.append((label, crop_features(frame, variants)))
        on_frame = [placement.to_frame((float(y0), float(x0), float(y1), float(x1)))
                    for y0, x0, y1, x1 in boxes]  # fmt: skip
        kept = [i for i, box in enumerate(on_frame) if box is not None]
        out.append(
            FrameHands(
                annotation.group,
                tuple(wanted),
                np.asarray([on_frame[i] for i in kept], np.float32).reshape(-1, 4),
                presence[0, :count].numpy().astype(np.float32)[kept],
                features[kept],
                tuple(samples),
                view,
            )
        )
    return out


def training_arrays(
    frames: Sequence[FrameHands],
    labels: Sequence[str],
    repeat: int,
    *,
    views: Collection[str] = (),
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Features and class indices of every annotated hand of ``frames`` (all passes),
    ``repeat`` times over: a few hundred real hands beside ten thousand crops. Hands
    of frames seen in a view (:attr:`FrameHands.view`) only for the ``views`` named
    (the others are there to be scored)."""
    index: Mapping[str, int] = {label: i for i, label in enumerate(labels)}
    frames = [frame for frame in frames if frame.view is None or frame.view in views]
    xs = [features for frame in frames for _, features in frame.samples]
    ys = [
        np.full(len(features), index[label], np.int64)
        for frame in frames
        for label, features in frame.samples
    ]
    if not xs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys)
    return np.tile(x, (repeat, 1)), np.tile(y, repeat)
