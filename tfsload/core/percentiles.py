"""The latency percentiles tfsload reports, in one place.

Every table, CSV, plot, threshold and comparison takes its percentiles from :data:`PERCENTILES`,
so a percentile added here appears everywhere at once and none can go missing from one view.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Percentile:
    """One reported percentile: its key in result rows, its value in percent, its label."""

    key: str
    percent: float
    label: str


PERCENTILES: tuple[Percentile, ...] = (
    Percentile("p50_ms", 50.0, "p50"),
    Percentile("p90_ms", 90.0, "p90"),
    Percentile("p95_ms", 95.0, "p95"),
    Percentile("p99_ms", 99.0, "p99"),
    Percentile("p999_ms", 99.9, "p99.9"),
)
KEYS: tuple[str, ...] = tuple(p.key for p in PERCENTILES)
LABELS: dict[str, str] = {p.key: p.label for p in PERCENTILES}
