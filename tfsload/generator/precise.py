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

Latencies wait in a list and go into the histograms in bulk (:func:`add_values`, vectorised):
recording runs in the load generator's only thread for every request, and one hdrh
``record_value`` call costs microseconds of Python.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

from tfsload.core.percentiles import PERCENTILES

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything longer is clamped
DIGITS = 3
TIMELINE_DIGITS = 2  # per-second points need less precision and are kept for the whole run
TOTAL_NAME = "Aggregated"
FLUSH_AT = 4096  # pending latencies per histogram before they are added in bulk


def new_histogram(digits: int = DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def to_micros(response_time_ms: float) -> int:
    return min(max(round(response_time_ms * 1000), 0), HIGHEST_US)


def _ms(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 3)


def add_values(histogram: HdrHistogram, values: list[int]) -> None:
    """Record every value of ``values`` (each in the histogram's range) at once.

    The same counts as ``histogram.record_value(v)`` for each ``v`` (tests/test_locust_units.py
    holds it to that), computed with numpy from the histogram's own layout: the bucket is the
    bit length of ``v | sub_bucket_mask`` (frexp's exponent, exact below 2**53), the sub-bucket
    the value shifted by it.
    """
    if not values:
        return
    h = histogram
    v = np.asarray(values, dtype=np.int64)
    bits = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket
    index -= h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts += np.bincount(index, minlength=h.counts_len).astype(counts.dtype)
    h.total_count += len(values)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))


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
    pending: list[int] = field(default_factory=list)  # successful latencies not yet in histogram

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
        self.pending.append(micros)
        if len(self.pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        add_values(self.histogram, self.pending)
        self.pending = []

    def add(self, other: Entry) -> None:
        other.flush()
        self.flush()
        self.count += other.count
        self.failures += other.failures
        self.rows += other.rows
        self.sum_us += other.sum_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        self.histogram.add(other.histogram)

    def export(self) -> dict:
        self.flush()
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
        self.flush()
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
    pending: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.histogram = new_histogram(self.digits)

    def record(self, micros: int, failed: bool, rows: int) -> None:
        self.count += 1
        if failed:
            self.failures += 1
        else:
            self.rows += rows
            self.pending.append(micros)

    def encoded(self) -> str:
        """The histogram, base64, or "" when nothing succeeded in this span."""
        self.flush()
        return self.histogram.encode().decode() if self.count > self.failures else ""

    def flush(self) -> None:
        add_values(self.histogram, self.pending)
        self.pending = []

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
        self.flush()
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
