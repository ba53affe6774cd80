"""The two stages joined into one servable model, exported as a SavedModel that follows
the Object Detection API contract and as a TFLite file for GPU-less workers.

``serving_default`` takes uint8 frames ``[N, H, W, 3]`` of any size and batch and
returns, per frame, up to ``max_hands`` detections: the hand's box, the gesture id
from ``label_map.pbtxt`` (1-based; ``none`` is never emitted) and a score that is the
hand score times the gesture probability. ``detect_hands`` returns stage one alone
(hand boxes and scores) and ``classify_crops`` stage two alone (gesture probabilities
of 224x224 hand crops, in the order of ``head_labels`` in ``model.json``), for
evaluation and debugging.

The TFLite export runs the same weights on one frame of the fixed size in
``model.json``; its non-maximum suppression is TFLite's built-in
``TFLite_Detection_PostProcess`` (``tf.image`` NMS would need Flex ops no CPU-only
runtime ships), bound the way the Object Detection API binds it: an empty
``tf.function`` whose ``experimental_implements`` names the op and its attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import tensorflow as tf

from models.gesture_classifier import CROP_SIZE, NONE_LABEL, GestureHead, LandmarkFeatures
from models.hand_detector import (
    NUM_ANCHORS,
    HandDetector,
    letterbox,
    non_max_suppression,
    to_frame,
)
from models.model_card import write_model_card

TFLITE_FILE: Final = "model.tflite"
_LOG_FLOOR: Final = 1e-4
_FRAMES: Final = tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")
_CROPS: Final = tf.TensorSpec([None, CROP_SIZE, CROP_SIZE, 3], tf.uint8, name="crops")
EVAL_HAND_THRESHOLD: Final = 0.01
HANDS_SIGNATURE: Final = "detect_hands"
CROPS_SIGNATURE: Final = "classify_crops"


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Serving-time settings baked into the export."""

    max_hands: int = 4
    """Hands considered per frame (the output has this many slots)."""
    tflite_weights: str = "fp16"
    """How the TFLite export stores weights: fp32, fp16 or int8 (dynamic range).
    Measured on the trained model (docs/models.md): fp16 halves the file and names the
    same gestures as the SavedModel (scores within 0.01); int8 dynamic-range weights
    broke stage two (5 of 89 labels kept) and ran slower on this CPU."""
    tflite_max_hands: int = 2
    """The same for the TFLite export, whose fixed shapes classify every slot, found
    or not: a meeting frame rarely shows more than one person's two hands."""
    hand_threshold: float = 0.3
    """Hands scoring below this are not classified (and not reported)."""
    nms_iou: float = 0.3
    crop_margin: float = 1.2
    """The square crop's side, as a multiple of the hand box's longer side."""
    input_size: tuple[int, int] = (360, 480)
    """(H, W) the worker resizes frames to, and the TFLite input size."""


def crop_squares(
    images: tf.Tensor, boxes: tf.Tensor, image_index: tf.Tensor, margin: float
) -> tf.Tensor:
    """Square crops ``[M, 224, 224, 3]`` (float32, the scale of ``images``) around hand
    boxes (normalized ``[M, 4]``), bilinear, zero outside the frame.

    Written with gathers rather than ``tf.image.crop_and_resize`` so the same code runs
    in TFLite's built-in op set, and the SavedModel and TFLite exports agree.
    """
    shape = tf.shape(images)
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    # Never let a non-finite or absurd box turn into an out-of-range gather index.
    boxes = tf.clip_by_value(tf.where(tf.math.is_finite(boxes), boxes, 0.0), -1.0, 2.0)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    centre_y = (ymin + ymax) / 2.0 * height
    centre_x = (xmin + xmax) / 2.0 * width
    side = tf.maximum((ymax - ymin) * height, (xmax - xmin) * width) * margin
    steps = (tf.range(CROP_SIZE, dtype=tf.float32) + 0.5) / CROP_SIZE - 0.5
    ys = centre_y[:, None] + steps[None, :] * side[:, None] - 0.5  # [M, S] pixel rows
    xs = centre_x[:, None] + steps[None, :] * side[:, None] - 0.5
    y0 = tf.floor(ys)
    x0 = tf.floor(xs)
    wy = (ys - y0)[:, :, None, None]
    wx = (xs - x0)[:, None, :, None]
    # Bilinear sampling is separable: gather whole rows first (contiguous copies),
    # blend them, then gather columns from those rows. Per-pixel 4-corner gathers cost
    # ~10x more here, in TensorFlow and TFLite alike.
    rows = tf.reshape(images, [-1, shape[2], 3])  # [N*H, W, 3]
    first_row = tf.cast(image_index, tf.int32)[:, None] * shape[1]

    def row_band(yy: tf.Tensor) -> tf.Tensor:
        inside = tf.cast((yy >= 0) & (yy <= height - 1), tf.float32)[:, :, None, None]
        index = first_row + tf.cast(tf.clip_by_value(yy, 0, height - 1), tf.int32)
        # Gathered as stored (uint8 frames: a quarter of the bytes), then widened.
        return tf.cast(tf.gather(rows, index), tf.float32) * inside  # [M, S, W, 3]

    band = row_band(y0) * (1 - wy) + row_band(y0 + 1) * wy

    def column(xx: tf.Tensor) -> tf.Tensor:
        inside = tf.cast((xx >= 0) & (xx <= width - 1), tf.float32)[:, None, :, None]
        index = tf.cast(tf.clip_by_value(xx, 0, width - 1), tf.int32)
        return tf.gather(band, index, axis=2, batch_dims=1) * inside  # [M, S, S, 3]

    return column(x0) * (1 - wx) + column(x0 + 1) * wx


class GestureModel(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    def __init__(
        self,
        detector: HandDetector,
        features: LandmarkFeatures,
        head: GestureHead,
        config: ModelConfig,
    ) -> None:
        super().__init__(name="gesture_model")
        if NONE_LABEL not in head.labels:
            raise ValueError(f"the head needs a {NONE_LABEL!r} class")
        self.detector = detector
        self.features = features
        self.head = head
        self.config = config
        self.gestures = tuple(label for label in head.labels if label != NONE_LABEL)
        # Head class index → 1-based label-map id, 0 for `none`.
        ids = [
            0 if label == NONE_LABEL else self.gestures.index(label) + 1 for label in head.labels
        ]
        self._label_ids = tf.constant(ids, tf.float32)
        self._gesture_mask = tf.constant([label != NONE_LABEL for label in head.labels])

    # -- stage one -------------------------------------------------------------------
    def _hand_candidates(self, frames01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        boxed, placement = letterbox(frames01)
        regressors, logits = self.detector.raw(boxed)
        boxes = to_frame(self.detector.decode(regressors), placement)
        return boxes, tf.sigmoid(logits)

    def hands(
        self, frames01: tf.Tensor, score_threshold: float | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Hand boxes ``[N, K, 4]``, scores ``[N, K]`` and counts ``[N]``."""
        boxes, scores = self._hand_candidates(frames01)
        return non_max_suppression(
            boxes,
            scores,
            max_hands=self.config.max_hands,
            iou_threshold=self.config.nms_iou,
            score_threshold=(
                self.config.hand_threshold if score_threshold is None else score_threshold
            ),
        )

    # -- stage two -------------------------------------------------------------------
    def _classify(
        self, frames: tf.Tensor, boxes: tf.Tensor, image_index: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Best gesture (label-map id, float) and its probability for each crop of the
        uint8 ``frames``."""
        crops = crop_squares(frames, boxes, image_index, self.config.crop_margin) / 255.0
        features, _ = self.features(crops)
        probabilities = tf.nn.softmax(self.head.logits(features))
        gesture_only = tf.where(self._gesture_mask[None, :], probabilities, -1.0)
        best = tf.argmax(gesture_only, axis=-1, output_type=tf.int32)
        return tf.gather(self._label_ids, best), tf.reduce_max(gesture_only, axis=-1)

    def detect(self, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        frames01 = tf.cast(frames, tf.float32) / 255.0
        boxes, hand_scores, valid = self.hands(frames01)
        count = tf.shape(boxes)[0]
        slots = self.config.max_hands
        # Classify only real hands: most frames hold one or none, so cropping every
        # slot would triple the second stage's cost.
        live = tf.range(slots)[None, :] < valid[:, None]
        where = tf.cast(tf.where(live), tf.int32)
        # TensorFlow's CPU convolutions fail on an empty batch ("input depth must be
        # evenly divisible by filter depth"), so a batch without hands skips stage two.
        classes, probability = tf.cond(
            tf.shape(where)[0] > 0,
            lambda: self._classify(frames, tf.gather_nd(boxes, where), where[:, 0]),
            lambda: (tf.zeros([0], tf.float32), tf.zeros([0], tf.float32)),
        )
        shape = tf.stack([count, slots])
        class_grid = tf.scatter_nd(where, classes, shape)
        score_grid = tf.scatter_nd(where, probability, shape) * hand_scores
        return _sorted_outputs(boxes, class_grid, score_grid, valid)

    @tf.function(input_signature=[_FRAMES])  # type: ignore[untyped-decorator]
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.detect(input_tensor)

    @tf.function(input_signature=[_FRAMES])  # type: ignore[untyped-decorator]
    def serve_hands(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        # A low floor: evaluation wants the whole precision-recall curve.
        frames01 = tf.cast(input_tensor, tf.float32) / 255.0
        boxes, scores, valid = self.hands(frames01, score_threshold=EVAL_HAND_THRESHOLD)
        return {"hand_boxes": boxes, "hand_scores": scores, "num_hands": tf.cast(valid, tf.float32)}

    @tf.function(input_signature=[_CROPS])  # type: ignore[untyped-decorator]
    def serve_crops(self, crops: tf.Tensor) -> dict[str, tf.Tensor]:
        def classify() -> tuple[tf.Tensor, tf.Tensor]:
            features, presence = self.features(tf.cast(crops, tf.float32) / 255.0)
            return tf.nn.softmax(self.head.logits(features)), presence

        def nothing() -> tuple[tf.Tensor, tf.Tensor]:
            return tf.zeros([0, len(self.head.labels)]), tf.zeros([0])

        probabilities, presence = tf.cond(tf.shape(crops)[0] > 0, classify, nothing)
        return {"gesture_probabilities": probabilities, "hand_presence": presence}

    # -- TFLite ----------------------------------------------------------------------
    def tflite_function(self) -> Any:
        """A concrete function for the TFLite converter: one frame of the configured
        size, the same outputs as ``serving_default``."""
        height, width = self.config.input_size
        slots = self.config.tflite_max_hands
        anchors = np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (NUM_ANCHORS, 1))
        postprocess = _postprocess_op(slots, self.config)

        frame = tf.TensorSpec([1, height, width, 3], tf.uint8, name="input_tensor")

        @tf.function(input_signature=[frame])  # type: ignore[untyped-decorator]
        def serve_tflite(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            frames01 = tf.cast(input_tensor, tf.float32) / 255.0
            boxes, scores = self._hand_candidates(frames01)
            # TFLite_Detection_PostProcess decodes centre-size encodings against the
            # anchors; unit anchors at the origin make it pass our boxes through.
            centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
            size = tf.maximum(boxes[..., 2:] - boxes[..., :2], _LOG_FLOOR)
            encodings = tf.concat([centre, tf.math.log(size)], axis=-1)
            class_scores = tf.stack([tf.zeros_like(scores), scores], axis=-1)
            nms_boxes, _, nms_scores, num = postprocess(
                encodings, class_scores, tf.constant(anchors)
            )
            # Slots past num_detections hold whatever the op left there: zero them.
            live = tf.cast(tf.range(slots) < tf.cast(num[0], tf.int32), tf.float32)
            nms_boxes = tf.reshape(nms_boxes, [1, slots, 4]) * live[None, :, None]
            nms_scores = tf.reshape(nms_scores, [1, slots]) * live[None, :]
            classes, probability = self._classify(
                input_tensor, nms_boxes[0], tf.zeros([slots], tf.int32)
            )
            valid = tf.cast(tf.reshape(num, [1]), tf.int32)
            return _sorted_outputs(
                nms_boxes,
                (classes * live)[None, :],
                (probability * live)[None, :] * nms_scores,
                valid,
            )

        return serve_tflite.get_concrete_function()


def _sorted_outputs(
    boxes: tf.Tensor, classes: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor
) -> dict[str, tf.Tensor]:
    order = tf.math.top_k(scores, k=tf.shape(scores)[1]).indices
    return {
        "detection_boxes": tf.gather(boxes, order, batch_dims=1),
        "detection_classes": tf.gather(classes, order, batch_dims=1),
        "detection_scores": tf.gather(scores, order, batch_dims=1),
        "num_detections": tf.cast(valid, tf.float32),
    }


def _postprocess_op(slots: int, config: ModelConfig) -> Any:
    attributes = {
        "max_detections": f"i: {slots}",
        "max_classes_per_detection": "i: 1",
        "detections_per_class": f"i: {slots}",
        "use_regular_nms": "b: false",
        "nms_score_threshold": f"f: {config.hand_threshold}",
        "nms_iou_threshold": f"f: {config.nms_iou}",
        "num_classes": "i: 1",
        "y_scale": "f: 1.0",
        "x_scale": "f: 1.0",
        "h_scale": "f: 1.0",
        "w_scale": "f: 1.0",
    }
    implements = " ".join(
        ['name: "TFLite_Detection_PostProcess"']
        + [f'attr {{ key: "{key}" value {{ {value} }} }}' for key, value in attributes.items()]
    )

    # The body only gives TensorFlow the output shapes; the converter replaces the call.
    @tf.function(experimental_implements=implements)  # type: ignore[untyped-decorator]
    def postprocess(
        box_encodings: tf.Tensor, class_predictions: tf.Tensor, anchors: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        del box_encodings, class_predictions, anchors
        return (
            tf.zeros([1, slots, 4]),
            tf.zeros([1, slots]),
            tf.zeros([1, slots]),
            tf.zeros([1]),
        )

    return postprocess


def label_map_text(labels: Sequence[str]) -> str:
    items = [f'item {{\n  id: {i}\n  name: "{label}"\n}}\n' for i, label in enumerate(labels, 1)]
    return "".join(items)


def export(
    model: GestureModel, out_dir: Path, metadata: dict[str, Any], *, tflite: bool = True
) -> Path:
    """Write the SavedModel, ``label_map.pbtxt``, ``model.json`` and (optionally) the
    TFLite variant into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        model,
        str(out_dir),
        signatures={
            "serving_default": model.serve.get_concrete_function(),
            HANDS_SIGNATURE: model.serve_hands.get_concrete_function(),
            CROPS_SIGNATURE: model.serve_crops.get_concrete_function(),
        },
    )
    (out_dir / "label_map.pbtxt").write_text(label_map_text(model.gestures), encoding="utf-8")
    meta = {
        **metadata,
        "input_size": list(model.config.input_size),
        "config": asdict(model.config),
        "head_labels": list(model.head.labels),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_model_card(out_dir, meta, None)
    if tflite:
        (out_dir / TFLITE_FILE).write_bytes(to_tflite(model))
    return out_dir


def to_tflite(model: GestureModel) -> bytes:
    """The TFLite flatbuffer of ``model`` with weights stored as
    ``model.config.tflite_weights``: ``fp32``, ``fp16`` (half the size, computed in
    fp32) or ``int8`` (dynamic-range quantized weights)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.tflite_function()], model)
    converter.allow_custom_ops = True
    weights = model.config.tflite_weights
    if weights in ("fp16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if weights == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif weights != "int8" and weights != "fp32":
        raise ValueError(f"tflite_weights must be fp32, fp16 or int8, got {weights!r}")
    data: bytes = converter.convert()
    return data
