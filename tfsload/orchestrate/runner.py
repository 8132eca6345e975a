"""Run an experiment's matrix: every target x protocol cell the same way, one Locust each.

For each target the runner launches its server (a stand-in process or a container, through
:mod:`tfsload.orchestrate.restart`) if it declares one, or probes it, then for
each protocol: scrapes the server's metrics, runs one headless Locust subprocess with the same
load and thresholds as every other cell, scrapes again, and writes the cell's raw results
(Locust CSV/HTML, the plugin's precise JSON, metrics text, ``cell.json``). An unreachable target
fails only its own cells, and a server that died during a cell (asked again after it) fails
that cell. Ctrl-C (SIGINT) or SIGTERM stops the current cell, keeps the finished
ones and ends with a report marked partial. The report is rendered from these raw files only,
so ``python -m tfsload report DIR`` can redo it later.

Layout of a results directory::

    run.json  experiment.toml  summary.json  report.md  report.html  plots/
    servers/<target>.log            launched servers' output (a container's whole log)
    cells/<target>-<protocol>/      cell.json  run-spec.json  precise.json  locust.log
                                    locust.html  locust_stats.csv ...
                                    metrics-before.prom  metrics-after.prom
                                    server.log (a container's log during the cell)

Each cell's Locust is told what to do by one file, ``run-spec.json`` (a
:class:`~tfsload.core.run_spec.RunSpec`): the runner never builds tfsload's options by hand.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from tfsload.core import run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.files import write_atomic, write_json_atomic
from tfsload.core.instances import read_instances
from tfsload.core.processes import log_tail
from tfsload.core.run_spec import RunSpec
from tfsload.core.targets import Target
from tfsload.orchestrate.cpu_account import CpuAccount
from tfsload.orchestrate.experiment import Cell, Experiment, ExperimentTarget
from tfsload.orchestrate.launch import LaunchError
from tfsload.orchestrate.machine import client_versions, describe_machine
from tfsload.orchestrate.probe import ServerInfo, model_status, port_open
from tfsload.orchestrate.progress import Progress
from tfsload.orchestrate.restart import Restartable, Running, as_found
from tfsload.orchestrate.scrape import ScrapeError, scrape

# The installed locustfile: the runner reaches the Locust side only through it and a spec file.
LOCUSTFILE = Path(str(resources.files("tfsload") / "locustfile.py"))
USER_CLASSES = {"rest": "RestUser", "grpc": "GrpcUser"}
# Locust exit codes that still mean "the cell ran and measured": failures, threshold, saturation.
MEASURED_EXIT_CODES = {0, 1, 3, 4}
# Time for Locust to start, send warm-up requests and write its files, on top of the load itself.
CELL_GRACE_S = 180.0
INTERRUPT_GRACE_S = 30.0
RUN_FORMAT = "tfsload-run/1"
CELL_FORMAT = "tfsload-cell/1"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_out_dir(experiment: Experiment, reports: Path = Path("reports")) -> Path:
    """``reports/<experiment>-<UTC timestamp>`` in the current directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return reports / f"{experiment.name}-{stamp}"


def request_rows(experiment: Experiment) -> float | int | None:
    """How many rows each request sends (the mean over a pool of requests), read from the
    instances before anything starts, so a missing or malformed file is bad input
    (ConfigError), not six failed cells. None when the experiment names no instances (the
    Locust processes' default file is then used). Whether they fit the model's signature is
    for each cell's Locust to find out: it asks the server."""
    workload = experiment.spec().workload
    if workload.generate_instances:
        return workload.rows_per_request or workload.generate_instances
    if workload.instances_file == run_spec.DEFAULT_INSTANCES_FILE:
        return None
    try:
        instances = read_instances(
            Path(workload.instances_file), workload.rows_per_request, workload.signature_name
        )
    except ConfigError as exc:
        detail = str(exc).removeprefix("--instances-file: ")
        raise ConfigError(f"{experiment.path}: model.instances: {detail}") from None
    return instances.mean_rows


def read_model_metadata(experiment: Experiment) -> dict | None:
    """The exporter's metadata.json next to the model, when the model is local."""
    base = experiment.model.base_path or (
        experiment.model.instances.parent if experiment.model.instances else None
    )
    try:
        return json.loads((base / "metadata.json").read_text()) if base else None
    except (OSError, ValueError):
        return None


def cell_spec(experiment: Experiment, cell: Cell, target: Target, cell_dir: Path) -> RunSpec:
    """One cell's run spec: the experiment's, aimed at this cell's target and files."""
    spec = experiment.spec()
    if cell.target.transport:
        spec = spec.with_values("transport", **dict(cell.target.transport))
    address = {cell.protocol: target.url(cell.protocol)}
    spec = spec.with_values("target", name=target.name, **address)
    return spec.with_values(
        "outputs",
        precise_json=str(cell_dir / "precise.json"),
        html=str(cell_dir / "locust.html"),
    )


def locust_command(cell: Cell, spec_path: Path, cell_dir: Path) -> list[str]:
    """Headless Locust for one cell. Everything tfsload's users do comes from the spec file;
    the user class and ``--csv`` are Locust's own and are read before any plugin runs."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--run-spec",
        str(spec_path),
        "--csv",
        str(cell_dir / "locust"),
        "--exit-code-on-error",
        "1",
        USER_CLASSES[cell.protocol],
    ]


def read_live_stats(csv_prefix: Path) -> tuple[int, float, int] | None:
    """(requests, current req/s, failures) from the last Aggregated row Locust wrote."""
    try:
        with open(f"{csv_prefix}_stats_history.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("Name") == "Aggregated"]
    except OSError:
        return None
    if not rows:
        return None
    last = rows[-1]
    try:
        return (
            int(float(last["Total Request Count"])),
            float(last["Requests/s"]),
            int(float(last["Total Failure Count"])),
        )
    except (KeyError, ValueError):
        return None


class Runner:
    """Runs one experiment into one results directory."""

    def __init__(self, experiment: Experiment, out_dir: Path, progress: Progress | None = None):
        self.experiment = experiment
        self.out = out_dir
        self.progress = progress or Progress()
        self.stop_requested = False
        self.cells = experiment.cells
        self.run_info: dict = {}

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for anything
        self.stop_requested = True
        self.progress.message(
            f"{signal.Signals(signum).name}: stopping the current cell; the report will be partial"
        )

    # -- bookkeeping -------------------------------------------------------------------------
    def _cell_dir(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def _write_cell(self, cell: Cell, record: dict) -> None:
        base = {
            "format": CELL_FORMAT,
            "id": cell.id,
            "target": cell.target.name,
            "label": cell.target.target.label,
            "protocol": cell.protocol,
            "launched": cell.target.launch is not None,
        }
        write_json_atomic(self._cell_dir(cell) / "cell.json", {**base, **record})

    def _skip(self, cells: list[Cell], status: str, reason: str) -> None:
        for cell in cells:
            self._write_cell(cell, {"status": status, "reason": reason})
            if status == "failed":
                self.progress.message(f"{cell.id}: FAILED: {reason}")

    def _write_run(self, status: str) -> None:
        self.run_info["status"] = status
        if status != "running":
            self.run_info["finished_at"] = now_iso()
        write_json_atomic(self.out / "run.json", self.run_info)

    def _start_run(self) -> None:
        exp = self.experiment
        rows = request_rows(exp)  # ConfigError here: nothing created yet
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exp.path, self.out / "experiment.toml")
        spec = exp.spec()
        self.run_info = {
            "format": RUN_FORMAT,
            "experiment": {
                "name": exp.name,
                "description": exp.description,
                "file": str(exp.path),
                "protocols": list(exp.protocols),
                "load": {
                    "users": exp.load.users,
                    "requests": exp.load.requests,
                    "duration": exp.load.duration,
                    "max_duration": exp.load.max_duration if exp.load.requests else None,
                    "warmup_requests": spec.load.warmup_requests,
                    "arrival_rate": spec.load.arrival_rate or None,
                },
            },
            "spec": spec.to_dict(),
            "model": {
                "name": exp.model.name,
                "base_path": str(exp.model.base_path) if exp.model.base_path else None,
                "instances": spec.workload.instances_file,
                "rows_per_request": rows,
                "metadata": read_model_metadata(exp),
            },
            "machine": describe_machine(),
            "versions": client_versions(),
            "started_at": now_iso(),
            "cells": [c.id for c in self.cells],
            "targets": {},
        }
        self._write_run("running")

    def _record_target(
        self, et: ExperimentTarget, target: Target, info: ServerInfo, running: Running | None
    ) -> None:
        self.run_info["targets"][et.name] = {
            "label": target.label,
            "rest": target.rest,
            "grpc": target.grpc,
            "metrics": target.metrics,
            "launch": et.launch.kind if et.launch else None,
            "flags": list(et.launch.flags) if et.launch else [],
            "command": running.command if running else None,
            # a container's image (its id and registry digests), name, GPUs and mounts
            "container": (running.facts or None) if running else None,
            "server": info.to_dict(),
        }
        self._write_run("running")

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Run every cell; returns the run status, ``complete`` or ``partial``."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            servers = as_found(self.experiment)  # ConfigError here: nothing created yet
            self._start_run()
            for et, server in zip(self.experiment.targets, servers, strict=True):
                cells = [c for c in self.cells if c.target is et]
                if self.stop_requested:
                    self._skip(cells, "not_run", "the run was interrupted")
                    continue
                self._run_target(et, server, cells)
            status = "partial" if self.stop_requested else "complete"
            self._write_run(status)
            return status
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _run_target(self, et: ExperimentTarget, server: Restartable, cells: list[Cell]) -> None:
        running: Running | None = None
        if et.launch:
            what = "container" if et.launch.container else "stand-in"
            self.progress.message(f"starting {what} {et.name} ...")
            try:
                running = server.start(
                    None, self.out / "servers" / f"{et.name}.log", lambda: self.stop_requested
                )
            except LaunchError as exc:
                status = "not_run" if self.stop_requested else "failed"
                self._skip(cells, status, f"launch failed: {exc}")
                return
            target, info = running.target, running.info
        else:
            target = et.target
            info = self._probe(target)
        self._record_target(et, target, info, running)
        try:
            for cell in cells:
                if self.stop_requested:
                    self._skip([cell], "not_run", "the run was interrupted")
                    continue
                info = self._probe(target) if cell is not cells[0] else info
                reason = self._unreachable(cell, target, info)
                if reason:
                    self._skip([cell], "failed", reason)
                    continue
                self._run_cell(cell, target, info, running)
        finally:
            if running:
                code = server.stop(running)
                self.run_info["targets"][et.name]["exit_code"] = code
                self._write_run("running")

    def _unreachable(self, cell: Cell, target: Target, info: ServerInfo) -> str | None:
        """Why ``cell`` cannot run (server down, model not AVAILABLE), or None."""
        if info.error:
            return f"unreachable: {info.error}"
        if cell.protocol == "grpc":
            problem = port_open(target.grpc)
            return f"unreachable: {problem}" if problem else None
        return None

    def _gone(self, cell: Cell, target: Target, running: Running | None) -> str | None:
        """Why the cell's server is not there any more after its cell (a launched server
        that exited, a target that stopped answering), or None: a server that died under load
        fails its cell, whatever Locust measured before."""
        exit_code = running.poll() if running else None
        if exit_code is not None:
            return f"the server exited with code {exit_code} during the cell"
        reason = self._unreachable(cell, target, self._probe(target))
        return f"the server stopped answering during the cell ({reason})" if reason else None

    def _probe(self, target: Target) -> ServerInfo:
        """Ask the target's REST port what it is; gRPC-only targets are checked per cell."""
        if target.rest:
            return model_status(target.rest, self.experiment.model.name)
        return ServerInfo("unknown", None, None, None)

    def _scrape(self, target: Target, path: Path) -> str | None:
        """Save the metrics text to ``path``; returns an error line instead of raising."""
        if not target.metrics:
            return None
        try:
            write_atomic(path, scrape(target.metrics))
        except ScrapeError as exc:
            return str(exc)
        return None

    def _run_cell(
        self, cell: Cell, target: Target, info: ServerInfo, running: Running | None
    ) -> None:
        index = self.cells.index(cell) + 1
        cell_dir = self._cell_dir(cell)
        cell_dir.mkdir(parents=True, exist_ok=True)
        cell_began = time.time()
        metrics_errors = [self._scrape(target, cell_dir / "metrics-before.prom")]
        spec_path = cell_dir / "run-spec.json"
        cell_spec(self.experiment, cell, target, cell_dir).write(spec_path)
        command = locust_command(cell, spec_path, cell_dir)
        self.progress.start_cell(index, len(self.cells), cell.id)
        started_at = now_iso()
        cpu = CpuAccount(running.pid if running else None)
        start = time.monotonic()
        code, timed_out = self._run_locust(command, cell_dir)
        wall = time.monotonic() - start
        cpu_split = cpu.finish()
        metrics_errors.append(self._scrape(target, cell_dir / "metrics-after.prom"))
        has_precise = (cell_dir / "precise.json").exists()
        gone = None if self.stop_requested else self._gone(cell, target, running)
        if running and running.log_since:  # a container's log, this cell's part of it
            write_atomic(cell_dir / "server.log", running.log_since(cell_began))
        if self.stop_requested:
            status, reason = "interrupted", "stopped by a signal"
        elif timed_out:
            status, reason = "failed", f"Locust still running after {wall:.0f} s; killed"
        elif gone:
            status, reason = "failed", gone
        elif code in MEASURED_EXIT_CODES and has_precise:
            status, reason = "ok", None
        else:
            detail = log_tail(cell_dir / "locust.log", 3)
            status, reason = "failed", f"Locust exited with code {code}: {detail}"
        self._write_cell(
            cell,
            {
                "status": status,
                "reason": reason,
                "exit_code": code,
                "started_at": started_at,
                "wall_time_s": round(wall, 3),
                **cpu_split,
                "server": info.to_dict(),
                "rest": target.rest,
                "grpc": target.grpc,
                "metrics_url": target.metrics,
                "metrics_error": next((e for e in metrics_errors if e), None),
                "command": command,
            },
        )
        verdict = "ok" if status == "ok" else f"{status.upper()}: {reason}"
        self.progress.message(f"[{index}/{len(self.cells)}] {cell.id}: {verdict} ({wall:.1f} s)")

    def _run_locust(self, command: list, cell_dir: Path) -> tuple[int | None, bool]:
        """Run Locust, reporting progress; returns (exit code, timed out)."""
        limit = self.experiment.load.time_limit_s + CELL_GRACE_S
        with open(cell_dir / "locust.log", "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = time.monotonic()
        interrupted_at = None
        timed_out = False
        try:
            while process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.5)
                now = time.monotonic()
                if self.stop_requested and interrupted_at is None:
                    interrupted_at = now
                    process.send_signal(signal.SIGINT)  # Locust stops and writes its files
                elif interrupted_at and now - interrupted_at > INTERRUPT_GRACE_S:
                    process.kill()
                elif not timed_out and now - start > limit:
                    timed_out = True
                    process.kill()
                live = read_live_stats(cell_dir / "locust")
                if live:
                    self.progress.update(*live)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return process.returncode, timed_out
