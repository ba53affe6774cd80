"""Train the gesture head on image-folder crops (``hagrid-crops/``).

The landmark network is frozen, so its features are computed once per augmented
pass and cached in the run directory (features only, never pixels); the head then
trains in seconds per epoch and can be re-run or resumed without recomputing them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from models.dataset.imagefolder import ImageSample
from models.networks.gesture_classifier import (
    CropAugment,
    GestureHead,
    LandmarkFeatures,
    centre_crop,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Features:
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]


def extract_features(
    samples: Sequence[ImageSample],
    labels: Sequence[str],
    extractor: LandmarkFeatures,
    *,
    augment: CropAugment | None,
    passes: int,
    seed: int,
    cache: Path | None = None,
    batch_size: int = 64,
    desc: str = "features",
) -> Features:
    """Features of ``passes`` augmented versions of every sample (or of one centred
    crop each when ``augment`` is None), cached at ``cache`` when given."""
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            if int(stored["count"]) == len(samples) * passes:
                return Features(stored["x"], stored["y"])
    index = {label: i for i, label in enumerate(labels)}
    rng = np.random.default_rng(seed)
    run = tf.function(lambda crops: extractor(crops)[0], reduce_retracing=True)
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[int] = []
    jobs = [sample for _ in range(passes) for sample in samples]
    with tqdm(total=len(jobs), desc=desc, unit="crop") as progress:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            crops = np.stack([_crop(sample, augment, rng) for sample in chunk])
            xs.append(run(tf.constant(crops, tf.float32) / 255.0).numpy())
            ys.extend(index[sample.label] for sample in chunk)
            progress.update(len(chunk))
    features = Features(np.concatenate(xs).astype(np.float32), np.asarray(ys, np.int64))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=features.x, y=features.y, count=len(jobs))
    return features


def _crop(
    sample: ImageSample, augment: CropAugment | None, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    with Image.open(sample.path) as image:
        hand = image if sample.box is None else image.crop(sample.box)
        return centre_crop(hand) if augment is None else augment.apply(hand, rng)


@dataclass(frozen=True, slots=True)
class HeadTrainingConfig:
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    dropout: float = 0.3
    label_smoothing: float = 0.1
    weight_decay: float = 1e-4
    seed: int = 0


def train_head(
    head: GestureHead, train: Features, run_dir: Path, config: HeadTrainingConfig
) -> GestureHead:
    """Train ``head`` in place, checkpointing to ``run_dir`` each epoch and resuming
    from the latest checkpoint there."""
    tf.random.set_seed(config.seed)
    head.standardize_with(train.x)
    optimizer = tf.keras.optimizers.AdamW(
        learning_rate=tf.keras.optimizers.schedules.CosineDecay(
            config.learning_rate, config.epochs * max(len(train.x) // config.batch_size, 1)
        ),
        weight_decay=config.weight_decay,
    )
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(head=head, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        logger.info("resumed from %s (epoch %d)", manager.latest_checkpoint, int(epoch))
    classes = len(head.labels)
    variables = head.weights

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = head.logits(x, dropout=config.dropout)
            target = tf.one_hot(y, classes) * (1 - config.label_smoothing) + (
                config.label_smoothing / classes
            )
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    progress = tqdm(total=config.epochs, initial=int(epoch), desc="gesture head", unit="epoch")
    while int(epoch) < config.epochs:
        rng = np.random.default_rng([config.seed, int(epoch)])
        order = rng.permutation(len(train.x))
        losses = []
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            losses.append(float(step(tf.constant(train.x[index]), tf.constant(train.y[index]))))
        epoch.assign_add(1)
        manager.save()
        progress.update(1)
        progress.set_postfix(loss=f"{np.mean(losses):.3f}")
    progress.close()
    return head


def train_heads(
    labels: Sequence[str],
    train: Features,
    run_dir: Path,
    config: HeadTrainingConfig,
    members: int = 1,
) -> GestureHead:
    """A head trained on ``train``; with ``members`` > 1, that many heads that differ
    in their seed (``config.seed``, ``config.seed + 1``, ...: initial weights, dropout
    and order), averaged into one (:meth:`GestureHead.averaged`). Each checkpoints
    under ``run_dir`` (``run_dir`` itself for one, ``run_dir/member-I`` for several)."""
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    heads = []
    for i in range(members):
        seeded = replace(config, seed=config.seed + i)
        head = GestureHead(labels, train.x.shape[1], seed=seeded.seed)
        train_head(head, train, run_dir if members == 1 else run_dir / f"member-{i}", seeded)
        heads.append(head)
    return heads[0] if members == 1 else GestureHead.averaged(heads)


def predict(head: GestureHead, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Class probabilities ``[N, classes]``."""
    return tf.nn.softmax(head.logits(tf.constant(features))).numpy()  # type: ignore[no-any-return]
