"""What machine a figure was measured on: recorded with every benchmark and comparison."""

from __future__ import annotations

import math
import os
import platform
import warnings

from cai_edge.errors import CaiEdgeWarning


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    """The vector extensions that decide int8/fp16 speed (x86: AVX2, AVX-512, VNNI, AMX; Arm: dot product)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp", "sve")
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    present = set(line.split(":", 1)[1].split())
                    return [f for f in wanted if f in present]
    except OSError:
        pass
    return []


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup-v2 quota (containers, Slurm), if one is set."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cores() -> int:
    """Cores this process may run on: the affinity mask, capped by a cgroup CPU quota; not the machine's total."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit()
    return min(cores, limit) if limit else cores


def bounded_threads(threads: int | None) -> int:
    """Threads to run (ONNX Runtime intra-op, torch): ``threads`` (default: the usable cores), never more than the usable cores.

    ONNX Runtime starts every thread it is asked for, each with its own stack and arena: 100,000
    of them held gigabytes. A request above the usable cores gives a :class:`CaiEdgeWarning`.
    """
    cores = usable_cores()
    if threads is None:
        return cores
    if threads > cores:
        warnings.warn(f"{threads} threads asked for, but this process may use {cores} core(s); running {cores} thread(s)",
                      CaiEdgeWarning, stacklevel=4)  # the caller of Predictor (through create_session)
        return cores
    return int(threads)


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (or last exec), in MB.

    Reads VmHWM: ``getrusage().ru_maxrss`` survives ``execve``, so a child started by a large
    parent would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info() -> dict:
    info = {
        "cpu_model": cpu_model(),
        "simd": simd_flags(),
        "usable_cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info
