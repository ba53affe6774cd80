"""Label normalisation for the annotated data sets.

``signs/`` labels were typed by nine different people (``Hi``, ``I Love You``,
``ThankYou``…); they are normalised here, in code, so the raw files stay as published.
Every normaliser returns ``None`` for a label it does not know, so a reader reports it
instead of silently training on a typo.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

HAND = "hand"
"""The single class of the class-agnostic hand detector."""

SMILE = "smile"
NEUTRAL = "neutral"
FACE_LABELS = (SMILE, NEUTRAL)
"""The face stage's labels: every face found gets one box with one of them. They follow
the gestures in ``label_map.pbtxt`` (a model without faces keeps its gesture ids)."""

THINKING = "thinking"
RAISE_HAND = "raise_hand"
POSE_LABELS = (THINKING, RAISE_HAND)
"""Poses of a hand against the face (:mod:`models.networks.poses`), after the face labels in
``label_map.pbtxt``. A hand in a pose is reported with the pose instead of its gesture
(a raised open hand asks to speak; it is not waving)."""

TURNED_GESTURES: Mapping[str, str] = {"like": "dislike", "dislike": "like"}
"""What a gesture becomes when the frame is turned half a circle: a thumbs up turned
is a thumbs down (the thumb points down, the curled fingers still face the camera).
Gestures not named here are no gesture of ours turned (a pointing finger points down)."""

HANDS_LABELS = ("0-hand", "1-hand", "2-hand", "3-hand", "4-hand", "5-hand")
"""``hands/`` labels: the number of open fingers."""

FINGERS_TO_GESTURE: Mapping[str, str] = {
    "0-hand": "fist",
    "1-hand": "one",
    "2-hand": "peace",
    "5-hand": "palm",
}
"""``hands/`` finger counts that are gestures of ours (3 and 4 fingers are none)."""

SIGN_WORDS = frozenset(
    {
        "bed", "call", "correct", "cry", "deaf", "door", "eat", "good", "hat", "hello",
        "help", "home", "house", "iloveyou", "love", "no", "ok", "please", "present",
        "single", "sorry", "thanks", "yes",
    }
)  # fmt: skip
"""Canonical sign words in ``signs/``. ``love`` (two crossed arms) is a different sign
from ``iloveyou`` (one hand) and stays separate, as ``home`` and ``house`` do."""

SIGN_SYNONYMS: Mapping[str, str] = {
    "hi": "hello",
    "thank": "thanks",
    "thankyou": "thanks",
    "i": "iloveyou",
    "ily": "iloveyou",
    "okay": "ok",
}
"""Spellings (after :func:`label_key`) that mean a canonical sign word."""

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def label_key(raw: str) -> str:
    """Case, spaces and punctuation folded away: ``"I Love you"`` → ``"iloveyou"``."""
    return _NOT_ALNUM.sub("", raw.casefold())


def normalise_sign(raw: str) -> str | None:
    """The canonical sign word for a ``signs/`` label, or ``None`` if unknown."""
    key = label_key(raw)
    key = SIGN_SYNONYMS.get(key, key)
    return key if key in SIGN_WORDS else None


def normalise_hands(raw: str) -> str | None:
    """A ``hands/`` finger-count label (``0-hand`` … ``5-hand``) or ``None``."""
    label = raw.strip().lower()
    return label if label in HANDS_LABELS else None


def class_agnostic(
    normalise: Callable[[str], str | None], label: str = HAND
) -> Callable[[str], str | None]:
    """A policy that maps every label ``normalise`` accepts to ``label`` (and still
    rejects the ones it does not): boxes of any sign become ``hand`` for the detector."""

    def policy(raw: str) -> str | None:
        return label if normalise(raw) is not None else None

    return policy
