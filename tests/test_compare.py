"""compare: per-cell changes between runs; exits non-zero past the tolerance, for CI."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.report_data import FakeCell, latencies, make_results
from tfsload.report import write_report
from tfsload.report.compare import compare


def run_dirs(tmp_path, new_median_ms: float = 3.0, new_wall: float = 10.0, **new_cell):
    old = make_results(
        tmp_path / "old",
        [
            FakeCell("a", "rest", latencies(3.0, seed=1)),
            FakeCell("a", "grpc", latencies(2.0, seed=2)),
        ],
    )
    new = make_results(
        tmp_path / "new",
        [
            FakeCell("a", "rest", latencies(new_median_ms, seed=1), wall_time_s=new_wall),
            FakeCell("a", "grpc", latencies(2.0, seed=2), **new_cell),
        ],
    )
    write_report(old)
    write_report(new)
    return old, new


def test_same_numbers_are_no_regression(tmp_path):
    old, new = run_dirs(tmp_path)
    done = run_cli("-m", "tfsload", "compare", str(old), str(new), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no regression past 10%" in done.stdout
    assert "a-rest" in done.stdout and "a-grpc" in done.stdout


def test_injected_latency_regression_is_flagged(tmp_path):
    # Same requests, every latency 30% higher: p50/p90/p99 all up by about 30%.
    old, new = run_dirs(tmp_path, new_median_ms=3.9)
    done = run_cli("-m", "tfsload", "compare", str(old), str(new), "--tolerance", "0.1")
    assert done.returncode == 1
    flagged = [line for line in done.stdout.splitlines() if line.startswith("  a-rest: ")]
    assert {line.split()[1] for line in flagged} == {"p50", "p90", "p99"}
    assert "a-grpc:" not in done.stdout.split("regression(s)")[1]
    # A wide enough tolerance accepts the same change.
    loose = run_cli("-m", "tfsload", "compare", str(old), str(new), "--tolerance", "0.5")
    assert loose.returncode == 0, loose.stdout


def test_throughput_drop_errors_and_missing_cells_are_regressions(tmp_path):
    old, new = run_dirs(tmp_path, new_wall=20.0, failures=4)
    result = compare(
        json.loads((old / "summary.json").read_text()),
        json.loads((new / "summary.json").read_text()),
        tolerance=0.1,
    )
    assert "a-rest: req/s -50.0% (tolerance 10%)" in result.regressions
    assert "a-grpc: 4 errors, none before" in result.regressions
    new_summary = json.loads((new / "summary.json").read_text())
    new_summary["cells"] = new_summary["cells"][:1]
    result = compare(json.loads((old / "summary.json").read_text()), new_summary, 0.5)
    assert result.regressions == ["a-grpc: missing in the new run"]


def test_compare_reads_summary_files_and_rejects_bad_paths(tmp_path):
    old, new = run_dirs(tmp_path)
    done = run_cli("-m", "tfsload", "compare", str(old / "summary.json"), str(new), timeout=60)
    assert done.returncode == 0
    bad = run_cli("-m", "tfsload", "compare", str(old), str(tmp_path / "missing"), timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'missing'}: no such results directory"
