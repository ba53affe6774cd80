"""Object detection with any SavedModel that follows the TensorFlow Object Detection
API serving contract.

The contract: signature ``serving_default`` taking ``input_tensor`` (uint8
``[N, H, W, 3]``) and returning ``detection_boxes`` (float32 ``[N, K, 4]``, normalized
``ymin, xmin, ymax, xmax``), ``detection_classes`` (``[N, K]``, 1-based class ids),
``detection_scores`` (``[N, K]``) and ``num_detections`` (``[N]``); any other outputs
are ignored. A ``label_map.pbtxt`` next to ``saved_model.pb`` names the classes, and an
optional ``model.json`` gives ``name``, ``version`` and ``input_size`` ``[h, w]``.

Stock TF2 zoo exports take a fixed batch of one frame; the detector feeds those frame
by frame, and models with any other fixed batch size in padded chunks.

The checks, thresholds, label lookup and output conversion live in
:class:`ContractDetector`, shared with the LiteRT runtime (:mod:`worker.litert`), so
both runtimes report the same detections for the same outputs.

TensorFlow is imported in :meth:`Detector.load`, not at import time, so that
:class:`Detection` can be used by code that never runs a model and so that thread
settings can be applied before TensorFlow starts its runtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from publisher.protocol import ID_PATTERN
from worker.decode import FRAME_FITS, FrameFit
from worker.labelmap import LabelMap, LabelMapError, load_label_map

logger = logging.getLogger(__name__)

SIGNATURE: Final = "serving_default"
INPUT: Final = "input_tensor"
BOXES: Final = "detection_boxes"
CLASSES: Final = "detection_classes"
SCORES: Final = "detection_scores"
NUM_DETECTIONS: Final = "num_detections"
# Output name → expected rank.
OUTPUT_RANKS: Final = {BOXES: 3, CLASSES: 2, SCORES: 2, NUM_DETECTIONS: 1}

SAVED_MODEL_FILE: Final = "saved_model.pb"
LABEL_MAP_FILE: Final = "label_map.pbtxt"
METADATA_FILE: Final = "model.json"
# Same limits as ModelRef in the reaction events, so any loaded model can be named there.
_MAX_NAME: Final = 128
_MAX_VERSION: Final = 64

Box = tuple[float, float, float, float]


class ModelError(Exception):
    """A model directory that cannot be served as it is, or a model that broke the
    serving contract at run time; the message says what is wrong and where.
    ``setting`` names the worker setting to fix when it is not the model directory
    (``thresholds``, ``ignore_labels``)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found in one image."""

    label: str
    class_id: int
    score: float
    # (ymin, xmin, ymax, xmax), normalized, clipped to [0, 1], min <= max.
    box: Box


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str | None = None
    version: str | None = None
    input_size: tuple[int, int] | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Per-label thresholds the model ships (calibrated when it was trained); the
    worker's own per-label settings override them, and they override its default."""
    frame_fit: FrameFit = "stretch"
    """How a frame of another shape than the input goes in (:mod:`worker.decode`):
    stretched (the default, as every model without the field was built) or
    letterboxed."""


class ContractDetector:
    """What every runtime shares: model identity, thresholds, input checks, chunking
    into the model's fixed batch and the conversion of contract outputs into
    :class:`Detection` lists. A runtime implements :meth:`_run` (one model call on a
    batch of exactly the model's size, or any size when dynamic)."""

    runtime: str = "unknown"
    """Which runtime runs the model ("tensorflow", "litert"); logged and exported."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        labels: LabelMap,
        input_size: tuple[int, int],
        static_size: bool,
        max_batch: int | None,
        thresholds: Mapping[str, float],
        frame_fit: FrameFit = "stretch",
    ) -> None:
        self._name = name
        self._frame_fit: FrameFit = frame_fit
        self._version = version
        self._labels = labels
        self._input_size = input_size
        self._static_size = static_size
        self._max_batch = max_batch
        self._thresholds = dict(thresholds)
        # Lookup tables indexed by class id, so outputs convert without Python loops.
        table_size = max(labels) + 1
        self._known = np.zeros(table_size, dtype=bool)
        self._known[list(labels)] = True
        # +inf: ignored labels (and unused ids) never pass.
        self._threshold_by_id = np.full(table_size, np.inf, dtype=np.float32)
        for label, threshold in self._thresholds.items():
            self._threshold_by_id[labels.id_of(label)] = threshold
        self._names: list[str] = [labels.get(i, "") for i in range(table_size)]
        self.unknown_class_detections = 0
        """Detections dropped because their class id is not in the label map (a model
        and label map that do not match); counted since load, never an error."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def labels(self) -> LabelMap:
        """Every label of the model (including ignored ones), by class id."""
        return self._labels

    @property
    def thresholds(self) -> Mapping[str, float]:
        """Minimum score per reported label; ignored labels are absent."""
        return dict(self._thresholds)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) to resize frames to before :meth:`detect`."""
        return self._input_size

    @property
    def frame_fit(self) -> FrameFit:
        """How frames of another shape than :attr:`input_size` are fitted into it
        (``model.json``'s ``frame_fit``); the caller maps boxes back (``Placement``)."""
        return self._frame_fit

    @property
    def max_batch(self) -> int | None:
        """The model's fixed batch size (1 for stock zoo exports), or None if dynamic.
        :meth:`detect` takes any number of frames either way."""
        return self._max_batch

    def detect(self, images: npt.NDArray[np.uint8]) -> list[list[Detection]]:
        """Detections for each image of a uint8 ``[N, H, W, 3]`` batch, each list
        sorted by score, highest first (blocking)."""
        self._check_images(images)
        count = images.shape[0]
        if count == 0:
            return []
        step = self._max_batch
        if step is None or step == count:
            outputs = self._run(images)
        else:
            chunks = [self._run_chunk(images[i : i + step], step) for i in range(0, count, step)]
            outputs = {key: np.concatenate([c[key] for c in chunks]) for key in OUTPUT_RANKS}
        return self._convert(outputs, count)

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Run zero frames through the model at each batch size (blocking).

        In TensorFlow, the loaded ``serving_default`` is a ConcreteFunction: it never
        retraces, and one graph serves every batch size of a dynamic model. The first
        call still pays for graph optimisation (Grappler), and the first call at each
        new input shape for kernel set-up (oneDNN primitives are cached per shape) and
        memory allocation: measured at 3-4x a steady call for the colour plumbing model
        at 320x320. So warm every batch size the consumer will send; for a model with
        a fixed batch every call has the same shape, and one run is enough. In LiteRT
        the first call sets up XNNPACK's packed weights (a fixed batch of one: one run).
        """
        sizes = sorted(set(batch_sizes))
        if any(size < 1 for size in sizes):
            raise ValueError(f"batch sizes must be >= 1, got {sizes}")
        if self._max_batch is not None and sizes:
            sizes = [self._max_batch]
        height, width = self._input_size
        for size in sizes:
            self.detect(np.zeros((size, height, width, 3), dtype=np.uint8))
        logger.debug("warmed up %s at batch sizes %s", self._name, sizes)

    def _check_images(self, images: Any) -> None:
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must have shape [N, H, W, 3], got {list(images.shape)}")
        if self._static_size and images.shape[1:3] != self._input_size:
            raise ValueError(
                f"this model takes {self._input_size[0]}x{self._input_size[1]} images, "
                f"got {images.shape[1]}x{images.shape[2]}"
            )

    def _run_chunk(self, chunk: npt.NDArray[np.uint8], size: int) -> dict[str, npt.NDArray[Any]]:
        real = chunk.shape[0]
        if real < size:
            padded = np.zeros((size, *chunk.shape[1:]), dtype=np.uint8)
            padded[:real] = chunk
            return {key: value[:real] for key, value in self._run(padded).items()}
        return self._run(chunk)

    def _run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
        """One model call: the contract's outputs for ``images``."""
        raise NotImplementedError

    def _check_shapes(self, outputs: Mapping[str, npt.NDArray[Any]], count: int) -> None:
        scores = outputs[SCORES]
        if (
            scores.ndim != 2
            or scores.shape[0] != count
            or outputs[CLASSES].shape != scores.shape
            or outputs[BOXES].shape != (*scores.shape, 4)
            or outputs[NUM_DETECTIONS].shape != (count,)
        ):
            shapes = {key: list(value.shape) for key, value in outputs.items()}
            raise ModelError(f"model {self._name} returned outputs of the wrong shape: {shapes}")

    def _convert(
        self, outputs: Mapping[str, npt.NDArray[Any]], count: int
    ) -> list[list[Detection]]:
        scores = outputs[SCORES].astype(np.float32, copy=False)
        raw_classes = outputs[CLASSES]
        slots = scores.shape[1]
        valid = np.arange(slots) < outputs[NUM_DETECTIONS][:, np.newaxis]

        table_size = self._known.shape[0]
        with np.errstate(invalid="ignore"):
            rounded = np.rint(raw_classes)
            in_range = (rounded >= 1) & (rounded < table_size)  # False for NaN
        ids = np.where(in_range, rounded, 0).astype(np.intp)
        known = self._known[ids] & in_range
        unknown = int(np.count_nonzero(valid & ~known))
        if unknown:
            self.unknown_class_detections += unknown
            logger.debug("skipped %d detections with class ids not in the label map", unknown)
        # NaN scores fail the comparison, so they are dropped too.
        keep = valid & known & (scores >= self._threshold_by_id[ids])

        ranked = np.where(keep, scores, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")
        kept = np.count_nonzero(keep, axis=1)

        boxes = np.nan_to_num(outputs[BOXES].astype(np.float32, copy=False), nan=0.0)
        np.clip(boxes, 0.0, 1.0, out=boxes)
        low = np.minimum(boxes[..., :2], boxes[..., 2:])
        high = np.maximum(boxes[..., :2], boxes[..., 2:])
        boxes = np.concatenate([low, high], axis=-1)

        results: list[list[Detection]] = []
        for image in range(count):
            picks = order[image, : kept[image]]
            results.append(
                [
                    Detection(self._names[i], i, s, (b[0], b[1], b[2], b[3]))
                    for i, s, b in zip(
                        ids[image, picks].tolist(),
                        scores[image, picks].tolist(),
                        boxes[image, picks].tolist(),
                        strict=True,
                    )
                ]
            )
        return results


class Detector(ContractDetector):
    """A SavedModel run by TensorFlow. Build it with :meth:`load`; :meth:`detect` and
    :meth:`warm_up` block, so async callers run them in an executor."""

    runtime = "tensorflow"

    def __init__(
        self,
        *,
        root: Any,
        function: Any,
        tf: Any,
        name: str,
        version: str,
        labels: LabelMap,
        input_size: tuple[int, int],
        static_size: bool,
        max_batch: int | None,
        thresholds: Mapping[str, float],
        frame_fit: FrameFit = "stretch",
    ) -> None:
        """Internal: use :meth:`load`."""
        super().__init__(
            name=name,
            version=version,
            labels=labels,
            input_size=input_size,
            static_size=static_size,
            max_batch=max_batch,
            thresholds=thresholds,
            frame_fit=frame_fit,
        )
        # The loaded root owns the variables the signature reads; keep it alive.
        self._root = root
        self._function = function
        self._tf = tf

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        default_threshold: float = 0.5,
        thresholds: Mapping[str, float] = {},
        ignore_labels: Collection[str] = (),
        default_input_size: tuple[int, int] = (320, 320),
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> Detector:
        """Validate ``model_dir`` and load the model in it (blocking; seconds).

        ``thresholds`` overrides ``default_threshold`` (minimum score, inclusive) per
        label; ``ignore_labels`` are never reported. Labels in either that the label
        map does not have are a ``ModelError``: a typo would otherwise silently
        change what is reported. ``default_input_size`` (H, W) applies when neither
        the signature nor ``model.json`` fixes the size. The thread settings only
        take effect if TensorFlow's runtime has not started yet in this process.
        """
        model_dir = Path(model_dir)
        labels, metadata, per_label = read_model_dir(
            model_dir,
            SAVED_MODEL_FILE,
            "not a SavedModel directory",
            default_threshold=default_threshold,
            thresholds=thresholds,
            ignore_labels=ignore_labels,
        )

        import tensorflow as tf

        _configure_threads(tf, intra_op_threads, inter_op_threads)
        try:
            root = tf.saved_model.load(str(model_dir))
        except Exception as exc:  # TF raises many unrelated types for a bad model
            raise ModelError(f"{model_dir}: cannot load SavedModel: {exc}") from exc
        function = _serving_function(root, model_dir)
        spec = _input_spec(tf, function, model_dir)
        _check_outputs(function, model_dir)

        batch, height, width = (spec.shape[0], spec.shape[1], spec.shape[2])
        static_size = height is not None and width is not None
        if static_size:
            input_size = (int(height), int(width))
            if metadata.input_size is not None and metadata.input_size != input_size:
                raise ModelError(
                    f"{model_dir / METADATA_FILE}: input_size {list(metadata.input_size)} "
                    f"contradicts the signature's fixed size {list(input_size)}"
                )
        else:
            input_size = metadata.input_size or default_input_size
        detector = cls(
            root=root,
            function=function,
            tf=tf,
            name=metadata.name or model_dir.resolve().name,
            version=metadata.version
            or content_hash(
                model_dir / SAVED_MODEL_FILE, model_dir / "variables" / "variables.index"
            ),
            labels=labels,
            input_size=input_size,
            static_size=static_size,
            max_batch=None if batch is None else int(batch),
            thresholds=per_label,
            frame_fit=metadata.frame_fit,
        )
        logger.info(
            "loaded model %s version %s from %s: input %dx%d (%s), batch %s, labels %s",
            detector.name,
            detector.version,
            model_dir,
            input_size[0],
            input_size[1],
            detector.frame_fit,
            "dynamic" if detector.max_batch is None else f"fixed {detector.max_batch}",
            ", ".join(f"{n}>={t:g}" for n, t in per_label.items()) or "none reported",
        )
        return detector

    def _run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
        # Calling the concrete function directly skips tf.function's argument
        # matching; tf.constant hands the array to TF without another conversion.
        result = self._function(**{INPUT: self._tf.constant(images)})
        outputs = {key: result[key].numpy() for key in OUTPUT_RANKS}
        self._check_shapes(outputs, images.shape[0])
        return outputs


def read_model_dir(
    model_dir: Path,
    model_file: str,
    missing_model: str,
    *,
    default_threshold: float,
    thresholds: Mapping[str, float],
    ignore_labels: Collection[str],
) -> tuple[LabelMap, ModelMetadata, dict[str, float]]:
    """Check that ``model_dir`` holds ``model_file`` and a label map, and read the
    label map, ``model.json`` and the per-label thresholds (shared by the runtimes)."""
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory does not exist")
    if not (model_dir / model_file).is_file():
        raise ModelError(f"{model_dir}: no {model_file} ({missing_model})")
    label_map_path = model_dir / LABEL_MAP_FILE
    if not label_map_path.is_file():
        raise ModelError(f"{model_dir}: no {LABEL_MAP_FILE} next to {model_file}")
    try:
        labels = load_label_map(label_map_path)
    except LabelMapError as exc:
        raise ModelError(str(exc)) from exc
    metadata = _read_metadata(model_dir / METADATA_FILE)
    shipped = {name: value for name, value in metadata.thresholds.items() if name in labels.names}
    per_label = _resolve_thresholds(
        labels, default_threshold, {**shipped, **thresholds}, ignore_labels, label_map_path
    )
    return labels, metadata, per_label


def _resolve_thresholds(
    labels: LabelMap,
    default: float,
    overrides: Mapping[str, float],
    ignored: Collection[str],
    label_map_path: Path,
) -> dict[str, float]:
    known = set(labels.names)
    for what, names in (("thresholds", overrides.keys()), ("ignore_labels", ignored)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ModelError(
                f"{what} name labels the model does not have: {', '.join(unknown)} "
                f"(labels in {label_map_path}: {', '.join(labels.names)})",
                setting=what,
            )
    for label, value in {"default threshold": default, **overrides}.items():
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ModelError(f"threshold for {label} must be in [0, 1], got {value}")
    reported = {name: overrides.get(name, default) for name in labels.names if name not in ignored}
    # Reported labels end up in event routing keys, so they must be safe there.
    bad = [name for name in reported if not ID_PATTERN.fullmatch(name)]
    if bad:
        raise ModelError(
            f"{label_map_path}: label names must match {ID_PATTERN.pattern} to be "
            f"reported (or be listed in ignore_labels): {', '.join(map(repr, bad))}"
        )
    return reported


def _read_metadata(path: Path) -> ModelMetadata:
    if not path.exists():
        return ModelMetadata()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model metadata: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: must hold a JSON object")
    name = data.get("name")
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= _MAX_NAME):
        raise ModelError(f"{path}: name must be a string of 1 to {_MAX_NAME} characters")
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if version is not None and not (isinstance(version, str) and 0 < len(version) <= _MAX_VERSION):
        raise ModelError(f"{path}: version must be a string of 1 to {_MAX_VERSION} characters")
    size = data.get("input_size")
    input_size: tuple[int, int] | None = None
    if size is not None:
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ModelError(f"{path}: input_size must be [height, width] in pixels, got {size}")
        input_size = (size[0], size[1])
    shipped = data.get("thresholds", {})
    if not (
        isinstance(shipped, dict)
        and all(
            isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and 0.0 <= v <= 1.0
            for k, v in shipped.items()
        )
    ):
        raise ModelError(f"{path}: thresholds must map label names to scores in [0, 1]")
    fit = data.get("frame_fit", "stretch")
    if fit not in FRAME_FITS:
        raise ModelError(f"{path}: frame_fit must be one of {', '.join(FRAME_FITS)}, got {fit!r}")
    return ModelMetadata(
        name=name,
        version=version,
        input_size=input_size,
        thresholds={k: float(v) for k, v in shipped.items()},
        frame_fit=fit,
    )


def content_hash(*paths: Path) -> str:
    """A short version for models without model.json. For a SavedModel, hash the
    variables index too: it holds a checksum of every weight, so retrained weights
    change the version even when the graph (saved_model.pb) stays the same."""
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _configure_threads(tf: Any, intra: int | None, inter: int | None) -> None:
    for value, setter, what in (
        (intra, tf.config.threading.set_intra_op_parallelism_threads, "intra-op"),
        (inter, tf.config.threading.set_inter_op_parallelism_threads, "inter-op"),
    ):
        if value is None:
            continue
        if value < 1:
            raise ValueError(f"{what} threads must be >= 1, got {value}")
        try:
            setter(value)
        except RuntimeError:
            # TensorFlow fixes its thread pools when its runtime starts; a setter
            # called afterwards (with a different value) raises. Serving with the
            # existing pools is better than not serving.
            logger.warning(
                "TensorFlow is already initialised in this process; %s threads stay "
                "at their current setting instead of %d",
                what,
                value,
            )


def _serving_function(root: Any, model_dir: Path) -> Any:
    signatures = getattr(root, "signatures", {})
    if SIGNATURE not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise ModelError(f"{model_dir}: no {SIGNATURE!r} signature (found: {found})")
    return signatures[SIGNATURE]


def _input_spec(tf: Any, function: Any, model_dir: Path) -> Any:
    args, kwargs = function.structured_input_signature
    inputs = {**kwargs, **{getattr(a, "name", str(i)): a for i, a in enumerate(args)}}
    if set(inputs) != {INPUT}:
        raise ModelError(
            f"{model_dir}: signature {SIGNATURE!r} must take exactly one input "
            f"{INPUT!r}, takes {', '.join(sorted(inputs)) or 'none'}"
        )
    spec = inputs[INPUT]
    if spec.dtype != tf.uint8:
        raise ModelError(f"{model_dir}: input {INPUT!r} must be uint8, is {spec.dtype.name}")
    shape = spec.shape
    if shape.rank != 4:
        raise ModelError(f"{model_dir}: input {INPUT!r} must be [N, H, W, 3], is {shape}")
    if shape[3] not in (3, None):
        raise ModelError(f"{model_dir}: input {INPUT!r} must have 3 channels, is {shape}")
    if shape[0] is not None and shape[0] < 1:
        raise ModelError(f"{model_dir}: input {INPUT!r} has batch size {shape[0]}")
    return spec


def _check_outputs(function: Any, model_dir: Path) -> None:
    outputs = function.structured_outputs
    missing = [key for key in OUTPUT_RANKS if key not in outputs]
    if missing:
        raise ModelError(
            f"{model_dir}: signature {SIGNATURE!r} lacks outputs {', '.join(missing)} "
            f"(has {', '.join(sorted(outputs))})"
        )
    for key, rank in OUTPUT_RANKS.items():
        spec = outputs[key]
        if spec.shape.rank not in (None, rank):
            raise ModelError(f"{model_dir}: output {key!r} must have rank {rank}, is {spec.shape}")
        if not (spec.dtype.is_floating or spec.dtype.is_integer):
            raise ModelError(f"{model_dir}: output {key!r} must be numeric, is {spec.dtype.name}")
