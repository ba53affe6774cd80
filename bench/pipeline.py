"""Benchmark of the detector and the frame pipeline, from the bare model to the fleet.
Prints a table and writes JSON and PNG plots.

    python -m bench.pipeline [--quick] [--model DIR] [--out DIR]

1. Bare model: ``detect`` on frames decoded beforehand, at batch sizes 1-32, for
   both runtimes (TensorFlow SavedModel, LiteRT ``model.tflite``).
2. In process: JPEG bytes → ``worker.decode.decode_fitted`` on a pool of decode threads
   → ``detect`` with the worker's runtime, one batch after the other, as ``Worker``
   does; its ratio to the bare model.
3. End to end: a load process publishes with ``FramePublisher`` as fast as the confirm
   window allows (a bounded backlog ahead of the events); a real worker process
   (``python -m memelearning worker``) consumes; a subscriber counts the frames with
   reaction events over a steady window after a warm-up; its ratio to in process.
4. Seed-style baseline: the same model and runtime behind a one-frame-per-request
   worker (max_batch 1, prefetch 1, one decode thread), measured the same way.
5. Latency: participants simulated at shares (25/50/90 %) of the capacity measured at
   ``--latency-batch``; the age of each frame when its event arrives.
6. Processes and threads: N worker processes with one model thread each on one
   queue, against the one worker of 3 with N threads.
7. The physical limit: each network inside the model timed alone (one thread, bare,
   pre-cropped input), summed over the hands in the frames used and spread over the
   cores (``bench.networks``); every stage is reported as a share of it.

The default model is the colour plumbing model (``models.serving.contract_model``, exported
with its TFLite file): it follows the Object Detection API contract and costs some real
compute, but it is not a gesture detector, so its figures are for the pipeline, not
for a trained network; ``--model DIR`` runs everything on an exported model instead.
Each end-to-end run uses a fresh vhost that is deleted afterwards. Frames are real
webcam frames from the shared data and stay in memory: nothing here writes a frame.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import pstats
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
from bench.layout import Layout, compare_layouts
from bench.machine import describe_machine, package_versions
from bench.networks import (
    find_networks,
    network_files,
    physical_limit,
    time_model,
    time_networks,
)
from bench.plan import plan_for
from bench.plots import plot_result
from bench.report import format_report
from bench.settings import BenchSettings
from memelearning.logs import redact_url
from memelearning.management import ManagementClient
from memelearning.settings import SettingsError, load_settings
from worker.litert import TFLITE_FILE, litert_available
from worker.settings import WorkerSettings

SCHEMA_VERSION: Final = 3
DEFAULT_OUT: Final = Path(__file__).resolve().parent.parent / "var" / "bench"
# TensorFlow threads inside one model call: one per core of the 2-core machine the
# figures are for. Inter-op threads are left to TensorFlow, as the worker's default.
INTRA_OP_THREADS: Final = 2
LITERT_THREADS: Final = 2
COLOUR_MODEL: Final = "colour-plumbing"
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
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for the JSON and the plots (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="an exported model directory (saved_model.pb, label_map.pbtxt, optionally "
        "model.tflite); default: the colour plumbing model, exported with its TFLite file",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "tensorflow", "litert"),
        default="auto",
        help="the worker's runtime for in-process and end-to-end runs (default auto: "
        "litert when the model has model.tflite)",
    )
    parser.add_argument(
        "--bare-batch-sizes",
        type=_sizes,
        metavar="N,N,…",
        help="batch sizes for the bare model (default 1,4,8,16,32; quick 1,8)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_sizes,
        default=(1, 8, 32),
        metavar="N,N,…",
        help="max_batch values for in process and end to end (default 1,8,32)",
    )
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=8,
        metavar="N",
        help="max_batch for the latency, baseline-ratio and scaling runs; one of "
        "--batch-sizes (default 8)",
    )
    parser.add_argument(
        "--latency-loads",
        type=_shares,
        default=(0.25, 0.5, 0.9),
        metavar="SHARE,…",
        help="latency runs, as shares of the measured capacity (default 0.25,0.5,0.9)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the one-frame-per-request baseline"
    )
    parser.add_argument(
        "--scaling-workers",
        type=int,
        default=2,
        metavar="N",
        help="worker processes for the scaling run (default 2; 0 or 1 skips it)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the worker at --latency-batch under cProfile and write the functions its "
        "event loop spends most time in (pipeline-<time>-profile.txt)",
    )
    parser.add_argument(
        "--latency-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the latency loads against 1 worker (default) or against the "
        "--scaling-workers processes",
    )
    parser.add_argument(
        "--fetch-networks",
        action="store_true",
        help="download the model's bare networks (pip download of MediaPipe's wheel) when "
        "they are not cached; without them the physical limit is reported as unknown",
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


def _shares(text: str) -> tuple[float, ...]:
    try:
        shares = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected shares like 0.25,0.5, got {text!r}") from None
    if not shares or not all(0 < share <= 1 for share in shares):
        raise argparse.ArgumentTypeError(f"shares must be in (0, 1], got {text!r}")
    return shares


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
    plan = plan_for(args.quick, participants=args.participants)
    defaults = WorkerSettings.model_fields
    input_size: tuple[int, int] = defaults["input_size"].default
    decode_threads: int = defaults["decode_threads"].default
    bare_sizes = args.bare_batch_sizes or ((1, 8) if args.quick else (1, 4, 8, 16, 32))

    with tempfile.TemporaryDirectory(prefix="memelearning-bench-") as scratch:
        model_dir = args.model.resolve() if args.model else Path(scratch) / "colour-model"
        has_tflite = args.model is None or (model_dir / TFLITE_FILE).is_file()
        litert = has_tflite and litert_available()
        runtime = args.runtime if args.runtime != "auto" else ("litert" if litert else "tensorflow")
        in_process = await asyncio.to_thread(
            measure_in_child,
            InProcessJob(
                model_dir=model_dir,
                export_colour_model=args.model is None,
                jpegs=jpegs,
                batch_sizes=args.batch_sizes,
                bare_runtimes=("tensorflow", "litert") if litert else ("tensorflow",),
                bare_batch_sizes=bare_sizes,
                runtime=runtime,
                litert_threads=LITERT_THREADS,
                intervals=plan.in_process_intervals,
                interval_s=plan.in_process_interval_s,
                input_size=input_size,
                max_frame_pixels=defaults["max_frame_pixels"].default,
                decode_threads=decode_threads,
                intra_op_threads=INTRA_OP_THREADS,
                inter_op_threads=0,
                keep_detected=args.model is not None,
            ),
        )
        layouts: list[dict[str, Any]] = []
        if runtime == "litert" and args.scaling_workers > 1:
            n = args.scaling_workers
            layouts = await asyncio.to_thread(
                compare_layouts,
                model_dir,
                [jpegs[i] for i in in_process["kept_frames"]],
                # One process with a model thread per core, against one process per
                # core (with one or two decode threads each).
                [Layout(1, n, decode_threads), Layout(n, 1, 1), Layout(n, 1, 2)],
                max_batch=args.latency_batch,
                rounds=2 if args.quick else 5,
                seconds=1.0 if args.quick else 4.0,
                max_frame_pixels=defaults["max_frame_pixels"].default,
            )
        # The end-to-end phases send only frames that give an event to count.
        jpegs = [jpegs[i] for i in in_process["kept_frames"]]
        # After the child has exited, so that the networks have the cores to themselves.
        limit = await asyncio.to_thread(
            _measure_limit,
            model_dir if args.model else None,
            jpegs,
            in_process["frame_hands"],
            in_process["frame_faces"],
            fetch=args.fetch_networks,
            seconds=1.0 if args.quick else 4.0,
            cores=machine["usable_cpus"],
        )
        worker_settings: dict[str, object] = {
            "model_dir": model_dir,
            "runtime": runtime,
            "litert_threads": LITERT_THREADS,
            "max_wait_ms": args.max_wait_ms,
            "score_threshold": 0,
            "stale_after_ms": _NEVER_STALE_MS,
            "queue_ttl_ms": _NEVER_STALE_MS,
            "intra_op_threads": INTRA_OP_THREADS,
            "decode_threads": decode_threads,
            "drain_timeout_s": 10,
        }
        model = in_process["model"]
        # The colour model gives every frame an event per label: count one label only.
        label = model["labels"][0] if model["name"] == COLOUR_MODEL else None
        common: dict[str, Any] = {
            "jpegs": jpegs,
            "label": label,
            "plan": plan,
            "log_dir": Path(scratch),
        }
        bare_fps = {(r["runtime"], r["batch"]): r["frames_per_s"] for r in in_process["bare"]}
        for row in in_process["results"]:
            bare = bare_fps.get((runtime, row["max_batch"]))
            row["ratio_to_bare"] = round(row["frames_per_s"] / bare, 3) if bare else None
        in_process_fps = {r["max_batch"]: r["frames_per_s"] for r in in_process["results"]}

        end_to_end = []
        latency: list[dict[str, Any]] = []
        profile_stats = Path(scratch) / "worker.pstats"
        for size in args.batch_sizes:
            capacity, measured = await run_batch_size(
                management,
                max_batch=size,
                worker_settings=worker_settings,
                latency_loads=(
                    args.latency_loads
                    if size == args.latency_batch and args.latency_workers == 1
                    else ()
                ),
                profile_path=profile_stats if args.profile and size == args.latency_batch else None,
                **common,
            )
            capacity["ratio_to_in_process"] = round(
                capacity["frames_per_s"] / in_process_fps[size], 3
            )
            end_to_end.append(capacity)
            latency += measured

        best = max(end_to_end, key=lambda row: row["frames_per_s"])
        baseline: dict[str, Any] | None = None
        if not args.no_baseline:
            # The seed service's shape: one frame per request, nothing batched or
            # overlapped: one frame in flight, one decode thread, one model call each.
            seed_settings = {**worker_settings, "prefetch": 1, "decode_threads": 1}
            baseline, _ = await run_batch_size(
                management, max_batch=1, worker_settings=seed_settings, name="seed", **common
            )
            baseline["ours_frames_per_s"] = best["frames_per_s"]
            baseline["ours_max_batch"] = best["max_batch"]
            baseline["ratio_ours_over_baseline"] = round(
                best["frames_per_s"] / baseline["frames_per_s"], 2
            )

        profile = _profile_text(profile_stats) if args.profile else None
        scaling = None
        if args.scaling_workers > 1:
            # One thread per model call each, so that N workers do not oversubscribe
            # the cores N times over.
            per_worker = {**worker_settings, "litert_threads": 1, "intra_op_threads": 1}
            many, measured = await run_batch_size(
                management,
                max_batch=args.latency_batch,
                worker_settings=per_worker,
                workers=args.scaling_workers,
                latency_loads=(
                    args.latency_loads if args.latency_workers == args.scaling_workers else ()
                ),
                name="scaling",
                **common,
            )
            latency += measured
            one = next(r for r in end_to_end if r["max_batch"] == args.latency_batch)
            scaling = {
                "max_batch": args.latency_batch,
                "one_worker_frames_per_s": one["frames_per_s"],
                "workers": args.scaling_workers,
                "threads_per_worker": 1,
                "frames_per_s": many["frames_per_s"],
                "ratio_to_one_worker": round(many["frames_per_s"] / one["frames_per_s"], 2),
                "run": many,
            }
            if baseline is not None:
                # The baseline's ratio counts whichever shape serves best on this machine.
                baseline["ratio_processes_over_baseline"] = round(
                    many["frames_per_s"] / baseline["frames_per_s"], 2
                )

    result = {
        "benchmark": "pipeline",
        "schema_version": SCHEMA_VERSION,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "command": " ".join(["python -m bench.pipeline", *map(shlex.quote, sys.argv[1:])]),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": machine,
        "gpu": None,
        "versions": {
            **package_versions(),
            "rabbitmq": overview.get("rabbitmq_version"),
            "erlang": overview.get("erlang_version"),
        },
        "broker": redact_url(str(settings.amqp_url)),
        "model": {**model, "dir": str(args.model) if args.model else None},
        "threads": in_process["threads"],
        "frames": {
            "source": "shared/data/signs",
            "loaded": frame_count,
            "with_a_detection": len(in_process["kept_frames"]),
            **describe_jpegs(jpegs),
        },
        "plan": asdict(plan),
        "worker_settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in worker_settings.items()
            if k != "model_dir"
        },
        "bare": in_process["bare"],
        "in_process": in_process["results"],
        "end_to_end": end_to_end,
        "baseline": baseline,
        "latency": latency,
        "scaling": scaling,
        "layouts": layouts,
        "networks": limit["networks"],
        "limit": limit["limit"],
        "profile": profile,
    }
    add_limit_ratios(result)
    return result


def _measure_limit(
    model_dir: Path | None,
    jpegs: list[bytes],
    hands: list[int] | None,
    faces: list[int] | None,
    *,
    fetch: bool,
    seconds: float,
    cores: int,
) -> dict[str, Any]:
    """The bare networks' timings and the physical limit, or why it is unknown."""

    def unknown(reason: str) -> dict[str, Any]:
        return {"networks": [], "limit": {"frames_per_s": None, "unknown": reason}}

    if model_dir is None or hands is None:
        return unknown("the plumbing model has no networks of MediaPipe's to time")
    if not litert_available():
        return unknown("ai-edge-litert is not installed, which times the networks")
    try:
        metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return unknown(f"no readable model.json: {exc}")
    files = network_files(metadata) if isinstance(metadata, dict) else []
    if not files:
        return unknown("model.json names no base networks (base_models.files)")
    paths = find_networks(files, fetch=fetch)
    if isinstance(paths, str):
        return unknown(paths)
    import numpy as np

    from worker.decode import decode_fitted

    height, width = metadata.get("input_size") or (480, 640)
    fit = metadata.get("frame_fit", "stretch")
    frames = np.empty((len(jpegs), height, width, 3), np.uint8)
    for index, jpeg in enumerate(jpegs):
        decode_fitted(jpeg, frames[index], max_pixels=1 << 30, fit=fit)
    timings = time_networks(paths, frames[0], seconds=seconds)
    limit = physical_limit(timings, hands, cores=cores, faces=faces)
    # The same frames through the whole model, at one thread and at one per core.
    model = time_model(model_dir, frames, sorted({1, cores}), seconds=2 * seconds)
    limit["model_ms_per_frame_by_threads"] = model["wall_ms"]
    limit["model_cpu_ms_per_frame_by_threads"] = model["cpu_ms"]
    limit["model_over_networks_one_thread"] = round(
        model["cpu_ms"][1] / limit["network_ms_per_frame"], 2
    )
    return {"networks": [asdict(t) for t in timings], "limit": limit}


def add_limit_ratios(result: dict[str, Any]) -> None:
    """Every stage's frames per second as a share of the physical limit (None when the
    limit is unknown)."""
    limit = result["limit"]["frames_per_s"]

    def ratio(fps: float | None) -> float | None:
        return round(fps / limit, 3) if limit and fps is not None else None

    for key in ("bare", "in_process", "end_to_end", "layouts"):
        for row in result[key]:
            row["ratio_to_limit"] = ratio(row["frames_per_s"])
    for run in result["latency"]:
        run["ratio_to_limit"] = ratio(run["achieved_fps"])
    for key in ("baseline", "scaling"):
        if result[key]:
            result[key]["ratio_to_limit"] = ratio(result[key]["frames_per_s"])


def _profile_text(path: Path, top: int = 30) -> str | None:
    """The worker main thread's costliest functions (own time), as pstats prints them;
    the decode and model threads are in the worker's own timers instead."""
    if not path.is_file():
        return None
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.latency_batch not in args.batch_sizes:
        parser.error(f"--latency-batch {args.latency_batch} is not in --batch-sizes")
    if args.latency_workers not in (1, args.scaling_workers):
        parser.error("--latency-workers must be 1 or --scaling-workers")
    if args.model is not None and not (args.model / "saved_model.pb").is_file():
        parser.error(f"--model {args.model}: no saved_model.pb there")
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
            f"(management API {settings.management_url}): {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(format_report(result))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.out / f"pipeline-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {path}")
    if result["profile"]:
        profile = path.with_name(path.stem + "-profile.txt")
        profile.write_text(result["profile"], encoding="utf-8")
        print(f"written: {profile}")
    plot = plot_result(result, path.with_suffix(".png"))
    print(f"written: {plot}" if plot else "no plot: matplotlib is not installed (extra bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
