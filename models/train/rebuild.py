"""``memelearning rebuild``: a trained model's head served by this version's graph.

The gesture head is the only trained part of the model; stage one, the face stage and
the way they are joined are stock networks and code. When that code changes (a face
stage joined beside the hands, a cheaper crop) the head does not need to be trained
again: its weights are read from an exported model and served by the new graph, with
the figures training measured for it (thresholds, people scored unseen) carried over
in ``model.json``, and where it came from recorded under ``rebuilt_from``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from models.evaluate.model_card import write_model_card
from models.networks.base_models import HAND_MODELS, base_model_paths
from models.train.training import base_models_record

if TYPE_CHECKING:
    from models.networks.gesture_classifier import GestureHead
    from models.serving.gesture_model import ModelConfig

HEAD_VARIABLES: Final = ("mean", "scale", "w1", "b1", "w2", "b2")
"""The gesture head's weights, by attribute name (:class:`GestureHead`)."""
_REBUILT_KEYS: Final = frozenset(
    {"input_size", "config", "head_labels", "face_labels", "faces", "base_models"}
)
"""``model.json`` keys the export writes afresh from the rebuilt model."""


class RebuildError(Exception):
    """The source is not an exported gesture model whose head can be read."""


def _source_meta(source: Path) -> dict[str, Any]:
    path = source / "model.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RebuildError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(meta, dict) or not {"head_labels", "config"} <= meta.keys():
        raise RebuildError(f"{path}: no head_labels/config: not a gesture model")
    return meta


def read_trained(source: Path) -> tuple[GestureHead, dict[str, Any], ModelConfig]:
    """The trained gesture head of the exported model at ``source`` (weights copied into
    a new :class:`GestureHead`), its ``model.json`` and its serving settings as a
    :class:`ModelConfig` (settings this version does not know are dropped)."""
    import tensorflow as tf

    from models.networks.gesture_classifier import GestureHead
    from models.serving.gesture_model import ModelConfig

    meta = _source_meta(source)
    if not (source / "saved_model.pb").is_file():
        raise RebuildError(f"{source}: no saved_model.pb")
    loaded = tf.saved_model.load(str(source))
    trained = getattr(loaded, "head", None)
    if trained is None or not all(hasattr(trained, n) for n in HEAD_VARIABLES):
        raise RebuildError(f"{source}: the SavedModel has no gesture head to read")
    dimension, hidden = (int(d) for d in trained.w1.shape)
    head = GestureHead(meta["head_labels"], dimension, hidden=hidden)
    for name in HEAD_VARIABLES:
        getattr(head, name).assign(getattr(trained, name))
    known = {f.name for f in fields(ModelConfig)}
    settings = {k: v for k, v in meta["config"].items() if k in known}
    settings["input_size"] = tuple(settings["input_size"])
    return head, meta, ModelConfig(**settings)


def rebuild(
    source: Path,
    out: Path,
    *,
    version: str,
    faces: bool = True,
    base_cache: Path | None = None,
    tflite_landmarks: str | None = None,
    data_root: Path | None = None,
) -> Path:
    """Export ``source``'s trained head with this version's stage one (and face stage
    when ``faces``) to ``out`` as model ``version``; returns ``out``. The TFLite
    export's landmark networks are as in the source unless ``tflite_landmarks`` says
    otherwise; int8 ones are calibrated on ``data_root``'s ``hands/train``."""
    from models.networks.face_tracking import FaceStage, face_base_models
    from models.serving.gesture_model import GestureModel, export, int8_networks
    from models.train.landmark_calibration import calibration_frames, landmark_calibration

    head, meta, config = read_trained(source)
    if tflite_landmarks is not None:
        config = replace(config, tflite_landmarks=tflite_landmarks)
    try:
        int8 = bool(int8_networks(config))
    except ValueError as exc:
        raise RebuildError(f"{source / 'model.json'}: {exc}") from exc
    if int8 and data_root is None:
        raise RebuildError(
            "int8 landmark networks are calibrated on hands/train: give the data folder"
        )
    wanted = (*HAND_MODELS, *(face_base_models() if faces else ()))
    paths = base_model_paths(base_cache, models=wanted)
    model = GestureModel.from_base_models(
        paths, head, config, FaceStage.from_base_models(paths) if faces else None
    )
    carried = {k: v for k, v in meta.items() if k not in _REBUILT_KEYS}
    carried["version"] = version
    carried["base_models"] = base_models_record(wanted)
    carried["rebuilt_from"] = {
        "name": meta.get("name"),
        "version": meta.get("version"),
        "saved_model_sha256": hashlib.sha256((source / "saved_model.pb").read_bytes()).hexdigest(),
        "head": "trained weights read unchanged; their figures (thresholds, people_unseen) "
        "are the source's",
    }
    calibration = None
    if int8:
        assert data_root is not None
        try:
            calibration = landmark_calibration(model, calibration_frames(data_root))
        except ValueError as exc:
            raise RebuildError(str(exc)) from exc
    export(model, out, carried, calibration=calibration)
    write_model_card(out, json.loads((out / "model.json").read_text(encoding="utf-8")), None)
    return out
