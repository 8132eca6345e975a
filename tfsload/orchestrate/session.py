"""A search's results folder and its run: steps kept on disk, time budget, Ctrl-C, progress.

``slo``, ``tune`` and sweeps run many stable steps (:mod:`tfsload.orchestrate.step`). Each finished
step's record stays in ``steps/<cell>/<configuration>/<load>/step.json``, and a step asked for
again is read from there instead of run: that is how a search resumes from its folder (the
searches are deterministic given their probes' verdicts, so replaying the kept steps brings the
search back exactly where it stopped) and why Ctrl-C loses at most the step under way.

Layout::

    search.json        kind (slo, tune, sweep), bound, settings, status, every result
                       (tfsload-search/1)
    experiment.toml    the experiment, copied (a resume reads this one)
    steps/<cell>/<configuration>/<load>/   step.json run-spec.json windows.json precise.json
                                           locust.log locust_*.csv
    servers/<target>-<configuration>.log   launched servers' output
    report.md report.html plots/           rendered from search.json
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tfsload.core.errors import ConfigError
from tfsload.core.files import write_json_atomic
from tfsload.orchestrate.experiment import Cell, Experiment, load_experiment
from tfsload.orchestrate.machine import client_versions, describe_machine
from tfsload.orchestrate.progress import Progress, format_elapsed
from tfsload.orchestrate.restart import OnDemand
from tfsload.orchestrate.runner import now_iso
from tfsload.orchestrate.slo import Bound, SearchStopped, judge
from tfsload.orchestrate.step import StepLoad, read_step, run_step
from tfsload.orchestrate.windows import StabilityRule

SEARCH_FORMAT = "tfsload-search/1"
SEARCH_FILE = "search.json"


def evidence(step: dict) -> dict:
    """What a report shows of one probe: its figures, stability and the generator's state."""
    if step["status"] != "complete":
        return {"status": step["status"], "reason": step.get("reason")}
    figures = step["figures"]
    return {
        "status": "complete",
        "stable": step["stable"],
        "windows": len(step["windows"]),
        "rps": figures["rps"],
        "rows_per_s": figures["rows_per_s"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "fail_ratio": figures["fail_ratio"],
        "schedule_kept": step["schedule_kept"],
        "late_sends": step["arrival"]["late_sends"],
        "generator_cpu_max": step["generator"]["cpu_percent_max"],
        "generator_saturated": step["generator_saturated"],
        "other_cpu_percent": step.get("cpu", {}).get("other_cpu_percent_of_machine"),
    }


class Session:
    """One ``slo`` or ``tune`` run into one folder, new or resumed."""

    def __init__(
        self, out: Path, experiment: Experiment, kind: str, bound: Bound | None,
        resolution: float | None, max_minutes: float | None, progress: Progress | None = None,
    ) -> None:  # fmt: skip
        """``bound`` and ``resolution`` are None for a sweep, which judges nothing."""
        self.out = out
        self.experiment = experiment
        self.kind = kind
        self.bound = bound
        self.resolution = resolution
        self.max_minutes = max_minutes
        self.progress = progress or Progress()
        self.started = time.monotonic()
        self.interrupted = False
        self.out_of_time = False
        self.steps_run = 0
        self.steps_kept = 0
        search = experiment.search
        self.rule = StabilityRule(
            search.window_s, search.stable_windows, search.tolerance, search.max_windows
        )
        self.record: dict = {}

    # -- the folder --------------------------------------------------------------------------
    def begin(self, resumed: dict | None = None) -> None:
        """Create (or take over) the folder and write ``search.json`` as running."""
        self.out.mkdir(parents=True, exist_ok=True)
        copy = self.out / "experiment.toml"
        if not copy.exists():
            shutil.copyfile(self.experiment.path, copy)
        exp = self.experiment
        self.record = resumed or {
            "format": SEARCH_FORMAT,
            "kind": self.kind,
            "experiment": {"name": exp.name, "description": exp.description, "file": str(exp.path)},
            "bound": self.bound.to_dict() if self.bound else None,
            "resolution": self.resolution,
            "rule": self.rule.to_dict(),
            "axis": exp.search.axis,
            "machine": describe_machine(),
            "versions": client_versions(),
            "started_at": now_iso(),
            "results": [],
        }
        self.record["max_minutes"] = self.max_minutes
        if resumed:
            self.record.setdefault("resumed_at", []).append(now_iso())
        self.save("running")

    def save(self, status: str | None = None) -> None:
        if status:
            self.record["status"] = status
        if status and status != "running":
            self.record["finished_at"] = now_iso()
            self.record["stopped"] = self.stop_reason()
        write_json_atomic(self.out / SEARCH_FILE, self.record)

    def final_status(self) -> str:
        if self.interrupted:
            return "partial"
        return "cut_short" if self.out_of_time else "complete"

    # -- stopping ----------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        """Why the search must stop now (Ctrl-C, the time budget), or None."""
        if self.interrupted:
            return "interrupted (Ctrl-C or SIGTERM)"
        budget = self.max_minutes
        if budget is not None and time.monotonic() - self.started >= budget * 60:
            self.out_of_time = True
        if self.out_of_time:
            return f"the time budget ran out (--max-minutes {self.max_minutes:g})"
        return None

    def _on_signal(self, signum: int, _frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for anything
        self.interrupted = True
        name = signal.Signals(signum).name
        self.progress.message(f"{name}: stopping after this step's Locust exits; keeping results")

    @contextmanager
    def signals(self) -> Iterator[None]:
        signums = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._on_signal) for s in signums}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- steps -------------------------------------------------------------------------------
    def step_dir(self, cell: Cell, configuration: str, load: StepLoad) -> Path:
        return self.out / "steps" / cell.id / configuration / load.id

    def measure(
        self, cell: Cell, server: OnDemand, configuration: str, load: StepLoad, label: str
    ) -> dict:
        """The step at ``load``: kept from an earlier run of this folder, or run now on
        ``server`` (started first if needed; LaunchError when it cannot). Raises SearchStopped
        when the search must stop first."""
        step_dir = self.step_dir(cell, configuration, load)
        kept = read_step(step_dir)
        if kept is not None and kept["status"] != "interrupted":
            self.steps_kept += 1
            self._report(label, load, kept, kept=True)
            return kept
        reason = self.stop_reason()
        if reason:
            raise SearchStopped(reason)
        address = server.target()
        for attempt in (1, 2):
            shutil.rmtree(step_dir, ignore_errors=True)  # an interrupted step starts afresh
            step = run_step(
                self.experiment, cell, address, load, self.rule, step_dir, self.stop_reason,
                server.pid,
            )  # fmt: skip
            if step["status"] == "interrupted":
                raise SearchStopped(step["reason"])
            self.steps_run += 1
            self._report(label, load, step, kept=False)
            if step["status"] != "failed":
                break
            # A step that measured nothing (Locust crashed: grpcio under gevent can abort) is
            # the generator's accident, not the server's answer: once more before giving up.
            if attempt == 1:
                self.progress.message(f"[{label}] {load.describe()}: the step failed; once more")
        return step

    def _report(self, label: str, load: StepLoad, step: dict, kept: bool) -> None:
        """One progress line per step, with its verdict when there is a bound."""
        elapsed = format_elapsed(time.monotonic() - self.started)
        if step["status"] == "complete":
            f = step["figures"]
            p99 = "-" if f["p99_ms"] is None else f"{f['p99_ms']:.2f} ms"
            stable = "stable" if step["stable"] else "NOT stable"
            facts = (
                f"{f['rps']:,.1f} req/s, p99 {p99}, failed {f['fail_ratio']:.2%}, "
                f"{stable} after {len(step['windows'])} windows"
            )
        else:
            facts = step.get("reason") or step["status"]
        verdict = f" -> {judge(step, self.bound).kind.upper()}" if self.bound else ""
        again = " (kept from before)" if kept else ""
        self.progress.message(f"[{label}] {load.describe()}: {facts}{verdict}{again} ({elapsed})")


def open_session(resume: Path, kind: str) -> tuple[dict, Experiment]:
    """The record and experiment of a folder to resume; ConfigError when it is not a ``kind``
    folder, or when its experiment file is gone or changed since (its copy tells)."""
    path = resume / SEARCH_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume {resume}: no {SEARCH_FILE} (not a search folder)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume {resume}: {SEARCH_FILE}: cannot read ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != SEARCH_FORMAT:
        raise ConfigError(f"--resume {resume}: {SEARCH_FILE}: not {SEARCH_FORMAT}")
    if record.get("kind") != kind:
        raise ConfigError(f"--resume {resume}: a {record.get('kind')} folder, not {kind}")
    original = Path(record["experiment"]["file"])
    try:
        same = original.read_bytes() == (resume / "experiment.toml").read_bytes()
    except OSError as exc:
        raise ConfigError(f"--resume {resume}: {original}: cannot read ({exc.strerror})") from None
    if not same:
        raise ConfigError(
            f"--resume {resume}: {original} changed since this search started "
            "(its copy is experiment.toml): start a new search"
        )
    return record, load_experiment(original)
