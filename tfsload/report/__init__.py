"""Reports from a results directory: summary.json, report.md, report.html and plots/*.png.

``write_report`` reads only the raw files the runner left (see ``tfsload.orchestrate.runner``), so
``python -m tfsload report DIR`` re-renders any earlier run.
"""

from __future__ import annotations

from pathlib import Path

from tfsload.core.files import write_atomic, write_json_atomic
from tfsload.report.summary import ResultsError, build_summary

__all__ = ["ResultsError", "build_summary", "write_report"]


def write_report(out: Path) -> dict:
    """Write every report file into ``out``; returns the summary."""
    from tfsload.report.plots import draw_all  # matplotlib only when a report is drawn
    from tfsload.report.render import render_html, render_markdown

    summary = build_summary(out)
    images = draw_all(summary["cells"])
    plot_files = {}
    for key, png in images.items():
        plot_files[key] = f"plots/{key}.png"
        write_atomic(out / plot_files[key], png)
    write_json_atomic(out / "summary.json", summary)
    write_atomic(out / "report.md", render_markdown(summary, plot_files))
    write_atomic(out / "report.html", render_html(summary, images))
    return summary
