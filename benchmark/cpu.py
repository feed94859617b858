"""CPU process settings applied once at start-up."""
from __future__ import annotations

import ctypes
import math
import os
import sys
from pathlib import Path
from typing import Mapping

from .errors import UserError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory_for_reuse() -> None:
    """Stop glibc from giving every freed tensor buffer back to the OS.

    By default glibc maps blocks over ~128 KiB fresh from the kernel and unmaps them on free, so each
    activation of a recurrent rollout page-faults anew. On the 2-core VMs we test on, that made an
    elementwise multiply of 1 MiB take ~300 us instead of ~30 us and ConvLSTM training steps 2-8x slower.
    Raising the thresholds (what MALLOC_MMAP_THRESHOLD_ does from the environment) keeps blocks up to
    32 MiB in the heap for reuse; larger ones are still mapped and returned.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: leave it alone
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup"), environ: Mapping[str, str] = os.environ) -> int:
    """The CPUs this process may use: the fewest that the affinity mask (taskset, a scheduler's binding), the
    cgroup's CPU quota (containers, SLURM with cgroups) and SLURM_CPUS_PER_TASK allow."""
    limits = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        limits.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota(cgroup)
    if quota is not None:
        limits.append(max(1, math.floor(quota)))  # 1.5 CPUs of time: one thread busy, not two half-starved
    slurm = positive_int(environ.get("SLURM_CPUS_PER_TASK"))
    if slurm is not None:
        limits.append(slurm)
    return min(limits)


def cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time the cgroup may use per period, None when unlimited or unknown: cgroup v2's cpu.max
    ("QUOTA PERIOD" or "max PERIOD"), else v1's cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: unlimited)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value >= 1 else None


def user_omp_threads(environ: Mapping[str, str]) -> int | None:
    """OMP_NUM_THREADS when the user set it. torchrun sets it to 1 for every process when it is unset, which no
    process can tell from the user's 1: under torchrun with several local processes a 1 is read as unset
    (VPBENCH_THREADS=1 asks for one thread there)."""
    value = positive_int(environ.get("OMP_NUM_THREADS"))
    by_torchrun = "TORCHELASTIC_RUN_ID" in environ and int(environ.get("LOCAL_WORLD_SIZE") or 1) > 1
    return None if value == 1 and by_torchrun else value


def thread_count(environ: Mapping[str, str] = os.environ, cpus: int | None = None) -> int:
    """Torch threads of this process: VPBENCH_THREADS, else an OMP_NUM_THREADS the user set (per process, as
    OpenMP reads it), else the usable CPUs shared among the processes torchrun started on this machine
    (LOCAL_WORLD_SIZE)."""
    text = environ.get("VPBENCH_THREADS")
    if text:
        value = positive_int(text)
        if value is None:
            raise UserError(f"VPBENCH_THREADS must be a whole number >= 1, not {text!r}")
        return value
    omp = user_omp_threads(environ)
    if omp is not None:
        return omp
    local_processes = max(1, int(environ.get("LOCAL_WORLD_SIZE") or 1))
    return max(1, (usable_cpus(environ=environ) if cpus is None else cpus) // local_processes)


def set_threads() -> int:
    """Set torch's threads (thread_count). Set explicitly because some dependencies (Ultralytics) pin
    OMP_NUM_THREADS=1 when they are imported."""
    import torch  # here, not at the top: `bench --help` must not pay for torch

    threads = thread_count()
    torch.set_num_threads(threads)
    return threads
