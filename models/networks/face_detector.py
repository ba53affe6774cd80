"""The face stage's first network: MediaPipe's BlazeFace short-range face detector.

Google's ``face_detector.tflite`` from the Face Landmarker bundle (Apache-2.0; 128x128
input, 896 fixed anchors), rebuilt over frozen variables by
:mod:`models.networks.tflite_import`. It is trained for faces within about two metres of the
camera, which is how people sit in a meeting. :mod:`models.networks.face_tracking` decodes its
outputs the way MediaPipe's face detector graph does.

Frames are letterboxed to a square first (as MediaPipe does, ``keep_aspect_ratio``
with a zero border), so faces keep their shape; the network wants pixels in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.networks.hand_detector import Letterbox, ssd_anchor_centres
from models.networks.tflite_import import ImportedGraph, import_tflite

INPUT_SIZE: Final = 128
NUM_KEYPOINTS: Final = 6
"""Right eye, left eye (the person's), nose tip, mouth centre, right and left ear
tragion, in the network's order."""
# (feature-map size, anchors per cell) of MediaPipe's SSD anchors for this model
# (face_detector_graph.cc: strides 8, 16, 16, 16, one aspect ratio plus an interpolated
# scale, fixed anchor size): the three stride-16 layers share one 8x8 grid, so 16x16x2 +
# 8x8x6 = 896 anchors.
_GRIDS: Final = ((16, 2), (8, 6))


def anchor_centres() -> npt.NDArray[np.float32]:
    """``[896, 2]`` BlazeFace anchor centres ``(y, x)``, normalized, in the network's
    output order."""
    return ssd_anchor_centres(_GRIDS)


def letterbox_like_mediapipe(
    images: tf.Tensor, size: int = INPUT_SIZE
) -> tuple[tf.Tensor, Letterbox]:
    """Float ``[N, H, W, 3]`` → ``[N, size, size, 3]``: the frame centred on a zero square
    and scaled down the way MediaPipe's image-to-tensor step samples it (output pixel
    ``j`` reads the frame at ``j * side / size``, pixel centres on integers; TensorFlow's
    half-pixel resize reads ``(j + 0.5) * side / size - 0.5``, a pixel and a half away
    at this scale). BlazeFace is sensitive to that shift on hard frames: a face beside
    a raised hand scored 0.78 with the half-pixel resize and 0.85 with this one, and
    MediaPipe's own face detector says 0.85."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    side = tf.maximum(height, width)
    top = (side - height) // 2
    left = (side - width) // 2
    square = tf.pad(
        images, [[0, 0], [top, side - height - top], [left, side - width - left], [0, 0]]
    )
    boxed = tf.raw_ops.ResizeBilinear(
        images=square, size=[size, size], align_corners=False, half_pixel_centers=False
    )
    fside = tf.cast(side, tf.float32)
    placement = Letterbox(
        scale_y=tf.cast(height, tf.float32) / fside,
        scale_x=tf.cast(width, tf.float32) / fside,
        offset_y=tf.cast(top, tf.float32) / fside,
        offset_x=tf.cast(left, tf.float32) / fside,
    )
    return boxed, placement


class FaceDetector(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """BlazeFace short-range over frozen variables: :meth:`raw` is the network."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="face_detector")
        if graph.input_shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected a {INPUT_SIZE}x{INPUT_SIZE} RGB network")
        self._graph = graph
        # Tracked as a list of variables: the TFLite converter drops weights it reaches
        # only through untracked Python objects.
        self.weights = list(graph.variables)
        self._anchors = tf.constant(anchor_centres())

    @classmethod
    def from_tflite(cls, path: Path) -> FaceDetector:
        return cls(import_tflite(path, name="face_detector", trainable=False))

    def raw(self, images01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[N, 128, 128, 3]`` in [0, 1] → regressors ``[N, 896, 16]`` (box centre x,
        y, width, height, then six keypoints (x, y); offsets from the anchor, in input
        pixels) and logits ``[N, 896]``."""
        regressors, logits = self._graph(images01 * 2.0 - 1.0)
        return regressors, logits[..., 0]

    @property
    def anchors(self) -> tf.Tensor:
        """``[896, 2]`` anchor centres (y, x), normalized."""
        return self._anchors
