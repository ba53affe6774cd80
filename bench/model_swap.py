"""How long a hot swap takes: from the control message to the worker serving the new
version, for the shipped gesture model, under a steady load of real webcam frames.

    python -m bench.model_swap --runtime litert --swaps 5
    python -m bench.model_swap --runtime tensorflow --swaps 5

A fresh vhost and a temporary model repository (copies of models/default as versions
1..N+1) for each run; one `memelearning worker` process serving it, while participants
stream frames of ``signs/`` at a steady rate. Each swap is what `memelearning models
promote` does (write serving.json, publish the control message); the run then reads
the worker's /metrics until it serves the new version alone. Two figures per swap:

- worker: the worker's own ``memelearning_worker_model_swap_seconds`` (control message
  received → the new version serves; load and warm-up included);
- promote → serving: from before serving.json is written to the first /metrics read
  that shows the new version (adds the broker hop and up to one 20 ms poll);
- promote → unloaded: until the old version is unloaded too (it finishes the batch it
  has in the model first) and only one model is loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aio_pika
from prometheus_client.parser import text_string_to_metric_families

from bench.frames import SIGNS, load_jpegs
from bench.machine import describe_machine
from bench.settings import BenchSettings
from bench.worker_process import WorkerProcess
from memelearning.management import ManagementClient
from memelearning.settings import load_settings
from publisher.protocol import FRAME_ROUTING_KEY, FRAMES_EXCHANGE, Frame
from worker.control import notify_workers
from worker.models_settings import ModelsSettings
from worker.repository import ModelRepository, ServingState, promote
from worker.settings import DEFAULT_MODEL_DIR

# The model card and its evaluation are not part of serving.
_NOT_SERVED = shutil.ignore_patterns("evaluation", "MODEL_CARD.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.model_swap",
        description="Measure hot swaps of the shipped model under a steady load.",
    )
    parser.add_argument("--runtime", choices=["litert", "tensorflow"], default="litert")
    parser.add_argument("--swaps", type=int, default=5, help="swaps to measure (default 5)")
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--fps", type=float, default=4.0, help="frames/s per participant")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="the model to copy")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser


async def run(args: argparse.Namespace, settings: BenchSettings) -> dict[str, Any]:
    management = ManagementClient(str(settings.amqp_url), str(settings.management_url))
    vhost = await asyncio.to_thread(management.create_vhost, "swap", "memelearning swap bench")
    try:
        with tempfile.TemporaryDirectory(prefix="swap-bench-") as tmp:
            repository = _repository(Path(tmp), args.model, args.swaps + 1)
            return await _measure(args, management.url_for(vhost), repository, Path(tmp))
    finally:
        await asyncio.to_thread(management.delete_vhost, vhost)


def _repository(root: Path, model: Path, versions: int) -> ModelRepository:
    folder = root / "models" / "gestures"
    folder.mkdir(parents=True)
    for version in range(1, versions + 1):
        target = folder / str(version)
        shutil.copytree(model, target, ignore=_NOT_SERVED)
        metadata = json.loads((target / "model.json").read_text())
        metadata.update(name="gestures", version=str(version))
        (target / "model.json").write_text(json.dumps(metadata))
    repository = ModelRepository(folder)
    repository.write_state(ServingState(revision=1, default="1"))
    return repository


async def _measure(
    args: argparse.Namespace, url: str, repository: ModelRepository, tmp: Path
) -> dict[str, Any]:
    jpegs = load_jpegs(SIGNS, 32)
    worker_settings = {"amqp_url": url, "model_dir": repository.path, "runtime": args.runtime}
    async with WorkerProcess(worker_settings, tmp / "worker.log") as worker:
        stop = asyncio.Event()
        load = asyncio.create_task(_steady_load(url, jpegs, args, stop))
        swaps = []
        try:
            for version in range(2, args.swaps + 2):
                # A steady stretch between swaps, as in production.
                await asyncio.sleep(3)
                before = _metrics(worker.port)
                started = time.perf_counter()
                state, _ = promote(repository, str(version))
                repository.write_state(state)
                await notify_workers(ModelsSettings(amqp_url=url), repository.name, state)
                await _until(worker.port, f"version={version}")
                serving = time.perf_counter() - started
                await _until(worker.port, "memelearning_worker_models_loaded")
                unloaded = time.perf_counter() - started
                # The worker records the swap once the old version's memory is freed.
                swapped = before["memelearning_worker_model_swaps_total"] + 1
                after = await _until(worker.port, "memelearning_worker_model_swaps_total", swapped)
                swaps.append(
                    {
                        "version": version,
                        "promote_to_serving_s": round(serving, 3),
                        "promote_to_unloaded_s": round(unloaded, 3),
                        "worker_s": round(
                            after["memelearning_worker_model_swap_seconds_sum"]
                            - before["memelearning_worker_model_swap_seconds_sum"],
                            3,
                        ),
                    }
                )
                print(json.dumps(swaps[-1]), flush=True)
        finally:
            stop.set()
            sent = await load
        final = _metrics(worker.port)
    worker_s = [s["worker_s"] for s in swaps]
    return {
        "when": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m bench.model_swap", *sys.argv[1:]]),
        "machine": describe_machine(),
        "runtime": args.runtime,
        "load_frames_per_s": args.participants * args.fps,
        "frames_sent": sent,
        "frames_requeued": final.get("memelearning_worker_frames_requeued_total", 0.0),
        "swaps": swaps,
        "worker_s_median": statistics.median(worker_s),
        "worker_s_max": max(worker_s),
        "promote_to_serving_s_max": max(s["promote_to_serving_s"] for s in swaps),
    }


async def _steady_load(
    url: str, jpegs: list[bytes], args: argparse.Namespace, stop: asyncio.Event
) -> int:
    connection = await aio_pika.connect(url)
    sent = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(FRAMES_EXCHANGE)
        sequence = 0
        while not stop.is_set():
            tick = time.monotonic()
            for p in range(args.participants):
                frame = Frame(
                    meeting_id="bench",
                    participant_id=f"p{p}",
                    capture_ms=int(time.time() * 1000),
                    sequence=sequence,
                    jpeg=jpegs[(sequence + p) % len(jpegs)],
                )
                await exchange.publish(frame.to_message(), routing_key=FRAME_ROUTING_KEY)
                sent += 1
            sequence += 1
            await asyncio.sleep(max(0.0, 1 / args.fps - (time.monotonic() - tick)))
    return sent


async def _until(port: int, name: str, value: float = 1.0) -> dict[str, float]:
    """The worker's metrics once sample ``name`` is ``value``."""
    async with asyncio.timeout(120):
        while True:
            samples = await asyncio.to_thread(_metrics, port)
            if samples.get(name) == value:
                return samples
            await asyncio.sleep(0.02)


def _metrics(port: int) -> dict[str, float]:
    """The worker's unlabelled samples by name, and ``version=V`` for the version its
    model info names."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "memelearning_worker_model_info":
                samples[f"version={sample.labels['version']}"] = 1.0
            else:
                samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(BenchSettings)
    result = asyncio.run(run(args, settings))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
