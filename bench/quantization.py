"""Each hand network in fp32, fp16 and full-integer int8: its speed alone and how far
its answers move, on the inputs the model would give it from people it never saw.

``python -m bench.quantization`` rebuilds each network from MediaPipe's file
(:mod:`models.networks.tflite_import`) and converts it three ways with the TFLite
converter: fp32; fp16 weights (computed in fp32; what ``model.tflite`` ships); int8
weights and activations, calibrated on real inputs (XNNPACK's QS8 kernels; float
input and output, so the model around it would not change). Calibration inputs come
from the training people of ``signs/``, the answers are compared on its held-out
people (the split ``memelearning train`` uses): the palm detector on their
letterboxed frames, the landmark networks on the rotated hand regions stage one cuts
from them. Reported per network and precision: one-thread LiteRT time
(:func:`bench.networks.time_networks`), and against fp32 on the same inputs — for the
palm detector the share of frames whose best palm stays the same (IoU ≥ 0.5, the
score on the same side of the model's floor), for a landmark network the share of
hands whose box from the joints stays at IoU ≥ 0.5 of fp32's, whose presence stays on
the same side of 0.5, and the joints' median error as a share of the region.

Needs TensorFlow (the ``tf`` extra) for the conversion; measures, ships nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

PRECISIONS: Final = ("fp32", "fp16", "int8")
PALM_FLOOR: Final = 0.3
"""The palm score below which the model looks no further (ModelConfig.palm_threshold)."""
PRESENCE: Final = 0.5
"""The presence at which the model reports a hand (ModelConfig.hand_threshold)."""
MATCH_IOU: Final = 0.5


@dataclass(frozen=True)
class Agreement:
    """How a network's answers in one precision compare with its fp32 answers."""

    inputs: int
    same_box: float
    """Share of inputs whose box stays at IoU ≥ 0.5 of fp32's."""
    same_decision: float
    """Share whose score stays on the same side of the model's threshold."""
    joint_error: float | None = None
    """Median joint displacement, as a share of the region's side (landmark networks)."""


def box_iou(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row-wise IoU of boxes ``[M, 4]`` (any corner order consistent across both)."""
    low = np.maximum(a[:, :2], b[:, :2])
    high = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a + area_b - inter
    iou: npt.NDArray[np.float64] = np.divide(
        inter, union, out=np.zeros_like(inter), where=union > 0
    )
    return iou


def agreement(
    boxes: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    reference_boxes: npt.NDArray[np.float64],
    reference_scores: npt.NDArray[np.float64],
    threshold: float,
    joints: npt.NDArray[np.float64] | None = None,
    reference_joints: npt.NDArray[np.float64] | None = None,
) -> Agreement:
    """``boxes [M, 4]``, ``scores [M]`` (and ``joints [M, 21, 2]`` in region units)
    against the fp32 network's answers to the same ``M`` inputs."""
    if len(boxes) == 0:
        raise ValueError("no inputs to compare")
    error = None
    if joints is not None and reference_joints is not None:
        error = float(np.median(np.linalg.norm(joints - reference_joints, axis=-1)))
    return Agreement(
        inputs=len(boxes),
        same_box=float(np.mean(box_iou(boxes, reference_boxes) >= MATCH_IOU)),
        same_decision=float(np.mean((scores >= threshold) == (reference_scores >= threshold))),
        joint_error=error,
    )


def convert(network: Any, side: int, precision: str, calibration: Sequence[Any]) -> bytes:
    """An imported network (:class:`models.networks.tflite_import.ImportedGraph`) as a
    TFLite flatbuffer in ``precision``; ``calibration``: float inputs ``[1, S, S, 3]``."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, side, side, 3], tf.float32)
    function = tf.function(lambda x: network(x), input_signature=[spec]).get_concrete_function()
    if precision == "int8":
        from models.serving.gesture_model import int8_flatbuffer

        return int8_flatbuffer(function, network, calibration)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], network)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    data: bytes = converter.convert()
    return data


def run(data: bytes, inputs: Sequence[npt.NDArray[np.float32]]) -> list[list[npt.NDArray[Any]]]:
    """The flatbuffer's outputs (in order) for each input, one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()

    def position(name: str) -> int:
        # The converter names a function's outputs Identity, Identity_1, ... in order.
        return int(name.rpartition("_")[2]) if "_" in name else 0

    outputs = sorted(interpreter.get_output_details(), key=lambda d: position(d["name"]))
    answers = []
    for x in inputs:
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        answers.append([interpreter.get_tensor(d["index"]).copy() for d in outputs])
    return answers


def palm_answers(
    answers: Sequence[Sequence[npt.NDArray[Any]]], anchors: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each frame's best palm: its box (anchor-decoded, input units) and score."""
    from models.networks.hand_detector import INPUT_SIZE

    boxes, scores = [], []
    for regressors, logits in ((a[0][0], a[1][0, :, 0]) for a in answers):
        best = int(np.argmax(logits))
        # Anchors are (y, x), normalized; the regressors start x, y, w, h in pixels.
        centre = anchors[best, ::-1] * INPUT_SIZE + regressors[best, :2]
        half = regressors[best, 2:4] / 2
        boxes.append(np.concatenate([centre - half, centre + half]))
        scores.append(1 / (1 + np.exp(-float(logits[best]))))
    return np.asarray(boxes, np.float64), np.asarray(scores, np.float64)


def landmark_answers(
    answers: Sequence[Sequence[npt.NDArray[Any]]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each region's joint bounds (a box), presence and joints, in region units."""
    joints = np.stack([a[0].reshape(21, 3)[:, :2] for a in answers]).astype(np.float64) / 224
    presence = np.asarray([float(a[1].reshape(-1)[0]) for a in answers])
    boxes = np.concatenate([joints.min(axis=1), joints.max(axis=1)], axis=1)
    return boxes, presence, joints


def network_inputs(
    frames: npt.NDArray[np.uint8], model: Any
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """What the model gives its networks for ``frames``: the palm detector's inputs
    (:meth:`~models.serving.gesture_model.GestureModel.palm_input`), and the rotated
    region of every palm it looks at
    (:meth:`~models.serving.gesture_model.GestureModel.landmark_inputs`)."""
    import tensorflow as tf

    cut = tf.function(model.landmark_inputs)
    palms, regions = [], []
    for frame in frames:
        pixels = tf.constant(frame[None])
        boxed, _ = model.palm_input(tf.cast(pixels, tf.float32) / 255.0)
        palms.append(boxed.numpy().astype(np.float32))
        found, _ = cut(pixels)
        regions += [c[None].astype(np.float32) for c in found.numpy()]
    return palms, regions


def measure(
    paths: Mapping[str, Path],
    calibration_frames: npt.NDArray[np.uint8],
    held_out_frames: npt.NDArray[np.uint8],
    *,
    seconds: float,
) -> list[dict[str, Any]]:
    """One row per network and precision."""
    from bench.networks import time_networks
    from models.networks.base_models import HAND_MODELS, base_model_paths
    from models.networks.gesture_classifier import GestureHead
    from models.networks.hand_detector import HandDetector
    from models.networks.tflite_import import import_tflite
    from models.serving.gesture_model import GestureModel, ModelConfig

    stage_one = GestureModel.from_base_models(
        base_model_paths(models=HAND_MODELS),
        GestureHead(("none",), 1),
        ModelConfig(),
    )
    calibration = network_inputs(calibration_frames, stage_one)
    held_out = network_inputs(held_out_frames, stage_one)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for file, path in paths.items():
            palm = file.startswith("palm_detection")
            network = import_tflite(path, name="bench", trainable=False)
            side = network.input_shape[1]
            kind = 0 if palm else 1
            anchors = HandDetector.from_tflite(path).anchors.numpy() if palm else None
            built = {p: convert(network, side, p, calibration[kind][:100]) for p in PRECISIONS}
            files = {f"{p}.{file}": Path(scratch) / f"{p}.{file}" for p in PRECISIONS}
            for precision, data in built.items():
                files[f"{precision}.{file}"].write_bytes(data)
            frame = held_out_frames[0]
            timings = {t.file: t for t in time_networks(files, frame, seconds=seconds)}
            answers = {p: run(data, held_out[kind]) for p, data in built.items()}
            for precision in PRECISIONS:
                if palm:
                    assert anchors is not None
                    got = palm_answers(answers[precision], anchors)
                    ref = palm_answers(answers["fp32"], anchors)
                    agreed = agreement(got[0], got[1], ref[0], ref[1], PALM_FLOOR)
                else:
                    boxes, presence, joints = landmark_answers(answers[precision])
                    rb, rp, rj = landmark_answers(answers["fp32"])
                    agreed = agreement(boxes, presence, rb, rp, PRESENCE, joints, rj)
                timing = timings[f"{precision}.{file}"]
                rows.append(
                    {
                        "network": file,
                        "precision": precision,
                        "bytes": len(built[precision]),
                        "ms": timing.ms,
                        "cpu_ms": timing.cpu_ms,
                        **asdict(agreed),
                    }
                )
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| network | precision | MB | ms, 1 thread | same box as fp32 | same decision "
        "| joint error (share of region) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        error = "n/a" if r["joint_error"] is None else f"{r['joint_error']:.4f}"
        lines.append(
            f"| {r['network']} | {r['precision']} | {r['bytes'] / 1e6:.2f} | {r['ms']:.2f} "
            f"| {r['same_box']:.3f} | {r['same_decision']:.3f} | {error} |"
        )
    return "\n".join(lines)


def _frames(annotations: Sequence[Any], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    from models.evaluate.frame_scores import load_frame

    return np.stack([load_frame(a.image_path, size) for a in annotations])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.quantization``: fp32, fp16 and int8 of each hand network,
    speed and answers, as JSON and a Markdown table."""
    from models.dataset import DEFAULT_DATA
    from models.networks.base_models import (
        HAND_LANDMARKS,
        HAND_LANDMARKS_FULL,
        PALM_DETECTOR_FULL,
        PALM_DETECTOR_LITE,
        BaseModelError,
        base_model_paths,
    )
    from models.train.training import TrainConfig, load_splits

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per variant")
    parser.add_argument("--frames", type=int, default=120, help="frames per side, at most")
    args = parser.parse_args(argv)
    networks = (PALM_DETECTOR_FULL, PALM_DETECTOR_LITE, HAND_LANDMARKS_FULL, HAND_LANDMARKS)
    try:
        paths = base_model_paths(models=networks)
        splits = load_splits(args.data, TrainConfig())
    except (BaseModelError, OSError, ValueError) as exc:
        print(f"bench.quantization: {exc}", file=sys.stderr)
        return 2
    size = TrainConfig().input_size
    rng = np.random.default_rng(0)

    def sample(annotations: Sequence[Any]) -> npt.NDArray[np.uint8]:
        chosen = rng.permutation(len(annotations))[: args.frames]
        return _frames([annotations[i] for i in sorted(chosen)], size)

    rows = measure(
        {m.file_name: paths[m.file_name] for m in networks},
        sample(splits.signs.train),
        sample(splits.signs.test),
        seconds=args.seconds,
    )
    print(json.dumps(rows, indent=2))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
