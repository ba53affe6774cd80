"""Smile or neutral, from a face's blendshapes or from its landmark geometry: a
logistic regression, so its output is a calibrated probability.

Two kinds of input, one model (:class:`SmileFit`, ``inputs``):

- ``"blendshapes"``: a few mouth and cheek coefficients of Google's blendshape network
  (the ``attention256`` face stage). That network already describes the expression of
  people it was trained on in their thousands; what is ours is only how its
  coefficients map to the two labels of the meeting product.
- ``"landmarks"``: the positions of the lips and a few points around them (nose, chin,
  cheeks, eyelids) in a face-aligned frame (:func:`mouth_geometry`) for the ``mesh192``
  stage, whose 468-point network feeds no blendshape network (that one needs the ten
  iris points the older mesh lacks). A smile pulls the mouth corners out and up and
  parts the lips; in coordinates where the eyes lie level at unit distance that is
  nearly linear, so a logistic regression reads it as well as the blendshapes do
  (docs/models.md, "Face stage").

Both are fitted on the training part of ``genki-smile/`` (real faces of many people)
and measured on a held-out part (:mod:`models.evaluate.face_measure`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.networks.face_landmarks import BLENDSHAPE_NAMES

SMILE_LANDMARKS: Final = (
    # The lips, outer and inner contour (MediaPipe's FACEMESH_LIPS).
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
    185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375,
    402, 405, 409, 415,
    # What moves with them: nose tip and base, chin, cheeks, lower and upper eyelids.
    1, 2, 152, 199, 175, 205, 425, 50, 280, 145, 374, 159, 386,
)  # fmt: skip
"""The face-mesh points :func:`mouth_geometry` reads. Cross-validated on GENKI's
training part (2026-11-29): the lips alone 0.935, these 0.936, all 468 points 0.940;
the few points around the mouth keep the model to what a smile moves."""
EYE_CORNERS: Final = (33, 263)
"""The outer eye corners (person's right, left): origin, axis and unit of the
face-aligned frame."""
GEOMETRY_NAMES: Final = tuple(f"{axis}{i}" for i in SMILE_LANDMARKS for axis in "xy")
""":func:`mouth_geometry`'s columns: ``x61``, ``y61``… (face-aligned coordinates)."""
INPUT_NAMES: Final = {"blendshapes": BLENDSHAPE_NAMES, "landmarks": GEOMETRY_NAMES}
"""What a :class:`SmileFit` of each kind reads, in column order."""


def mouth_geometry(points: tf.Tensor) -> tf.Tensor:
    """Landmarks ``[..., 468+, 2+]`` (x, y in pixels of any one scale: frame pixels,
    not normalized coordinates, so a face keeps its proportions) → ``[...,
    len(GEOMETRY_NAMES)]``: :data:`SMILE_LANDMARKS` moved to the midpoint of the outer
    eye corners, turned so the eyes lie level and scaled so they are one unit apart.
    Position, size and in-plane tilt of the head drop out; the expression stays."""
    points = tf.convert_to_tensor(points, tf.float32)[..., :2]
    right = points[..., EYE_CORNERS[0], :]
    left = points[..., EYE_CORNERS[1], :]
    centre = (right + left) / 2.0
    axis = left - right
    # A degenerate face (all points on one spot) must not divide by zero.
    distance_sq = tf.maximum(tf.reduce_sum(axis * axis, axis=-1), 1e-12)
    cos = (axis[..., 0] / distance_sq)[..., None]  # cos / distance
    sin = (axis[..., 1] / distance_sq)[..., None]
    chosen = tf.gather(points, list(SMILE_LANDMARKS), axis=-2) - centre[..., None, :]
    along = chosen[..., 0] * cos + chosen[..., 1] * sin
    across = chosen[..., 1] * cos - chosen[..., 0] * sin
    return tf.reshape(
        tf.stack([along, across], axis=-1),
        tf.concat([tf.shape(points)[:-2], [len(GEOMETRY_NAMES)]], axis=0),
    )


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
    over the named columns ``x`` of ``inputs`` (``"blendshapes"``: the 52 coefficients,
    :data:`BLENDSHAPE_NAMES`; ``"landmarks"``: :func:`mouth_geometry`,
    :data:`GEOMETRY_NAMES`)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    inputs: str = "blendshapes"

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
            inputs=str(data.get("inputs", "blendshapes")),
        )

    def probability(self, values: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The same as :meth:`SmileHead.probability`, in NumPy (``[..., 52]`` blendshapes
        or ``[..., len(GEOMETRY_NAMES)]`` geometry, as ``inputs`` says → ``[...]``)."""
        x = _columns(values, self.features, self.inputs)
        z = self.bias + ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.weights
        )
        return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def _indices(features: Sequence[str], inputs: str) -> list[int]:
    if inputs not in INPUT_NAMES:
        raise ValueError(f"unknown smile inputs {inputs!r}: one of {sorted(INPUT_NAMES)}")
    names = INPUT_NAMES[inputs]
    return [names.index(name) for name in features]


def _columns(
    values: npt.NDArray[Any], features: Sequence[str], inputs: str = "blendshapes"
) -> npt.NDArray[np.float64]:
    return np.asarray(values, np.float64)[..., _indices(features, inputs)]


def fit_smile(
    values: npt.NDArray[np.float32],
    smiling: npt.NDArray[np.bool_],
    *,
    features: Sequence[str] | None = None,
    inputs: str = "blendshapes",
    l2: float = 1.0,
) -> SmileFit:
    """Fit the logistic regression (L2 penalty ``l2`` on the weights, not the bias) by
    Newton's method: a hundred features and a few thousand faces converge in a handful
    of steps, exactly, with no learning rate to tune. ``values`` are blendshapes ``[M,
    52]`` or :func:`mouth_geometry` ``[M, G]``, as ``inputs`` says; ``features`` default
    to :data:`SMILE_FEATURES` or all of :data:`GEOMETRY_NAMES`."""
    if features is None:
        features = SMILE_FEATURES if inputs == "blendshapes" else GEOMETRY_NAMES
    x = _columns(values, features, inputs)
    mean = x.mean(axis=0)
    # Coefficients live in [0, 1]; a spread under 0.01 carries no signal worth
    # magnifying, and dividing by it would let a face unlike the training faces
    # saturate the probability. (Geometry is in eye distances, where 0.01 is a
    # fraction of a pixel on a small face: the same floor suits it.)
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
        inputs=inputs,
    )


class SmileHead(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """:class:`SmileFit` as variables, so the exported model carries it and a retrain
    can :meth:`assign` a new fit without rebuilding the graph."""

    def __init__(self, fit: SmileFit) -> None:
        super().__init__(name="smile_head")
        self.features = fit.features
        self.inputs = fit.inputs
        self._index = tf.constant(_indices(fit.features, fit.inputs), tf.int32)
        count = len(fit.features)
        self.mean = tf.Variable(tf.zeros([count]), trainable=False, name="mean")
        self.scale = tf.Variable(tf.ones([count]), trainable=False, name="scale")
        self.weights = tf.Variable(tf.zeros([count]), trainable=False, name="weights")
        self.bias = tf.Variable(0.0, trainable=False, name="bias")
        self.assign(fit)

    def assign(self, fit: SmileFit) -> None:
        if fit.features != self.features or fit.inputs != self.inputs:
            raise ValueError(f"a fit of {fit.features} cannot replace one of {self.features}")
        self.mean.assign(np.asarray(fit.mean, np.float32))
        self.scale.assign(np.asarray(fit.scale, np.float32))
        self.weights.assign(np.asarray(fit.weights, np.float32))
        self.bias.assign(fit.bias)

    def probability(self, values: tf.Tensor) -> tf.Tensor:
        """``[..., 52]`` blendshapes or ``[..., len(GEOMETRY_NAMES)]`` geometry (as the
        fit's ``inputs`` says) → ``[...]`` probability that the face smiles."""
        x = tf.gather(values, self._index, axis=-1)
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
"""The fit shipped with the face stage: ``python -m models.evaluate.face_measure smile`` on
``genki-smile/`` (1,838 training faces of the seeded split, 2026-11-28; held-out
figures in docs/models.md, "Face stage"). A retrain may :meth:`SmileHead.assign` its
own."""

DEFAULT_MESH_SMILE: Final = SmileFit(
    features=GEOMETRY_NAMES,
    mean=(
        -0.00248065, 0.657107, -0.00167648, 0.715739, -0.00130133, 0.782912, -0.00156879,
        0.881583, -0.0935331, 0.645245, -0.184795, 0.659077, -0.240554, 0.677922,
        -0.306221, 0.715106, -0.263868, 0.713636, -0.183665, 0.703979, -0.133255, 0.70705,
        -0.0724312, 0.712129, -0.0934519, 0.872662, -0.0760984, 0.777864, -0.191898,
        0.75208, -0.233643, 0.796047, -0.224899, 0.738782, -0.2759, 0.754534, -0.139704,
        0.766242, -0.171759, 0.841556, -0.284396, 0.692916, -0.226671, 0.702852, 0.0889104,
        0.644692, 0.181481, 0.658396, 0.238415, 0.677021, 0.305629, 0.714435, 0.263897,
        0.712943, 0.182399, 0.703205, 0.131135, 0.706731, 0.069532, 0.712003, 0.090446,
        0.872802, 0.0737686, 0.778037, 0.190855, 0.751387, 0.232163, 0.795718, 0.224233,
        0.738244, 0.275135, 0.753877, 0.137942, 0.766033, 0.169449, 0.841553, 0.283205,
        0.692104, 0.226294, 0.702124, -0.00436379, 0.453539, -0.00266574, 0.511651,
        -0.00140079, 1.1929, -0.00187335, 1.08155, -0.00192203, 1.14888, -0.447714,
        0.439935, 0.446846, 0.440107, -0.538578, 0.345542, 0.539611, 0.345446, -0.343115,
        0.0423861, 0.342726, 0.0422606, -0.36742, -0.0463745, 0.366003, -0.0460279,
    ),
    scale=(
        0.0665127, 0.0727392, 0.0557476, 0.071265, 0.0563681, 0.0701834, 0.0572096,
        0.074336, 0.0634087, 0.0713307, 0.0571944, 0.0684972, 0.0531271, 0.0678098,
        0.054031, 0.0685485, 0.0497533, 0.0643174, 0.0487206, 0.0682739, 0.0500747,
        0.0696124, 0.0527127, 0.0706604, 0.0549991, 0.0723232, 0.0539003, 0.0685097,
        0.0483131, 0.060681, 0.0504628, 0.0619038, 0.0477543, 0.059568, 0.0511719,
        0.0621632, 0.0508165, 0.0646423, 0.0526931, 0.0670349, 0.0526025, 0.0685119,
        0.0494591, 0.0670424, 0.0641326, 0.0712626, 0.0585361, 0.0682981, 0.0547826,
        0.0672016, 0.0557317, 0.0674792, 0.0517535, 0.0635632, 0.05075, 0.0676866,
        0.0518953, 0.0692879, 0.053907, 0.070505, 0.0550951, 0.0723793, 0.0541892,
        0.0686262, 0.0495322, 0.0604985, 0.0511891, 0.0617552, 0.0492041, 0.0591736,
        0.0523073, 0.061578, 0.0515183, 0.0647229, 0.0530015, 0.0671117, 0.0543503,
        0.0675091, 0.0515645, 0.0662683, 0.0969368, 0.0804398, 0.0685109, 0.0661329,
        0.044814, 0.0722013, 0.0504954, 0.0651888, 0.048733, 0.0681894, 0.030624,
        0.0402306, 0.029935, 0.0398626, 0.0235605, 0.0329083, 0.0227967, 0.0323508,
        0.0174442, 0.0125736, 0.0173945, 0.0126631, 0.0141635, 0.0100288, 0.0137276,
        0.0101335,
    ),
    weights=(
        0.2019, 0.0286069, 0.100959, 0.510621, 0.0189499, -0.000444846, 0.0449753,
        0.590872, 0.246427, 0.227738, 0.215457, -0.164041, -0.137679, -0.701872, -0.544624,
        -0.846105, 0.393956, -0.348062, 0.146184, 0.190303, 0.10364, 0.473356, -0.0937709,
        0.49488, -0.0741796, 0.306115, 0.0360012, 0.0284753, 0.225404, -0.204867, -0.25253,
        -0.00673569, 0.296034, -0.267443, -0.496116, -0.58191, 0.184958, -0.0774857,
        0.0140918, 0.223998, -0.661997, -1.00016, 0.277295, -0.15322, 0.0685553, 0.250846,
        0.0714491, -0.080517, 0.394898, -0.487285, 0.04455, -0.503158, -0.56503,
        0.00399888, 0.256885, 0.394805, 0.372671, 0.557542, 0.424834, 0.5837, 0.138912,
        0.362884, 0.0451417, 0.0945046, -0.164391, 0.0193852, 0.323982, 0.219632,
        -0.291326, 0.00531193, 0.307209, -0.265665, -0.0280289, 0.126529, 0.026938,
        0.419424, 0.432817, -0.692077, -0.121058, 0.0725805, -0.00123395, 0.755752,
        0.235983, 0.601765, -0.0390959, -0.0695729, -0.194618, 0.338716, -0.167401,
        0.330009, -0.492727, -0.390298, -0.00282063, 0.0513883, -0.443988, -1.44278,
        0.360221, -0.845626, -0.339466, 0.571956, -0.0306385, 0.197073, 0.455132,
        -0.0770279, -1.67538, -0.237904,
    ),
    bias=1.14369,
    inputs="landmarks",
)  # fmt: skip
"""The fit shipped with the ``mesh192`` face stage: ``python -m models.evaluate.face_measure
smile --landmarks mesh192`` on ``genki-smile/`` (1,839 training faces of the
seeded split, 2026-11-29; held-out figures in docs/models.md, "Face stage")."""
