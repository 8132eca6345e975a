"""tfsload in Locust's web UI: the "Precise latency" tab, its routes, and the start form's check.

It uses Locust's extension points: ``extended_tabs`` / ``extended_tables`` in the template
arguments declare the tab, and the numbers ride along in ``/stats/requests`` (which the UI polls)
as ``extended_stats``. ``/precise`` answers the same rows as JSON, ``/precise/csv`` as CSV.

The start form's POST (``/swarm``) is checked before Locust acts on it: a run tfsload would
refuse (no offered class ticked, a class without an address, a bad option value, fewer users
than workers, a missing instances file in a single process) is answered the way Locust answers
a bad form, ``{"success": false, "message": ...}``, which the UI shows next to the form; nothing
starts, and a corrected form can be sent at once. A master leaves the instances file to its
workers: one that refuses its part stops the run on all of them, and the Logs tab says why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request

from tfsload.core.percentiles import PERCENTILES
from tfsload.generator.results import csv_text

log = logging.getLogger("tfsload")

TAB_KEY = "precise-latency"
COLUMNS = (
    ("name", "Name"), ("type", "Type"), ("count", "# Requests"), ("failures", "# Fails"),
    ("rps", "RPS"), *((p.key, f"{p.label} (ms)") for p in PERCENTILES), ("max_ms", "Max (ms)"),
)  # fmt: skip


def install(
    web_ui, rows: Callable[[], list[dict]], check_form: Callable[[Any], str | None]
) -> None:
    """Add the tab to ``web_ui``; ``rows`` returns the current summaries (total row last);
    ``check_form`` returns why a start form would be refused, or None."""
    web_ui.template_args["extended_tabs"] = [{"title": "Precise latency", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./precise/csv", "title": "Download precise latency CSV"}
    ]

    def table() -> list[dict]:
        return [{key: row[key] for key, _ in COLUMNS} for row in rows()]

    @web_ui.app.before_request
    def refuse_bad_start() -> Response | None:
        if request.method != "POST" or not request.path.endswith("/swarm"):
            return None
        problem = check_form(request.form)
        if problem is None:
            return None
        log.error("tfsload: the run was not started: %s", problem)
        return jsonify({"success": False, "message": f"tfsload: {problem}", "host": ""})

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
