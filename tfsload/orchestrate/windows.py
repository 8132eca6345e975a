"""Is a step of load stable yet? Judged from the measurement windows a running Locust writes.

A step's first seconds are not representative: connections open, caches warm, a queue builds up
or drains. So a step runs in windows (``window_s`` seconds each) until the last
``stable_windows`` of them agree, each within ``tolerance`` of their mean on throughput and on
p99 (the rule of Triton's perf_analyzer: three windows within 10 %), or until ``max_windows``
have passed without that. A step's figures come from the windows that agreed only, merged
exactly from their HDR histograms; a step that never agreed says so and is figured from its
last windows.

The windows come from the generator's ``--windows-json`` file (``tfsload-windows/1``): whole
windows of the measured phase, empty ones included, each with its count, failures, rows and
encoded histogram of successful latencies (µs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from tfsload.core.percentiles import PERCENTILES

WINDOWS_FORMAT = "tfsload-windows/1"


@dataclass(frozen=True)
class StabilityRule:
    """How a step is cut into windows and when it counts as stable."""

    window_s: float = 5.0
    stable_windows: int = 3
    tolerance: float = 0.1
    max_windows: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


def read_windows(path: Path) -> dict | None:
    """The windows document, or None while there is none (the file is replaced atomically)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != WINDOWS_FORMAT:
        return None
    return data


def throughput(window: dict) -> float:
    """Requests completed per second in a window (failures included)."""
    return window["count"] / (window["end"] - window["start"])


def agree(values: list[float | None], tolerance: float) -> bool:
    """Each value lies within ``tolerance`` (a fraction) of their mean.

    None stands for "no successful request": windows agree on it only if all have None.
    """
    if any(v is None for v in values):
        return all(v is None for v in values)
    mean = sum(values) / len(values)
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= tolerance * mean for v in values)


def stable_tail(windows: list[dict], rule: StabilityRule) -> list[dict] | None:
    """The last ``rule.stable_windows`` windows if they agree on throughput and p99, else None."""
    tail = windows[-rule.stable_windows :]
    if len(tail) < rule.stable_windows:
        return None
    if not agree([throughput(w) for w in tail], rule.tolerance):
        return None
    if not agree([w["p99_ms"] for w in tail], rule.tolerance):
        return None
    return tail


def figures(windows: list[dict]) -> dict:
    """Counts, rates and percentiles (ms, µs resolution) of ``windows`` taken together.

    Percentiles come from the windows' histograms added up, so they are exact to the
    histograms' 3 significant digits, not an average of per-window percentiles.
    """
    seconds = sum(w["end"] - w["start"] for w in windows)
    count = sum(w["count"] for w in windows)
    failures = sum(w["failures"] for w in windows)
    rows = sum(w["rows"] for w in windows)
    merged: HdrHistogram | None = None
    for window in windows:
        if not window["histogram"]:
            continue
        histogram = HdrHistogram.decode(window["histogram"])
        if merged is None:
            merged = histogram
        else:
            merged.add(histogram)
    latencies: dict[str, float | None] = {"mean_ms": None}
    latencies.update({p.key: None for p in PERCENTILES})
    latencies["max_ms"] = None
    if merged is not None and merged.get_total_count():
        values = merged.get_percentile_to_value_dict([p.percent for p in PERCENTILES])
        top = merged.get_max_value()
        latencies["mean_ms"] = round(merged.get_mean_value() / 1000, 3)
        for p in PERCENTILES:
            latencies[p.key] = round(min(values[p.percent], top) / 1000, 3)
        latencies["max_ms"] = round(top / 1000, 3)
    return {
        "seconds": round(seconds, 3),
        "requests": count,
        "failures": failures,
        "fail_ratio": round(failures / count, 6) if count else None,
        "rps": round(count / seconds, 3) if seconds else 0.0,
        "rows_per_s": round(rows / seconds, 3) if seconds else 0.0,
        **latencies,
    }


def brief(window: dict) -> dict:
    """A window without its histogram, for records a person reads."""
    return {key: value for key, value in window.items() if key != "histogram"}
