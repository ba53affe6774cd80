"""``memelearning evaluate``: score an exported gesture model on data it never saw.

Everything is measured on the exported SavedModel (what the worker serves), with
frames resized to the model's input size as the worker resizes them:

* hand detection AP@0.5 (class-agnostic) on ``hands/test`` and on the people of
  ``signs/`` that training held out (named in ``model.json``);
* gesture-classifier accuracy and confusion matrix on the held-out ``hagrid-crops``;
* end-to-end gesture AP on ``hands/test``, where finger counts name gestures
  (0 → fist, 1 → one, 2 → peace, 5 → palm; 3 and 4 have no gesture and are ignored);
* frames/s of the SavedModel at batch 1 and 16 and of the TFLite export with LiteRT;
* for a model with a face stage, smile vs neutral on held-out GENKI faces and faces
  found in ``signs/`` (:mod:`models.evaluate.face_scores`). Face boxes never count in the hand
  and gesture figures.

Writes ``metrics.json``, ``metrics.md`` and the charts to the output folder, and the
model card (``MODEL_CARD.md``) next to the model.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image
from tqdm import tqdm

from models.dataset.frame_labels import gesture_frames, relabel
from models.dataset.labels import FINGERS_TO_GESTURE, TURNED_GESTURES
from models.dataset.voc import Annotation
from models.evaluate import conditions
from models.evaluate.evaluation import (
    ClassificationResult,
    DetectionResult,
    GroundTruth,
    Prediction,
    average_precision,
    classification_report,
    classification_to_dict,
    detection_to_dict,
    plot_confusion_matrix,
    plot_precision_recall,
)
from models.evaluate.face_scores import face_figures, faces_markdown, pose_figures, poses_markdown
from models.evaluate.frame_scores import (
    GESTURE_ALIASES,
    OUT_OF_VOCABULARY,
    UNKNOWN,
    ScoredFrame,
    frame_truths,
    gesture_detection,
    load_placed,
    summarize,
)
from models.evaluate.model_card import (
    CONDITIONS_NOTE,
    conditions_table,
    production_details,
    production_table,
    write_model_card,
)
from models.evaluate.peer_baseline import peer_frames
from models.train.training import TrainConfig, load_splits
from worker.decode import FrameFit, Placement

logger = logging.getLogger(__name__)

HAND: Final = "hand"
DEFAULT_THRESHOLD: Final = 0.5
"""The worker's default score threshold (labels without a shipped one)."""


@dataclass(frozen=True, slots=True)
class _Model:
    root: Any
    serve: Callable[..., Mapping[str, Any]]
    hands: Callable[..., Mapping[str, Any]]
    crops: Callable[..., Mapping[str, Any]]
    faces: Callable[..., Mapping[str, Any]] | None
    labels: dict[int, str]
    head_labels: tuple[str, ...]
    input_size: tuple[int, int]
    meta: dict[str, Any]

    @property
    def fit(self) -> FrameFit:
        """How the worker fits a frame into :attr:`input_size` for this model."""
        fit: FrameFit = self.meta.get("frame_fit", "stretch")
        return fit


class EvaluationError(Exception):
    """The folder is not a gesture model this command can score."""


def _load(model_dir: Path) -> _Model:
    import tensorflow as tf

    from models.serving.gesture_model import CROPS_SIGNATURE, FACES_SIGNATURE, HANDS_SIGNATURE
    from worker.labelmap import load_label_map

    needed = ("saved_model.pb", "model.json", "label_map.pbtxt")
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        raise EvaluationError(f"{model_dir}: no {', '.join(missing)} (not an exported model)")
    try:
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvaluationError(f"{model_dir / 'model.json'}: not JSON: {exc}") from exc
    if not isinstance(meta, dict) or not {"train_config", "head_labels"} <= meta.keys():
        raise EvaluationError(
            f"{model_dir}: model.json has no train_config/head_labels: not a gesture model "
            "made by `memelearning train` (evaluate needs its recipe to find the held-out data)"
        )
    root = tf.saved_model.load(str(model_dir))
    labels = load_label_map(model_dir / "label_map.pbtxt")
    height, width = meta["input_size"]
    return _Model(
        root=root,
        serve=root.signatures["serving_default"],
        hands=root.signatures[HANDS_SIGNATURE],
        crops=root.signatures[CROPS_SIGNATURE],
        faces=root.signatures.get(FACES_SIGNATURE),
        labels={i: labels[i] for i in labels},
        head_labels=tuple(meta["head_labels"]),
        input_size=(int(height), int(width)),
        meta=meta,
    )


def _frame(
    path: Path, model: _Model, condition: str | None = None
) -> tuple[npt.NDArray[np.uint8], Placement]:
    image, placement = load_placed(path, model.input_size, condition, model.fit)
    return image[None], placement


def _box(values: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    ymin, xmin, ymax, xmax = (float(v) for v in values)
    return (ymin, xmin, ymax, xmax)


def hands_truth(raw: str) -> str:
    """``hands/`` finger counts → a gesture, or no gesture of ours (3 and 4 fingers)."""
    return FINGERS_TO_GESTURE.get(raw, OUT_OF_VOCABULARY)


def _as_labelled(raw: str) -> str:
    """Labels already made gestures (or :data:`UNKNOWN`) by :mod:`models.dataset.frame_labels`."""
    return raw


def _turned_truth(raw: str) -> str:
    """A hand of a turned frame: the gesture it became, or one we do not score there."""
    return TURNED_GESTURES.get(raw, UNKNOWN)


def score_frames(
    model: _Model,
    annotations: Sequence[Annotation],
    label_of: Callable[[str], str],
    group_of: Callable[[Annotation], str],
    desc: str,
    condition: str | None = None,
) -> list[ScoredFrame]:
    """Every annotated frame through the worker's decode path and the exported model
    (as a camera in room ``condition`` would have sent it, when one is given)."""
    import tensorflow as tf

    thresholds: Mapping[str, float] = model.meta.get("thresholds", {})
    # Faces and poses are scored on their own data (models/evaluate/face_scores.py): a hand
    # reported as a pose is no gesture here.
    not_gestures = frozenset(model.meta.get("face_labels", ())) | frozenset(
        model.meta.get("pose_labels", ())
    )
    frames = []
    for annotation in tqdm(annotations, desc=desc, unit="frame"):
        pixels, placement = _frame(annotation.image_path, model, condition)
        image = tf.constant(pixels)
        hands_out = model.hands(input_tensor=image)
        hands = tuple(
            Prediction(HAND, float(hands_out["hand_scores"][0, i]), box)
            for i in range(int(hands_out["num_hands"][0]))
            if (box := placement.to_frame(_box(hands_out["hand_boxes"][0, i].numpy())))
        )
        out = model.serve(input_tensor=image)
        gestures, reported = [], []
        for i in range(int(out["num_detections"][0])):
            label = model.labels.get(int(out["detection_classes"][0, i]))
            score = float(out["detection_scores"][0, i])
            box = placement.to_frame(_box(out["detection_boxes"][0, i].numpy()))
            if label is None or score <= 0 or label in not_gestures or box is None:
                continue
            found = Prediction(GESTURE_ALIASES.get(label, label), score, box)
            gestures.append(found)
            if score >= thresholds.get(label, DEFAULT_THRESHOLD):
                reported.append(found)
        frames.append(
            ScoredFrame(
                group_of(annotation),
                frame_truths(annotation, label_of, condition),
                hands,
                tuple(gestures),
                tuple(reported),
            )
        )
    return frames


def _group_of(key: str) -> Callable[[Annotation], str]:
    """How a held-out set's frames are grouped: by person, or all as the set."""
    if key == "hands_test":
        return lambda _: "hands/test"
    return lambda annotation: annotation.group


def hand_ap(frames: Sequence[ScoredFrame]) -> DetectionResult:
    """Class-agnostic hand AP@0.5 (every truth box is a hand)."""
    truths = [[GroundTruth(HAND, t.box) for t in frame.truths] for frame in frames]
    return average_precision(truths, [list(f.hands) for f in frames], classes=[HAND])


def classifier_accuracy(
    model: _Model, samples: Sequence[Any], batch_size: int = 64
) -> ClassificationResult:
    import tensorflow as tf

    from models.networks.gesture_classifier import centre_crop

    true: list[str] = []
    predicted: list[str] = []
    with tqdm(total=len(samples), desc="held-out crops", unit="crop") as progress:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            crops = []
            for sample in chunk:
                with Image.open(sample.path) as image:
                    crops.append(centre_crop(image))
            probs = model.crops(crops=tf.constant(np.stack(crops)))["gesture_probabilities"]
            predicted += [model.head_labels[i] for i in np.argmax(probs.numpy(), axis=-1)]
            true += [sample.label for sample in chunk]
            progress.update(len(chunk))
    return classification_report(true, predicted, labels=model.head_labels)


def speed(model: _Model, model_dir: Path, frames: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Frames/s of the SavedModel at batch 1 and 16, and of the TFLite export (LiteRT,
    one frame per call) when ``ai-edge-litert`` is installed."""
    import tensorflow as tf

    figures: dict[str, float] = {}
    for batch in (1, 16):
        images = tf.constant(np.resize(frames, (batch, *frames.shape[1:])))
        model.serve(input_tensor=images)
        calls = max(64 // batch, 4)
        start = time.perf_counter()
        for _ in range(calls):
            model.serve(input_tensor=images)
        figures[f"savedmodel_batch{batch}_fps"] = calls * batch / (time.perf_counter() - start)
    tflite = model_dir / "model.tflite"
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        logger.info("ai-edge-litert not installed: no TFLite figure")
        return figures
    if tflite.is_file():
        interpreter = Interpreter(model_path=str(tflite), num_threads=2)
        runner = interpreter.get_signature_runner()
        runner(input_tensor=frames[:1])
        start = time.perf_counter()
        for i in range(32):
            runner(input_tensor=frames[i % len(frames)][None])
        figures["tflite_litert_batch1_fps"] = 32 / (time.perf_counter() - start)
        # What one frame costs one core, with hands and without: the figure the
        # cost targets (docs/models.md) are stated in.
        single = Interpreter(model_path=str(tflite), num_threads=1).get_signature_runner()
        blank = np.zeros_like(frames[:1])
        for name, inputs in (("hands", frames), ("no_hands", np.resize(blank, frames.shape))):
            single(input_tensor=inputs[:1])
            start = time.perf_counter()
            for i in range(32):
                single(input_tensor=inputs[i % len(inputs)][None])
            figures[f"tflite_litert_1thread_{name}_ms"] = (time.perf_counter() - start) / 32e-3
    return figures


def evaluate(
    model_dir: Path,
    data_root: Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    peer_python: Path | None = None,
    write_card: bool = True,
    rooms: Sequence[str] = (),
) -> dict[str, Any]:
    """Score the model in ``model_dir``; write the report to ``out_dir`` (and, with
    ``write_card``, the model card next to the model). With ``peer_python`` (the
    interpreter of the environment ``scripts/peer-env.sh`` makes), MediaPipe's stock
    Gesture Recognizer is scored on the same frames. ``rooms`` names room conditions
    (:mod:`models.evaluate.conditions`) the held-out frames are scored in again.
    Returns the metrics as written."""
    rooms = [conditions.check(room) for room in rooms]
    model = _load(model_dir)
    config = TrainConfig.from_record(model.meta["train_config"])
    if limit is not None:
        config = replace(config, limit=limit)
    splits = load_splits(data_root, config)
    out_dir.mkdir(parents=True, exist_ok=True)

    signs_held_out = relabel(splits.signs.test, UNKNOWN)
    # Every person of signs/ whose frames show our gestures, each scored by a head that
    # never saw them (stage one's box scale, one number, was fitted on those not held
    # out). A head that learned from such frames was scored at training time, person
    # by person (models/train/cross_validation.py); one that did not is scored here.
    signs_gestures = gesture_frames([*splits.signs.train, *splits.signs.test])
    hand_floor = float(model.meta.get("config", {}).get("hand_threshold", 0.5))
    sign_classes = sorted({box.label for a in signs_gestures for box in a.boxes})
    people_unseen = model.meta.get("people_unseen")
    # A recipe from before real frame hands has no such field: it never learned from them.
    if people_unseen is None and not model.meta["train_config"].get("frame_hands", False):
        people_unseen = summarize(
            score_frames(model, signs_gestures, _as_labelled, lambda a: a.group, "signs gestures"),
            sign_classes,
            hand_score=hand_floor,
        )
    hands_frames = score_frames(
        model, splits.hands_test, hands_truth, _group_of("hands_test"), "hands/test"
    )
    signs_frames = score_frames(
        model, signs_held_out, _as_labelled, _group_of("signs_held_out"), "signs held-out people"
    )
    hands_result = hand_ap(hands_frames)
    signs_result = hand_ap(signs_frames)
    gestures = sorted(set(FINGERS_TO_GESTURE.values()))
    held_out_classes = sorted({box.label for a in signs_held_out for box in a.boxes} - {UNKNOWN})
    gestures_result = gesture_detection(hands_frames, gestures)
    crops_result = classifier_accuracy(model, splits.crops.test)
    production = {
        "hands_test": summarize(hands_frames, gestures, hand_score=hand_floor),
        "signs_held_out": summarize(signs_frames, held_out_classes, hand_score=hand_floor),
        "signs_gestures": people_unseen,
    }

    def peer_scores(
        frames: Sequence[Annotation],
        label_of: Callable[[str], str],
        classes: Sequence[str],
        view: str | None = None,
        group_of: Callable[[Annotation], str] | None = None,
    ) -> dict[str, Any]:
        """The peer on ``frames`` (``view``: as that condition changes them)."""
        assert peer_python is not None
        scored = peer_frames(
            peer_python,
            frames,
            label_of,
            model.input_size,
            group_of=group_of,
            condition=view,
            fit=model.fit,
        )
        return summarize(scored, classes, hand_score=0.0)

    peer = None
    if peer_python is not None:
        peer = {
            "hands_test": peer_scores(splits.hands_test, hands_truth, gestures),
            "signs_held_out": peer_scores(signs_held_out, _as_labelled, held_out_classes),
            "signs_gestures": peer_scores(signs_gestures, _as_labelled, sign_classes),
        }
    # No frame of ours shows a thumbs down: real thumbs up turned half a circle stand
    # in. Ours were scored at training time, each person by a head that never saw them.
    thumbs = [a for a in signs_gestures if any(b.label in TURNED_GESTURES for b in a.boxes)]
    production["signs_thumbs_turned"] = (people_unseen or {}).get("turned")
    if peer is not None and thumbs:
        turned = sorted({_turned_truth(b.label) for a in thumbs for b in a.boxes} - {UNKNOWN})
        peer["signs_thumbs_turned"] = peer_scores(thumbs, _turned_truth, turned, conditions.TURN)
    # Our people sit close to their webcams: the same gesture frames as if each sat twice
    # as far away, ours scored at training time, each person by a head that never saw them.
    production["signs_far"] = (people_unseen or {}).get(conditions.FAR_VIEW)
    if peer is not None and production["signs_far"]:
        peer["signs_far"] = peer_scores(
            signs_gestures, _as_labelled, sign_classes, conditions.FAR_VIEW
        )
    held_out_sets = (
        ("hands_test", splits.hands_test, hands_truth, gestures),
        ("signs_held_out", signs_held_out, _as_labelled, held_out_classes),
    )
    in_rooms: dict[str, Any] = {}
    for room in rooms:
        in_rooms[room] = {"ours": {}, "peer": {} if peer_python is not None else None}
        for key, frames_of, label_of, classes in held_out_sets:
            ours = score_frames(model, frames_of, label_of, _group_of(key), f"{key}, {room}", room)
            in_rooms[room]["ours"][key] = summarize(ours, classes, hand_score=hand_floor)
            if peer_python is not None:
                in_rooms[room]["peer"][key] = peer_scores(
                    frames_of, label_of, classes, room, _group_of(key)
                )
    frames = np.concatenate([_frame(a.image_path, model)[0] for a in splits.hands_test[:16]])
    figures = speed(model, model_dir, frames)
    faces = (
        face_figures(model.faces, data_root, model.input_size, limit, fit=model.fit)
        if model.faces is not None
        else None
    )
    poses = (
        pose_figures(
            model.serve,
            model.labels,
            model.meta.get("thresholds", {}),
            data_root,
            model.input_size,
            limit,
            DEFAULT_THRESHOLD,
            fit=model.fit,
        )
        if model.meta.get("pose_labels")
        else None
    )

    charts = {
        "hands_test_pr": plot_precision_recall(
            hands_result, out_dir / "pr_hands_test.png", title="Hand detection, hands/test"
        ),
        "signs_pr": plot_precision_recall(
            signs_result, out_dir / "pr_signs_held_out.png", title="Hand detection, held-out people"
        ),
        "gestures_pr": plot_precision_recall(
            gestures_result, out_dir / "pr_gestures_hands_test.png", title="Gestures, hands/test"
        ),
        "confusion": plot_confusion_matrix(
            crops_result,
            out_dir / "confusion_crops.png",
            title="Gesture classifier, held-out crops",
        ),
    }
    metrics: dict[str, Any] = {
        "schema": 1,
        "model": {"name": model.meta.get("name"), "version": model.meta.get("version")},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "limit": limit,
        "hand_ap50_hands_test": hands_result.mean_ap,
        "hand_ap50_signs_held_out": signs_result.mean_ap,
        "signs_held_out_people": sorted({a.group for a in splits.signs.test}),
        "gesture_map50_hands_test": gestures_result.mean_ap,
        "classifier_accuracy": crops_result.accuracy,
        "production": production,
        "peer": peer,
        "conditions": in_rooms or None,
        "thresholds": model.meta.get("thresholds", {}),
        "speed": figures,
        "faces": faces,
        "poses": poses,
        "detail": {
            "hands_test": detection_to_dict(hands_result),
            "signs_held_out": detection_to_dict(signs_result),
            "gestures_hands_test": detection_to_dict(gestures_result),
            "crops": classification_to_dict(crops_result),
        },
        "charts": {key: path.name for key, path in charts.items()},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metrics.md").write_text(summary_markdown(metrics), encoding="utf-8")
    if write_card:
        write_model_card(model_dir, model.meta, metrics)
    return metrics


def _production_markdown(metrics: Mapping[str, Any]) -> list[str]:
    """The production-view figures, ours beside the peer's where it was scored."""

    lines = [
        "",
        "## What production sees (worker decode path)",
        "",
        "Frames decoded and resized by the worker's own code. Hands found: truth boxes "
        "matched at IoU >= 0.5 by a reported hand (a two-handed sign boxed as one counts "
        "when the hull of the hands inside it matches). False gestures: gestures reported "
        "at the shipped thresholds that match no truth box of that gesture, per 100 "
        "frames (on signs/, a gesture on a signing hand is not counted: some signs are "
        "gestures). Out of vocabulary: hands making none of our gestures that were named "
        "one. Peer: MediaPipe's stock Gesture Recognizer on the same frames "
        "(`models/evaluate/peer.py`), its gesture reported at score >= 0.5.",
        "",
        *production_table(metrics),
    ]
    return lines + production_details(metrics, thumbs_heading="## Thumbs down")


def summary_markdown(metrics: Mapping[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    gestures = metrics["detail"]["gestures_hands_test"]["per_class"]
    crops = metrics["detail"]["crops"]["per_class"]
    lines = [
        f"# Evaluation of {metrics['model']['name']} {metrics['model']['version']}",
        "",
        f"Date: {metrics['date']}. Machine: {metrics['machine']['platform']}.",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| hand AP@0.5, hands/test | {pct(metrics['hand_ap50_hands_test'])} |",
        f"| hand AP@0.5, held-out people of signs/ "
        f"({', '.join(metrics['signs_held_out_people'])}) | "
        f"{pct(metrics['hand_ap50_signs_held_out'])} |",
        f"| gesture classifier accuracy, held-out crops | {pct(metrics['classifier_accuracy'])} |",
        f"| gesture mAP@0.5, hands/test (fist, one, peace, palm) | "
        f"{pct(metrics['gesture_map50_hands_test'])} |",
    ]
    lines += [
        f"| {key.replace('_', ' ')} | {value:.1f} |" for key, value in metrics["speed"].items()
    ]
    lines += ["", "## Gesture AP per class (hands/test)", "", "| gesture | AP@0.5 | objects |"]
    lines += ["|---|---:|---:|"]
    lines += [f"| {k} | {pct(v['ap'])} | {v['n_gt']} |" for k, v in gestures.items() if v["n_gt"]]
    lines += _production_markdown(metrics)
    table = conditions_table(metrics)
    if table:
        lines += ["", "## In other rooms", "", CONDITIONS_NOTE, "", *table]
    lines += faces_markdown(metrics.get("faces"))
    lines += poses_markdown(metrics.get("poses"))
    lines += [
        "",
        "## Classifier per class (held-out crops)",
        "",
        "| gesture | precision | recall |",
    ]
    lines += ["|---|---:|---:|"]
    lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} |" for k, v in crops.items()]
    return "\n".join(lines) + "\n"
