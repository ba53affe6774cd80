"""End to end through RabbitMQ: load process → frames exchange → worker process →
reaction events → subscriber, one fresh vhost and one worker per batch size.

Saturating runs give the sustained capacity: frames with an event per second over a
steady window that starts after a warm-up. The latency run publishes at a share of
that capacity and reports the age of each frame when its event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.events import EventCounter
from bench.load import LoadJob, LoadProcess
from bench.machine import CpuSample, cores_used, pids_named, sample_cpu
from bench.plan import Plan
from bench.worker_process import WorkerProcess
from memelearning.management import ManagementClient


@dataclass(frozen=True)
class _Snapshot:
    frames: int
    mono: float
    cpu: CpuSample
    metrics: dict[str, float]


class _Run:
    """The workers on one vhost, with the subscriber attached."""

    def __init__(self, events: EventCounter, workers: Sequence[WorkerProcess], url: str) -> None:
        self.events = events
        self.workers = workers
        self.url = url

    async def snapshot(self, load: LoadProcess) -> _Snapshot:
        pids = {
            "worker": [worker.pid for worker in self.workers],
            "broker": pids_named("beam.smp"),
            "load": [load.pid],
            "subscriber": [os.getpid()],
        }
        metrics: dict[str, float] = {}
        for worker in self.workers:
            for name, value in (await worker.metrics()).items():
                metrics[name] = metrics.get(name, 0.0) + value
        # A worker's main thread runs its event loop: AMQP, events, acks.
        cpu = sample_cpu(pids, {"worker": self.workers[0].pid})
        return _Snapshot(self.events.count, time.monotonic(), cpu, metrics)


async def run_batch_size(
    management: ManagementClient,
    *,
    jpegs: Sequence[bytes],
    label: str | None,
    max_batch: int,
    worker_settings: Mapping[str, object],
    plan: Plan,
    log_dir: Path,
    latency_loads: Sequence[float] = (),
    workers: int = 1,
    name: str | None = None,
    profile_path: Path | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Saturate ``workers`` fresh workers with ``max_batch`` on a fresh vhost; then
    measure latency at each of ``latency_loads`` (shares of the capacity just
    measured). ``label``: the one label the subscriber counts (None: every label).
    ``profile_path``: run the (first) worker under cProfile, stats written there."""
    vhost = await asyncio.to_thread(management.create_vhost, "bench", "memelearning benchmark")
    name = name or f"b{max_batch}"
    try:
        url = management.url_for(vhost)
        async with contextlib.AsyncExitStack() as stack:
            started = []
            for index in range(workers):
                settings = {
                    **worker_settings,
                    "amqp_url": url,
                    "max_batch": max_batch,
                    "worker_id": f"bench-{name}-{index}",
                }
                process = WorkerProcess(
                    settings,
                    log_dir / f"worker-{name}-{index}.log",
                    profile_path=profile_path if index == 0 else None,
                )
                started.append(await stack.enter_async_context(process))
            events = await stack.enter_async_context(EventCounter(url, label))
            run = _Run(events, started, url)
            capacity = await _saturate(run, jpegs, max_batch, plan)
            capacity["workers"] = workers
            latencies = []
            for share in latency_loads:
                rate = capacity["frames_per_s"] * share
                measured = await _latency(run, jpegs, max_batch, rate, share, plan)
                latencies.append({**measured, "workers": workers})
        return capacity, latencies
    finally:
        await asyncio.to_thread(management.delete_vhost, vhost)


async def _saturate(
    run: _Run, jpegs: Sequence[bytes], max_batch: int, plan: Plan
) -> dict[str, Any]:
    # Enough waiting frames that the worker never runs dry between two looks of the
    # load process at the subscriber's count, few enough to keep the broker's queue small.
    backlog = max(64, 8 * max_batch)
    job = LoadJob(run.url, jpegs, f"sat{max_batch}", plan.participants, backlog=backlog)
    load = LoadProcess(job, run.events.seen)
    load.start()
    try:
        await run.events.wait_for(1, plan.patience_s)
        first = next(iter(run.events.arrivals.values())).received_mono
        await asyncio.sleep(max(0.0, first + plan.warmup_s - time.monotonic()))
        before = await run.snapshot(load)
        marks = [(before.mono, before.frames)]
        for _ in range(plan.steady_intervals - 1):
            await asyncio.sleep(marks[-1][0] + plan.steady_interval_s - time.monotonic())
            marks.append((time.monotonic(), run.events.count))
        await asyncio.sleep(marks[-1][0] + plan.steady_interval_s - time.monotonic())
        after = await run.snapshot(load)
        marks.append((after.mono, after.frames))
    finally:
        load.stop()
    report = await load.wait()
    # Drain, so that the next phase starts with an empty queue.
    await run.events.wait_for(report.confirmed, plan.patience_s)
    seconds = after.mono - before.mono
    frames = after.frames - before.frames
    rates = [
        (count - earlier) / (mono - start)
        for (start, earlier), (mono, count) in itertools.pairwise(marks)
    ]
    return {
        "max_batch": max_batch,
        "frames_per_s": round(frames / seconds, 1),
        "frames_per_s_min": round(min(rates), 1),
        "frames_per_s_max": round(max(rates), 1),
        "window_s": round(seconds, 2),
        "frames_in_window": frames,
        "backlog": backlog,
        "load": asdict(report),
        "duplicates": run.events.duplicates,
        "worker": _worker_breakdown(before.metrics, after.metrics, seconds),
        "cpu_cores": cores_used(before.cpu, after.cpu, seconds),
    }


async def _latency(
    run: _Run, jpegs: Sequence[bytes], max_batch: int, rate_fps: float, share: float, plan: Plan
) -> dict[str, Any]:
    meeting = f"lat{max_batch}x{round(share * 100)}"
    already = run.events.count
    duration = plan.latency_warmup_s + plan.latency_steady_s
    job = LoadJob(
        run.url, jpegs, meeting, plan.participants, rate_fps=rate_fps, duration_s=duration
    )
    load = LoadProcess(job, run.events.seen)
    load.start()
    try:
        await run.events.wait_for(already + 1, plan.patience_s)
        await asyncio.sleep(plan.latency_warmup_s)
        before = await run.snapshot(load)
        # Just before the load ends, so that its process can still be measured.
        await asyncio.sleep(max(0.5, plan.latency_steady_s - 0.5))
        after = await run.snapshot(load)
        report = await load.wait(timeout_s=duration + plan.patience_s)
    finally:
        load.stop()
    await run.events.wait_for(already + report.confirmed, plan.patience_s)

    arrivals = [a for a in run.events.arrivals.values() if a.meeting_id == meeting]
    start_ms = min(a.capture_ms for a in arrivals) + plan.latency_warmup_s * 1000
    kept = [a for a in arrivals if a.capture_ms >= start_ms]
    ages = np.array([a.received_ms - a.capture_ms for a in kept])
    span_s = (max(a.capture_ms for a in kept) - min(a.capture_ms for a in kept)) / 1000
    p50, p95, p99 = np.percentile(ages, [50, 95, 99])
    seconds = after.mono - before.mono
    return {
        "max_batch": max_batch,
        "load_share": share,
        "target_fps": round(rate_fps, 1),
        "achieved_fps": round((len(kept) - 1) / span_s, 1) if span_s > 0 else None,
        "participants": plan.participants,
        "frames": len(kept),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(ages.max()), 1),
        "load": asdict(report),
        "duplicates": run.events.duplicates,
        "worker": _worker_breakdown(before.metrics, after.metrics, seconds),
        "cpu_cores": cores_used(before.cpu, after.cpu, seconds),
    }


def _worker_breakdown(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, Any]:
    """What the worker's own metrics say about the window: batches it formed and the
    share of wall time its batch loop spent decoding and in the model."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("batch_size_count")
    decodes = delta("decode_seconds_count")
    return {
        "frames_processed": int(delta("frames_processed_total")),
        "frames_stale": int(delta("frames_stale_total")),
        "mean_batch": round(delta("batch_size_sum") / batches, 2) if batches else None,
        "detect_ms_per_batch": (
            round(delta("inference_seconds_sum") / batches * 1000, 2) if batches else None
        ),
        "decode_ms_per_batch": (
            round(delta("decode_seconds_sum") / decodes * 1000, 2) if decodes else None
        ),
        "decode_share_of_wall": round(delta("decode_seconds_sum") / seconds, 3),
        "detect_share_of_wall": round(delta("inference_seconds_sum") / seconds, 3),
    }
