"""Server-side measurements from /proc (Linux): CPU time and resident memory of a process.

CPU time (user + system, all threads) is the fair cost measure on a shared machine: wall
time and throughput depend on what else runs, CPU seconds per unit of work much less.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["ProcSample", "cpu_seconds", "rss_kib", "sample"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (proc(5) /proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading: when (monotonic seconds), CPU seconds used so far, RSS in KiB."""

    at: float
    cpu: float
    rss_kib: int


def sample(pid: int | None) -> ProcSample | None:
    """Read both values now; None without a pid or when the process is gone."""
    if pid is None:
        return None
    try:
        return ProcSample(time.monotonic(), cpu_seconds(pid), rss_kib(pid))
    except (OSError, ValueError, IndexError):
        return None
