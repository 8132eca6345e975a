"""How many requests a process sends, and which of its completed requests count.

A run may leave out its first completed requests (``--warmup-requests``: connections opening,
caches cold) and may stop after a fixed number of counted requests (``--request-count``, the
original experiment's "10,000 requests"). Each load-generating process gets its share of both
(:func:`split_evenly`) and hands out one send ticket per request, so exactly warm-up + count
requests are ever sent: the run ends with exactly the count asked for, across all processes,
without any process having to know how far the others are.
"""

from __future__ import annotations

from enum import Enum


class Completion(Enum):
    WARMUP = "warmup"  # left out of all results
    MEASURED = "measured"
    LAST = "last"  # the measured request that completes the count


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares differing by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class RequestBudget:
    """Send tickets and completion bookkeeping of one process; ``count`` 0 means no limit."""

    def __init__(self, warmup: int, count: int, started: float) -> None:
        self.warmup = warmup
        self.count = count
        self.sent = 0
        self.completed = 0
        # Epoch times of the measured phase: it starts when the warm-up's last request completes.
        self.measured_start: float | None = started if warmup == 0 else None
        self.last_completion: float | None = None

    def take(self) -> int | None:
        """A ticket for one more send (its 0-based number), or None when the share is sent."""
        if self.count and self.sent >= self.warmup + self.count:
            return None
        self.sent += 1
        return self.sent - 1

    def is_warmup_send(self, ticket: int) -> bool:
        return ticket < self.warmup

    @property
    def measured(self) -> int:
        return max(self.completed - self.warmup, 0)

    @property
    def done(self) -> bool:
        return bool(self.count) and self.measured >= self.count

    def complete(self, now: float) -> Completion:
        """Classify the next completed request, in completion order."""
        self.completed += 1
        if self.completed <= self.warmup:
            if self.completed == self.warmup:
                self.measured_start = now
            return Completion.WARMUP
        self.last_completion = now
        if self.count and self.measured == self.count:
            return Completion.LAST
        return Completion.MEASURED
