"""What the CPU workers serve, scored: the TFLite file against the SavedModel, and its
landmark networks in float against int8.

``memelearning evaluate`` scores the SavedModel (the reference, and the GPU path). A
CPU worker runs ``model.tflite`` with LiteRT instead: two hand slots instead of four,
fp16 weights, and, with ``tflite_landmarks: int8``, quantized landmark networks.
``python -m models.evaluate.runtimes MODEL_DIR`` scores, on the same frames through the
worker's decode path:

- ``savedmodel``: MODEL_DIR's SavedModel;
- ``tflite``: MODEL_DIR's own ``model.tflite``, as the worker runs it (LiteRT, XNNPACK);
- ``tflite-float``, ``tflite-region-int8`` and ``tflite-int8``: MODEL_DIR's trained
  head exported again with this version's graph, its landmark networks in float, stage
  one's alone in int8, or both in int8 (calibrated on ``hands/train`` alone, as
  training calibrates them: :mod:`models.train.landmark_calibration`).

Each is scored as recorded and, with ``--conditions``, as cameras in other rooms would
have sent the frames (:mod:`models.evaluate.conditions`): quantization error is
likeliest to show on dim and noisy hands.

The frames: the gesture frames of every ``signs/`` person (none of them calibrated
the int8 networks; the head has seen the training people, which lifts every variant
alike) and ``hands/test`` (the calibration person: shown, not decided on). A TFLite
file reports only the hands it names (presence ≥ the hand threshold), so its hand
figure is the share found, not a ranked AP.

The figure that decides int8 (issue #14: keep it where held-out AP drops by ≤ 0.01)
is the gesture mAP and each class's AP, ``tflite-int8`` against ``tflite-float``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from models.dataset.frame_labels import gesture_frames
from models.evaluate.comparisons import comparison_parser, report
from models.evaluate.frame_scores import summarize
from models.evaluate.model_card import fmt_figure
from models.train.training import TrainConfig, load_splits

VARIANTS: Final = ("savedmodel", "tflite", "tflite-float", "tflite-region-int8", "tflite-int8")
HANDS_TEST_GESTURES: Final = ("fist", "one", "peace", "palm")


def litert_serve(tflite: bytes, labels: Mapping[int, str], face_labels: Sequence[str]) -> Any:
    """``serving_default`` and a hands-only view of one TFLite file, shaped as the
    SavedModel's signatures answer (:func:`models.evaluate.assessment.score_frames`
    reads both). LiteRT with its default delegate and one thread, as the worker."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=tflite,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.AUTO,
    )
    runner = interpreter.get_signature_runner("serving_default")
    faces = frozenset(face_labels)
    # score_frames asks both views of the same frame in turn: run the file once.
    last: list[Any] = [None, None]

    def run(input_tensor: Any) -> dict[str, Any]:
        if last[0] is not input_tensor:
            last[:] = [input_tensor, runner(input_tensor=np.asarray(input_tensor))]
        out: dict[str, Any] = last[1]
        return out

    def serve(input_tensor: Any) -> dict[str, Any]:
        return {key: tf.constant(value) for key, value in run(input_tensor).items()}

    def hands(input_tensor: Any) -> dict[str, Any]:
        # Every reported detection that is not a face is a hand whose presence passed
        # the model's hand threshold.
        out = run(input_tensor)
        count = int(out["num_detections"][0])
        kept = [
            i for i in range(count) if labels.get(int(out["detection_classes"][0, i])) not in faces
        ]
        boxes = np.zeros((1, max(len(kept), 1), 4), np.float32)
        boxes[0, : len(kept)] = out["detection_boxes"][0, kept]
        return {
            "hand_boxes": tf.constant(boxes),
            "hand_scores": tf.ones([1, boxes.shape[1]]),
            "num_hands": tf.constant([float(len(kept))]),
        }

    return serve, hands


def _tflite_variant(model_dir: Path, landmarks: str, data_root: Path) -> bytes:
    """MODEL_DIR's head in this version's graph, its landmark networks as
    ``landmarks`` says (``ModelConfig.tflite_landmarks``), as a TFLite flatbuffer
    (built in memory)."""
    from models.networks.base_models import HAND_MODELS, base_model_paths
    from models.networks.face_tracking import FaceStage, face_base_models
    from models.serving.gesture_model import GestureModel, int8_networks, to_tflite
    from models.train.landmark_calibration import calibration_frames, landmark_calibration
    from models.train.rebuild import read_trained

    head, meta, config = read_trained(model_dir)
    config = replace(config, tflite_landmarks=landmarks)
    faces = bool(meta.get("faces"))
    wanted = (*HAND_MODELS, *(face_base_models() if faces else ()))
    paths = base_model_paths(models=wanted)
    model = GestureModel.from_base_models(
        paths, head, config, FaceStage.from_base_models(paths) if faces else None
    )
    calibration = None
    if int8_networks(config):
        calibration = landmark_calibration(model, calibration_frames(data_root))
    return to_tflite(model, calibration)


def compare(
    model_dir: Path,
    data_root: Path,
    variants: Sequence[str],
    rooms: Sequence[str] = (),
    limit: int | None = None,
) -> dict[str, Any]:
    """``{variant: {room: {"signs": figures, "hands_test": figures}}}``, room
    ``as_recorded`` first, then ``rooms`` (:mod:`models.evaluate.conditions`)."""
    from models.evaluate.assessment import _as_labelled, _load, _Model, hands_truth, score_frames

    reference = _load(model_dir)
    meta = reference.meta
    recipe = TrainConfig.from_record(meta["train_config"])
    splits = load_splits(data_root, replace(recipe, limit=limit))
    signs = gesture_frames([*splits.signs.train, *splits.signs.test])
    sign_classes = sorted({box.label for a in signs for box in a.boxes})
    hand_score = float(meta["config"].get("hand_threshold", 0.5))
    builders: dict[str, Callable[[], bytes]] = {
        "tflite": (model_dir / "model.tflite").read_bytes,
        "tflite-float": lambda: _tflite_variant(model_dir, "float", data_root),
        "tflite-region-int8": lambda: _tflite_variant(model_dir, "region-int8", data_root),
        "tflite-int8": lambda: _tflite_variant(model_dir, "int8", data_root),
    }
    out: dict[str, Any] = {}
    for variant in variants:
        model = reference
        if variant != "savedmodel":
            serve, hands = litert_serve(
                builders[variant](), reference.labels, meta.get("face_labels", ())
            )
            model = _Model(
                root=None,
                serve=serve,
                hands=hands,
                crops=reference.crops,
                faces=None,
                labels=reference.labels,
                head_labels=reference.head_labels,
                input_size=reference.input_size,
                meta=meta,
            )
        out[variant] = {}
        for room in ("as_recorded", *rooms):
            condition = None if room == "as_recorded" else room
            tag = f"{variant}, {room}"
            on_signs = score_frames(model, signs, _as_labelled, lambda a: a.group, tag, condition)
            on_hands = score_frames(
                model, splits.hands_test, hands_truth, lambda _: "hands/test", tag, condition
            )
            out[variant][room] = {
                "signs": summarize(on_signs, sign_classes, hand_score=hand_score),
                "hands_test": summarize(on_hands, HANDS_TEST_GESTURES, hand_score=hand_score),
            }
    return out


def markdown(results: Mapping[str, Any]) -> str:
    cell = fmt_figure
    rooms: Mapping[str, Any] = next(iter(results.values()), {})
    first = next(iter(rooms.values()), None)
    classes = sorted(first["signs"]["gestures"]["per_class"]) if first else []
    lines = [
        "| room | variant | hands found, signs/ | gesture mAP, signs/ | "
        + " | ".join(f"{c} AP" for c in classes)
        + " | named right, signs/ | hands found, hands/test | gesture mAP, hands/test |",
        "|---|---|" + "---:|" * (len(classes) + 5),
    ]
    for room in rooms:
        for variant, figures in results.items():
            signs, hands = figures[room]["signs"], figures[room]["hands_test"]
            per_class = signs["gestures"]["per_class"]
            lines.append(
                f"| {room.replace('_', ' ')} | {variant} | {cell(signs['hands_found'])} "
                f"| {cell(signs['gestures']['mean_ap'])} | "
                + " | ".join(cell(per_class.get(c, {}).get("ap")) for c in classes)
                + f" | {cell(signs['gestures_named_right'])} | {cell(hands['hands_found'])} "
                f"| {cell(hands['gestures']['mean_ap'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = comparison_parser(__doc__, VARIANTS, ()).parse_args(argv)
    from models.evaluate.assessment import EvaluationError
    from models.train.rebuild import RebuildError
    from models.train.training import TrainingError

    try:
        results = compare(args.model_dir, args.data, args.variants, args.conditions, args.limit)
    except (EvaluationError, RebuildError, TrainingError, OSError) as exc:
        print(f"runtimes: {exc}", file=sys.stderr)
        return 2
    report(results, args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
