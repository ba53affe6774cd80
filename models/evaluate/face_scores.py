"""The face labels of an exported model (``smile``, ``neutral``), scored on real faces
through the model's own ``detect_faces`` signature and the worker's decode path.

* smile vs neutral on the held-out part of ``genki-smile/`` (the split
  :mod:`models.evaluate.face_measure` fits the smile model on: seeded, stratified, 30 % held
  out), over the faces found and over every crop with "no face" counted wrong; smile
  precision and recall;
* face found in the frames of ``signs/`` (every frame shows its person's face).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from models.dataset.splits import stratified_split
from models.evaluate.face_measure import SEED, TEST_FRACTION, GenkiFace, genki_faces, genki_frame
from models.evaluate.frame_scores import load_frame
from worker.decode import FrameFit

FaceSignature = Callable[..., Mapping[str, Any]]


def _faces(
    signature: FaceSignature, frames: Sequence[npt.NDArray[np.uint8]]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Faces found per frame and the best face's smile probability (0 when none)."""
    import tensorflow as tf

    out = signature(input_tensor=tf.constant(np.stack(frames)))
    return out["num_faces"].numpy().astype(np.int32), out["smile"].numpy()[:, 0]


def _batched(
    signature: FaceSignature,
    frames: Sequence[Callable[[], npt.NDArray[np.uint8]]],
    desc: str,
    batch: int = 16,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    counts, smiles = [], []
    for start in tqdm(range(0, len(frames), batch), desc=desc, unit="batch"):
        count, smile = _faces(signature, [load() for load in frames[start : start + batch]])
        counts.append(count)
        smiles.append(smile)
    return np.concatenate(counts), np.concatenate(smiles)


def _spread(items: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` of ``items``, evenly spaced (a smoke run still sees both
    labels and several people)."""
    if limit is None or limit >= len(items):
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def held_out_genki(root: Path) -> list[GenkiFace]:
    """The GENKI crops the smile model was not fitted on."""
    faces = genki_faces(root)
    return list(
        stratified_split(
            faces,
            key=lambda f: f.key,
            label_of=lambda f: f.smiling,
            test_fraction=TEST_FRACTION,
            seed=SEED,
        ).test
    )


def smile_figures(
    signature: FaceSignature, data_root: Path, limit: int | None = None
) -> dict[str, Any]:
    faces = _spread(held_out_genki(data_root / "genki-smile"), limit)
    loads = [partial(genki_frame, f.path) for f in faces]
    count, smile = _batched(signature, loads, "genki held-out")
    found = count > 0
    truth = np.array([f.smiling for f in faces])
    said_smile = (smile >= 0.5) & found
    right = (smile >= 0.5) == truth
    return {
        "crops": len(faces),
        "faces_found": int(found.sum()),
        "accuracy_found_faces": float(right[found].mean()) if found.any() else None,
        "accuracy_all_crops": float((right & found).mean()),
        "smile_precision": float((said_smile & truth).sum() / max(int(said_smile.sum()), 1)),
        "smile_recall": float((said_smile & truth).sum() / max(int((truth & found).sum()), 1)),
        "split": {"seed": SEED, "test_fraction": TEST_FRACTION, "stratified_by": "label"},
    }


def found_figures(
    signature: FaceSignature,
    data_root: Path,
    input_size: tuple[int, int],
    limit: int | None = None,
    fit: FrameFit = "stretch",
) -> dict[str, Any]:
    paths = _spread(sorted((data_root / "signs").glob("*/*.jpg")), limit)
    count, _ = _batched(
        signature,
        [partial(load_frame, p, input_size, fit=fit) for p in paths],
        "signs faces",
    )
    person = np.array([p.parent.name for p in paths])
    return {
        "frames": len(paths),
        "face_found": float((count > 0).mean()) if len(paths) else None,
        "frames_with_two_faces": int((count > 1).sum()),
        "per_person": {
            name: float((count[person == name] > 0).mean()) for name in sorted(set(person))
        },
    }


def face_figures(
    signature: FaceSignature,
    data_root: Path,
    input_size: tuple[int, int],
    limit: int | None = None,
    fit: FrameFit = "stretch",
) -> dict[str, Any]:
    """Both sets of figures, as ``metrics.json`` holds them under ``faces`` (``limit``:
    at most that many crops and frames each, for smoke runs; ``fit``: how the worker
    fits a frame into ``input_size`` for this model)."""
    return {
        "smile_genki_held_out": smile_figures(signature, data_root, limit),
        "found_signs": found_figures(signature, data_root, input_size, limit, fit),
    }


def faces_markdown(faces: Mapping[str, Any] | None) -> list[str]:
    if not faces:
        return []
    smile = faces["smile_genki_held_out"]
    found = faces["found_signs"]

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return [
        "",
        "## Faces: smile and neutral",
        "",
        "| figure | value | target |",
        "|---|---:|---:|",
        f"| smile vs neutral, held-out GENKI faces found ({smile['faces_found']} of "
        f"{smile['crops']}) | {cell(smile['accuracy_found_faces'])} | >= 0.90 |",
        f"| ... over every held-out crop, no face counted wrong | "
        f"{cell(smile['accuracy_all_crops'])} | |",
        f"| smile precision / recall | {cell(smile['smile_precision'])} / "
        f"{cell(smile['smile_recall'])} | |",
        f"| face found, {found['frames']} frames of signs/ | {cell(found['face_found'])} "
        "| >= 0.98 |",
    ]


def pose_figures(
    serve: FaceSignature,
    labels: Mapping[int, str],
    thresholds: Mapping[str, float],
    data_root: Path,
    input_size: tuple[int, int],
    limit: int | None = None,
    default_threshold: float = 0.5,
    fit: FrameFit = "stretch",
) -> dict[str, Any]:
    """``thinking`` and ``raise_hand`` as the exported model reports them
    (``serving_default``, the worker's thresholds) on every frame of ``signs/`` and
    ``hands/``: precision and recall on the frames we labelled
    (:mod:`models.dataset.pose_labels`), per person, tuning and held-out people, and false
    triggers per 100 frames (:func:`models.evaluate.pose_measure.report`)."""
    import tensorflow as tf

    from models.dataset.pose_labels import POSES
    from models.evaluate.pose_measure import frame_paths, report

    paths = _spread(frame_paths(data_root), limit)
    fires = {pose: np.zeros(len(paths), bool) for pose in POSES}
    batch = 16
    for start in tqdm(range(0, len(paths), batch), desc="poses", unit="batch"):
        chunk = paths[start : start + batch]
        out = serve(
            input_tensor=tf.constant(
                np.stack([load_frame(data_root / p, input_size, fit=fit) for p in chunk])
            )
        )
        for i in range(len(chunk)):
            for j in range(int(out["num_detections"][i])):
                label = labels.get(int(out["detection_classes"][i, j]))
                score = float(out["detection_scores"][i, j])
                if label in fires and score >= thresholds.get(label, default_threshold):
                    fires[label][start + i] = True
    return report(paths, fires)


def poses_markdown(poses: Mapping[str, Any] | None) -> list[str]:
    if not poses:
        return []

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "",
        "## Poses: thinking and raise_hand",
        "",
        "On frames of `signs/` and `hands/` we labelled ourselves "
        "(`models/dataset/pose_labels.py`); "
        "tuning people chose the rules' thresholds, held-out people did not. False "
        "triggers: frames on which a pose is reported that do not show it, per 100.",
        "",
        "| pose | people | precision | recall | false / 100 signs/ | false / 100 hands/ |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for part in ("tuning", "held_out", "overall"):
        for pose, s in poses[part].items():
            lines.append(
                f"| {pose} | {part.replace('_', ' ')} | {cell(s['precision'])} "
                f"({s['true']}/{s['true'] + s['false']}) | {cell(s['recall'])} | "
                f"{cell(s['false_per_100']['signs'])} | {cell(s['false_per_100']['hands'])} |"
            )
    return lines
