"""``tfsload slo``: per target and protocol, the highest load that keeps the latency bound.

Each target is used as the experiment declares it (launched stand-ins are started, with their
own flags, when a step first needs them), and per protocol :func:`highest_load` runs the
bracketing-and-bisection search of :mod:`tfsload.orchestrate.slo` with stable steps. The result
names the load with its evidence: every probe, its figures, its verdict, the generator's state.
"""

from __future__ import annotations

from tfsload.orchestrate.experiment import Cell, Experiment
from tfsload.orchestrate.launch import LaunchError
from tfsload.orchestrate.restart import OnDemand, as_found
from tfsload.orchestrate.session import Session, evidence
from tfsload.orchestrate.slo import Axis, Bound, find_highest, judge
from tfsload.orchestrate.step import StepLoad, users_for_rate

AS_DECLARED = "as-declared"
# An open-loop send later than this share of the p99 bound counts as late: lateness that small
# cannot move the verdict (and counts in the latency anyway, which runs from the intended time).
LATE_SHARE_OF_BOUND = 0.1


def search_axis(experiment: Experiment) -> Axis:
    search = experiment.search
    return Axis(search.axis, search.start, search.minimum, search.maximum)


def step_load(experiment: Experiment, axis: Axis, value: float, bound: Bound) -> StepLoad:
    """The step for one probe: ``value`` users, or a rate with users enough for it."""
    if axis.kind == "users":
        return StepLoad(users=int(value))
    users = users_for_rate(value, bound.p99_ms / 1000, experiment.load.users)
    late_after = max(1.0, bound.p99_ms * LATE_SHARE_OF_BOUND)
    return StepLoad(users, value, experiment.load.step_arrival, late_after)


def highest_load(
    session: Session, cell: Cell, server: OnDemand, configuration: str, label: str,
    axis: Axis | None = None,
) -> dict:  # fmt: skip
    """Search one cell (in one server configuration); returns its result entry.

    The entry holds the search (bracket, probes with verdicts and evidence), the highest load
    that passed with its throughput and p99, and the status: ``complete``, ``stopped`` (Ctrl-C
    or the time budget: the best found so far) or ``failed`` (the target did not start).
    """
    experiment, bound = session.experiment, session.bound
    axis = axis or search_axis(experiment)
    steps: dict[float, dict] = {}

    def measure(value: float):
        load = step_load(experiment, axis, value, bound)
        steps[value] = session.measure(cell, server, configuration, load, label)
        return judge(steps[value], bound)

    entry = {
        "cell": cell.id,
        "target": cell.target.name,
        "label": cell.target.target.label,
        "protocol": cell.protocol,
        "configuration": configuration,
    }
    try:
        search = find_highest(measure, axis, session.resolution)
    except LaunchError as exc:
        return {**entry, "status": "failed", "reason": f"launch failed: {exc}"}
    record = search.to_dict()
    for probe in record["probes"]:
        step = steps[probe["load"]]
        probe.update(load_setting=step["load"], evidence=evidence(step))
    best = steps[search.highest] if search.highest is not None else None
    best_evidence = evidence(best) if best else None
    status = "complete" if search.complete else "failed" if search.failed else "stopped"
    return {
        **entry,
        "status": status,
        "reason": search.failed or search.stopped,
        "search": record,
        "highest": search.highest,
        "throughput_rps": best_evidence["rps"] if best_evidence else None,
        "rows_per_s": best_evidence["rows_per_s"] if best_evidence else None,
        "p99_ms": best_evidence["p99_ms"] if best_evidence else None,
        "p50_ms": best_evidence["p50_ms"] if best_evidence else None,
    }


def run_slo(session: Session) -> None:
    """Search every target x protocol of the experiment; results go into ``search.json``."""
    experiment = session.experiment
    before = {r["cell"]: r.get("server") for r in session.record["results"]}  # when resumed
    results = session.record["results"] = []
    for server in as_found(experiment):
        if session.stop_reason():
            break
        et = next(t for t in experiment.targets if t.name == server.name)
        log = session.out / "servers" / f"{server.name}-{AS_DECLARED}.log"
        on_demand = OnDemand(server, None, log, lambda: session.interrupted)
        try:
            for protocol in experiment.protocols:
                cell = Cell(et, protocol)
                result = highest_load(session, cell, on_demand, AS_DECLARED, cell.id)
                running = on_demand.running
                info = running.info.to_dict() if running and running.info else None
                result["server"] = info or before.get(cell.id)
                results.append(result)
                session.save()
                if result["status"] == "stopped":
                    break
        finally:
            on_demand.close()
