"""The LiteRT runtime: the model's ``model.tflite`` run by ``ai-edge-litert`` with
XNNPACK, the worker's CPU default when the export has one.

On a 2-core CPU a MobileNet-class detector runs 2-3x faster in LiteRT than the
SavedModel in TensorFlow, and a LiteRT-only worker needs a tenth of TensorFlow's disk
and memory. The SavedModel stays the reference (and the GPU path).

The TFLite contract, followed by ``models.serving.contract_model`` and the trained model's
export: ``model.tflite`` next to ``saved_model.pb`` and ``label_map.pbtxt``; signature
``serving_default`` with one uint8 input ``[1, H, W, 3]`` (a fixed size; a dynamic
batch ``[-1, H, W, 3]`` is allowed too) and the outputs ``detection_boxes`` [1, N, 4]
(normalized ymin, xmin, ymax, xmax), ``detection_classes`` [1, N] (1-based label-map
ids), ``detection_scores`` [1, N] and ``num_detections`` [1]. Outputs are read by name
through the signature runner: the order of a flatbuffer's output tensors is not part
of any contract.

Checks, thresholds and the conversion into detections are
:class:`worker.detector.ContractDetector`'s, the same code as the TensorFlow runtime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from worker.decode import FrameFit
from worker.detector import (
    METADATA_FILE,
    OUTPUT_RANKS,
    SIGNATURE,
    ContractDetector,
    ModelError,
    content_hash,
    read_model_dir,
)
from worker.labelmap import LabelMap

logger = logging.getLogger(__name__)

TFLITE_FILE: Final = "model.tflite"


def litert_available() -> bool:
    """Whether ``ai_edge_litert`` can be imported (the ``litert`` extra)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def default_threads() -> int:
    """One thread per core this process may run on."""
    return len(os.sched_getaffinity(0))


class LiteRtDetector(ContractDetector):
    """A ``model.tflite`` run by LiteRT. Build it with :meth:`load`. Not thread-safe:
    the worker calls it from its one model thread."""

    runtime = "litert"

    def __init__(
        self,
        *,
        interpreter: Any,
        runner: Any,
        input_name: str,
        threads: int,
        name: str,
        version: str,
        labels: LabelMap,
        input_size: tuple[int, int],
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
            static_size=True,
            max_batch=max_batch,
            thresholds=thresholds,
            frame_fit=frame_fit,
        )
        # The runner borrows the interpreter's tensors; keep the interpreter alive.
        self._interpreter = interpreter
        self._runner = runner
        self._input_name = input_name
        self.threads = threads

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        default_threshold: float = 0.5,
        thresholds: Mapping[str, float] = {},
        ignore_labels: Collection[str] = (),
        threads: int | None = None,
    ) -> LiteRtDetector:
        """Validate ``model_dir`` and load its ``model.tflite`` (blocking).

        Thresholds and ignored labels work as in :meth:`worker.detector.Detector.load`.
        ``threads`` are LiteRT's (XNNPACK's) threads inside one call; None: one per
        usable core.
        """
        model_dir = Path(model_dir)
        labels, metadata, per_label = read_model_dir(
            model_dir,
            TFLITE_FILE,
            "no TFLite export to run with LiteRT",
            default_threshold=default_threshold,
            thresholds=thresholds,
            ignore_labels=ignore_labels,
        )
        threads = default_threads() if threads is None else threads
        if threads < 1:
            raise ValueError(f"LiteRT threads must be >= 1, got {threads}")
        path = model_dir / TFLITE_FILE
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as exc:
            raise ModelError(
                f"{path}: LiteRT is not installed (pip install 'memelearning[litert]')"
            ) from exc
        try:
            # AUTO applies the default delegate, XNNPACK, to every op it supports.
            interpreter = Interpreter(
                model_path=str(path),
                num_threads=threads,
                experimental_op_resolver_type=OpResolverType.AUTO,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load the TFLite model: {exc}") from exc
        input_name, batch, input_size = _check_signature(interpreter, path)
        if metadata.input_size is not None and metadata.input_size != input_size:
            raise ModelError(
                f"{model_dir / METADATA_FILE}: input_size {list(metadata.input_size)} "
                f"contradicts {TFLITE_FILE}'s fixed size {list(input_size)}"
            )
        detector = cls(
            interpreter=interpreter,
            runner=interpreter.get_signature_runner(SIGNATURE),
            input_name=input_name,
            threads=threads,
            name=metadata.name or model_dir.resolve().name,
            version=metadata.version or content_hash(path),
            labels=labels,
            input_size=input_size,
            max_batch=batch,
            thresholds=per_label,
            frame_fit=metadata.frame_fit,
        )
        logger.info(
            "loaded model %s version %s from %s with LiteRT (%d threads): input %dx%d (%s), "
            "batch %s, labels %s",
            detector.name,
            detector.version,
            path,
            threads,
            input_size[0],
            input_size[1],
            detector.frame_fit,
            "dynamic" if batch is None else f"fixed {batch}",
            ", ".join(f"{n}>={t:g}" for n, t in per_label.items()) or "none reported",
        )
        return detector

    def _run(self, images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
        # The runner resizes a dynamic-batch input to the batch it is given, and
        # returns copies of the outputs, keyed by the signature's output names.
        result = self._runner(**{self._input_name: images})
        outputs = {key: result[key] for key in OUTPUT_RANKS}
        self._check_shapes(outputs, images.shape[0])
        return outputs


def _check_signature(interpreter: Any, path: Path) -> tuple[str, int | None, tuple[int, int]]:
    """The input's name, fixed batch (None: dynamic) and (H, W), or a ModelError that
    says how the file breaks the contract."""
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise ModelError(f"{path}: no {SIGNATURE!r} signature (found: {found})")
    runner = interpreter.get_signature_runner(SIGNATURE)
    inputs = runner.get_input_details()
    if len(inputs) != 1:
        raise ModelError(
            f"{path}: signature {SIGNATURE!r} must take exactly one input, takes "
            f"{', '.join(sorted(inputs)) or 'none'}"
        )
    ((name, details),) = inputs.items()
    shape = [int(v) for v in details.get("shape_signature", details["shape"])]
    if details["dtype"] != np.uint8:
        raise ModelError(f"{path}: input {name!r} must be uint8, is {np.dtype(details['dtype'])}")
    if len(shape) != 4 or shape[3] != 3 or shape[1] < 1 or shape[2] < 1 or shape[0] == 0:
        raise ModelError(
            f"{path}: input {name!r} must be [1, H, W, 3] with a fixed H and W, is {shape}"
        )
    outputs = runner.get_output_details()
    missing = [key for key in OUTPUT_RANKS if key not in outputs]
    if missing:
        raise ModelError(
            f"{path}: signature {SIGNATURE!r} lacks outputs {', '.join(missing)} "
            f"(has {', '.join(sorted(outputs))})"
        )
    for key, rank in OUTPUT_RANKS.items():
        out_shape = outputs[key].get("shape_signature", outputs[key]["shape"])
        if len(out_shape) != rank:
            raise ModelError(
                f"{path}: output {key!r} must have rank {rank}, is {list(map(int, out_shape))}"
            )
    batch = None if shape[0] < 0 else shape[0]
    return name, batch, (shape[1], shape[2])
