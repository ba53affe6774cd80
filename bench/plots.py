"""The benchmark's figures as one PNG: throughput by batch size for each stage,
latency by load, and the fleet against the seed-style baseline and against itself
with more workers. matplotlib is optional (extra ``bench``): without it, no plot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plot_result(result: Mapping[str, Any], path: Path) -> Path | None:
    """Write the plot to ``path``; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    figure, (rates, latency, fleet) = plt.subplots(1, 3, figsize=(16, 4.8))
    model = result["model"]
    figure.suptitle(
        f"{model['name']} v{model['version']} on {result['machine']['cpu_model']}, "
        f"{result['machine']['logical_cpus']} CPUs (shared machine), {result['date']}"
        f"{' — quick run' if result['quick'] else ''}",
        fontsize=10,
    )

    for runtime in sorted({row["runtime"] for row in result["bare"]}):
        rows = [row for row in result["bare"] if row["runtime"] == runtime]
        rates.plot(
            [r["batch"] for r in rows],
            [r["frames_per_s"] for r in rows],
            marker="o",
            label=f"bare model, {runtime}",
        )
    for key, label in (("in_process", "in process"), ("end_to_end", "end to end")):
        rows = result[key]
        rates.plot(
            [r["max_batch"] for r in rows],
            [r["frames_per_s"] for r in rows],
            marker="s",
            linestyle="--",
            label=f"{label} ({model['runtime']})",
        )
    limit = (result.get("limit") or {}).get("frames_per_s")
    if limit:
        rates.axhline(limit, color="black", linestyle=":", label="physical limit (networks alone)")
    rates.set_xscale("log", base=2)
    rates.set_xlabel("batch size / max_batch")
    rates.set_ylabel("frames/s")
    rates.set_ylim(bottom=0)
    rates.set_title("Throughput by stage", fontsize=10)
    rates.legend(fontsize=8)

    runs = sorted(result["latency"], key=lambda run: run["load_share"])
    if runs:
        shares = [run["load_share"] * 100 for run in runs]
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            latency.plot(shares, [run[key] for run in runs], marker="o", label=key[:3])
        latency.set_title(f"Frame age at the event, max_batch {runs[0]['max_batch']}", fontsize=10)
    latency.set_xlabel("load, % of measured capacity")
    latency.set_ylabel("ms")
    latency.set_ylim(bottom=0)
    latency.legend(fontsize=8)

    bars: list[tuple[str, float]] = []
    baseline = result.get("baseline")
    if baseline:
        bars.append(("seed-style\n(1 frame/request)", baseline["frames_per_s"]))
        bars.append(
            (f"ours\n(max_batch {baseline['ours_max_batch']})", baseline["ours_frames_per_s"])
        )
    scaling = result.get("scaling")
    if scaling:
        bars.append(("1 worker", scaling["one_worker_frames_per_s"]))
        bars.append((f"{scaling['workers']} workers\n(1 thread each)", scaling["frames_per_s"]))
    for row in result.get("layouts") or []:
        bars.append(
            (f"{row['name']} in process\n({row['decode_threads']} decode)", row["frames_per_s"])
        )
    if bars:
        if limit:
            fleet.axhline(limit, color="black", linestyle=":")
        fleet.bar([name for name, _ in bars], [value for _, value in bars])
        for index, (_, value) in enumerate(bars):
            fleet.annotate(f"{value:.0f}", (index, value), ha="center", va="bottom", fontsize=8)
    fleet.set_ylabel("frames/s (dotted: the physical limit)")
    fleet.set_title("Against the baseline, and scaling", fontsize=10)
    fleet.tick_params(axis="x", labelsize=8)

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
