"""Server-side measurements from /proc (Linux): CPU time and resident memory of a process.

CPU time (user + system, all threads) is the fair cost measure on a shared machine: wall
time and throughput depend on what else runs, CPU seconds per unit of work much less.
On a virtual machine the hypervisor may also run other guests on our CPUs ("steal" time in
/proc/stat); latency measured while it does is the host's, so it is sampled too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = [
    "ProcSample",
    "cpu_seconds",
    "rss_kib",
    "runqueue_wait_seconds",
    "sample",
    "steal_percent",
    "system_ticks",
]

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


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's main thread (the event loop) was runnable but waiting for a CPU
    (the second field of /proc/PID/schedstat, in ns; sched-stats.rst). High when other work
    on the machine, not the process's own load, holds the CPUs."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def system_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs since boot (proc(5) /proc/stat "cpu" line)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    return (fields[7] if len(fields) > 7 else 0, sum(fields[:8]))


def steal_percent(before: ProcSample | None, after: ProcSample | None) -> float | None:
    """Share of all CPU time between two samples that the hypervisor gave to others."""
    if before is None or after is None or after.ticks <= before.ticks:
        return None
    return round((after.steal - before.steal) * 100 / (after.ticks - before.ticks), 1)


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading: when (monotonic seconds), CPU seconds used so far, RSS in KiB, and the
    machine's steal and total CPU ticks so far."""

    at: float
    cpu: float
    rss_kib: int
    steal: int = 0
    ticks: int = 0
    #: seconds the main thread waited for a CPU so far (0 where schedstat is missing)
    waited: float = 0.0


def sample(pid: int | None) -> ProcSample | None:
    """Read both values now; None without a pid or when the process is gone."""
    if pid is None:
        return None
    try:
        return ProcSample(
            time.monotonic(),
            cpu_seconds(pid),
            rss_kib(pid),
            *system_ticks(),
            waited=runqueue_wait_seconds(pid),
        )
    except (OSError, ValueError, IndexError):
        return None
