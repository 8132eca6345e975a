"""The highest load under a bound: the search's arithmetic, its judgement of a step, and
``tfsload slo`` end to end on a server whose latency jumps at a known rate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.fake_tfserving import fake_server, knee_at
from tests.test_search_steps import fake_experiment
from tfsload.cli import main
from tfsload.orchestrate import session
from tfsload.orchestrate.slo import (
    FAILED,
    GENERATOR,
    OVER,
    PASS,
    Axis,
    Bound,
    SearchStopped,
    Verdict,
    find_highest,
    judge,
)

RATE_AXIS = Axis("rate", start=50, minimum=1, maximum=100_000)


def threshold(limit: float):
    """A server that keeps the bound up to ``limit`` and breaks it above."""
    return lambda load: Verdict(PASS if load <= limit else OVER, "")


@pytest.mark.parametrize("limit", [37.0, 275.0, 999.0, 3210.0])
@pytest.mark.parametrize("resolution", [0.05, 0.2])
def test_bracketing_then_bisection_ends_within_one_step_of_the_answer(limit, resolution):
    search = find_highest(threshold(limit), RATE_AXIS, resolution)
    assert search.complete and search.limited_by() == OVER
    assert search.highest <= limit < search.lowest_failing
    assert (search.lowest_failing - search.highest) / search.highest <= resolution
    assert len(search.probes) <= 16


def test_a_start_above_the_answer_halves_down_to_it():
    search = find_highest(threshold(7.0), RATE_AXIS, 0.05)
    assert [load for load, _ in search.probes[:4]] == [50, 25, 12.5, 6.25]
    assert 6.65 <= search.highest <= 7.0


def test_users_are_whole_and_the_bracket_closes_at_one_user():
    axis = Axis("users", start=1, minimum=1, maximum=1024)
    search = find_highest(threshold(11), axis, 0.05)
    assert (search.highest, search.lowest_failing) == (11, 12)
    assert all(load == int(load) for load, _ in search.probes)


def test_nothing_passes_and_everything_passes():
    nothing = find_highest(threshold(0.5), RATE_AXIS, 0.05)
    assert nothing.highest is None and nothing.lowest_failing == 1 and nothing.complete
    capped = Axis("rate", start=50, minimum=1, maximum=300)
    everything = find_highest(threshold(1e9), capped, 0.05)
    assert everything.highest == 300 and everything.limited_by() == "maximum"


def test_a_stopped_search_keeps_its_probes_and_a_failed_step_ends_it():
    calls = []

    def measure(load):
        calls.append(load)
        if len(calls) == 3:
            raise SearchStopped("interrupted")
        return Verdict(PASS, "")

    stopped = find_highest(measure, RATE_AXIS, 0.05)
    assert not stopped.complete and stopped.stopped == "interrupted"
    assert stopped.highest == 100 and len(stopped.probes) == 2

    failed = find_highest(lambda load: Verdict(FAILED, "Locust exited with code 2"), RATE_AXIS, 0.1)
    assert not failed.complete and "failed to measure" in failed.failed
    assert len(failed.probes) == 1


def step_record(**changes) -> dict:
    """A complete open-loop step at 100 req/s that keeps a 50 ms bound comfortably."""
    window = {"start": 0.0, "end": 2.0, "count": 200, "failures": 0, "rows": 200,
              "p50_ms": 5.0, "p99_ms": 9.0}  # fmt: skip
    record = {
        "status": "complete",
        "load": {"users": 12, "rate": 100.0, "arrival": "poisson", "late_after_ms": 5.0},
        "rule": {"window_s": 2.0, "stable_windows": 3, "tolerance": 0.1, "max_windows": 6},
        "stable": True,
        "windows": [dict(window) for _ in range(3)],
        "judged_from": 0,
        "figures": {
            "seconds": 6.0,
            "requests": 600,
            "failures": 0,
            "fail_ratio": 0.0,
            "rps": 100.0,
            "rows_per_s": 100.0,
            "mean_ms": 5.0,
            "p50_ms": 5.0,
            "p99_ms": 9.0,
        },
        "arrival": {"late_sends": 0, "schedule_kept": True},
        "generator": {"cpu_percent_max": 20.0},
        "schedule_kept": True,
        "generator_saturated": False,
    }
    for key, value in changes.items():
        record[key] = value
    return record


def test_judging_a_step():
    bound = Bound(p99_ms=50, fail_ratio=0.001)
    assert judge(step_record(), bound).kind == PASS
    slow = step_record(figures={**step_record()["figures"], "p99_ms": 80.0})
    assert (
        judge(slow, bound).kind == OVER and "p99 80.000 ms over 50 ms" in judge(slow, bound).reason
    )
    failing = step_record(figures={**step_record()["figures"], "fail_ratio": 0.01})
    assert judge(failing, bound).kind == OVER and "1.00% failed" in judge(failing, bound).reason
    saturated = step_record(generator_saturated=True, generator={"cpu_percent_max": 97.0})
    assert judge(saturated, bound).kind == GENERATOR
    # sends fell behind and fewer requests arrived than asked for: the generator's failure
    behind = step_record(
        schedule_kept=False,
        arrival={"late_sends": 90, "schedule_kept": False},
        figures={**step_record()["figures"], "rps": 80.0},
    )
    assert judge(behind, bound).kind == GENERATOR
    # late sends, but the rate arrived and the latency (which includes the delay) kept the bound
    late = step_record(schedule_kept=False, arrival={"late_sends": 9, "schedule_kept": False})
    verdict = judge(late, bound)
    assert verdict.kind == PASS and "9 sends left over 5 ms late" in verdict.reason
    # not stable because p99 keeps rising: a queue building up is no pass even under the bound
    rising = step_record(stable=False)
    for window, p99 in zip(rising["windows"], (10.0, 20.0, 30.0), strict=True):
        window["p99_ms"] = p99
    assert judge(rising, bound).kind == OVER
    closed = {**rising, "load": {**rising["load"], "rate": None}}
    assert judge(closed, bound).kind == PASS  # closed loop: the users cap the queue
    for window, p99 in zip(rising["windows"], (5.0, 7.0, 9.0), strict=True):
        window["p99_ms"] = p99  # rising, but far below the bound: noise as likely as a queue
    assert judge(rising, bound).kind == PASS
    assert judge(step_record(status="failed", reason="boom"), bound).kind == FAILED


def test_slo_finds_the_rate_where_latency_jumps_within_one_bisection_step(
    tmp_path, capsys, monkeypatch
):
    # The server answers in 5 ms up to 135 req/s and in 3 s above; the bound of 1 s leaves
    # room for the stalls of a busy shared machine (tens to hundreds of ms) on either side.
    knee = 135.0
    with fake_server(knee_at(knee, 0.005, 3.0)) as server:
        run_step = session.run_step

        def each_step_told(experiment, cell, address, load, *args):
            server.new_step(load.rate)
            return run_step(experiment, cell, address, load, *args)

        monkeypatch.setattr(session, "run_step", each_step_told)
        load = 'users = 4\narrival = "constant"'
        path = fake_experiment(tmp_path, server.rest, load, "max_windows = 6\nstart = 80")
        out = tmp_path / "out"
        code = main(["slo", str(path), "--p99-ms", "1000", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "search.json").read_text())
    (result,) = record["results"]
    search = result["search"]
    assert result["status"] == "complete" and search["limited_by"] == OVER
    highest, failing = result["highest"], search["lowest_failing"]
    assert knee * 0.97 <= failing and highest <= knee * 1.03  # the two bracket the answer
    assert (failing - highest) / highest <= 0.05  # ... within one bisection step
    assert result["throughput_rps"] == pytest.approx(highest, rel=0.05)
    for probe in search["probes"]:
        assert probe["evidence"]["status"] == "complete"
    for name in ("report.md", "report.html", "plots/probes.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert f"{highest:g} req/s kept p99 <= 1000 ms" in report
    assert "fake-rest: " in capsys.readouterr().out


def test_ctrl_c_keeps_finished_steps_and_resume_goes_on_from_them(tmp_path):
    with fake_server(knee_at(135.0, 0.005, 0.4)) as server:
        search = "max_windows = 6\nstart = 100"
        path = fake_experiment(tmp_path, server.rest, 'users = 4\narrival = "constant"', search)
        out = tmp_path / "out"
        command = [sys.executable, "-m", "tfsload", "slo", str(path), "--p99-ms", "200",
                   "--resolution", "0.2", "--out", str(out)]  # fmt: skip
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        steps = out / "steps" / "fake-rest" / "as-declared"
        deadline = time.monotonic() + 120
        while not (steps / "rate-100" / "step.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the second step is under way
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=120)
        assert process.returncode == 130
        record = json.loads((out / "search.json").read_text())
        assert record["status"] == "partial"
        assert "PARTIAL" in (out / "report.md").read_text() and "PARTIAL report" in stdout
        kept = json.loads((steps / "rate-100" / "step.json").read_text())
        assert kept["status"] == "complete"
        interrupted = [p for p in steps.iterdir() if p.name != "rate-100"]
        assert all(not (p / "step.json").exists() or
                   json.loads((p / "step.json").read_text())["status"] == "interrupted"
                   for p in interrupted)  # fmt: skip

        resumed = subprocess.run(
            [sys.executable, "-m", "tfsload", "slo", "--resume", str(out)],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "100 req/s (constant" in resumed.stderr and "(kept from before)" in resumed.stderr
    assert "1 kept from before" in resumed.stdout
    record = json.loads((out / "search.json").read_text())
    assert record["status"] == "complete" and record["results"][0]["highest"] is not None
    assert json.loads((steps / "rate-100" / "step.json").read_text()) == kept  # not run again


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["slo", "EXP"], "error: --p99-ms: required"),
        (["slo", "EXP", "--p99-ms", "-5"], "error: --p99-ms: must be a positive number"),
        (["slo", "EXP", "--p99-ms", "50", "--fail-ratio", "2"], "error: --fail-ratio:"),
        (["slo", "EXP", "--p99-ms", "50", "--resolution", "0"], "error: --resolution:"),
        (["slo", "EXP", "--p99-ms", "50", "--max-minutes", "0"], "error: --max-minutes:"),
        (["tune", "EXP", "--p99-ms", "50"], "targets[0]: the tuner restarts its targets"),
        (["slo", "--resume", "NOWHERE"], "no search.json (not a search folder)"),
        (["tune"], "error: tfsload tune: give an experiment file, or --resume DIR"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    path = fake_experiment(tmp_path, "http://127.0.0.1:9")
    args = [str(path) if a == "EXP" else str(tmp_path / a) if a == "NOWHERE" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "reports").exists()
