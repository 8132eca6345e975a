"""``tfsload tune``: which batching parameters carry the most load within the latency bound.

For each target and protocol the tuner restarts the server once per configuration and measures
it as the highest load under the bound (:func:`tfsload.orchestrate.capacity.highest_load`), in
the order TF Serving's batching guide (tensorflow_serving/batching/README.md) tunes:

1. no batching: the baseline every configuration is compared with;
2. ``num_batch_threads`` = the server's cores, a large ``batch_timeout_micros`` (half the p99
   bound unless ``[search] scan_timeout_us`` says otherwise: a batch that waits longer could
   never meet the bound), scanning ``max_batch_size`` upwards; the scan stops once two sizes in
   a row fall behind the best by more than the resolution (the peak is behind us);
3. the best size with ``batch_timeout_micros`` scanned (0 included), to rein in the tail;
4. with ``extras``: the best so far with ``max_enqueued_batches`` = ``num_batch_threads`` (the
   guide's advice for online serving), then with ``allowed_batch_sizes`` (powers of two up to
   ``max_batch_size``); each is kept only if it carries more;
5. confirmation: no batching and the best configuration measured again, one right after the
   other. The scan measured them minutes apart, and a shared machine's load changes in
   minutes; the verdict on batching rests on this back-to-back pair (the report gives both).

The best configuration is the one that carries the most: the highest Poisson rate within the
bound (on the ``users`` axis: the most req/s at its highest passing concurrency), the lower p99
breaking ties. When the best batching configuration and no batching both reached the search's
``maximum``, the tuner says it cannot tell them apart rather than compare noise. The best is
written as a ready ``batching_parameters_file``, with its figures in a comment; every
configuration tried has its file in ``batching/``. The decisions depend only on the
configurations' results, so a resumed tuner replays its kept steps to where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tfsload.core.files import write_atomic
from tfsload.orchestrate.capacity import highest_load, search_axis
from tfsload.orchestrate.experiment import Cell
from tfsload.orchestrate.restart import OnDemand, Restartable, restartable
from tfsload.orchestrate.session import Session

NO_BATCHING = "no-batching"
CONFIRM = "confirm"
AGAIN = "-again"
TF_SERVING_QUEUE = 10  # TF Serving's default max_enqueued_batches


@dataclass(frozen=True)
class Batching:
    """One set of TF Serving ``BatchingParameters``."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int = TF_SERVING_QUEUE
    allowed_batch_sizes: tuple[int, ...] = ()

    @property
    def id(self) -> str:
        base = (
            f"b{self.max_batch_size}-t{self.batch_timeout_micros}us"
            f"-n{self.num_batch_threads}-q{self.max_enqueued_batches}"
        )
        if self.allowed_batch_sizes:
            base += "-a" + "_".join(str(size) for size in self.allowed_batch_sizes)
        return base

    def label(self) -> str:
        """Short, for plot labels: ``32 rows, 2000 µs, 2 thr, q10 [+ sizes]``."""
        text = (
            f"{self.max_batch_size} rows, {self.batch_timeout_micros} µs, "
            f"{self.num_batch_threads} thr, q{self.max_enqueued_batches}"
        )
        return text + (", sizes" if self.allowed_batch_sizes else "")

    def text(self, comment: str = "") -> str:
        """The ``batching_parameters_file`` (TF Serving's text protobuf)."""
        lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
        lines += [
            f"max_batch_size {{ value: {self.max_batch_size} }}",
            f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}",
            f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}",
            f"num_batch_threads {{ value: {self.num_batch_threads} }}",
            *(f"allowed_batch_sizes: {size}" for size in self.allowed_batch_sizes),
        ]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {**asdict(self), "allowed_batch_sizes": list(self.allowed_batch_sizes)}


def power_of_two_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two from an eighth of ``max_batch_size`` up, ending at it (TF Serving wants
    the last allowed size to be ``max_batch_size``)."""
    sizes, size = [], 1
    while size < max_batch_size:
        if size * 8 >= max_batch_size:
            sizes.append(size)
        size *= 2
    return (*sizes, max_batch_size)


class Tuning:
    """The tuner's run for one target and protocol."""

    def __init__(
        self, session: Session, server: Restartable, cell: Cell, before: dict | None = None
    ) -> None:
        """``before``: this cell's configurations from the run being resumed, by id (their
        server facts stand when every step is kept and the server is not started again)."""
        self.session = session
        self.server = server
        self.cell = cell
        self.before = before or {}
        self.tried: list[dict] = []
        self.stopped = False

    # -- measuring one configuration ---------------------------------------------------------
    def measure(self, batching: Batching | None, phase: str) -> dict | None:
        """The configuration's highest load under the bound (None once the search stops); in
        the confirmation phase, measured a second time."""
        if self.stopped:
            return None
        session = self.session
        base_id = batching.id if batching else NO_BATCHING
        again = phase == CONFIRM
        config_id = base_id + (AGAIN if again else "")
        for done in self.tried:
            if done["id"] == config_id:
                return done
        file = None
        if batching is not None:
            file = session.out / "batching" / f"{base_id}.cfg"
            write_atomic(file, batching.text())
        first = next((e for e in self.tried if e["id"] == base_id), None) if again else None
        start = first["result"].get("highest") if first else None
        result, server, command = self.search(config_id, file, start)
        label = batching.label() if batching else "no batching"
        entry = {
            "id": config_id,
            "phase": phase,
            "batching": batching.to_dict() if batching else None,
            "label": label + (" (again)" if again else ""),
            "file": str(file.relative_to(session.out)) if file else None,
            "server": server or self.before.get(config_id, {}).get("server"),
            "command": command or self.before.get(config_id, {}).get("command"),
            "result": result,
        }
        self.tried.append(entry)
        if result["status"] == "stopped":
            self.stopped = True
        return entry

    def search(
        self, config_id: str, file: Path | None, start: float | None = None
    ) -> tuple[dict, dict | None, list | None]:
        """Start the server with the batching file (None: no batching), search its highest
        load under the bound (from ``start``, else where the best so far topped out), stop it;
        returns the result, the server's facts, its command."""
        session = self.session
        flags = ("--enable_batching", f"--batching_parameters_file={file}") if file else ()
        log = session.out / "servers" / f"{self.server.name}-{config_id}.log"
        on_demand = OnDemand(self.server, flags, log, lambda: session.interrupted)
        label = f"{self.cell.id} {config_id}"
        axis = search_axis(session.experiment)
        leader = self.best()
        start = start or (leader["result"]["highest"] if leader else None)
        if start:  # start near the answer: fewer probes
            axis = replace(axis, start=start)
        try:
            result = highest_load(session, self.cell, on_demand, config_id, label, axis)
            running = on_demand.running
            server = running.info.to_dict() if running and running.info else None
            command = running.command if running else None
        finally:
            on_demand.close()
        return result, server, command

    def capacity(self, entry: dict | None) -> float:
        """What a configuration carries within the bound: its highest passing rate (offered
        req/s: measured rates only add Poisson noise to it), or on the users axis the req/s
        measured at its highest passing concurrency; 0 when nothing passed."""
        if entry is None or entry["result"].get("highest") is None:
            return 0.0
        if self.session.experiment.search.axis == "users":
            return entry["result"]["throughput_rps"] or 0.0
        return entry["result"]["highest"]

    def best(self, batching_only: bool = False) -> dict | None:
        """The configuration that carries the most (confirmations aside)."""
        candidates = [e for e in self.tried if e["phase"] != CONFIRM]
        candidates = [e for e in candidates if e["batching"] or not batching_only]
        candidates = [e for e in candidates if self.capacity(e) > 0]
        return max(candidates, key=lambda e: (self.capacity(e), -e["result"]["p99_ms"]),
                   default=None)  # fmt: skip

    # -- the guide's phases ------------------------------------------------------------------
    def run(self) -> None:
        self.scan()
        best = self.best(batching_only=True)
        if best is not None and not self.stopped:
            self.measure(None, CONFIRM)
            self.measure(batching_of(best), CONFIRM)

    def scan(self) -> None:
        session = self.session
        search = session.experiment.search
        threads = search.batch_threads or self.server.cores
        scan_timeout = search.scan_timeout_us
        if scan_timeout is None:
            scan_timeout = int(session.bound.p99_ms * 1000 / 2)
        self.measure(None, "baseline")
        behind = 0
        for size in sorted(search.max_batch_sizes):
            entry = self.measure(Batching(size, scan_timeout, threads), "max_batch_size")
            leader = self.best(batching_only=True)
            if entry is None:
                return
            if entry is leader:
                behind = 0
            elif self.capacity(entry) < self.capacity(leader) / (1 + session.resolution):
                behind += 1
                if behind == 2:
                    break
        leader = self.best(batching_only=True)
        if leader is None:
            return
        size = leader["batching"]["max_batch_size"]
        for timeout in sorted(search.batch_timeouts_us):
            if self.measure(Batching(size, timeout, threads), "batch_timeout_micros") is None:
                return
        if not search.extras:
            return
        base = replace(batching_of(self.best(batching_only=True)), allowed_batch_sizes=())
        self.measure(replace(base, max_enqueued_batches=threads), "max_enqueued_batches")
        base = replace(batching_of(self.best(batching_only=True)), allowed_batch_sizes=())
        sizes = power_of_two_sizes(base.max_batch_size)
        self.measure(replace(base, allowed_batch_sizes=sizes), "allowed_batch_sizes")

    # -- the outcome -------------------------------------------------------------------------
    def summary(self) -> dict:
        """The cell's tuning result: every configuration, the best, the verdict on batching
        (from the confirmation pair when it was measured, else from the scan)."""
        by_id = {e["id"]: e for e in self.tried}
        baseline = by_id.get(NO_BATCHING)
        best = self.best(batching_only=True)
        first = [self.capacity(baseline), self.capacity(best)]
        pair = [by_id.get(NO_BATCHING + AGAIN), by_id.get(best["id"] + AGAIN) if best else None]
        confirmed = all(e and e["result"]["status"] == "complete" for e in pair)
        judged = pair if confirmed else [baseline, best]
        base_cap, best_cap = (self.capacity(e) for e in judged)
        gain = best_cap / base_cap - 1 if base_cap and best_cap else None
        pays = best_cap > base_cap * (1 + self.session.resolution) if best else False
        at_maximum = [e["result"]["search"]["limited_by"] == "maximum" for e in judged if e]
        result = {
            "cell": self.cell.id,
            "target": self.cell.target.name,
            "label": self.cell.target.target.label,
            "protocol": self.cell.protocol,
            "cores": self.server.cores,
            "configurations": self.tried,
            "baseline": baseline["id"] if baseline else None,
            "best": best["id"] if best else None,
            "best_file": None,
            "capacity_unit": "req/s" if session_axis(self.session) == "users" else "req/s offered",
            "baseline_capacity": base_cap or None,
            "best_capacity": best_cap or None,
            "confirmed": confirmed,
            "first_pass": {
                "baseline_capacity": first[0] or None,
                "best_capacity": first[1] or None,
            },
            "gain": round(gain, 4) if gain is not None else None,
            "batching_pays": pays,
            # offered rates capped alike say nothing; measured req/s at capped users still do
            "undecided": session_axis(self.session) == "rate" and at_maximum == [True, True],
            "complete": not self.stopped,
        }
        if best is not None:
            result["best_file"] = self._write_best(best, (base_cap, best_cap), pays, confirmed)
        return result

    def _write_best(
        self, best: dict, capacities: tuple[float, float], pays: bool, confirmed: bool
    ) -> str:
        """The ready batching file, its figures in a comment; ``capacities``: no batching's and
        the best's, from the confirmation pair when ``confirmed``."""
        session = self.session
        base_cap, best_cap = capacities
        result = best["result"]
        unit = "users" if session_axis(session) == "users" else "req/s offered"
        capacity = "req/s" if unit == "users" else "req/s offered"
        scan = (
            f"In the scan, with {session.bound.describe()}: at most {result['highest']:g} "
            f"{unit}, {result['throughput_rps']:,.1f} req/s, p99 {result['p99_ms']:.3f} ms."
        )
        again = f"{best_cap:,.1f} {capacity} against {base_cap:,.1f} without batching"
        verdict = (
            f"Measured again right after no batching: {again}."
            if confirmed
            else f"Against no batching: {again}."
            if base_cap
            else "No batching kept the bound at no load tried."
        )
        comment = (
            f"Best batching configuration found by tfsload tune for {self.cell.id} "
            f"({self.cell.target.target.label}).\n{scan}\n{verdict}\n"
            + ("" if pays else "Batching does NOT pay here: serve without --enable_batching.\n")
            + "Use: --enable_batching --batching_parameters_file=<this file>"
        )
        name = f"best-batching-{self.cell.id}.cfg"
        write_atomic(session.out / name, batching_of(best).text(comment))
        return name


def batching_of(entry: dict) -> Batching:
    """The parameters of a configuration tried (an entry of ``Tuning.tried``)."""
    values = entry["batching"]
    return Batching(**{**values, "allowed_batch_sizes": tuple(values["allowed_batch_sizes"])})


def session_axis(session: Session) -> str:
    return session.experiment.search.axis


def run_tune(session: Session) -> None:
    """Tune every target x protocol; results go into ``search.json``."""
    experiment = session.experiment
    before = {
        r["cell"]: {c["id"]: c for c in r["configurations"]} for r in session.record["results"]
    }
    results = session.record["results"] = []
    servers = {server.name: server for server in restartable(experiment)}
    for cell in experiment.cells:
        if session.stop_reason():
            break
        tuning = Tuning(session, servers[cell.target.name], cell, before.get(cell.id))
        tuning.run()
        results.append(tuning.summary())
        session.save()
        if tuning.stopped:
            break
