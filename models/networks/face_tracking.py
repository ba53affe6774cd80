"""The face stage, the way MediaPipe's Face Landmarker finds faces: BlazeFace → face
region rotated level with the eyes → landmarks → smile or not.

Two landmark variants (:attr:`FaceConfig.landmarks`):

- ``"mesh192"`` (default): MediaPipe's older 468-point face mesh on a 192x192 region;
  the smile model reads the mouth's geometry (:func:`models.networks.smile.mouth_geometry`).
  The ten iris points 468-477 are synthesized (:func:`synthesized_irises`) and the
  blendshapes are zeros. A frame with a face costs about 0.43 times the other's.
- ``"attention256"``: the Face Landmarker's 478-point attention network on a 256x256
  region, then the 52 blendshapes, which the smile model reads.

BlazeFace (:mod:`models.networks.face_detector`) finds faces and six keypoints on the
letterboxed frame; its many overlapping anchors per face are merged by MediaPipe's
*weighted* NMS (the score-weighted mean of every box and keypoint in a cluster, which
steadies the region more than keeping the best anchor alone). The region the landmark
network sees is the face box grown 1.5x and turned so that the eyes lie level
(MediaPipe's face detector graph: rotation from the right to the left eye keypoint,
``scale_x = scale_y = 1.5``). The landmark network places 478 points and says whether
a face is there at all; the reported box is the landmarks' bounds, and the reported
score is that presence, as for hands (:mod:`models.networks.hand_tracking`), whose NMS and box
helpers this module shares.

Cost follows content: the landmark and blendshape networks run only for faces the
detector found. Everything is built from ops in TFLite's built-in set (top-k, gathers,
cumulative sums, arithmetic, unrolled NMS), so the SavedModel path (:meth:`FaceStage.
__call__`, any batch) and the TFLite path (:meth:`FaceStage.one_frame`, one frame, one
condition per face slot) run the same code and agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import tensorflow as tf

from models.networks.base_models import (
    FACE_BLENDSHAPES,
    FACE_DETECTOR,
    FACE_LANDMARKS,
    FACE_MESH,
    BaseModel,
)
from models.networks.face_detector import INPUT_SIZE, FaceDetector, letterbox_like_mediapipe
from models.networks.face_landmarks import (
    BLENDSHAPE_NAMES,
    LANDMARK_INPUT,
    MESH_INPUT,
    NUM_LANDMARKS,
    FaceBlendshapes,
    FaceLandmarks,
    FaceMesh,
)
from models.networks.hand_detector import Letterbox
from models.networks.hand_tracking import (
    box_iou_matrix,
    first_slots,
    greedy_nms_mask,
    landmark_boxes,
    landmarks_to_frame,
)
from models.networks.smile import (
    DEFAULT_MESH_SMILE,
    DEFAULT_SMILE,
    SmileFit,
    SmileHead,
    mouth_geometry,
)

_RIGHT_EYE: Final = 0
_LEFT_EYE: Final = 1
FACE_OUTPUTS: Final = (
    "face_boxes",
    "face_scores",
    "num_faces",
    "face_landmarks",
    "face_blendshapes",
    "smile",
)
LANDMARK_VARIANTS: Final = ("mesh192", "attention256")
""":attr:`FaceConfig.landmarks` choices."""
# The eye contours of the face mesh (MediaPipe's FACEMESH_RIGHT_EYE / LEFT_EYE rings),
# each starting at the outer corner with the inner corner eighth; in the 478-point
# layout the person's right iris (468-472) comes first, then the left (473-477).
_EYE_RINGS: Final = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
)
IRIS_RADIUS: Final = 0.23
"""A synthesized iris's radius in eye widths (corner to corner): what the attention
network places on GENKI's faces, on average (0.21-0.25)."""


@dataclass(frozen=True, slots=True)
class FaceConfig:
    """The face stage's settings, baked into the export."""

    max_faces: int = 2
    """Faces per frame (the output has this many slots): a meeting frame shows one
    person, sometimes two."""
    detection_threshold: float = 0.5
    """BlazeFace scores below this are not looked at (MediaPipe's
    ``min_detection_confidence``)."""
    presence_threshold: float = 0.5
    """Faces whose landmark-network presence is below this are not reported
    (MediaPipe's ``min_face_presence_confidence``)."""
    candidates: int = 32
    """Best detector scores per frame that NMS merges and chooses among. BlazeFace
    fires a dozen or more anchors on one face, so a second, smaller face needs room
    behind the first one's anchors."""
    nms_iou: float = 0.5
    """MediaPipe's ``min_suppression_threshold`` as its Face Landmarker leaves it (the
    proto's default): with 0.3 the cluster takes in the larger boxes of a hand held
    beside the face, and the landmark region drifts off the face."""
    roi_scale: float = 1.5
    """The landmark region's side as a multiple of the face box's longer side."""
    box_scale: float = 1.0
    """The reported box is the landmarks' bounds grown this many times: the mesh runs
    from the top of the forehead to the chin and from cheek to cheek, which is the box
    a person draws around a face."""
    landmarks: str = "mesh192"
    """The landmark network: ``"mesh192"`` (MediaPipe's 468-point face mesh, 192x192;
    smile from mouth geometry; meets the 5 ms budget) or ``"attention256"`` (the Face
    Landmarker's 478-point network, 256x256, and the blendshape network; 2.3 times
    the cost). Figures for both: docs/models.md, "Face stage"."""
    smile: SmileFit | None = None
    """The smile model (:mod:`models.networks.smile`); ``None`` is the fit shipped for the
    variant (:data:`~models.networks.smile.DEFAULT_MESH_SMILE` or
    :data:`~models.networks.smile.DEFAULT_SMILE`), filled in on construction."""

    def __post_init__(self) -> None:
        if self.landmarks not in LANDMARK_VARIANTS:
            raise ValueError(f"landmarks {self.landmarks!r}: one of {LANDMARK_VARIANTS}")
        wanted = "landmarks" if self.landmarks == "mesh192" else "blendshapes"
        if self.smile is None:
            default = DEFAULT_MESH_SMILE if self.landmarks == "mesh192" else DEFAULT_SMILE
            object.__setattr__(self, "smile", default)  # frozen: set once, here
        elif self.smile.inputs != wanted:
            raise ValueError(f"the {self.landmarks} stage's smile model reads {wanted}")

    @property
    def crop_size(self) -> int:
        """The landmark network's input side in pixels."""
        return MESH_INPUT if self.landmarks == "mesh192" else LANDMARK_INPUT

    @property
    def smile_fit(self) -> SmileFit:
        assert self.smile is not None  # filled in by __post_init__
        return self.smile


@dataclass(frozen=True, slots=True)
class FaceCandidates:
    """Up to ``slots`` faces per frame after NMS, best first: ``rois [N, S, 4]`` (centre
    x, centre y, side, rotation; frame pixels and radians) and ``live [N, S]`` (False
    for empty slots)."""

    rois: tf.Tensor
    live: tf.Tensor


def weighted_nms(
    boxes: tf.Tensor, values: tf.Tensor, scores: tf.Tensor, keep: tf.Tensor, iou_threshold: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """MediaPipe's weighted NMS over ``K`` candidates sorted best first: ``boxes [N, K,
    4]``, ``values [N, K, V]`` (what else is averaged: keypoints), ``scores [N, K]``,
    ``keep [N, K]`` (which pass the score threshold) → ``(heads [N, K], boxes, values)``
    where each head (a candidate greedy NMS keeps) carries the score-weighted mean of
    its cluster: itself and the later candidates that overlap it and no earlier head."""
    count = boxes.shape[1]
    heads = greedy_nms_mask(boxes, keep, iou_threshold)
    itself = tf.constant(np.eye(count, dtype=bool))[None]  # even a zero-area box
    overlaps = (box_iou_matrix(boxes) > iou_threshold) | itself
    claims = tf.cast(heads[:, :, None] & overlaps & keep[:, None, :], tf.float32)  # [N, K, K]
    # A candidate belongs to the first head that claims it.
    earlier = tf.cumsum(claims, axis=1, exclusive=True)
    weights = claims * tf.cast(earlier == 0.0, tf.float32) * scores[:, None, :]
    total = tf.maximum(tf.reduce_sum(weights, axis=2, keepdims=True), 1e-9)
    merged_boxes = tf.matmul(weights, boxes) / total
    merged_values = tf.matmul(weights, values) / total
    return heads, merged_boxes, merged_values


def face_candidates(
    regressors: tf.Tensor,
    logits: tf.Tensor,
    anchors: tf.Tensor,
    placement: Letterbox,
    frame_size: tf.Tensor,
    config: FaceConfig,
) -> FaceCandidates:
    """BlazeFace's raw outputs (``regressors [N, 896, 16]`` in input pixels, ``logits
    [N, 896]``; ``anchors [896, 2]`` normalized (y, x)) → the landmark regions of the
    best ``config.max_faces`` faces per frame. ``frame_size`` is ``(height, width)``."""
    scores = tf.sigmoid(logits)
    top = tf.math.top_k(scores, k=max(config.candidates, config.max_faces))
    chosen = tf.gather(regressors, top.indices, batch_dims=1) / float(INPUT_SIZE)  # [N,K,16]
    anchor = tf.gather(anchors, top.indices)  # [N, K, 2] (y, x)
    anchor_xy = tf.stack([anchor[..., 1], anchor[..., 0]], axis=-1)
    centre = chosen[..., 0:2] + anchor_xy
    half = chosen[..., 2:4] / 2.0  # (width, height) / 2
    boxes = tf.stack(
        [
            centre[..., 1] - half[..., 1],
            centre[..., 0] - half[..., 0],
            centre[..., 1] + half[..., 1],
            centre[..., 0] + half[..., 0],
        ],
        axis=-1,
    )
    keypoints = chosen[..., 4:16] + tf.tile(anchor_xy, [1, 1, 6])  # (x, y) x 6
    heads, boxes, keypoints = weighted_nms(
        boxes, keypoints, top.values, top.values >= config.detection_threshold, config.nms_iou
    )
    index, live = first_slots(heads, top.values, config.max_faces)
    boxes = tf.gather(boxes, index, batch_dims=1)
    keypoints = tf.gather(keypoints, index, batch_dims=1)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    eye_dx = keypoints[..., 2 * _LEFT_EYE] - keypoints[..., 2 * _RIGHT_EYE]
    eye_dy = keypoints[..., 2 * _LEFT_EYE + 1] - keypoints[..., 2 * _RIGHT_EYE + 1]
    # Turn the region until the eyes lie level (letterbox units share one scale for x
    # and y, so the angle is the true one).
    rotation = tf.atan2(eye_dy, eye_dx)
    side = tf.maximum(xmax - xmin, ymax - ymin) * config.roi_scale
    frame_side = tf.reduce_max(frame_size)
    rois = tf.stack(
        [
            ((xmin + xmax) / 2.0 - placement.offset_x) * frame_side,
            ((ymin + ymax) / 2.0 - placement.offset_y) * frame_side,
            side * frame_side,
            rotation,
        ],
        axis=-1,
    )
    return FaceCandidates(rois=rois, live=live)


def face_crops(
    frames: tf.Tensor, rois: tf.Tensor, image_index: tf.Tensor, size: int = LANDMARK_INPUT
) -> tf.Tensor:
    """``[M, size, size, 3]`` float crops (the scale of ``frames``) of rotated square
    regions ``rois [M, 4]`` (centre x, centre y, side, rotation; pixels; pixel i covers
    [i, i + 1)) of ``frames [N, H, W, 3]`` (uint8 or float), nearest pixel, zero outside
    the frame.

    The same samples as :func:`models.networks.hand_tracking.rotated_crops` with less
    element-wise work per sample, which a 256x256 region makes worth it: the sample grid
    is the sum of a per-row and a per-column term, and a sample outside the frame reads
    one zero pixel appended to the frame instead of being masked afterwards."""
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    # A non-finite region must never become an out-of-range gather index.
    rois = tf.where(tf.math.is_finite(rois), rois, 0.0)
    centre_x, centre_y, side, rotation = tf.unstack(rois[:, :, None], axis=1)  # [M, 1] each
    steps = ((tf.range(size, dtype=tf.float32) + 0.5) / size - 0.5)[None, :]  # [1, S]
    cos = tf.cos(rotation) * side
    sin = tf.sin(rotation) * side
    # x = cx + u cos - v sin, y = cy + u sin + v cos (u along a crop row, v down it).
    xs = (-steps * sin)[:, :, None] + (centre_x + steps * cos)[:, None, :]  # [M, S, S]
    ys = (steps * cos)[:, :, None] + (centre_y + steps * sin)[:, None, :]
    fheight = tf.cast(height, tf.float32)
    fwidth = tf.cast(width, tf.float32)
    inside = (ys >= 0.0) & (ys < fheight) & (xs >= 0.0) & (xs < fwidth)
    # Non-negative after clamping, so the cast's truncation is the floor.
    rows = tf.cast(tf.clip_by_value(ys, 0.0, fheight - 1.0), tf.int32)
    columns = tf.cast(tf.clip_by_value(xs, 0.0, fwidth - 1.0), tf.int32)
    pixels = tf.reshape(frames, [-1, 3])
    first = tf.cast(image_index, tf.int32)[:, None, None] * (height * width)
    index = tf.where(inside, first + rows * width + columns, tf.shape(pixels)[0])
    padded = tf.concat([pixels, tf.zeros([1, 3], frames.dtype)], axis=0)
    return tf.cast(tf.gather(padded, index), tf.float32)


def synthesized_irises(pixels: tf.Tensor, depth: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The ten iris points 468-477 the 468-point mesh lacks, from its eye contours:
    ``pixels [M, 468, 2]`` (frame pixels), ``depth [M, 468]`` → ``([M, 10, 2], [M,
    10])``. Each iris is centred in its eye contour with radius :data:`IRIS_RADIUS` eye
    widths, its four contour points to the image right, up, left and down of the centre
    along the eye line, in the attention network's order; depth is the contour's mean.
    Where the eye is looking is not known: these say where the eyes are, not gaze."""
    right, left = pixels[:, 33], pixels[:, 263]
    axis = left - right
    unit = axis / tf.maximum(tf.norm(axis, axis=-1, keepdims=True), 1e-6)
    down = tf.stack([-unit[:, 1], unit[:, 0]], axis=-1)  # image y grows downwards
    points, depths = [], []
    for ring in _EYE_RINGS:
        contour = tf.gather(pixels, list(ring), axis=1)
        centre = tf.reduce_mean(contour, axis=1)
        radius = IRIS_RADIUS * tf.norm(contour[:, 0] - contour[:, 8], axis=-1, keepdims=True)
        points.append(
            tf.stack(
                [
                    centre,
                    centre + radius * unit,
                    centre - radius * down,
                    centre - radius * unit,
                    centre + radius * down,
                ],
                axis=1,
            )
        )
        mean_depth = tf.reduce_mean(tf.gather(depth, list(ring), axis=1), axis=1, keepdims=True)
        depths.append(tf.tile(mean_depth, [1, 5]))
    return tf.concat(points, axis=1), tf.concat(depths, axis=1)


def face_base_models(config: FaceConfig | None = None) -> tuple[BaseModel, ...]:
    """The pretrained networks the stage with ``config`` runs (and a model carrying it
    records)."""
    if (config or FaceConfig()).landmarks == "mesh192":
        return (FACE_DETECTOR, FACE_MESH)
    return (FACE_DETECTOR, FACE_LANDMARKS, FACE_BLENDSHAPES)


class FaceStage(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """Faces in uint8 frames ``[N, H, W, 3]``; see :data:`FACE_OUTPUTS` and
    :meth:`__call__` for what comes out."""

    def __init__(
        self,
        detector: FaceDetector,
        landmarks: FaceLandmarks | FaceMesh,
        blendshapes: FaceBlendshapes | None = None,
        config: FaceConfig | None = None,
    ) -> None:
        super().__init__(name="face_stage")
        if config is None:
            variant = "mesh192" if isinstance(landmarks, FaceMesh) else "attention256"
            config = FaceConfig(landmarks=variant)
        self.config = config
        if isinstance(landmarks, FaceMesh) != (config.landmarks == "mesh192"):
            raise ValueError(f"{type(landmarks).__name__} is not the {config.landmarks} network")
        if config.landmarks == "attention256" and blendshapes is None:
            raise ValueError("the attention256 stage needs the blendshape network")
        self.detector = detector
        self.landmarks = landmarks
        # The mesh stage's smile reads geometry: no blendshape network to carry.
        self.blendshapes = blendshapes if config.landmarks == "attention256" else None
        self.smile = SmileHead(config.smile_fit)

    @classmethod
    def from_base_models(
        cls, paths: Mapping[str, Path], config: FaceConfig | None = None
    ) -> FaceStage:
        """From the verified base-model files (``{file name: path}``, as
        :func:`models.networks.base_models.base_model_paths` returns them); only the variant's
        networks are read (``mesh192``: ``face_detector.tflite`` and
        ``face_landmark.tflite``)."""
        config = config or FaceConfig()
        detector = FaceDetector.from_tflite(paths["face_detector.tflite"])
        if config.landmarks == "mesh192":
            return cls(detector, FaceMesh.from_tflite(paths["face_landmark.tflite"]), None, config)
        return cls(
            detector,
            FaceLandmarks.from_tflite(paths["face_landmarks_detector.tflite"]),
            FaceBlendshapes.from_tflite(paths["face_blendshapes.tflite"]),
            config,
        )

    def candidates(self, frames01: tf.Tensor) -> FaceCandidates:
        """The detector's faces in float frames in [0, 1]."""
        boxed, placement = letterbox_like_mediapipe(frames01)
        regressors, logits = self.detector.raw(boxed)
        frame_size = tf.cast(tf.shape(frames01)[1:3], tf.float32)
        return face_candidates(
            regressors, logits, self.detector.anchors, placement, frame_size, self.config
        )

    def _faces(
        self, frames: tf.Tensor, rois: tf.Tensor, image_index: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        """For ``M`` regions of uint8 frames: boxes ``[M, 4]``, presence ``[M]``,
        normalized landmarks ``[M, 478, 3]``, blendshapes ``[M, 52]`` and smile
        probabilities ``[M]``."""
        size = self.config.crop_size
        points, presence = self.landmarks(face_crops(frames, rois, image_index, size) / 255.0)
        pixels = landmarks_to_frame(points, rois, size)  # [M, 468 or 478, 2]
        shape = tf.shape(frames)
        height = tf.cast(shape[1], tf.float32)
        width = tf.cast(shape[2], tf.float32)
        # Depth is on the scale of x, as MediaPipe reports it (crop pixels → frame width).
        depth = points[..., 2] / size * rois[:, None, 2] / width
        # The box is the mesh's bounds, irises or not (they lie inside it).
        boxes = landmark_boxes(pixels, tf.stack([height, width]), self.config.box_scale)
        if self.blendshapes is None:
            smile = self.smile.probability(mouth_geometry(pixels))
            irises, iris_depth = synthesized_irises(pixels, depth)
            pixels = tf.concat([pixels, irises], axis=1)
            depth = tf.concat([depth, iris_depth], axis=1)
            blendshapes = tf.zeros([tf.shape(pixels)[0], len(BLENDSHAPE_NAMES)])
        else:
            blendshapes = self.blendshapes(pixels)
            smile = self.smile.probability(blendshapes)
        normalized = tf.stack([pixels[..., 0] / width, pixels[..., 1] / height, depth], axis=-1)
        return boxes, presence, normalized, blendshapes, smile

    def tflite_function(self, input_size: tuple[int, int]) -> Any:
        """A concrete function for the TFLite converter: :meth:`one_frame` on one uint8
        frame of ``input_size`` (H, W), named ``input_tensor`` as in the export."""
        frame = tf.TensorSpec([1, *input_size, 3], tf.uint8, name="input_tensor")

        @tf.function(input_signature=[frame])  # type: ignore[untyped-decorator]
        def serve_faces(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            return self.one_frame(input_tensor)

        return serve_faces.get_concrete_function()

    def _nothing(self) -> tuple[tf.Tensor, ...]:
        return (
            tf.zeros([0, 4]),
            tf.zeros([0]),
            tf.zeros([0, NUM_LANDMARKS, 3]),
            tf.zeros([0, len(BLENDSHAPE_NAMES)]),
            tf.zeros([0]),
        )

    def __call__(self, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        """uint8 frames ``[N, H, W, 3]`` → up to ``max_faces`` faces per frame, best
        first, empty slots zero: ``face_boxes [N, F, 4]`` (normalized ymin, xmin, ymax,
        xmax), ``face_scores [N, F]`` (landmark presence), ``num_faces [N]`` (int32),
        ``face_landmarks [N, F, 478, 3]`` (x, y normalized to the frame, z on x's
        scale), ``face_blendshapes [N, F, 52]`` and ``smile [N, F]`` (probability)."""
        slots = self.config.max_faces
        found = self.candidates(tf.cast(frames, tf.float32) / 255.0)
        where = tf.cast(tf.where(found.live), tf.int32)
        # No landmark work for frames without faces (TensorFlow's CPU convolutions also
        # fail on an empty batch).
        faces = tf.cond(
            tf.shape(where)[0] > 0,
            lambda: self._faces(frames, tf.gather_nd(found.rois, where), where[:, 0]),
            self._nothing,
        )
        shape = tf.stack([tf.shape(frames)[0], slots])
        grids = [
            tf.scatter_nd(where, value, tf.concat([shape, tf.shape(value)[1:]], axis=0))
            for value in faces
        ]
        return self._best(*grids)

    def one_frame(self, frame: tf.Tensor) -> dict[str, tf.Tensor]:
        """The same for one uint8 frame ``[1, H, W, 3]`` with fixed shapes, for the
        TFLite export: each face slot's landmark pass and blendshape pass sit behind a
        condition (TFLite ``IF``), so a frame costs the detector plus one landmark
        pass per face found."""
        found = self.candidates(tf.cast(frame, tf.float32) / 255.0)
        one = tf.zeros([1], tf.int32)

        def empty() -> tuple[tf.Tensor, ...]:
            return tuple(tf.zeros(t.shape[1:]) for t in self._nothing())

        def face(slot: int) -> tuple[tf.Tensor, ...]:
            return tuple(t[0] for t in self._faces(frame, found.rois[0, slot : slot + 1], one))

        per_slot = [
            tf.cond(found.live[0, slot], lambda slot=slot: face(slot), empty)
            for slot in range(self.config.max_faces)
        ]
        grids = [tf.stack([s[i] for s in per_slot])[None] for i in range(len(per_slot[0]))]
        return self._best(*grids)

    def _best(
        self,
        boxes: tf.Tensor,
        scores: tf.Tensor,
        landmarks: tf.Tensor,
        blendshapes: tf.Tensor,
        smile: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """Faces present, best first, with two regions that landed on one face (two
        detections) reduced to one; empty slots zero."""
        slots = self.config.max_faces
        order = tf.math.top_k(scores, k=slots).indices
        boxes, scores, landmarks, blendshapes, smile = (
            tf.gather(t, order, batch_dims=1)
            for t in (boxes, scores, landmarks, blendshapes, smile)
        )
        keep = greedy_nms_mask(boxes, scores >= self.config.presence_threshold, self.config.nms_iou)
        index, live = first_slots(keep, scores, slots)
        livef = tf.cast(live, tf.float32)

        def pick(t: tf.Tensor) -> tf.Tensor:
            mask = tf.reshape(livef, [-1, slots] + [1] * (t.shape.rank - 2))
            return tf.gather(t, index, batch_dims=1) * mask

        return {
            "face_boxes": pick(boxes),
            "face_scores": pick(scores),
            "num_faces": tf.reduce_sum(tf.cast(live, tf.int32), axis=1),
            "face_landmarks": pick(landmarks),
            "face_blendshapes": pick(blendshapes),
            "smile": pick(smile),
        }


def face_tflite(stage: FaceStage, input_size: tuple[int, int], *, fp16: bool = True) -> bytes:
    """The face stage alone as a TFLite flatbuffer (built-in ops only: conversion fails
    rather than fall back to TensorFlow ops), weights stored as fp16 like the export's
    by default (computed in fp32 either way)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [stage.tflite_function(input_size)], stage
    )
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    data: bytes = converter.convert()
    return data
