"""The pretrained networks training starts from: MediaPipe's hand models.

``mediapipe==0.10.21`` (Apache-2.0) is the last release with CPython 3.11 wheels that
bundle its TFLite hand models. We never install it (it pins NumPy < 2 and
protobuf 4): ``pip download`` fetches the wheel from PyPI like any dependency, the two
files we need are extracted and checked against pinned SHA-256 digests, and the cache
is reused from then on. Training needs them; serving never does, because the exported
model carries the weights itself.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MEDIAPIPE_VERSION: Final = "0.10.21"
LICENCE: Final = "Apache-2.0 (MediaPipe, Google LLC)"


@dataclass(frozen=True, slots=True)
class BaseModel:
    member: str
    """Path inside the wheel."""
    sha256: str

    @property
    def file_name(self) -> str:
        return Path(self.member).name


PALM_DETECTOR: Final = BaseModel(
    "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
    "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
)
HAND_LANDMARKS: Final = BaseModel(
    "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
    "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
)
BASE_MODELS: Final = (PALM_DETECTOR, HAND_LANDMARKS)


class BaseModelError(Exception):
    """The base models could not be fetched or failed their checksum."""


def default_cache() -> Path:
    return Path.home() / ".cache" / "memelearning" / f"mediapipe-{MEDIAPIPE_VERSION}"


def base_model_paths(cache: Path | None = None, *, fetch: bool = True) -> dict[str, Path]:
    """``{file name: path}`` of every base model, verified; fetched into ``cache``
    (default ``~/.cache/memelearning/…``) when missing and ``fetch`` allows."""
    cache = cache or default_cache()
    missing = [m for m in BASE_MODELS if not _verified(cache / m.file_name, m.sha256)]
    if missing:
        if not fetch:
            names = ", ".join(m.file_name for m in missing)
            raise BaseModelError(f"{cache}: missing or corrupt base model(s): {names}")
        _fetch(cache, missing)
    return {m.file_name: cache / m.file_name for m in BASE_MODELS}


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def _fetch(cache: Path, wanted: list[BaseModel]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Any platform's wheel holds the same model files; naming one lets pip fetch
        # it on machines mediapipe has no wheel for.
        command = [
            sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}",
            "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--platform", "manylinux_2_28_x86_64", "--dest", tmp, "--quiet",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("mediapipe-*.whl"))
        if result.returncode != 0 or not wheels:
            raise BaseModelError(
                f"could not download mediapipe=={MEDIAPIPE_VERSION} from the package index "
                f"(pip exit {result.returncode}): {result.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for model in wanted:
                data = wheel.read(model.member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != model.sha256:
                    raise BaseModelError(
                        f"{model.member} in {wheels[0].name} has SHA-256 {digest}, "
                        f"expected {model.sha256}"
                    )
                partial = cache / f"{model.file_name}.partial"
                partial.write_bytes(data)
                partial.replace(cache / model.file_name)
