"""The two stages joined into one servable model, exported as a SavedModel that follows
the Object Detection API contract and as a TFLite file for GPU-less workers.

``serving_default`` takes uint8 frames ``[N, H, W, 3]`` of any size and batch and
returns, per frame, up to ``max_hands`` hand detections: the hand's box, the gesture id
from ``label_map.pbtxt`` (1-based; ``none`` is never emitted) and a score that is the
hand score times the gesture probability; and, when the model has a face stage
(:mod:`models.networks.face_tracking`), up to ``max_faces`` face detections: the face's
box, ``smile`` or ``neutral`` (the ids after the gestures) and the face score times that
expression's probability; a hand held against the face in the ``thinking`` pose, or
raised as people ask to speak (``raise_hand``), is reported with that pose instead of
its gesture (:mod:`models.networks.poses`). All are sorted by score. ``detect_hands``
returns stage one alone (hand boxes and scores), ``detect_faces`` the face stage alone
(boxes, scores, smile probability) and ``classify_crops`` stage two alone (gesture
probabilities of 224x224 hand crops, in the order of ``head_labels`` in ``model.json``),
for evaluation and debugging.

Stage one is MediaPipe's (:mod:`models.networks.hand_tracking`): palms, rotated hand regions,
landmarks; the box and the hand score come from the landmark network. Stage two crops
a square around that box for the gesture head.

The TFLite export runs the same weights and the same code on one frame of the fixed
size in ``model.json``: its NMS is unrolled over a few candidates and its crops are
gathers, so it needs only TFLite's built-in ops (``tf.image`` NMS would need Flex ops
no CPU-only runtime ships). With ``tflite_landmarks: int8`` its two landmark networks
(``region-int8``: stage one's alone) are full-integer copies, calibrated on frames of
the training people and spliced into the converted graph
(:mod:`models.serving.tflite_splice`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.dataset.labels import FACE_LABELS, NEUTRAL, POSE_LABELS, RAISE_HAND, SMILE, THINKING
from models.networks.base_models import HAND_LANDMARKS, HAND_REGION_LANDMARKS, PALM_DETECTOR
from models.networks.face_tracking import FaceStage
from models.networks.gesture_classifier import (
    CROP_SIZE,
    FEATURE_TAPS,
    LANDMARK_TAPS,
    NONE_LABEL,
    GestureHead,
    LandmarkFeatures,
)
from models.networks.hand_detector import (
    HandDetector,
    Letterbox,
    letterbox,
    shrink_antialiased,
)
from models.networks.hand_tracking import (
    PalmCandidates,
    first_slots,
    greedy_nms_mask,
    landmark_boxes,
    landmarks_to_frame,
    palm_candidates,
    rotated_crops,
)
from models.networks.poses import pose_scores
from models.serving import TFLITE_LANDMARKS
from models.serving.tflite_splice import splice
from worker.decode import FrameFit

TFLITE_FILE: Final = "model.tflite"
_FRAMES: Final = tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")
_CROPS: Final = tf.TensorSpec([None, CROP_SIZE, CROP_SIZE, 3], tf.uint8, name="crops")
EVAL_HAND_THRESHOLD: Final = 0.01
HANDS_SIGNATURE: Final = "detect_hands"
CROPS_SIGNATURE: Final = "classify_crops"
FACES_SIGNATURE: Final = "detect_faces"
SPLICED_REGION_LANDMARKS: Final = "spliced_region_landmarks"
SPLICED_GESTURE_FEATURES: Final = "spliced_gesture_features"
"""Names of the conditions whose branch holds a landmark network alone in the TFLite
graph, for :func:`models.serving.tflite_splice.splice`."""
_Landmarks = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


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
    tflite_landmarks: str = "float"
    """How the TFLite export runs its two landmark networks: ``float`` (weights stored
    as ``tflite_weights``), ``int8`` (full-integer copies calibrated on the training
    people's hands, spliced into the graph: about twice as fast on XNNPACK with
    AVX-512 VNNI, no faster with AVX2 alone) or ``region-int8`` (stage one's in int8,
    the gesture head's features in float). int8 needs :class:`LandmarkCalibration` at
    export. The SavedModel always runs them in float."""
    tflite_max_hands: int = 2
    """The same for the TFLite export, whose fixed shapes classify every slot, found
    or not: a meeting frame rarely shows more than one person's two hands."""
    hand_threshold: float = 0.5
    """Hands whose landmark-network presence score is below this are not reported
    (MediaPipe's own default)."""
    palm_threshold: float = 0.3
    """Palm detections below this score are not looked at (the presence score decides
    what is a hand; a low floor here keeps hands in dim rooms)."""
    palm_candidates: int = 8
    """Best palm scores per frame that NMS chooses among."""
    palm_antialias: bool = True
    """Average the frame down by the whole part of the shrink to the palm detector's
    input (:func:`shrink_antialiased`: 2x2 blocks for 480 px) before shrinking it:
    measured with ``memelearning evaluate --conditions`` (docs/models.md), it found
    hands in dim frames that aliased sensor noise hid, at no loss on well-lit ones."""
    nms_iou: float = 0.3
    box_scale: float = 1.4
    """A hand's box is its 21 joints' bounds grown this many times: calibrated on the
    training people of ``signs/`` and ``hands/train`` against their LabelImg boxes
    (docs/models.md)."""
    crop_margin: float = 1.2
    """The classifier's square crop's side, as a multiple of the hand box's longer side."""
    input_size: tuple[int, int] = (360, 480)
    """(H, W) the worker resizes frames to, and the TFLite input size."""
    frame_fit: FrameFit = "letterbox"
    """How the worker fits a frame of another shape into ``input_size``
    (``model.json``'s ``frame_fit``, :mod:`worker.decode`): whole between black bands
    since v7, so a 16:9 camera's hands keep their shape; v1-v6 were stretched."""


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
        faces: FaceStage | None = None,
        *,
        landmarks: LandmarkFeatures | None = None,
    ) -> None:
        """``features``: the landmark network whose features the gesture head reads;
        ``landmarks``: the one stage one places each hand's joints with (default: the
        same network)."""
        super().__init__(name="gesture_model")
        if NONE_LABEL not in head.labels:
            raise ValueError(f"the head needs a {NONE_LABEL!r} class")
        self.detector = detector
        self.features = features
        self.landmarks = landmarks if landmarks is not None else features
        self.head = head
        self.config = config
        self.faces = faces
        self.gestures = tuple(label for label in head.labels if label != NONE_LABEL)
        clash = set(self.gestures) & set(FACE_LABELS)
        if faces is not None and clash:
            raise ValueError(f"the head has face labels as gestures: {sorted(clash)}")
        self.labels = self.gestures + (FACE_LABELS + POSE_LABELS if faces is not None else ())
        """Label-map order: the gestures, then the face labels and the poses (ids 1, 2, ...)."""

        def label_id(label: str) -> float:
            return float(self.labels.index(label) + 1) if label in self.labels else 0.0

        self._smile_id, self._neutral_id = label_id(SMILE), label_id(NEUTRAL)
        self._thinking_id, self._raise_hand_id = label_id(THINKING), label_id(RAISE_HAND)
        # Head class index → 1-based label-map id, 0 for `none`.
        ids = [
            0 if label == NONE_LABEL else self.gestures.index(label) + 1 for label in head.labels
        ]
        self._label_ids = tf.constant(ids, tf.float32)
        self._gesture_mask = tf.constant([label != NONE_LABEL for label in head.labels])

    @classmethod
    def from_base_models(
        cls,
        paths: Mapping[str, Path],
        head: GestureHead,
        config: ModelConfig,
        faces: FaceStage | None = None,
    ) -> GestureModel:
        """The served networks, from ``paths`` (:func:`base_model_paths`): stage one's
        palm detector and landmark network, the gesture head's feature network."""
        return cls(
            HandDetector.from_tflite(paths[PALM_DETECTOR.file_name]),
            LandmarkFeatures.from_tflite(paths[HAND_LANDMARKS.file_name]),
            head,
            config,
            faces,
            landmarks=LandmarkFeatures.from_tflite(paths[HAND_REGION_LANDMARKS.file_name]),
        )

    def with_settings(
        self, head: GestureHead, config: ModelConfig, faces: FaceStage | None = None
    ) -> GestureModel:
        """The same networks serving ``head`` with ``config`` (and ``faces``)."""
        return GestureModel(
            self.detector, self.features, head, config, faces, landmarks=self.landmarks
        )

    # -- stage one -------------------------------------------------------------------
    def palm_input(self, frames01: tf.Tensor) -> tuple[tf.Tensor, Letterbox]:
        """What the palm detector is given for ``frames01`` (``[N, H, W, 3]`` in [0, 1]):
        the frames shrunk (antialiased where configured) and letterboxed to its input,
        and where the letterbox placed them."""
        if self.config.palm_antialias:
            frames01 = shrink_antialiased(frames01, max(self.config.input_size))
        # Letterbox placement is normalized: the same for the frame and its shrunk copy.
        return letterbox(frames01)

    def _palms(self, frames01: tf.Tensor, slots: int) -> PalmCandidates:
        frame_size = tf.cast(tf.shape(frames01)[1:3], tf.float32)
        boxed, placement = self.palm_input(frames01)
        regressors, logits = self.detector.raw_keypoints(boxed)
        return palm_candidates(
            regressors,
            logits,
            self.detector.anchors,
            placement,
            frame_size,
            slots=slots,
            candidates=max(self.config.palm_candidates, slots),
            score_threshold=self.config.palm_threshold,
            iou_threshold=self.config.nms_iou,
        )

    def _landmark_boxes(
        self,
        frames: tf.Tensor,
        rois: tf.Tensor,
        image_index: tf.Tensor,
        landmarks: _Landmarks | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Hand boxes ``[M, 4]`` from the landmarks found in each region, the landmark
        network's presence scores ``[M]`` and the 21 joints ``[M, 21, 2]`` (x, y
        normalized to the frame). ``landmarks`` runs the network (default:
        ``self.landmarks.landmarks``)."""
        crops = rotated_crops(frames, rois, image_index) / 255.0
        points, presence = (landmarks or self.landmarks.landmarks)(crops)
        frame_size = tf.cast(tf.shape(frames)[1:3], tf.float32)
        pixels = landmarks_to_frame(points, rois)
        boxes = landmark_boxes(pixels, frame_size, self.config.box_scale)
        return boxes, presence, pixels / tf.reverse(frame_size, [0])

    def hands(
        self, frames: tf.Tensor, score_threshold: float | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Hand boxes ``[N, K, 4]``, scores ``[N, K]`` (presence) and counts ``[N]`` of
        uint8 ``frames``, best first, zero-padded."""
        boxes, scores, count, _ = self.hand_landmarks(frames, score_threshold)
        return boxes, scores, count

    def hand_landmarks(
        self, frames: tf.Tensor, score_threshold: float | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """:meth:`hands` and each hand's 21 joints ``[N, K, 21, 2]`` (x, y normalized to
        the frame; MediaPipe's order: wrist, thumb, index ... little finger)."""
        palms = self._palms(tf.cast(frames, tf.float32) / 255.0, self.config.max_hands)
        return self._palm_hands(frames, palms, score_threshold)

    def _palm_hands(
        self, frames: tf.Tensor, palms: PalmCandidates, score_threshold: float | None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """:meth:`hand_landmarks` of the palms stage one found in ``frames``."""
        slots = self.config.max_hands
        # Landmarks only where a palm was found: cost follows the hands in the frame.
        where = tf.cast(tf.where(palms.live), tf.int32)
        boxes, presence, points = tf.cond(
            tf.shape(where)[0] > 0,
            lambda: self._landmark_boxes(frames, tf.gather_nd(palms.rois, where), where[:, 0]),
            lambda: (tf.zeros([0, 4]), tf.zeros([0]), tf.zeros([0, 21, 2])),
        )
        shape = tf.stack([tf.shape(frames)[0], slots])
        box_grid = tf.scatter_nd(where, boxes, tf.concat([shape, [4]], axis=0))
        score_grid = tf.scatter_nd(where, presence, shape)
        point_grid = tf.scatter_nd(where, points, tf.concat([shape, [21, 2]], axis=0))
        boxes, scores, count, (points,) = self._best_hands(
            box_grid, score_grid, score_threshold, slots, (point_grid,)
        )
        return boxes, scores, count, points

    def _best_hands(
        self,
        boxes: tf.Tensor,
        scores: tf.Tensor,
        score_threshold: float | None,
        slots: int,
        extras: Sequence[tf.Tensor] = (),
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """Hands above the threshold, best first, with two regions of one hand (two
        palm detections) reduced to one: boxes, scores, counts, and ``extras``
        (``[N, K, ...]`` values per hand) in the same order; empty slots are zero."""
        threshold = self.config.hand_threshold if score_threshold is None else score_threshold
        order = tf.math.top_k(scores, k=slots).indices
        boxes, scores, *extras = (
            tf.gather(t, order, batch_dims=1) for t in (boxes, scores, *extras)
        )
        keep = greedy_nms_mask(boxes, scores >= threshold, self.config.nms_iou)
        index, live = first_slots(keep, scores, slots)
        livef = tf.cast(live, tf.float32)
        boxes = tf.gather(boxes, index, batch_dims=1) * livef[..., None]
        scores, *extras = (
            tf.gather(t, index, batch_dims=1)
            * tf.reshape(livef, [-1, slots] + [1] * (t.shape.rank - 2))
            for t in (scores, *extras)
        )
        return boxes, scores, tf.reduce_sum(tf.cast(live, tf.int32), axis=1), extras

    def landmark_inputs(self, frames: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """What the two landmark networks are given for uint8 ``frames``: the rotated
        region of every palm stage one looks at (``[M, 224, 224, 3]``) and the square
        stage two cuts around every hand it reports, in [0, 1]."""
        palms = self._palms(tf.cast(frames, tf.float32) / 255.0, self.config.max_hands)
        where = tf.cast(tf.where(palms.live), tf.int32)
        regions = rotated_crops(frames, tf.gather_nd(palms.rois, where), where[:, 0])
        boxes, _, valid, _ = self._palm_hands(frames, palms, None)
        live = tf.range(self.config.max_hands)[None, :] < valid[:, None]
        where = tf.cast(tf.where(live), tf.int32)
        squares = crop_squares(
            frames, tf.gather_nd(boxes, where), where[:, 0], self.config.crop_margin
        )
        return regions / 255.0, squares / 255.0

    # -- stage two -------------------------------------------------------------------
    def _classify(
        self,
        frames: tf.Tensor,
        boxes: tf.Tensor,
        image_index: tf.Tensor,
        features_of: _Landmarks | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Best gesture (label-map id, float) and its probability for each crop of the
        uint8 ``frames``. ``features_of`` runs the feature network (default:
        ``self.features``)."""
        crops = crop_squares(frames, boxes, image_index, self.config.crop_margin) / 255.0
        features, _ = (features_of or self.features)(crops)
        probabilities = tf.nn.softmax(self.head.logits(features))
        gesture_only = tf.where(self._gesture_mask[None, :], probabilities, -1.0)
        best = tf.argmax(gesture_only, axis=-1, output_type=tf.int32)
        return tf.gather(self._label_ids, best), tf.reduce_max(gesture_only, axis=-1)

    def detect(self, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        boxes, hand_scores, valid, points = self.hand_landmarks(frames)
        count = tf.shape(boxes)[0]
        slots = self.config.max_hands
        # Classify only real hands: most frames hold one or none.
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
        if self.faces is not None:
            faces = self.faces(frames)
            class_grid, score_grid = self._posed(
                class_grid, score_grid, hand_scores, points, valid, faces, tf.shape(frames)[1:3]
            )
            return self._with_faces(boxes, class_grid, score_grid, valid, faces)
        return _sorted_outputs(boxes, class_grid, score_grid, valid)

    def _posed(
        self,
        classes: tf.Tensor,
        scores: tf.Tensor,
        presence: tf.Tensor,
        points: tf.Tensor,
        valid: tf.Tensor,
        faces: dict[str, tf.Tensor],
        frame_size: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Hands ``[N, K]`` in a pose take the pose's label, scored with the hand's
        presence (the pose is a rule on landmarks, not a probability)."""
        slots = tf.shape(classes)[1]
        hand_live = tf.range(slots)[None, :] < valid[:, None]
        face_live = (
            tf.range(tf.shape(faces["face_scores"])[1])[None, :] < faces["num_faces"][:, None]
        )
        thinking, raised = pose_scores(
            points, hand_live, faces["face_landmarks"], face_live, frame_size
        )
        is_raised = raised > 0.5
        is_thinking = (thinking > 0.5) & ~is_raised
        classes = tf.where(is_raised, self._raise_hand_id, classes)
        classes = tf.where(is_thinking, self._thinking_id, classes)
        scores = tf.where(is_raised | is_thinking, presence, scores)
        return classes, scores

    def _with_faces(
        self,
        boxes: tf.Tensor,
        classes: tf.Tensor,
        scores: tf.Tensor,
        valid: tf.Tensor,
        faces: dict[str, tf.Tensor],
    ) -> dict[str, tf.Tensor]:
        """The hands' detections ``[N, K]`` and the face stage's ``[N, F]`` as one sorted
        list per frame: each face is ``smile`` or ``neutral``, whichever is likelier,
        scored face presence x that probability."""
        smile = faces["smile"]
        smiling = smile >= 0.5
        face_classes = tf.where(smiling, self._smile_id, self._neutral_id)
        face_scores = faces["face_scores"] * tf.where(smiling, smile, 1.0 - smile)
        return _sorted_outputs(
            tf.concat([boxes, faces["face_boxes"]], axis=1),
            tf.concat([classes, face_classes], axis=1),
            tf.concat([scores, face_scores], axis=1),
            valid + faces["num_faces"],
        )

    @tf.function(input_signature=[_FRAMES])  # type: ignore[untyped-decorator]
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.detect(input_tensor)

    @tf.function(input_signature=[_FRAMES])  # type: ignore[untyped-decorator]
    def serve_hands(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        # A low floor: evaluation wants the whole precision-recall curve.
        boxes, scores, valid = self.hands(input_tensor, score_threshold=EVAL_HAND_THRESHOLD)
        return {"hand_boxes": boxes, "hand_scores": scores, "num_hands": tf.cast(valid, tf.float32)}

    def serve_faces(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        """The face stage alone: boxes, presence scores, counts and smile probability
        (``[N, F]``), for evaluation."""
        if self.faces is None:
            raise ValueError("this model has no face stage")
        out = self.faces(input_tensor)
        return {k: out[k] for k in ("face_boxes", "face_scores", "num_faces", "smile")}

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
        size, the same outputs as ``serving_default``. Each slot's landmark and
        gesture passes sit behind a condition (TFLite ``IF``), so a frame costs the
        palm detector plus one landmark pass per palm and one gesture pass per hand."""
        height, width = self.config.input_size
        slots = self.config.tflite_max_hands
        frame = tf.TensorSpec([1, height, width, 3], tf.uint8, name="input_tensor")
        threshold = self.config.hand_threshold
        landmarks: _Landmarks | None = None
        features_of: _Landmarks | None = None
        spliced = int8_networks(self.config)
        if SPLICED_REGION_LANDMARKS in spliced:
            landmarks = _spliceable(
                SPLICED_REGION_LANDMARKS, self.landmarks, LANDMARK_TAPS, self.landmarks.landmarks_of
            )
        if SPLICED_GESTURE_FEATURES in spliced:
            features_of = _spliceable(
                SPLICED_GESTURE_FEATURES, self.features, FEATURE_TAPS, self.features.features_of
            )

        @tf.function(input_signature=[frame])  # type: ignore[untyped-decorator]
        def serve_tflite(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            palms = self._palms(tf.cast(input_tensor, tf.float32) / 255.0, slots)
            one = tf.zeros([1], tf.int32)

            def nothing() -> tuple[tf.Tensor, ...]:
                return tf.zeros([4]), tf.zeros([]), tf.zeros([]), tf.zeros([]), tf.zeros([21, 2])

            def hand(slot: int) -> tuple[tf.Tensor, ...]:
                boxes, presence, points = self._landmark_boxes(
                    input_tensor, palms.rois[0, slot : slot + 1], one, landmarks
                )

                def classify() -> tuple[tf.Tensor, tf.Tensor]:
                    classes, probability = self._classify(input_tensor, boxes, one, features_of)
                    return classes[0], probability[0]

                classes, probability = tf.cond(
                    presence[0] >= threshold,
                    classify,
                    lambda: (tf.zeros([]), tf.zeros([])),
                )
                return boxes[0], presence[0], classes, probability, points[0]

            found = [
                tf.cond(palms.live[0, slot], lambda slot=slot: hand(slot), nothing)
                for slot in range(slots)
            ]
            boxes = tf.stack([f[0] for f in found])[None]
            presence = tf.stack([f[1] for f in found])[None]
            classes = tf.stack([f[2] for f in found])[None]
            probability = tf.stack([f[3] for f in found])[None]
            points = tf.stack([f[4] for f in found])[None]
            # The same choice of hands as the SavedModel: best presence first, two
            # regions of one hand reduced to one, below the threshold dropped.
            boxes, presence, count, (classes, probability, points) = self._best_hands(
                boxes, presence, None, slots, (classes, probability, points)
            )
            if self.faces is not None:
                faces = self.faces.one_frame(input_tensor)
                classes, scores = self._posed(
                    classes, probability * presence, presence, points, count, faces, [height, width]
                )
                return self._with_faces(boxes, classes, scores, count, faces)
            return _sorted_outputs(boxes, classes, probability * presence, count)

        return serve_tflite.get_concrete_function()


def _spliceable(
    name: str,
    network: LandmarkFeatures,
    taps: Sequence[str],
    after: Callable[[Sequence[tf.Tensor]], tuple[tf.Tensor, tf.Tensor]],
) -> _Landmarks:
    """``network``'s call on one crop, its raw ``taps`` computed alone in the true
    branch of a condition named ``name``: a subgraph of its own in the TFLite file,
    which :func:`to_tflite` replaces with an int8 copy. The condition always holds
    (crops are in [0, 1]); the converter cannot know that, so it keeps the branch."""
    # Shapes for the branch never taken, from one eager pass (outside any trace).
    with tf.init_scope():
        shapes = [t.shape for t in network.tapped(tf.zeros([1, CROP_SIZE, CROP_SIZE, 3]), taps)]

    def call(crops01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        tapped = tf.cond(
            crops01[0, 0, 0, 0] >= 0.0,
            lambda: network.tapped(crops01, taps),
            lambda: [tf.zeros(shape) for shape in shapes],
            name=name,
        )
        return after(tapped)

    return call


def int8_networks(config: ModelConfig) -> tuple[str, ...]:
    """Which landmark networks ``config`` has the TFLite export run in int8, by the
    name of the condition they are spliced into (empty: none, no calibration needed)."""
    if config.tflite_landmarks not in TFLITE_LANDMARKS:
        raise ValueError(
            f"tflite_landmarks must be {', '.join(TFLITE_LANDMARKS)}, "
            f"got {config.tflite_landmarks!r}"
        )
    return {
        "float": (),
        "region-int8": (SPLICED_REGION_LANDMARKS,),
        "int8": (SPLICED_REGION_LANDMARKS, SPLICED_GESTURE_FEATURES),
    }[config.tflite_landmarks]


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


def label_map_text(labels: Sequence[str]) -> str:
    items = [f'item {{\n  id: {i}\n  name: "{label}"\n}}\n' for i, label in enumerate(labels, 1)]
    return "".join(items)


def export(
    model: GestureModel,
    out_dir: Path,
    metadata: dict[str, Any],
    *,
    tflite: bool = True,
    calibration: LandmarkCalibration | None = None,
) -> Path:
    """Write the SavedModel, ``label_map.pbtxt``, ``model.json`` and (optionally) the
    TFLite variant into ``out_dir`` (``calibration``: see :func:`to_tflite`). The
    model card is written by the callers
    (:func:`models.evaluate.model_card.write_model_card`): the model knows nothing of
    its evaluation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    signatures = {
        "serving_default": model.serve.get_concrete_function(),
        HANDS_SIGNATURE: model.serve_hands.get_concrete_function(),
        CROPS_SIGNATURE: model.serve_crops.get_concrete_function(),
    }
    if model.faces is not None:
        signatures[FACES_SIGNATURE] = tf.function(
            model.serve_faces, input_signature=[_FRAMES]
        ).get_concrete_function()
    tf.saved_model.save(model, str(out_dir), signatures=signatures)
    (out_dir / "label_map.pbtxt").write_text(label_map_text(model.labels), encoding="utf-8")
    meta = {
        **metadata,
        "input_size": list(model.config.input_size),
        "frame_fit": model.config.frame_fit,
        "config": asdict(model.config),
        "head_labels": list(model.head.labels),
        "face_labels": list(FACE_LABELS) if model.faces is not None else [],
        "pose_labels": list(POSE_LABELS) if model.faces is not None else [],
        "faces": asdict(model.faces.config) if model.faces is not None else None,
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if tflite:
        # Written last and renamed into place: its presence says the export finished.
        partial = out_dir / f".{TFLITE_FILE}.partial"
        partial.write_bytes(to_tflite(model, calibration))
        partial.replace(out_dir / TFLITE_FILE)
    return out_dir


@dataclass(frozen=True, slots=True)
class LandmarkCalibration:
    """What int8 landmark networks are calibrated on: the rotated hand regions stage one
    cuts (the region landmark network) and the squares stage two classifies (the
    feature network), each ``[1, 224, 224, 3]`` float32 in [0, 1]. Gathered from the
    training people's frames (:mod:`models.train.landmark_calibration`); never written
    to disk."""

    regions: tuple[npt.NDArray[np.float32], ...]
    squares: tuple[npt.NDArray[np.float32], ...]


def to_tflite(model: GestureModel, calibration: LandmarkCalibration | None = None) -> bytes:
    """The TFLite flatbuffer of ``model`` with weights stored as
    ``model.config.tflite_weights``: ``fp32``, ``fp16`` (half the size, computed in
    fp32) or ``int8`` (dynamic-range quantized weights); the landmark networks
    ``tflite_landmarks`` names are int8 copies calibrated on ``calibration``."""
    spliced = int8_networks(model.config)
    if spliced and (calibration is None or not calibration.regions or not calibration.squares):
        raise ValueError(
            f"tflite_landmarks {model.config.tflite_landmarks} needs calibration regions "
            "and squares"
        )
    data = _convert(model.tflite_function(), model, model.config.tflite_weights)
    if not spliced:
        return data
    assert calibration is not None
    inputs = {
        SPLICED_REGION_LANDMARKS: (model.landmarks, LANDMARK_TAPS, calibration.regions),
        SPLICED_GESTURE_FEATURES: (model.features, FEATURE_TAPS, calibration.squares),
    }
    return splice(data, {name: landmark_network_int8(*inputs[name]) for name in spliced})


def landmark_network_int8(
    network: LandmarkFeatures,
    taps: Sequence[str],
    calibration: Sequence[npt.NDArray[np.float32]],
) -> bytes:
    """``network``'s ``taps`` for one crop as a full-integer TFLite file (int8 weights
    and activations, XNNPACK's QS8 kernels) with float input and outputs, its ranges
    calibrated on ``calibration``."""
    spec = tf.TensorSpec([1, CROP_SIZE, CROP_SIZE, 3], tf.float32)
    function = tf.function(lambda x: network.tapped(x, taps), input_signature=[spec])
    return int8_flatbuffer(function.get_concrete_function(), network, calibration)


def int8_flatbuffer(
    function: Any, trackable: Any, calibration: Sequence[npt.NDArray[np.float32]]
) -> bytes:
    """The concrete ``function`` of one float input as a full-integer TFLite file, float
    input and outputs, its activation ranges taken from ``calibration``."""

    def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
        for x in calibration:
            yield [x]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data: bytes = converter.convert()
    return data


def _convert(function: Any, model: GestureModel, weights: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.allow_custom_ops = True
    if weights in ("fp16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if weights == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif weights != "int8" and weights != "fp32":
        raise ValueError(f"tflite_weights must be fp32, fp16 or int8, got {weights!r}")
    data: bytes = converter.convert()
    return data
