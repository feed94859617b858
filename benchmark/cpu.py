"""CPU process settings applied once at start-up."""
from __future__ import annotations

import ctypes
import os
import sys

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


def set_threads() -> int:
    """Torch threads: VPBENCH_THREADS, else every core, shared among the processes torchrun started on this
    machine (LOCAL_WORLD_SIZE). Set explicitly because some dependencies (Ultralytics) pin OMP_NUM_THREADS=1
    when they are imported."""
    import torch  # here, not at the top: `bench --help` must not pay for torch

    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    threads = int(os.environ.get("VPBENCH_THREADS") or max(1, (os.cpu_count() or 1) // local_processes))
    torch.set_num_threads(threads)
    return threads
