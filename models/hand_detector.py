"""Stage one: a class-agnostic, single-shot hand detector.

The network is MediaPipe's BlazePalm "lite" (Apache-2.0; 192x192 input, 2016 fixed
anchors on a 24x24 and a 12x12 grid) rebuilt over trainable variables by
:mod:`models.tflite_import`, then fine-tuned here on the full-hand boxes of ``hands/``
and ``signs/``: BlazePalm was trained to find palms, we need the whole hand (fingers
included) because the gesture classifier looks at the fingers.

Frames of any aspect ratio are letterboxed (zero padding) to a square first, as
MediaPipe does, so hands keep their shape. Boxes are predicted the BlazePalm way: the
first four regressor outputs are the box centre offset from the anchor and the box
size, in pixels of the 192-px input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.tflite_import import ImportedGraph, import_tflite

INPUT_SIZE: Final = 192
# (feature-map size, anchors per cell) for BlazePalm's SSD anchors: strides 8 and 16
# (three stride-16 layers share one grid), two anchors per layer and cell.
_GRIDS: Final = ((24, 2), (12, 6))
NUM_ANCHORS: Final = sum(size * size * per_cell for size, per_cell in _GRIDS)


@functools.cache
def anchor_centres() -> npt.NDArray[np.float32]:
    """``[2016, 2]`` anchor centres ``(y, x)``, normalized, in the network's output order
    (computed once: encode_targets needs them for every training image; read-only)."""
    centres = []
    for size, per_cell in _GRIDS:
        for y in range(size):
            for x in range(size):
                centres.extend([((y + 0.5) / size, (x + 0.5) / size)] * per_cell)
    return _read_only(np.asarray(centres, dtype=np.float32))


@functools.cache
def anchor_cell_sizes() -> npt.NDArray[np.float32]:
    """``[2016]`` the normalized cell size of each anchor's grid (1/24 or 1/12)."""
    sizes = [np.full(size * size * per_cell, 1.0 / size) for size, per_cell in _GRIDS]
    return _read_only(np.concatenate(sizes).astype(np.float32))


def _read_only(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where a frame sits inside the square network input (normalized units)."""

    scale_y: tf.Tensor
    scale_x: tf.Tensor
    offset_y: tf.Tensor
    offset_x: tf.Tensor


def letterbox(images: tf.Tensor, size: int = INPUT_SIZE) -> tuple[tf.Tensor, Letterbox]:
    """Float ``[N, H, W, 3]`` (any scale) → ``[N, size, size, 3]`` padded to a square,
    and the mapping back to frame coordinates."""
    shape = tf.shape(images)
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    side = tf.maximum(height, width)
    boxed = tf.image.resize_with_pad(images, size, size, method="bilinear")
    scale_y = height / side
    scale_x = width / side
    return boxed, Letterbox(scale_y, scale_x, (1.0 - scale_y) / 2.0, (1.0 - scale_x) / 2.0)


def to_frame(boxes: tf.Tensor, box: Letterbox) -> tf.Tensor:
    """Boxes ``[..., 4]`` (ymin, xmin, ymax, xmax) in letterbox units → frame units,
    clipped to the frame."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    out = tf.stack(
        [
            (ymin - box.offset_y) / box.scale_y,
            (xmin - box.offset_x) / box.scale_x,
            (ymax - box.offset_y) / box.scale_y,
            (xmax - box.offset_x) / box.scale_x,
        ],
        axis=-1,
    )
    return tf.clip_by_value(out, 0.0, 1.0)


class HandDetector(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """BlazePalm-lite with a hand-box head; :meth:`raw` is the network, :meth:`decode`
    turns its outputs into boxes and scores."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="hand_detector")
        if graph.input_shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected a {INPUT_SIZE}x{INPUT_SIZE} RGB network")
        self._graph = graph
        # Track the variables themselves (not an object holding them): the TFLite
        # converter drops weights it reaches only through untracked Python objects.
        self.weights = list(graph.variables)
        self._anchors = tf.constant(anchor_centres())

    @classmethod
    def from_tflite(cls, path: Path) -> HandDetector:
        return cls(import_tflite(path, name="hand_detector"))

    def raw(self, images01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[N, 192, 192, 3]`` in [0, 1] → regressors ``[N, 2016, 4]`` (pixels) and
        logits ``[N, 2016]``."""
        regressors, logits = self._graph(images01)
        return regressors[..., :4], logits[..., 0]

    def decode(self, regressors: tf.Tensor) -> tf.Tensor:
        """Regressors → boxes ``[N, 2016, 4]`` (ymin, xmin, ymax, xmax), letterbox units."""
        r = regressors / float(INPUT_SIZE)
        cx = r[..., 0] + self._anchors[:, 1]
        cy = r[..., 1] + self._anchors[:, 0]
        half_w = tf.abs(r[..., 2]) / 2.0
        half_h = tf.abs(r[..., 3]) / 2.0
        return tf.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)


def encode_targets(
    boxes: npt.NDArray[np.float32], *, centre_fraction: float = 0.5
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Training targets for one image from its boxes ``[M, 4]`` (ymin, xmin, ymax,
    xmax, letterbox units).

    Returns ``(labels, weights, regression)``: labels ``[2016]`` 1 for anchors that
    answer for a hand, weights ``[2016]`` 0 for anchors to ignore (inside a hand box but
    off its centre: neither clearly hand nor background), regression ``[2016, 4]`` the
    BlazePalm-style target (centre offset and size in input pixels).

    An anchor answers for a box when its centre lies in the middle ``centre_fraction``
    of the box; each box also gets the nearest anchors of both grids, so small hands
    are never left without one. An anchor claimed by two boxes goes to the smaller.
    """
    centres = anchor_centres()
    cells = anchor_cell_sizes()
    labels = np.zeros(NUM_ANCHORS, np.float32)
    weights = np.ones(NUM_ANCHORS, np.float32)
    regression = np.zeros((NUM_ANCHORS, 4), np.float32)
    owner_area = np.full(NUM_ANCHORS, np.inf, np.float32)
    ay, ax = centres[:, 0], centres[:, 1]
    for ymin, xmin, ymax, xmax in boxes:
        h, w = ymax - ymin, xmax - xmin
        if h <= 0 or w <= 0:
            continue
        cy, cx = (ymin + ymax) / 2, (xmin + xmax) / 2
        inside = (ay >= ymin) & (ay <= ymax) & (ax >= xmin) & (ax <= xmax)
        near = (np.abs(ay - cy) <= h * centre_fraction / 2) & (
            np.abs(ax - cx) <= w * centre_fraction / 2
        )
        # The nearest cell of each grid, whatever the box size.
        nearest = (np.abs(ay - cy) <= cells / 2) & (np.abs(ax - cx) <= cells / 2)
        positive = (near | nearest) & (h * w < owner_area)
        weights[inside & (labels == 0)] = 0.0
        labels[positive] = 1.0
        weights[positive] = 1.0
        owner_area[positive] = h * w
        regression[positive] = np.stack(
            [
                (cx - ax[positive]) * INPUT_SIZE,
                (cy - ay[positive]) * INPUT_SIZE,
                np.full(positive.sum(), w * INPUT_SIZE),
                np.full(positive.sum(), h * INPUT_SIZE),
            ],
            axis=-1,
        )
    return labels, weights, regression


def detection_loss(
    regressors: tf.Tensor,
    logits: tf.Tensor,
    labels: tf.Tensor,
    weights: tf.Tensor,
    targets: tf.Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Focal loss over all (non-ignored) anchors and L1 box loss over positives, each
    normalized by the number of positive anchors. Returns ``(class_loss, box_loss)``."""
    positives = tf.maximum(tf.reduce_sum(labels), 1.0)
    probability = tf.sigmoid(logits)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    p_t = labels * probability + (1 - labels) * (1 - probability)
    alpha_t = labels * alpha + (1 - labels) * (1 - alpha)
    focal = alpha_t * tf.pow(1.0 - p_t, gamma) * cross_entropy
    class_loss = tf.reduce_sum(focal * weights) / positives
    # In units of the input size, so centre and size errors weigh alike at any scale.
    error = tf.abs(regressors - targets) / float(INPUT_SIZE)
    box_loss = tf.reduce_sum(tf.reduce_sum(error, axis=-1) * labels) / positives
    return class_loss, box_loss


def non_max_suppression(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    *,
    max_hands: int,
    iou_threshold: float,
    score_threshold: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per image NMS: ``boxes [N, A, 4]``, ``scores [N, A]`` → ``boxes [N, K, 4]``,
    ``scores [N, K]`` (zero-padded), ``valid [N]``."""
    nmsed_boxes, nmsed_scores, _, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        scores[:, :, None],
        max_output_size_per_class=max_hands,
        max_total_size=max_hands,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        clip_boxes=False,
    )
    return nmsed_boxes, nmsed_scores, valid
