"""Stage one's first network: MediaPipe's palm detector.

The network is MediaPipe's BlazePalm "full" since v5, "lite" before (Apache-2.0; both
take a 192x192 input and share the 2016 fixed
anchors on a 24x24 and a 12x12 grid) rebuilt over variables by
:mod:`models.networks.tflite_import`, with its own weights: v1 fine-tuned it on our ten people's
full-hand boxes, and on people and rooms it had never seen it drew boxes down the
forearm; :mod:`models.networks.hand_tracking` now turns its palms into hands the way MediaPipe
does.

Frames of any aspect ratio are letterboxed (zero padding) to a square first, as
MediaPipe does, so hands keep their shape. Outputs are the BlazePalm encoding: the
palm box's centre offset from the anchor and its size, then seven keypoints, in pixels
of the 192-px input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.networks.tflite_import import ImportedGraph, import_tflite

INPUT_SIZE: Final = 192
# (feature-map size, anchors per cell) for BlazePalm's SSD anchors: strides 8 and 16
# (three stride-16 layers share one grid), two anchors per layer and cell.
_GRIDS: Final = ((24, 2), (12, 6))


@functools.cache
def ssd_anchor_centres(grids: tuple[tuple[int, int], ...]) -> npt.NDArray[np.float32]:
    """Anchor centres ``(y, x)``, normalized, of MediaPipe's SSD anchors with fixed
    anchor size: ``grids`` lists (feature-map size, anchors per cell) in the network's
    output order (computed once per layout; read-only)."""
    centres = []
    for size, per_cell in grids:
        for y in range(size):
            for x in range(size):
                centres.extend([((y + 0.5) / size, (x + 0.5) / size)] * per_cell)
    return _read_only(np.asarray(centres, dtype=np.float32))


def anchor_centres() -> npt.NDArray[np.float32]:
    """``[2016, 2]`` BlazePalm anchor centres."""
    return ssd_anchor_centres(_GRIDS)


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


def antialias_factor(frame_side: int, size: int = INPUT_SIZE) -> int:
    """By how many pixels a frame whose longer side is ``frame_side`` is averaged down
    (each way) before the bilinear shrink to ``size``: the whole part of the scale."""
    return max(1, frame_side // size)


def shrink_antialiased(images: tf.Tensor, frame_side: int, size: int = INPUT_SIZE) -> tf.Tensor:
    """``[N, H, W, C]`` averaged over blocks of :func:`antialias_factor` pixels each way
    (one TFLite ``AVERAGE_POOL_2D``), so that the bilinear shrink to ``size`` that
    follows has at most 2x left to do.

    Shrinking 480 px to 192 straight away keeps one pixel in 2.5, and with it the
    sensor's full noise: in dim frames (``memelearning evaluate --conditions dim``) the
    palm detector then missed most hands it finds in the same frames well lit. A
    Gaussian blur sized like an antialiasing resize found a few more dim hands but cost
    ten times more in TFLite (docs/models.md)."""
    factor = antialias_factor(frame_side, size)
    if factor < 2:
        return images
    return tf.nn.avg_pool2d(images, factor, factor, "VALID")


class HandDetector(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """BlazePalm over variables: :meth:`raw_keypoints` is the network (palm boxes,
    keypoints and scores per anchor); :mod:`models.networks.hand_tracking` decodes them."""

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

    def raw_keypoints(self, images01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[N, 192, 192, 3]`` in [0, 1] → regressors ``[N, 2016, 18]`` (the palm box,
        then seven palm keypoints (x, y), each relative to its anchor, in input pixels)
        and logits ``[N, 2016]``."""
        regressors, logits = self._graph(images01)
        return regressors, logits[..., 0]

    @property
    def anchors(self) -> tf.Tensor:
        """``[2016, 2]`` anchor centres (y, x), normalized."""
        return self._anchors
