"""Sweeps: every target and protocol through a list of load levels, one stable step each.

An experiment whose ``[load]`` gives ``users = [1, 2, 4, ...]`` (closed loop) or
``arrival_rates = [...]`` (open loop, sent by ``users`` users) is a sweep: ``tfsload run`` runs
each level as a stable step (:mod:`tfsload.orchestrate.step`) per cell, in order, and the report
draws throughput against p50 and p99 with the knee named. The folder is a search folder
(:mod:`tfsload.orchestrate.session`, kind ``sweep``), so finished steps survive Ctrl-C.
"""

from __future__ import annotations

from itertools import pairwise

from tfsload.orchestrate.capacity import AS_DECLARED
from tfsload.orchestrate.experiment import Cell, Experiment
from tfsload.orchestrate.launch import LaunchError
from tfsload.orchestrate.restart import OnDemand, as_found
from tfsload.orchestrate.session import Session, evidence
from tfsload.orchestrate.slo import SearchStopped
from tfsload.orchestrate.step import StepLoad


def level_load(experiment: Experiment, level: float) -> StepLoad:
    sweep = experiment.load.sweep
    if sweep.kind == "users":
        return StepLoad(users=int(level))
    return StepLoad(experiment.load.users, level, experiment.load.step_arrival)


def knee(points: list[dict], tolerance: float) -> float | None:
    """The level after which p99 starts to climb faster than throughput: the last level before
    the first step whose relative p99 rise exceeds both its relative throughput rise and the
    stability tolerance (so noise between similar steps is not a knee). None: no knee seen."""
    measured = [p for p in points if p.get("p99_ms") and p.get("rps")]
    for before, after in pairwise(measured):
        p99_rise = after["p99_ms"] / before["p99_ms"] - 1
        rps_rise = after["rps"] / before["rps"] - 1
        if p99_rise > max(rps_rise, tolerance):
            return before["level"]
    return None


def run_sweep(session: Session) -> None:
    """Run every level of every cell; results go into ``search.json``."""
    experiment = session.experiment
    results = session.record["results"] = []
    levels = experiment.load.sweep.levels
    for server in as_found(experiment):
        if session.stop_reason():
            break
        et = next(t for t in experiment.targets if t.name == server.name)
        log = session.out / "servers" / f"{server.name}.log"
        on_demand = OnDemand(server, None, log, lambda: session.interrupted)
        try:
            for protocol in experiment.protocols:
                cell = Cell(et, protocol)
                entry = {
                    "cell": cell.id,
                    "target": et.name,
                    "label": et.target.label,
                    "protocol": protocol,
                    "status": "complete",
                    "reason": None,
                    "points": [],
                }
                results.append(entry)
                for level in levels:
                    load = level_load(experiment, level)
                    try:
                        step = session.measure(cell, on_demand, AS_DECLARED, load, cell.id)
                    except SearchStopped as exc:
                        entry.update(status="stopped", reason=str(exc))
                        break
                    except LaunchError as exc:
                        entry.update(status="failed", reason=f"launch failed: {exc}")
                        break
                    entry["points"].append(
                        {"level": level, "load": load.to_dict(), **evidence(step)}
                    )
                    session.save()
                entry["knee"] = knee(
                    [p for p in entry["points"] if p["status"] == "complete"],
                    session.rule.tolerance,
                )
                running = on_demand.running
                if running and running.info:
                    entry["server"] = running.info.to_dict()
                session.save()
                if entry["status"] == "stopped":
                    return
        finally:
            on_demand.close()
