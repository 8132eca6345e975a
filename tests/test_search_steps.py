"""Stable steps against a server whose latency the test controls: steady load stabilises, a
server slowed on a schedule does not, and a sweep runs its levels end to end."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.fake_tfserving import doubling_every, fake_server, steady
from tfsload.cli import main
from tfsload.orchestrate.experiment import Cell, load_experiment
from tfsload.orchestrate.step import StepLoad, read_step, run_step
from tfsload.orchestrate.sweep import knee
from tfsload.orchestrate.windows import StabilityRule


def fake_experiment(tmp_path: Path, rest: str, load: str = "users = 4", search: str = "") -> Path:
    """An experiment on one fake REST target, one-row requests."""
    (tmp_path / "instances.json").write_text(json.dumps([[1, 2, 3, 4]]))
    path = tmp_path / "exp.toml"
    path.write_text(
        f"""
name = "fake"
protocols = ["rest"]
[model]
instances = "instances.json"
[load]
{load}
warmup_requests = 10
[search]
window_s = 1
{search}
[[targets]]
name = "fake"
rest = "{rest}"
"""
    )
    return path


def step(tmp_path: Path, latency, users: int, rule: StabilityRule) -> dict:
    with fake_server(latency) as server:
        experiment = load_experiment(fake_experiment(tmp_path, server.rest))
        cell = Cell(experiment.targets[0], "rest")
        return run_step(
            experiment, cell, experiment.targets[0].target, StepLoad(users), rule,
            tmp_path / "step",
        )  # fmt: skip


def test_a_steady_server_gives_a_stable_step_that_stops_early(tmp_path):
    rule = StabilityRule(window_s=1.0, stable_windows=3, tolerance=0.25, max_windows=12)
    record = step(tmp_path, steady(0.03), users=4, rule=rule)
    assert record["status"] == "complete", record["reason"]
    assert record["stable"] is True
    assert len(record["windows"]) < rule.max_windows  # stopped once stable, not at the limit
    judged = record["windows"][record["judged_from"] :]
    assert len(judged) == 3
    figures = record["figures"]
    assert figures["requests"] == sum(w["count"] for w in judged)
    assert 30 <= figures["p50_ms"] < 60  # the server's 30 ms, plus a little of the machine's
    assert figures["rps"] > 40  # 4 users, 30 ms each: about 130 req/s on a quiet machine
    assert record["schedule_kept"] and not record["generator_saturated"]
    assert read_step(tmp_path / "step") == record
    assert (tmp_path / "step" / "windows.json").exists()


def test_a_step_stops_locust_even_when_sigint_was_ignored_by_whoever_started_it(tmp_path):
    """A background job of a shell starts with SIGINT ignored, and its children inherit that:
    the SIGINT that ends a step must still stop Locust, which then writes its results."""
    rule = StabilityRule(window_s=1.0, stable_windows=3, tolerance=0.25, max_windows=12)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        record = step(tmp_path, steady(0.01), users=2, rule=rule)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert record["status"] == "complete", record["reason"]
    assert record["exit_code"] == 0  # stopped on SIGINT, not killed after the grace time


def test_a_server_slowed_on_a_schedule_never_stabilises(tmp_path):
    rule = StabilityRule(window_s=1.0, stable_windows=3, tolerance=0.25, max_windows=6)
    record = step(tmp_path, doubling_every(0.004, 1.0), users=2, rule=rule)
    assert record["status"] == "complete", record["reason"]
    assert record["stable"] is False
    assert len(record["windows"]) == rule.max_windows  # ran to the limit
    # judged from its last windows, which are the slowest
    p99s = [w["p99_ms"] for w in record["windows"]]
    assert record["judged_from"] == rule.max_windows - 3
    assert p99s[-1] > 4 * p99s[0]
    assert record["figures"]["p99_ms"] >= max(p99s[:3])


def test_the_knee_is_where_p99_starts_to_climb_faster_than_throughput():
    def point(level, rps, p99):
        return {"level": level, "rps": rps, "p99_ms": p99}

    points = [point(1, 100, 5), point(2, 190, 5.2), point(4, 360, 6), point(8, 420, 15),
              point(16, 430, 40)]  # fmt: skip
    assert knee(points, tolerance=0.1) == 4
    assert knee(points[:3], tolerance=0.1) is None
    # p99 noise below the tolerance is not a knee even when throughput barely moved
    assert knee([point(1, 100, 5), point(2, 101, 5.3), point(4, 102, 8)], 0.1) == 2


def test_a_sweep_runs_every_level_per_cell_and_draws_its_figure(tmp_path, capsys):
    with fake_server(lambda _now, rate: 0.004 * max(1.0, rate / 150)) as server:
        path = fake_experiment(tmp_path, server.rest, "users = [1, 4]", "max_windows = 4")
        out = tmp_path / "out"
        code = main(["run", str(path), "--out", str(out)])
    assert code == 0
    record = json.loads((out / "search.json").read_text())
    assert record["kind"] == "sweep" and record["status"] == "complete"
    (curve,) = record["results"]
    assert [p["level"] for p in curve["points"]] == [1, 4]
    assert all(p["status"] == "complete" and p["rps"] > 0 for p in curve["points"])
    assert curve["points"][1]["load"]["users"] == 4
    for name in ("report.md", "report.html", "plots/sweep-rest.png", "experiment.toml"):
        assert (out / name).stat().st_size > 0
    assert (out / "steps" / "fake-rest" / "as-declared" / "users-4" / "step.json").exists()
    printed = capsys.readouterr().out
    assert "fake-rest: " in printed and "most throughput" in printed
    # the report can be redone from the folder alone
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").exists()
