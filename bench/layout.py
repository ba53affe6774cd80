"""Processes against threads, with no broker: one process with N model threads against
N processes with one model thread each, on the same cores, the two layouts taking
turns so that other people's work on the shared machine weighs on both alike.

Each process runs what the worker's batch loop runs (``bench.inprocess``: JPEG bytes →
decode threads → LiteRT, the next batch decoding while the model runs this one), and
a layout's rate is the sum over its processes measured over the same seconds.
"""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.inprocess import InProcessJob

# One detector and decode pool per process, made by the pool's initializer.
_process: dict[str, Any] = {}


@dataclass(frozen=True)
class Layout:
    processes: int
    model_threads: int
    decode_threads: int

    @property
    def name(self) -> str:
        return f"{self.processes}x{self.model_threads}"


def compare_layouts(
    model_dir: Path,
    jpegs: Sequence[bytes],
    layouts: Sequence[Layout],
    *,
    max_batch: int,
    rounds: int,
    seconds: float,
    max_frame_pixels: int,
) -> list[dict[str, Any]]:
    """Each layout's frames per second in each of ``rounds`` turns of ``seconds``."""
    context = multiprocessing.get_context("spawn")
    pools = []
    try:
        for layout in layouts:
            job = _job(model_dir, jpegs, layout, seconds, max_frame_pixels)
            pool = ProcessPoolExecutor(
                layout.processes, mp_context=context, initializer=_start, initargs=(job,)
            )
            pools.append(pool)
            # Starts every process and warms its model before any turn is timed.
            list(pool.map(_rate, [max_batch] * layout.processes))
        rates: list[list[float]] = [[] for _ in layouts]
        for _ in range(rounds):
            for index, pool in enumerate(pools):
                futures = [pool.submit(_rate, max_batch) for _ in range(layouts[index].processes)]
                rates[index].append(round(sum(f.result() for f in futures), 1))
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
    return [
        {
            **layout.__dict__,
            "name": layout.name,
            "max_batch": max_batch,
            "frames_per_s": round(statistics.median(rate), 1),
            "rounds": rate,
        }
        for layout, rate in zip(layouts, rates, strict=True)
    ]


def _job(
    model_dir: Path, jpegs: Sequence[bytes], layout: Layout, seconds: float, max_pixels: int
) -> InProcessJob:
    return InProcessJob(
        model_dir=model_dir,
        export_colour_model=False,
        jpegs=list(jpegs),
        batch_sizes=(),
        bare_runtimes=(),
        bare_batch_sizes=(),
        runtime="litert",
        litert_threads=layout.model_threads,
        intervals=1,
        interval_s=seconds,
        input_size=(0, 0),
        max_frame_pixels=max_pixels,
        decode_threads=layout.decode_threads,
        intra_op_threads=0,
        inter_op_threads=0,
    )


def _start(job: InProcessJob) -> None:
    from worker.litert import LiteRtDetector

    _process["job"] = job
    _process["detector"] = LiteRtDetector.load(
        job.model_dir, default_threshold=0.0, threads=job.litert_threads
    )
    _process["pool"] = ThreadPoolExecutor(job.decode_threads, thread_name_prefix="decode")


def _rate(max_batch: int) -> float:
    from bench.inprocess import measure_pipeline

    result = measure_pipeline(_process["detector"], _process["pool"], _process["job"], max_batch)
    return result.frames_per_s
