"""Pass/fail checks on precise results, as data: check name, limit, measured value, passed.

A check reads the total row of the precise results (``tfsload-precise/1``): ``p50_ms``,
``p95_ms`` and ``p99_ms`` must be at most their limit, ``fail_ratio`` (failures / count) at most
its limit, ``min_rps`` (the total ``rps``) at least its limit. A check whose value cannot be
measured (no successful request, so no percentile) fails. The Locust plugin uses this at quit
and the runner uses it on finished cells, so it knows nothing about Locust.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

# check name -> (what it reads from the total row, True if the value must not exceed the limit)
CHECKS: dict[str, tuple[str, bool]] = {
    "p50_ms": ("p50_ms", True),
    "p95_ms": ("p95_ms", True),
    "p99_ms": ("p99_ms", True),
    "fail_ratio": ("fail_ratio", True),
    "min_rps": ("rps", False),
}


@dataclass(frozen=True)
class Threshold:
    check: str
    limit: float

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}; known: {', '.join(CHECKS)}")


@dataclass(frozen=True)
class CheckResult:
    check: str
    limit: float
    value: float | None
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``p99_ms = 12.345, limit <= 10.0: FAILED``."""
        _, at_most = CHECKS[self.check]
        value = "not measured" if self.value is None else f"{self.value:g}"
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{self.check} = {value}, limit {'<=' if at_most else '>='} {self.limit:g}: {verdict}"
        )


def measured_value(check: str, total: Mapping[str, object]) -> float | None:
    """The number ``check`` compares, read from a total row."""
    key, _ = CHECKS[check]
    if key == "fail_ratio":
        count = int(total.get("count") or 0)
        return int(total.get("failures") or 0) / count if count else None
    value = total.get(key)
    return float(value) if isinstance(value, int | float) else None


def evaluate(thresholds: list[Threshold], total: Mapping[str, object]) -> list[CheckResult]:
    """Check every threshold against a total row; the results keep the thresholds' order."""
    results = []
    for threshold in thresholds:
        value = measured_value(threshold.check, total)
        _, at_most = CHECKS[threshold.check]
        if value is None:
            passed = False
        else:
            passed = value <= threshold.limit if at_most else value >= threshold.limit
        rounded = None if value is None else round(value, 6)
        results.append(CheckResult(threshold.check, threshold.limit, rounded, passed))
    return results
