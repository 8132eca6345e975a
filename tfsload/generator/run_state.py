"""One load-generating process's part of a run: what it sends, at what pace, what it measured.

A run state is made when a test starts (in a single process, or on each worker for its share of
the run) and is what the users of that process ask for their next send. It knows no Locust
internals, so its arithmetic is testable on its own; the plugin feeds it request events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tfsload.core.run_spec import RunSpec
from tfsload.generator.arrival import ArrivalSchedule, Lateness
from tfsload.generator.payload import Payload
from tfsload.generator.precise import PreciseStats
from tfsload.generator.request_count import RequestBudget, split_evenly
from tfsload.generator.saturation import CpuSampler


@dataclass(frozen=True)
class Share:
    """This process's part of the run-wide warm-up, request count and arrival rate.

    ``sends`` is False for a worker that joined after the start of a run with a fixed count or
    rate: it has no share of either, so it must not send.
    """

    warmup: int
    count: int
    rate: float
    sends: bool = True

    def to_dict(self) -> dict:
        return {"warmup": self.warmup, "count": self.count, "rate": self.rate, "sends": self.sends}


def split_run(spec: RunSpec, processes: int) -> list[Share]:
    """Divide warm-up, count and rate evenly among ``processes`` generating processes."""
    load = spec.load
    warmups = split_evenly(load.warmup_requests, processes)
    counts = split_evenly(load.request_count, processes)
    rate = load.arrival_rate / processes
    return [Share(warmup, count, rate) for warmup, count in zip(warmups, counts, strict=True)]


def window_length(spec: RunSpec) -> float:
    """Seconds per measurement window; 0 (none kept) when the run writes no windows file."""
    return spec.outputs.window_s if spec.outputs.windows_json else 0.0


@dataclass(frozen=True)
class Endpoint:
    """Where one user class sends, the stats row its requests go to, and what its transport
    prepared for that address (TLS material, header values: kept out of the repr)."""

    name: str
    address: str
    connection: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Send:
    """Permission for one request: its ticket number and, in open loop, when it should leave."""

    ticket: int
    intended: float | None  # time.perf_counter() seconds; None in closed loop


@dataclass
class RunState:
    spec: RunSpec
    payload: Payload
    share: Share
    endpoints: dict[type, Endpoint]
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.budget = RequestBudget(self.share.warmup, self.share.count, self.started)
        rate = self.share.rate
        late_after_s = self.spec.load.late_after_ms / 1000
        self.schedule = (
            ArrivalSchedule(rate, self.spec.load.arrival, late_after_s=late_after_s)
            if rate > 0
            else None
        )
        self.stats = PreciseStats(window_length(self.spec))
        self.cpu = CpuSampler()
        self.stopped = False
        self.in_flight = 0  # sends that left and whose call has not returned yet

    def next_send(self, now: float) -> Send | None:
        """The next request to send, or None when this process has nothing (more) to send."""
        if self.stopped or not self.share.sends:
            return None
        ticket = self.budget.take()
        if ticket is None:
            return None
        intended = self.schedule.next_time(now) if self.schedule else None
        return Send(ticket, intended)

    def sent(self, send: Send, actual: float) -> None:
        """Note that a send left, and when (open loop: how late it was)."""
        self.in_flight += 1
        if self.schedule and send.intended is not None:
            counted = not self.budget.is_warmup_send(send.ticket)
            self.schedule.note_send(send.intended, actual, counted)

    def returned(self) -> None:
        """A send's call has returned: answered, failed or timed out (its event is fired)."""
        self.in_flight -= 1

    def facts(self) -> dict:
        """What the master needs besides the histograms; cumulative, JSON-serialisable."""
        lateness = self.schedule.lateness if self.schedule else Lateness()
        return {
            "cpu": self.cpu.use.to_dict(),
            "lateness": lateness.to_dict(),
            "measured_start": self.budget.measured_start,
            "last_completion": self.budget.last_completion,
            "done": self.budget.done,
        }


class RunRecord:
    """What a master (or a single process) knows of the whole run while it goes on.

    ``stats`` are the precise numbers of all generating processes, ``facts`` their latest
    :meth:`RunState.facts` by process id.
    """

    def __init__(self, stats: PreciseStats | None = None) -> None:
        self.stats = stats or PreciseStats()
        self.facts: dict[str, dict] = {}
        self.started = time.time()
        self.stopped: float | None = None


_current: RunState | None = None


def current() -> RunState | None:
    """The run state of this process's running test, if it has one."""
    return _current


def activate(state: RunState | None) -> None:
    global _current
    _current = state
