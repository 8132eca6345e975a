"""summary.json: one record per cell, built only from a results directory's raw files.

The runner leaves raw results (``run.json``, per-cell ``cell.json``, the plugin's
``precise.json``, metrics text before and after); everything a report shows is derived here, so
re-rendering an old directory with newer code gives the same kind of report. The findings are
computed from the numbers, never assumed: which server and protocol delivered more, by how much,
and whether the server batched at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfsload.core import run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.percentiles import KEYS as PERCENTILES
from tfsload.core.run_spec import Checks
from tfsload.core.thresholds import CheckResult, evaluate
from tfsload.report.server_metrics import MetricsError, delta

SUMMARY_FORMAT = "tfsload-summary/1"
# Differences below this are reported as "about the same": one run on a shared machine.
SAME_WITHIN = 0.10
# Above this share of the machine's CPU used by other processes during a cell, say it was noisy.
NOISY_OTHER_CPU_PERCENT = 10.0
SERVER_NAMES = {"standin": "stand-in", "tfserving": "TF Serving", "unknown": "unknown server"}


class ResultsError(Exception):
    """The directory is not a tfsload results directory (no readable run.json)."""


def _read_json(path: Path) -> dict | None:
    """A results file's JSON object, None when the file is absent; ResultsError otherwise."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise ResultsError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a JSON object")
    return data


def _server_metrics(cell_dir: Path, model: dict) -> dict | None:
    try:
        before = (cell_dir / "metrics-before.prom").read_text()
        after = (cell_dir / "metrics-after.prom").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return delta(before, after, model["name"], model.get("rows_per_request"))
    except MetricsError as exc:
        return {"error": str(exc)}


def verdict(cell: dict, fail_on_saturation: bool) -> str:
    """PASS, or FAIL with every reason (thresholds, saturation when the experiment says it
    fails a cell, errors), or the cell's status. A saturated generator that does not fail the
    cell is still reported among the findings."""
    if cell["status"] != "ok":
        return cell["status"].upper().replace("_", " ")
    checks = [CheckResult(**t) for t in cell.get("thresholds", [])]
    problems = [c.describe() for c in checks if not c.passed]
    if cell.get("saturated") and fail_on_saturation:
        problems.append("generator saturated")
    if cell.get("failures") and not any(c.check == "fail_ratio" for c in checks):
        problems.append(f"{cell['failures']} errors")
    return "FAIL: " + "; ".join(problems) if problems else "PASS"


def summarize_cell(cell_dir: Path, cell_id: str, model: dict, checks: Checks) -> dict:
    """One cell's row: status, client numbers (precise JSON), server numbers (metrics delta).

    The experiment's ``checks`` are evaluated here on the precise totals, with the same code the
    Locust plugin uses, so a re-rendered report judges cells the same way.
    """
    record = _read_json(cell_dir / "cell.json") or {
        "id": cell_id,
        "status": "not_run",
        "reason": "no results (the run stopped before this cell)",
    }
    server = record.get("server") or {}
    cell = {
        "id": cell_id,
        "target": record.get("target", cell_id.rsplit("-", 1)[0]),
        "label": record.get("label", ""),
        "protocol": record.get("protocol", cell_id.rsplit("-", 1)[-1]),
        "server_kind": server.get("kind", "unknown"),
        "server_version": server.get("version"),
        "status": record["status"],
        "reason": record.get("reason"),
        "exit_code": record.get("exit_code"),
        "process_time_s": record.get("wall_time_s"),
        "client_cpu_percent": record.get("client_cpu_percent"),
        "server_cpu_s": record.get("server_cpu_s"),
        "other_cpu_percent": record.get("other_cpu_percent_of_machine"),
    }
    precise = _read_json(cell_dir / "precise.json")
    if precise and record["status"] in ("ok", "interrupted"):
        total = precise.get("total") or {}
        generator = precise.get("generator") or {}
        cell.update(
            requests=total.get("count"),
            failures=total.get("failures"),
            wall_time_s=precise.get("wall_time_s"),
            rps=total.get("rps"),
            rows_per_s=total.get("rows_per_s"),
            mean_ms=total.get("mean_ms"),
            min_ms=total.get("min_ms"),
            max_ms=total.get("max_ms"),
            **{p: total.get(p) for p in PERCENTILES},
            generator_cpu_percent_mean=generator.get("cpu_percent_mean"),
            generator_cpu_percent_max=generator.get("cpu_percent_max"),
            saturated=bool(precise.get("generator_saturated", generator.get("saturated"))),
            arrival=precise.get("arrival"),
            thresholds=[c.to_dict() for c in evaluate(checks.thresholds, total)],
            failure_kinds=precise.get("failures", []),
            timeline=[t for t in precise.get("timeline", []) if t.get("name") == "Aggregated"],
        )
    metrics = (
        _server_metrics(cell_dir, model) if record["status"] in ("ok", "interrupted") else None
    )
    if record.get("metrics_error"):
        metrics = {**(metrics or {}), "error": record["metrics_error"]}
    cell["server_metrics"] = metrics
    batch = (metrics or {}).get("batch_size")
    cell["server_batch_mean"] = batch["mean_rows"] if batch else None
    served = ((metrics or {}).get("requests") or {}).get("total")
    cpu = cell["server_cpu_s"]
    cell["server_cpu_ms_per_request"] = round(1000 * cpu / served, 3) if cpu and served else None
    cell["verdict"] = verdict(cell, checks.fail_on_saturation)
    cell["artifacts"] = sorted(
        str(p.relative_to(cell_dir.parent.parent)) for p in cell_dir.glob("*") if p.is_file()
    )
    return cell


def _change(new: float, old: float) -> float:
    return (new - old) / old if old else 0.0


def _describe_change(change: float, more: str, less: str) -> str:
    if abs(change) < SAME_WITHIN:
        return f"about the same ({change:+.0%})"
    return f"{abs(change):.0%} {more if change > 0 else less}"


def findings(cells: list[dict], rows_per_request: int | None) -> list[str]:
    """Plain statements drawn from the measured numbers, for the top of the report."""
    measured = [c for c in cells if c["status"] == "ok" and c.get("rps")]
    lines: list[str] = []
    kinds = {c["server_kind"] for c in cells if c["status"] == "ok"}
    if "standin" in kinds:
        lines.append(
            "Cells marked stand-in ran against tfsload's stand-in server (TensorFlow in Python), "
            "not TF Serving: they compare serving set-ups on this machine, not TF Serving itself."
        )
    for protocol in dict.fromkeys(c["protocol"] for c in measured):
        group = [c for c in measured if c["protocol"] == protocol]
        if len(group) < 2:
            continue
        base = group[0]
        for other in group[1:]:
            rps = _change(other["rps"], base["rps"])
            p99 = _change(other["p99_ms"], base["p99_ms"])
            line = (
                f"{protocol}: {other['target']} vs {base['target']}: throughput "
                f"{_describe_change(rps, 'higher', 'lower')} ({other['rps']:,.1f} vs "
                f"{base['rps']:,.1f} req/s), p99 {_describe_change(p99, 'higher', 'lower')} "
                f"({other['p99_ms']:.3f} vs {base['p99_ms']:.3f} ms)"
            )
            cpu_new, cpu_old = other["server_cpu_ms_per_request"], base["server_cpu_ms_per_request"]
            if cpu_new and cpu_old:
                # CPU per request hardly depends on what else runs: the steadiest comparison.
                cpu = _change(cpu_new, cpu_old)
                line += (
                    f", server CPU per request {_describe_change(cpu, 'higher', 'lower')} "
                    f"({cpu_new:.3f} vs {cpu_old:.3f} ms)"
                )
            lines.append(line + ".")
        best = max(group, key=lambda c: c["rps"])
        fastest = min(group, key=lambda c: c["p99_ms"])
        lines.append(
            f"{protocol}: highest throughput {best['target']} ({best['rps']:,.1f} req/s); "
            f"lowest p99 {fastest['target']} ({fastest['p99_ms']:.3f} ms)."
        )
    for target in dict.fromkeys(c["target"] for c in measured):
        by_protocol = {c["protocol"]: c for c in measured if c["target"] == target}
        if {"rest", "grpc"} <= by_protocol.keys():
            change = _change(by_protocol["grpc"]["rps"], by_protocol["rest"]["rps"])
            lines.append(
                f"{target}: gRPC vs REST: throughput {_describe_change(change, 'higher', 'lower')}"
                f" ({by_protocol['grpc']['rps']:,.1f} vs {by_protocol['rest']['rps']:,.1f} req/s)."
            )
    for cell in measured:
        mean = cell.get("server_batch_mean")
        cpu = cell.get("server_cpu_ms_per_request")
        if mean is None and cpu is None:
            continue
        parts = []
        if mean is not None:
            requests = (
                f" (about {mean / rows_per_request:.1f} requests)" if rows_per_request else ""
            )
            parts.append(f"the server ran batches of {mean:.1f} rows on average{requests}")
        if cpu is not None:
            parts.append(f"it spent {cpu:.3f} ms of CPU per request")
        lines.append(f"{cell['id']}: " + "; ".join(parts) + ".")
    busy = [c for c in measured if (c.get("other_cpu_percent") or 0) > NOISY_OTHER_CPU_PERCENT]
    if busy:
        worst = max(busy, key=lambda c: c["other_cpu_percent"])
        lines.append(
            f"Other processes used up to {worst['other_cpu_percent']:.0f}% of this machine's CPU "
            f"while cells ran ({', '.join(c['id'] for c in busy)}): those numbers carry that "
            "noise; rerun on a quiet machine before trusting small differences."
        )
    saturated = [c["id"] for c in measured if c.get("saturated")]
    if saturated:
        lines.append(
            "The load generator was saturated in " + ", ".join(saturated) + ": latency there "
            "includes client-side queueing and throughput is the generator's limit, not the "
            "server's."
        )
    failed = [c["id"] for c in cells if c["status"] in ("failed", "interrupted", "not_run")]
    if failed:
        lines.append("Without results: " + ", ".join(failed) + " (see the table).")
    return lines


def run_checks(run: dict) -> Checks:
    """The checks every cell of a run is judged by, from its run spec (``run.json``)."""
    try:
        return run_spec.from_dict(run["spec"]).checks
    except (KeyError, ConfigError) as exc:
        raise ResultsError(f"run.json: no valid run spec ({exc})") from None


def build_summary(out: Path) -> dict:
    """The whole summary of a results directory (see the module docstring)."""
    run = _read_json(out / "run.json")
    if run is None:
        raise ResultsError(f"{out}: no run.json, not a tfsload results directory")
    cell_ids = run.get("cells", [])
    if not isinstance(cell_ids, list) or not all(isinstance(c, str) for c in cell_ids):
        raise ResultsError(f"{out / 'run.json'}: cells: must be a list of cell ids")
    model = run.get("model") or {}
    if not isinstance(model, dict):
        raise ResultsError(f"{out / 'run.json'}: model: must be an object")
    checks = run_checks(run)
    cells = [summarize_cell(out / "cells" / cid, cid, model, checks) for cid in cell_ids]
    kinds = sorted({c["server_kind"] for c in cells if c["server_kind"] != "unknown"})
    return {
        "format": SUMMARY_FORMAT,
        "status": "partial" if run.get("status") != "complete" else "complete",
        "experiment": run.get("experiment", {}),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "machine": run.get("machine", {}),
        "versions": run.get("versions", {}),
        "model": model,
        "targets": run.get("targets", {}),
        "server_kinds": kinds,
        "cells": cells,
        "findings": findings(cells, model.get("rows_per_request")),
    }
