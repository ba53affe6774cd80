"""A tiny SavedModel that follows the Object Detection API serving contract exactly.

It is a **plumbing model, not a gesture detector**: it "detects" the colours red,
green and blue, so tests and local runs can exercise the whole pipeline (export,
loading, batching, thresholds, events) with exact, predictable outputs and without a
trained network or any download.

For each image it emits exactly three detections, one per channel:

* score: the fraction of pixels where that channel is strictly the largest of the
  three (a solid red frame gives red 1.0, green 0.0, blue 0.0);
* box: the normalized bounding box ``(ymin, xmin, ymax, xmax)`` of those pixels, all
  zeros when there are none;

sorted by score (ties keep class order), with ``num_detections`` = 3 and the rest of
the 100 slots zero-padded, as stock zoo exports pad theirs.

A small convolution with fixed, seeded weights runs on every frame and its result is
added to the scores multiplied by zero, so the graph costs real compute like a (very)
small detector without changing the outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import tensorflow as tf

LABELS: Final = ("red", "green", "blue")
MAX_DETECTIONS: Final = 100
DESCRIPTION: Final = (
    "Plumbing model, NOT a gesture detector: scores each of red/green/blue by the fraction "
    "of pixels where that channel is strictly the largest. For tests and local runs only."
)
_SEED: Final = 20240611
_CONV_FILTERS: Final = 16
TFLITE_FILE: Final = "model.tflite"
# The worker's default input size (WorkerSettings.input_size).
TFLITE_INPUT_SIZE: Final = (320, 320)


class ColourModel(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """The colour plumbing model as a ``tf.Module``; ``__call__`` is the serving
    function (input ``input_tensor``, Object Detection API outputs)."""

    def __init__(
        self, *, batch_size: int | None = None, input_size: tuple[int, int] | None = None
    ) -> None:
        super().__init__(name="colour_plumbing")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        height, width = input_size if input_size is not None else (None, None)
        self.input_spec = tf.TensorSpec(
            [batch_size, height, width, 3], tf.uint8, name="input_tensor"
        )
        # Weights from a seeded NumPy generator rather than TF's global RNG, so two
        # instances (and two exports) are identical whatever else ran before.
        rng = np.random.default_rng(_SEED)
        kernel = rng.normal(0.0, 0.05, size=(3, 3, 3, _CONV_FILTERS)).astype(np.float32)
        # A plain tracked tf.Variable (not a Keras layer attribute), so SavedModel and
        # the TFLite converter both see and keep the weights.
        self.conv_kernel = tf.Variable(kernel, trainable=False, name="conv_kernel")
        self.serve = tf.function(self._serve, input_signature=[self.input_spec])

    def __call__(self, input_tensor: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.serve(input_tensor)
        return result

    def _serve(self, input_tensor: Any) -> dict[str, Any]:
        pixels = tf.cast(input_tensor, tf.float32)
        shape = tf.shape(input_tensor)
        batch, height, width = shape[0], shape[1], shape[2]

        # Channel c "wins" a pixel when it equals the pixel's maximum and no other
        # channel does.
        peak = tf.reduce_max(pixels, axis=-1, keepdims=True)
        at_peak = tf.equal(pixels, peak)
        unique_peak = tf.equal(tf.reduce_sum(tf.cast(at_peak, tf.int32), -1, keepdims=True), 1)
        wins = tf.logical_and(at_peak, unique_peak)  # [N, H, W, 3]
        scores = tf.reduce_mean(tf.cast(wins, tf.float32), axis=[1, 2])  # [N, 3]

        # Only the compute matters. The mean of a ReLU is >= 0, so min(mean, 0) is
        # exactly 0; unlike `0 * mean`, Grappler cannot fold it away (it has no value
        # range analysis), even once a converter freezes the kernel into a constant.
        features = tf.nn.relu(
            tf.nn.conv2d(pixels / 255.0, self.conv_kernel, strides=2, padding="SAME")
        )
        scores += tf.minimum(tf.reduce_mean(features, axis=[1, 2, 3]), 0.0)[:, tf.newaxis]

        rows = tf.reduce_any(wins, axis=2)  # [N, H, 3]
        cols = tf.reduce_any(wins, axis=1)  # [N, W, 3]
        ymin, ymax = _extent(rows, height)
        xmin, xmax = _extent(cols, width)
        boxes = tf.stack([ymin, xmin, ymax, xmax], axis=-1)  # [N, 3, 4]

        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        classes = tf.cast(order + 1, tf.float32)
        scores = tf.gather(scores, order, batch_dims=1)
        boxes = tf.gather(boxes, order, batch_dims=1)

        pad = MAX_DETECTIONS - len(LABELS)
        return {
            "detection_boxes": tf.pad(boxes, [[0, 0], [0, pad], [0, 0]]),
            "detection_classes": tf.pad(classes, [[0, 0], [0, pad]]),
            "detection_scores": tf.pad(scores, [[0, 0], [0, pad]]),
            "num_detections": tf.fill([batch], float(len(LABELS))),
        }


def _extent(present: Any, size: Any) -> tuple[Any, Any]:
    """Normalized [first, last + 1) extent along axis 1 of a ``[N, size, 3]`` mask;
    (0, 0) where the mask is empty."""
    hits = tf.cast(present, tf.int32)
    first = tf.argmax(hits, axis=1, output_type=tf.int32)
    last = size - 1 - tf.argmax(tf.reverse(hits, axis=[1]), axis=1, output_type=tf.int32)
    found = tf.reduce_any(present, axis=1)
    scale = tf.cast(size, tf.float32)
    low = tf.where(found, tf.cast(first, tf.float32) / scale, 0.0)
    high = tf.where(found, tf.cast(last + 1, tf.float32) / scale, 0.0)
    return low, high


def label_map_text() -> str:
    header = "".join(f"# {line}\n" for line in _wrap(DESCRIPTION))
    items = "".join(
        f"item {{\n  id: {i}\n  name: '{label}'\n  display_name: '{label.title()}'\n}}\n"
        for i, label in enumerate(LABELS, start=1)
    )
    return header + items


def _wrap(text: str, width: int = 80) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def export_colour_model(
    export_dir: Path,
    *,
    batch_size: int | None = None,
    input_size: tuple[int, int] | None = None,
    name: str = "colour-plumbing",
    version: str = "1",
    tflite: bool = False,
) -> Path:
    """Export the colour plumbing model (not a gesture detector) to ``export_dir``:
    ``saved_model.pb`` + ``variables/``, ``label_map.pbtxt`` and ``model.json``, and
    with ``tflite`` also ``model.tflite`` for the LiteRT runtime.

    ``batch_size=None`` gives a dynamic batch (input ``[None, H, W, 3]``);
    ``batch_size=1`` mimics stock TF2 zoo exports (``[1, None, None, 3]``).
    ``input_size`` fixes H and W in the signature. The TFLite file always takes one
    frame of a fixed size: ``input_size``, or the worker's default of 320x320 (which
    is what the worker resizes to for a SavedModel without a fixed size). Returns
    ``export_dir``.
    """
    module = ColourModel(batch_size=batch_size, input_size=input_size)
    export_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={"serving_default": module.serve.get_concrete_function()},
    )
    (export_dir / "label_map.pbtxt").write_text(label_map_text(), encoding="utf-8")
    metadata: dict[str, Any] = {"name": name, "version": version, "description": DESCRIPTION}
    if input_size is not None:
        metadata["input_size"] = list(input_size)
    (export_dir / "model.json").write_text(json.dumps(metadata, indent=2) + "\n", "utf-8")
    if tflite:
        (export_dir / TFLITE_FILE).write_bytes(tflite_bytes(input_size or TFLITE_INPUT_SIZE))
    return export_dir


def tflite_bytes(input_size: tuple[int, int]) -> bytes:
    """The colour model as a TFLite flatbuffer that follows the worker's TFLite
    contract (see worker/litert.py): signature ``serving_default``, one uint8 input
    ``[1, H, W, 3]``, the four detection outputs by name. Every op is a TFLite
    builtin, so no TensorFlow ops are needed to run it."""
    # A fresh module with the same seeded weights: its signature has the fixed shape.
    module = ColourModel(batch_size=1, input_size=input_size)
    function = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    data: bytes = converter.convert()
    return data
