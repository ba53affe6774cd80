"""Poses named from where a hand is against the face: ``thinking`` and ``raise_hand``.

Neither needs training: both are geometry on landmarks the model already has (21 per
hand from stage one, the face mesh from the face stage), measured in units of the
face's own height so that they hold whether a person sits close to the camera or far.

* ``thinking``: a hand at the lower face with its last three fingers curled — the
  thumb or index tip on the jaw, chin or cheek, or the knuckles of a fist just under
  the chin. A flat hand at the chin (ASL thank-you), fingers at the eyes or forehead,
  two hands on the face (ASL cry) do not count, nor does a hand held *in front of* the
  face: a fist knocked at the camera (ASL yes) overlaps the chin in the picture
  without touching it, and gives itself away twice — its palm sits inside the face's
  outline, and it looks bigger than a hand at the face's depth can.
* ``raise_hand``: a hand held up as people ask to speak: its highest point well above
  the forehead, its wrist above the chin, pointing up (a hand laid on the head, as
  ASL "hat" pats it, is level), not a thumbs up (the thumb is the top of the hand:
  that is our ``like`` gesture, often shown at head height), and at the face's depth
  (a palm pushed at the camera looks raised only because it is near).

Every hand is judged against every live face of its frame and counts if it holds the
pose against one of them; a face far smaller than the hand (a person in the
background) fails the size test, so a hand is not "above the head" of a stranger.

Written as plain tensor arithmetic (gathers, reductions, comparisons) over fixed
slots, at most rank 4, so the same code runs in the SavedModel and in TFLite's
built-in ops. Only face-mesh indices below 468 are read: the 10 iris points of the
478-point model are not needed, and a 468-point mesh padded to 478 works the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import tensorflow as tf

# MediaPipe face mesh indices (canonical face model; all < 468).
FOREHEAD: Final = 10
CHIN: Final = 152
NOSE_TIP: Final = 1
JAW_AND_CHEEKS: Final = (
    234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454,
)  # fmt: skip
"""The face oval from one cheekbone down the jaw and chin to the other."""
FACE_OVAL: Final = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
    400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
    103, 67, 109,
)  # fmt: skip
# Hand landmark indices (MediaPipe hand model).
WRIST: Final = 0
THUMB_TIP: Final = 4
INDEX_TIP: Final = 8
MIDDLE_KNUCKLE: Final = 9
KNUCKLES: Final = (5, 9, 13, 17)
LAST_THREE_TIPS: Final = (12, 16, 20)
LAST_THREE_KNUCKLES: Final = (9, 13, 17)
NOT_THUMB: Final = tuple(range(5, 21))
PALM: Final = (0, 5, 9, 13, 17)


@dataclass(frozen=True, slots=True)
class PoseConfig:
    """Distances in face heights (forehead landmark to chin landmark). raise_hand's
    defaults are the grid point with the best recall at precision >= 0.9 on the tuning
    people (``python -m models.evaluate.pose_measure --tune``); thinking's are its definition's
    values, checked to fire on no tuning frame (no tuning person shows the pose)."""

    touch: float = 0.08
    """A thumb or index tip this close to the jaw or cheek line touches it."""
    below_nose: float = -0.15
    """A touching fingertip is no higher than this above the nose tip (negative: above):
    fingers at the eyes or forehead are not thinking."""
    index_out: float = 0.7
    """A touching index is held out: its tip at least this many palm lengths from its
    knuckle (the folded index of a fist knocked at the chin is about 0.5)."""
    thumb_out: float = 0.6
    """A touching thumb is held out: its tip at least this many palm lengths from the
    index knuckle (a thumb tucked over a fist is about 0.3)."""
    curled: float = 1.3
    """A finger is curled when its tip is no further from the wrist than this many
    times its knuckle is. Thinking keeps the last three fingers curled (a pointing
    index or thumb, or a fist): a flat hand at the chin is a sign (thank you)."""
    under_chin: float = 0.1
    """A fist's top knuckle up to this far below the chin, and no further above it
    than ``touch``, holds the chin up (the chin above the knuckles' span)."""
    fist: float = 1.1
    """A fist under the chin is tight: its last three fingers curled to this (a hand
    lying flat across the chest, ASL "no", is about 1.2)."""
    outside_face: float = 1.0
    """Thinking: the palm's centre lies at least this far out of the face's outline
    (1 = on the ellipse through the outline's extremes). A hand resting on the chin or
    cheek sits beside or below the face; one over the face is held in front of it."""
    hand_size: float = 0.55
    """Thinking: the palm (wrist to middle knuckle, or index to little-finger knuckle,
    the longer) is at most this many face heights. A hand at the face's depth measures
    about 0.5; a bigger one is nearer the camera than the face, not touching it."""
    other_hand: float = 0.15
    """No thinking when a second hand has a thumb or index tip this close to the jaw:
    both hands at the face are a sign (cry, bed) or a yawn, not a pose."""
    raised: float = 0.5
    """A raised hand's highest landmark is at least this far above the forehead
    landmark (about the top of the hair plus a little)."""
    wrist_up: float = 0.1
    """A raised hand's wrist is at least this far above the chin."""
    upright: float = 0.85
    """A raised hand points up: its highest landmark is above its wrist by at least
    this share of its reach (a hand laid on the head is level)."""
    raised_size: float = 0.9
    """A raised hand's palm is at most this many face heights: a palm pushed at the
    camera (1.0 and more) looks raised only because it is near."""


def _pair_index(frames: tf.Tensor, hands: int, faces: int) -> tuple[tf.Tensor, tf.Tensor]:
    """For every (frame, hand, face) triple in that order, the flat index of its hand
    in ``[N*K]`` and of its face in ``[N*F]``: pairs are flattened into one batch axis
    so no tensor goes above rank 4 (TFLite's broadcasting limit for several ops)."""
    pair = tf.range(frames * hands * faces)
    hand = tf.math.floordiv(pair, faces)
    face = tf.math.floordiv(pair, hands * faces) * faces + tf.math.floormod(pair, faces)
    return hand, face


def _nearest(points: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """``[M, P]``: each point's distance to the nearest of ``targets`` (both
    ``[M, ., 2]``)."""
    delta = points[:, :, None, :] - targets[:, None, :, :]
    return tf.reduce_min(tf.sqrt(tf.reduce_sum(tf.square(delta), axis=-1) + 1e-12), axis=-1)


def pose_features(
    hands: tf.Tensor, faces: tf.Tensor, frame_size: tf.Tensor
) -> dict[str, tf.Tensor]:
    """The measurements the poses are thresholds on, for every hand against every face:
    hand landmarks ``[N, K, 21, >=2]`` and face landmarks ``[N, F, >=468, >=2]`` (x, y
    normalized to the frame), ``frame_size`` (height, width). Each value is ``[N, K,
    F]``, in face heights where it is a distance (y grows downwards)."""
    num = tf.shape(hands)[0]
    slots = tf.shape(hands)[1]
    face_slots = tf.shape(faces)[1]
    height = tf.cast(frame_size[0], tf.float32)
    width = tf.cast(frame_size[1], tf.float32)
    # Pixels, so distances are the same in x and y.
    to_pixels = tf.stack([width, height])
    hand_px = tf.reshape(hands[..., :2] * to_pixels, [-1, 21, 2])  # [N*K, 21, 2]
    wanted = (FOREHEAD, CHIN, NOSE_TIP, *JAW_AND_CHEEKS, *FACE_OVAL)
    face_px = tf.reshape(
        tf.gather(faces[..., :2], wanted, axis=2) * to_pixels, [-1, len(wanted), 2]
    )  # [N*F, P, 2]
    hand_of, face_of = _pair_index(num, slots, face_slots)
    hand = tf.gather(hand_px, hand_of)  # [M, 21, 2], M = N*K*F
    face = tf.gather(face_px, face_of)  # [M, P, 2]

    forehead, chin, nose = face[:, 0], face[:, 1], face[:, 2]
    jaw = face[:, 3 : 3 + len(JAW_AND_CHEEKS)]
    oval = face[:, 3 + len(JAW_AND_CHEEKS) :]
    scale = tf.maximum(tf.norm(chin - forehead, axis=-1), 1.0)  # [M]

    wrist = hand[:, WRIST]
    tips = tf.gather(hand, [THUMB_TIP, INDEX_TIP], axis=1)  # [M, 2, 2]
    tip_to_jaw = _nearest(tips, jaw) / scale[:, None]  # [M, 2]
    tip_height = (tips[..., 1] - nose[:, None, 1]) / scale[:, None]  # [M, 2] below nose

    knuckles = tf.gather(hand, KNUCKLES, axis=1)
    knuckles_below_chin = (tf.reduce_min(knuckles[..., 1], axis=-1) - chin[:, 1]) / scale
    chin_over_knuckles = tf.cast(
        (tf.reduce_min(knuckles[..., 0], axis=-1) <= chin[:, 0])
        & (chin[:, 0] <= tf.reduce_max(knuckles[..., 0], axis=-1)),
        tf.float32,
    )

    # The palm's centre against the ellipse through the outline's extremes.
    palm = tf.reduce_mean(tf.gather(hand, PALM, axis=1), axis=1)
    low = tf.reduce_min(oval, axis=1)
    high = tf.reduce_max(oval, axis=1)
    half = tf.maximum((high - low) / 2.0, 1.0)
    offset = (palm - (low + high) / 2.0) / half
    palm_out = tf.sqrt(tf.reduce_sum(tf.square(offset), axis=-1))

    size = (
        tf.maximum(
            tf.norm(hand[:, MIDDLE_KNUCKLE] - wrist, axis=-1),
            tf.norm(hand[:, KNUCKLES[0]] - hand[:, KNUCKLES[-1]], axis=-1),
        )
        / scale
    )

    palm_length = tf.maximum(tf.norm(hand[:, MIDDLE_KNUCKLE] - wrist, axis=-1), 1e-3)
    # How far a finger reaches out, in palm lengths: a straight index spans about one
    # palm length from its knuckle, a curled one half that; a thumb held out sits far
    # from the index knuckle, one tucked over a fist close to it.
    index_out = tf.norm(hand[:, INDEX_TIP] - hand[:, KNUCKLES[0]], axis=-1) / palm_length
    thumb_out = tf.norm(hand[:, THUMB_TIP] - hand[:, KNUCKLES[0]], axis=-1) / palm_length
    # The knuckles above the wrist (1: the hand points straight up), as a fist under the
    # chin stands; a hand lying across the chest is level.
    hand_up = (wrist[:, 1] - tf.reduce_mean(knuckles[..., 1], axis=-1)) / palm_length

    tip_reach = tf.norm(tf.gather(hand, LAST_THREE_TIPS, axis=1) - wrist[:, None], axis=-1)
    knuckle_reach = tf.norm(tf.gather(hand, LAST_THREE_KNUCKLES, axis=1) - wrist[:, None], axis=-1)
    curl = tf.reduce_max(tip_reach / tf.maximum(knuckle_reach, 1e-3), axis=-1)

    top = tf.reduce_min(hand[..., 1], axis=-1)
    above = (forehead[:, 1] - top) / scale
    wrist_above_chin = (chin[:, 1] - wrist[:, 1]) / scale
    reach = tf.reduce_max(tf.norm(hand - wrist[:, None], axis=-1), axis=-1)
    upright = (wrist[:, 1] - top) / tf.maximum(reach, 1e-3)
    # The thumb tip above every other joint: a thumbs up, not a raised hand.
    thumb_top = tf.cast(
        hand[:, THUMB_TIP, 1] < tf.reduce_min(tf.gather(hand, NOT_THUMB, axis=1)[..., 1], axis=-1),
        tf.float32,
    )

    shape = tf.stack([num, slots, face_slots])
    features = {
        "thumb_to_jaw": tip_to_jaw[:, 0],
        "index_to_jaw": tip_to_jaw[:, 1],
        "thumb_below_nose": tip_height[:, 0],
        "index_below_nose": tip_height[:, 1],
        "knuckles_below_chin": knuckles_below_chin,
        "chin_over_knuckles": chin_over_knuckles,
        "palm_out": palm_out,
        "index_out": index_out,
        "thumb_out": thumb_out,
        "hand_up": hand_up,
        "size": size,
        "curl": curl,
        "above": above,
        "wrist_above_chin": wrist_above_chin,
        "upright": upright,
        "thumb_top": thumb_top,
    }
    return {name: tf.reshape(value, shape) for name, value in features.items()}


def pose_scores(
    hands: tf.Tensor,
    hand_live: tf.Tensor,
    faces: tf.Tensor,
    face_live: tf.Tensor,
    frame_size: tf.Tensor,
    config: PoseConfig = PoseConfig(),
) -> tuple[tf.Tensor, tf.Tensor]:
    """For hand landmarks ``[N, K, 21, >=2]`` and face landmarks ``[N, F, >=468, >=2]``
    (x, y normalized to the frame; ``*_live [N, K|F]`` bool mark real slots), whether
    each hand is in the thinking pose and whether it is raised: two float ``[N, K]`` of
    0/1, judged against every live face of its frame."""
    return poses_from_features(
        pose_features(hands, faces, frame_size), hand_live, face_live, config
    )


def poses_from_features(
    features: dict[str, tf.Tensor],
    hand_live: tf.Tensor,
    face_live: tf.Tensor,
    config: PoseConfig = PoseConfig(),
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`pose_scores` from :func:`pose_features` already computed (the
    measurement tunes thresholds without recomputing them)."""
    f = features
    touch_index = (
        (f["index_to_jaw"] <= config.touch)
        & (f["index_below_nose"] >= config.below_nose)
        & (f["index_out"] >= config.index_out)
    )
    touch_thumb = (
        (f["thumb_to_jaw"] <= config.touch)
        & (f["thumb_below_nose"] >= config.below_nose)
        & (f["thumb_out"] >= config.thumb_out)
    )
    under_chin = (
        (f["chin_over_knuckles"] > 0.5)
        & (f["knuckles_below_chin"] >= -config.touch)
        & (f["knuckles_below_chin"] <= config.under_chin)
        & (f["curl"] <= config.fist)
    )
    thinking = (
        (((touch_index | touch_thumb) & (f["curl"] <= config.curled)) | under_chin)
        & (f["palm_out"] >= config.outside_face)
        & (f["size"] <= config.hand_size)
    )
    at_face = tf.minimum(f["index_to_jaw"], f["thumb_to_jaw"]) <= config.other_hand
    raised = (
        (f["above"] >= config.raised)
        & (f["wrist_above_chin"] >= config.wrist_up)
        & (f["upright"] >= config.upright)
        & (f["thumb_top"] < 0.5)
        & (f["size"] <= config.raised_size)
    )
    live = hand_live[:, :, None] & face_live[:, None, :]  # [N, K, F]
    thinking_any = tf.reduce_any(thinking & live, axis=-1)  # [N, K]
    # One hand holds the chin; both hands at the face are a sign (cry) or a yawn.
    hands_at_face = tf.reduce_sum(
        tf.cast(tf.reduce_any(at_face & live, axis=-1), tf.int32), axis=1, keepdims=True
    )
    thinking_any = thinking_any & (hands_at_face <= 1)
    raised_any = tf.reduce_any(raised & live, axis=-1)
    return tf.cast(thinking_any, tf.float32), tf.cast(raised_any, tf.float32)
