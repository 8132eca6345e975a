"""The runner end to end: real stand-ins launched by it, real headless Locust per cell, real
reports; an unreachable target fails only its own cells; Ctrl-C leaves a partial report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.test_report import COLUMNS, PNG_MAGIC, expected_row, html_cells, markdown_rows
from tfsload.orchestrate.launch import free_port

BATCH_CONFIG = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 8 }
num_batch_threads { value: 1 }
"""
MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'


def write_experiment(directory: Path, model, body: str) -> Path:
    """An experiment file in ``directory`` (with the batching/monitoring configs beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "batch.cfg").write_text(BATCH_CONFIG)
    (directory / "monitoring.cfg").write_text(MONITORING)
    path = directory / "tiny.toml"
    path.write_text(
        f"""name = "tiny"
protocols = ["rest", "grpc"]
[model]
name = "model"
base_path = "{model.version_dir.parent}"
instances = "{model.instances_path}"
{body}"""
    )
    return path


TINY = """
[load]
users = 4
spawn_rate = 4
requests = 80
warmup_requests = 5
max_duration = "2m"

[thresholds]
fail_ratio = 0.5

[[targets]]
name = "plain"
label = "stand-in, no batching"
launch = "standin"
flags = ["--monitoring_config_file=monitoring.cfg"]

[[targets]]
name = "gone"
label = "nothing listens here"
rest = "http://127.0.0.1:{port}"
grpc = "127.0.0.1:{port}"

[[targets]]
name = "batching"
label = "stand-in, batching"
launch = "standin"
flags = ["--enable_batching", "--batching_parameters_file=batch.cfg",
         "--monitoring_config_file=monitoring.cfg"]
"""


@pytest.fixture(scope="module")
def tiny_run(exported_model, tmp_path_factory):
    """One small matrix: 3 targets x 2 protocols, one target unreachable."""
    base = tmp_path_factory.mktemp("runner")
    path = write_experiment(base / "exp", exported_model, TINY.format(port=free_port()))
    out = base / "out"
    done = run_cli("-m", "tfsload", "run", str(path), "--out", str(out), timeout=400)
    return done, out


def test_all_cells_present_and_unreachable_target_fails_alone(tiny_run):
    done, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    cells = {c["id"]: c for c in summary["cells"]}
    assert list(cells) == [
        "plain-rest",
        "plain-grpc",
        "gone-rest",
        "gone-grpc",
        "batching-rest",
        "batching-grpc",
    ], done.stderr
    for cid in ("gone-rest", "gone-grpc"):
        assert cells[cid]["status"] == "failed"
        assert cells[cid]["reason"].startswith("unreachable: ")
    for cid in ("plain-rest", "plain-grpc", "batching-rest", "batching-grpc"):
        cell = cells[cid]
        assert cell["status"] == "ok", (cid, cell["reason"], done.stderr[-2000:])
        assert cell["requests"] == 80 and cell["failures"] == 0
        assert cell["server_kind"] == "standin"
        assert 0 < cell["p50_ms"] <= cell["p99_ms"] <= cell["max_ms"]
        assert (out / "cells" / cid / "locust_stats.csv").exists()
        assert (out / "cells" / cid / "locust.html").exists()
        server = cell["server_metrics"]
        assert server["requests"]["total"] >= 80  # the cell's requests plus its warm-up
    # Only the batching server formed batches, and they hold whole 5-row requests.
    assert cells["plain-rest"]["server_batch_mean"] is None
    assert cells["batching-grpc"]["server_batch_mean"] >= 5
    assert summary["status"] == "complete"
    assert done.returncode == 1  # a cell could not run
    assert "report.html" in done.stdout


def test_report_numbers_agree_with_summary_and_plots_are_images(tiny_run):
    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    md_text = (out / "report.md").read_text()
    md = markdown_rows(md_text)
    html = html_cells((out / "report.html").read_text())
    for cell in summary["cells"]:
        if cell["status"] != "ok":
            assert md[cell["id"]][-1].startswith("FAILED: unreachable")
            continue
        for column, text in expected_row(cell).items():
            assert md[cell["id"]][COLUMNS[column]] == text
            assert html.rows[cell["id"]][COLUMNS[column]] == text
        assert md[cell["id"]][1] == "stand-in"
    assert "**Servers**: stand-in" in md_text
    for png in ("percentiles", "throughput", "latency_over_time", "batch_sizes"):
        assert (out / "plots" / f"{png}.png").read_bytes().startswith(PNG_MAGIC)
    assert len(html.images) == 4


def test_compare_flags_a_regression_injected_into_real_results(tiny_run, tmp_path):
    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    slower = json.loads(json.dumps(summary))
    target = next(c for c in slower["cells"] if c["id"] == "plain-grpc")
    target["p99_ms"] *= 1.5
    (tmp_path / "summary.json").write_text(json.dumps(slower))
    same = run_cli("-m", "tfsload", "compare", str(out), str(out), timeout=60)
    assert same.returncode == 0, same.stdout
    worse = run_cli("-m", "tfsload", "compare", str(out), str(tmp_path), timeout=60)
    assert worse.returncode == 1
    assert "plain-grpc: p99 +50.0% (tolerance 10%)" in worse.stdout


def test_sigint_stops_the_cell_and_leaves_a_partial_report(exported_model, tmp_path):
    body = """
[load]
users = 2
spawn_rate = 2
duration = "5m"

[[targets]]
name = "only"
launch = "standin"
"""
    path = write_experiment(tmp_path / "exp", exported_model, body)
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "tfsload", "run", str(path), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = out / "cells" / "only-rest" / "locust_stats_history.csv"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and runner.poll() is None:
            if history.exists() and len(history.read_text().splitlines()) > 2:
                break  # load is flowing in the first cell
            time.sleep(0.5)
        assert runner.poll() is None, runner.communicate()
        os.kill(runner.pid, signal.SIGINT)
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "partial"
    statuses = {c["id"]: c["status"] for c in summary["cells"]}
    assert statuses == {"only-rest": "interrupted", "only-grpc": "not_run"}
    assert (out / "report.md").read_text().startswith("# tfsload report: tiny (PARTIAL)")
    assert "PARTIAL report" in stdout
    # The stand-in was stopped: nothing listens on its REST port any more.
    run = json.loads((out / "run.json").read_text())
    assert run["targets"]["only"]["exit_code"] is not None
