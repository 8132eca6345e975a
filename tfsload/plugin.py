"""The Locust side of tfsload: its options, one session per test, precise results at the end.

Importing this module registers listeners on ``locust.events``:

- ``init_command_line_parser``: tfsload's options (:mod:`tfsload.options`);
- ``init``: refuse a run that names no user class, check options, instances and addresses up
  front (one line, exit 2), add the web UI's "Precise latency" tab;
- ``test_start``: make this process's :class:`~tfsload.session.Session` (single process or
  worker) and the run's :class:`~tfsload.session.RunRecord` (single process or master);
- ``request``: warm-up and measured bookkeeping, precise histograms, stop at the count;
- ``report_to_master`` / ``worker_report``: distributed merging (:mod:`tfsload.distributed`);
- ``quitting``: build the results, write ``--precise-json`` and ``<csv prefix>_precise.csv``,
  set the exit code (3 threshold failed, 4 saturated with ``--fail-on-saturation``);
- ``quit``: print the summary and one line per failed threshold.

Locust's own statistics are reset when the warm-up ends, so its counts and the precise counts
agree.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import NoReturn

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsError

from tfsload import distributed, results, session, users, webui
from tfsload.errors import ConfigError
from tfsload.options import Settings, add_options, early_targets_file, settings_from
from tfsload.payload import build_payload
from tfsload.request_count import Completion
from tfsload.saturation import SAMPLE_INTERVAL_S
from tfsload.session import Endpoint, RunRecord, Session, Share, split_run
from tfsload.targets import load_targets

log = logging.getLogger("tfsload")


class _Process:
    """This process's tfsload state across the listeners."""

    def __init__(self) -> None:
        self.environment = None
        self.settings: Settings | None = None
        self.record: RunRecord | None = None  # single process and master
        self.workers: list[str] = []  # master: the workers with a share of the running test
        self.stopping = False
        self.share: Share | None = None  # worker: the share received for the next test
        self.sampler: gevent.Greenlet | None = None
        self.results: dict | None = None


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


def endpoints(environment, settings: Settings) -> dict[type, Endpoint]:
    """Address and stats row of every selected tfsload user class; ConfigError if one lacks one."""
    classes = [cls for cls in environment.user_classes if issubclass(cls, users.PredictUser)]
    return {cls: cls.endpoint(settings, environment.host) for cls in classes}


def warn_ignored_host(environment) -> None:
    """Say so when -H was given to per-target classes, which keep their target's address."""
    targeted = sorted(
        cls.__name__ for cls in environment.user_classes if getattr(cls, "target", None)
    )
    if environment.host and targeted:
        log.warning(
            "tfsload: -H is ignored by %s: per-target classes use their target's address",
            ", ".join(targeted),
        )


@events.init_command_line_parser.add_listener
def _on_parser(parser, **_kwargs) -> None:
    add_options(parser)


@events.init.add_listener
def _on_init(environment, runner, web_ui=None, **_kwargs) -> None:
    _process.environment = environment
    if isinstance(runner, WorkerRunner):
        runner.register_message(distributed.SHARE_MESSAGE, _on_share)
        return
    options = environment.parsed_options
    if options is None:  # Locust used as a library: nothing to check on the command line
        return
    if not options.user_classes and not options.class_picker:
        generic = {users.RestUser.__name__, users.GrpcUser.__name__}
        targeted = sorted(set(environment.available_user_classes or {}) - generic)
        per_target = f", or per target: {', '.join(targeted)}" if targeted else ""
        fail(
            "name the user classes to run (or pick them in the web UI with --class-picker): "
            f"RestUser with -H http://host:port, GrpcUser with -H grpc://host:port{per_target}; "
            "e.g. locust -f locustfiles/tfserving.py --headless RestUser -H http://127.0.0.1:8501"
        )
    if options.headless:
        try:
            settings = settings_from(options)
            endpoints(environment, settings)
            if not isinstance(runner, MasterRunner) or options.processes:
                build_payload(
                    settings.instances_file,
                    settings.model_name,
                    settings.signature_name,
                    settings.input_name,
                )
        except ConfigError as exc:
            fail(str(exc))
    if web_ui:
        webui.install(web_ui, _live_rows)


def _on_share(environment, msg, **_kwargs) -> None:
    _process.share = Share(**msg.data)


def _reject(environment, exc: ConfigError) -> None:
    """A test cannot start with these settings (web UI form, or workers): say why and stop."""
    log.error("tfsload: %s", exc)
    options = environment.parsed_options
    if options is not None and options.headless:
        environment.process_exit_code = 2
    gevent.spawn(_stop_run, environment)


def _stop_run(environment) -> None:
    options = environment.parsed_options
    if options is None or options.headless:
        environment.runner.quit()
    else:
        environment.runner.stop()


def _check_workers(settings: Settings, workers: int, users_count: int | None) -> None:
    if settings.request_count and settings.request_count < workers:
        raise ConfigError(
            f"--request-count: {settings.request_count} is fewer than {workers} workers"
        )
    splits = settings.request_count or settings.open_loop or settings.warmup_requests
    if splits and (users_count or 0) < workers:
        raise ConfigError(
            f"-u/--users: {users_count} users cannot cover {workers} workers, each of which has "
            "a share of the count, warm-up or rate; use at least one user per worker"
        )


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    runner = environment.runner
    options = environment.parsed_options
    _process.results = None
    _process.stopping = False
    try:
        settings = settings_from(options)
        if isinstance(runner, MasterRunner):
            endpoints(environment, settings)
            warn_ignored_host(environment)
            workers = distributed.active_workers(runner)
            _check_workers(settings, len(workers), getattr(options, "num_users", None))
            _process.settings, _process.record = settings, RunRecord()
            _process.workers = distributed.send_shares(runner, settings)
            return
        payload = build_payload(
            settings.instances_file, settings.model_name, settings.signature_name,
            settings.input_name,
        )  # fmt: skip
        found = endpoints(environment, settings)
    except ConfigError as exc:
        _reject(environment, exc)
        return
    if isinstance(runner, WorkerRunner):
        share = _process.share or distributed.late_share(settings)
        _process.share = None
    else:
        warn_ignored_host(environment)
        share = split_run(settings, 1)[0]
    current = Session(settings, payload, share, found)
    session.activate(current)
    if not isinstance(runner, WorkerRunner):
        _process.settings, _process.record = settings, RunRecord(current.stats)
    _process.sampler = gevent.spawn(_sample_cpu, current)


def _sample_cpu(current: Session) -> None:
    while True:
        gevent.sleep(SAMPLE_INTERVAL_S)
        current.cpu.sample()


@events.request.add_listener
def _on_request(request_type, name, response_time, exception=None, context=None, **_kwargs) -> None:
    current = session.current()
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
        # Before Locust logs this first measured request: drop the warm-up from its stats too.
        _process.environment.runner.stats.reset_all()
    rows = (context or {}).get("rows", 0)
    current.stats.record(request_type, name, response_time or 0.0, bool(exception), rows, now)
    if completion is Completion.LAST and not isinstance(_process.environment.runner, WorkerRunner):
        log.info("tfsload: %d requests completed; stopping", budget.count)
        gevent.spawn(_stop_run, _process.environment)


@events.report_to_master.add_listener
def _on_report_to_master(client_id, data, **_kwargs) -> None:
    current = session.current()
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
    settings = _process.settings
    done = settings.request_count and distributed.all_done(record, _process.workers)
    if done and not _process.stopping:
        _process.stopping = True
        log.info("tfsload: %d requests completed; stopping", settings.request_count)
        gevent.spawn(_stop_run, _process.environment)


@events.reset_stats.add_listener
def _on_reset_stats(**_kwargs) -> None:
    """The web UI's reset button: start the precise numbers afresh too."""
    if _process.record is not None:
        _process.record.stats.reset()
        _process.record.started = time.time()


@events.test_stopping.add_listener
def _on_test_stopping(environment, **_kwargs) -> None:
    current = session.current()
    if current is not None:
        current.stopped = True
    if _process.record is not None and _process.record.stopped is None:
        _process.record.stopped = time.time()


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    if _process.sampler is not None:
        _process.sampler.kill(block=False)
        _process.sampler = None
    current = session.current()
    if current is not None and not current.cpu.use.samples:
        current.cpu.sample()  # a run shorter than one sampling interval still gets a reading


def _measured_facts(environment) -> list[dict]:
    """Facts of every generating process; a single process reads its own session."""
    current = session.current()
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
    record, settings = _process.record, _process.settings
    if record is None or isinstance(environment.runner, WorkerRunner):
        return
    current = session.current()
    if current is not None and current.budget.warmup and not current.budget.measured:
        log.warning("tfsload: the run ended during the warm-up: nothing was measured")
        environment.runner.stats.reset_all()
    now = time.time()
    outcome = results.build_results(
        record.stats,
        settings=settings,
        facts=_measured_facts(environment),
        started=record.started,
        stopped=record.stopped or now,
        failures=locust_failures(environment),
    )
    _process.results = outcome
    code = results.exit_code(outcome, settings.fail_on_saturation)
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    outputs = [(settings.precise_json, results.write_json)]
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
    if code is not None:
        environment.process_exit_code = code


@events.quit.add_listener
def _on_quit(**_kwargs) -> None:
    outcome = _process.results
    if outcome is None:
        return
    print(results.summary_text(outcome), flush=True)
    for line in results.failed_check_lines(outcome):
        print(line, file=sys.stderr, flush=True)
