"""The in-process ceiling: JPEG bytes → decode → detect, with no broker.

Runs in a child process of its own (see :func:`measure_in_child`): TensorFlow's
thread settings only apply in the process that first starts TensorFlow, and the
parent must stay free of TensorFlow's thread pools while it times the end-to-end runs.
The child also exports the colour model first, so TensorFlow is imported once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_busy_s


@dataclass(frozen=True)
class InProcessJob:
    model_dir: Path
    jpegs: Sequence[bytes]
    batch_sizes: Sequence[int]
    # Timed in back-to-back intervals: their spread shows how steady the machine was.
    intervals: int
    interval_s: float
    input_size: tuple[int, int]
    max_frame_pixels: int
    decode_threads: int
    intra_op_threads: int
    inter_op_threads: int


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
    # Share of the wall time spent decoding (the rest is the model call).
    decode_share: float
    # Cores this process used, and cores used by everything else on the machine
    # meanwhile (other people's work slows the figures down).
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

    from models.contract_model import DESCRIPTION, export_colour_model
    from worker.detector import Detector

    export_colour_model(job.model_dir)
    detector = Detector.load(
        job.model_dir,
        default_threshold=0.0,
        default_input_size=job.input_size,
        intra_op_threads=job.intra_op_threads or None,
        inter_op_threads=job.inter_op_threads or None,
    )
    detector.warm_up(sorted({1, *job.batch_sizes}))
    with ThreadPoolExecutor(job.decode_threads, thread_name_prefix="decode") as pool:
        results = [asdict(_measure(detector, pool, job, size)) for size in job.batch_sizes]
    return {
        "model": {
            "name": detector.name,
            "version": detector.version,
            "description": DESCRIPTION,
            "labels": list(detector.labels.names),
            "input_size": list(detector.input_size),
            "max_batch": detector.max_batch,
        },
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "decode": job.decode_threads,
        },
        "results": results,
    }


def _measure(
    detector: Any, pool: ThreadPoolExecutor, job: InProcessJob, size: int
) -> InProcessResult:
    from worker.decode import decode_into

    height, width = detector.input_size
    jpegs = job.jpegs
    # The worker calls the model from a thread of its own, never from the thread
    # that waits for the decodes; so does this.
    model = ThreadPoolExecutor(1, thread_name_prefix="model")

    def batch(first: int) -> tuple[float, float]:
        # What Worker._process does for one batch: a fresh array, the frames decoded
        # into it on the decode pool, then one model call.
        started = time.perf_counter()
        images = np.empty((size, height, width, 3), dtype=np.uint8)
        futures = [
            pool.submit(
                decode_into,
                jpegs[(first + i) % len(jpegs)],
                images[i],
                max_pixels=job.max_frame_pixels,
            )
            for i in range(size)
        ]
        for future in futures:
            future.result()
        decoded = time.perf_counter()
        model.submit(detector.detect, images).result()
        return decoded - started, time.perf_counter() - decoded

    with model:
        batch(0)  # untimed: first decode of this size, first model call at this shape
        frames = batches = 0
        decode_s = detect_s = 0.0
        rates = []
        cpu_started = time.process_time()
        machine_started = machine_busy_s()
        started = time.perf_counter()
        for _ in range(job.intervals):
            interval_frames = 0
            interval_started = time.perf_counter()
            # At least one batch per interval, however slow the model.
            while interval_frames == 0 or time.perf_counter() - interval_started < job.interval_s:
                decode, detect = batch(frames)
                decode_s += decode
                detect_s += detect
                frames += size
                interval_frames += size
                batches += 1
            rates.append(interval_frames / (time.perf_counter() - interval_started))
        seconds = time.perf_counter() - started
        own = time.process_time() - cpu_started
        machine = machine_busy_s() - machine_started
    return InProcessResult(
        max_batch=size,
        frames=frames,
        seconds=round(seconds, 3),
        frames_per_s=round(frames / seconds, 1),
        frames_per_s_min=round(min(rates), 1),
        frames_per_s_max=round(max(rates), 1),
        decode_ms_per_frame=round(decode_s / frames * 1000, 2),
        detect_ms_per_batch=round(detect_s / batches * 1000, 2),
        decode_share=round(decode_s / (decode_s + detect_s), 3),
        cpu_cores=round(own / seconds, 2),
        other_cores=round(max(0.0, machine - own) / seconds, 2),
    )
