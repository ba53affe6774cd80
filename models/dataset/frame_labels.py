"""Labels we gave to shared frames ourselves, after looking at every one of them.

``signs/`` names what each person *signs*, not what their hand looks like: the same
word is a different hand from one person to the next (Mocktic signs "yes" with a thumbs
up, the other seven who sign it knock a fist, as American Sign Language does). So the
gesture a frame shows is stated here per person and word, never guessed from the word.

Looked at on 2026-11-28, every frame of each entry with its boxes drawn over it: all
265 frames (8 people; fist 100, palm 83, like 37, ok 15, call 15, one 15) show the
gesture below on the boxed hand. ``signs/`` holds no thumbs down, and none of its
signs is a peace sign, a rock sign or a mute sign.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from models.dataset.labels import normalise_sign
from models.dataset.voc import Annotation

SIGN_GESTURES: Final[dict[tuple[str, str], str]] = {
    # ASL "yes": a fist knocking (Mocktic's is a thumbs up)
    ("4-mina", "yes"): "fist",  # 15 frames
    ("Condzi", "yes"): "fist",  # 14
    ("FarzadMalik", "yes"): "fist",  # 13
    ("KashifAli-IT", "yes"): "fist",  # 13
    ("aniket-singh-01", "yes"): "fist",  # 15
    ("pietercdevries", "yes"): "fist",  # 15
    ("sniiitik", "yes"): "fist",  # 15
    # thumbs up, under three different words
    ("Mocktic", "yes"): "like",  # 9
    ("FarzadMalik", "good"): "like",  # 13
    ("aniket-singh-01", "ok"): "like",  # 15: "ok" as in thumbs up, not the OK sign
    # "hello": an open palm, fingers spread, raised and waved (what our wave reacts to)
    ("4-mina", "hello"): "palm",  # 15
    ("Condzi", "hello"): "palm",  # 15
    ("KashifAli-IT", "hello"): "palm",  # 11
    ("pietercdevries", "hello"): "palm",  # 15
    ("sniiitik", "hello"): "palm",  # 12
    ("aniket-singh-01", "hello"): "palm",  # 15
    # aniket-singh-01 signs our other gestures under words of his own
    ("aniket-singh-01", "correct"): "ok",  # 15: the OK sign
    ("aniket-singh-01", "call"): "call",  # 15
    ("aniket-singh-01", "single"): "one",  # 15: index finger up
}
"""(person, canonical sign word) → the gesture of ours every such frame shows."""


def sign_gesture(person: str, raw_label: str) -> str | None:
    """The gesture a ``signs/`` box of ``person`` shows, or ``None`` when it is a sign
    that is no gesture of ours (or one nobody looked at)."""
    word = normalise_sign(raw_label)
    return SIGN_GESTURES.get((person, word)) if word is not None else None


def relabel(annotations: Iterable[Annotation], other: str) -> list[Annotation]:
    """Every box relabelled with the gesture it shows, or ``other`` when its sign is no
    gesture of ours (its sign word stays in ``raw_label``)."""
    return [
        replace(
            annotation,
            boxes=tuple(
                replace(box, label=sign_gesture(annotation.group, box.raw_label) or other)
                for box in annotation.boxes
            ),
        )
        for annotation in annotations
    ]


def gesture_frames(annotations: Iterable[Annotation]) -> list[Annotation]:
    """The ``signs/`` frames whose every box shows a gesture of ours, relabelled."""
    return [
        frame
        for frame in relabel(annotations, "")
        if frame.boxes and all(box.label for box in frame.boxes)
    ]
