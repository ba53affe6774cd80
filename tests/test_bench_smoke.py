"""The pipeline benchmark runs end to end in quick mode and reports what it promises.
No timing thresholds: this machine is shared, and a benchmark prints figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pipeline import main
from tests.broker import Broker

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_benchmark_writes_positive_figures_for_every_stage(
    broker: Broker, tmp_path: Path
) -> None:
    # Given the real broker and a quick run at one batch size on a few frames
    env = {
        **os.environ,
        "MEMELEARNING_BENCH_AMQP_URL": broker.amqp_url,
        "MEMELEARNING_BENCH_MANAGEMENT_URL": broker.management_url,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = ["--quick", "--batch-sizes", "8", "--frames", "40", "--out", str(tmp_path)]

    # When the benchmark runs as people run it
    process = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=140,
        check=False,
    )
    text = process.stdout

    # Then it succeeds, prints the table and writes one JSON file and its plot
    assert process.returncode == 0, text[-3000:]
    for heading in ("bare model", "e2e/in-proc", "seed-style baseline", "scaling at"):
        assert heading in text, heading
    assert "colour-plumbing" in text
    # ... and says plainly that a plumbing model has no physical limit to compare with
    assert "physical limit: UNKNOWN" in text
    written = sorted(tmp_path.iterdir())
    assert [path.suffix for path in written] == [".json", ".png"], written
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(written[0].read_text())

    # ... describing the machine, the software and the model
    assert result["quick"] is True
    assert result["machine"]["logical_cpus"] >= 1
    assert result["machine"]["cpu_model"]
    for package in ("tensorflow", "ai-edge-litert", "aio-pika", "rabbitmq"):
        assert result["versions"][package], package
    assert result["model"]["name"] == "colour-plumbing"
    assert result["model"]["runtime"] == "litert"
    assert result["frames"]["count"] == 40

    # ... the bare model at each batch size in both runtimes
    bare = {(row["runtime"], row["batch"]): row for row in result["bare"]}
    assert set(bare) == {(runtime, size) for runtime in ("tensorflow", "litert") for size in (1, 8)}
    assert all(row["frames_per_s"] > 0 for row in bare.values())

    # ... with positive figures for in process and end to end at batch 8
    (in_process,) = result["in_process"]
    (end_to_end,) = result["end_to_end"]
    assert in_process["max_batch"] == end_to_end["max_batch"] == 8
    assert in_process["frames_per_s"] > 0
    assert in_process["ratio_to_bare"] > 0
    assert end_to_end["frames_per_s"] > 0
    assert end_to_end["frames_in_window"] > 0
    assert end_to_end["ratio_to_in_process"] > 0
    assert end_to_end["load"]["failed"] == 0
    assert end_to_end["worker"]["frames_stale"] == 0

    # ... the baseline, latency at three loads, and two workers
    baseline = result["baseline"]
    assert baseline["max_batch"] == 1 and baseline["frames_per_s"] > 0
    assert baseline["ratio_ours_over_baseline"] > 0
    assert [run["load_share"] for run in result["latency"]] == [0.25, 0.5, 0.9]
    for latency in result["latency"]:
        assert latency["max_batch"] == 8
        assert latency["frames"] > 0
        assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    scaling = result["scaling"]
    assert scaling["workers"] == 2
    assert scaling["frames_per_s"] > 0 and scaling["run"]["load"]["failed"] == 0


def test_a_latency_batch_that_is_not_measured_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a latency batch size missing from the batch sizes
    # When the benchmark is started, Then it refuses before measuring anything
    with pytest.raises(SystemExit) as exit_info:
        main(["--batch-sizes", "1,32", "--latency-batch", "8"])
    assert exit_info.value.code == 2
    assert "--latency-batch 8 is not in --batch-sizes" in capsys.readouterr().err
