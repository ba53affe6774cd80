"""The bare model and the in-process ceiling, with no broker.

*Bare model*: ``detect`` on frames decoded beforehand, at each batch size, for each
runtime (TensorFlow on the SavedModel, LiteRT on ``model.tflite``). *In process*:
JPEG bytes → decode → detect with the runtime the worker will use, one batch after
the other, as ``Worker`` does.

Runs in a child process of its own (see :func:`measure_in_child`): TensorFlow's
thread settings only apply in the process that first starts TensorFlow, and the
parent must stay free of TensorFlow's thread pools while it times the end-to-end runs.
The child also exports the colour model first (unless given a model), so TensorFlow
is imported once.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.machine import machine_busy_s


@dataclass(frozen=True)
class InProcessJob:
    model_dir: Path
    # Export the colour plumbing model (with its TFLite file) to model_dir first.
    export_colour_model: bool
    jpegs: Sequence[bytes]
    batch_sizes: Sequence[int]
    # The bare model: these runtimes at these batch sizes.
    bare_runtimes: Sequence[str]
    bare_batch_sizes: Sequence[int]
    # The runtime of the in-process pipeline (and of the workers).
    runtime: str
    litert_threads: int
    # Timed in back-to-back intervals: their spread shows how steady the machine was.
    intervals: int
    interval_s: float
    input_size: tuple[int, int]
    max_frame_pixels: int
    decode_threads: int
    intra_op_threads: int
    inter_op_threads: int
    # Measure only frames the model reports something for (a trained model reports
    # nothing where it sees no hand; such a frame gives no event to count end to end).
    keep_detected: bool = False


@dataclass(frozen=True)
class InProcessResult:
    max_batch: int
    frames: int
    seconds: float
    frames_per_s: float
    # The slowest and fastest interval.
    frames_per_s_min: float
    frames_per_s_max: float
    decode_ms_per_frame: float
    detect_ms_per_batch: float
    # Share of the wall time spent decoding (it overlaps with the model calls).
    decode_share: float
    # Cores this process used, and cores used by everything else on the machine
    # meanwhile (other people's work slows the figures down).
    cpu_cores: float
    other_cores: float


@dataclass(frozen=True)
class BareResult:
    runtime: str
    batch: int
    frames: int
    seconds: float
    frames_per_s: float
    frames_per_s_min: float
    frames_per_s_max: float
    ms_per_call: float
    cpu_cores: float
    other_cores: float


def measure_in_child(job: InProcessJob) -> dict[str, Any]:
    """Export the model to ``job.model_dir`` and time every batch size, in a fresh
    process; returns the model's description and one result per batch size."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run, job).result()


def _run(job: InProcessJob) -> dict[str, Any]:
    import tensorflow as tf

    # Before anything starts TensorFlow's runtime (the export does).
    if job.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(job.intra_op_threads)
    if job.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(job.inter_op_threads)

    from models.serving.contract_model import export_colour_model

    if job.export_colour_model:
        export_colour_model(job.model_dir, tflite=True)
    detectors = {runtime: _load(job, runtime) for runtime in {*job.bare_runtimes, job.runtime}}
    kept = list(range(len(job.jpegs)))
    hands: list[int] | None = None
    faces: list[int] | None = None
    if job.keep_detected:
        kept, hands, faces = _detected(detectors[job.runtime], job)
        job = replace(job, jpegs=[job.jpegs[i] for i in kept])
    bare = [
        asdict(_measure_bare(detectors[runtime], job, size))
        for runtime in job.bare_runtimes
        for size in job.bare_batch_sizes
    ]
    detector = detectors[job.runtime]
    detector.warm_up(sorted({1, *job.batch_sizes}))
    with ThreadPoolExecutor(job.decode_threads, thread_name_prefix="decode") as pool:
        results = [asdict(measure_pipeline(detector, pool, job, size)) for size in job.batch_sizes]
    description = _description(job.model_dir)
    return {
        "model": {
            "name": detector.name,
            "version": detector.version,
            "description": description,
            "labels": list(detector.labels.names),
            "input_size": list(detector.input_size),
            "max_batch": detector.max_batch,
            "runtime": job.runtime,
            "tflite": (job.model_dir / "model.tflite").is_file(),
        },
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "litert": job.litert_threads,
            "decode": job.decode_threads,
        },
        "bare": bare,
        "results": results,
        "kept_frames": kept,
        # Hands the model found in each kept frame (None: not a hand model).
        "frame_hands": hands,
        "frame_faces": faces,
    }


def _detected(detector: Any, job: InProcessJob) -> tuple[list[int], list[int], list[int]]:
    """Indexes of the frames ``detector`` reports a detection for that becomes a
    reaction event (a face at rest, ``neutral``, is a detection but no event: a frame
    with nothing else would never reach the subscriber), and how many hands and faces
    the model found in each of those."""
    from worker.decode import decode_fitted
    from worker.events import NOT_REACTIONS

    metadata = json.loads((job.model_dir / "model.json").read_text(encoding="utf-8"))
    # A face stage reports one of these per face; every other detection is a hand (a
    # hand in a pose, thinking or raise_hand, included: it cost the same passes).
    face_labels = set(metadata.get("face_labels", []))
    hand_labels = set(detector.labels.names) - face_labels
    height, width = detector.input_size
    frame = np.empty((1, height, width, 3), np.uint8)
    kept: list[int] = []
    hands: list[int] = []
    faces: list[int] = []
    for i, jpeg in enumerate(job.jpegs):
        decode_fitted(jpeg, frame[0], max_pixels=job.max_frame_pixels, fit=detector.frame_fit)
        if any(d.label not in NOT_REACTIONS for d in detector.detect(frame)[0]):
            kept.append(i)
            # Every hand the model found costs its network passes, also one whose
            # gesture scores below the reporting threshold: count the raw outputs.
            raw = detector._run(frame)
            ids = raw["detection_classes"][0][: int(raw["num_detections"][0])]
            names = [detector.labels.get(round(float(c)), "") for c in ids]
            hands.append(sum(name in hand_labels for name in names))
            faces.append(sum(name in face_labels for name in names))
    if not kept:
        raise RuntimeError(f"{job.model_dir}: the model reports nothing on any frame")
    return kept, hands, faces


def _load(job: InProcessJob, runtime: str) -> Any:
    if runtime == "litert":
        from worker.litert import LiteRtDetector

        return LiteRtDetector.load(job.model_dir, default_threshold=0.0, threads=job.litert_threads)
    from worker.detector import Detector

    return Detector.load(
        job.model_dir,
        default_threshold=0.0,
        default_input_size=job.input_size,
        intra_op_threads=job.intra_op_threads or None,
        inter_op_threads=job.inter_op_threads or None,
    )


def _description(model_dir: Path) -> str | None:
    try:
        metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    description = metadata.get("description") if isinstance(metadata, dict) else None
    return description if isinstance(description, str) else None


def _measure_bare(detector: Any, job: InProcessJob, size: int) -> BareResult:
    """``detect`` alone, on frames decoded beforehand: the model's own ceiling."""
    from worker.decode import decode_fitted

    height, width = detector.input_size
    count = min(len(job.jpegs), max(size, 32))
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        decode_fitted(
            job.jpegs[i], frames[i], max_pixels=job.max_frame_pixels, fit=detector.frame_fit
        )
    batches = [frames[(i * size) % count :][:size] for i in range(max(1, count // size))]
    batches = [b if len(b) == size else frames[:size] for b in batches]
    detector.warm_up([size])
    detector.detect(batches[0])
    done = calls = 0
    rates = []
    cpu_started = time.process_time()
    machine_started = machine_busy_s()
    started = time.perf_counter()
    for _ in range(job.intervals):
        interval_frames = 0
        interval_started = time.perf_counter()
        while interval_frames == 0 or time.perf_counter() - interval_started < job.interval_s:
            detector.detect(batches[calls % len(batches)])
            calls += 1
            interval_frames += size
        done += interval_frames
        rates.append(interval_frames / (time.perf_counter() - interval_started))
    seconds = time.perf_counter() - started
    own = time.process_time() - cpu_started
    machine = machine_busy_s() - machine_started
    return BareResult(
        runtime=detector.runtime,
        batch=size,
        frames=done,
        seconds=round(seconds, 3),
        frames_per_s=round(done / seconds, 1),
        frames_per_s_min=round(min(rates), 1),
        frames_per_s_max=round(max(rates), 1),
        ms_per_call=round(seconds / calls * 1000, 2),
        cpu_cores=round(own / seconds, 2),
        other_cores=round(max(0.0, machine - own) / seconds, 2),
    )


def measure_pipeline(
    detector: Any, pool: ThreadPoolExecutor, job: InProcessJob, size: int
) -> InProcessResult:
    """Decode and detect ``job.jpegs`` in batches of ``size`` as the worker's batch loop
    does, for ``job.intervals`` intervals of ``job.interval_s``."""
    from worker.decode import decode_fitted

    height, width = detector.input_size
    jpegs = job.jpegs
    # The worker calls the model from a thread of its own, never from the thread
    # that waits for the decodes; so does this.
    model = ThreadPoolExecutor(1, thread_name_prefix="model")

    def decode(first: int) -> tuple[npt.NDArray[np.uint8], float]:
        # What Worker._prepare does for one batch: a fresh array, the frames decoded
        # into it on the decode pool.
        started = time.perf_counter()
        images = np.empty((size, height, width, 3), dtype=np.uint8)
        futures = [
            pool.submit(
                decode_fitted,
                jpegs[(first + i) % len(jpegs)],
                images[i],
                max_pixels=job.max_frame_pixels,
                fit=detector.frame_fit,
            )
            for i in range(size)
        ]
        for future in futures:
            future.result()
        return images, time.perf_counter() - started

    def detect(images: npt.NDArray[np.uint8]) -> float:
        started = time.perf_counter()
        detector.detect(images)
        return time.perf_counter() - started

    with model:
        # Untimed: first decode of this size, first model call at this shape.
        model.submit(detect, decode(0)[0]).result()
        frames = batches = 0
        decode_s = detect_s = 0.0
        rates = []
        # As the worker's batch loop: the next batch decodes while the model runs
        # the current one, and one model call runs at a time.
        running = model.submit(detect, decode(0)[0])
        decoded = size
        cpu_started = time.process_time()
        machine_started = machine_busy_s()
        started = time.perf_counter()
        for _ in range(job.intervals):
            interval_frames = 0
            interval_started = time.perf_counter()
            # At least one batch per interval, however slow the model.
            while interval_frames == 0 or time.perf_counter() - interval_started < job.interval_s:
                images, seconds = decode(decoded)
                decode_s += seconds
                decoded += size
                detect_s += running.result()
                running = model.submit(detect, images)
                frames += size
                interval_frames += size
                batches += 1
            rates.append(interval_frames / (time.perf_counter() - interval_started))
        seconds = time.perf_counter() - started
        own = time.process_time() - cpu_started
        machine = machine_busy_s() - machine_started
        running.result()
    return InProcessResult(
        max_batch=size,
        frames=frames,
        seconds=round(seconds, 3),
        frames_per_s=round(frames / seconds, 1),
        frames_per_s_min=round(min(rates), 1),
        frames_per_s_max=round(max(rates), 1),
        decode_ms_per_frame=round(decode_s / frames * 1000, 2),
        detect_ms_per_batch=round(detect_s / batches * 1000, 2),
        decode_share=round(decode_s / seconds, 3),
        cpu_cores=round(own / seconds, 2),
        other_cores=round(max(0.0, machine - own) / seconds, 2),
    )
