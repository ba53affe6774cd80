"""What the figures were measured on: the machine, the software versions, and how
busy the CPU is (other people's processes included)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def describe_machine() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def package_versions() -> dict[str, str | None]:
    return {
        "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
        "ai-edge-litert": _version("ai-edge-litert"),
        "aio-pika": _version("aio-pika"),
        "aiormq": _version("aiormq"),
        "numpy": _version("numpy"),
        "pillow": _version("pillow"),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def process_cpu_s(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of a process (or of one of its threads) so far; None
    once it is gone or when its /proc entry cannot be read."""
    path = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of proc(5), counted after the ")" that ends the command name.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (e.g. the broker's ``beam.smp``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_busy_s() -> float:
    """CPU seconds spent outside idle and iowait, over all CPUs, since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of each watched process and of the whole machine at one moment."""

    processes: dict[str, float | None]
    machine: float


def sample_cpu(pids: dict[str, list[int]], main_threads: dict[str, int]) -> CpuSample:
    """CPU seconds of each role's processes, and of the main thread of the processes
    in ``main_threads`` (as role ``<name>_main_thread``)."""
    processes: dict[str, float | None] = {}
    for role, pid in main_threads.items():
        processes[f"{role}_main_thread"] = process_cpu_s(pid, thread=pid)
    for role, members in pids.items():
        times = [process_cpu_s(pid) for pid in members]
        known = [t for t in times if t is not None]
        processes[role] = sum(known) if known else None
    return CpuSample(processes, machine_busy_s())


def cores_used(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float | None]:
    """Average cores each role used between two samples, plus ``machine`` (all
    processes) and ``other`` (everything not watched: other people's work)."""
    used: dict[str, float | None] = {}
    ours = 0.0
    for role, start in before.processes.items():
        end = after.processes.get(role)
        if start is None or end is None:
            used[role] = None
            continue
        used[role] = round((end - start) / seconds, 2)
        if not role.endswith("_main_thread"):  # already counted in its process
            ours += end - start
    total = after.machine - before.machine
    used["machine"] = round(total / seconds, 2)
    used["other"] = round(max(0.0, total - ours) / seconds, 2)
    return used
