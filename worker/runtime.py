"""Which runtime serves the model, chosen from the settings and the model directory."""

from __future__ import annotations

import logging

from memelearning.settings import SettingsError
from worker.detector import ContractDetector, ModelError
from worker.litert import TFLITE_FILE, litert_available
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def choose_runtime(settings: WorkerSettings) -> str:
    """``settings.runtime``, with "auto" resolved: LiteRT when the model has a TFLite
    export and ``ai_edge_litert`` imports, TensorFlow otherwise."""
    if settings.runtime != "auto":
        return settings.runtime
    if (settings.model_dir / TFLITE_FILE).is_file() and litert_available():
        return "litert"
    return "tensorflow"


def load_detector(settings: WorkerSettings) -> ContractDetector:
    """Load the model with the runtime :func:`choose_runtime` picks (blocking). A model
    that cannot be served with these settings raises :class:`SettingsError` naming the
    variable to fix (``MEMELEARNING_WORKER_MODEL_DIR``, ``…_THRESHOLDS``, …)."""
    try:
        return _load(settings)
    except ModelError as exc:
        variable = settings.variable(exc.setting or "model_dir")
        raise SettingsError(f"{variable}: {exc}") from None


def _load(settings: WorkerSettings) -> ContractDetector:
    s = settings
    runtime = choose_runtime(s)
    log.info("runtime %s (MEMELEARNING_WORKER_RUNTIME=%s)", runtime, s.runtime)
    if runtime == "litert":
        from worker.litert import LiteRtDetector

        return LiteRtDetector.load(
            s.model_dir,
            default_threshold=s.score_threshold,
            thresholds=s.thresholds,
            ignore_labels=s.ignore_labels,
            threads=s.litert_threads or None,
        )
    from worker.detector import Detector  # TensorFlow is imported only here.

    return Detector.load(
        s.model_dir,
        default_threshold=s.score_threshold,
        thresholds=s.thresholds,
        ignore_labels=s.ignore_labels,
        default_input_size=s.input_size,
        intra_op_threads=s.intra_op_threads or None,
        inter_op_threads=s.inter_op_threads or None,
    )
