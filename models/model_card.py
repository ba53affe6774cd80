"""The model card written next to an exported gesture model: what it was trained on,
what it outputs, how well it does on data it never saw, and where it fails."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

CARD_FILE: Final = "MODEL_CARD.md"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_model_card(
    model_dir: Path, meta: Mapping[str, Any], metrics: Mapping[str, Any] | None
) -> Path:
    data = meta.get("data", {})
    recipe = meta.get("train_config", {})
    base = meta.get("base_models", {})
    labels = [label for label in meta.get("head_labels", []) if label != "none"]
    config = meta.get("config", {})
    lines = [
        f"# Model card: {meta.get('name', model_dir.name)} {meta.get('version', '')}".rstrip(),
        "",
        "## What it does",
        "Finds hands in video-meeting frames and names the gesture each hand makes. "
        "Served by the memelearning worker through the TensorFlow Object Detection API "
        "contract (`serving_default`: uint8 `[N, H, W, 3]` → `detection_boxes`, "
        "`detection_classes`, `detection_scores`, `num_detections`); `model.tflite` is "
        "the same model for LiteRT (one frame of the input size per call).",
        "",
        f"Gestures (label_map.pbtxt, ids 1-{len(labels)}): {', '.join(labels)}. "
        "A hand making no gesture (`none`) is never reported.",
        f"Score = hand score x gesture probability. Up to {config.get('max_hands', '?')} "
        f"hands per frame; hands scoring below {config.get('hand_threshold', '?')} are not "
        f"classified. Input size the worker resizes frames to: {meta.get('input_size')}.",
        "",
        "## How it is built",
        "1. Hand detector: MediaPipe BlazePalm-lite (192x192, 2016 anchors), pretrained "
        "weights fine-tuned on the full-hand boxes of `hands/train` and the training "
        "people of `signs/` (class-agnostic), focal + L1 loss, geometric and colour "
        "augmentation. Frames are letterboxed, so any aspect ratio works.",
        "2. Gesture classifier: MediaPipe hand-landmark-lite (frozen) turns a square "
        "crop around each hand into pooled features + 21 normalized landmarks; a "
        "two-layer head trained on `hagrid-crops/` (augmented: scale, shift, rotation, "
        "mirroring, low resolution, blur, JPEG quality, colour) names the gesture.",
        "3. Both joined in one `tf.function`; exported as SavedModel (dynamic batch) and "
        "TFLite (built-in ops only; NMS is `TFLite_Detection_PostProcess`).",
        "",
        f"Recipe: `{_command(recipe)}`",
        "",
        "## Data",
        f"- Detector training images: {data.get('detector_train_images', '?')} "
        "(`hands/train` + `signs/` minus the held-out people).",
        "- People of `signs/` held out entirely: "
        f"{', '.join(data.get('signs_held_out_people', []))}.",
        f"- Gesture crops: {data.get('crops_train', '?')} for training, "
        f"{data.get('crops_test', '?')} held out (stratified split, seed "
        f"{data.get('crops_split', {}).get('seed', '?')}). HaGRID crops carry no person id, "
        "so held-out crops may show people also seen in training.",
        "",
        "## Results on data it never saw",
    ]
    if metrics is None:
        lines.append("Not evaluated yet: run `memelearning evaluate` on this directory.")
    else:
        lines += [
            f"Measured {metrics['date']} on {metrics['machine']['platform']} with "
            f"`memelearning evaluate {model_dir}`.",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| hand AP@0.5, `hands/test` | {_fmt(metrics['hand_ap50_hands_test'])} |",
            f"| hand AP@0.5, held-out people of `signs/` | "
            f"{_fmt(metrics['hand_ap50_signs_held_out'])} |",
            f"| gesture classifier accuracy, held-out crops | "
            f"{_fmt(metrics['classifier_accuracy'])} |",
            f"| gesture mAP@0.5, `hands/test` (0→fist, 1→one, 2→peace, 5→palm) | "
            f"{_fmt(metrics['gesture_map50_hands_test'])} |",
        ]
        lines += [
            f"| {key.replace('_', ' ')} (this machine) | {value:.1f} |"
            for key, value in metrics["speed"].items()
        ]
        lines += ["", "Full report, per-class figures and charts: `evaluation/metrics.md`."]
    lines += [
        "",
        "## Limits",
        "- `hands/test` shows the same person and rooms as `hands/train` (frames of the "
        "same recordings), so a perfect score there says little about new people; the "
        "held-out people of `signs/` are the figure that does.",
        "- Five open fingers are often named `stop` rather than `palm` (HaGRID's two "
        "gestures differ mainly in finger spread), which is what pulls `palm` down in "
        "the end-to-end figure; the reactions catalog maps both to the same reaction.",
        "- Trained on webcam frames of few people (`hands/` is one person; `signs/` nine) "
        "and on HaGRID crops; hands far from the camera (under ~30 px) are often missed.",
        "- The classifier looks at one hand at a time: two-handed gestures and motion "
        "(waving) are not recognised; a wave shows up as `palm` frames.",
        "- Crops are not rotated to the hand's direction: strongly tilted hands are "
        "classified less reliably.",
        "- `hands/` finger counts are not HaGRID gestures (two raised fingers are not "
        "always a peace sign), so the end-to-end figure understates what matching "
        "gestures reach.",
        "",
        "## Licences",
        f"- Base weights: {base.get('licence', 'Apache-2.0 (MediaPipe)')}, from "
        f"{base.get('source', 'the mediapipe wheel')}.",
        "- Gesture head trained on HaGRID-derived crops (CC BY-SA 4.0): attribution and "
        "share-alike apply to this model where the licence requires.",
        "- Detector fine-tuned on `hands/` (Apache-2.0) and `signs/` (MIT / Apache-2.0).",
        "",
    ]
    path = model_dir / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _command(recipe: Mapping[str, Any]) -> str:
    parts = ["memelearning train RUN_DIR"]
    for key in ("seed", "detector_epochs", "head_epochs", "feature_passes", "limit"):
        if recipe.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {recipe[key]}")
    return " ".join(parts)
