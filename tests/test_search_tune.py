"""``tfsload tune`` end to end at tiny scale on real launched stand-ins: cut short by its time
budget, resumed from its folder, and what it leaves: the configurations' batching files, a
ready best file TF Serving's parser accepts, the table with the no-batching baseline, the
Pareto plot and the report. Whether batching wins at this scale is not asserted: that is a
measurement of a shared machine (docs/finding.md has one), not a property of the code."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

from tfsload.cli import main
from tfsload.core.serving_config import read_batching
from tfsload.orchestrate.experiment import load_experiment
from tfsload.orchestrate.session import Session
from tfsload.orchestrate.slo import Bound
from tfsload.orchestrate.tuner import Batching, Tuning, power_of_two_sizes


def test_batching_files_and_sizes_are_what_tf_serving_accepts(tmp_path):
    batching = Batching(64, 2000, 2, 2, power_of_two_sizes(64))
    assert batching.allowed_batch_sizes == (8, 16, 32, 64)
    assert power_of_two_sizes(5) == (1, 2, 4, 5)
    path = tmp_path / "b.cfg"
    path.write_text(batching.text("found by a test\n\nsecond line"))
    parsed = read_batching(str(path))
    assert (parsed.max_batch_size, parsed.batch_timeout_micros) == (64, 2000)
    assert (parsed.num_batch_threads, parsed.max_enqueued_batches) == (2, 2)
    assert parsed.allowed_batch_sizes == (8, 16, 32, 64)
    assert batching.id == "b64-t2000us-n2-q2-a8_16_32_64"


class ScriptedTuning(Tuning):
    """The tuner's decisions against a table of capacities (req/s) instead of servers."""

    def __init__(self, session, capacities: dict[str, float]) -> None:
        cores = SimpleNamespace(name="sa", cores=2)
        super().__init__(session, cores, session.experiment.cells[0])
        self.capacities = capacities

    def search(self, config_id, file, start=None):
        highest = self.capacities.get(config_id, 50.0)
        result = {"status": "complete", "reason": None, "highest": highest,
                  "throughput_rps": highest, "p99_ms": 10.0,
                  "search": {"limited_by": "over", "probes": []}}  # fmt: skip
        return result, None, None


def scripted(tmp_path, capacities: dict[str, float], search: str = "") -> ScriptedTuning:
    (tmp_path / "models" / "model").mkdir(parents=True)  # never loaded: no server starts
    experiment = tmp_path / "tune.toml"
    experiment.write_text(
        f"""
protocols = ["rest"]
[model]
base_path = "models/model"
[load]
users = 4
[search]
{search}
[[targets]]
name = "sa"
launch = "standin"
"""
    )
    session = Session(tmp_path / "out", load_experiment(experiment), "tune", Bound(50), 0.05, None)
    return ScriptedTuning(session, capacities)


def test_the_tuner_follows_the_guide_and_keeps_what_carries_more(tmp_path):
    capacities = {
        "no-batching": 100, "b8-t25000us-n2-q10": 150, "b16-t25000us-n2-q10": 210,
        "b32-t25000us-n2-q10": 190, "b64-t25000us-n2-q10": 120, "b128-t25000us-n2-q10": 300,
        "b16-t0us-n2-q10": 180, "b16-t1000us-n2-q10": 240, "b16-t2000us-n2-q10": 230,
        "b16-t5000us-n2-q10": 220, "b16-t1000us-n2-q2": 260,
        "b16-t1000us-n2-q2-a2_4_8_16": 250,
        "no-batching-again": 90, "b16-t1000us-n2-q2-again": 250,
    }  # fmt: skip
    tuning = scripted(tmp_path, capacities)
    tuning.run()
    ids = [entry["id"] for entry in tuning.tried]
    # sizes upwards until two in a row fall behind the best (b128 is never reached), then the
    # timeouts for the best size, 0 included, then the queue and the allowed sizes
    assert ids == [
        "no-batching", "b8-t25000us-n2-q10", "b16-t25000us-n2-q10", "b32-t25000us-n2-q10",
        "b64-t25000us-n2-q10", "b16-t0us-n2-q10", "b16-t1000us-n2-q10", "b16-t2000us-n2-q10",
        "b16-t5000us-n2-q10", "b16-t1000us-n2-q2", "b16-t1000us-n2-q2-a2_4_8_16",
        "no-batching-again", "b16-t1000us-n2-q2-again",  # confirmed back to back
    ]  # fmt: skip
    summary = tuning.summary()
    assert summary["best"] == "b16-t1000us-n2-q2"  # the allowed sizes carried less: not kept
    assert summary["confirmed"] and summary["first_pass"]["best_capacity"] == 260
    assert (summary["baseline_capacity"], summary["best_capacity"]) == (90, 250)
    assert summary["batching_pays"] and summary["gain"] == round(250 / 90 - 1, 4)
    best = read_batching(str(tmp_path / "out" / summary["best_file"]))
    assert (best.max_batch_size, best.batch_timeout_micros, best.max_enqueued_batches) == (
        16,
        1000,
        2,
    )


def test_batching_that_carries_no_more_than_the_resolution_does_not_pay(tmp_path):
    capacities = {"no-batching": 200, "b8-t25000us-n2-q10": 205, "b16-t25000us-n2-q10": 190,
                  "b32-t25000us-n2-q10": 150, "no-batching-again": 195,
                  "b8-t25000us-n2-q10-again": 200}  # fmt: skip
    tuning = scripted(tmp_path, capacities, "max_batch_sizes = [8, 16, 32]\nextras = false")
    tuning.run()
    summary = tuning.summary()
    assert summary["best"] == "b8-t25000us-n2-q10" and not summary["batching_pays"]
    comment = (tmp_path / "out" / summary["best_file"]).read_text()
    assert "Batching does NOT pay here" in comment


def test_tune_cut_short_then_resumed_writes_every_file(exported_model, tmp_path, capsys):
    experiment = tmp_path / "tune.toml"
    experiment.write_text(
        f"""
name = "tiny-tune"
protocols = ["rest"]
[model]
base_path = "{exported_model.version_dir.parent}"
[load]
users = 4
rows_per_request = 1
warmup_requests = 10
[search]
window_s = 1
max_windows = 3
start = 25
maximum = 50
max_batch_sizes = [8]
batch_timeouts_us = [0]
extras = false
[[targets]]
name = "sa"
launch = "standin"
flags = ["--rest_api_num_threads=32", "--enable_batching"]
"""
    )
    out = tmp_path / "out"
    args = ["tune", str(experiment), "--p99-ms", "500", "--resolution", "0.5", "--out", str(out)]
    assert main([*args, "--max-minutes", "0.5"]) == 0
    first = json.loads((out / "search.json").read_text())
    assert first["status"] == "cut_short"
    assert "CUT SHORT" in (out / "report.md").read_text()
    steps = [json.loads(p.read_text()) for p in out.glob("steps/**/step.json")]
    kept = [step for step in steps if step["status"] == "complete"]
    capsys.readouterr()

    assert main(["tune", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    if kept:
        assert f"{len(kept)} kept from before" in printed
    record = json.loads((out / "search.json").read_text())
    assert record["status"] == "complete" and len(record["resumed_at"]) == 1
    (tuning,) = record["results"]
    ids = [c["id"] for c in tuning["configurations"]]
    cores = tuning["cores"]
    # the baseline, the max_batch_size scan with half the bound as timeout, the timeout scan,
    # then no batching and the best again, back to back
    assert ids[:3] == ["no-batching", f"b8-t250000us-n{cores}-q10", f"b8-t0us-n{cores}-q10"]
    assert ids[3:] == ["no-batching-again", tuning["best"] + "-again"]
    assert tuning["baseline"] == "no-batching" and tuning["best"] in ids[1:3]
    for config in tuning["configurations"]:
        assert config["result"]["status"] == "complete", config["result"]["reason"]
        assert config["result"]["highest"] is not None  # 25 req/s of one row: any set-up keeps it
        assert config["server"]["kind"] == "standin"
        if config["batching"]:
            assert read_batching(str(out / config["file"])).max_batch_size == 8
    # the target's own --enable_batching was dropped for the baseline, its other flags kept
    commands = [c["command"] for c in tuning["configurations"]]
    for command in (commands[0], commands[3]):
        assert "--enable_batching" not in command and "--rest_api_num_threads=32" in command
    assert all("--enable_batching" in command for command in (*commands[1:3], commands[4]))

    best = read_batching(str(out / tuning["best_file"]))
    assert best.max_batch_size == 8 and best.num_batch_threads == cores
    assert "tfsload tune" in (out / tuning["best_file"]).read_text()
    with open(out / "configurations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["configuration"].split(" ")[0] for r in rows] == ids
    assert (out / "plots" / f"pareto-{tuning['cell']}.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "BASELINE" not in report  # the label is on the plot; the report names it in words
    answers = ("batching pays", "batching does NOT pay", "cannot tell")
    assert "without batching" in report or "no batching" in report
    assert any(answer in report for answer in answers)
