"""Where the machine's CPU went during a cell: load generator, launched server, everything else.

A cell's numbers are only as good as the machine was quiet. The load generator's own CPU says
whether it kept up (its saturation flag); the launched server's CPU says what a request costs
it; and the rest (other processes on a shared machine, a server in Docker on the same host)
says how much noise the numbers carry. All three come from kernel counters, not sampling.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import psutil


def _children_cpu_s() -> float:
    """CPU time of all reaped child processes so far (the finished Locust run included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_cpu_s() -> float:
    """Machine-wide CPU seconds spent not idle, summed over all cores."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _process_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class CpuAccount:
    """Counters at the start of a cell; ``finish`` turns them into the cell's CPU split."""

    server_pid: int | None
    start: float = 0.0
    busy: float = 0.0
    children: float = 0.0
    server: float | None = None

    def __post_init__(self) -> None:
        self.start = time.monotonic()
        self.busy = _busy_cpu_s()
        self.children = _children_cpu_s()
        self.server = _process_cpu_s(self.server_pid)

    def finish(self) -> dict:
        """CPU seconds of the client, the launched server and the rest, and the rest's share.

        Call after the Locust process has been waited for, so that its time is counted.
        """
        wall = time.monotonic() - self.start
        cores = os.cpu_count() or 1
        client = _children_cpu_s() - self.children
        end_server = _process_cpu_s(self.server_pid)
        server = end_server - self.server if self.server is not None and end_server else None
        other = max(_busy_cpu_s() - self.busy - client - (server or 0.0), 0.0)
        share = round(100 * other / (wall * cores), 1) if wall > 0 else None
        return {
            "client_cpu_s": round(client, 3),
            "client_cpu_percent": round(100 * client / wall, 1) if wall > 0 else None,
            "server_cpu_s": None if server is None else round(server, 3),
            "other_cpu_s": round(other, 3),
            "other_cpu_percent_of_machine": share,
            "machine_cores": cores,
        }
