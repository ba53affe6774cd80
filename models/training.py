"""``memelearning train``: the whole recipe, from the shared data to an exported model.

One run directory holds everything a run needs to resume: the recipe
(``train_config.json``, refused if a later call changes it), the detector and head
checkpoints and the cached crop features. Data splits are a function of the seed
alone, and the held-out people and crops are written into ``model.json`` so
``memelearning evaluate`` scores exactly the data training never saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from models.base_models import (
    HAND_LANDMARKS,
    LICENCE,
    MEDIAPIPE_VERSION,
    PALM_DETECTOR,
    base_model_paths,
)
from models.imagefolder import ImageSample, read_image_folder
from models.labels import class_agnostic, normalise_hands, normalise_sign
from models.splits import Split, group_split
from models.voc import Annotation, VocDataset, read_voc_dir

logger = logging.getLogger(__name__)

CONFIG_FILE: Final = "train_config.json"
MODEL_SUBDIR: Final = "model"


class TrainingError(Exception):
    """A run that cannot go on as asked (bad data folder, changed recipe)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    detector_epochs: int = 10
    head_epochs: int = 30
    feature_passes: int = 2
    """Augmented copies of every training crop the head sees."""
    signs_test_fraction: float = 0.2
    """Share of the people in ``signs/`` held out (whole people)."""
    signs_repeat: int = 2
    """Times each ``signs/`` training image is seen per epoch: ``hands/`` is one person,
    ``signs/`` is where the detector learns other people, rooms and cameras."""
    crops_test_fraction: float = 0.2
    limit: int | None = None
    """Use at most this many images per source (smoke runs); None = all."""
    max_hands: int = 4
    hand_threshold: float = 0.3
    input_size: tuple[int, int] = (360, 480)
    name: str = "memelearning-gestures"
    version: str = "1"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataSplits:
    detector_train: list[Annotation]
    hands_test: list[Annotation]
    signs: Split[Annotation]
    crops: Split[ImageSample]
    gesture_labels: tuple[str, ...]


def load_splits(data_root: Path, config: TrainConfig) -> DataSplits:
    """Read ``hands/``, ``signs/`` and ``hagrid-crops/`` under ``data_root`` and split
    them the way :func:`train` does (a function of ``config.seed`` alone)."""
    for part in ("hands/train", "hands/test", "signs", "hagrid-crops"):
        if not (data_root / part).is_dir():
            raise TrainingError(f"{data_root / part}: missing (expected the shared data layout)")
    hands_policy = class_agnostic(normalise_hands)
    hands_train = _records(read_voc_dir(data_root / "hands/train", labels=hands_policy))
    hands_test = _records(read_voc_dir(data_root / "hands/test", labels=normalise_hands))
    signs = _records(read_voc_dir(data_root / "signs", labels=class_agnostic(normalise_sign)))
    signs_split = group_split(
        signs,
        key=lambda a: a.xml_path.relative_to(data_root).as_posix(),
        group_of=lambda a: a.group,
        seed=config.seed,
        test_fraction=config.signs_test_fraction,
    )
    crops = read_image_folder(data_root / "hagrid-crops")
    if "none" not in crops.classes:
        # Checked now, not after an hour of training: the head must learn "no gesture".
        raise TrainingError(
            f"{data_root / 'hagrid-crops'}: no 'none' folder (hands making no gesture); "
            f"classes found: {', '.join(crops.classes) or 'none at all'}"
        )
    crops_split = crops.split(test_fraction=config.crops_test_fraction, seed=config.seed)
    limit = config.limit
    if limit is not None:
        hands_train, hands_test = hands_train[:limit], hands_test[:limit]
        signs_split = Split(signs_split.train[:limit], signs_split.test[:limit])
        crops_split = Split(
            _per_label(crops_split.train, limit), _per_label(crops_split.test, limit)
        )
    return DataSplits(
        detector_train=list(hands_train) + list(signs_split.train) * config.signs_repeat,
        hands_test=list(hands_test),
        signs=signs_split,
        crops=crops_split,
        gesture_labels=crops.classes,
    )


def _records(dataset: VocDataset) -> list[Annotation]:
    """The valid records; what was skipped is logged, not hidden."""
    if dataset.errors:
        logger.warning(
            "%s: %d annotation error(s) skipped (run `memelearning models dataset-report` "
            "for the list); first: %s",
            dataset.root,
            len(dataset.errors),
            dataset.errors[0],
        )
    return dataset.annotations


def _per_label(samples: Sequence[ImageSample], limit: int) -> tuple[ImageSample, ...]:
    taken: dict[str, int] = {}
    kept = []
    for sample in samples:
        if taken.get(sample.label, 0) < max(limit // 8, 2):
            taken[sample.label] = taken.get(sample.label, 0) + 1
            kept.append(sample)
    return tuple(kept)


def _check_recipe(run_dir: Path, config: TrainConfig) -> None:
    path = run_dir / CONFIG_FILE
    wanted = json.loads(json.dumps(asdict(config)))
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            changed = sorted(
                k for k in wanted.keys() | stored.keys() if stored.get(k) != wanted.get(k)
            )
            raise TrainingError(
                f"{run_dir} holds a run with a different recipe (changed: {', '.join(changed)}); "
                "use a new run directory or the same settings to resume"
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")


def train(
    data_root: Path, run_dir: Path, config: TrainConfig, *, base_cache: Path | None = None
) -> Path:
    """Train both stages (resuming whatever ``run_dir`` already holds) and export the
    joined model to ``run_dir/model``; returns that directory."""
    import tensorflow as tf

    from models.classifier_training import HeadTrainingConfig, extract_features, train_head
    from models.detector_training import DetectorTrainingConfig, load_box_images, train_detector
    from models.gesture_classifier import CropAugment, GestureHead, LandmarkFeatures
    from models.gesture_model import GestureModel, ModelConfig, export
    from models.hand_detector import HandDetector

    _check_recipe(run_dir, config)
    tf.random.set_seed(config.seed)
    splits = load_splits(data_root, config)
    bases = base_model_paths(base_cache)

    logger.info("stage 1: %d training images for the hand detector", len(splits.detector_train))
    detector = HandDetector.from_tflite(bases[PALM_DETECTOR.file_name])
    train_detector(
        detector,
        load_box_images(splits.detector_train),
        run_dir / "detector",
        DetectorTrainingConfig(epochs=config.detector_epochs, seed=config.seed),
    )

    logger.info("stage 2: %d training crops for the gesture head", len(splits.crops.train))
    features = LandmarkFeatures.from_tflite(bases[HAND_LANDMARKS.file_name])
    train_features = extract_features(
        splits.crops.train,
        splits.gesture_labels,
        features,
        augment=CropAugment(),
        passes=config.feature_passes,
        seed=config.seed,
        cache=run_dir / "head" / "train_features.npz",
        desc="crop features",
    )
    head = GestureHead(splits.gesture_labels, train_features.x.shape[1], seed=config.seed)
    train_head(
        head,
        train_features,
        run_dir / "head",
        HeadTrainingConfig(epochs=config.head_epochs, seed=config.seed),
    )

    model = GestureModel(
        detector,
        features,
        head,
        ModelConfig(
            max_hands=config.max_hands,
            hand_threshold=config.hand_threshold,
            input_size=config.input_size,
        ),
    )
    out = run_dir / MODEL_SUBDIR
    export(model, out, provenance(data_root, splits, config))
    logger.info("exported %s", out)
    return out


def provenance(data_root: Path, splits: DataSplits, config: TrainConfig) -> dict[str, Any]:
    """What ``model.json`` records about how the model was made."""
    return {
        "name": config.name,
        "version": config.version,
        "description": "Two-stage hand-gesture detector: fine-tuned BlazePalm-lite hand "
        "detector + hand-landmark features with a trained gesture head.",
        "train_config": json.loads(json.dumps(asdict(config))),
        "data": {
            "detector_train_images": len(splits.detector_train),
            "signs_held_out_people": sorted({a.group for a in splits.signs.test}),
            "crops_train": len(splits.crops.train),
            "crops_test": len(splits.crops.test),
            "crops_split": {"seed": config.seed, "test_fraction": config.crops_test_fraction},
        },
        "base_models": {
            "source": f"mediapipe=={MEDIAPIPE_VERSION} wheel from PyPI",
            "licence": LICENCE,
            "files": {m.file_name: m.sha256 for m in (PALM_DETECTOR, HAND_LANDMARKS)},
        },
    }
