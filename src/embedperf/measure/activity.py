"""What the machine did while a runner ran: CPU steal, other processes' CPU time, load average.

A slow fork is either a slow runtime or a busy host. On a VM the hypervisor's other tenants show
as *steal* time in /proc/stat, and other processes of this machine as busy CPU time that is neither
the runner's (the children's rusage once it is reaped) nor the orchestrator's own. Both are
recorded per fork so a reader can tell the two apart. Framework-free, Linux-only readings; where
/proc is missing the fields are None.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

# /proc/stat "cpu" columns: user nice system idle iowait irq softirq steal guest guest_nice.
# guest time is already counted in user, so busy = user + nice + system + irq + softirq.
_BUSY = (0, 1, 2, 5, 6)
_STEAL = 7
STEAL_WARN = 0.05  # share of the machine's CPU time taken by the hypervisor
OTHER_WARN = 0.10  # share of the machine's CPU time used by processes other than the runner


@dataclass(frozen=True)
class Snapshot:
    """Counters at one instant."""

    t: float
    stat: tuple[int, ...] | None  # the aggregate cpu line of /proc/stat, in clock ticks
    children_cpu_s: float  # user + system of reaped children (the runner, once waited for)
    self_cpu_s: float  # this process's own user + system (its threads included)


def _cpu_line() -> tuple[int, ...] | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    return tuple(int(v) for v in line.split()[1:])
    except (OSError, ValueError):
        pass
    return None


def snapshot() -> Snapshot:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(time.monotonic(), _cpu_line(), children.ru_utime + children.ru_stime, own.ru_utime + own.ru_stime)


def between(before: Snapshot, after: Snapshot, cpus: int | None = None) -> dict:
    """The machine's activity from `before` to `after` (a runner reaped in between).

    Shares are of the whole machine's CPU time over the interval (wall seconds x CPUs online).
    """
    wall = after.t - before.t
    cpus = cpus or os.cpu_count() or 1
    runner = after.children_cpu_s - before.children_cpu_s
    own = after.self_cpu_s - before.self_cpu_s
    out = {"wall_s": wall, "runner_cpu_s": runner, "orchestrator_cpu_s": own, "cpus": cpus,
           "steal_share": None, "other_cpu_share": None, "other_cpu_s": None,
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if before.stat and after.stat and wall > 0:
        hz = os.sysconf("SC_CLK_TCK")
        delta = [a - b for a, b in zip(after.stat, before.stat)]
        busy = sum(delta[i] for i in _BUSY if i < len(delta)) / hz
        steal = delta[_STEAL] / hz if len(delta) > _STEAL else 0.0
        other = max(0.0, busy - runner - own)
        capacity = wall * cpus
        out.update(steal_share=steal / capacity, other_cpu_s=other, other_cpu_share=other / capacity)
    return out


def warnings_of(activity: dict, fork: int | None = None) -> list[str]:
    """A line for each sign of a busy host in one fork's activity."""
    where = f" during fork {fork + 1}" if fork is not None else ""
    out = []
    steal = activity.get("steal_share")
    if steal is not None and steal > STEAL_WARN:
        out.append(f"busy host: the hypervisor took {steal:.0%} of the CPU time (steal){where}: a slow fork may "
                   "be the host, not the runtime")
    other = activity.get("other_cpu_share")
    if other is not None and other > OTHER_WARN:
        out.append(f"busy machine: other processes used {other:.0%} of the CPU time "
                   f"({activity.get('other_cpu_s') or 0:.1f} CPU-s){where}")
    return out
