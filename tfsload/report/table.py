"""The per-cell table and the report's header facts, formatted once for Markdown, HTML and the
terminal, so every rendering shows exactly the same numbers as summary.json.
"""

from __future__ import annotations

from tfsload.core.percentiles import KEYS as PERCENTILES
from tfsload.core.percentiles import LABELS as PERCENTILE_LABELS
from tfsload.report.summary import SERVER_NAMES

HEADERS = (
    "target",
    "server",
    "protocol",
    "requests",
    "wall time",
    "req/s",
    "rows/s",
    *PERCENTILE_LABELS.values(),
    "errors",
    "batch mean",
    "verdict",
)


def ms(value: float | None) -> str:
    """Milliseconds with microsecond resolution: ``2.417 ms``."""
    return "–" if value is None else f"{value:.3f} ms"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def server_name(cell: dict) -> str:
    """``stand-in`` or ``TF Serving``: stand-in numbers must never pass for TF Serving's."""
    return SERVER_NAMES.get(cell["server_kind"], cell["server_kind"])


def cell_row(cell: dict, rows_per_request: int | None) -> list[str]:
    """One cell as table cells, in HEADERS order."""
    batch = cell.get("server_batch_mean")
    wall = cell.get("wall_time_s")
    return [
        cell["target"],
        server_name(cell),
        cell["protocol"],
        count(cell.get("requests")),
        "–" if wall is None else f"{wall:.2f} s",
        number(cell.get("rps")),
        number(cell.get("rows_per_s")),
        *(ms(cell.get(p)) for p in PERCENTILES),
        count(cell.get("failures")),
        "–" if batch is None else f"{batch:.1f} rows",
        cell["verdict"] if cell["status"] == "ok" else f"{cell['verdict']}: {cell['reason']}",
    ]


def header_facts(summary: dict) -> list[tuple[str, str]]:
    """(label, text) pairs for the top of the report: machine, versions, model, servers."""
    machine = summary.get("machine", {})
    versions = summary.get("versions", {})
    model = summary.get("model", {})
    meta = model.get("metadata") or {}
    kinds = [SERVER_NAMES.get(k, k) for k in summary.get("server_kinds", [])]
    server_versions = sorted(
        {
            f"{server_name(c)} {c['server_version']}"
            for c in summary["cells"]
            if c.get("server_version")
        }
    )
    model_text = f"{model.get('name', '?')}"
    if meta:
        model_text += (
            f" (version {meta.get('version')}, {meta.get('parameters', 0):,} parameters, data "
            f"{meta.get('data_source')}, validation accuracy {meta.get('validation_accuracy')}, "
            f"exported with TensorFlow {meta.get('tensorflow_version')})"
        )
    if model.get("rows_per_request"):
        model_text += f"; {model['rows_per_request']} rows per request"
    load = summary.get("experiment", {}).get("load", {})
    return [
        (
            "Status",
            summary["status"]
            + (" (interrupted: not every cell ran)" if summary["status"] == "partial" else ""),
        ),
        ("Servers", ", ".join(kinds) or "none reached"),
        (
            "Machine",
            f"{machine.get('cpu_model', '?')}, {machine.get('logical_cores', '?')} logical / "
            f"{machine.get('physical_cores', '?')} physical cores, "
            f"{machine.get('memory_gib', '?')} GiB memory, {machine.get('os', '?')}",
        ),
        (
            "Versions",
            ", ".join(f"{k} {v}" for k, v in versions.items() if v)
            + ("; " + ", ".join(server_versions) if server_versions else ""),
        ),
        ("Model", model_text),
        ("Load", ", ".join(f"{k} {v}" for k, v in load.items())),
        ("Started", f"{summary.get('started_at')} (finished {summary.get('finished_at')})"),
    ]
