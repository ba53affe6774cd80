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
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from models.dataset.frame_labels import gesture_frames, sign_gesture
from models.dataset.imagefolder import ImageSample, read_image_folder
from models.dataset.labels import (
    FINGERS_TO_GESTURE,
    class_agnostic,
    normalise_hands,
    normalise_sign,
)
from models.dataset.splits import Split, group_split, stratified_split
from models.dataset.voc import Annotation, VocDataset, read_voc_dir
from models.evaluate import conditions
from models.evaluate.evaluation import iou
from models.evaluate.frame_scores import load_placed
from models.evaluate.model_card import write_model_card
from models.networks.base_models import HAND_MODELS, BaseModel, base_model_paths
from models.train.frame_hands import FrameHands, collect
from worker.decode import FrameFit

logger = logging.getLogger(__name__)

CONFIG_FILE: Final = "train_config.json"
MODEL_SUBDIR: Final = "model"
NONE_LABEL: Final = "none"
OUT_OF_VOCABULARY: Final = ("3-hand", "4-hand")
"""``hands/`` labels that are no gesture of ours (three or four fingers up)."""
MIN_NEGATIVE_SIDE: Final = 12


class TrainingError(Exception):
    """A run that cannot go on as asked (bad data folder, changed recipe)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    head_epochs: int = 30
    feature_passes: int = 2
    """Augmented copies of every training crop the head sees."""
    signs_test_fraction: float = 0.2
    """Share of the people in ``signs/`` held out (whole people)."""
    crops_test_fraction: float = 0.2
    crops_validation_fraction: float = 0.1
    """Share of the training crops kept aside to calibrate the per-label thresholds
    (never the test crops)."""
    out_of_vocabulary_negatives: bool = True
    """Train ``none`` on the real 3- and 4-finger hands of ``hands/train`` too, so
    hands that make no gesture of ours are not named one."""
    frame_hands: bool = True
    """Train the head on the annotated hands of real frames too, found and cropped by
    the model's own stage one (:mod:`models.train.frame_hands`): ``hands/train`` (finger
    counts) and the gesture frames of the ``signs/`` people not held out."""
    frame_hand_passes: int = 3
    """Copies of each real hand: as served, then with the box and light jittered."""
    frame_hand_repeat: int = 3
    """How many times over the head sees the real hands per epoch (a few hundred
    hands beside ten thousand crops)."""
    turned_thumbs: bool = False
    """Also learn from the real thumbs up of ``signs/`` turned half a circle, as thumbs
    down (:data:`models.dataset.labels.TURNED_GESTURES`; no frame of ours shows a real
    one). They are always scored (leave one person out); learning from them changed
    nothing there (docs/models.md), so the head learns thumbs down from HaGRID alone."""
    far_hands: bool = False
    """Also learn from the real hands of ``hands/train`` and of the training people of
    ``signs/`` as a camera would see them with the person twice as far away
    (:func:`models.evaluate.conditions.far`). ``signs/`` people's are always scored that
    way (leave one person out); learning from them changed nothing there (the head
    already learns small hands from HaGRID's crops; docs/models.md), so it is off."""
    head_members: int = 1
    """Gesture heads trained with different seeds and averaged into the one shipped
    (:func:`models.train.classifier_training.train_heads`); leave-one-person-out trains
    as many for each person."""
    limit: int | None = None
    """Use at most this many images per source (smoke runs); None = all."""
    max_hands: int = 4
    hand_threshold: float = 0.5
    input_size: tuple[int, int] = (360, 480)
    frame_fit: FrameFit = "letterbox"
    """How frames of another shape go into ``input_size``, here as in the worker
    (``model.json``'s ``frame_fit``): whole between black bands, so the hands of 16:9
    frames keep their shape in the box calibration and the real hands the head
    learns from, as in the served model."""
    tflite_landmarks: str = "float"
    """The TFLite export's landmark networks (``ModelConfig.tflite_landmarks``):
    ``float``, or ``region-int8`` / ``int8`` (full-integer copies calibrated on
    ``hands/train``'s hands, :mod:`models.train.landmark_calibration`). Float: int8
    lost hands and thumbs up of new people in backlit and poor-webcam rooms, and is no
    faster on CPUs without AVX-512 VNNI (docs/models.md, "int8 landmark networks")."""
    faces: bool = True
    """Join the face stage (:mod:`models.networks.face_tracking`: every face labelled ``smile``
    or ``neutral``) to the exported model. It has no trained part here: its smile fit
    ships in :mod:`models.networks.smile` (``python -m models.evaluate.face_measure smile``)."""
    name: str = "memelearning-gestures"
    version: str = "7"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrainConfig:
        """The recipe ``model.json`` records under ``train_config`` (fields this version
        does not know are dropped; missing ones take today's defaults)."""
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        if "input_size" in known:
            known["input_size"] = tuple(known["input_size"])
        return cls(**known)


@dataclass(frozen=True, slots=True)
class DataSplits:
    calibration: list[Annotation]
    """Frames of the training people (``hands/train``, the training people of
    ``signs/``): the hand box's scale is calibrated on them."""
    hands_train: list[Annotation]
    hands_test: list[Annotation]
    signs: Split[Annotation]
    crops: Split[ImageSample]
    crops_validation: tuple[ImageSample, ...]
    """Training-side crops kept aside for the per-label thresholds."""
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
    train_crops = list(crops_split.train)
    if config.out_of_vocabulary_negatives:
        train_crops += out_of_vocabulary_hands(data_root / "hands/train")
    fit = stratified_split(
        train_crops,
        key=lambda s: f"{s.path.as_posix()}#{s.box}",
        label_of=lambda s: s.label,
        seed=config.seed,
        test_fraction=config.crops_validation_fraction,
    )
    crops_split = Split(tuple(fit.train), crops_split.test)
    validation = tuple(fit.test)
    limit = config.limit
    if limit is not None:
        hands_train, hands_test = hands_train[:limit], hands_test[:limit]
        signs_split = Split(signs_split.train[:limit], signs_split.test[:limit])
        crops_split = Split(
            _per_label(crops_split.train, limit), _per_label(crops_split.test, limit)
        )
        validation = _per_label(validation, limit)
    return DataSplits(
        calibration=list(hands_train) + list(signs_split.train),
        hands_train=list(hands_train),
        hands_test=list(hands_test),
        signs=signs_split,
        crops=crops_split,
        crops_validation=validation,
        gesture_labels=crops.classes,
    )


def out_of_vocabulary_hands(folder: Path) -> list[ImageSample]:
    """Real hands that make none of our gestures (``3-hand``, ``4-hand`` boxes of a
    LabelImg folder), as ``none`` samples cut from their frames."""
    dataset = read_voc_dir(folder, labels=OUT_OF_VOCABULARY)
    return [
        ImageSample(
            annotation.image_path,
            NONE_LABEL,
            (round(box.xmin), round(box.ymin), round(box.xmax), round(box.ymax)),
        )
        for annotation in dataset.annotations
        for box in annotation.boxes
        if box.xmax - box.xmin >= MIN_NEGATIVE_SIDE and box.ymax - box.ymin >= MIN_NEGATIVE_SIDE
    ]


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
    """Train the gesture head (resuming whatever ``run_dir`` already holds), calibrate
    the hand box and the per-label thresholds, and export the joined model to
    ``run_dir/model``; returns that directory."""
    import tensorflow as tf

    from models.networks.face_tracking import FaceStage
    from models.networks.gesture_classifier import CropAugment, GestureHead
    from models.serving.gesture_model import GestureModel, ModelConfig, export, int8_networks
    from models.train.classifier_training import (
        Features,
        HeadTrainingConfig,
        extract_features,
        predict,
        train_heads,
    )
    from models.train.cross_validation import leave_one_person_out
    from models.train.frame_hands import training_arrays
    from models.train.landmark_calibration import landmark_calibration

    if config.head_members < 1:
        raise TrainingError(
            f"head_members must be at least 1 (--head-members), got {config.head_members}"
        )
    _check_recipe(run_dir, config)
    out = run_dir / MODEL_SUBDIR
    # The TFLite file is the export's last write: with it there, the run is finished.
    if (out / "model.json").is_file() and (out / "model.tflite").is_file():
        logger.info("%s is already exported; a new run directory trains again", out)
        return out
    tf.random.set_seed(config.seed)
    splits = load_splits(data_root, config)
    bases = base_model_paths(base_cache, models=_base_models(config))

    # Stage one keeps MediaPipe's own weights: fine-tuned on our ten people it learned
    # their rooms and drew forearm-long boxes in others (docs/models.md).
    base_config = ModelConfig(
        max_hands=config.max_hands,
        hand_threshold=config.hand_threshold,
        input_size=config.input_size,
        frame_fit=config.frame_fit,
        tflite_landmarks=config.tflite_landmarks,
    )
    # The box scale and the real hands need stage one and the landmark features only:
    # any head will do until one is trained below, which the exported model serves.
    placeholder = GestureHead(splits.gesture_labels, 1, seed=config.seed)
    unscaled = GestureModel.from_base_models(
        bases, placeholder, replace(base_config, box_scale=1.0)
    )
    features = unscaled.features
    box_scale = calibrate_box_scale(
        unscaled, splits.calibration, config.input_size, config.frame_fit
    )
    model = unscaled.with_settings(placeholder, replace(base_config, box_scale=box_scale))

    logger.info("stage 2: %d training crops for the gesture head", len(splits.crops.train))
    crop_features = extract_features(
        splits.crops.train,
        splits.gesture_labels,
        features,
        augment=CropAugment(),
        passes=config.feature_passes,
        seed=config.seed,
        cache=run_dir / "head" / "train_features.npz",
        desc="crop features",
    )
    frames = real_hands(model, splits, config, run_dir / "head" / "frame_hands.pkl")
    held_out = frozenset(a.group for a in splits.signs.test)
    x, y = training_arrays(
        [f for f in frames if f.group not in held_out],
        splits.gesture_labels,
        config.frame_hand_repeat,
        views=learned_views(config),
    )
    train_features = Features(
        np.concatenate([crop_features.x, x]) if len(x) else crop_features.x,
        np.concatenate([crop_features.y, y]),
    )
    head_config = HeadTrainingConfig(epochs=config.head_epochs, seed=config.seed)
    head = train_heads(
        splits.gesture_labels, train_features, run_dir / "head", head_config, config.head_members
    )
    validation = extract_features(
        splits.crops_validation,
        splits.gesture_labels,
        features,
        augment=None,
        passes=1,
        seed=config.seed,
        cache=run_dir / "head" / "validation_features.npz",
        desc="validation crops",
    )
    probabilities = predict(head, validation.x)
    thresholds = calibrate_thresholds(probabilities, validation.y, splits.gesture_labels)
    logger.info("hand box scale %.2f; thresholds %s", box_scale, thresholds)
    signs_people = sorted({f.group for f in frames} - {HANDS_GROUP})
    unseen = (
        leave_one_person_out(
            frames,
            crop_features,
            head_config,
            people=signs_people,
            labels=splits.gesture_labels,
            shipped=head,
            held_out=held_out,
            repeat=config.frame_hand_repeat,
            learn_views=learned_views(config),
            thresholds=thresholds,
            default_threshold=THRESHOLD_FLOOR,
            hand_score=config.hand_threshold,
            members=config.head_members,
        )
        if signs_people
        else None
    )
    meta = provenance(data_root, splits, config)
    meta["thresholds"] = thresholds
    meta["people_unseen"] = unseen
    faces = FaceStage.from_base_models(bases) if config.faces else None
    model = model.with_settings(head, model.config, faces)
    calibration = (
        landmark_calibration(model, splits.hands_train) if int8_networks(model.config) else None
    )
    export(model, out, meta, calibration=calibration)
    write_model_card(out, json.loads((out / "model.json").read_text(encoding="utf-8")), None)
    logger.info("exported %s", out)
    return out


HANDS_GROUP: Final = "hands/train"


def learned_views(config: TrainConfig) -> tuple[str, ...]:
    """The views of real frames (:attr:`models.train.frame_hands.FrameHands.view`) the
    head learns from under ``config``; the rest are only scored."""
    return (conditions.TURN,) * config.turned_thumbs + (conditions.FAR_VIEW,) * config.far_hands


def _finger_gesture(annotation: Annotation, box: Any) -> str | None:
    fingers = normalise_hands(box.raw_label or box.label)
    if fingers in OUT_OF_VOCABULARY:
        return NONE_LABEL
    return FINGERS_TO_GESTURE.get(fingers or "")


def _sign_gesture(annotation: Annotation, box: Any) -> str | None:
    return sign_gesture(annotation.group, box.raw_label)


def real_hands(
    model: Any, splits: DataSplits, config: TrainConfig, cache: Path
) -> list[FrameHands]:
    """The annotated hands of ``hands/train`` and of every ``signs/`` gesture frame
    (held-out people included: they are scored, never trained on), through the
    model's stage one; cached in ``cache`` (features only)."""
    if not config.frame_hands:
        return []
    if cache.is_file():
        with cache.open("rb") as stored:
            frames: list[FrameHands] = pickle.load(stored)  # our own cache
        return frames
    hands_train = [replace(a, group=HANDS_GROUP) for a in splits.hands_train]
    signs = gesture_frames([*splits.signs.train, *splits.signs.test])
    sources: list[
        tuple[list[Annotation], Callable[[Annotation, Any], str | None], str, str | None]
    ] = [
        (hands_train, _finger_gesture, "hands/train", None),
        (signs, _sign_gesture, "signs/ gestures", None),
        # Scored apart (leave one person out); each view is learned from only as the
        # recipe says (turned_thumbs, far_hands).
        (signs, _sign_gesture, "signs/ thumbs, turned", conditions.TURN),
        (signs, _sign_gesture, "signs/ gestures, far", conditions.FAR_VIEW),
    ]
    if config.far_hands:
        # Learned from only (hands/train's one person is not scored here): about five
        # minutes of stage one on this 2-core VM, spent only when it is learned from.
        sources.append((hands_train, _finger_gesture, "hands/train, far", conditions.FAR_VIEW))
    frames = [
        frame
        for annotations, label_of, desc, view in sources
        for frame in collect(
            model,
            annotations,
            label_of,
            input_size=config.input_size,
            fit=config.frame_fit,
            passes=config.frame_hand_passes,
            seed=config.seed,
            desc=desc,
            view=view,
        )
    ]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as out:
        pickle.dump(frames, out)
    return frames


THRESHOLD_PRECISION: Final = 0.95
"""The precision each label's threshold is set to reach on the validation crops."""
THRESHOLD_FLOOR: Final = 0.5
THRESHOLD_GRID: Final = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))


def calibrate_thresholds(
    probabilities: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    labels: Sequence[str],
) -> dict[str, float]:
    """Per gesture, the lowest score at which the model's calls of it on the
    validation crops (``none`` and out-of-vocabulary hands included) are right at
    least ``THRESHOLD_PRECISION`` of the time; never below ``THRESHOLD_FLOOR``."""
    gesture = np.array([label != NONE_LABEL for label in labels])
    masked = np.where(gesture[None, :], probabilities, -1.0)
    called = masked.argmax(axis=1)
    score = masked.max(axis=1)
    thresholds: dict[str, float] = {}
    for index, label in enumerate(labels):
        if not gesture[index]:
            continue
        chosen = THRESHOLD_GRID[-1]
        for threshold in THRESHOLD_GRID:
            calls = (called == index) & (score >= threshold)
            if calls.sum() and (truth[calls] == index).mean() >= THRESHOLD_PRECISION:
                chosen = threshold
                break
        thresholds[label] = max(chosen, THRESHOLD_FLOOR)
    return thresholds


BOX_SCALES: Final = tuple(round(1.0 + 0.05 * i, 2) for i in range(17))


def calibrate_box_scale(
    model: Any,
    annotations: Sequence[Annotation],
    input_size: tuple[int, int],
    fit: FrameFit = "stretch",
) -> float:
    """The growth of the landmarks' bounds that finds the most annotated hands at
    IoU >= 0.5 on ``annotations`` (training people only): LabelImg boxes take in the
    wrist and the skin around the joints, landmarks do not. ``model`` must have
    ``box_scale`` 1; frames go in as the worker fits them (``fit``)."""
    import tensorflow as tf

    hands = tf.function(model.hands)
    found = np.zeros(len(BOX_SCALES))
    for annotation in tqdm(annotations, desc="box scale", unit="frame"):
        frame, placement = load_placed(annotation.image_path, input_size, fit=fit)
        boxes, _, valid = hands(tf.constant(frame[None]))
        predicted = boxes[0, : int(valid[0])].numpy()
        if not len(predicted):
            continue
        centre = (predicted[:, :2] + predicted[:, 2:]) / 2
        half = (predicted[:, 2:] - predicted[:, :2]) / 2
        # Compared on the input, where the model draws its boxes: IoU is the same on
        # the frame, once a grown box is cut to the frame as the worker cuts it.
        truth = [
            placement.to_input((b.ymin / annotation.height, b.xmin / annotation.width,
                                b.ymax / annotation.height, b.xmax / annotation.width))
            for b in annotation.boxes
        ]  # fmt: skip
        low, high = np.array(placement.bounds[:2] * 2), np.array(placement.bounds[2:] * 2)
        for i, scale in enumerate(BOX_SCALES):
            grown = np.concatenate([centre - half * scale, centre + half * scale], 1)
            grown = np.clip(grown, low, high)
            found[i] += sum(iou(box, grown).max() >= 0.5 for box in truth)
    return BOX_SCALES[int(found.argmax())]


def provenance(data_root: Path, splits: DataSplits, config: TrainConfig) -> dict[str, Any]:
    """What ``model.json`` records about how the model was made."""
    return {
        "name": config.name,
        "version": config.version,
        "description": "Two-stage hand-gesture detector: MediaPipe's palm detector, rotated "
        "hand regions and hand landmarks (box and presence from the landmarks) + a gesture "
        "head trained on hand-landmark features.",
        "train_config": json.loads(json.dumps(asdict(config))),
        "data": {
            "calibration_images": len(splits.calibration),
            "crops_validation": len(splits.crops_validation),
            "signs_held_out_people": sorted({a.group for a in splits.signs.test}),
            "crops_train": len(splits.crops.train),
            "crops_test": len(splits.crops.test),
            "crops_split": {"seed": config.seed, "test_fraction": config.crops_test_fraction},
        },
        "base_models": base_models_record(_base_models(config)),
    }


def _base_models(config: TrainConfig) -> tuple[BaseModel, ...]:
    from models.networks.face_tracking import face_base_models  # TensorFlow: only when training

    return (*HAND_MODELS, *(face_base_models() if config.faces else ()))


def base_models_record(models: Sequence[BaseModel]) -> dict[str, Any]:
    """What ``model.json`` says of the pretrained networks inside the model: each
    file's SHA-256, and where each came from under which licence."""
    return {
        "source": "; ".join(
            dict.fromkeys(f"{m.wheel.requirement} wheel from PyPI" for m in models)
        ),
        "licence": "; ".join(dict.fromkeys(m.licence for m in models)),
        "files": {m.file_name: m.sha256 for m in models},
        "sources": {m.file_name: {"from": m.source, "licence": m.licence} for m in models},
    }
