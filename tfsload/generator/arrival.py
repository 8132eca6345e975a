"""Open-loop load: requests leave on a schedule, not when the previous answer came back.

In a closed loop each user sends, waits for the answer and sends again, so a server that stalls
receives fewer requests exactly while it is slow, and the stall hardly shows in the latencies
(coordinated omission). With ``--arrival-rate R`` each generating process keeps a schedule of
intended send times at its share of R (constant spacing, or Poisson arrivals with exponential
gaps); users take the next time from it, wait until then and send, and latency is measured from
the intended time, as wrk2 does. A send that leaves more than a millisecond late (every user was
busy, or the generator could not keep up) is counted; if more than 1 % do, the schedule was not
kept and the results say so. ``--late-after-ms`` changes that millisecond: a search for the
highest rate under a latency bound of 50 ms cares about sends 5 ms late, not 1 ms.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

LATE_AFTER_S = 0.001
KEPT_LATE_FRACTION = 0.01


@dataclass
class Lateness:
    """Send punctuality of one process (measured-phase sends only)."""

    sends: int = 0
    late_sends: int = 0
    max_lateness_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class ArrivalSchedule:
    """Intended send times at ``rate`` per second; ``mode`` is "constant" or "poisson"."""

    def __init__(
        self,
        rate: float,
        mode: str,
        rng: random.Random | None = None,
        late_after_s: float = LATE_AFTER_S,
    ) -> None:
        if rate <= 0 or mode not in ("constant", "poisson"):
            raise ValueError(f"bad arrival schedule: rate {rate}, mode {mode!r}")
        self.rate = rate
        self.mode = mode
        self._rng = rng or random.Random()
        self._next: float | None = None
        self.late_after_s = late_after_s
        self.lateness = Lateness()

    def next_time(self, now: float) -> float:
        """Claim the next intended send time; the schedule starts at the first claim."""
        if self._next is None:
            self._next = now
        intended = self._next
        gap = self._rng.expovariate(self.rate) if self.mode == "poisson" else 1 / self.rate
        self._next += gap
        return intended

    def note_send(self, intended: float, actual: float, counted: bool) -> None:
        """Record how late a send left; warm-up sends (``counted`` False) are not counted."""
        if not counted:
            return
        late = actual - intended
        self.lateness.sends += 1
        if late > self.late_after_s:
            self.lateness.late_sends += 1
        self.lateness.max_lateness_s = max(self.lateness.max_lateness_s, late)


def arrival_summary(mode: str, rate: float | None, latenesses: list[Lateness]) -> dict:
    """The ``arrival`` object of the precise results, over all generating processes."""
    if rate is None:
        return {"mode": "closed", "rate": None, "late_sends": 0, "max_lateness_ms": 0.0,
                "sends": None, "schedule_kept": True}  # fmt: skip
    sends = sum(lateness.sends for lateness in latenesses)
    late = sum(lateness.late_sends for lateness in latenesses)
    worst = max((lateness.max_lateness_s for lateness in latenesses), default=0.0)
    return {
        "mode": mode,
        "rate": rate,
        "late_sends": late,
        "max_lateness_ms": round(worst * 1000, 3),
        "sends": sends,
        "schedule_kept": late <= KEPT_LATE_FRACTION * sends,
    }
