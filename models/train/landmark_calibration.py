"""What the int8 landmark networks of the TFLite export are calibrated on.

Full-integer quantization fixes each activation's range from example inputs. Ours are
the inputs the networks get in service: the hand regions stage one cuts and the
squares stage two classifies, from real frames of the training people, fitted as the
worker fits them, and taken in turn as recorded and as cameras in five other rooms
would have sent them (:mod:`models.evaluate.conditions`): calibrated on bright frames
alone, the int8 region network lost a thumbs up of ``signs/`` that the float one
found (docs/models.md, "int8 landmark networks"). Only ``hands/train`` is used, so
every person of ``signs/`` scores the int8 networks as someone they never saw
(:mod:`models.evaluate.runtimes`). The crops live in memory for the conversion and
are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from tqdm import tqdm

from models.dataset.voc import Annotation, read_voc_dir
from models.evaluate.frame_scores import load_placed

if TYPE_CHECKING:
    from models.serving.gesture_model import GestureModel, LandmarkCalibration

CALIBRATION_FRAMES: Final = 240
"""Frames sampled for the ranges, 40 for each room of :data:`CALIBRATION_ROOMS`."""
CALIBRATION_ROOMS: Final = (None, "dim", "backlight", "webcam", "warm_lamp", "overexposed")
"""As recorded (None), then room conditions, in turn over the sampled frames."""
CALIBRATION_SOURCE: Final = "hands/train"


def calibration_frames(data_root: Path) -> list[Annotation]:
    """The annotated frames under ``data_root`` the ranges are taken from (what
    training passes as its ``hands/train`` split)."""
    dataset = read_voc_dir(data_root / CALIBRATION_SOURCE)
    if not dataset.annotations:
        raise ValueError(f"{data_root / CALIBRATION_SOURCE}: no annotated frames to calibrate on")
    return list(dataset.annotations)


def landmark_calibration(
    model: GestureModel,
    annotations: Sequence[Annotation],
    *,
    frames: int = CALIBRATION_FRAMES,
    seed: int = 0,
) -> LandmarkCalibration:
    """The regions and squares ``model`` cuts from up to ``frames`` of ``annotations``
    (a seeded sample), for :func:`models.serving.gesture_model.to_tflite`."""
    from models.serving.gesture_model import LandmarkCalibration

    if not annotations:
        raise ValueError("no frames to calibrate the int8 landmark networks on")
    import tensorflow as tf

    cut = tf.function(model.landmark_inputs)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(len(annotations))[:frames])
    regions, squares = [], []
    for turn, index in enumerate(tqdm(chosen, desc="int8 calibration", unit="frame")):
        pixels, _ = load_placed(
            annotations[index].image_path,
            model.config.input_size,
            CALIBRATION_ROOMS[turn % len(CALIBRATION_ROOMS)],
            model.config.frame_fit,
        )
        found, cropped = cut(tf.constant(pixels[None]))
        regions += [crop[None] for crop in found.numpy()]
        squares += [crop[None] for crop in cropped.numpy()]
    if not regions or not squares:
        raise ValueError(f"stage one found no hand in {len(chosen)} calibration frames")
    return LandmarkCalibration(tuple(regions), tuple(squares))
