"""Smile or neutral, from a face's blendshapes: a logistic regression on a few mouth
and cheek coefficients, so its output is a calibrated probability.

The blendshape network (Google's, frozen) already describes the expression of people
it was trained on in their thousands; what is ours is only how its coefficients map to
the two labels of the meeting product, fitted on the training part of ``genki-smile/``
(real faces of many people) and measured on a held-out part
(:mod:`models.face_measure`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.face_landmarks import BLENDSHAPE_NAMES

SMILE_FEATURES: Final = (
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthClose",
    "jawOpen",
)
"""What a smile changes: the mouth corners (smile, stretch, dimple) and the lips
parting over the teeth; frown and press weigh against. Not ``cheekSquint*``, which a
smile should raise: this network leaves them at about 1e-6 on every GENKI face, and
standardizing so flat a feature would magnify its noise."""


MIN_SCALE: Final = 0.01


@dataclass(frozen=True, slots=True)
class SmileFit:
    """A fitted smile model: ``p = sigmoid(bias + sum(weights * (x - mean) / scale))``
    over the named blendshapes ``x``."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SmileFit:
        data: dict[str, Any] = json.loads(text)
        return cls(
            features=tuple(data["features"]),
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
            weights=tuple(data["weights"]),
            bias=float(data["bias"]),
        )

    def probability(self, blendshapes: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The same as :meth:`SmileHead.probability`, in NumPy (``[..., 52]`` → ``[...]``)."""
        x = _columns(blendshapes, self.features)
        z = self.bias + ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.weights
        )
        return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def _columns(blendshapes: npt.NDArray[Any], features: Sequence[str]) -> npt.NDArray[np.float64]:
    index = [BLENDSHAPE_NAMES.index(name) for name in features]
    return np.asarray(blendshapes, np.float64)[..., index]


def fit_smile(
    blendshapes: npt.NDArray[np.float32],
    smiling: npt.NDArray[np.bool_],
    *,
    features: Sequence[str] = SMILE_FEATURES,
    l2: float = 1.0,
) -> SmileFit:
    """Fit the logistic regression (L2 penalty ``l2`` on the weights, not the bias) by
    Newton's method: a few dozen features and a few thousand faces converge in a handful
    of steps, exactly, with no learning rate to tune."""
    x = _columns(blendshapes, features)
    mean = x.mean(axis=0)
    # Coefficients live in [0, 1]; a spread under 0.01 carries no signal worth
    # magnifying, and dividing by it would let a face unlike the training faces
    # saturate the probability.
    scale = np.maximum(x.std(axis=0), MIN_SCALE)
    design = np.concatenate([np.ones((len(x), 1)), (x - mean) / scale], axis=1)
    y = smiling.astype(np.float64)
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ beta))
        gradient = design.T @ (p - y) + penalty * beta
        hessian = (design.T * (p * (1 - p))) @ design + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return SmileFit(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in beta[1:]),
        bias=float(beta[0]),
    )


class SmileHead(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """:class:`SmileFit` as variables, so the exported model carries it and a retrain
    can :meth:`assign` a new fit without rebuilding the graph."""

    def __init__(self, fit: SmileFit) -> None:
        super().__init__(name="smile_head")
        self.features = fit.features
        self._index = tf.constant([BLENDSHAPE_NAMES.index(n) for n in fit.features], tf.int32)
        count = len(fit.features)
        self.mean = tf.Variable(tf.zeros([count]), trainable=False, name="mean")
        self.scale = tf.Variable(tf.ones([count]), trainable=False, name="scale")
        self.weights = tf.Variable(tf.zeros([count]), trainable=False, name="weights")
        self.bias = tf.Variable(0.0, trainable=False, name="bias")
        self.assign(fit)

    def assign(self, fit: SmileFit) -> None:
        if fit.features != self.features:
            raise ValueError(f"a fit of {fit.features} cannot replace one of {self.features}")
        self.mean.assign(np.asarray(fit.mean, np.float32))
        self.scale.assign(np.asarray(fit.scale, np.float32))
        self.weights.assign(np.asarray(fit.weights, np.float32))
        self.bias.assign(fit.bias)

    def probability(self, blendshapes: tf.Tensor) -> tf.Tensor:
        """``[..., 52]`` blendshapes → ``[...]`` probability that the face smiles."""
        x = tf.gather(blendshapes, self._index, axis=-1)
        z = tf.reduce_sum((x - self.mean) / self.scale * self.weights, axis=-1) + self.bias
        return tf.sigmoid(z)


DEFAULT_SMILE: Final = SmileFit(
    features=SMILE_FEATURES,
    mean=(
        0.3706,
        0.371258,
        0.0110762,
        0.0134036,
        0.0526025,
        0.0584463,
        0.175929,
        0.197762,
        0.157329,
        0.197167,
        0.00851826,
        0.00848854,
        0.0547249,
        0.0702333,
        0.0017453,
        0.0311167,
    ),
    scale=(
        0.366827,
        0.369088,
        0.0251678,
        0.0281635,
        0.0975233,
        0.0992184,
        0.242786,
        0.263281,
        0.221318,
        0.263283,
        0.0248388,
        0.0245597,
        0.0756368,
        0.0857151,
        0.0157724,
        0.0559057,
    ),
    weights=(
        1.10323,
        2.31433,
        -0.158053,
        0.21033,
        0.0500454,
        0.300871,
        -0.17109,
        0.476373,
        0.466309,
        0.482226,
        0.120492,
        -0.190078,
        0.216548,
        -0.0176905,
        -0.449834,
        -0.0426441,
    ),
    bias=1.65938,
)
"""The fit shipped with the face stage: ``python -m models.face_measure smile`` on
``genki-smile/`` (1,838 training faces of the seeded split, 2026-11-28; held-out
figures in docs/models.md, "Face stage"). A retrain may :meth:`SmileHead.assign` its
own."""
