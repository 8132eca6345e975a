"""The Locust side of tfsload: its options, one run state per test, precise results at the end.

Importing this module registers listeners on ``locust.events``:

- ``init_command_line_parser``: tfsload's options (:mod:`tfsload.generator.options`);
- ``init``: refuse a run that names no user class; offer in the class picker the classes that
  can run; headless, check the run spec and addresses, ask the servers for the model's
  signature and fit the instances to it up front (one line, exit 2), and encode the requests
  before Locust's run timer starts (:mod:`tfsload.generator.workload`); add the web UI's tab
  and its start form check;
- ``test_start``: on a master, check the run and send every worker the spec, the classes picked
  and its share; on a worker or a single process, set up only the classes of this run and make
  its :class:`~tfsload.generator.run_state.RunState`; a refusal stops the run everywhere and
  says why in the log (the web UI's Logs tab);
- ``request``: warm-up and measured bookkeeping, precise histograms, stop at the count;
- ``report_to_master`` / ``worker_report``: distributed merging
  (:mod:`tfsload.generator.distributed`);
- when a headless run ends (``-t`` or the count): nothing more is sent and every call in
  flight returns, answered or failed at its own time limit, before Locust stops, here or on
  every worker (``_finish_run``): a server that stalls at the end fails the run;
- ``quitting``: build the results, write ``--precise-json`` and ``<csv prefix>_precise.csv``,
  set the exit code (1 nothing completed, 3 threshold failed, 4 saturated with
  ``--fail-on-saturation``);
- while a test runs with ``--windows-json``: rewrite that file once a second with the finished
  measurement windows (the last time, ``final``, when quitting);
- ``quit``: print the summary and one line per reason the run did not pass.

Locust's own statistics are reset when the warm-up ends, so its counts and the precise counts
agree. That reset happens in this module's ``request`` listener, which Locust calls before its
own statistics listener (plugins register when the locustfile is imported, Locust's statistics
when the runner is made); tests/test_locust_runs.py fails if that ever changes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import gevent
from locust import events
from locust.runners import (
    STATE_INIT,
    STATE_RUNNING,
    STATE_SPAWNING,
    STATE_STOPPED,
    WORKER_REPORT_INTERVAL,
    MasterRunner,
    WorkerRunner,
)
from locust.stats import StatsError

from tfsload.core import run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.files import output_file_problem
from tfsload.core.run_spec import RunSpec
from tfsload.core.targets import load_targets
from tfsload.generator import distributed, junit, results, run_state, users, webui, workload
from tfsload.generator.options import add_options, early_targets_file, spec_from_options
from tfsload.generator.payload import Payload
from tfsload.generator.precise import PreciseStats
from tfsload.generator.request_count import Completion
from tfsload.generator.run_state import (
    Endpoint,
    RunRecord,
    RunState,
    Share,
    split_run,
    window_length,
)
from tfsload.generator.saturation import SAMPLE_INTERVAL_S

log = logging.getLogger("tfsload")
REFUSED_MESSAGE = "tfsload_refused"
# A window is written once every request that completed in it has reached this process: at once
# in a single process, after the workers' next periodic report on a master.
WINDOW_SETTLE_S = {"local": 0.5, "master": WORKER_REPORT_INTERVAL + 1.0}
FINISH_POLL_S = 0.01
FINISH_REPLY_S = 5.0  # a master's wait for the workers' answers, on top of the calls' limit


class _Process:
    """This process's tfsload state across the listeners."""

    def __init__(self) -> None:
        self.environment = None
        self.spec: RunSpec | None = None
        self.record: RunRecord | None = None  # single process and master
        self.workers: list[str] = []  # master: the workers with a share of the running test
        self.stopping = False
        self.assignment: dict | None = None  # worker: spec, classes and share for the next test
        self.prepared: tuple[RunSpec, Payload] | None = None  # encoded before the run timer
        self.run_time: float | None = None  # headless -t, started once set-up is done
        self.timer: gevent.Greenlet | None = None
        self.sampler: gevent.Greenlet | None = None
        self.windows_writer: gevent.Greenlet | None = None
        self.starter: gevent.Greenlet | None = None  # master: the greenlet sending spawn orders
        self.results: dict | None = None
        self.finished: set[str] = set()  # master: workers whose calls in flight have returned


_process = _Process()


def fail(message: str) -> NoReturn:
    """Stop before any load is sent: one line naming the problem, exit code 2."""
    sys.stderr.write(f"tfsload: {message}\n")
    sys.exit(2)


def target_user_classes() -> dict[str, type]:
    """The per-target user classes of ``--targets-file``, for the locustfile to declare."""
    path, explicit = early_targets_file()
    if not explicit and not path.exists():
        return {}
    try:
        return users.target_user_classes(load_targets(path), str(path))
    except ConfigError as exc:
        fail(f"--targets-file: {exc}")


def endpoints(classes: list[type], spec: RunSpec, host: str | None) -> dict[type, Endpoint]:
    """Address and stats row of each of ``classes`` that is a tfsload user; ConfigError names
    the first one that lacks an address."""
    chosen = [cls for cls in classes if issubclass(cls, users.PredictUser)]
    return {cls: cls.endpoint(spec, host) for cls in chosen}


def runnable(cls: type, spec: RunSpec, host: str | None) -> bool:
    try:
        endpoints([cls], spec, host)
    except ConfigError:
        return False
    return True


def offer_runnable_classes(environment, spec: RunSpec) -> None:
    """Let the class picker offer (and so pre-select) a run that works.

    Locust's picker ticks every class it offers. Classes named on the command line
    (``--class-picker TfsCpuRest TfsCpuGrpc``) are offered alone; otherwise the classes that
    have an address: per-target classes, and RestUser/GrpcUser when an option gives them one.
    With none of those, every class is offered and the form's host decides.
    """
    offered = environment.available_user_classes or {}
    named = environment.parsed_options.user_classes
    if named:
        keep = set(named)
    else:
        keep = {name for name, cls in offered.items() if runnable(cls, spec, environment.host)}
    if keep:
        environment.available_user_classes = {n: c for n, c in offered.items() if n in keep}


def check_outputs(spec: RunSpec, options: Any) -> None:
    """ConfigError naming the flag of a result file that could not be written (a folder in its
    place, a regular file on its path): found before any load, not after the run."""
    for flag, path in (
        ("--precise-json", spec.outputs.precise_json),
        ("--junit-xml", spec.outputs.junit_xml),
        ("--windows-json", spec.outputs.windows_json),
        ("--html", spec.outputs.html or getattr(options, "html_file", None)),
    ):
        problem = output_file_problem(Path(path)) if path else None
        if problem:
            raise ConfigError(f"{flag}: {path}: {problem}")


def warn_ignored_host(classes: list[type], host: str | None) -> None:
    """Say so when -H was given to per-target classes, which keep their target's address."""
    targeted = sorted(cls.__name__ for cls in classes if getattr(cls, "target", None))
    if host and targeted:
        log.warning(
            "tfsload: -H is ignored by %s: per-target classes use their target's address",
            ", ".join(targeted),
        )


def apply_load(spec: RunSpec, options: Any) -> None:
    """A spec's users, spawn rate, run time and HTML report take the place of Locust's options."""
    load = spec.load
    if load.users:
        options.num_users = load.users
        options.spawn_rate = load.spawn_rate or load.users
    if load.run_time_s:
        options.run_time = load.run_time_s
    if spec.outputs.html:
        options.html_file = spec.outputs.html


@events.init_command_line_parser.add_listener
def _on_parser(parser, **_kwargs) -> None:
    add_options(parser)


@events.init.add_listener
def _on_init(environment, runner, web_ui=None, **_kwargs) -> None:
    _process.environment = environment
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started under a shell's background job, a process inherits SIGINT ignored (POSIX
        # shells do so for `&` jobs without job control) and Python keeps it so: the SIGINT
        # with which tfsload stops a step's or a cell's Locust, which then writes its results,
        # would be lost, and the step killed after its grace time with nothing measured.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if isinstance(runner, WorkerRunner):
        runner.register_message(distributed.SHARE_MESSAGE, _on_assignment)
        runner.register_message(distributed.FINISH_MESSAGE, _on_finish, concurrent=True)
        return
    options = environment.parsed_options
    if options is None:  # Locust used as a library: nothing to check on the command line
        return
    if isinstance(runner, MasterRunner):
        runner.register_message(REFUSED_MESSAGE, _on_worker_refused)
        runner.register_message(distributed.FINISHED_MESSAGE, _on_worker_finished)
    if not options.user_classes and not options.class_picker:
        generic = {users.RestUser.__name__, users.GrpcUser.__name__}
        targeted = sorted(set(environment.available_user_classes or {}) - generic)
        per_target = f", or per target: {', '.join(targeted)}" if targeted else ""
        fail(
            "name the user classes to run (or pick them in the web UI with --class-picker): "
            f"RestUser with -H http://host:port, GrpcUser with -H grpc://host:port{per_target}; "
            'e.g. locust -f "$(tfsload locustfile)" --headless RestUser -H http://127.0.0.1:8501'
        )
    try:
        spec = spec_from_options(options)
        check_outputs(spec, options)
        if options.class_picker:
            offer_runnable_classes(environment, spec)
        if options.headless:
            apply_load(spec, options)
            found = endpoints(environment.user_classes, spec, environment.host)
            if not isinstance(runner, MasterRunner):
                _process.prepared = (spec, workload.prepare(spec, found))
            elif options.processes:
                workload.prepare(spec, found)  # the forked workers will need it: check it now
    except ConfigError as exc:
        fail(str(exc))
    if options.headless and options.run_time:
        # Locust would start its timer before test_start's set-up; tfsload starts it after.
        _process.run_time, options.run_time = options.run_time, None
    if web_ui:
        webui.install(web_ui, _live_rows, _form_problem)


def _form_problem(form) -> str | None:
    """Why the web UI's start form would be refused (it is checked before Locust starts)."""
    environment = _process.environment
    values = dict(vars(environment.parsed_options))
    for key in values:
        if key in form and key not in ("user_classes", "host"):
            values[key] = form[key]
    host = form.get("host", environment.host)
    host = host.replace("<", "").replace(">", "") if host else host
    classes = _form_classes(environment, form)
    if not classes:
        offered = ", ".join(sorted(environment.available_user_classes or {}))
        return f"pick at least one user class (offered: {offered})"
    try:
        spec = spec_from_options(argparse.Namespace(**values))
        endpoints(classes, spec, host)
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            _check_workers(spec, len(distributed.active_workers(runner)), _form_users(form))
        else:
            workload.check_offline(spec)
    except ConfigError as exc:
        return str(exc)
    return None


def _form_classes(environment, form) -> list[type]:
    """The user classes a start form runs, chosen as Locust's ``/swarm`` chooses them: with the
    class picker, the ticked ones that are offered (none ticked: the running test's classes,
    or every offered one); without it, the command line's."""
    offered = environment.available_user_classes
    if not environment.parsed_options.class_picker or not offered:
        return list(environment.user_classes)
    names = form.getlist("user_classes")
    if names:
        return [offered[name] for name in names if name in offered]
    if environment.runner.state == STATE_RUNNING:
        return list(environment.user_classes)
    return list(offered.values())


def _form_users(form) -> int | None:
    """The form's user count; None when it is not a number (Locust itself refuses that)."""
    try:
        return int(form.get("user_count", ""))
    except ValueError:
        return None


def _on_assignment(environment, msg, **_kwargs) -> None:
    _process.assignment = msg.data


def _on_worker_refused(environment, msg, **_kwargs) -> None:
    log.error("tfsload: worker %s refused the run: %s", msg.node_id, msg.data["reason"])
    _refuse_run(environment)


def _refuse_run(environment) -> None:
    """End a run that cannot go on: exit code 2 when headless, back to "stopped" in the web UI."""
    options = environment.parsed_options
    if options is None or options.headless:
        environment.process_exit_code = 2
    gevent.spawn(_stop_run, environment, False)


def _reject(environment, exc: ConfigError) -> None:
    """This process cannot take part in the run: say why, and stop it (on every worker)."""
    log.error("tfsload: %s", exc)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(REFUSED_MESSAGE, {"reason": str(exc)})
        return
    _refuse_run(environment)


def _stop_run(environment, finish_calls: bool = True) -> None:
    """End the run: headless, let the calls in flight return first (see ``_finish_run``) and
    quit; in the web UI, stop and stay."""
    options = environment.parsed_options
    if options is None or options.headless:
        if finish_calls:
            _finish_run(environment)
        environment.runner.quit()
        return
    _stop_dispatch()
    environment.runner.stop()


def drain_limit(spec: RunSpec) -> float:
    """The longest a call of this run can take before it fails on its own time limits (REST:
    connecting, then the answer), plus a second of slack."""
    transport = spec.transport
    rest = transport.rest_connect_timeout_s + transport.rest_timeout_s
    return max(transport.grpc_timeout_s, rest) + 1.0


def _finish_calls(current: RunState | None, limit_s: float) -> None:
    """Send nothing more and wait, at most ``limit_s``, until every call in flight has returned:
    answered, failed, or timed out at its own deadline.

    Locust kills its users at once when a run stops, and a call it kills is never counted: a
    server that stalled in the last seconds of a run (shorter than the time limit) would leave
    a run of clean successes. Waiting turns those calls into the timeouts they are.
    """
    if current is None:
        return
    current.stopped = True
    deadline = time.monotonic() + limit_s
    while current.in_flight > 0 and time.monotonic() < deadline:
        gevent.sleep(FINISH_POLL_S)
    if current.in_flight > 0:
        log.warning("tfsload: %d calls still in flight after their time limit", current.in_flight)


def _finish_run(environment) -> None:
    """Before a headless run quits: the load ends now, and every call in flight returns, in
    this process or on every worker (a master asks them and waits for their answers; their
    last numbers then come with Locust's final report when they quit)."""
    record, spec = _process.record, _process.spec
    if record is None or spec is None:
        return
    if record.stopped is None:
        record.stopped = time.time()
    runner = environment.runner
    limit = drain_limit(spec)
    if not isinstance(runner, MasterRunner):
        _finish_calls(run_state.current(), limit)
        return
    _process.finished = set()
    runner.send_message(distributed.FINISH_MESSAGE, {"limit_s": limit})
    deadline = time.monotonic() + limit + FINISH_REPLY_S
    while not set(_process.workers) <= _process.finished and time.monotonic() < deadline:
        gevent.sleep(FINISH_POLL_S)


def _on_finish(environment, msg, **_kwargs) -> None:
    """Worker: the master ends the load (see ``_finish_run``)."""
    _finish_calls(run_state.current(), msg.data["limit_s"])
    environment.runner.send_message(distributed.FINISHED_MESSAGE)


def _on_worker_finished(environment, msg, **_kwargs) -> None:
    _process.finished.add(msg.node_id)


def _stop_dispatch() -> None:
    """End a master's sending of spawn orders before it stops, as the web UI's Stop button does.

    Locust's master goes on dispatching users after ``stop()`` while a ramp-up is under way: a
    worker that gets a spawn order after the stop reports to a master that has already let it
    go, and is told to quit. The greenlet that fired ``test_start`` is the one dispatching.
    """
    starter, _process.starter = _process.starter, None
    if isinstance(starter, gevent.Greenlet) and starter is not gevent.getcurrent():
        starter.kill(block=True)


def _check_workers(spec: RunSpec, workers: int, users_count: int | None) -> None:
    load = spec.load
    if load.request_count and load.request_count < workers:
        raise ConfigError(f"--request-count: {load.request_count} is fewer than {workers} workers")
    splits = load.request_count or load.open_loop or load.warmup_requests
    if splits and (users_count or 0) < workers:
        raise ConfigError(
            f"-u/--users: {users_count} users cannot cover {workers} workers, each of which has "
            "a share of the count, warm-up or rate; use at least one user per worker"
        )


def _start_master(environment) -> None:
    runner, options = environment.runner, environment.parsed_options
    spec = spec_from_options(options)
    classes = list(environment.user_classes)
    endpoints(classes, spec, environment.host)
    warn_ignored_host(classes, environment.host)
    workers = distributed.active_workers(runner)
    _check_workers(spec, len(workers), getattr(options, "num_users", None))
    _process.spec, _process.record = spec, RunRecord(PreciseStats(window_length(spec)))
    names = [cls.__name__ for cls in classes]
    _process.workers = distributed.send_shares(runner, spec, names)


def _worker_assignment(environment) -> tuple[RunSpec, list[type], Share]:
    """The spec, classes and share the master sent for this test (see ``_start_master``)."""
    assignment, _process.assignment = _process.assignment, None
    if assignment is None:  # joined after the test started: no share of a count or rate
        spec = spec_from_options(environment.parsed_options)
        return spec, [], distributed.late_share(spec)
    spec = run_spec.from_dict(assignment["spec"])
    by_name = {cls.__name__: cls for cls in environment.user_classes}
    unknown = [name for name in assignment["classes"] if name not in by_name]
    if unknown:
        raise ConfigError(
            f"user class {unknown[0]} is not in this worker's locustfile "
            "(give every worker the same locustfile and --targets-file)"
        )
    classes = [by_name[name] for name in assignment["classes"]]
    return spec, classes, Share(**assignment["share"])


def _prepared_payload(spec: RunSpec, found: dict[type, Endpoint]) -> Payload:
    prepared, _process.prepared = _process.prepared, None
    if prepared is not None and prepared[0] == spec:
        return prepared[1]
    return workload.prepare(spec, found)


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    runner = environment.runner
    _process.results = None
    _process.stopping = False
    run_state.activate(None)  # a refused test must not report the previous test's numbers
    try:
        if isinstance(runner, MasterRunner):
            _process.starter = gevent.getcurrent()  # see _stop_dispatch
            _start_master(environment)
            _start_timer(environment)
            return
        if isinstance(runner, WorkerRunner):
            _hold_stop(runner)
            spec, classes, share = _worker_assignment(environment)
        else:
            spec, classes = spec_from_options(environment.parsed_options), environment.user_classes
            warn_ignored_host(classes, environment.host)
            share = split_run(spec, 1)[0]
        found = endpoints(classes, spec, environment.host)
        payload = _prepared_payload(spec, found)
    except ConfigError as exc:
        _reject(environment, exc)
        return
    current = RunState(spec, payload, share, found)
    run_state.activate(current)
    if not isinstance(runner, WorkerRunner):
        _process.spec, _process.record = spec, RunRecord(current.stats)
        _start_timer(environment)
    _process.sampler = gevent.spawn(_sample_cpu, current)


def _hold_stop(runner: WorkerRunner) -> None:
    """Let a stop that arrives right after this spawn order end the test on this worker.

    Locust fires ``test_start`` while it handles the master's spawn order and spawns the users
    in a greenlet that runs later; until then the runner still says "stopped" from the previous
    test, so a stop handled first (another worker's refusal) is ignored, the users are spawned
    anyway, and the master, which has let this worker go, tells it to quit. Saying "spawning"
    now, as Locust itself says once that greenlet runs, makes the stop kill the greenlet.
    """
    if runner.state in (STATE_INIT, STATE_STOPPED):
        runner.update_state(STATE_SPAWNING)


def _start_timer(environment) -> None:
    """Headless ``-t``: the load runs this long from the end of set-up. Also starts rewriting
    ``--windows-json`` once a second."""
    if _process.run_time:
        log.info("tfsload: run time limit %g s", _process.run_time)
        _process.timer = gevent.spawn_later(_process.run_time, _stop_run, environment)
    if _process.spec.outputs.windows_json:
        _process.windows_writer = gevent.spawn(_keep_writing_windows, environment)


def _write_windows(environment, final: bool) -> None:
    settle = WINDOW_SETTLE_S["master" if isinstance(environment.runner, MasterRunner) else "local"]
    record = _process.record
    complete_by = (record.stopped or time.time()) if final else time.time() - settle
    document = results.windows_document(
        record.stats, _measured_facts(environment), complete_by, final
    )
    path = Path(_process.spec.outputs.windows_json)
    try:
        results.write_json(path, document)
    except OSError as exc:
        log.error("tfsload: cannot write %s (%s)", path, exc.strerror or exc)


def _keep_writing_windows(environment) -> None:
    while True:
        gevent.sleep(1.0)
        _write_windows(environment, final=False)


def _sample_cpu(current: RunState) -> None:
    while True:
        gevent.sleep(SAMPLE_INTERVAL_S)
        current.cpu.sample()


@events.request.add_listener
def _on_request(request_type, name, response_time, exception=None, context=None, **_kwargs) -> None:
    current = run_state.current()
    if current is None:
        return
    now = time.time()
    budget = current.budget
    completion = budget.complete(now)
    if completion is Completion.WARMUP:
        if budget.completed == budget.warmup and not isinstance(
            _process.environment.runner, WorkerRunner
        ):
            log.info("tfsload: warm-up done (%d requests); measuring from now", budget.warmup)
        return
    if budget.warmup and budget.measured == 1:
        # Before Locust counts this first measured request: drop the warm-up from its stats too.
        _process.environment.runner.stats.reset_all()
    rows = (context or {}).get("rows", 0)
    current.stats.record(request_type, name, response_time or 0.0, bool(exception), rows, now)
    if completion is Completion.LAST and not isinstance(_process.environment.runner, WorkerRunner):
        log.info("tfsload: %d requests completed; stopping", budget.count)
        gevent.spawn(_stop_run, _process.environment)


@events.report_to_master.add_listener
def _on_report_to_master(client_id, data, **_kwargs) -> None:
    current = run_state.current()
    if current is not None:
        data[distributed.REPORT_KEY] = distributed.worker_report(
            current, _process.environment.runner
        )


@events.worker_report.add_listener
def _on_worker_report(client_id, data, **_kwargs) -> None:
    record = _process.record
    report = data.get(distributed.REPORT_KEY)
    if record is None or report is None:
        return
    distributed.merge_report(record, client_id, report)
    count = _process.spec.load.request_count
    done = count and distributed.all_done(record, _process.workers)
    if done and not _process.stopping:
        _process.stopping = True
        log.info("tfsload: %d requests completed; stopping", count)
        gevent.spawn(_stop_run, _process.environment)


@events.reset_stats.add_listener
def _on_reset_stats(**_kwargs) -> None:
    """The web UI's reset button: start the precise numbers afresh too."""
    if _process.record is not None:
        _process.record.stats.reset()
        _process.record.started = time.time()


@events.test_stopping.add_listener
def _on_test_stopping(environment, **_kwargs) -> None:
    current = run_state.current()
    if current is not None:
        current.stopped = True
    if _process.record is not None and _process.record.stopped is None:
        _process.record.stopped = time.time()


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    for greenlet in (_process.sampler, _process.timer, _process.windows_writer):
        if greenlet is not None:
            greenlet.kill(block=False)
    _process.sampler = _process.timer = _process.windows_writer = None
    current = run_state.current()
    if current is not None and not current.cpu.use.samples:
        current.cpu.sample()  # a run shorter than one sampling interval still gets a reading


def _measured_facts(environment) -> list[dict]:
    """Facts of every generating process; a single process reads its own run state."""
    current = run_state.current()
    if isinstance(environment.runner, MasterRunner):
        return list(_process.record.facts.values())
    return [current.facts()] if current is not None else []


def _live_rows() -> list[dict]:
    record = _process.record
    if record is None:
        return []
    facts = _measured_facts(_process.environment)
    starts = [f["measured_start"] for f in facts if f["measured_start"] is not None]
    start = max(min(starts), record.started) if starts else record.started
    wall = (record.stopped or time.time()) - start
    entries, total = record.stats.summaries(wall)
    return [*entries, total]


def locust_failures(environment) -> list[dict]:
    """Locust's failure table (merged from workers on a master), most frequent first."""
    errors = sorted(environment.runner.stats.errors.values(), key=lambda e: -e.occurrences)
    return [
        {"name": e.name, "error": StatsError.parse_error(e.error), "occurrences": e.occurrences}
        for e in errors
    ]


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    record, spec = _process.record, _process.spec
    if record is None or isinstance(environment.runner, WorkerRunner):
        return
    current = run_state.current()
    if current is not None and current.budget.warmup and not current.budget.measured:
        log.warning("tfsload: the run ended during the warm-up: nothing was measured")
        environment.runner.stats.reset_all()
    now = time.time()
    outcome = results.build_results(
        record.stats,
        spec=spec,
        facts=_measured_facts(environment),
        started=record.started,
        stopped=record.stopped or now,
        failures=locust_failures(environment),
    )
    _process.results = outcome
    if spec.outputs.windows_json:
        _write_windows(environment, final=True)
    code = results.exit_code(outcome, spec.checks.fail_on_saturation)
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    precise_json = spec.outputs.precise_json
    junit_xml = spec.outputs.junit_xml
    outputs = [
        (Path(precise_json) if precise_json else None, results.write_json),
        (Path(junit_xml) if junit_xml else None, junit.write_junit),
    ]
    if csv_prefix:
        outputs.append((Path(f"{csv_prefix}_precise.csv"), results.write_csv))
    for path, write in outputs:
        if path is None:
            continue
        try:
            write(path, outcome)
        except OSError as exc:
            log.error("tfsload: cannot write %s (%s)", path, exc.strerror or exc)
            code = code or 2
    if code is not None and not environment.process_exit_code:
        environment.process_exit_code = code


@events.quit.add_listener
def _on_quit(**_kwargs) -> None:
    outcome = _process.results
    if outcome is None:
        return
    print(results.summary_text(outcome), flush=True)
    for line in results.failed_check_lines(outcome):
        print(line, file=sys.stderr, flush=True)
