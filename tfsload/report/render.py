"""report.md, report.html (self-contained, plots embedded as base64 PNG) and the terminal table.

All three take the summary dict and format numbers through ``tfsload.report.table``, so they
can never disagree with summary.json or with each other. The Markdown and HTML layouts are
Jinja2 templates (``templates/``) filled from one context; HTML escaping is Jinja2's.
"""

from __future__ import annotations

import base64

import jinja2

from tfsload.core.thresholds import CheckResult
from tfsload.report.plots import PLOTS
from tfsload.report.table import HEADERS, cell_row, header_facts, ms, server_name


def _title(summary: dict) -> str:
    name = summary.get("experiment", {}).get("name", "experiment")
    partial = " (PARTIAL)" if summary["status"] == "partial" else ""
    return f"tfsload report: {name}{partial}"


def _us(value: float | None) -> str:
    return "–" if value is None else f"{value / 1000:.3f} ms"


def server_details(cell: dict) -> list[str]:
    """Plain sentences about what the server measured during the cell."""
    metrics = cell.get("server_metrics")
    if not metrics:
        return ["no server metrics (the target has no metrics URL)"]
    lines = []
    if metrics.get("error"):
        lines.append(f"metrics: {metrics['error']}")
    if "requests" in metrics:
        statuses = ", ".join(f"{k} {v:,}" for k, v in metrics["requests"]["by_status"].items())
        lines.append(f"requests seen by the server: {metrics['requests']['total']:,} ({statuses})")
    for key, what in (
        ("request_latency_us", "server-side latency"),
        ("queuing_latency_us", "time queued for a batch"),
    ):
        if key in metrics:
            m = metrics[key]
            lines.append(
                f"{what}: mean {_us(m['mean'])}, p50 ≈ {_us(m['p50'])}, p99 ≈ {_us(m['p99'])} "
                f"(from histogram buckets, {m['count']:,} samples)"
            )
    batch = metrics.get("batch_size")
    if batch:
        lines.append(
            f"batches run: {batch['batches']:,}, mean {batch['mean_rows']:.1f} rows "
            f"(from {batch['source']})"
        )
    return lines


def client_details(cell: dict) -> list[str]:
    lines = []
    if cell.get("mean_ms") is not None:
        lines.append(
            f"client latency: min {ms(cell.get('min_ms'))}, mean {ms(cell['mean_ms'])}, "
            f"max {ms(cell.get('max_ms'))}"
        )
    if cell.get("generator_cpu_percent_mean") is not None:
        lines.append(
            f"load generator CPU: mean {cell['generator_cpu_percent_mean']:.0f}%, max "
            f"{cell.get('generator_cpu_percent_max') or 0:.0f}% of one core; saturated: "
            f"{'YES' if cell.get('saturated') else 'no'}"
        )
    cpu = []
    if cell.get("server_cpu_s") is not None:
        per_request = cell.get("server_cpu_ms_per_request")
        each = f" ({per_request:.3f} ms per request)" if per_request is not None else ""
        cpu.append(f"launched server {cell['server_cpu_s']:.1f} s{each}")
    if cell.get("other_cpu_percent") is not None:
        cpu.append(f"other processes {cell['other_cpu_percent']:.0f}% of the machine")
    if cpu:
        lines.append("CPU during the cell: " + ", ".join(cpu))
    arrival = cell.get("arrival") or {}
    if arrival.get("mode") == "open":
        lines.append(
            f"open loop at {arrival.get('rate')} req/s: {arrival.get('late_sends', 0):,} late "
            f"sends, at most {arrival.get('max_lateness_ms', 0):.3f} ms late (latency counts from "
            "the intended send time)"
        )
    lines += [f"threshold {CheckResult(**t).describe()}" for t in cell.get("thresholds", [])]
    for f in cell.get("failure_kinds", [])[:5]:
        lines.append(f"error: {f.get('error')} ×{f.get('occurrences')}")
    return lines


def _context(summary: dict, plots: list[dict]) -> dict:
    """Everything both templates show, formatted once."""
    rows_per_request = summary.get("model", {}).get("rows_per_request")
    cells = []
    for cell in summary["cells"]:
        row = cell_row(cell, rows_per_request)
        cells.append(
            {
                "id": cell["id"],
                "server": server_name(cell),
                "row": row,
                "passed": row[-1] == "PASS",
                "problem": f"{cell['status']}: {cell['reason']}" if cell["status"] != "ok" else "",
                "details": client_details(cell) + server_details(cell),
                "locust_reports": [a for a in cell.get("artifacts", []) if a.endswith(".html")],
            }
        )
    targets = [
        {
            "name": name,
            "label": t.get("label") or "",
            "launched": bool(t.get("launch")),
            "flags": " ".join(t.get("flags") or []),
        }
        for name, t in summary.get("targets", {}).items()
    ]
    return {
        "title": _title(summary),
        "partial": summary["status"] == "partial",
        "description": summary.get("experiment", {}).get("description"),
        "facts": header_facts(summary),
        "findings": summary["findings"],
        "headers": HEADERS,
        "cells": cells,
        "targets": targets,
        "plots": plots,
    }


def _markdown_cell(value: str) -> str:
    return value.replace("|", "\\|")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("tfsload.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.filters["md_cell"] = _markdown_cell


def render_markdown(summary: dict, plot_files: dict[str, str]) -> str:
    """report.md: header facts, findings, the cell table, per-cell details, plot links."""
    plots = [{"title": PLOTS[key], "src": path} for key, path in plot_files.items()]
    return _TEMPLATES.get_template("report.md.j2").render(_context(summary, plots))


def render_html(summary: dict, images: dict[str, bytes]) -> str:
    """report.html: the same content as report.md with the plots embedded (no other files)."""
    plots = [
        {"title": PLOTS[key], "src": "data:image/png;base64," + base64.b64encode(png).decode()}
        for key, png in images.items()
    ]
    return _TEMPLATES.get_template("report.html.j2").render(_context(summary, plots))


def render_terminal(summary: dict) -> str:
    """The cell table as aligned plain text, for ``make demo`` and the end of ``run``."""
    rows_per_request = summary.get("model", {}).get("rows_per_request")
    rows = [list(HEADERS)] + [cell_row(c, rows_per_request) for c in summary["cells"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    lines = []
    for row in rows:
        lines.append(
            "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    return "\n".join(lines)
