"""The face stage's figures on real data, and the smile model's fit.

``python -m models.evaluate.face_measure smile`` fits the smile model on the training part of
``genki-smile/`` and scores it on the held-out part; ``found`` counts the frames of
``signs/`` (each shows one person's face) in which a face is found; ``speed`` times the
stage in LiteRT and TensorFlow on one core. ``--landmarks`` names the variants
(:attr:`models.networks.face_tracking.FaceConfig.landmarks`; default both): ``smile`` and
``found`` measure each in turn, ``speed`` times them in interleaved rounds, so a
machine shared with other work loads them alike. Results go to
``OUT/report.json`` under each variant's name (and each fit to
``OUT/smile_fit.VARIANT.json``); docs/models.md ("Face stage") records them.

GENKI's crops are 64x64 and tight around the face, found by an OpenCV cascade. They are
enlarged and pasted into a meeting-sized grey frame, as a participant's head would sit
in one, so the whole stage runs on them as on a webcam frame. Some crops are not faces
at all (the cascade's mistakes): they stay in, and the held-out accuracy is given both
over the faces the stage found and over every crop, with "no face" counted wrong.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.dataset import DEFAULT_DATA

LANDMARK_VARIANTS: Final = ("mesh192", "attention256")
"""As :data:`models.networks.face_tracking.LANDMARK_VARIANTS` (kept here so ``--help`` needs no
TensorFlow import)."""
GENKI_LABELS: Final = {"smile": True, "neutral": False}
FRAME_SIZE: Final = (360, 480)
"""(H, W) the worker resizes frames to (the export's input size)."""
GENKI_FACE_SIDE: Final = 192
"""Pixels a 64-px GENKI crop is enlarged to: a head about half the frame's height."""
TEST_FRACTION: Final = 0.3
SEED: Final = 0
BATCH: Final = 32


@dataclass(frozen=True, slots=True)
class GenkiFace:
    path: Path
    smiling: bool

    @property
    def key(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def genki_faces(root: Path) -> list[GenkiFace]:
    """Every crop of ``genki-smile/`` with its label, in a stable order."""
    faces = [
        GenkiFace(path, smiling)
        for folder, smiling in GENKI_LABELS.items()
        for path in sorted((root / folder).glob("*.jpg"))
    ]
    if not faces:
        raise FileNotFoundError(f"{root}: no smile/ or neutral/ crops")
    return faces


def genki_frame(path: Path, side: int = GENKI_FACE_SIDE) -> npt.NDArray[np.uint8]:
    """The crop enlarged to ``side`` pixels and pasted in the middle of a grey
    meeting-sized frame."""
    from PIL import Image

    height, width = FRAME_SIZE
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    with Image.open(path) as crop:
        face = crop.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    canvas.paste(face, ((width - side) // 2, (height - side) // 2))
    return np.asarray(canvas)


def run_stage(
    stage: Any, frames: Iterable[npt.NDArray[np.uint8]], batch: int = BATCH
) -> dict[str, npt.NDArray[Any]]:
    """The stage's outputs for every frame, in batches (any iterable of uint8 frames of
    one size)."""
    import tensorflow as tf

    call = tf.function(stage.__call__)
    parts: list[dict[str, npt.NDArray[Any]]] = []
    pending: list[npt.NDArray[np.uint8]] = []

    def flush() -> None:
        out = call(tf.constant(np.stack(pending)))
        parts.append({k: v.numpy() for k, v in out.items()})
        pending.clear()

    for frame in frames:
        pending.append(frame)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def measure_smile(stage: Any, data: Path) -> tuple[dict[str, Any], Any]:
    """Fit the smile model on the training part of ``genki-smile/`` (seeded, stratified
    split) and score it on the held-out part: ``(report, fit)``."""
    from models.dataset.splits import stratified_split
    from models.networks.smile import fit_smile

    faces = genki_faces(data / "genki-smile")
    out = run_stage(stage, (genki_frame(f.path) for f in faces))
    index = {face.key: i for i, face in enumerate(faces)}
    split = stratified_split(
        faces,
        key=lambda f: f.key,
        label_of=lambda f: f.smiling,
        test_fraction=TEST_FRACTION,
        seed=SEED,
    )
    train = np.array([index[f.key] for f in split.train])
    test = np.array([index[f.key] for f in split.test])
    found = out["num_faces"] > 0
    inputs = stage.config.smile_fit.inputs
    if inputs == "landmarks":
        from models.networks.smile import mouth_geometry

        # The stage reads frame pixels; the output is normalized to the frame.
        height, width = FRAME_SIZE
        pixels = out["face_landmarks"][:, 0, :, :2] * np.array([width, height], np.float32)
        values = mouth_geometry(pixels).numpy()
    else:
        values = out["face_blendshapes"][:, 0]
    smiling = np.array([f.smiling for f in faces])
    fit_on = train[found[train]]
    fit = fit_smile(values[fit_on], smiling[fit_on], inputs=inputs)
    probability = fit.probability(values[test])
    right = (probability >= 0.5) == smiling[test]
    seen = found[test]
    predicted_smile = (probability >= 0.5) & seen
    report = {
        "crops": len(faces),
        "face_found": float(found.mean()),
        "train_crops": len(train),
        "train_faces_fitted": len(fit_on),
        "test_crops": len(test),
        "test_faces_found": int(seen.sum()),
        "accuracy_found_faces": float(right[seen].mean()),
        "accuracy_all_crops": float((right & seen).mean()),
        "smile_precision": float((predicted_smile & smiling[test]).sum() / predicted_smile.sum()),
        "smile_recall": float(
            (predicted_smile & smiling[test]).sum() / (smiling[test] & seen).sum()
        ),
        "expected_calibration_error": expected_calibration_error(
            probability[seen], smiling[test][seen]
        ),
        "split": {"seed": SEED, "test_fraction": TEST_FRACTION, "stratified_by": "label"},
    }
    return report, fit


def expected_calibration_error(
    probability: npt.NDArray[np.float64], truth: npt.NDArray[np.bool_], bins: int = 10
) -> float:
    """The mean gap between predicted probability and observed frequency over ``bins``
    equal-width bins, weighted by how many predictions fall in each."""
    which = np.minimum((probability * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += abs(probability[inside].mean() - truth[inside].mean()) * inside.mean()
    return float(gap)


def measure_found(stage: Any, data: Path) -> dict[str, Any]:
    """Share of the frames of ``signs/`` (one person's face in every frame) in which
    the stage finds a face, per person and overall; and how many frames report two."""
    from models.evaluate.frame_scores import load_frame
    from models.serving.gesture_model import ModelConfig

    paths = sorted((data / "signs").glob("*/*.jpg"))
    # Fitted as the worker fits frames for the model this stage serves in.
    fit = ModelConfig().frame_fit
    out = run_stage(stage, (load_frame(p, FRAME_SIZE, fit=fit) for p in paths))
    count = out["num_faces"]
    people = sorted({p.parent.name for p in paths})
    person = np.array([p.parent.name for p in paths])
    return {
        "frames": len(paths),
        "face_found": float((count > 0).mean()),
        "frames_with_two_faces": int((count > 1).sum()),
        "per_person": {name: float((count[person == name] > 0).mean()) for name in people},
        "missed": [str(p.relative_to(data)) for p, n in zip(paths, count, strict=True) if n == 0],
    }


def measure_speed(
    stages: Mapping[str, Any], data: Path, rounds: int = 7
) -> dict[str, dict[str, Any]]:
    """Milliseconds per frame on one core, for each named stage: its TFLite file (fp16
    weights, as the export stores them) in LiteRT, one frame per call, on 16 frames of
    ``signs/`` (one face each) and on blank frames; and the TensorFlow path on a batch
    of those 16. The stages take turns within each round, so load from other work on
    a shared machine falls on all of them alike and their ratios hold. ``*_cpu_ms`` is
    the calling thread's CPU time per frame, which such load hardly changes."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from models.evaluate.frame_scores import load_frame
    from models.networks.face_tracking import face_tflite

    paths = sorted((data / "signs").glob("*/*.jpg"))[::50][:16]
    faces = [load_frame(p, FRAME_SIZE) for p in paths]
    blank = [np.zeros((*FRAME_SIZE, 3), np.uint8)] * len(faces)
    batch = tf.constant(np.stack(faces))
    runners, calls = {}, {}
    for variant, stage in stages.items():
        runners[variant] = Interpreter(
            model_content=face_tflite(stage, FRAME_SIZE), num_threads=1
        ).get_signature_runner()
        calls[variant] = tf.function(stage.__call__)
        calls[variant](batch)  # trace and warm up
        runners[variant](input_tensor=faces[0][None])
    names = ("litert_face", "litert_blank", "litert_face_cpu", "litert_blank_cpu", "tf_batch")
    timings: dict[str, dict[str, list[float]]] = {v: {n: [] for n in names} for v in stages}
    for _ in range(rounds):
        for variant in stages:
            runner = runners[variant]
            for name, frames in (("litert_face", faces), ("litert_blank", blank)):
                start, cpu = time.perf_counter(), time.thread_time()
                for frame in frames:
                    runner(input_tensor=frame[None])
                timings[variant][name].append((time.perf_counter() - start) / len(frames))
                # LiteRT on one thread computes in the calling thread: its CPU time is
                # the work itself, which other work on the machine delays but does not
                # add to (wall time under load includes the waits).
                timings[variant][f"{name}_cpu"].append((time.thread_time() - cpu) / len(frames))
            start = time.perf_counter()
            calls[variant](batch)
            timings[variant]["tf_batch"].append((time.perf_counter() - start) / len(faces))
    return {
        variant: {
            **{f"{name}_ms": 1000 * float(np.median(v)) for name, v in times.items()},
            # The least of the rounds: nearest to a quiet core on a shared machine.
            **{f"{name}_min_ms": 1000 * float(np.min(v)) for name, v in times.items()},
            "frames": len(faces),
            "rounds": rounds,
            "threads": 1,
            "interleaved_with": sorted(set(stages) - {variant}),
        }
        for variant, times in timings.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.evaluate.face_measure", description=__doc__
    )
    parser.add_argument("what", choices=["smile", "found", "speed", "all"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("var/face"))
    parser.add_argument(
        "--landmarks",
        nargs="+",
        choices=list(LANDMARK_VARIANTS),
        default=list(LANDMARK_VARIANTS),
        help="face-stage variants to measure (default: all)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="speed: interleaved rounds")
    args = parser.parse_args(argv)
    import tensorflow as tf

    if args.what in ("speed", "all"):
        # One core, as a worker with one inference thread has.
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from models.networks.base_models import base_model_paths
    from models.networks.face_tracking import FaceConfig, FaceStage

    paths = base_model_paths()
    stages = {
        variant: FaceStage.from_base_models(paths, FaceConfig(landmarks=variant))
        for variant in dict.fromkeys(args.landmarks)
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "report.json"
    report: dict[str, Any] = (
        json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    )
    for variant, stage in stages.items():
        section = report.setdefault(variant, {})
        if args.what in ("smile", "all"):
            section["smile"], fit = measure_smile(stage, args.data)
            fit_path = args.out / f"smile_fit.{variant}.json"
            fit_path.write_text(fit.to_json(), encoding="utf-8")
        if args.what in ("found", "all"):
            section["found"] = measure_found(stage, args.data)
    if args.what in ("speed", "all"):
        for variant, speed in measure_speed(stages, args.data, args.rounds).items():
            report[variant]["speed"] = speed
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
