"""The face stage's second and third networks: 478 face landmarks, then 52 blendshapes.

Both are Google's, from the Face Landmarker bundle (Apache-2.0), rebuilt over frozen
variables by :mod:`models.networks.tflite_import`:

- ``face_landmarks_detector.tflite`` places 478 points (the 468-point face mesh and ten
  iris points) on a 256x256 face region and says whether a face is there at all;
- ``face_blendshapes.tflite`` reads 146 of those points (x, y in frame pixels) and
  scores 52 expression coefficients (ARKit names: ``mouthSmileLeft``, ``jawOpen``…).

The subset and the names are MediaPipe's, copied from
``mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc``
(``kLandmarksSubsetIdxs`` and ``kBlendshapeNames``; google-ai-edge/mediapipe, Apache-2.0),
because the blendshape network was trained on exactly that input.

The ``mesh192`` face stage uses a third, cheaper network instead of both:
``face_landmark.tflite`` of the ``mediapipe`` wheel (:class:`FaceMesh`), the older
468-point mesh (the same topology without the irises) on a 192x192 region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import tensorflow as tf

from models.networks.tflite_import import ImportedGraph, import_tflite

LANDMARK_INPUT: Final = 256
NUM_LANDMARKS: Final = 478
MESH_INPUT: Final = 192
MESH_LANDMARKS: Final = 468
"""The older 192x192 face mesh (:class:`FaceMesh`): the first 468 points of the same
topology, no irises."""
IRIS_LANDMARKS: Final = tuple(range(MESH_LANDMARKS, NUM_LANDMARKS))
"""468-472: the person's right iris (centre, then four contour points), 473-477: the
left one."""
_MESH_POINTS: Final = "conv2d_21"
_MESH_PRESENCE_LOGIT: Final = "conv2d_31"
_POINTS: Final = "Identity"
_PRESENCE_LOGIT: Final = "Identity_1"
# The blendshape network's last op keeps only the first sample of its batch (it was
# exported for one face); the tensor before it holds every face's coefficients.
_BLENDSHAPES: Final = "model_1/GhumMarkerPoserMlpMixerGeneral/reshape_7/Reshape"

BLENDSHAPE_LANDMARKS: Final = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39,
    40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133,
    136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160,
    161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295,
    296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)  # fmt: skip
"""MediaPipe's ``kLandmarksSubsetIdxs``: the 146 landmarks the blendshape network reads."""

BLENDSHAPE_NAMES: Final = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
"""MediaPipe's ``kBlendshapeNames``, in the network's output order."""

LEFT_EYE_OUTER: Final = 33
"""The outer corner of the person's right eye (left in the image)."""
RIGHT_EYE_OUTER: Final = 263


class FaceLandmarks(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """The frozen face-landmark network."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="face_landmarks")
        if graph.input_shape[1:] != (LANDMARK_INPUT, LANDMARK_INPUT, 3):
            raise ValueError(f"expected a {LANDMARK_INPUT}x{LANDMARK_INPUT} RGB network")
        self._graph = graph
        self.weights = list(graph.variables)

    @classmethod
    def from_tflite(cls, path: Path) -> FaceLandmarks:
        return cls(import_tflite(path, name="face_landmarks", trainable=False))

    def __call__(self, crops01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[M, 256, 256, 3]`` in [0, 1] → ``(points [M, 478, 3], presence [M])``: the
        landmarks in crop pixels (z on the same scale as x) and the probability that
        the region holds a face (MediaPipe applies the same sigmoid)."""
        points, logit = self._graph.call_tapped(crops01, [_POINTS, _PRESENCE_LOGIT])
        return tf.reshape(points, [-1, NUM_LANDMARKS, 3]), tf.sigmoid(tf.reshape(logit, [-1]))


class FaceMesh(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """MediaPipe's older face-mesh network (``face_landmark.tflite`` of the ``mediapipe``
    wheel, Apache-2.0): 468 points and face presence on a 192x192 region, the face
    region the attention network would see (MediaPipe's own face mesh graph crops it
    the same way: detection box x 1.5, turned level with the eyes)."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="face_mesh")
        if graph.input_shape[1:] != (MESH_INPUT, MESH_INPUT, 3):
            raise ValueError(f"expected a {MESH_INPUT}x{MESH_INPUT} RGB network")
        self._graph = graph
        self.weights = list(graph.variables)

    @classmethod
    def from_tflite(cls, path: Path) -> FaceMesh:
        return cls(import_tflite(path, name="face_mesh", trainable=False))

    def __call__(self, crops01: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``[M, 192, 192, 3]`` in [0, 1] → ``(points [M, 468, 3], presence [M])`` in crop
        pixels, z on x's scale; presence through a sigmoid, as MediaPipe's face mesh
        graph reads it."""
        points, logit = self._graph.call_tapped(crops01, [_MESH_POINTS, _MESH_PRESENCE_LOGIT])
        return tf.reshape(points, [-1, MESH_LANDMARKS, 3]), tf.sigmoid(tf.reshape(logit, [-1]))


class FaceBlendshapes(tf.Module):  # type: ignore[misc]
    """The frozen blendshape network, for any number of faces at once."""

    def __init__(self, graph: ImportedGraph) -> None:
        super().__init__(name="face_blendshapes")
        if graph.input_shape[1:] != (len(BLENDSHAPE_LANDMARKS), 2):
            raise ValueError(f"expected [1, {len(BLENDSHAPE_LANDMARKS)}, 2] landmark input")
        self._graph = graph
        self.weights = list(graph.variables)
        self._subset = tf.constant(BLENDSHAPE_LANDMARKS, tf.int32)

    @classmethod
    def from_tflite(cls, path: Path) -> FaceBlendshapes:
        return cls(import_tflite(path, name="face_blendshapes", trainable=False))

    def __call__(self, points: tf.Tensor) -> tf.Tensor:
        """Landmarks ``[M, 478, 2+]`` (x, y) in frame pixels → ``[M, 52]`` coefficients
        in [0, 1], in the order of :data:`BLENDSHAPE_NAMES`. Pixels, not normalized
        coordinates: MediaPipe scales the points by the image size, so the network
        sees a face's true proportions whatever the frame's aspect ratio."""
        subset = tf.gather(points[..., :2], self._subset, axis=1)
        (coefficients,) = self._graph.call_tapped(subset, [_BLENDSHAPES])
        return tf.reshape(coefficients, [-1, len(BLENDSHAPE_NAMES)])
