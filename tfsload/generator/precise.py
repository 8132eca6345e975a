"""Microsecond-precise latency statistics per stats row, mergeable across processes.

Locust buckets response times under 100 ms to whole milliseconds before it computes
percentiles; TF Serving answers in 1-10 ms, so that rounding is most of the signal. Every request
event is therefore also recorded, in µs, into an HDR histogram (3 significant digits, so each
percentile is within 0.1 %) per (type, name) row. Exact count, failures, rows, sum, min and max
are kept beside it. Histograms hold successful requests only: a refused connection answers in
microseconds and would flatter every percentile.

Worker processes :meth:`PreciseStats.export` their numbers since the last report, and the master
:meth:`PreciseStats.merge`\\ s them, so a distributed run ends up with exactly the histograms a
single process would have recorded. A per-second timeline (all rows together, 2 significant
digits) travels the same way, and so do measurement windows (``window_s`` seconds each, aligned
to the epoch so that every process cuts them alike; 3 significant digits): the orchestrator
judges from them whether a step of load has become stable.

Latencies go in through hdrh's public ``record_value`` (about 0.9 µs each). A vectorised bulk
insert that wrote hdrh's internal arrays saved about 0.8 µs per value, 2-3 % of the generator's
CPU per request: below the 5 % that would justify a private API (benchmarks/precise_recording.py,
docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from tfsload.core.percentiles import PERCENTILES

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything longer is clamped
DIGITS = 3
TIMELINE_DIGITS = 2  # per-second points need less precision and are kept for the whole run
TOTAL_NAME = "Aggregated"


def new_histogram(digits: int = DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def to_micros(response_time_ms: float) -> int:
    return min(max(round(response_time_ms * 1000), 0), HIGHEST_US)


def _ms(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 3)


@dataclass
class Entry:
    """One stats row: every request counted, successful ones in the histogram."""

    name: str
    type: str
    count: int = 0
    failures: int = 0
    rows: int = 0  # prediction rows answered by successful requests
    sum_us: int = 0
    min_us: int = sys.maxsize
    max_us: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)

    def record(self, micros: int, failed: bool, rows: int) -> None:
        self.count += 1
        if failed:
            self.failures += 1
            return
        self.rows += rows
        self.sum_us += micros
        if micros < self.min_us:
            self.min_us = micros
        if micros > self.max_us:
            self.max_us = micros
        self.histogram.record_value(micros)

    def add(self, other: Entry) -> None:
        self.count += other.count
        self.failures += other.failures
        self.rows += other.rows
        self.sum_us += other.sum_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        self.histogram.add(other.histogram)

    def export(self) -> dict:
        encoded = self.histogram.encode().decode() if self.count > self.failures else ""
        return {
            "name": self.name, "type": self.type, "count": self.count,
            "failures": self.failures, "rows": self.rows, "sum_us": self.sum_us,
            "min_us": self.min_us, "max_us": self.max_us, "histogram": encoded,
        }  # fmt: skip

    @classmethod
    def from_export(cls, data: dict) -> Entry:
        entry = cls(**{key: value for key, value in data.items() if key != "histogram"})
        if data["histogram"]:
            entry.histogram = HdrHistogram.decode(data["histogram"])
        return entry

    def summary(self, wall_time_s: float) -> dict:
        """The row as in the precise JSON: counts, rates, latencies in ms (µs resolution)."""
        ok = self.count - self.failures
        latencies: dict[str, float | None] = {"min_ms": None, "mean_ms": None}
        latencies.update({p.key: None for p in PERCENTILES})
        latencies["max_ms"] = None
        if ok:
            values = self.histogram.get_percentile_to_value_dict([p.percent for p in PERCENTILES])
            latencies["min_ms"] = _ms(self.min_us)
            latencies["mean_ms"] = _ms(self.sum_us / ok)
            for p in PERCENTILES:
                # A histogram bucket's upper edge can lie past the exact maximum: clamp to it.
                latencies[p.key] = _ms(min(max(values[p.percent], self.min_us), self.max_us))
            latencies["max_ms"] = _ms(self.max_us)
        per_second = 1 / wall_time_s if wall_time_s > 0 else 0.0
        return {
            "name": self.name,
            "type": self.type,
            "count": self.count,
            "failures": self.failures,
            "rps": round(self.count * per_second, 3),
            "rows_per_s": round(self.rows * per_second, 3),
            **latencies,
            "histogram": self.histogram.encode().decode() if ok else "",
        }


@dataclass
class Span:
    """All requests that completed within one span of time: a second of the timeline, or a
    measurement window."""

    digits: int = TIMELINE_DIGITS
    count: int = 0
    failures: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        self.histogram = new_histogram(self.digits)

    def record(self, micros: int, failed: bool, rows: int) -> None:
        self.count += 1
        if failed:
            self.failures += 1
        else:
            self.rows += rows
            self.histogram.record_value(micros)

    def encoded(self) -> str:
        """The histogram, base64, or "" when nothing succeeded in this span."""
        return self.histogram.encode().decode() if self.count > self.failures else ""

    def export(self, index: int) -> list:
        return [index, self.count, self.failures, self.rows, self.encoded()]

    def merge(self, count: int, failures: int, rows: int, encoded: str) -> None:
        self.count += count
        self.failures += failures
        self.rows += rows
        if encoded:
            self.histogram.decode_and_add(encoded)

    def percentiles_ms(self, percents: list[float]) -> dict[float, float | None]:
        """The latencies at ``percents`` (ms, µs resolution), None when nothing succeeded."""
        if self.count == self.failures:
            return dict.fromkeys(percents)
        values = self.histogram.get_percentile_to_value_dict(percents)
        return {percent: _ms(values[percent]) for percent in percents}


def _span(spans: dict[int, Span], index: int, digits: int) -> Span:
    span = spans.get(index)
    if span is None:
        span = spans[index] = Span(digits)
    return span


class PreciseStats:
    """Precise statistics of one process (or, on a master, of all workers merged)."""

    def __init__(self, window_s: float = 0.0) -> None:
        self.entries: dict[tuple[str, str], Entry] = {}
        self.seconds: dict[int, Span] = {}
        self.window_s = window_s  # 0: no measurement windows
        self.windows: dict[int, Span] = {}

    def record(
        self, request_type: str, name: str, response_time_ms: float, failed: bool, rows: int,
        when: float,
    ) -> None:  # fmt: skip
        """Count one completed request; ``when`` is its completion time (epoch seconds)."""
        entry = self.entries.get((request_type, name))
        if entry is None:
            entry = self.entries[(request_type, name)] = Entry(name, request_type)
        micros = to_micros(response_time_ms)
        entry.record(micros, failed, rows)
        _span(self.seconds, int(when), TIMELINE_DIGITS).record(micros, failed, rows)
        if self.window_s:
            _span(self.windows, int(when // self.window_s), DIGITS).record(micros, failed, rows)

    def reset(self) -> None:
        self.entries.clear()
        self.seconds.clear()
        self.windows.clear()

    def export(self) -> dict:
        """Everything recorded since the last export, JSON-serialisable; then start afresh."""
        data = {
            "entries": [entry.export() for entry in self.entries.values()],
            "seconds": [span.export(t) for t, span in self.seconds.items()],
            "windows": [span.export(index) for index, span in self.windows.items()],
        }
        self.reset()
        return data

    def merge(self, data: dict) -> None:
        """Add numbers exported by another process."""
        for exported in data["entries"]:
            incoming = Entry.from_export(exported)
            entry = self.entries.get((incoming.type, incoming.name))
            if entry is None:
                self.entries[(incoming.type, incoming.name)] = incoming
            else:
                entry.add(incoming)
        for t, *numbers in data["seconds"]:
            _span(self.seconds, t, TIMELINE_DIGITS).merge(*numbers)
        for index, *numbers in data["windows"]:
            _span(self.windows, index, DIGITS).merge(*numbers)

    def total(self) -> Entry:
        """All rows together, named like Locust's total row."""
        total = Entry(TOTAL_NAME, "")
        for entry in self.entries.values():
            total.add(entry)
        return total

    def summaries(self, wall_time_s: float) -> tuple[list[dict], dict]:
        """Summaries of every row (sorted by name, type) and of the total."""
        rows = [
            self.entries[key].summary(wall_time_s) for key in sorted(self.entries, key=_by_name)
        ]
        return rows, self.total().summary(wall_time_s)

    def timeline(self, start_time: float) -> list[dict]:
        """Per-second points; ``t`` is where each second ends, in seconds since ``start_time``."""
        points = []
        for t in sorted(self.seconds):
            second = self.seconds[t]
            values = second.percentiles_ms([50.0, 99.0])
            points.append(
                {
                    "t": round(max(t + 1 - start_time, 0.0), 3),
                    "name": TOTAL_NAME,
                    "count": second.count,
                    "failures": second.failures,
                    "p50_ms": values[50.0],
                    "p99_ms": values[99.0],
                }
            )
        return points

    def full_windows(self, measured_from: float, complete_by: float) -> list[dict]:
        """The measurement windows that lie wholly in ``[measured_from, complete_by]`` (epoch
        seconds), in order, empty ones included: a window in which nothing completed is a
        finding (a stalled server), not a gap. Each has its counts, p50/p99 and its histogram.
        """
        if not self.window_s:
            return []
        width = self.window_s
        first = int(-(-measured_from // width))  # the first window that starts after it
        last = int(complete_by // width)  # windows before this one have ended
        windows = []
        for index in range(first, last):
            span = self.windows.get(index) or Span(DIGITS)
            values = span.percentiles_ms([50.0, 99.0])
            windows.append(
                {
                    "start": round(index * width, 3),
                    "end": round((index + 1) * width, 3),
                    "count": span.count,
                    "failures": span.failures,
                    "rows": span.rows,
                    "p50_ms": values[50.0],
                    "p99_ms": values[99.0],
                    "histogram": span.encoded(),
                }
            )
        return windows


def _by_name(key: tuple[str, str]) -> tuple[str, str]:
    request_type, name = key
    return name, request_type
