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
    plumbing = (
        " (plumbing model, NOT a gesture detector)" if model["name"] == "colour-plumbing" else ""
    )
    lines = [
        f"memelearning pipeline benchmark{' (quick)' if result['quick'] else ''}"
        f" — {result['date']}",
        f"command:  {result['command']}",
        f"machine:  {machine['cpu_model']}, {machine['logical_cpus']} CPUs "
        f"({machine['usable_cpus']} usable), {machine['memory_gib']} GiB, "
        f"load average {machine['load_average_1m_at_start']} at start "
        "(the machine is shared: see 'other' CPU); no GPU",
        f"software: Python {machine['python']}, tensorflow {versions['tensorflow']}, "
        f"ai-edge-litert {versions.get('ai-edge-litert')}, aio-pika {versions['aio-pika']}, "
        f"RabbitMQ {versions['rabbitmq']} (Erlang {versions['erlang']})",
        f"model:    {model['name']} v{model['version']}{plumbing}, input "
        f"{model['input_size'][0]}x{model['input_size'][1]}; worker runtime {model['runtime']}; "
        f"threads: TF intra-op {threads['intra_op']}, LiteRT {threads['litert']}, "
        f"decode {threads['decode']}",
        f"frames:   {frames['count']} real webcam frames from {frames['source']} "
        f"(median {frames['median_resolution']}, mean {frames['mean_bytes'] / 1000:.1f} kB)",
        f"worker:   max_wait_ms {worker['max_wait_ms']}, prefetch 2 x max_batch, "
        f"score threshold {worker['score_threshold']} (every frame yields events)",
        "",
    ]
    lines += _limit_lines(result)
    lines += [
        "",
        "bare model (frames decoded beforehand), frames/s (min-max), ms per detect call, "
        "share of the limit:",
    ]
    lines += _bare_table(result["bare"])
    layouts = result.get("layouts") or []
    if layouts:
        lines += [
            "",
            "processes x model threads, in process (no broker), the layouts taking turns; "
            "frames/s, median of the turns (each turn), share of the limit:",
        ]
        lines += [
            f"  {row['name']} ({row['decode_threads']} decode thread"
            f"{'s' if row['decode_threads'] > 1 else ''} each): {row['frames_per_s']:.0f} "
            f"({', '.join(f'{r:.0f}' for r in row['rounds'])}) "
            f"{_share(row.get('ratio_to_limit'))}"
            for row in layouts
        ]
    lines += ["", "pipeline:"]
    lines += _table(result["in_process"], result["end_to_end"])
    baseline = result.get("baseline")
    if baseline:
        lines += [
            "",
            f"seed-style baseline (max_batch 1, prefetch 1, 1 decode thread): "
            f"{baseline['frames_per_s']:.0f} frames/s end to end; ours (max_batch "
            f"{baseline['ours_max_batch']}) {baseline['ours_frames_per_s']:.0f}: "
            f"{baseline['ratio_ours_over_baseline']:.2f}x"
            + (
                f"; {result['scaling']['workers']} processes over it: "
                f"{baseline['ratio_processes_over_baseline']:.2f}x"
                if "ratio_processes_over_baseline" in baseline
                else ""
            )
            + f"; baseline {_share(baseline.get('ratio_to_limit'))} of the limit",
        ]
    latency = result.get("latency") or []
    if latency:
        lines += [
            "",
            f"latency at shares of the e2e capacity, max_batch {latency[0]['max_batch']}, "
            f"{latency[0]['participants']} participants; frame age at event "
            "(capture → event received):",
        ]
        rows = [
            (
                "load",
                "target fps",
                "achieved fps",
                "frames",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "mean batch",
                "workers",
            )
        ]
        for run in latency:
            rows.append(
                (
                    f"{run['load_share']:.0%}",
                    f"{run['target_fps']:g}",
                    _number(run["achieved_fps"]),
                    str(run["frames"]),
                    f"{run['p50_ms']:g}",
                    f"{run['p95_ms']:g}",
                    f"{run['p99_ms']:g}",
                    f"{run['max_ms']:g}",
                    _number(run["worker"]["mean_batch"]),
                    str(run.get("workers", 1)),
                )
            )
        lines += _columns(rows)
    scaling = result.get("scaling")
    if scaling:
        lines += [
            "",
            f"scaling at max_batch {scaling['max_batch']}: 1 worker "
            f"{scaling['one_worker_frames_per_s']:.0f} frames/s; {scaling['workers']} workers "
            f"({scaling['threads_per_worker']} model thread each) "
            f"{scaling['frames_per_s']:.0f} frames/s ({scaling['ratio_to_one_worker']:.2f}x; "
            f"{_share(scaling.get('ratio_to_limit'))} of the limit)",
        ]
    return "\n".join(lines)


def _bare_table(bare: Sequence[Mapping[str, Any]]) -> list[str]:
    sizes = sorted({row["batch"] for row in bare})
    rows: list[tuple[str, ...]] = [("runtime", *(f"batch {size}" for size in sizes))]
    for runtime in sorted({row["runtime"] for row in bare}):
        by_size = {row["batch"]: row for row in bare if row["runtime"] == runtime}
        rows.append(
            (
                runtime,
                *(
                    f"{_rate(by_size[size])} {by_size[size]['ms_per_call']:g} ms "
                    f"{_share(by_size[size].get('ratio_to_limit'))}"
                    if size in by_size
                    else ""
                    for size in sizes
                ),
            )
        )
    return _columns(rows)


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [
        "  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    ]
    out.insert(1, "  ".join("-" * width for width in widths))
    return out


def _table(in_process: Sequence[Mapping[str, Any]], e2e: Sequence[Mapping[str, Any]]) -> list[str]:
    by_batch = {row["max_batch"]: row for row in e2e}
    header = (
        "max_batch",
        "in-proc fps (min-max)",
        "in-proc/bare",
        "in-proc/limit",
        "decode ms/frame",
        "detect ms/batch",
        "other cores",
        "e2e fps (min-max)",
        "e2e/in-proc",
        "e2e/limit",
        "e2e mean batch",
        "worker busy",
        "CPU cores: worker (loop)/broker/load/sub/other",
    )
    rows: list[tuple[str, ...]] = [header]
    for row in in_process:
        cells = (
            str(row["max_batch"]),
            _rate(row),
            _number(row.get("ratio_to_bare")),
            _share(row.get("ratio_to_limit")),
            f"{row['decode_ms_per_frame']:.2f}",
            f"{row['detect_ms_per_batch']:.2f}",
            _number(row["other_cores"]),
        )
        run = by_batch.get(row["max_batch"])
        rows.append(cells + (_e2e_cells(run) if run else ("",) * (len(header) - len(cells))))
    return _columns(rows)


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
        _share(run.get("ratio_to_limit")),
        _number(w["mean_batch"]),
        f"{busy:.0%}",
        f"{_number(cpu.get('worker'))} ({_number(cpu.get('worker_main_thread'))})/"
        + "/".join(_number(cpu.get(role)) for role in roles),
    )


def _limit_lines(result: Mapping[str, Any]) -> list[str]:
    limit = result.get("limit") or {"frames_per_s": None, "unknown": "not measured"}
    if limit["frames_per_s"] is None:
        return [f"physical limit: UNKNOWN ({limit.get('unknown')}); no ratios to it", ""]
    networks = ", ".join(
        f"{n['file'].removesuffix('.tflite')} {n['cpu_ms']:g} ms CPU ({n['ms']:g} ms wall)"
        for n in result["networks"]
    )
    lines = [
        f"networks alone (LiteRT, 1 thread, per call): {networks}",
        f"physical limit for these frames ({limit['hands_per_frame']:g} hands and "
        f"{limit['faces_per_frame']:g} faces per frame: palm (and face) detector once, "
        f"landmark network twice per hand, face landmarks once per face; "
        f"{limit['cores']} cores): "
        f"{limit['network_ms_per_frame']:g} ms of networks per frame -> "
        f"{limit['frames_per_s']:.0f} frames/s (one landmark pass per hand: "
        f"{limit['one_landmark_pass_frames_per_s']:.0f})",
    ]
    by_threads = limit.get("model_ms_per_frame_by_threads") or {}
    cpu = limit.get("model_cpu_ms_per_frame_by_threads") or {}
    if by_threads:
        lines.append(
            "the whole model on the same frames, frame by frame, per frame: "
            + ", ".join(
                f"{n} thread(s) {ms:g} ms wall, {cpu.get(n, 0):g} ms CPU"
                for n, ms in by_threads.items()
            )
            + f" (one thread: {limit['model_over_networks_one_thread']:g}x its networks' CPU)"
        )
    return [*lines, ""]


def _share(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _rate(row: Mapping[str, Any]) -> str:
    return (
        f"{row['frames_per_s']:.0f} ({row['frames_per_s_min']:.0f}-{row['frames_per_s_max']:.0f})"
    )
