"""A worker's footprint without a Docker engine: the installed size of a Python
environment and the worker's resident memory while it serves a saturating load.

    python -m venv --without-pip /tmp/lite
    pip --python /tmp/lite/bin/python install '.[worker-lite]'
    python -m bench.footprint --python /tmp/lite/bin/python --runtime litert
    python -m bench.footprint --runtime tensorflow      # this environment, TensorFlow

The worker runs from ``--python`` (an environment of its own: what an image would
hold) with the shipped model; this process publishes real webcam frames at more than
it can serve for ``--seconds`` (the queue's TTL sheds the rest) and reads the worker's
``VmRSS`` from /proc every 0.2 s. It prints the environment's size (``du`` of its
prefix), the worker's median and peak RSS over the load, and how many frames it served.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.frames import SIGNS, load_jpegs
from bench.load import LoadJob, LoadProcess
from bench.settings import BenchSettings
from bench.worker_process import WorkerProcess
from memelearning.management import ManagementClient
from memelearning.settings import load_settings
from worker.settings import DEFAULT_MODEL_DIR


def installed_mib(prefix: Path) -> float:
    """``du`` of an environment's prefix, in MiB (what the files take on disk)."""
    output = subprocess.run(
        ["du", "-sk", str(prefix)], capture_output=True, text=True, check=True
    ).stdout
    return round(int(output.split()[0]) / 1024, 1)


def _prefix(python: Path) -> Path:
    command = [str(python), "-c", "import sys; print(sys.prefix)"]
    return Path(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(BenchSettings)
    management = ManagementClient(str(settings.amqp_url), str(settings.management_url))
    vhost = await asyncio.to_thread(management.create_vhost, "bench", "footprint")
    python = Path(args.python)
    prefix = await asyncio.to_thread(_prefix, python)
    try:
        url = management.url_for(vhost)
        worker_settings = {
            "amqp_url": url,
            "model_dir": args.model,
            "runtime": args.runtime,
            "worker_id": f"footprint-{args.runtime}",
        }
        with tempfile.TemporaryDirectory(prefix="memelearning-footprint-") as scratch:
            worker = WorkerProcess(worker_settings, Path(scratch) / "worker.log", python=python)
            async with worker:
                before = await worker.metrics()
                idle = rss_mib(worker.pid)
                job = LoadJob(
                    url,
                    load_jpegs(SIGNS, 100),
                    "footprint",
                    participants=8,
                    rate_fps=args.fps,
                    duration_s=args.seconds,
                )
                # Paced, so nothing reads it; it must outlive the load process's start.
                seen = multiprocessing.get_context("spawn").Value("q", 0)
                load = LoadProcess(job, seen)
                load.start()
                samples = []
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline:
                    value = rss_mib(worker.pid)
                    if value is not None:
                        samples.append(value)
                    await asyncio.sleep(0.2)
                await load.wait(timeout_s=args.seconds + 60)
                after = await worker.metrics()
    finally:
        await asyncio.to_thread(management.delete_vhost, vhost)
    served = after.get("frames_processed_total", 0.0) - before.get("frames_processed_total", 0.0)
    return {
        "python": str(python),
        "prefix": str(prefix),
        "installed_mib": await asyncio.to_thread(installed_mib, prefix),
        "runtime": args.runtime,
        "rss_idle_mib": round(idle, 1) if idle is not None else None,
        "rss_median_mib": round(statistics.median(samples), 1) if samples else None,
        "rss_peak_mib": round(max(samples), 1) if samples else None,
        "frames_served": int(served),
        "frames_per_s": round(served / args.seconds, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.add_argument("--python", default=sys.executable, help="the worker's interpreter")
    parser.add_argument("--runtime", choices=("litert", "tensorflow"), default="litert")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    parser.add_argument("--fps", type=float, default=150.0, help="frames/s published")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
