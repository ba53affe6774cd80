"""Stage two: which gesture a hand crop shows.

The crop goes through MediaPipe's hand-landmark "lite" network (Apache-2.0, rebuilt
over variables by :mod:`models.networks.tflite_import`, kept frozen): it was trained on hands
from many people to find 21 finger joints, so its pooled features and its landmarks
describe the hand's pose rather than the person or the room. A small head trained here
on ``hagrid-crops/`` maps them to gestures. Landmarks are made independent of where
the hand sits in the crop and of its size (wrist at the origin, unit scale), so the
head learns finger configurations, not framing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from PIL import Image, ImageFilter

from models.networks.tflite_import import ImportedGraph, import_tflite

CROP_SIZE: Final = 224
NONE_LABEL: Final = "none"
"""The class for hands that make no gesture: trained on, never reported."""
_POOLED: Final = "model_1/model/global_average_pooling2d/Mean"
_LANDMARKS: Final = "Identity"
_PRESENCE: Final = "Identity_1"
_HANDEDNESS: Final = "Identity_2"
FEATURE_TAPS: Final = (_POOLED, _LANDMARKS, _PRESENCE, _HANDEDNESS)
"""The network's tensors the gesture head's features are made of."""
LANDMARK_TAPS: Final = (_LANDMARKS, _PRESENCE)
"""The network's tensors stage one places a hand with."""


class LandmarkFeatures(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """Frozen hand-landmark network → one feature vector per crop."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="landmark_features")
        if graph.input_shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected a {CROP_SIZE}x{CROP_SIZE} RGB network")
        self._graph = graph
        self.weights = list(graph.variables)

    @classmethod
    def from_tflite(cls, path: Path) -> LandmarkFeatures:
        return cls(import_tflite(path, name="landmarks", trainable=False))

    def __call__(self, crops01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[N, 224, 224, 3]`` in [0, 1] → ``(features [N, D], presence [N])``.

        Features: pooled activations, normalized landmarks (63) and handedness;
        presence is the network's own "this is a hand" probability.
        """
        return self.features_of(self.tapped(crops01, FEATURE_TAPS))

    def features_of(self, tapped: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """:meth:`__call__` from the network's :data:`FEATURE_TAPS` outputs."""
        pooled, landmarks, presence, handedness = tapped
        points = tf.reshape(landmarks, [-1, 21, 3])
        centred = points - points[:, :1, :]
        scale = tf.reduce_max(tf.abs(centred[:, :, :2]), axis=[1, 2], keepdims=True)
        normalized = tf.reshape(centred / tf.maximum(scale, 1e-3), [-1, 63])
        pooled = tf.reshape(pooled, [tf.shape(landmarks)[0], -1])
        features = tf.concat([pooled, normalized, handedness], axis=-1)
        return features, presence[:, 0]

    def landmarks(self, crops01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[N, 224, 224, 3]`` in [0, 1] → ``(points [N, 21, 3], presence [N])``: the
        joints in crop pixels and the network's "this is a hand" probability."""
        return self.landmarks_of(self.tapped(crops01, LANDMARK_TAPS))

    @staticmethod
    def landmarks_of(tapped: Sequence[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """:meth:`landmarks` from the network's :data:`LANDMARK_TAPS` outputs."""
        landmarks, presence = tapped
        return tf.reshape(landmarks, [-1, 21, 3]), tf.reshape(presence, [-1])

    def tapped(self, crops01: tf.Tensor, taps: Sequence[str]) -> list[tf.Tensor]:
        """The network's raw tensors ``taps`` for ``crops01``: what a copy of the
        network converted on its own (e.g. quantized) must answer in their place."""
        return self._graph.call_tapped(crops01, taps)


class GestureHead(tf.Module):  # type: ignore[misc]
    """A two-layer perceptron over standardized features; plain variables (no Keras
    objects) so SavedModel and TFLite export both keep the weights."""

    def __init__(
        self,
        labels: Sequence[str],
        feature_dim: int,
        *,
        hidden: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(name="gesture_head")
        self.labels = tuple(labels)
        rng = np.random.default_rng(seed)

        def glorot(fan_in: int, fan_out: int) -> npt.NDArray[np.float32]:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

        self.mean = tf.Variable(tf.zeros([feature_dim]), trainable=False, name="mean")
        self.scale = tf.Variable(tf.ones([feature_dim]), trainable=False, name="scale")
        self.w1 = tf.Variable(glorot(feature_dim, hidden), name="w1")
        self.b1 = tf.Variable(tf.zeros([hidden]), name="b1")
        self.w2 = tf.Variable(glorot(hidden, len(self.labels)), name="w2")
        self.b2 = tf.Variable(tf.zeros([len(self.labels)]), name="b2")

    @property
    def weights(self) -> list[tf.Variable]:
        return [self.w1, self.b1, self.w2, self.b2]

    def standardize_with(self, features: npt.NDArray[np.float32]) -> None:
        self.mean.assign(features.mean(axis=0))
        self.scale.assign(1.0 / np.maximum(features.std(axis=0), 1e-4))

    def logits(self, features: tf.Tensor, *, dropout: float = 0.0) -> tf.Tensor:
        x = (features - self.mean) * self.scale
        if dropout > 0.0:
            x = tf.nn.dropout(x, dropout)
        hidden = tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
        if dropout > 0.0:
            hidden = tf.nn.dropout(hidden, dropout)
        return tf.matmul(hidden, self.w2) + self.b2

    @classmethod
    def averaged(cls, heads: Sequence[GestureHead]) -> GestureHead:
        """One head whose logits are the mean of ``heads``' logits: their hidden layers
        side by side and their output layers stacked and divided by their number. So an
        ensemble serves, exports and rebuilds as any head does. The heads must share
        labels, features and standardization (trained on the same features)."""
        first = heads[0]
        if any(h.labels != first.labels for h in heads):
            raise ValueError("heads of an ensemble must share their labels")
        if any(not np.array_equal(h.mean.numpy(), first.mean.numpy()) for h in heads):
            raise ValueError("heads of an ensemble must be standardized on the same features")
        dimension, _ = (int(d) for d in first.w1.shape)
        hidden = sum(int(h.w1.shape[1]) for h in heads)
        merged = cls(first.labels, dimension, hidden=hidden)
        merged.mean.assign(first.mean)
        merged.scale.assign(first.scale)
        merged.w1.assign(tf.concat([h.w1 for h in heads], axis=1))
        merged.b1.assign(tf.concat([h.b1 for h in heads], axis=0))
        merged.w2.assign(tf.concat([h.w2 for h in heads], axis=0) / len(heads))
        merged.b2.assign(tf.add_n([h.b2 for h in heads]) / len(heads))
        return merged


@dataclass(frozen=True, slots=True)
class CropAugment:
    """How training crops are varied; :meth:`apply` is deterministic per ``rng``."""

    margin: tuple[float, float] = (1.0, 1.45)
    shift: float = 0.08
    rotation_degrees: float = 20.0
    min_side_px: int = 28
    blur_probability: float = 0.25
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 95)
    colour: float = 0.3

    def apply(self, image: Image.Image, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
        """A tight hand crop → a ``224x224`` uint8 square framed like the detector's
        crops (hand centred with a margin), varied in scale, position, rotation,
        mirroring, resolution, blur, JPEG quality and colour."""
        rgb = image.convert("RGB")
        if rng.random() < 0.5:
            rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # Low-resolution hands: webcam frames often give the detector 30-60 px hands.
        side = max(rgb.size)
        target = int(rng.uniform(self.min_side_px, max(side, self.min_side_px + 1)))
        if target < side:
            factor = target / side
            small = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
            rgb = rgb.resize(small, Image.Resampling.BILINEAR)
        if rng.random() < self.jpeg_probability:
            buffer = io.BytesIO()
            rgb.save(buffer, "JPEG", quality=int(rng.integers(*self.jpeg_quality)))
            buffer.seek(0)
            rgb = Image.open(buffer).convert("RGB")
        if rng.random() < self.blur_probability:
            rgb = rgb.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
        pixels = np.asarray(rgb)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        fill = tuple(int(v) for v in border.mean(axis=0))
        rotated = rgb.rotate(
            float(rng.uniform(-self.rotation_degrees, self.rotation_degrees)),
            resample=Image.Resampling.BILINEAR,
            expand=True,
            fillcolor=fill,
        )
        canvas_side = max(rotated.size) * rng.uniform(*self.margin)
        canvas = Image.new("RGB", (round(canvas_side), round(canvas_side)), fill)
        dx = (canvas_side - rotated.width) / 2 + rng.uniform(-1, 1) * self.shift * canvas_side
        dy = (canvas_side - rotated.height) / 2 + rng.uniform(-1, 1) * self.shift * canvas_side
        canvas.paste(rotated, (round(dx), round(dy)))
        out = np.asarray(
            canvas.resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR), np.float32
        )
        gain = 1.0 + rng.uniform(-self.colour, self.colour, 3)
        offset = rng.uniform(-self.colour, self.colour) * 60.0
        return np.clip(out * gain + offset, 0, 255).astype(np.uint8)


def centre_crop(image: Image.Image, margin: float = 1.2) -> npt.NDArray[np.uint8]:
    """A tight hand crop → the ``224x224`` square the detector would cut around it
    (evaluation: no randomness)."""
    rgb = image.convert("RGB")
    pixels = np.asarray(rgb)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = tuple(int(v) for v in border.mean(axis=0))
    side = round(max(rgb.size) * margin)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return np.asarray(canvas.resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR))
