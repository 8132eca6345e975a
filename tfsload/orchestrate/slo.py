"""The highest load under a latency bound: judge a step, then bracket and bisect.

MLPerf's Server scenario defines the honest capacity figure: the highest Poisson arrival rate at
which the latency percentile bound still holds. :func:`find_highest` finds it (or, on the users
axis, the most concurrent users) by bracketing (doubling, or halving, from a start until one
load passes and one does not) and then bisection until the two are within ``resolution`` of each
other. Each probe is a stable step (:mod:`tfsload.orchestrate.step`), judged by :func:`judge`.

A probe the generator could not deliver (a saturated generator, or an open-loop schedule it
fell behind on, so that fewer requests arrived than the rate asked for) never passes: the
search then reports the highest load that did pass and says the generator, not the server,
stopped it. The search knows nothing about Locust or servers: it calls ``measure``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise

PASS, OVER, GENERATOR, FAILED = "pass", "over", "generator", "failed"


@dataclass(frozen=True)
class Bound:
    """What a load must keep to count: p99 (ms) and the share of failed requests."""

    p99_ms: float
    fail_ratio: float = 0.001

    def to_dict(self) -> dict:
        return {**asdict(self), "text": self.describe()}

    @classmethod
    def from_dict(cls, data: dict) -> Bound:
        return cls(data["p99_ms"], data["fail_ratio"])

    def describe(self) -> str:
        return f"p99 <= {self.p99_ms:g} ms, failed <= {self.fail_ratio:.2%}"


@dataclass(frozen=True)
class Verdict:
    """A probe's judgement: ``kind`` is pass, over (the server broke the bound), generator
    (the generator could not deliver the load) or failed (the step did not measure)."""

    kind: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.kind == PASS

    def to_dict(self) -> dict:
        return asdict(self)


def _breaks(figures: dict, bound: Bound) -> str | None:
    """Why these figures break the bound, or None."""
    if figures["requests"] == 0:
        return "no request completed"
    if figures["p99_ms"] is None:
        return "no request succeeded"
    if figures["fail_ratio"] > bound.fail_ratio:
        return f"{figures['fail_ratio']:.2%} failed, bound {bound.fail_ratio:.2%}"
    if figures["p99_ms"] > bound.p99_ms:
        return f"p99 {figures['p99_ms']:.3f} ms over {bound.p99_ms:g} ms"
    return None


def climbing(windows: list[dict], tolerance: float, bound_ms: float) -> bool:
    """p99 rose from each window to the next, by more than ``tolerance`` overall, and is past
    half the bound: a queue that keeps growing towards the bound, which more windows would only
    show more of (a rise far below the bound is noise as likely as a queue)."""
    p99s = [w["p99_ms"] for w in windows]
    if len(p99s) < 2 or any(p is None for p in p99s):
        return False
    rising = all(b > a for a, b in pairwise(p99s))
    return rising and p99s[-1] > p99s[0] * (1 + tolerance) and p99s[-1] > bound_ms / 2


def delivered(step: dict) -> tuple[bool, str]:
    """Whether an open-loop step's requests arrived at the rate asked for, within what chance
    allows (Poisson counts vary by about their square root) or the stability tolerance."""
    figures, rate = step["figures"], step["load"]["rate"]
    expected = rate * figures["seconds"]
    slack = max(step["rule"]["tolerance"], 3 / math.sqrt(expected)) if expected else 0
    text = f"{figures['rps']:,.1f} of {rate:g} req/s delivered"
    return figures["rps"] >= rate * (1 - slack), text


def judge(step: dict, bound: Bound) -> Verdict:
    """Pass or not, and why, for one step's record.

    The figures of the step's stable windows (or, if it never stabilised, of its last
    windows) must meet the bound; an open-loop step that never stabilised because its p99 kept
    climbing does not pass either (in a closed loop the users themselves cap the queue, so a
    rise there is noise, not a queue without end). A saturated generator makes the probe the
    generator's failure, never a pass. So does an open-loop step whose sends fell behind the
    schedule while the bound held, when fewer requests arrived than the rate asked for. Sends
    that left late but still at the rate asked for leave the verdict to the figures: latency is
    counted from the intended send time, so the delay is inside them. When the bound is broken
    and sends were late, every user was waiting on slow answers (each step has users for twice
    the bound's latency): the server's failure.
    """
    if step["status"] != "complete":
        return Verdict(FAILED, step.get("reason") or step["status"])
    if step["generator_saturated"]:
        peak = step["generator"]["cpu_percent_max"]
        return Verdict(GENERATOR, f"the load generator was saturated ({peak:.0f}% CPU)")
    figures = step["figures"]
    broken = _breaks(figures, bound)
    unstable = "" if step["stable"] else " (not stable)"
    late = step["arrival"]["late_sends"]
    late_text = f"{late} sends left over {step['load'].get('late_after_ms', 1):g} ms late"
    if broken:
        if not step["schedule_kept"]:
            broken += f"; {late_text}, every user waiting on slow answers"
        return Verdict(OVER, broken + unstable)
    tail = step["windows"][step["judged_from"] :]
    open_loop = bool(step["load"]["rate"])
    if open_loop and not step["stable"] and climbing(tail, step["rule"]["tolerance"], bound.p99_ms):
        return Verdict(OVER, "p99 still climbing window after window: a queue is building")
    note = ""
    if not step["schedule_kept"]:
        kept_rate, text = delivered(step)
        if not kept_rate:
            return Verdict(GENERATOR, f"the generator fell behind the schedule: {text}")
        note = f"; {late_text} (counted in the latency), {text}"
    return Verdict(PASS, f"p99 {figures['p99_ms']:.3f} ms{unstable}{note}")


@dataclass(frozen=True)
class Axis:
    """What a search varies: open-loop ``rate`` (req/s) or closed-loop ``users``."""

    kind: str
    start: float
    minimum: float
    maximum: float

    def round(self, value: float) -> float:
        """Users are whole; rates keep three significant digits (records stay readable)."""
        if self.kind == "users":
            return float(max(1, round(value)))
        digits = 2 - math.floor(math.log10(abs(value))) if value else 0
        return round(value, digits)

    def clamp(self, value: float) -> float:
        return min(max(self.round(value), self.minimum), self.maximum)

    def to_dict(self) -> dict:
        return asdict(self)


class SearchStopped(Exception):
    """``measure`` could not run the probe: interrupted, or out of time; the text says which."""


class _StepFailed(Exception):
    """A probe did not measure (Locust crashed, nothing completed a window): going on would
    only repeat the failure at other loads."""


@dataclass
class Search:
    """Where a search stands: every probe so far and the bracket they give."""

    axis: Axis
    resolution: float
    probes: list[tuple[float, Verdict]] = field(default_factory=list)
    highest: float | None = None  # the highest load that passed
    lowest_failing: float | None = None  # the lowest load above it that did not
    complete: bool = False
    stopped: str | None = None  # why the search ended early
    failed: str | None = None  # why a probe could not measure, which ended the search

    def limited_by(self) -> str | None:
        """What stopped the load from going higher: ``over`` (the server broke the bound),
        ``generator``, ``failed``, ``maximum`` (the axis' maximum passed) or None."""
        if self.lowest_failing is None:
            return "maximum" if self.highest is not None and self.complete else None
        for load, verdict in self.probes:
            if load == self.lowest_failing:
                return verdict.kind
        return None

    def to_dict(self) -> dict:
        return {
            "axis": self.axis.to_dict(),
            "resolution": self.resolution,
            "highest": self.highest,
            "lowest_failing": self.lowest_failing,
            "limited_by": self.limited_by(),
            "complete": self.complete,
            "stopped": self.stopped,
            "failed": self.failed,
            "probes": [{"load": load, **verdict.to_dict()} for load, verdict in self.probes],
        }


def find_highest(measure: Callable[[float], Verdict], axis: Axis, resolution: float) -> Search:
    """Bracket, then bisect until the highest passing load and the lowest failing one above it
    are within ``resolution`` (a fraction) of each other.

    ``measure`` may raise :class:`SearchStopped`; the search then returns what it has, marked
    incomplete. A probe that failed to measure ends the search too, with ``failed`` saying why.
    """
    search = Search(axis, resolution)

    def probe(load: float) -> bool:
        verdict = measure(load)
        search.probes.append((load, verdict))
        if verdict.kind == FAILED:
            raise _StepFailed(verdict.reason)
        if verdict.passed:
            search.highest = load
        else:
            search.lowest_failing = load
        return verdict.passed

    try:
        load = axis.clamp(axis.start)
        while True:  # bracket
            if probe(load):
                if search.lowest_failing is not None or load >= axis.maximum:
                    break
                load = axis.clamp(load * 2)
            else:
                if search.highest is not None or load <= axis.minimum:
                    break
                load = axis.clamp(load / 2)
        low, high = search.highest, search.lowest_failing
        while low is not None and high is not None and (high - low) / low > resolution:
            middle = axis.round((low + high) / 2)
            if middle in (low, high):
                break  # whole users: nothing lies between
            if probe(middle):
                low = middle
            else:
                high = middle
        search.complete = True
    except SearchStopped as exc:
        search.stopped = str(exc)
    except _StepFailed as exc:
        search.failed = f"the step at {search.probes[-1][0]:g} failed to measure: {exc}"
    return search
