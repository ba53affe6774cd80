"""Fine-tune the hand detector on LabelImg boxes (``hands/`` and ``signs/``).

Images are decoded once, letterboxed to a small square and kept in memory (a few
hundred MB for the shared data); every step draws fresh geometric and colour
augmentation, so no epoch sees the same pixels twice. Training resumes from the last
checkpoint in the run directory, and a fixed seed gives the same data order and
augmentation on every run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from models.hand_detector import (
    INPUT_SIZE,
    NUM_ANCHORS,
    HandDetector,
    detection_loss,
    encode_targets,
)
from models.voc import Annotation

logger = logging.getLogger(__name__)

# Stored a little larger than the network input so zoomed-in crops keep detail.
_STORE_SIZE: Final = 256
# A box that keeps less than this share of its area after a crop is dropped.
_MIN_VISIBLE: Final = 0.4


@dataclass(frozen=True, slots=True)
class BoxImages:
    """Letterboxed images ``[N, S, S, 3]`` uint8 and their boxes (letterbox units)."""

    images: npt.NDArray[np.uint8]
    boxes: tuple[npt.NDArray[np.float32], ...]


def load_box_images(annotations: Sequence[Annotation], size: int = _STORE_SIZE) -> BoxImages:
    """Decode and letterbox every annotated image (zero padding, centred)."""
    images = np.zeros((len(annotations), size, size, 3), np.uint8)
    all_boxes = []
    for i, record in enumerate(tqdm(annotations, desc="loading", unit="img", leave=False)):
        with Image.open(record.image_path) as image:
            rgb = image.convert("RGB")
            width, height = rgb.size
            side = max(width, height)
            new_w, new_h = round(width * size / side), round(height * size / side)
            top, left = (size - new_h) // 2, (size - new_w) // 2
            images[i, top : top + new_h, left : left + new_w] = np.asarray(
                rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
            )
        scale_y, scale_x = new_h / size / height, new_w / size / width
        oy, ox = top / size, left / size
        pixels = np.array(
            [(b.ymin, b.xmin, b.ymax, b.xmax) for b in record.boxes], np.float32
        ).reshape(-1, 4)
        scale = np.array([scale_y, scale_x, scale_y, scale_x], np.float32)
        boxes = pixels * scale + np.array([oy, ox, oy, ox], np.float32)
        all_boxes.append(boxes)
    return BoxImages(images, tuple(all_boxes))


@dataclass(frozen=True, slots=True)
class DetectorTrainingConfig:
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    box_weight: float = 5.0
    seed: int = 0


def _random_crops(rng: np.random.Generator, count: int) -> npt.NDArray[np.float32]:
    """Crop windows ``[count, 4]`` (ymin, xmin, ymax, xmax) in stored-image units:
    zoom in and out, aspect jitter (16:9 frames squeezed into 4:3 and back), shifts."""
    scale = rng.uniform(0.55, 1.25, count)
    aspect = np.exp(rng.uniform(-0.25, 0.25, count))
    h = scale * np.sqrt(aspect)
    w = scale / np.sqrt(aspect)
    y0 = rng.uniform(np.minimum(0.0, 1.0 - h), np.maximum(0.0, 1.0 - h))
    x0 = rng.uniform(np.minimum(0.0, 1.0 - w), np.maximum(0.0, 1.0 - w))
    return np.stack([y0, x0, y0 + h, x0 + w], axis=-1).astype(np.float32)


def _crop_boxes(
    boxes: npt.NDArray[np.float32], crop: npt.NDArray[np.float32], flip: bool
) -> npt.NDArray[np.float32]:
    if len(boxes) == 0:
        return boxes
    y0, x0, y1, x1 = crop
    h, w = y1 - y0, x1 - x0
    moved = (boxes - np.array([y0, x0, y0, x0], np.float32)) / np.array([h, w, h, w], np.float32)
    clipped = np.clip(moved, 0.0, 1.0)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    kept = clipped[visible >= _MIN_VISIBLE * np.maximum(area, 1e-9)]
    if flip:
        kept = np.stack([kept[:, 0], 1.0 - kept[:, 3], kept[:, 2], 1.0 - kept[:, 1]], axis=-1)
    return kept.astype(np.float32)


@tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
def _augment_pixels(
    images: tf.Tensor, crops: tf.Tensor, flips: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    count = tf.shape(images)[0]
    out = tf.image.crop_and_resize(
        tf.cast(images, tf.float32) / 255.0,
        crops,
        tf.range(count),
        [INPUT_SIZE, INPUT_SIZE],
        extrapolation_value=0.0,
    )
    out = tf.where(flips[:, None, None, None], tf.reverse(out, axis=[2]), out)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    out = tf.image.stateless_random_brightness(out, 0.2, seeds[0])
    out = tf.image.stateless_random_contrast(out, 0.7, 1.3, seeds[1])
    out = tf.image.stateless_random_saturation(out, 0.6, 1.4, seeds[2])
    noise = tf.random.stateless_normal(tf.shape(out), seeds[3], stddev=0.02)
    return tf.clip_by_value(out + noise, 0.0, 1.0)


def batches(
    data: BoxImages, config: DetectorTrainingConfig, epoch: int
) -> Iterator[tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]]:
    """One epoch of augmented ``(images, labels, weights, regression)`` batches; the
    same ``(seed, epoch)`` always gives the same batches."""
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(data.images))
    for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
        index = order[start : start + config.batch_size]
        crops = _random_crops(rng, len(index))
        flips = rng.random(len(index)) < 0.5
        labels = np.zeros((len(index), NUM_ANCHORS), np.float32)
        weights = np.zeros((len(index), NUM_ANCHORS), np.float32)
        regression = np.zeros((len(index), NUM_ANCHORS, 4), np.float32)
        for row, (i, crop, flip) in enumerate(zip(index, crops, flips, strict=True)):
            boxes = _crop_boxes(data.boxes[i], crop, bool(flip))
            labels[row], weights[row], regression[row] = encode_targets(boxes)
        images = _augment_pixels(
            tf.constant(data.images[index]),
            tf.constant(crops),
            tf.constant(flips),
            tf.constant(rng.integers(0, 2**31, 2), tf.int64),
        )
        yield images, tf.constant(labels), tf.constant(weights), tf.constant(regression)


def train_detector(
    detector: HandDetector,
    data: BoxImages,
    run_dir: Path,
    config: DetectorTrainingConfig,
) -> HandDetector:
    """Fine-tune ``detector`` in place for ``config.epochs`` epochs, checkpointing to
    ``run_dir`` after each and resuming from the latest checkpoint found there."""
    tf.random.set_seed(config.seed)
    steps_per_epoch = max(len(data.images) // config.batch_size, 1)
    total = steps_per_epoch * config.epochs
    schedule = _WarmupCosine(config.learning_rate, config.warmup_steps, total)
    optimizer = tf.keras.optimizers.Adam(learning_rate=schedule, clipnorm=10.0)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(weights=detector.weights, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("resumed from %s (epoch %d)", manager.latest_checkpoint, int(epoch))
    variables = detector.weights

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def step(
        images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, targets: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            regressors, logits = detector.raw(images)
            class_loss, box_loss = detection_loss(regressors, logits, labels, weights, targets)
            loss = class_loss + config.box_weight * box_loss
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return class_loss, box_loss

    while int(epoch) < config.epochs:
        current = int(epoch)
        progress = tqdm(
            batches(data, config, current),
            total=steps_per_epoch,
            desc=f"detector epoch {current + 1}/{config.epochs}",
            unit="batch",
        )
        sums = np.zeros(2)
        for n, batch in enumerate(progress, start=1):
            class_loss, box_loss = step(*batch)
            sums += (float(class_loss), float(box_loss))
            progress.set_postfix(cls=f"{sums[0] / n:.3f}", box=f"{sums[1] / n:.4f}")
        epoch.assign_add(1)
        manager.save()
    return detector


class _WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
    def __init__(self, peak: float, warmup: int, total: int) -> None:
        super().__init__()
        self.peak = peak
        self.warmup = max(warmup, 1)
        self.total = max(total, self.warmup + 1)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        warm = self.peak * step / self.warmup
        progress = (step - self.warmup) / (self.total - self.warmup)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        return tf.where(step < self.warmup, warm, cosine)

    def get_config(self) -> dict[str, float]:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}
