"""The "Precise latency" tab of Locust's web UI, and its JSON and CSV routes.

It uses Locust's extension points: ``extended_tabs`` / ``extended_tables`` in the template
arguments declare the tab, and the numbers ride along in ``/stats/requests`` (which the UI polls)
as ``extended_stats``. ``/precise`` answers the same rows as JSON, ``/precise/csv`` as CSV.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Response, jsonify, request

from tfsload.results import csv_text

TAB_KEY = "precise-latency"
COLUMNS = (
    ("name", "Name"), ("type", "Type"), ("count", "# Requests"), ("failures", "# Fails"),
    ("rps", "RPS"), ("p50_ms", "p50 (ms)"), ("p90_ms", "p90 (ms)"), ("p95_ms", "p95 (ms)"),
    ("p99_ms", "p99 (ms)"), ("p999_ms", "p99.9 (ms)"), ("max_ms", "Max (ms)"),
)  # fmt: skip


def install(web_ui, rows: Callable[[], list[dict]]) -> None:
    """Add the tab to ``web_ui``; ``rows`` returns the current summaries (total row last)."""
    web_ui.template_args["extended_tabs"] = [{"title": "Precise latency", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./precise/csv", "title": "Download precise latency CSV"}
    ]

    def table() -> list[dict]:
        return [{key: row[key] for key, _ in COLUMNS} for row in rows()]

    @web_ui.app.after_request
    def add_precise_rows(response: Response) -> Response:
        if request.path.endswith("/stats/requests") and response.is_json:
            extended = [{"key": TAB_KEY, "data": table()}]
            response.set_data(json.dumps({**response.get_json(), "extended_stats": extended}))
        return response

    @web_ui.app.route("/precise")
    @web_ui.auth_required_if_enabled
    def precise_rows() -> Response:
        return jsonify(table())

    @web_ui.app.route("/precise/csv")
    @web_ui.auth_required_if_enabled
    def precise_csv() -> Response:
        return Response(
            csv_text(rows()),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=precise_latency.csv"},
        )
