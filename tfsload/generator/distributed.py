"""Distributed runs (``--processes N``, or ``--master`` with ``--worker`` processes): one result.

When a test starts, the master splits warm-up, request count and arrival rate among the workers
and sends each its share, before Locust's spawn orders, so that it arrives first. Every worker
then adds to Locust's own periodic report the precise numbers it recorded since its previous
report and its cumulative facts (CPU, lateness, phase times, done); the master merges them.
Locust's stats and the precise numbers travel in the same message, so the two agree even about
a report that arrives late. A worker still in its warm-up clears Locust's stats before each
report, so warm-up requests never reach the master. Once every worker with a share of
``--request-count`` has reported done, all its numbers are in, and the master stops the run.
"""

from __future__ import annotations

import logging

from locust.runners import MasterRunner, WorkerRunner

from tfsload.core.run_spec import RunSpec
from tfsload.generator.run_state import RunRecord, RunState, Share, split_run

SHARE_MESSAGE = "tfsload_share"
# The end of a headless run: the master asks every worker to send nothing more and to wait
# for its calls in flight; each answers once they have returned.
FINISH_MESSAGE = "tfsload_finish"
FINISHED_MESSAGE = "tfsload_finished"
REPORT_KEY = "tfsload"

log = logging.getLogger("tfsload")


def active_workers(runner: MasterRunner) -> list[str]:
    """Ids of the workers that take part in a starting test, in worker-index order."""
    nodes = runner.clients.ready + runner.clients.spawning + runner.clients.running
    return sorted((node.id for node in nodes), key=runner.get_worker_index)


def send_shares(runner: MasterRunner, spec: RunSpec, classes: list[str]) -> list[str]:
    """Send each active worker the run's spec, the user classes picked and its share of the
    run; returns the workers that got one."""
    workers = active_workers(runner)
    if not workers:
        return []
    spec_data = spec.to_dict(secrets=True)  # header values travel to this run's own workers
    for client_id, share in zip(workers, split_run(spec, len(workers)), strict=True):
        message = {"spec": spec_data, "classes": classes, "share": share.to_dict()}
        runner.send_message(SHARE_MESSAGE, message, client_id=client_id)
    return workers


def late_share(spec: RunSpec) -> Share:
    """The share of a worker that joined after the start: none of a fixed count or rate."""
    if spec.load.request_count or spec.load.open_loop:
        log.warning("tfsload: this worker joined after the test started; it sends nothing")
        return Share(0, 0, 0.0, sends=False)
    return Share(0, 0, 0.0)


def worker_report(state: RunState, runner: WorkerRunner) -> dict:
    """This worker's part of the next report; clears Locust's stats while still warming up."""
    if state.budget.warmup and not state.budget.measured:
        runner.stats.reset_all()
    return {"stats": state.stats.export(), "facts": state.facts()}


def merge_report(record: RunRecord, client_id: str, report: dict) -> None:
    record.stats.merge(report["stats"])
    record.facts[client_id] = report["facts"]


def all_done(record: RunRecord, workers: list[str]) -> bool:
    """True once every worker that got a share has reported its count complete."""
    return bool(workers) and all(record.facts.get(w, {}).get("done") for w in workers)
