"""Benchmark of the frame pipeline: in-process ceiling, end-to-end capacity through
RabbitMQ, and latency at half that capacity. Prints a table and writes JSON.

    python -m bench.pipeline [--quick] [--out DIR]

1. In process: JPEG bytes → ``worker.decode.decode_into`` on a pool of decode threads
   → ``Detector.detect``, one batch after the other, as ``Worker._process`` does.
2. End to end: a load process publishes with ``FramePublisher`` as fast as the confirm
   window allows (a bounded backlog ahead of the events); a real worker process
   (``python -m memelearning worker``) consumes; a subscriber counts the frames with
   reaction events over a steady window after a warm-up.
3. Latency: participants simulated at a share (default half) of the capacity measured
   at ``--latency-batch``; the age of each frame when its event arrives.

The model is the colour plumbing model (``models.contract_model``): it follows the
Object Detection API contract and costs some real compute, but it is not a gesture
detector, so the figures are for the pipeline, not for a trained network. Each run uses
a fresh vhost that is deleted afterwards. Frames are real webcam frames from the shared
data and stay in memory: nothing here writes a frame anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
import tempfile
import time
import urllib.error
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.endtoend import run_batch_size
from bench.frames import SIGNS, describe_jpegs, load_jpegs
from bench.inprocess import InProcessJob, measure_in_child
from bench.machine import describe_machine, package_versions
from bench.plan import plan_for
from bench.report import format_report
from bench.settings import BenchSettings
from memelearning.logs import redact_url
from memelearning.management import ManagementClient
from memelearning.settings import SettingsError, load_settings
from worker.settings import WorkerSettings

SCHEMA_VERSION: Final = 1
DEFAULT_OUT: Final = Path(__file__).resolve().parent.parent / "var" / "bench"
# TensorFlow threads inside one model call: one per core of the 2-core machine the
# figures are for. Inter-op threads are left to TensorFlow, as the worker's default.
INTRA_OP_THREADS: Final = 2
# Long enough that a saturating backlog is never dropped as stale or expired.
_NEVER_STALE_MS: Final = 600_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="The broker: MEMELEARNING_BENCH_AMQP_URL and MEMELEARNING_BENCH_MANAGEMENT_URL "
        "(defaults: the local RabbitMQ). The user must be allowed to create vhosts.",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"folder for the JSON (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_sizes,
        default=(1, 8, 32),
        metavar="N,N,…",
        help="max_batch values to measure (default 1,8,32)",
    )
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=8,
        metavar="N",
        help="max_batch for the latency run; one of --batch-sizes (default 8)",
    )
    parser.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        metavar="SHARE",
        help="latency run load as a share of the measured capacity (default 0.5)",
    )
    parser.add_argument("--frames", type=int, help="frames held in memory (default 300, quick 100)")
    parser.add_argument(
        "--participants", type=int, default=8, help="simulated participants (default 8)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=WorkerSettings.model_fields["max_wait_ms"].default,
        help="the worker's MAX_WAIT_MS (default: the worker's default)",
    )
    return parser


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,32, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


async def run(args: argparse.Namespace, settings: BenchSettings) -> dict[str, Any]:
    management = ManagementClient(str(settings.amqp_url), str(settings.management_url))
    # Fails fast, before a minute of measuring, if the broker is not there.
    overview = await asyncio.to_thread(management.overview)
    started = datetime.now(UTC)
    machine = describe_machine()
    frame_count = args.frames or (100 if args.quick else 300)
    jpegs = load_jpegs(SIGNS, frame_count)
    plan = plan_for(args.quick, participants=args.participants, latency_load=args.latency_load)
    defaults = WorkerSettings.model_fields
    input_size: tuple[int, int] = defaults["input_size"].default
    decode_threads: int = defaults["decode_threads"].default

    with tempfile.TemporaryDirectory(prefix="memelearning-bench-") as scratch:
        model_dir = Path(scratch) / "colour-model"
        in_process = await asyncio.to_thread(
            measure_in_child,
            InProcessJob(
                model_dir=model_dir,
                jpegs=jpegs,
                batch_sizes=args.batch_sizes,
                intervals=plan.in_process_intervals,
                interval_s=plan.in_process_interval_s,
                input_size=input_size,
                max_frame_pixels=defaults["max_frame_pixels"].default,
                decode_threads=decode_threads,
                intra_op_threads=INTRA_OP_THREADS,
                inter_op_threads=0,
            ),
        )
        worker_settings: dict[str, object] = {
            "model_dir": model_dir,
            "max_wait_ms": args.max_wait_ms,
            "score_threshold": 0,
            "stale_after_ms": _NEVER_STALE_MS,
            "queue_ttl_ms": _NEVER_STALE_MS,
            "intra_op_threads": INTRA_OP_THREADS,
            "decode_threads": decode_threads,
            "drain_timeout_s": 10,
        }
        end_to_end = []
        latency = None
        in_process_fps = {r["max_batch"]: r["frames_per_s"] for r in in_process["results"]}
        for size in args.batch_sizes:
            capacity, measured = await run_batch_size(
                management,
                jpegs=jpegs,
                label=in_process["model"]["labels"][0],
                max_batch=size,
                worker_settings=worker_settings,
                plan=plan,
                log_dir=Path(scratch),
                measure_latency=size == args.latency_batch,
            )
            capacity["ratio_to_in_process"] = round(
                capacity["frames_per_s"] / in_process_fps[size], 3
            )
            end_to_end.append(capacity)
            latency = measured or latency

    return {
        "benchmark": "pipeline",
        "schema_version": SCHEMA_VERSION,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "command": " ".join(["python -m bench.pipeline", *map(shlex.quote, sys.argv[1:])]),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": machine,
        "versions": {
            **package_versions(),
            "rabbitmq": overview.get("rabbitmq_version"),
            "erlang": overview.get("erlang_version"),
        },
        "broker": redact_url(str(settings.amqp_url)),
        "model": in_process["model"],
        "threads": in_process["threads"],
        "frames": {"source": "shared/data/signs", **describe_jpegs(jpegs)},
        "plan": asdict(plan),
        "worker_settings": {k: v for k, v in worker_settings.items() if k != "model_dir"},
        "in_process": in_process["results"],
        "end_to_end": end_to_end,
        "latency": latency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.latency_batch not in args.batch_sizes:
        parser.error(f"--latency-batch {args.latency_batch} is not in --batch-sizes")
    if not 0 < args.latency_load <= 1:
        parser.error("--latency-load must be in (0, 1]")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(BenchSettings)
    except SettingsError as exc:
        print(f"bench.pipeline: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(args, settings))
    except (OSError, urllib.error.URLError) as exc:
        # Most often the broker or its management API is not running.
        print(
            f"bench.pipeline: cannot use RabbitMQ at {redact_url(str(settings.amqp_url))} "
            f"(management API {settings.management_url}): {exc}",
            file=sys.stderr,
        )
        return 1
    print(format_report(result))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.out / f"pipeline-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
