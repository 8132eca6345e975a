"""TF Serving's Prometheus metrics, kept by prometheus-client and written in TF Serving's text.

Names, label sets and bucket limits are TF Serving's (``servables/tensorflow/util.cc``,
``batching/batching_session.cc``, ``batching/batching_util.h``), so the suite reads the
stand-in and TF Serving the same way. prometheus-client holds the values in a private registry;
the exposition is written here because TF Serving's differs from prometheus-client's own: a
counter is named without ``_total``, there are no ``_created`` series and no ``# HELP`` lines,
and TensorFlow's histogram buckets count values strictly below their limit (a batch of 8 rows
lands in the ``le="16"`` bucket), which the bucket bounds below reproduce.

Unlike TF Serving, ``_sum`` values are written with full precision instead of six significant
digits, so latency sums stay usable for deltas; every parser reads both forms.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram

from tfsload.core.serving_config import BatchingConfig

PREFIX = ":tensorflow:serving:"


def exponential(scale: float, growth: float, count: int) -> list[float]:
    """TensorFlow's Buckets::Exponential limits, by the same repeated multiplication."""
    limits, bound = [], scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return limits


def _below(limits: list[float]) -> list[float]:
    """Bounds that make prometheus-client's ``value <= bound`` mean TF's ``value < limit``."""
    return [math.nextafter(limit, -math.inf) for limit in limits] + [math.inf]


LATENCY_BUCKETS = exponential(10, 1.8, 33)  # µs, up to about 20 minutes
QUEUING_BUCKETS = exponential(100, 1.2, 52)  # µs, up to about 1 second
BATCH_SIZE_BUCKETS = exponential(1, 2, 14)  # rows, 1 to 8192


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """The metrics one stand-in exports; also the batcher's observer."""

    def __init__(self, batching: BatchingConfig | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._labels: dict[str, list[str]] = {}
        self._children: dict[tuple, object] = {}
        self.request_count = self._counter(
            "request_count", "The total number of requests.", ["model_name", "status"]
        )
        self.request_latency = self._histogram(
            "request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            LATENCY_BUCKETS,
        )
        self.runtime_latency = self._histogram(
            "runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            LATENCY_BUCKETS,
        )
        self._batching = batching
        if batching is None:
            return
        self.queuing_latency = self._histogram(
            "batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["thread_pool_name"],
            QUEUING_BUCKETS,
        )
        self.wrapped_run_count = self._counter(
            "batching_session:wrapped_run_count",
            "Total count of run calls on the wrapped session",
            [],
        )
        self.input_batch_size = self._histogram(
            "batching_session:input_batch_size",
            "Tracks the batch size distribution on the inputs.",
            [],
            BATCH_SIZE_BUCKETS,
        )
        self.processed_batch_size = self._histogram(
            "batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            [],
            BATCH_SIZE_BUCKETS,
        )
        self.padding_size = self._histogram(
            "batching_session:padding_size",
            "Tracks the padding size distribution on batches.",
            ["execution_batch_size"],
            BATCH_SIZE_BUCKETS,
        )

    def _counter(self, name: str, text: str, labels: list[str]) -> Counter:
        self._labels[PREFIX + name] = labels
        return Counter(PREFIX + name, text, labels, registry=self.registry)

    def _histogram(self, name: str, text: str, labels: list[str], limits: list[float]) -> Histogram:
        self._labels[PREFIX + name] = labels
        return Histogram(
            PREFIX + name, text, labels, registry=self.registry, buckets=_below(limits)
        )

    def _child(self, metric, *labels: str):
        """``metric.labels(*labels)``, remembered: the lookup costs more than the update."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # Requests (both transports).
    def request(
        self, model_name: str, status: str, api: str, entrypoint: str, micros: float
    ) -> None:
        """One finished request; latency counts only successful ones, as in TF Serving."""
        self._child(self.request_count, model_name, status).inc()
        if status == "OK":
            self._child(self.request_latency, model_name, api, entrypoint).observe(micros)

    def runtime(self, model_name: str, micros: float) -> None:
        self._child(self.runtime_latency, model_name, "Predict", "TF1").observe(micros)

    # BatchObserver.
    def input_batch(self, rows: int) -> None:
        self.input_batch_size.observe(rows)

    def queued(self, micros: float) -> None:
        self._child(self.queuing_latency, self._batching.thread_pool_name).observe(micros)

    def processed_batch(self, rows: int, padding: int) -> None:
        self.processed_batch_size.observe(rows)
        self._child(self.padding_size, str(rows)).observe(padding)
        self.wrapped_run_count.inc()

    def render(self) -> str:
        """The Prometheus text page, line for line in TF Serving's PrometheusExporter layout."""
        lines = []
        for family in sorted(self.registry.collect(), key=lambda f: f.name):
            name = family.name
            names = self._labels[name]
            lines.append(f"# TYPE {name} {family.type}")
            if family.type == "counter":
                for sample in family.samples:
                    if sample.name == name + "_total":
                        labels = _labels(sample.labels, names)
                        lines.append(f"{name}{{{labels}}} {int(sample.value)}")
                continue
            series: dict[str, dict] = {}
            for sample in family.samples:
                key = _labels(sample.labels, names)
                entry = series.setdefault(key, {"buckets": [], "sum": 0.0, "count": 0})
                if sample.name == name + "_bucket":
                    entry["buckets"].append((float(sample.labels["le"]), int(sample.value)))
                elif sample.name == name + "_sum":
                    entry["sum"] = sample.value
                elif sample.name == name + "_count":
                    entry["count"] = int(sample.value)
            for key, entry in series.items():
                prefix = f"{key}," if key else ""
                for le, count in entry["buckets"]:
                    limit = "+Inf" if math.isinf(le) else f"{le:.6g}"
                    lines.append(f'{name}_bucket{{{prefix}le="{limit}"}} {count}')
                lines.append(f"{name}_sum{{{key}}} {_number(entry['sum'])}")
                lines.append(f"{name}_count{{{key}}} {entry['count']}")
        return "\n".join(lines) + "\n"


def _labels(values: dict[str, str], names: list[str]) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    return ",".join(f'{label}="{escape(values[label])}"' for label in names)
