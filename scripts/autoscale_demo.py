"""Scaling workers by queue depth, shown: a backlog drained by one fixed worker, then
the same backlog drained by a small controller that applies the chart's KEDA rule.

Run from the repository root (it imports the ``bench`` helpers)::

    python -m scripts.autoscale_demo --out docs

The rule is the one in ``charts/memelearning/templates/keda.yaml`` (``mode:
QueueLength``, HPA behaviour from ``values.yaml``): desired replicas =
ceil(queue length / value), 0 while the length is at or below the activation value
and min is 0, clamped to [min, max]; scale-up at once by at most max(100 %, 4 pods)
per poll; scale-down only to the highest desire of the last stabilisation window and
by at most one worker per scale-down period. The queue length is counted as KEDA's
``protocol: http`` mode counts it, ready + unacked, but read fresh instead of from the
management API's statistics (which lag ~5 s): ready frames from a passive queue
declare, unacked frames from the sum of the workers' own
``memelearning_worker_frames_in_flight`` gauges. The time scales (poll 2 s instead of
10 s, stabilisation 10 s instead of 120 s) are shortened so a run takes minutes.

Frames are real webcam frames from the shared data folder, held in memory only; the
model is the colour plumbing model, so the figures are about plumbing, not gestures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aio_pika
from prometheus_client.parser import text_string_to_metric_families

from bench.frames import SIGNS, load_jpegs
from bench.worker_process import WorkerProcess
from memelearning.management import ManagementClient
from publisher import Frame, FramePublisher, PublisherSettings
from worker.settings import WorkerSettings
from worker.topology import declare_dead_letters, declare_frames_queue

log = logging.getLogger("autoscale_demo")

_ROOT: Final = Path(__file__).resolve().parent.parent
# Long enough that the backlog is processed, never expired or dropped as stale.
_NEVER_STALE_MS: Final = 600_000
_PARTICIPANTS: Final = 16
_DISTINCT_FRAMES: Final = 400


@dataclass(frozen=True)
class Rule:
    """The KEDA trigger and HPA behaviour of the chart, on a shorter time scale."""

    queue_length: int = 64  # keda.queueLength
    activation: int = 0  # keda.activationQueueLength
    min_replicas: int = 1  # keda.minReplicaCount
    max_replicas: int = 4  # keda.maxReplicaCount is 8; this machine has 2 cores
    poll_s: float = 2.0  # keda.pollingInterval is 10
    stabilisation_s: float = 10.0  # behavior.scaleDown.stabilizationWindowSeconds is 120
    scale_down_period_s: float = 5.0  # behavior.scaleDown policy: 1 pod per 60 s

    def desired(self, depth: int) -> int:
        if depth <= self.activation and self.min_replicas == 0:
            return 0
        wanted = math.ceil(depth / self.queue_length)
        return max(self.min_replicas, min(self.max_replicas, wanted))

    def scale_up_limit(self, current: int) -> int:
        # behavior.scaleUp: Percent 100 or Pods 4 per period, selectPolicy Max.
        return max(current * 2, current + 4)


@dataclass
class Sample:
    t_s: float
    ready: int  # frames ready in the queue
    unacked: int  # frames held by workers
    replicas: int  # worker processes the controller wants running (starting or warm)
    warm: int  # of those, ready and consuming


@dataclass
class RunResult:
    name: str
    drain_s: float | None
    max_replicas: int
    samples: list[Sample] = field(default_factory=list)


class Fleet:
    """Worker processes, started and stopped without blocking the control loop."""

    def __init__(self, settings: dict[str, object], log_dir: Path) -> None:
        self._settings = settings
        self._log_dir = log_dir
        self._started = 0
        self.workers: list[WorkerProcess] = []
        self._warm: set[WorkerProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def warm(self) -> int:
        return len(self._warm)

    def scale_to(self, replicas: int) -> None:
        while len(self.workers) < replicas:
            self._started += 1
            worker = WorkerProcess(self._settings, self._log_dir / f"worker-{self._started}.log")
            self.workers.append(worker)
            self._spawn(self._start(worker))
        while len(self.workers) > replicas:
            # The newest first: it is the likeliest to be still loading its model.
            worker = self.workers.pop()
            self._warm.discard(worker)
            # SIGTERM: the worker stops consuming and finishes what it holds.
            self._spawn(worker.stop())

    async def in_flight(self) -> int:
        warm = [w for w in self.workers if w in self._warm]
        counts = await asyncio.gather(*(asyncio.to_thread(_in_flight, w.port) for w in warm))
        return sum(counts)

    async def close(self) -> None:
        self.scale_to(0)
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def _start(self, worker: WorkerProcess) -> None:
        await worker.__aenter__()
        if worker in self.workers:
            self._warm.add(worker)
        else:  # scaled away while it was loading
            await worker.stop()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _in_flight(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "memelearning_worker_frames_in_flight":
            return sum(int(s.value) for s in family.samples)
    return 0


async def _ready_frames(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    return int(count or 0)


async def publish_backlog(url: str, jpegs: list[bytes], count: int) -> float:
    settings = PublisherSettings.model_validate(
        {
            "amqp_url": url,
            "connection_name": "autoscale-demo",
            "max_frame_age_ms": _NEVER_STALE_MS,
        }
    )
    started = time.monotonic()
    async with FramePublisher(settings) as publisher:
        for i in range(count):
            await publisher.publish(
                Frame(
                    meeting_id="autoscale-demo",
                    participant_id=f"p{i % _PARTICIPANTS}",
                    capture_ms=int(time.time() * 1000),
                    sequence=i // _PARTICIPANTS,
                    jpeg=jpegs[i % len(jpegs)],
                )
            )
    return time.monotonic() - started


async def run(
    name: str,
    rule: Rule,
    *,
    url: str,
    worker_settings: dict[str, object],
    jpegs: list[bytes],
    frames: int,
    log_dir: Path,
    autoscale: bool,
    limit_s: float,
) -> RunResult:
    # Not a robust connection: its channel caches declarations, passive ones too, so
    # the ready count would never change.
    connection = await aio_pika.connect(url + "?name=autoscale-demo-controller")
    async with connection:
        channel = await connection.channel()
        settings = WorkerSettings.model_validate({"amqp_url": url, **worker_settings})
        # The worker topology first, so the backlog is routable before any worker runs.
        await declare_dead_letters(channel, settings)
        await declare_frames_queue(channel, settings)
        publish_s = await publish_backlog(url, jpegs, frames)
        log.info("%s: %d frames published in %.1f s", name, frames, publish_s)

        fleet = Fleet({**worker_settings, "amqp_url": url}, log_dir)
        result = RunResult(name, None, 0)
        history: deque[tuple[float, int]] = deque()
        last_scale_down = -math.inf
        started = time.monotonic()
        try:
            while True:
                now = time.monotonic() - started
                ready = await _ready_frames(channel, settings.queue)
                unacked = await fleet.in_flight()
                depth = ready + unacked
                if autoscale:
                    desired = rule.desired(depth)
                    history.append((now, desired))
                    while history[0][0] < now - rule.stabilisation_s:
                        history.popleft()
                    current = len(fleet.workers)
                    if desired > current:
                        fleet.scale_to(min(desired, rule.scale_up_limit(current)))
                    else:
                        floor = max(d for _, d in history)
                        if floor < current and now - last_scale_down >= rule.scale_down_period_s:
                            fleet.scale_to(current - 1)
                            last_scale_down = now
                else:
                    fleet.scale_to(1)
                result.max_replicas = max(result.max_replicas, len(fleet.workers))
                result.samples.append(
                    Sample(round(now, 2), ready, unacked, len(fleet.workers), fleet.warm)
                )
                if depth == 0 and result.drain_s is None:
                    result.drain_s = round(now, 1)
                    log.info("%s: drained in %.1f s", name, now)
                settled = not autoscale or len(fleet.workers) <= rule.min_replicas
                if (result.drain_s is not None and settled) or now > limit_s:
                    break
                await asyncio.sleep(rule.poll_s if autoscale else 1.0)
        finally:
            await fleet.close()
    return result


def plot(results: list[RunResult], path: Path, frames: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(8, 5.5), sharex=True, sharey=True)
    for ax, result in zip(axes, results, strict=True):
        t = [s.t_s for s in result.samples]
        ax.plot(t, [s.ready + s.unacked for s in result.samples], color="tab:blue")
        ax.set_ylabel("queue length\n(ready + unacked)", color="tab:blue")
        drained = "not drained" if result.drain_s is None else f"drained in {result.drain_s:g} s"
        ax.set_title(f"{result.name}: {drained}", fontsize=10)
        right = ax.twinx()
        right.step(t, [s.replicas for s in result.samples], where="post", color="tab:orange")
        right.step(
            t, [s.warm for s in result.samples], where="post", color="tab:green", linestyle="--"
        )
        right.set_ylim(0, max(r.max_replicas for r in results) + 0.5)
        right.set_ylabel("workers", color="tab:orange")
        right.legend(["replicas", "warm (consuming)"], loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds since the backlog was published")
    fig.suptitle(f"{frames} frames, colour plumbing model, 2-core machine", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def export_model(model_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "memelearning", "models", "export-plumbing", str(model_dir)],
        cwd=_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    management = ManagementClient(args.amqp_url, args.management_url)
    rule = Rule(min_replicas=args.min_replicas, max_replicas=args.max_replicas)
    jpegs = load_jpegs(SIGNS, _DISTINCT_FRAMES)
    with tempfile.TemporaryDirectory(prefix="memelearning-autoscale-") as scratch:
        model_dir = Path(scratch) / "colour-model"
        await asyncio.to_thread(export_model, model_dir)
        worker_settings: dict[str, object] = {
            "model_dir": model_dir,
            "stale_after_ms": _NEVER_STALE_MS,
            "queue_ttl_ms": _NEVER_STALE_MS,
            "queue_max_length": args.frames * 2,
            # One TensorFlow thread per worker: several share the two cores.
            "intra_op_threads": 1,
            "drain_timeout_s": 10,
        }
        results = []
        for name, autoscale in (("1 fixed worker", False), ("autoscaled", True)):
            vhost = management.create_vhost("autoscale-demo", "memelearning autoscale demo")
            try:
                results.append(
                    await run(
                        name,
                        rule,
                        url=management.url_for(vhost),
                        worker_settings=worker_settings,
                        jpegs=jpegs,
                        frames=args.frames,
                        log_dir=Path(scratch),
                        autoscale=autoscale,
                        limit_s=args.limit_s,
                    )
                )
            finally:
                management.delete_vhost(vhost)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "autoscale.png", args.frames)
    report = {
        "frames": args.frames,
        "rule": asdict(rule),
        "queue_length_source": "passive queue declare (ready) + workers' frames_in_flight gauges",
        "runs": [asdict(r) for r in results],
    }
    (args.out / "autoscale.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.autoscale_demo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--frames", type=int, default=6000, help="backlog size (default 6000)")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--limit-s", type=float, default=120, help="give up on a run after this")
    parser.add_argument("--out", type=Path, default=_ROOT / "var" / "autoscale")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--management-url", default="http://127.0.0.1:15672")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = asyncio.run(main_async(args))
    for result in report["runs"]:
        print(
            f"{result['name']}: drained in {result['drain_s']} s, "
            f"max {result['max_replicas']} worker(s)"
        )
    print(f"wrote {args.out / 'autoscale.png'} and {args.out / 'autoscale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
