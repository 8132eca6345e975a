"""report.md, report.html (self-contained, plots embedded as base64 PNG) and the terminal table.

All three take the summary dict and format numbers through ``tfsload.report.table``, so they
can never disagree with summary.json or with each other.
"""

from __future__ import annotations

import base64
import html

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


def render_markdown(summary: dict, plot_files: dict[str, str]) -> str:
    """report.md: header facts, findings, the cell table, per-cell details, plot links."""
    rows_per_request = summary.get("model", {}).get("rows_per_request")
    out = [f"# {_title(summary)}", ""]
    description = summary.get("experiment", {}).get("description")
    if description:
        out += [description, ""]
    out += [f"- **{label}**: {text}" for label, text in header_facts(summary)] + [""]
    out += ["## Findings", ""] + [f"- {line}" for line in summary["findings"]] + [""]
    out += ["## Cells", ""]
    out.append("| " + " | ".join(HEADERS) + " |")
    out.append("|" + "|".join("---" for _ in HEADERS) + "|")
    for cell in summary["cells"]:
        row = [v.replace("|", "\\|") for v in cell_row(cell, rows_per_request)]
        out.append("| " + " | ".join(row) + " |")
    out += ["", "## Targets", ""]
    for name, t in summary.get("targets", {}).items():
        flags = f" flags `{' '.join(t['flags'])}`" if t.get("flags") else ""
        launched = f" (launched by the runner{flags})" if t.get("launch") else ""
        out.append(f"- **{name}**: {t.get('label')}{launched}")
    out += ["", "## Plots", ""]
    out += [f"![{PLOTS[key]}]({path})" for key, path in plot_files.items()]
    out += ["", "## Details per cell", ""]
    for cell in summary["cells"]:
        out += [f"### {cell['id']} ({server_name(cell)})", ""]
        if cell["status"] != "ok":
            out += [f"- {cell['status']}: {cell['reason']}"]
        out += [f"- {line}" for line in client_details(cell) + server_details(cell)]
        out.append("")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: right; }
th { background: #f2f2f2; } td:nth-child(-n+3), td:last-child { text-align: left; }
td.fail { color: #b00020; font-weight: bold; } .partial { color: #b00020; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def render_html(summary: dict, images: dict[str, bytes]) -> str:
    """report.html: the same content as report.md with the plots embedded (no other files)."""
    e = html.escape
    rows_per_request = summary.get("model", {}).get("rows_per_request")
    title = _title(summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f'<h1 class="{"partial" if summary["status"] == "partial" else ""}">{e(title)}</h1>',
    ]
    description = summary.get("experiment", {}).get("description")
    if description:
        parts.append(f"<p>{e(description)}</p>")
    parts.append("<ul>")
    parts += [f"<li><b>{e(label)}</b>: {e(text)}</li>" for label, text in header_facts(summary)]
    parts += ["</ul>", "<h2>Findings</h2>", "<ul>"]
    parts += [f"<li>{e(line)}</li>" for line in summary["findings"]]
    parts += ["</ul>", "<h2>Cells</h2>", '<table id="cells">']
    parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr>")
    for cell in summary["cells"]:
        row = cell_row(cell, rows_per_request)
        tds = [f"<td>{e(v)}</td>" for v in row[:-1]]
        css = "" if row[-1] == "PASS" else ' class="fail"'
        tds.append(f"<td{css}>{e(row[-1])}</td>")
        parts.append(f'<tr data-cell="{e(cell["id"])}">' + "".join(tds) + "</tr>")
    parts += ["</table>", "<h2>Targets</h2>", "<ul>"]
    for name, t in summary.get("targets", {}).items():
        flags = f" flags <code>{e(' '.join(t['flags']))}</code>" if t.get("flags") else ""
        launched = f" (launched by the runner{flags})" if t.get("launch") else ""
        parts.append(f"<li><b>{e(name)}</b>: {e(t.get('label') or '')}{launched}</li>")
    parts += ["</ul>", "<h2>Plots</h2>"]
    for key, png in images.items():
        data = base64.b64encode(png).decode()
        parts.append(f'<img alt="{e(PLOTS[key])}" src="data:image/png;base64,{data}">')
    parts.append("<h2>Details per cell</h2>")
    for cell in summary["cells"]:
        parts.append(f"<h3>{e(cell['id'])} ({e(server_name(cell))})</h3><ul>")
        if cell["status"] != "ok":
            parts.append(f"<li>{e(cell['status'])}: {e(str(cell['reason']))}</li>")
        lines = client_details(cell) + server_details(cell)
        parts += [f"<li>{e(line)}</li>" for line in lines]
        links = [a for a in cell.get("artifacts", []) if a.endswith(".html")]
        parts += [f'<li>Locust report: <a href="{e(a)}">{e(a)}</a></li>' for a in links]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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
