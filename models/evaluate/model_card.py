"""The model card written next to an exported gesture model: what it was trained on,
what it outputs, how well it does on data it never saw, and where it fails."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from models.evaluate.face_scores import faces_markdown, poses_markdown
from models.evaluate.peer_baseline import PEER_GESTURES

CARD_FILE: Final = "MODEL_CARD.md"


def _faces_lines(meta: Mapping[str, Any]) -> list[str]:
    faces = meta.get("faces")
    if not faces:
        return []
    labels = meta.get("face_labels", [])
    return [
        f"Faces (ids after the gestures): {', '.join(labels)}. Every face found (up to "
        f"{faces.get('max_faces', '?')} per frame) gets one box, labelled with the likelier "
        "of the two; score = face presence x that probability. The face stage is "
        + (
            "BlazeFace short range and MediaPipe's 468-point face mesh (stock weights), "
            "and a logistic regression on the mouth's geometry"
            if faces.get("landmarks") == "mesh192"
            else "MediaPipe's Face Landmarker recipe (BlazeFace short range, face "
            "landmarks, blendshapes; stock weights) and a logistic regression on mouth "
            "blendshapes"
        )
        + " fitted on GENKI faces (`models/networks/smile.py`).",
        "",
        f"Poses: {', '.join(meta.get('pose_labels', []))}. A hand touching the lower face "
        "(thumb or index at the chin or cheek, a fist under the chin) is `thinking`; one "
        "held up above the head is `raise_hand`: rules on the hand's and the face's "
        "landmarks (`models/networks/poses.py`), measured in face heights. A hand in a pose is "
        "reported with the pose instead of its gesture, scored with its presence.",
        "",
    ]


def _carries(meta: Mapping[str, Any], file: str) -> bool:
    """Whether the model carries the base network ``file``."""
    return file in meta.get("base_models", {}).get("files", {})


def _palm_detector(meta: Mapping[str, Any]) -> str:
    return "BlazePalm full" if _carries(meta, "palm_detection_full.tflite") else "BlazePalm-lite"


def _region_landmarks(meta: Mapping[str, Any]) -> str:
    full = _carries(meta, "hand_landmark_full.tflite")
    return "hand-landmark-full" if full else "hand-landmark-lite"


def fmt_figure(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


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
        *_faces_lines(meta),
        f"Score = hand score x gesture probability. Up to {config.get('max_hands', '?')} "
        f"hands per frame; hands scoring below {config.get('hand_threshold', '?')} are not "
        f"classified. Input size the worker resizes frames to: {meta.get('input_size')}, "
        + (
            "a frame of another shape whole between black bands (`frame_fit: letterbox`; "
            "boxes are mapped back onto the frame)."
            if meta.get("frame_fit") == "letterbox"
            else "a frame of another shape stretched to it."
        ),
        "",
        "## How it is built",
        f"1. Hands, the way MediaPipe finds them: {_palm_detector(meta)} (stock weights, "
        "letterboxed 192x192 input"
        + (
            ", the frame averaged over 2x2 blocks before the shrink, against aliased sensor noise"
            if config.get("palm_antialias")
            else ""
        )
        + ") finds palms and their keypoints; each palm gives a "
        f"hand region rotated until the fingers point up; {_region_landmarks(meta)} "
        "places 21 joints in it and says whether a hand is there (presence score = hand "
        "score). "
        f"The box is the joints' bounds grown {config.get('box_scale', '?')}x "
        "(calibrated on the training people's LabelImg boxes).",
        "2. Gesture classifier: MediaPipe hand-landmark-lite (frozen) turns a square "
        "crop around each hand into pooled features + 21 normalized landmarks; a "
        "two-layer head trained on `hagrid-crops/` (augmented: scale, shift, rotation, "
        "mirroring, low resolution, blur, JPEG quality, colour) and on the real hands "
        "of annotated frames, found and cropped by stage one as served (`hands/train` "
        "finger counts, the gesture frames of the training people of `signs/`; "
        "`models/train/frame_hands.py`) names the gesture.",
        "3. Both joined in one `tf.function`; exported as SavedModel (dynamic batch) and "
        "TFLite (built-in ops only: NMS unrolled over a few candidates, crops by gathers). "
        "Per-label thresholds calibrated on validation crops ship in `model.json`.",
        "",
        f"Recipe: `{_command(recipe)}`",
        "",
        "## Data",
        f"- Hand-box calibration images: {data.get('calibration_images', '?')} "
        "(`hands/train` + `signs/` minus the held-out people); stage one is not trained.",
        "- Real hands of annotated frames for the head: "
        + (
            "every box of `hands/train` (0/1/2/5 fingers as fist/one/peace/palm, 3 and 4 "
            "as `none`) and the gesture frames of the training people of `signs/` "
            "(labelled per person, `models/dataset/frame_labels.py`), each as served plus "
            f"{recipe.get('frame_hand_passes', 1) - 1} jittered copies."
            if recipe.get("frame_hands")
            else "none (HaGRID crops only)."
        ),
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
            f"| hand AP@0.5, `hands/test` | {fmt_figure(metrics['hand_ap50_hands_test'])} |",
            f"| hand AP@0.5, held-out people of `signs/` | "
            f"{fmt_figure(metrics['hand_ap50_signs_held_out'])} |",
            f"| gesture classifier accuracy, held-out crops | "
            f"{fmt_figure(metrics['classifier_accuracy'])} |",
            f"| gesture mAP@0.5, `hands/test` (0→fist, 1→one, 2→peace, 5→palm) | "
            f"{fmt_figure(metrics['gesture_map50_hands_test'])} |",
        ]
        lines += [
            f"| {key.replace('_', ' ')} (this machine) | {value:.1f} |"
            for key, value in metrics["speed"].items()
        ]
        lines += _production_lines(metrics)
        lines += faces_markdown(metrics.get("faces"))
        lines += poses_markdown(metrics.get("poses"))
        rooms = conditions_table(metrics)
        if rooms:
            lines += ["", "## In other rooms", "", CONDITIONS_NOTE, "", *rooms]
        lines += ["", "Full report, per-class figures and charts: `evaluation/metrics.md`."]
    lines += [
        "",
        "## Limits",
        "- `hands/test` shows the same person and rooms as `hands/train`, which the "
        "gesture head learns from: its figures are not those of a new person. The "
        "figures for new people are the held-out people of `signs/` and each `signs/` "
        "person scored by a head trained without them (leave one person out).",
        "- Thumbs up is measured on 37 real frames of 3 people (and HaGRID crops); our "
        "data holds no real frame of a thumbs down (measured on those thumbs up turned "
        "half a circle, and HaGRID crops), nor of `mute`, `rock` or `peace` by anyone "
        "but the person of `hands/`: those are measured on held-out HaGRID crops only.",
        "- Five open fingers are named `palm`, `stop` or `stop_inverted` (HaGRID's "
        "gestures differ mainly in finger spread and palm direction); scored as one "
        "class, as the reactions catalog maps all three to the same reaction.",
        "- Hands far from the camera (under ~30 px) and hands the palm detector misses "
        "(seen edge-on, partly out of the frame) are not found: no tracking between "
        "frames, each frame stands alone. Our people sit close to their webcams; the "
        "`far` room shows them twice as far away.",
        "- Rooms unlike our frames cost hands and thumbs up, a window behind the person "
        "most (`memelearning evaluate --conditions all`, the section above when it was "
        "run); those rooms are conditions put on our frames by "
        "`models/evaluate/conditions.py`, not frames taken in such rooms.",
        "- The classifier looks at one hand at a time: two-handed gestures and motion "
        "(waving) are not recognised; a wave shows up as `palm` frames.",
        "- `hands/` finger counts are not HaGRID gestures (two raised fingers are not "
        "always a peace sign), so the end-to-end figure understates what matching "
        "gestures reach.",
        "",
        "## Licences",
        f"- Base weights: {base.get('licence', 'Apache-2.0 (MediaPipe)')}, from "
        f"{base.get('source', 'the mediapipe wheel')}.",
        "- Gesture head trained on HaGRID-derived crops (CC BY-SA 4.0): attribution and "
        "share-alike apply to this model where the licence requires.",
        "- Hand box scale calibrated on `hands/` (Apache-2.0) and `signs/` (MIT / "
        "Apache-2.0); `hands/train` 3- and 4-finger hands are `none` examples.",
        "",
    ]
    path = model_dir / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


PRODUCTION_SETS: Final = (
    ("hands_test", "`hands/test`"),
    ("signs_held_out", "held-out people of `signs/`"),
    ("signs_gestures", "gestures of 8 people of `signs/`, each new to the head"),
)


def production_table(metrics: Mapping[str, Any]) -> list[str]:
    """The figures through the worker's decode path, ours beside the peer's where it
    was scored: one Markdown table (empty when the metrics hold none)."""
    production = metrics.get("production") or {}
    peer = metrics.get("peer") or {}
    if not production:
        return []
    lines = [
        "| data | who | frames | hands found | false gestures / 100 frames "
        "| out-of-vocabulary named | gesture mAP@0.5 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, title in PRODUCTION_SETS:
        for who, figures in (("ours", production.get(key)), ("peer", peer.get(key))):
            if not figures:
                continue
            gestures = figures.get("gestures") or {}
            lines.append(
                f"| {title} | {who} | {figures['frames']} | {fmt_figure(figures['hands_found'])} "
                f"| {fmt_figure(figures['false_gestures_per_100_frames'], 1)} "
                f"| {fmt_figure(figures['out_of_vocabulary_named'])} "
                f"| {fmt_figure(gestures.get('mean_ap'))} |"
            )
    return lines


def _peer_cell(per_class: Mapping[str, Any], label: str) -> str:
    # Where the peer has no such class, its AP of 0 would say nothing about it.
    if label not in PEER_GESTURES:
        return "no such class"
    return fmt_figure(per_class.get(label, {}).get("ap"))


def per_class_table(metrics: Mapping[str, Any], key: str) -> list[str]:
    """Gesture AP@0.5 per class of one production set, ours beside the peer's."""
    ours = (((metrics.get("production") or {}).get(key) or {}).get("gestures") or {}).get(
        "per_class", {}
    )
    theirs = (((metrics.get("peer") or {}).get(key) or {}).get("gestures") or {}).get(
        "per_class", {}
    )
    if not ours:
        return []
    return [
        "| gesture | objects | ours | peer |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {v.get('n_gt', '')} | {fmt_figure(v['ap'])} | "
            f"{_peer_cell(theirs, label)} |"
            for label, v in ours.items()
        ),
    ]


def per_person_table(metrics: Mapping[str, Any], key: str) -> list[str]:
    """Hands found per person of one production set, ours beside the peer's."""
    ours = ((metrics.get("production") or {}).get(key) or {}).get("per_group") or {}
    theirs = ((metrics.get("peer") or {}).get(key) or {}).get("per_group") or {}
    if not ours:
        return []
    return [
        "| person | frames | hands found, ours | peer |",
        "|---|---:|---:|---:|",
        *(
            f"| {g} | {f['frames']} | {fmt_figure(f['hands_found'])} | "
            f"{fmt_figure((theirs.get(g) or {}).get('hands_found'))} |"
            for g, f in ours.items()
        ),
    ]


THUMBS_DOWN_NOTE: Final = (
    "No frame of ours shows a real thumbs down: the real thumbs up of `signs/` turned "
    "half a circle stand in for them (the thumb points down; the frame, face and room "
    "turn too). Ours: each person scored by a head that never saw them, turned or not "
    "(leave one person out); peer: the same turned frames."
)


def _ours_beside_peer(
    metrics: Mapping[str, Any], key: str, columns: str, cells: Callable[[Mapping[str, Any]], str]
) -> list[str]:
    """One row per side that holds ``key`` (``production`` as ours, ``peer``) under a
    header of ``columns`` after ``who``; empty when ours is missing."""
    if not (metrics.get("production") or {}).get(key):
        return []
    lines = [f"| who | {columns} |", "|---" + "|---:" * (columns.count("|") + 1) + "|"]
    for who, side in (("ours", "production"), ("peer", "peer")):
        figures = (metrics.get(side) or {}).get(key)
        if figures:
            lines.append(f"| {who} | {cells(figures)} |")
    return lines


def _ap(figures: Mapping[str, Any], label: str) -> str:
    per_class = (figures.get("gestures") or {}).get("per_class", {})
    return fmt_figure(per_class.get(label, {}).get("ap"))


def thumbs_down_table(metrics: Mapping[str, Any]) -> list[str]:
    """Turned thumbs up named thumbs down, ours beside the peer's (empty when the
    metrics hold none of ours)."""
    return _ours_beside_peer(
        metrics,
        "signs_thumbs_turned",
        "hands | hands found | dislike AP@0.5 | named dislike at the shipped threshold",
        lambda f: (
            f"{f['hands']} | {fmt_figure(f['hands_found'])} | {_ap(f, 'dislike')} "
            f"| {fmt_figure(f.get('gestures_named_right'))}"
        ),
    )


FAR_NOTE: Final = (
    "The gesture frames of 8 people of `signs/` shrunk as if each person sat twice as "
    "far from the camera (`far` in `models/evaluate/conditions.py`: a hand gets a "
    "quarter of the pixels). Ours: each person scored by a head that never saw them "
    "(leave one person out); peer: the same frames."
)


def far_table(metrics: Mapping[str, Any]) -> list[str]:
    """The gesture frames of people twice as far away, ours beside the peer's (empty
    when the metrics hold none of ours)."""
    return _ours_beside_peer(
        metrics,
        "signs_far",
        "hands | hands found | gesture mAP@0.5 | like AP@0.5 | named right",
        lambda f: (
            f"{f['hands']} | {fmt_figure(f['hands_found'])} "
            f"| {fmt_figure((f.get('gestures') or {}).get('mean_ap'))} | {_ap(f, 'like')} "
            f"| {fmt_figure(f.get('gestures_named_right'))}"
        ),
    )


CONDITIONS_NOTE: Final = (
    "The held-out frames again, as a camera in another room would have sent them "
    "(`models/evaluate/conditions.py`: dim, backlight, overexposed, warm lamp, low "
    "camera angle, motion blur, a poor webcam on a poor link, `wide`: a 16:9 camera "
    "framing the same person, the frame's top and bottom cut away, hands left with less "
    "than half their height no longer counted, and `far`: the person twice as far from "
    "the camera), through the worker's "
    "decode path; `as recorded` is the frames as they are. Hands found at IoU >= 0.5 "
    "and gesture mAP@0.5 per set; false gestures per 100 frames over both sets."
)


def conditions_table(metrics: Mapping[str, Any]) -> list[str]:
    """Hands found and gesture mAP of the held-out sets in each room condition, ours
    beside the peer's where it was scored (empty when no condition was scored)."""
    rooms = metrics.get("conditions") or {}
    if not rooms:
        return []
    lines = [
        "| condition | who | hands found, held-out people | gesture mAP, held-out people "
        "| hands found, `hands/test` | gesture mAP, `hands/test` | false gestures / 100 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    recorded = {"ours": metrics.get("production") or {}, "peer": metrics.get("peer") or {}}
    rows = [("as recorded", recorded)] + [
        (room.replace("_", " "), figures) for room, figures in rooms.items()
    ]
    for room, figures in rows:
        for who in ("ours", "peer"):
            sets = figures.get(who) or {}
            people, hands = sets.get("signs_held_out"), sets.get("hands_test")
            if not people or not hands:
                continue
            frames = people["frames"] + hands["frames"]
            false = sum(
                (part["false_gestures_per_100_frames"] or 0.0) * part["frames"]
                for part in (people, hands)
            )
            lines.append(
                f"| {room} | {who} | {fmt_figure(people['hands_found'])} "
                f"| {fmt_figure((people.get('gestures') or {}).get('mean_ap'))} "
                f"| {fmt_figure(hands['hands_found'])} "
                f"| {fmt_figure((hands.get('gestures') or {}).get('mean_ap'))} "
                f"| {fmt_figure(false / frames if frames else None, 1)} |"
            )
    return lines


def _production_lines(metrics: Mapping[str, Any]) -> list[str]:
    table = production_table(metrics)
    if not table:
        return []
    lines = [
        "",
        "Through the worker's own decode path (hands found at IoU >= 0.5; gestures "
        "reported at the shipped thresholds; peer = MediaPipe's stock Gesture Recognizer "
        "on the same frames):",
        "",
        *table,
    ]
    return lines + production_details(metrics, thumbs_heading=None)


def production_details(metrics: Mapping[str, Any], *, thumbs_heading: str | None) -> list[str]:
    """What the model card and the evaluation report both show after the production
    table: each set per person and per class, then thumbs down (under
    ``thumbs_heading`` where given, else introduced inline)."""
    lines: list[str] = []
    for key, title in PRODUCTION_SETS:
        per_person = per_person_table(metrics, key)
        if per_person:
            lines += ["", f"Per person, {title}:", "", *per_person]
        per_class = per_class_table(metrics, key)
        if per_class:
            lines += ["", f"Gesture AP@0.5 per class, {title}:", "", *per_class]
    thumbs_down = thumbs_down_table(metrics)
    if thumbs_down:
        intro = (
            ["", thumbs_heading, "", THUMBS_DOWN_NOTE]
            if thumbs_heading
            else ["", "Thumbs down. " + THUMBS_DOWN_NOTE]
        )
        lines += [*intro, "", *thumbs_down]
    far = far_table(metrics)
    if far:
        lines += ["", "People farther away. " + FAR_NOTE, "", *far]
    return lines


def _command(recipe: Mapping[str, Any]) -> str:
    parts = ["memelearning train RUN_DIR"]
    for key in ("seed", "head_epochs", "feature_passes", "limit"):
        if recipe.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {recipe[key]}")
    if recipe.get("far_hands"):
        parts.append("--far-hands")
    return " ".join(parts)
