"""One step of load: a Locust run at one load level, stopped as soon as its windows agree.

The step starts headless Locust with a run spec (like a matrix cell) that also asks for
``--windows-json``, rereads that file twice a second, and sends Locust SIGINT once the last
windows are stable (:mod:`tfsload.orchestrate.windows`) or ``max_windows`` whole windows have
passed. Locust then writes its precise results, from which the step takes what the windows do
not carry: whether the generator kept the arrival schedule and whether it was saturated. The
step's record (``step.json``) holds every window, which ones its figures come from, and those
figures; searches and sweeps are built from these records alone, so they can be resumed and
re-reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tfsload.core.files import write_json_atomic
from tfsload.core.processes import log_tail
from tfsload.core.run_spec import Checks, RunSpec
from tfsload.core.targets import Target
from tfsload.orchestrate.cpu_account import CpuAccount
from tfsload.orchestrate.experiment import Cell, Experiment
from tfsload.orchestrate.runner import cell_spec, locust_command
from tfsload.orchestrate.windows import (
    StabilityRule,
    brief,
    figures,
    read_windows,
    stable_tail,
)

STEP_FORMAT = "tfsload-step/1"
POLL_S = 0.5
# Locust's start-up, user spawn and warm-up requests come before the first whole window.
START_ALLOWANCE_S = 60.0
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class StepLoad:
    """A load level: ``users`` in a closed loop, or an open-loop ``rate`` (req/s) that
    ``users`` send."""

    users: int
    rate: float = 0.0
    arrival: str = "poisson"
    late_after_ms: float = 1.0  # a send this late counts as late (--late-after-ms)

    @property
    def id(self) -> str:
        return f"rate-{self.rate:g}" if self.rate else f"users-{self.users}"

    def describe(self) -> str:
        if self.rate:
            return f"{self.rate:g} req/s ({self.arrival}, {self.users} users)"
        return f"{self.users} users"

    def to_dict(self) -> dict:
        return {
            "users": self.users,
            "rate": self.rate or None,
            "arrival": self.arrival,
            "late_after_ms": self.late_after_ms,
        }


def users_for_rate(rate: float, latency_s: float, at_least: int) -> int:
    """Users enough to send ``rate`` req/s while answers take up to twice ``latency_s``
    (Little's law with margin), and never fewer than ``at_least``."""
    return max(at_least, math.ceil(rate * latency_s * 2) + 2)


def step_spec(
    experiment: Experiment, cell: Cell, target: Target, load: StepLoad, rule: StabilityRule,
    step_dir: Path,
) -> RunSpec:  # fmt: skip
    """The run spec of one step: the experiment's workload aimed at ``target``, at this load,
    with no thresholds (the search judges) and a windows file. An open-loop step's warm-up is
    at most one window's worth of requests: at 2 req/s, 200 warm-up requests would take
    minutes, and the windows' stability rule covers the start anyway."""
    spec = cell_spec(experiment, cell, target, step_dir)
    run_time = (rule.max_windows + 2) * rule.window_s + START_ALLOWANCE_S
    warmup = spec.load.warmup_requests
    if load.rate:
        warmup = min(warmup, math.ceil(load.rate * rule.window_s))
    spec = spec.with_values(
        "load",
        users=load.users,
        spawn_rate=float(load.users),
        run_time_s=run_time,
        request_count=0,
        warmup_requests=warmup,
        arrival_rate=float(load.rate),
        arrival=load.arrival,
        late_after_ms=load.late_after_ms,
    )
    checks = Checks(saturation_cpu_percent=experiment.checks.saturation_cpu_percent)
    spec = replace(spec, checks=checks)
    return spec.with_values(
        "outputs", windows_json=str(step_dir / "windows.json"), window_s=rule.window_s
    )


def read_step(step_dir: Path) -> dict | None:
    """A finished step's record, or None."""
    try:
        record = json.loads((step_dir / "step.json").read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("format") == STEP_FORMAT else None


def run_step(
    experiment: Experiment,
    cell: Cell,
    target: Target,
    load: StepLoad,
    rule: StabilityRule,
    step_dir: Path,
    should_stop: Callable[[], str | None] = lambda: None,
    server_pid: int | None = None,
) -> dict:
    """Run one step and write its ``step.json``; returns that record.

    ``should_stop`` returns a reason (Ctrl-C, the time budget) to end the step early; such a
    step is recorded as ``interrupted`` and searches do not use it. The record also says where
    the machine's CPU went meanwhile: Locust, the server (``server_pid``, when it runs here),
    and everything else, which is the noise the figures carry on a shared machine.
    """
    step_dir.mkdir(parents=True, exist_ok=True)
    spec_path = step_dir / "run-spec.json"
    step_spec(experiment, cell, target, load, rule, step_dir).write(spec_path)
    command = locust_command(cell, spec_path, step_dir)
    cpu = CpuAccount(server_pid)
    started = time.monotonic()
    with open(step_dir / "locust.log", "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    limit = (rule.max_windows + 2) * rule.window_s + START_ALLOWANCE_S + STOP_GRACE_S
    windows: list[dict] = []
    tail: list[dict] | None = None
    stopped_for: str | None = None
    stopped_at = 0.0
    try:
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(POLL_S)
            if stopped_for is not None:
                if time.monotonic() - stopped_at > STOP_GRACE_S:
                    process.kill()
                continue
            document = read_windows(step_dir / "windows.json")
            windows = document["windows"] if document else windows
            tail = stable_tail(windows, rule)
            reason = should_stop()
            if reason:
                stopped_for = f"interrupted: {reason}"
            elif tail is not None:
                stopped_for = "stable"
            elif len(windows) >= rule.max_windows:
                stopped_for = "max_windows"
            elif time.monotonic() - started > limit:
                stopped_for = "timeout"
            if stopped_for is not None:
                stopped_at = time.monotonic()
                process.send_signal(signal.SIGINT)  # Locust stops and writes its results
    except BaseException:
        process.kill()
        process.wait()
        raise
    if stopped_for is None:  # Locust ended by itself (its time limit, or a crash)
        document = read_windows(step_dir / "windows.json")
        windows = document["windows"] if document else windows
        tail = stable_tail(windows, rule)
        stopped_for = "Locust exited"
    record = _record(load, rule, step_dir, process.returncode, windows, tail, stopped_for)
    record["cpu"] = cpu.finish()
    record["wall_time_s"] = round(time.monotonic() - started, 3)
    record["command"] = command
    write_json_atomic(step_dir / "step.json", record)
    return record


def _record(
    load: StepLoad, rule: StabilityRule, step_dir: Path, code: int | None, windows: list[dict],
    tail: list[dict] | None, stopped_for: str | None,
) -> dict:  # fmt: skip
    """The step's record: status, windows, the figures of the stable (or last) windows, and the
    generator's state from Locust's precise results."""
    base = {"format": STEP_FORMAT, "load": load.to_dict(), "rule": rule.to_dict()}
    base["exit_code"] = code
    try:
        precise = json.loads((step_dir / "precise.json").read_text())
    except (OSError, ValueError):
        precise = None
    if stopped_for and stopped_for.startswith("interrupted"):
        return {**base, "status": "interrupted", "reason": stopped_for.split(": ", 1)[1]}
    if precise is None or not windows:
        why = "no whole measurement window" if precise else "Locust wrote no results"
        detail = log_tail(step_dir / "locust.log", 3)
        return {**base, "status": "failed", "reason": f"{why} (exit code {code}): {detail}"}
    judged = tail if tail is not None else windows[-rule.stable_windows :]
    return {
        **base,
        "status": "complete",
        "reason": None,
        "stable": tail is not None,
        "windows": [brief(w) for w in windows],
        "judged_from": len(windows) - len(judged),
        "ended": stopped_for,
        "figures": figures(judged),
        "arrival": precise["arrival"],
        "generator": precise["generator"],
        "schedule_kept": precise["arrival"]["schedule_kept"],
        "generator_saturated": precise["generator_saturated"],
    }
