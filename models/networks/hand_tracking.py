"""Stage one the way MediaPipe finds hands: palm → rotated hand region → landmarks.

BlazePalm (stock weights, never fine-tuned: Google trained it on far more people and
rooms than we have) finds palms and seven palm keypoints. The wrist and the middle
finger's knuckle give the hand's direction, so the region the landmark network looks
at is rotated until the fingers point up, shifted towards them and grown to hold the
whole hand (MediaPipe's own recipe: 2.6x the palm, half a palm towards the fingers).
The landmark network then places the 21 joints and says whether a hand is there at
all; the reported box comes from the joints, not from the detector, so a detector
box that runs down the forearm or swallows a lamp no longer becomes the hand's box,
and what is not a hand (faces, lamps, windows) is rejected by the presence score.

Everything is written with ops in TFLite's built-in set (top-k, gathers, arithmetic),
and the greedy NMS is unrolled over a handful of candidates, so the SavedModel and
the TFLite export run the same code and agree.

Coordinates: the palm stage works in letterbox units (the square network input, so
x and y share one scale and angles are true); regions and landmarks are then carried
in frame pixels, and boxes are reported normalized to the frame, ``(ymin, xmin, ymax,
xmax)`` as the Object Detection API does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import tensorflow as tf

from models.networks.hand_detector import INPUT_SIZE, Letterbox

ROI_SCALE: Final = 2.6
"""The hand region's side as a multiple of the palm box's longer side (MediaPipe)."""
ROI_SHIFT: Final = 0.5
"""How far the region moves from the palm towards the fingers, in palm heights."""
_WRIST: Final = 0
_MIDDLE_KNUCKLE: Final = 2
LANDMARK_INPUT: Final = 224


@dataclass(frozen=True, slots=True)
class PalmCandidates:
    """Up to ``slots`` palms per frame, best first: ``rois [N, S, 4]`` (centre x,
    centre y, side, rotation; frame pixels and radians) and ``live [N, S]`` (False for
    empty slots). The palm scores are not kept: the landmark network's presence score
    decides what is a hand."""

    rois: tf.Tensor
    live: tf.Tensor


def box_iou_matrix(boxes: tf.Tensor) -> tf.Tensor:
    """``[N, K, 4]`` boxes (ymin, xmin, ymax, xmax) → ``[N, K, K]`` pairwise IoU."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    area = tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)
    inter_h = tf.maximum(
        tf.minimum(ymax[:, :, None], ymax[:, None, :])
        - tf.maximum(ymin[:, :, None], ymin[:, None, :]),
        0.0,
    )
    inter_w = tf.maximum(
        tf.minimum(xmax[:, :, None], xmax[:, None, :])
        - tf.maximum(xmin[:, :, None], xmin[:, None, :]),
        0.0,
    )
    inter = inter_h * inter_w
    return inter / tf.maximum(area[:, :, None] + area[:, None, :] - inter, 1e-9)


def greedy_nms_mask(boxes: tf.Tensor, keep: tf.Tensor, iou_threshold: float) -> tf.Tensor:
    """Greedy NMS over ``K`` candidates already sorted best first: ``keep [N, K]`` (bool,
    which candidates pass the score threshold) → which survive. Unrolled over K (a
    handful), so it needs no NMS op: TFLite's built-ins have none that keeps indices."""
    count = boxes.shape[1]
    overlaps = box_iou_matrix(boxes) > iou_threshold
    kept = [keep[:, 0]]
    for i in range(1, count):
        earlier = tf.stack(kept, axis=1)  # [N, i]
        suppressed = tf.reduce_any(earlier & overlaps[:, i, :i], axis=1)
        kept.append(keep[:, i] & tf.logical_not(suppressed))
    return tf.stack(kept, axis=1)


def first_slots(mask: tf.Tensor, scores: tf.Tensor, slots: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``slots`` best candidates that ``mask`` keeps: ``(indices [N, S], live [N, S])``."""
    ranked = tf.math.top_k(tf.where(mask, scores, -1.0), k=slots)
    return ranked.indices, ranked.values >= 0.0


def palm_candidates(
    regressors: tf.Tensor,
    logits: tf.Tensor,
    anchors: tf.Tensor,
    placement: Letterbox,
    frame_size: tf.Tensor,
    *,
    slots: int,
    candidates: int,
    score_threshold: float,
    iou_threshold: float,
) -> PalmCandidates:
    """BlazePalm's raw outputs (``regressors [N, A, 18]`` in input pixels, ``logits
    [N, A]``; ``anchors [A, 2]`` normalized (y, x)) → the hand regions of the best
    ``slots`` palms per frame after NMS among the ``candidates`` highest scores.
    ``frame_size`` is ``(height, width)`` of the frames, float."""
    scores = tf.sigmoid(logits)
    top = tf.math.top_k(scores, k=candidates)
    chosen = tf.gather(regressors, top.indices, batch_dims=1) / float(INPUT_SIZE)  # [N,C,18]
    anchor = tf.gather(anchors, top.indices)  # [N, C, 2] (y, x)
    centre_x = chosen[..., 0] + anchor[..., 1]
    centre_y = chosen[..., 1] + anchor[..., 0]
    width = tf.abs(chosen[..., 2])
    height = tf.abs(chosen[..., 3])
    boxes = tf.stack(
        [centre_y - height / 2, centre_x - width / 2, centre_y + height / 2, centre_x + width / 2],
        axis=-1,
    )
    keep = greedy_nms_mask(boxes, top.values >= score_threshold, iou_threshold)
    index, live = first_slots(keep, top.values, slots)

    def pick(values: tf.Tensor) -> tf.Tensor:
        return tf.gather(values, index, batch_dims=1)

    wrist_x = pick(chosen[..., 4 + 2 * _WRIST] + anchor[..., 1])
    wrist_y = pick(chosen[..., 5 + 2 * _WRIST] + anchor[..., 0])
    knuckle_x = pick(chosen[..., 4 + 2 * _MIDDLE_KNUCKLE] + anchor[..., 1])
    knuckle_y = pick(chosen[..., 5 + 2 * _MIDDLE_KNUCKLE] + anchor[..., 0])
    rotation = _upright_rotation(knuckle_x - wrist_x, knuckle_y - wrist_y)
    palm_x, palm_y = pick(centre_x), pick(centre_y)
    palm_height = pick(height)
    # Move from the palm towards the fingers (the rotated frame's "up").
    roi_x = palm_x + ROI_SHIFT * palm_height * tf.sin(rotation)
    roi_y = palm_y - ROI_SHIFT * palm_height * tf.cos(rotation)
    roi_side = tf.maximum(pick(width), palm_height) * ROI_SCALE
    # Letterbox units → frame pixels: the letterbox is isotropic, one scale for both.
    frame_side = tf.reduce_max(frame_size)
    pixels_x = (roi_x - placement.offset_x) * frame_side
    pixels_y = (roi_y - placement.offset_y) * frame_side
    rois = tf.stack([pixels_x, pixels_y, roi_side * frame_side, rotation], axis=-1)
    return PalmCandidates(rois=rois, live=live)


def _upright_rotation(dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """The rotation (radians) that turns the direction ``(dx, dy)`` (image axes, y down)
    to point straight up, wrapped to [-pi, pi)."""
    angle = math.pi / 2 - tf.atan2(-dy, dx)
    return angle - 2 * math.pi * tf.floor((angle + math.pi) / (2 * math.pi))


def rotated_crops(
    frames: tf.Tensor, rois: tf.Tensor, image_index: tf.Tensor, size: int = LANDMARK_INPUT
) -> tf.Tensor:
    """``[M, size, size, 3]`` float crops (the scale of ``frames``) of rotated square
    regions ``rois [M, 4]`` (centre x, centre y, side, rotation; pixels; pixel i covers
    [i, i + 1)), nearest pixel, zero outside the frame. ``frames`` is ``[N, H, W, 3]``
    (uint8 or float)."""
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    centre_x, centre_y, side, rotation = tf.unstack(rois, axis=-1)
    steps = (tf.range(size, dtype=tf.float32) + 0.5) / size - 0.5
    u = steps[None, None, :] * side[:, None, None]  # along the region's x
    v = steps[None, :, None] * side[:, None, None]  # along the region's y
    cos = tf.cos(rotation)[:, None, None]
    sin = tf.sin(rotation)[:, None, None]
    xs = centre_x[:, None, None] + u * cos - v * sin  # [M, size, size], frame pixels
    ys = centre_y[:, None, None] + u * sin + v * cos
    # Never let a non-finite region become an out-of-range gather index.
    xs = tf.clip_by_value(tf.where(tf.math.is_finite(xs), xs, -1.0), -1.0, 1e5)
    ys = tf.clip_by_value(tf.where(tf.math.is_finite(ys), ys, -1.0), -1.0, 1e5)
    # Nearest pixel, one gather per output pixel: bilinear sampling cost four gathers
    # and the blending arithmetic (4.7 ms a crop on one core in TFLite against 0.9 ms),
    # and the landmark network found as many hands of the 803 frames of signs/ either
    # way (93.4 % against 93.6 % at the same box scale; docs/models.md).
    rows = tf.floor(ys)
    columns = tf.floor(xs)
    fheight = tf.cast(height, tf.float32)
    fwidth = tf.cast(width, tf.float32)
    inside = (rows >= 0) & (rows <= fheight - 1) & (columns >= 0) & (columns <= fwidth - 1)
    row = tf.cast(tf.clip_by_value(rows, 0, fheight - 1), tf.int32)
    column = tf.cast(tf.clip_by_value(columns, 0, fwidth - 1), tf.int32)
    first = tf.cast(image_index, tf.int32)[:, None, None] * height * width
    values = tf.cast(
        tf.gather(tf.reshape(frames, [-1, 3]), first + row * width + column), tf.float32
    )
    return values * tf.cast(inside, tf.float32)[..., None]


def landmarks_to_frame(points: tf.Tensor, rois: tf.Tensor, size: int = LANDMARK_INPUT) -> tf.Tensor:
    """Landmarks ``[M, 21, 2+]`` in crop pixels → ``[M, 21, 2]`` (x, y) frame pixels."""
    centre_x, centre_y, side, rotation = tf.unstack(rois[:, None, :], axis=-1)
    u = (points[..., 0] / size - 0.5) * side
    v = (points[..., 1] / size - 0.5) * side
    cos, sin = tf.cos(rotation), tf.sin(rotation)
    return tf.stack([centre_x + u * cos - v * sin, centre_y + u * sin + v * cos], axis=-1)


def landmark_boxes(points: tf.Tensor, frame_size: tf.Tensor, scale: float) -> tf.Tensor:
    """Frame-pixel landmarks ``[M, 21, 2]`` → normalized boxes ``[M, 4]``: the joints'
    bounds grown ``scale`` times about their centre (the joints sit inside the hand's
    outline, so a whole-hand box is larger), clipped to the frame."""
    low = tf.reduce_min(points, axis=1)
    high = tf.reduce_max(points, axis=1)
    centre = (low + high) / 2.0
    half = (high - low) * (scale / 2.0)
    height, width = frame_size[0], frame_size[1]
    boxes = tf.stack(
        [
            (centre[:, 1] - half[:, 1]) / height,
            (centre[:, 0] - half[:, 0]) / width,
            (centre[:, 1] + half[:, 1]) / height,
            (centre[:, 0] + half[:, 0]) / width,
        ],
        axis=-1,
    )
    return tf.clip_by_value(boxes, 0.0, 1.0)
