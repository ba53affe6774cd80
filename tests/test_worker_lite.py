"""The slim CPU worker (extra `worker-lite`, Dockerfile target `cpu-lite`): the worker
serves model.tflite with LiteRT without ever importing TensorFlow or PyAV, so an
environment without them runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.frames import make_frame, publish_frames
from tests.test_worker_process import free_port, ready
from tests.workers import messages_ready
from worker.settings import DEFAULT_MODEL_DIR

# What the worker process runs, up to a model call, in a fresh interpreter: the test
# process itself may hold TensorFlow from other tests.
_LITERT_PATH = """
import importlib.util, json, sys
import numpy as np
import memelearning.cli, worker.cli, worker.service
from worker.decode import decode_into
from worker.runtime import load_detector
from worker.settings import WorkerSettings

detector = load_detector(WorkerSettings(model_dir=sys.argv[1], runtime="litert"))
frame = np.zeros((1, *detector.input_size, 3), np.uint8)
detector.detect(frame)
print(json.dumps({
    "runtime": detector.runtime,
    "tensorflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
    "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
    "pyav_imported": sorted(m for m in sys.modules if m.split(".")[0] == "av"),
}))
"""


def test_the_litert_path_never_imports_tensorflow() -> None:
    # Given the shipped model, served with LiteRT as the slim worker serves it
    # When the worker's modules load it and run a frame in a fresh interpreter
    process = subprocess.run(
        [sys.executable, "-c", _LITERT_PATH, str(DEFAULT_MODEL_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.splitlines()[-1])

    # Then LiteRT ran it, and not one TensorFlow or PyAV module was imported (PyAV, the
    # publisher's video decoder, is no dependency of the slim worker)
    assert result["runtime"] == "litert"
    assert result["tensorflow_imported"] == []
    assert result["pyav_imported"] == []


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_litert_worker_process_serves_frames_without_tensorflow(amqp_url: str) -> None:
    # Given `memelearning worker` with the LiteRT runtime and the shipped model
    port = free_port()
    env = {
        **os.environ,
        "MEMELEARNING_WORKER_AMQP_URL": amqp_url,
        "MEMELEARNING_WORKER_MODEL_DIR": str(DEFAULT_MODEL_DIR),
        "MEMELEARNING_WORKER_RUNTIME": "litert",
        "MEMELEARNING_WORKER_HTTP_HOST": "127.0.0.1",
        "MEMELEARNING_WORKER_HTTP_PORT": str(port),
        "MEMELEARNING_WORKER_QUEUE_TTL_MS": "120000",
        "MEMELEARNING_WORKER_STALE_AFTER_MS": "120000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memelearning",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(90):
            while not await asyncio.to_thread(ready, port):
                assert process.returncode is None, "the worker exited before it was ready"
                await asyncio.sleep(0.2)

        # When it decodes and runs frames until the queue is empty
        await publish_frames(amqp_url, [make_frame(sequence=i) for i in range(20)])
        async with asyncio.timeout(60):
            while await messages_ready(amqp_url):
                await asyncio.sleep(0.2)
        maps = await asyncio.to_thread(Path(f"/proc/{process.pid}/maps").read_text)
    finally:
        process.terminate()
        await process.wait()

    # Then no TensorFlow library was ever loaded into it (LiteRT's own are)
    libraries = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    assert any("ai_edge_litert" in path for path in libraries), sorted(libraries)
    assert not [path for path in libraries if "/tensorflow/" in path]
