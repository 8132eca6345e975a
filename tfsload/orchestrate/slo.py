"""The highest load under a latency bound: judge a step, then bracket and bisect.

MLPerf's Server scenario defines the honest capacity figure: the highest Poisson arrival rate at
which the latency percentile bound still holds. :func:`find_highest` finds it (or, on the users
axis, the most concurrent users) by bracketing (doubling, or halving, from a start until one
load passes and one does not) and then bisection until the two are within ``resolution`` of each
other. Each probe is a stable step (:mod:`tfsload.orchestrate.step`), judged by :func:`judge`.

A probe the generator could not deliver (a saturated generator, or an open-loop schedule it
did not keep while the server's answers were fast enough for the users it had) never passes:
the search then reports the highest load that did pass and says the generator, not the
server, stopped it. The search knows nothing about Locust or servers: it calls ``measure``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

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


def _window_figures(window: dict) -> dict:
    count = window["count"]
    return {
        "requests": count,
        "p99_ms": window["p99_ms"],
        "fail_ratio": window["failures"] / count if count else 0.0,
    }


def judge(step: dict, bound: Bound) -> Verdict:
    """Pass or not, and why, for one step's record.

    The figures of the step's stable windows must meet the bound. A step that did not
    stabilise passes only if every one of its windows met the bound (its wandering then never
    mattered); otherwise its last windows decide. A saturated generator, or an open-loop
    schedule not kept while answers came back fast enough for the users sending them, make
    the probe the generator's failure, never a pass.
    """
    if step["status"] != "complete":
        return Verdict(FAILED, step.get("reason") or step["status"])
    if step["generator_saturated"]:
        peak = step["generator"]["cpu_percent_max"]
        return Verdict(GENERATOR, f"the load generator was saturated ({peak:.0f}% CPU)")
    figures = step["figures"]
    broken = _breaks(figures, bound)
    if not step["schedule_kept"]:
        load = step["load"]
        busy = load["rate"] * (figures.get("mean_ms") or 0) / 1000  # Little's law: in flight
        if broken and busy >= 0.8 * load["users"]:
            return Verdict(OVER, f"{broken}; answers too slow for {load['users']} users")
        late = step["arrival"]["late_sends"]
        return Verdict(GENERATOR, f"the generator did not keep the schedule ({late} late sends)")
    wandered = not step["stable"] and any(
        _breaks(_window_figures(w), bound) for w in step["windows"]
    )
    if broken is None and wandered:
        return Verdict(OVER, "did not stabilise and some windows broke the bound")
    if broken:
        return Verdict(OVER, broken + ("" if step["stable"] else " (not stable)"))
    stable = "stable" if step["stable"] else "not stable, every window within the bound"
    return Verdict(PASS, f"p99 {figures['p99_ms']:.3f} ms ({stable})")


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
