"""Each network inside the model timed alone, and the physical limit that follows for
the frames used.

The shipped model is MediaPipe's networks plus glue (NMS, crops, a small head). The
networks' own cost is what no pipeline can avoid, so the benchmark times each one bare
(LiteRT with XNNPACK, one thread, a pre-cropped input of its own size) and adds up what
the frames actually need: per frame the palm detector once, per hand found a
landmark network twice (stage 1b places the joints, with hand-landmark-full since v6;
stage 2 runs hand-landmark-lite on the gesture crop: docs/models.md, "Design"), per
face the face networks when the model has a face stage. Spread over every core, that
is the most frames per second this machine could serve; each stage of the pipeline is
reported as a share of it.

The networks come from ``models.networks.base_models`` (MediaPipe's files out of PyPI wheels,
cached under ``~/.cache/memelearning``). Without them the limit is unknown, and the
report says so rather than guessing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np


@dataclass(frozen=True)
class Pass:
    """How often the model runs one network: once per ``per`` (frame, hand or face)."""

    per: str
    times: int


# Keyed by file name, as model.json's ``base_models.files`` names them.
PASSES: Final = {
    "palm_detection_lite.tflite": Pass("frame", 1),
    "palm_detection_full.tflite": Pass("frame", 1),
    "hand_landmark_lite.tflite": Pass("hand", 2),
    "hand_landmark_full.tflite": Pass("hand", 1),
    "face_detector.tflite": Pass("frame", 1),
    "face_landmark.tflite": Pass("face", 1),
    "face_landmarks_detector.tflite": Pass("face", 1),
    "face_blendshapes.tflite": Pass("face", 1),
}
REGION_LANDMARKS: Final = "hand_landmark_full.tflite"
"""Since v6, stage one places the joints with this network; the lite one then runs once
per hand, on the gesture crop (v2-v5 ran the lite one for both)."""


GESTURE_LANDMARKS: Final = "hand_landmark_lite.tflite"


def gesture_crop_network(files: Sequence[str]) -> str | None:
    """The network a model carrying ``files`` runs a second time per hand, on the
    gesture crop, beside the one that places the joints (v6: lite beside full); None
    where one landmark network does both (v2-v5 ran lite twice, counted in PASSES)."""
    return GESTURE_LANDMARKS if {REGION_LANDMARKS, GESTURE_LANDMARKS} <= set(files) else None


def passes(files: Sequence[str]) -> dict[str, Pass]:
    """How often a model carrying ``files`` runs each of them."""
    out = {file: PASSES[file] for file in files}
    second = gesture_crop_network(files)
    if second is not None:
        out[second] = Pass("hand", 1)
    return out


FACE_NETWORKS: Final = frozenset(
    {
        "face_detector.tflite",
        "face_landmark.tflite",
        "face_landmarks_detector.tflite",
        "face_blendshapes.tflite",
    }
)


@dataclass(frozen=True)
class NetworkTiming:
    file: str
    input_shape: list[int]
    calls: int
    # CPU per call (this process's CPU time over the calls): the figure the limit uses,
    # since on a shared machine a call's wall time also counts the time it waited for a
    # core. One thread, so CPU time is the call's own work.
    cpu_ms: float
    # Median and fastest call in wall time.
    ms: float
    ms_min: float


def network_files(metadata: Mapping[str, Any]) -> list[str]:
    """The base networks a model's ``model.json`` says it carries."""
    files = metadata.get("base_models", {}).get("files", {})
    return sorted(name for name in files if name in PASSES)


def find_networks(files: Sequence[str], *, fetch: bool) -> dict[str, Path] | str:
    """``{file: path}`` of the bare networks, or why they are unavailable."""
    try:
        from models.networks.base_models import BASE_MODELS, BaseModelError, base_model_paths
    except ImportError as exc:  # a slim install without the models package
        return f"models.networks.base_models cannot be imported: {exc}"
    wanted = [m for m in BASE_MODELS if m.file_name in files]
    unknown = sorted(set(files) - {m.file_name for m in wanted})
    if unknown:
        return (
            f"networks model.json names that models.networks.base_models does not know: {unknown}"
        )
    try:
        return base_model_paths(fetch=fetch, models=wanted)
    except BaseModelError as exc:
        hint = "" if fetch else " (--fetch-networks downloads them)"
        return f"{exc}{hint}"


def time_networks(
    paths: Mapping[str, Path], frame: np.ndarray[Any, Any], *, seconds: float
) -> list[NetworkTiming]:
    """Time each network alone on one thread for about ``seconds``, on ``frame``
    (uint8 [H, W, 3]) resized to its input: the crop it would be given."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from PIL import Image

    timings = []
    for file, path in paths.items():
        interpreter = Interpreter(
            model_path=str(path), num_threads=1, experimental_op_resolver_type=OpResolverType.AUTO
        )
        interpreter.allocate_tensors()
        (detail,) = interpreter.get_input_details()
        shape = [int(v) for v in detail["shape"]]
        crop = Image.fromarray(frame).resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
        pixels = np.asarray(crop, dtype=np.float32)[np.newaxis] / 255.0
        if list(pixels.shape) != shape:  # e.g. the blendshapes network takes landmarks
            pixels = np.random.default_rng(0).random(shape, dtype=np.float32)
        interpreter.set_tensor(detail["index"], pixels.astype(detail["dtype"]))
        for _ in range(5):  # XNNPACK packs its weights on the first calls
            interpreter.invoke()
        durations: list[float] = []
        deadline = time.perf_counter() + seconds
        cpu_started = time.process_time()
        while len(durations) < 20 or time.perf_counter() < deadline:
            started = time.perf_counter()
            interpreter.invoke()
            durations.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu_started
        timings.append(
            NetworkTiming(
                file=file,
                input_shape=shape,
                calls=len(durations),
                cpu_ms=round(cpu / len(durations) * 1000, 3),
                ms=round(statistics.median(durations) * 1000, 3),
                ms_min=round(min(durations) * 1000, 3),
            )
        )
    return timings


def time_model(
    model_dir: Path, frames: np.ndarray[Any, Any], thread_counts: Sequence[int], *, seconds: float
) -> dict[str, dict[int, float]]:
    """The whole model's ms per frame (``detect`` on one frame at a time, ``frames``
    decoded beforehand) at each thread count, the counts taking turns of ``seconds / 4``
    so that other work on the machine weighs on each alike. Beside the networks alone,
    this says what the model's own glue costs (NMS, crops, conditions) and whether a
    second thread speeds a call up."""
    from worker.litert import LiteRtDetector

    detectors = {
        n: LiteRtDetector.load(model_dir, default_threshold=0.0, threads=n) for n in thread_counts
    }
    for detector in detectors.values():
        detector.warm_up([1])
    spent = dict.fromkeys(thread_counts, 0.0)
    cpu = dict.fromkeys(thread_counts, 0.0)
    calls = dict.fromkeys(thread_counts, 0)
    for _ in range(4):
        for n, detector in detectors.items():
            deadline = time.perf_counter() + seconds / 4
            cpu_started = time.process_time()
            while time.perf_counter() < deadline:
                index = calls[n] % len(frames)
                started = time.perf_counter()
                detector.detect(frames[index : index + 1])
                spent[n] += time.perf_counter() - started
                calls[n] += 1
            cpu[n] += time.process_time() - cpu_started
    return {
        "wall_ms": {n: round(spent[n] / calls[n] * 1000, 2) for n in thread_counts},
        # All threads' CPU: at 2 threads, more than the wall time when both work.
        "cpu_ms": {n: round(cpu[n] / calls[n] * 1000, 2) for n in thread_counts},
    }


def physical_limit(
    timings: Sequence[NetworkTiming],
    hands: Sequence[int],
    *,
    cores: int,
    faces: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The frames per second the networks alone allow for frames holding ``hands``
    hands (and ``faces`` faces) each, with every core running one network at a time.
    Faces not given: one per frame (the benchmark's frames show one person each)
    when the model has face networks."""
    if not hands:
        raise ValueError("no frames")
    face_networks = bool(FACE_NETWORKS & {t.file for t in timings})
    per_face = statistics.fmean(faces) if faces else 1.0
    per_frame = {"frame": 1.0, "hand": statistics.fmean(hands), "face": per_face}
    ms = {t.file: t.cpu_ms for t in timings}
    runs = passes(list(ms))
    network_ms = sum(ms[file] * runs[file].times * per_frame[runs[file].per] for file in ms)
    # The figure: one landmark pass per hand (stage 1b only), for comparison.
    second = gesture_crop_network(list(ms))
    one_pass_ms = sum(ms[f] * per_frame[runs[f].per] for f in ms if f != second)
    return {
        "cores": cores,
        "hands_per_frame": round(per_frame["hand"], 3),
        "faces_per_frame": round(per_face, 3) if face_networks else 0,
        "frames": len(hands),
        "network_ms_per_frame": round(network_ms, 2),
        "frames_per_s": round(cores * 1000 / network_ms, 1),
        "one_landmark_pass_ms_per_frame": round(one_pass_ms, 2),
        "one_landmark_pass_frames_per_s": round(cores * 1000 / one_pass_ms, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.networks [FILE ...]``: time base networks alone (default: the
    palm detectors, lite and full) on a real frame, one thread each, and print JSON."""
    import argparse
    import json
    import sys

    from PIL import Image

    from bench.frames import SIGNS

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "files",
        nargs="*",
        default=["palm_detection_lite.tflite", "palm_detection_full.tflite"],
        help="base network file names (models/networks/base_models.py)",
    )
    parser.add_argument("--frame", type=Path, help="a JPEG to feed them (default: a hands/ frame)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per network")
    args = parser.parse_args(argv)
    paths = find_networks(args.files, fetch=True)
    if isinstance(paths, str):
        print(f"bench.networks: {paths}", file=sys.stderr)
        return 2
    shared = SIGNS.parent / "hands" / "test"
    source = args.frame or next(iter(sorted(shared.glob("*.jpg"))), None)
    if source is None or not source.is_file():
        print(
            f"bench.networks: no frame to feed them: pass --frame (looked in {shared})",
            file=sys.stderr,
        )
        return 2
    with Image.open(source) as image:
        frame = np.asarray(image.convert("RGB"))
    timings = time_networks(paths, frame, seconds=args.seconds)
    print(json.dumps([asdict(t) for t in timings], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
