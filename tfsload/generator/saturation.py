"""Is the load generator itself the bottleneck? Sample each generating process's CPU.

A Locust process runs every user in one OS thread. Once that thread is busy all the time,
requests wait for the generator rather than for the server, and every latency it reports is
inflated (see docs/design.md). So each load-generating process samples its own CPU use about
once a second, and a run whose busiest process passed the limit (90 % of one core by default)
is flagged as saturated: its numbers are not to be trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psutil

SAMPLE_INTERVAL_S = 1.0


@dataclass
class CpuUse:
    """What one process saw: the highest sample, and the sum and number of samples."""

    max_percent: float = 0.0
    sum_percent: float = 0.0
    samples: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class CpuSampler:
    """Samples the CPU use of this process, in percent of one core, between calls."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the interval
        self.use = CpuUse()

    def sample(self) -> float:
        percent = self._process.cpu_percent(None)
        self.use.max_percent = max(self.use.max_percent, percent)
        self.use.sum_percent += percent
        self.use.samples += 1
        return percent


def generator_summary(uses: list[CpuUse], limit_percent: float) -> dict:
    """The ``generator`` object of the precise results, over all generating processes."""
    sampled = [use for use in uses if use.samples]
    peak = max((use.max_percent for use in sampled), default=0.0)
    means = [use.sum_percent / use.samples for use in sampled]
    return {
        "cpu_percent_max": round(peak, 1),
        "cpu_percent_mean": round(sum(means) / len(means), 1) if means else 0.0,
        "saturated": peak > limit_percent,
        "processes": len(uses),
    }
