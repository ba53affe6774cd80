"""How well the pose rules (:mod:`models.networks.poses`) do on real frames.

``python -m models.evaluate.pose_measure --data ../shared/data --out var/poses`` runs the
model's own hand landmarks and face stage over every frame of ``signs/`` and
``hands/`` (decoded as the worker decodes them), applies :class:`PoseConfig`, and
writes ``report.json``: per pose, precision and recall on the frames we labelled
(:mod:`models.dataset.pose_labels`), per person and for the tuning and held-out people, and
false triggers per 100 frames on all of ``signs/`` and of ``hands/`` (a frame on
which a pose fires that we did not label with it; frames labelled with that pose are
left out of its count). Landmarks (never pixels) are cached in the output folder.

``--tune`` searches a grid of thresholds on the tuning people only and prints the
best; the held-out people never take part in choosing a threshold.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from models.dataset import DEFAULT_DATA
from models.dataset.pose_labels import NEITHER, POSE_LABELS, POSES, RAISE_HAND, THINKING, person_of
from models.networks.poses import PoseConfig, pose_features, poses_from_features

FRAME_SIZE: Final = (360, 480)
"""(height, width) the worker hands frames to the model at."""
MESH_POINTS: Final = 468
"""Face-mesh points kept (the 10 iris points are not used)."""
TUNING_PEOPLE: Final = frozenset(
    {"hands", "aniket-singh-01", "mikeandino", "Condzi", "pietercdevries"}
)
"""Thresholds are chosen on these people: the one of ``hands/`` (55 raised hands)
and four signers whose known false cases (ASL "hat", thumbs up at head height, fists
knocked at the chin, two hands on the face) the rules must not fire on. The other
five signers are held out; the only thinking poses we found (sniiitik's) are among
them, so thinking's thresholds come from its definition and hold-out recall tests
them."""
LANDMARKS_FILE: Final = "landmarks.npz"


@dataclass(frozen=True, slots=True)
class Landmarks:
    """What the model found in every frame: hand joints ``[N, K, 21, 2]`` and live
    slots ``[N, K]``, face mesh ``[N, F, 468, 2]`` and live slots ``[N, F]``."""

    paths: tuple[str, ...]
    hands: npt.NDArray[np.float32]
    hand_live: npt.NDArray[np.bool_]
    faces: npt.NDArray[np.float32]
    face_live: npt.NDArray[np.bool_]


def frame_paths(data: Path) -> list[str]:
    """Every frame of ``signs/`` and ``hands/``, relative to ``data``."""
    found = sorted((data / "signs").glob("*/*.jpg")) + sorted((data / "hands").glob("*/*.jpg"))
    return [str(path.relative_to(data)) for path in found]


def find_landmarks(data: Path, paths: Sequence[str], batch: int = 8) -> Landmarks:
    """Hand and face landmarks of ``paths`` by the model's own stages."""
    from models.evaluate.frame_scores import load_frame
    from models.networks.base_models import base_model_paths
    from models.networks.face_tracking import FaceStage
    from models.networks.gesture_classifier import GestureHead
    from models.serving.gesture_model import GestureModel, ModelConfig

    bases = base_model_paths()
    config = ModelConfig()
    # Landmarks do not depend on the head: an untrained one with a `none` class will do.
    model = GestureModel.from_base_models(bases, GestureHead(("fist", "none"), 736, seed=3), config)
    faces = FaceStage.from_base_models(bases)
    parts: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("h", "hl", "f", "fl")}
    for start in range(0, len(paths), batch):
        frames = tf.constant(
            np.stack(
                [
                    load_frame(data / p, FRAME_SIZE, fit=config.frame_fit)
                    for p in paths[start : start + batch]
                ]
            )
        )
        _, scores, _, points = model.hand_landmarks(frames)
        found = faces(frames)
        parts["h"].append(points.numpy())
        parts["hl"].append(scores.numpy() > 0)
        parts["f"].append(found["face_landmarks"].numpy()[:, :, :MESH_POINTS, :2])
        parts["fl"].append(found["face_scores"].numpy() > 0)
    return Landmarks(
        tuple(paths),
        np.concatenate(parts["h"]).astype(np.float32),
        np.concatenate(parts["hl"]),
        np.concatenate(parts["f"]).astype(np.float32),
        np.concatenate(parts["fl"]),
    )


def cached_landmarks(data: Path, out: Path) -> Landmarks:
    """:func:`find_landmarks` of every frame, from ``out``'s cache when it holds the
    same frames."""
    paths = frame_paths(data)
    cache = out / LANDMARKS_FILE
    if cache.exists():
        saved = np.load(cache)
        if list(saved["paths"]) == paths:
            return Landmarks(
                tuple(paths), saved["hands"], saved["hand_live"], saved["faces"], saved["face_live"]
            )
    found = find_landmarks(data, paths)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        cache,
        paths=np.array(paths),
        hands=found.hands,
        hand_live=found.hand_live,
        faces=found.faces,
        face_live=found.face_live,
    )
    return found


def features_of(marks: Landmarks) -> dict[str, tf.Tensor]:
    return pose_features(
        tf.constant(marks.hands), tf.constant(marks.faces), tf.constant(FRAME_SIZE)
    )


def fired(
    marks: Landmarks, features: dict[str, tf.Tensor], config: PoseConfig
) -> dict[str, npt.NDArray[np.bool_]]:
    """Per pose, the frames ``[N]`` on which it fires on some hand."""
    thinking, raised = poses_from_features(
        features, tf.constant(marks.hand_live), tf.constant(marks.face_live), config
    )
    return {
        THINKING: thinking.numpy().max(axis=1) > 0,
        RAISE_HAND: raised.numpy().max(axis=1) > 0,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def scores(
    paths: Sequence[str], fires: dict[str, npt.NDArray[np.bool_]], people: set[str] | None
) -> dict[str, Any]:
    """Precision and recall per pose on the labelled frames of ``people`` (all when
    ``None``), and false triggers per 100 frames of ``signs/`` and ``hands/``."""
    out: dict[str, Any] = {}
    for pose in POSES:
        tp = fp = fn = 0
        wrong = {"signs": 0, "hands": 0}
        frames = {"signs": 0, "hands": 0}
        for path, fire in zip(paths, fires[pose], strict=True):
            if people is not None and person_of(path) not in people:
                continue
            label = POSE_LABELS.get(path)
            folder = path.split("/")[0]
            if label != pose:
                # Unlabelled frames count as neither: the loose rules found no pose there.
                frames[folder] += 1
                wrong[folder] += int(fire)
            if label is None:
                continue
            tp += int(fire and label == pose)
            fp += int(fire and label != pose)
            fn += int(not fire and label == pose)
        out[pose] = {
            "true": tp,
            "false": fp,
            "missed": fn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "false_per_100": {
                folder: _ratio(100 * wrong[folder], frames[folder]) for folder in frames
            }
            | {"frames": frames, "false_triggers": wrong},
        }
    return out


def report(paths: Sequence[str], fires: dict[str, npt.NDArray[np.bool_]]) -> dict[str, Any]:
    people = sorted({person_of(p) for p in paths})
    held_out = {p for p in people if p not in TUNING_PEOPLE}
    return {
        "tuning_people": sorted(TUNING_PEOPLE),
        "held_out_people": sorted(held_out),
        "overall": scores(paths, fires, None),
        "tuning": scores(paths, fires, set(TUNING_PEOPLE)),
        "held_out": scores(paths, fires, held_out),
        "per_person": {p: scores(paths, fires, {p}) for p in people},
        "labelled": {
            pose: sum(1 for v in POSE_LABELS.values() if v == pose) for pose in (*POSES, NEITHER)
        },
    }


THINKING_GRID: Final = {
    "touch": (0.05, 0.08, 0.12),
    "curled": (1.1, 1.3, 1.5),
    "outside_face": (1.0, 1.2, 1.4, 1.6),
    "hand_size": (0.5, 0.55, 0.62, 0.7),
}
RAISE_GRID: Final = {
    "raised": (0.3, 0.4, 0.5, 0.6),
    "wrist_up": (0.0, 0.1, 0.2),
    "upright": (0.7, 0.85),
    "raised_size": (0.7, 0.8, 0.9, 1.0),
}


def tune(marks: Landmarks, features: dict[str, tf.Tensor]) -> dict[str, Any]:
    """On the tuning people only: for raise_hand, the grid point with the best recall
    at precision >= 0.9 and at most 0.5 false triggers per 100 frames; for thinking
    (no positives among them), every grid point with no false trigger, loosest first."""
    tuning = set(TUNING_PEOPLE)
    result: dict[str, Any] = {"raise_hand": [], "thinking": []}
    for values in itertools.product(*RAISE_GRID.values()):
        config = replace(PoseConfig(), **dict(zip(RAISE_GRID, values, strict=True)))
        s = scores(marks.paths, fired(marks, features, config), tuning)[RAISE_HAND]
        worst = max(v for v in s["false_per_100"].values() if isinstance(v, float))
        if (s["precision"] or 0) >= 0.9 and worst <= 0.5:
            result["raise_hand"].append((s["recall"], s["precision"], values))
    result["raise_hand"].sort(reverse=True)
    for values in itertools.product(*THINKING_GRID.values()):
        config = replace(PoseConfig(), **dict(zip(THINKING_GRID, values, strict=True)))
        s = scores(marks.paths, fired(marks, features, config), tuning)[THINKING]
        if s["false"] == 0 and sum(s["false_per_100"]["false_triggers"].values()) == 0:
            result["thinking"].append(values)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("var/poses"))
    parser.add_argument("--tune", action="store_true", help="search thresholds (tuning people)")
    args = parser.parse_args(argv)
    marks = cached_landmarks(args.data, args.out)
    features = features_of(marks)
    if args.tune:
        found = tune(marks, features)
        print("raise_hand (recall, precision, raised/wrist_up/upright/raised_size):")
        for row in found["raise_hand"][:10]:
            print("  ", row)
        print("thinking, no false trigger (touch/curled/outside_face/hand_size):")
        for row in found["thinking"]:
            print("  ", row)
        return
    config = PoseConfig()
    result = {"config": asdict(config)} | report(marks.paths, fired(marks, features, config))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(result, indent=1) + "\n")
    for part in ("tuning", "held_out", "overall"):
        for pose in POSES:
            s = result[part][pose]
            print(
                f"{part:9s} {pose:10s} precision {s['precision']} recall {s['recall']} "
                f"({s['true']} true, {s['false']} false, {s['missed']} missed) "
                f"false/100 signs {s['false_per_100']['signs']} hands {s['false_per_100']['hands']}"
            )


if __name__ == "__main__":
    main()
