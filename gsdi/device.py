"""Where a generation runs: the torch device a name resolves to, and the CPU thread count."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gsdi.errors import GsdiError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> "torch.device":
    """'auto' (CUDA when torch sees a GPU, else the CPU), 'cpu' or 'cuda'; GsdiError for cuda without a GPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GsdiError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def choose_cpu_threads() -> tuple[int, str | None]:
    """Threads for a CPU run and, when fewer than the cores, a line saying why: OMP_NUM_THREADS if set,
    else the cores this process may use less those other work keeps busy now (`busy_cores`), at least
    1. Two threads on two cores that other work keeps busy run several times slower than one."""
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"])), None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = busy_cores()
    threads = max(1, min(cores, round(cores - busy)))
    if threads == cores:
        return threads, None
    return threads, (f"CPU: other work keeps {busy:.1f} of {cores} cores busy: using {threads} thread"
                     f"{'s' if threads > 1 else ''} (choose with OMP_NUM_THREADS=N or --set cpu_threads=N)")


def busy_cores(window: float = 0.3, read_stat=None) -> float:
    """Cores that other processes keep busy now: on Linux the machine's non-idle CPU time over `window`
    seconds of /proc/stat while this process sleeps; elsewhere the 1-minute load average. (The load
    average lags: a minute after a job ends it still counts it, so a second run started right after a
    first one would use too few threads.) `read_stat()` returns /proc/stat's first line (tests pass one)."""
    import time

    def read_proc_stat() -> str:
        with open("/proc/stat") as f:
            return f.readline()

    def sample() -> tuple[int, int]:
        ticks = [int(v) for v in (read_stat or read_proc_stat)().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if total1 <= total0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))
