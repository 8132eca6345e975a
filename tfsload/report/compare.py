"""Compare two runs cell by cell, for CI: did throughput drop or latency rise past a tolerance?

Cells are matched by id (``<target>-<protocol>``). A regression is: throughput down, or p50, p90
or p99 up, by more than the tolerance (a fraction: 0.1 = 10%); errors where the old run had none;
a cell that ran in the old run but failed or is missing in the new one. p99.9 is printed but not
gated: with a few thousand requests it rests on a handful of samples and would make CI flaky.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfsload.report.summary import SUMMARY_FORMAT, ResultsError, build_summary
from tfsload.report.table import ms

# (summary key, label, higher is better, gated)
METRICS = (
    ("rps", "req/s", True, True),
    ("p50_ms", "p50", False, True),
    ("p90_ms", "p90", False, True),
    ("p99_ms", "p99", False, True),
    ("p999_ms", "p99.9", False, False),
)


@dataclass(frozen=True)
class Comparison:
    """The printable lines and the regressions found (empty: within tolerance)."""

    lines: list[str]
    regressions: list[str]


def load_summary(path: Path) -> dict:
    """A run's summary from a results directory (or its summary.json); raises ResultsError."""
    path = Path(path)
    if path.is_file():
        try:
            return _checked(json.loads(path.read_text()), path)
        except (OSError, ValueError, RecursionError) as exc:
            raise ResultsError(f"{path}: not a summary.json ({exc})") from None
    if (path / "summary.json").is_file():
        return load_summary(path / "summary.json")
    if not path.is_dir():
        raise ResultsError(f"{path}: no such results directory")
    return build_summary(path)


def _checked(summary: object, path: Path) -> dict:
    """``summary`` when it has the shape :func:`compare` reads; ResultsError names the first
    part that does not (a hand-edited or foreign file must not end in a traceback)."""
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        raise ResultsError(f"{path}: not a summary.json (format is not {SUMMARY_FORMAT})")
    cells = summary.get("cells")
    if not isinstance(cells, list):
        raise ResultsError(f"{path}: cells: must be a list")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise ResultsError(f"{path}: cells[{i}]: must be an object")
        for key in ("id", "status"):
            if not isinstance(cell.get(key), str):
                raise ResultsError(f"{path}: cells[{i}].{key}: must be a string")
        for key in (*(m[0] for m in METRICS), "failures"):
            value = cell.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float | None):
                raise ResultsError(f"{path}: cells[{i}].{key}: must be a number")
    return summary


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.1f}" if key == "rps" else ms(value)


def compare(old: dict, new: dict, tolerance: float) -> Comparison:
    """Per-cell changes from ``old`` to ``new`` and the regressions past ``tolerance``."""
    old_cells = {c["id"]: c for c in old["cells"]}
    new_cells = {c["id"]: c for c in new["cells"]}
    lines = [f"{'cell':<32} {'metric':<7} {'old':>14} {'new':>14} {'change':>8}"]
    regressions: list[str] = []
    for cell_id, before in old_cells.items():
        after = new_cells.get(cell_id)
        if before["status"] != "ok":
            lines.append(f"{cell_id:<32} no baseline (old cell {before['status']})")
            continue
        if after is None or after["status"] != "ok":
            state = "missing" if after is None else after["status"]
            lines.append(f"{cell_id:<32} {state} in the new run")
            regressions.append(f"{cell_id}: {state} in the new run")
            continue
        for key, label, higher_better, gated in METRICS:
            a, b = before.get(key), after.get(key)
            if a is None or b is None:
                continue
            change = (b - a) / a if a else 0.0
            worse = -change if higher_better else change
            flag = ""
            if gated and worse > tolerance:
                flag = "  REGRESSION"
                regressions.append(f"{cell_id}: {label} {change:+.1%} (tolerance {tolerance:.0%})")
            name = cell_id if key == "rps" else ""
            lines.append(
                f"{name:<32} {label:<7} {_fmt(key, a):>14} {_fmt(key, b):>14} {change:>+8.1%}{flag}"
            )
        if after.get("failures") and not before.get("failures"):
            lines.append(f"{'':<32} errors  {0:>14} {after['failures']:>14,}  REGRESSION")
            regressions.append(f"{cell_id}: {after['failures']} errors, none before")
    for cell_id in new_cells.keys() - old_cells.keys():
        lines.append(f"{cell_id:<32} new cell, no baseline")
    return Comparison(lines, regressions)
