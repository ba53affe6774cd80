"""The printed form of a benchmark result (the JSON holds everything; this is the
summary a person reads)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_report(result: Mapping[str, Any]) -> str:
    machine = result["machine"]
    versions = result["versions"]
    model = result["model"]
    frames = result["frames"]
    threads = result["threads"]
    worker = result["worker_settings"]
    lines = [
        f"memelearning pipeline benchmark{' (quick)' if result['quick'] else ''}"
        f" — {result['date']}",
        f"command:  {result['command']}",
        f"machine:  {machine['cpu_model']}, {machine['logical_cpus']} CPUs "
        f"({machine['usable_cpus']} usable), {machine['memory_gib']} GiB, "
        f"load average {machine['load_average_1m_at_start']} at start "
        "(the machine is shared: see 'other' CPU)",
        f"software: Python {machine['python']}, tensorflow {versions['tensorflow']}, "
        f"aio-pika {versions['aio-pika']}, RabbitMQ {versions['rabbitmq']} "
        f"(Erlang {versions['erlang']})",
        f"model:    {model['name']} v{model['version']} (plumbing model, NOT a gesture "
        f"detector), input {model['input_size'][0]}x{model['input_size'][1]}, "
        f"TF intra-op threads {threads['intra_op']}, decode threads {threads['decode']}",
        f"frames:   {frames['count']} real webcam frames from {frames['source']} "
        f"(median {frames['median_resolution']}, mean {frames['mean_bytes'] / 1000:.1f} kB)",
        f"worker:   max_wait_ms {worker['max_wait_ms']}, prefetch 2 x max_batch, "
        f"score threshold {worker['score_threshold']} (every frame yields events)",
        "",
    ]
    lines += _table(result["in_process"], result["end_to_end"])
    latency = result.get("latency")
    if latency:
        lines += [
            "",
            f"latency at {latency['load_share']:.0%} of e2e capacity, max_batch "
            f"{latency['max_batch']}: {latency['achieved_fps']} frames/s (target "
            f"{latency['target_fps']}) from {latency['participants']} participants, "
            f"{latency['frames']} frames; frame age at event (capture → event received):",
            f"  p50 {latency['p50_ms']} ms   p95 {latency['p95_ms']} ms   "
            f"p99 {latency['p99_ms']} ms   max {latency['max_ms']} ms   "
            f"(mean batch {latency['worker']['mean_batch']})",
        ]
    return "\n".join(lines)


def _table(in_process: Sequence[Mapping[str, Any]], e2e: Sequence[Mapping[str, Any]]) -> list[str]:
    by_batch = {row["max_batch"]: row for row in e2e}
    header = (
        "max_batch",
        "in-proc fps (min-max)",
        "decode ms/frame",
        "detect ms/batch",
        "other cores",
        "e2e fps (min-max)",
        "e2e/in-proc",
        "e2e mean batch",
        "worker busy",
        "CPU cores: worker (loop)/broker/load/sub/other",
    )
    rows: list[tuple[str, ...]] = [header]
    for row in in_process:
        cells = (
            str(row["max_batch"]),
            _rate(row),
            f"{row['decode_ms_per_frame']:.2f}",
            f"{row['detect_ms_per_batch']:.2f}",
            _number(row["other_cores"]),
        )
        run = by_batch.get(row["max_batch"])
        rows.append(cells + (_e2e_cells(run) if run else ("",) * (len(header) - len(cells))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = [
        "  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    ]
    out.insert(1, "  ".join("-" * width for width in widths))
    return out


def _e2e_cells(run: Mapping[str, Any]) -> tuple[str, ...]:
    w = run["worker"]
    cpu = run["cpu_cores"]
    # A batch's times are recorded when it ends, so one straddling the window's edge
    # can push the sum a little over the window.
    busy = min(1.0, w["decode_share_of_wall"] + w["detect_share_of_wall"])
    roles = ("broker", "load", "subscriber", "other")
    return (
        _rate(run),
        f"{run['ratio_to_in_process']:.2f}",
        _number(w["mean_batch"]),
        f"{busy:.0%}",
        f"{_number(cpu.get('worker'))} ({_number(cpu.get('worker_main_thread'))})/"
        + "/".join(_number(cpu.get(role)) for role in roles),
    )


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _rate(row: Mapping[str, Any]) -> str:
    return (
        f"{row['frames_per_s']:.0f} ({row['frames_per_s_min']:.0f}-{row['frames_per_s_max']:.0f})"
    )
