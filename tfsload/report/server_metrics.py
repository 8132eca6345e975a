"""Server-side view of a cell: the change in a target's Prometheus metrics across the cell.

TF Serving (and the stand-in, under the same names) exports cumulative counters and histograms
on its REST port. The runner saves that text before and after each cell; subtracting one from
the other, here, gives what the server saw during that cell only: how many requests, how long
they took inside the server, how requests were grouped into batches and how long they queued
for a batch. Client percentiles alone cannot
say whether batching happened at all; these numbers can.

Names (TF Serving's ``/`` become ``:``):
``:tensorflow:serving:request_count`` (counter; model_name, status),
``:tensorflow:serving:request_latency`` (histogram, µs; model_name, API, entrypoint),
``:tensorflow:serving:batching_session:processed_batch_size`` (rows per executed batch, padding
included), ``...:queuing_latency`` (histogram, µs) and ``...:wrapped_run_count`` (counter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PREFIX = ":tensorflow:serving:"
REQUEST_COUNT = PREFIX + "request_count"
REQUEST_LATENCY = PREFIX + "request_latency"
PROCESSED_BATCH_SIZE = PREFIX + "batching_session:processed_batch_size"
QUEUING_LATENCY = PREFIX + "batching_session:queuing_latency"
WRAPPED_RUN_COUNT = PREFIX + "batching_session:wrapped_run_count"


class MetricsError(Exception):
    """A metrics file did not hold Prometheus text."""


# Family name -> {(sample name, sorted label items): value}
Snapshot = dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]


def parse(text: str) -> Snapshot:
    """Parse Prometheus text into a snapshot; raises MetricsError if it is not Prometheus text."""
    snapshot: Snapshot = {}
    try:
        for family in text_string_to_metric_families(text):
            samples = snapshot.setdefault(family.name, {})
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except ValueError as exc:
        raise MetricsError(f"not Prometheus text: {exc}") from None
    return snapshot


def _matches(labels: tuple[tuple[str, str], ...], model_name: str) -> bool:
    """Series of other models are left out; series without a model label are kept."""
    return dict(labels).get("model_name", model_name) == model_name


def _counter_samples(snapshot: Snapshot, family: str, model_name: str):
    """(labels, value) of a counter's series; typed counters come as ``<family>_total``."""
    names = (family + "_total", family)  # untyped pages keep the bare name
    for (name, labels), value in snapshot.get(family, {}).items():
        if name in names and _matches(labels, model_name):
            yield labels, value


def _counter_delta(before: Snapshot, after: Snapshot, family: str, model_name: str) -> float | None:
    """Change of a counter summed over its series, or None if the server does not export it."""
    end = list(_counter_samples(after, family, model_name))
    if not end:
        return None
    return sum(v for _, v in end) - sum(v for _, v in _counter_samples(before, family, model_name))


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram (or the change of one): cumulative buckets, sum and count."""

    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +inf last
    total: float
    count: float

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, family: str, model_name: str) -> Histogram | None:
        """All matching label sets of ``family`` added together, or None if absent."""
        series = snapshot.get(family)
        if not series:
            return None
        bounds: dict[float, float] = {}
        total = count = 0.0
        found = False
        for (name, labels), value in series.items():
            if not _matches(labels, model_name):
                continue
            if name == family + "_bucket":
                le = float(dict(labels)["le"])
                bounds[le] = bounds.get(le, 0.0) + value
                found = True
            elif name == family + "_sum":
                total += value
            elif name == family + "_count":
                count += value
        if not found:
            return None
        return cls(tuple(sorted(bounds.items())), total, count)

    def minus(self, earlier: Histogram | None) -> Histogram:
        """The observations made between ``earlier`` and this one."""
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        buckets = tuple((le, c - before.get(le, 0.0)) for le, c in self.buckets)
        return Histogram(buckets, self.total - earlier.total, self.count - earlier.count)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Estimate like PromQL's histogram_quantile: linear inside the bucket holding rank q."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower_bound
                in_bucket = cumulative - lower_count
                fraction = (rank - lower_count) / in_bucket if in_bucket > 0 else 1.0
                return lower_bound + (le - lower_bound) * fraction
            lower_bound, lower_count = le, cumulative
        return lower_bound

    def distribution(self) -> list[dict]:
        """Counts per bucket, empty ones left out: ``[{"from", "le", "count"}]``.

        ``from`` is the previous bucket's bound. TF Serving (and the stand-in) count a value in
        the first bucket whose bound exceeds it, so a bucket holds ``from <= value < le``.
        """
        rows = []
        previous_count, previous_le = 0.0, 0.0
        for le, cumulative in self.buckets:
            count = cumulative - previous_count
            if count > 0:
                bound = "+Inf" if math.isinf(le) else le
                rows.append({"from": previous_le, "le": bound, "count": round(count)})
            previous_count, previous_le = cumulative, le
        return rows

    def summary(self) -> dict:
        """Count, mean and estimated p50/p90/p99 for reports."""
        return {
            "count": round(self.count),
            "mean": self.mean,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
        }


def _histogram_delta(
    before: Snapshot, after: Snapshot, family: str, model_name: str
) -> Histogram | None:
    end = Histogram.from_snapshot(after, family, model_name)
    if end is None:
        return None
    return end.minus(Histogram.from_snapshot(before, family, model_name))


def _requests_by_status(before: Snapshot, after: Snapshot, model_name: str) -> dict[str, int]:
    start = dict(_counter_samples(before, REQUEST_COUNT, model_name))
    statuses: dict[str, int] = {}
    for labels, value in _counter_samples(after, REQUEST_COUNT, model_name):
        status = dict(labels).get("status", "")
        statuses[status] = statuses.get(status, 0) + round(value - start.get(labels, 0.0))
    return {status: n for status, n in sorted(statuses.items()) if n}


def delta(before_text: str, after_text: str, model_name: str, rows_per_request: int | None) -> dict:
    """What the server recorded between two scrapes, for ``model_name``.

    The mean batch size comes from ``processed_batch_size`` when the server exports it as a
    histogram; otherwise it is derived from the number of batched runs
    (``wrapped_run_count``), which TF Serving exports as a plain counter.
    """
    before, after = parse(before_text), parse(after_text)
    result: dict = {"families": sorted(name for name in after if name.startswith(PREFIX))}
    requests = _counter_delta(before, after, REQUEST_COUNT, model_name)
    if requests is not None:
        result["requests"] = {
            "total": round(requests),
            "by_status": _requests_by_status(before, after, model_name),
        }
    latency = _histogram_delta(before, after, REQUEST_LATENCY, model_name)
    if latency is not None and latency.count > 0:
        result["request_latency_us"] = latency.summary()
    queuing = _histogram_delta(before, after, QUEUING_LATENCY, model_name)
    if queuing is not None and queuing.count > 0:
        result["queuing_latency_us"] = queuing.summary()
    batch = _histogram_delta(before, after, PROCESSED_BATCH_SIZE, model_name)
    runs = _counter_delta(before, after, WRAPPED_RUN_COUNT, model_name)
    if batch is not None and batch.count > 0:
        result["batch_size"] = {
            "source": "processed_batch_size",
            "batches": round(batch.count),
            "mean_rows": batch.mean,
            "distribution": batch.distribution(),
        }
    elif runs and requests and rows_per_request:
        result["batch_size"] = {
            "source": "wrapped_run_count",
            "batches": round(runs),
            "mean_rows": requests * rows_per_request / runs,
            "distribution": [],
        }
    return result
