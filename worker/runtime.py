"""Which runtime serves the model, chosen from the settings and the model directory."""

from __future__ import annotations

import logging
from pathlib import Path

from memelearning.settings import SettingsError
from worker.detector import ContractDetector, ModelError
from worker.litert import TFLITE_FILE, litert_available
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def choose_runtime(settings: WorkerSettings, model_dir: Path | None = None) -> str:
    """``settings.runtime``, with "auto" resolved: LiteRT when the model (default:
    ``settings.model_dir``) has a TFLite export and ``ai_edge_litert`` imports,
    TensorFlow otherwise."""
    if settings.runtime != "auto":
        return settings.runtime
    folder = settings.model_dir if model_dir is None else model_dir
    if (folder / TFLITE_FILE).is_file() and litert_available():
        return "litert"
    return "tensorflow"


def load_detector(settings: WorkerSettings, model_dir: Path | None = None) -> ContractDetector:
    """Load the model in ``model_dir`` (default: ``settings.model_dir``) with the runtime
    :func:`choose_runtime` picks (blocking). A model that cannot be served with these
    settings raises :class:`SettingsError` naming the variable to fix
    (``MEMELEARNING_WORKER_MODEL_DIR``, ``…_THRESHOLDS``, …)."""
    try:
        return load_model(settings, settings.model_dir if model_dir is None else model_dir)
    except ModelError as exc:
        variable = settings.variable(exc.setting or "model_dir")
        raise SettingsError(f"{variable}: {exc}") from None


def load_model(settings: WorkerSettings, model_dir: Path) -> ContractDetector:
    """:func:`load_detector` for a model swapped in while running: raises
    :class:`ModelError`, which the swap reports as its reason to refuse the model."""
    s = settings
    runtime = choose_runtime(s, model_dir)
    log.info("runtime %s (MEMELEARNING_WORKER_RUNTIME=%s)", runtime, s.runtime)
    if runtime == "litert":
        from worker.litert import LiteRtDetector

        return LiteRtDetector.load(
            model_dir,
            default_threshold=s.score_threshold,
            thresholds=s.thresholds,
            ignore_labels=s.ignore_labels,
            threads=s.litert_threads or None,
        )
    from worker.detector import Detector  # TensorFlow is imported only here.

    return Detector.load(
        model_dir,
        default_threshold=s.score_threshold,
        thresholds=s.thresholds,
        ignore_labels=s.ignore_labels,
        default_input_size=s.input_size,
        intra_op_threads=s.intra_op_threads or None,
        inter_op_threads=s.inter_op_threads or None,
    )
