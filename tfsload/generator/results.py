"""The precise results of a run: the JSON for machines, the CSV, and the printed summary.

Everything here works on plain data (a merged :class:`~tfsload.generator.precise.PreciseStats` and
dicts), so it is the same for a single process, ``--processes`` and a distributed master, and
it is testable without Locust. The JSON layout is the ``tfsload-precise/1`` contract in
docs/design.md; files are written atomically so that a reader never sees half a result.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tfsload.core.files import write_atomic
from tfsload.core.percentiles import PERCENTILES
from tfsload.core.run_spec import RunSpec
from tfsload.core.thresholds import CheckResult, evaluate
from tfsload.generator.arrival import Lateness, arrival_summary
from tfsload.generator.precise import PreciseStats
from tfsload.generator.saturation import CpuUse, generator_summary

FORMAT = "tfsload-precise/1"
WINDOWS_FORMAT = "tfsload-windows/1"
CSV_COLUMNS = (
    ("type", "Type"), ("name", "Name"), ("count", "Request Count"),
    ("failures", "Failure Count"), ("rps", "Requests/s"), ("rows_per_s", "Rows/s"),
    ("min_ms", "Min (ms)"), ("mean_ms", "Mean (ms)"),
    *((p.key, f"{p.percent:g}% (ms)") for p in PERCENTILES),
    ("max_ms", "Max (ms)"),
)  # fmt: skip


def measured_window(facts: list[dict], started: float, stopped: float, counted: bool) -> tuple:
    """(start, end) epoch seconds of the measured phase over all generating processes.

    It starts when the first process finished its warm-up (or at the test start without one),
    and ends with the last counted completion of a ``--request-count`` run that reached its
    count, otherwise when the test stopped or, if later, when the last call that was in flight
    then returned (the calls in flight at the end are waited for and counted).
    """
    starts = [f["measured_start"] for f in facts if f["measured_start"] is not None]
    start = min(starts) if starts else started
    ends = [f["last_completion"] for f in facts if f["last_completion"] is not None]
    if counted and facts and ends and all(f["done"] for f in facts):
        return start, max(ends)
    return start, max(stopped, start, *ends)


def build_results(
    stats: PreciseStats,
    *,
    spec: RunSpec,
    facts: list[dict],
    started: float,
    stopped: float,
    failures: list[dict],
) -> dict:
    """Assemble the ``tfsload-precise/1`` document; rates are over the measured wall time.

    ``facts`` are the generating processes' :meth:`~tfsload.generator.run_state.RunState.facts`.
    ``passed`` is true when every threshold held, no request failed, and the generator was not
    saturated while ``--fail-on-saturation`` asked for that.
    """
    start, end = measured_window(facts, started, stopped, bool(spec.load.request_count))
    wall_time_s = end - start
    entries, total = stats.summaries(wall_time_s)
    checks = evaluate(spec.checks.thresholds, total)
    generator = generator_summary(
        [CpuUse(**f["cpu"]) for f in facts], spec.checks.saturation_cpu_percent
    )
    arrival = arrival_summary(
        spec.load.arrival,
        spec.load.arrival_rate if spec.load.open_loop else None,
        [Lateness(**f["lateness"]) for f in facts],
    )
    passed = (
        all(check.passed for check in checks)
        and total["count"] > 0
        and total["failures"] == 0
        and not (spec.checks.fail_on_saturation and generator["saturated"])
    )
    return {
        "format": FORMAT,
        "start_time": round(start, 3),
        "end_time": round(end, 3),
        "wall_time_s": round(wall_time_s, 3),
        "request_count_target": spec.load.request_count or None,
        "warmup_requests": spec.load.warmup_requests,
        "arrival": arrival,
        "generator": generator,
        "generator_saturated": generator["saturated"],
        "fail_on_saturation": spec.checks.fail_on_saturation,
        "entries": entries,
        "total": total,
        "failures": failures,
        "timeline": stats.timeline(start),
        "thresholds": [check.to_dict() for check in checks],
        "passed": passed,
    }


def windows_document(
    stats: PreciseStats, facts: list[dict], complete_by: float, final: bool
) -> dict:
    """The ``--windows-json`` document: every window that lies wholly in the measured phase and
    ended by ``complete_by`` (epoch seconds). ``final`` is set by the last write of the run.

    The orchestrator rereads it while Locust runs, to stop a step of load once its last windows
    agree; docs/design.md describes the layout.
    """
    starts = [f["measured_start"] for f in facts if f["measured_start"] is not None]
    measured_start = min(starts) if starts else None
    windows = [] if measured_start is None else stats.full_windows(measured_start, complete_by)
    return {
        "format": WINDOWS_FORMAT,
        "window_s": stats.window_s,
        "measured_start": None if measured_start is None else round(measured_start, 3),
        "final": final,
        "windows": windows,
    }


def exit_code(results: dict, fail_on_saturation: bool) -> int | None:
    """1 when no request completed, 3 when a threshold failed, 4 when saturated with
    ``--fail-on-saturation``, else None.

    A run that measured nothing (a server that accepts connections and never answers, or one
    that is down while calls wait for their deadline) is never a pass. None leaves the decision
    to Locust: ``--exit-code-on-error`` if requests failed, else 0.
    """
    if results["total"]["count"] == 0:
        return 1
    if not all(check["passed"] for check in results["thresholds"]):
        return 3
    if fail_on_saturation and results["generator_saturated"]:
        return 4
    return None


def write_json(path: Path, results: dict) -> None:
    write_atomic(path, json.dumps(results, indent=1) + "\n")


def csv_text(rows: list[dict]) -> str:
    """Summaries (entries, then the total) as CSV: Locust-style headers, ms with µs digits."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([title for _, title in CSV_COLUMNS])
    for row in rows:
        writer.writerow(["" if row[key] is None else row[key] for key, _ in CSV_COLUMNS])
    return out.getvalue()


def write_csv(path: Path, results: dict) -> None:
    write_atomic(path, csv_text([*results["entries"], results["total"]]))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_text(results: dict) -> str:
    """The table and verdict lines printed when a run ends."""
    keys = ["count", "failures", "rps", "rows_per_s", "min_ms", "mean_ms"]
    keys += [p.key for p in PERCENTILES] + ["max_ms"]
    heads = ["reqs", "fails", "req/s", "rows/s", "min", "mean"]
    heads += [p.label for p in PERCENTILES] + ["max"]
    rows = [*results["entries"], results["total"]]
    name_width = max(len("Name"), *(len(f"{row['type']} {row['name']}".strip()) for row in rows))
    lines = [
        "Precise latency (ms, µs resolution; percentiles of successful requests)",
        f"{'Name':<{name_width}} " + " ".join(f"{head:>9}" for head in heads),
    ]
    for row in rows:
        label = f"{row['type']} {row['name']}".strip()
        lines.append(f"{label:<{name_width}} " + " ".join(f"{_cell(row[k]):>9}" for k in keys))
    target = results["request_count_target"]
    counted = f"{results['total']['count']} requests" + (f" of {target}" if target else "")
    if results["warmup_requests"]:
        counted += f", after {results['warmup_requests']} warm-up requests"
    lines.append(f"Wall time {results['wall_time_s']:.3f} s ({counted})")
    arrival = results["arrival"]
    if arrival["mode"] == "closed":
        lines.append("Arrival: closed loop")
    else:
        lines.append(
            f"Arrival: open loop, {arrival['mode']} {arrival['rate']:g}/s; "
            f"{arrival['late_sends']} of {arrival['sends']} sends late "
            f"(max {arrival['max_lateness_ms']:.3f} ms)"
        )
        if not arrival["schedule_kept"]:
            lines.append(
                "WARNING: the send schedule was not kept: add users, or generator processes "
                "if the generator is saturated; latencies include the delay"
            )
    generator = results["generator"]
    lines.append(
        f"Generator CPU: max {generator['cpu_percent_max']:.0f}%, mean "
        f"{generator['cpu_percent_mean']:.0f}% over {generator['processes']} process(es)"
    )
    if generator["saturated"]:
        lines.append(
            "WARNING: the load generator was saturated (CPU above the limit): these numbers "
            "are not to be trusted; use more processes (--processes) or fewer users"
        )
    return "\n".join(lines)


def failed_check_lines(results: dict) -> list[str]:
    """Why the run did not pass, one line each: no request completed at all; requests failed
    (how many, and the most frequent cause); each failed threshold."""
    lines = []
    total = results["total"]
    if total["count"] == 0:
        lines.append(
            "tfsload: no request completed: the server never answered within the time limits "
            "(--rest-timeout, --grpc-timeout), or the run ended first"
        )
    elif total["failures"]:
        line = f"tfsload: {total['failures']} of {total['count']} requests failed"
        if results["failures"]:
            top = results["failures"][0]
            line += f"; most often ({top['occurrences']}): {top['name']}: {top['error']}"
        lines.append(line)
    lines += [
        f"tfsload: threshold failed: {CheckResult(**check).describe()}"
        for check in results["thresholds"]
        if not check["passed"]
    ]
    return lines
