"""Which stage one to ship: palm detectors and their input, compared in many rooms.

``python -m models.evaluate.stage_one MODEL_DIR`` serves MODEL_DIR's trained head
behind each variant of stage one (MediaPipe's palm detector ``lite`` or ``full``, its
input shrunk with or without antialiasing; the hand-landmark network ``full`` or
``lite`` in the hand region) and scores every variant on the same frames,
as recorded and in each room condition (:mod:`models.evaluate.conditions`): the share
of hands found and the gesture mAP@0.5 on the gesture frames of ``signs/`` and on
``hands/test``, and thumbs up's AP. Stage one is stock (no person of ours trained it),
so its figures are those of new people; the head has seen the training people of
``signs/``, which lifts every variant's gesture figures alike. What each variant costs
is ``python -m bench.networks`` (palm detector alone, one thread).

How v5's and v6's stage one were chosen (docs/models.md, "Design").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from models.dataset.frame_labels import gesture_frames
from models.evaluate import conditions
from models.evaluate.comparisons import comparison_parser, report
from models.evaluate.frame_scores import summarize
from models.evaluate.model_card import fmt_figure
from models.train.training import TrainConfig, load_splits

VARIANTS: Final = {
    "lite": ("lite", True, "full"),
    "lite-aliased": ("lite", False, "full"),
    "full": ("full", True, "full"),
    "full-aliased": ("full", False, "full"),
    "full-lite-landmarks": ("full", True, "lite"),
}
"""Variant name → (palm detector, antialiased input, landmark network in the hand
region). ``full`` is v6's stage one, ``full-lite-landmarks`` v5's."""
HANDS_TEST_GESTURES: Final = ("fist", "one", "peace", "palm")


def compare(
    model_dir: Path,
    data_root: Path,
    variants: Sequence[str],
    rooms: Sequence[str],
    limit: int | None = None,
) -> dict[str, Any]:
    """``{variant: {room: figures}}`` (room ``as_recorded`` first)."""
    from models.evaluate.assessment import _as_labelled, _Model, hands_truth, score_frames
    from models.networks.base_models import (
        HAND_LANDMARKS,
        HAND_LANDMARKS_FULL,
        PALM_DETECTOR_FULL,
        PALM_DETECTOR_LITE,
        base_model_paths,
    )
    from models.networks.gesture_classifier import LandmarkFeatures
    from models.networks.hand_detector import HandDetector
    from models.serving.gesture_model import GestureModel
    from models.train.rebuild import read_trained
    from worker.labelmap import load_label_map

    head, meta, config = read_trained(model_dir)
    recipe = TrainConfig.from_record(meta["train_config"])
    splits = load_splits(data_root, replace(recipe, limit=limit))
    signs = gesture_frames([*splits.signs.train, *splits.signs.test])
    sign_classes = sorted({box.label for a in signs for box in a.boxes})
    paths = base_model_paths(
        models=(PALM_DETECTOR_LITE, PALM_DETECTOR_FULL, HAND_LANDMARKS, HAND_LANDMARKS_FULL)
    )
    palms = {"lite": PALM_DETECTOR_LITE, "full": PALM_DETECTOR_FULL}
    labels = load_label_map(model_dir / "label_map.pbtxt")
    features = LandmarkFeatures.from_tflite(paths[HAND_LANDMARKS.file_name])
    region = {
        "lite": features,
        "full": LandmarkFeatures.from_tflite(paths[HAND_LANDMARKS_FULL.file_name]),
    }
    out: dict[str, Any] = {}
    for variant in variants:
        palm, antialias, landmarks = VARIANTS[variant]
        served = GestureModel(
            HandDetector.from_tflite(paths[palms[palm].file_name]),
            features,
            head,
            replace(config, palm_antialias=antialias),
            landmarks=region[landmarks],
        )
        model = _Model(
            root=served,
            serve=served.serve,
            hands=served.serve_hands,
            crops=served.serve_crops,
            faces=None,
            labels=dict(labels),
            head_labels=tuple(meta["head_labels"]),
            input_size=config.input_size,
            meta=meta,
        )
        out[variant] = {}
        for room in ("as_recorded", *rooms):
            condition = None if room == "as_recorded" else room
            tag = f"{variant}, {room}"
            on_signs = summarize(
                score_frames(model, signs, _as_labelled, lambda a: a.group, tag, condition),
                sign_classes,
                hand_score=config.hand_threshold,
            )
            on_hands = summarize(
                score_frames(
                    model, splits.hands_test, hands_truth, lambda _: "hands/test", tag, condition
                ),
                HANDS_TEST_GESTURES,
                hand_score=config.hand_threshold,
            )
            out[variant][room] = {
                "signs_hands_found": on_signs["hands_found"],
                "signs_gesture_map": on_signs["gestures"]["mean_ap"],
                "signs_like_ap": on_signs["gestures"]["per_class"].get("like", {}).get("ap"),
                "hands_test_hands_found": on_hands["hands_found"],
                "hands_test_gesture_map": on_hands["gestures"]["mean_ap"],
            }
    return out


def markdown(results: dict[str, Any]) -> str:
    cell = fmt_figure
    lines = [
        "| room | variant | hands found, signs/ | gesture mAP, signs/ | like AP, signs/ "
        "| hands found, hands/test | gesture mAP, hands/test |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rooms: dict[str, Any] = next(iter(results.values()), {})
    for room in rooms:
        for variant, figures in results.items():
            f = figures[room]
            lines.append(
                f"| {room.replace('_', ' ')} | {variant} | {cell(f['signs_hands_found'])} "
                f"| {cell(f['signs_gesture_map'])} | {cell(f['signs_like_ap'])} "
                f"| {cell(f['hands_test_hands_found'])} | {cell(f['hands_test_gesture_map'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = comparison_parser(__doc__, list(VARIANTS), list(conditions.CONDITIONS))
    args = parser.parse_args(argv)
    from models.train.rebuild import RebuildError
    from models.train.training import TrainingError

    try:
        results = compare(args.model_dir, args.data, args.variants, args.conditions, args.limit)
    except (RebuildError, TrainingError) as exc:
        print(f"stage_one: {exc}", file=sys.stderr)
        return 2
    report(results, args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
