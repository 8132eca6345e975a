"""``tfsload run`` marks a cell whose server died under it, and the run exits 1.

One experiment, two targets, one REST cell each: a stand-in the runner launches and one
started here, each killed (SIGKILL) while its cell's Locust is sending. Whatever Locust
measured before, the cell's status says the server died, its verdict is not PASS, and the
run's exit code is 1 ("a cell could not run"), not 3 (a threshold).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.standin_process import start_standin
from tfsload.orchestrate.runner import read_live_stats

REPO = Path(__file__).resolve().parents[1]


def wait_for_requests(cell_dir: Path, process: subprocess.Popen, at_least: int = 20) -> None:
    """Until the cell's Locust has counted ``at_least`` requests (its live CSV)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "tfsload run ended before the cell sent anything"
        live = read_live_stats(cell_dir / "locust")
        if live and live[0] >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"{cell_dir.name}: no requests within 180 s")


def launched_standin(runner: subprocess.Popen) -> psutil.Process:
    children = psutil.Process(runner.pid).children(recursive=True)
    (standin,) = [p for p in children if "standin" in p.cmdline()]
    return standin


def test_a_cell_whose_server_dies_fails_and_the_run_exits_1(tmp_path, exported_model):
    base = exported_model.version_dir.parent
    out = tmp_path / "out"
    with start_standin(base) as external:
        experiment = tmp_path / "dying.toml"
        experiment.write_text(
            f'name = "dying"\nprotocols = ["rest"]\n'
            f'[model]\nbase_path = "{base}"\ninstances = "{exported_model.instances_path}"\n'
            '[load]\nusers = 2\nduration = "6s"\n'
            '[[targets]]\nname = "launched"\nlaunch = "standin"\n'
            f'[[targets]]\nname = "external"\nrest = "{external.rest_url}"\n'
            f'grpc = "{external.grpc_target}"\n'
        )
        runner = subprocess.Popen(
            [sys.executable, "-m", "tfsload", "run", str(experiment), "--out", str(out)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            wait_for_requests(out / "cells" / "launched-rest", runner)
            launched_standin(runner).send_signal(signal.SIGKILL)
            wait_for_requests(out / "cells" / "external-rest", runner)
            external.process.kill()
            stdout, stderr = runner.communicate(timeout=300)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    assert runner.returncode == 1, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr
    cells = {
        cell: json.loads((out / "cells" / cell / "cell.json").read_text())
        for cell in ("launched-rest", "external-rest")
    }
    assert cells["launched-rest"]["status"] == "failed"
    assert cells["launched-rest"]["reason"] == "the server exited with code -9 during the cell"
    assert cells["external-rest"]["status"] == "failed"
    assert cells["external-rest"]["reason"].startswith(
        "the server stopped answering during the cell (unreachable: "
    )
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {cell["id"]: cell["verdict"] for cell in summary["cells"]}
    assert verdicts == {"launched-rest": "FAILED", "external-rest": "FAILED"}
    assert "FAILED: the server exited with code -9 during the cell" in stderr
