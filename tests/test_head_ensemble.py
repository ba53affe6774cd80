"""An ensemble of gesture heads is served as one head whose logits are the members'
mean, so it exports, rebuilds and scores as any head does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.networks.gesture_classifier import GestureHead
from models.train.classifier_training import (
    Features,
    HeadTrainingConfig,
    predict,
    train_heads,
)

LABELS = ("like", "none", "peace")


def _separable(count: int = 120, seed: int = 0) -> Features:
    """Three classes, each a cloud around its own corner of a 5-dimensional space."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % len(LABELS)
    centres = np.eye(len(LABELS), 5, dtype=np.float32) * 4.0
    x = centres[y] + rng.normal(0.0, 0.5, (count, 5)).astype(np.float32)
    return Features(x, y.astype(np.int64))


def _trained(seed: int, data: Features, tmp_path: Path) -> GestureHead:
    config = HeadTrainingConfig(epochs=3, batch_size=32, seed=seed)
    return train_heads(LABELS, data, tmp_path / f"seed-{seed}", config)


def test_the_averaged_head_gives_the_mean_of_its_members_logits(tmp_path: Path) -> None:
    data = _separable()
    members = [_trained(seed, data, tmp_path) for seed in (0, 1, 2)]

    merged = GestureHead.averaged(members)

    expected = np.mean([m.logits(data.x).numpy() for m in members], axis=0)
    np.testing.assert_allclose(merged.logits(data.x).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert tuple(merged.w1.shape) == (5, 3 * 256)
    assert merged.labels == LABELS


def test_heads_that_differ_in_labels_or_standardization_are_refused(tmp_path: Path) -> None:
    data = _separable()
    head = _trained(0, data, tmp_path)
    other_labels = GestureHead(("like", "none", "ok"), 5)
    with pytest.raises(ValueError, match="share their labels"):
        GestureHead.averaged([head, other_labels])
    other_features = _trained(1, _separable(seed=7), tmp_path)
    with pytest.raises(ValueError, match="same features"):
        GestureHead.averaged([head, other_features])


def test_several_members_train_with_their_own_seeds_and_checkpoints(tmp_path: Path) -> None:
    data = _separable()
    config = HeadTrainingConfig(epochs=15, batch_size=32, seed=5)

    ensemble = train_heads(LABELS, data, tmp_path, config, members=2)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["member-0", "member-1"]
    # Member 1 is the head a single run with seed 6 would train.
    alone = train_heads(LABELS, data, tmp_path / "alone", HeadTrainingConfig(15, 32, seed=6))
    first = train_heads(LABELS, data, tmp_path / "first", config)
    expected = (first.logits(data.x).numpy() + alone.logits(data.x).numpy()) / 2
    np.testing.assert_allclose(ensemble.logits(data.x).numpy(), expected, rtol=1e-4, atol=1e-4)
    assert (predict(ensemble, data.x).argmax(axis=1) == data.y).mean() > 0.9


def test_an_ensemble_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        train_heads(LABELS, _separable(), Path("unused"), HeadTrainingConfig(), members=0)
