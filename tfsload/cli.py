"""``tfsload run|slo|tune|report|compare|locustfile``: run an experiment, search it, re-render.

Exit codes of ``run``: 0 every cell ran and passed; 1 a cell could not run (unreachable target,
failed launch, Locust crashed); 2 bad input (nothing was run); 3 a cell's verdict is FAIL (a
threshold, a saturated generator, or errors with no fail_ratio threshold to judge them); 130
interrupted (the report is marked partial). ``compare`` exits 1 past the tolerance.
``locustfile`` prints the installed locustfile's path: ``locust -f "$(tfsload locustfile)"``.

``slo`` (the highest load under a latency bound) and ``tune`` (the batching tuner) exit 0 when
every target and protocol was measured (also when ``--max-minutes`` cut the search short: the
report says so), 1 when a target could not be started, 2 on bad input, 3 when some target kept
the bound at no load tried, 130 when interrupted (the report is partial; ``--resume DIR``
goes on).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import NoReturn

from tfsload import __version__
from tfsload.core.errors import ConfigError
from tfsload.core.files import output_dir_problem

EXIT_FAILED, EXIT_USAGE, EXIT_THRESHOLD, EXIT_INTERRUPTED = 1, 2, 3, 130


def run_exit_code(summary: dict) -> int:
    """The ``run`` exit code for a finished summary (see the module docstring)."""
    cells = summary["cells"]
    if summary["status"] == "partial":
        return EXIT_INTERRUPTED
    if any(c["status"] != "ok" for c in cells):
        return EXIT_FAILED
    if any(c["verdict"] != "PASS" for c in cells):
        return EXIT_THRESHOLD
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    from tfsload.report.render import render_terminal

    print(render_terminal(summary))
    print()
    for line in summary["findings"]:
        print(f"- {line}")
    print()
    state = "PARTIAL report" if summary["status"] == "partial" else "Report"
    print(f"{state}: {out / 'report.html'}  (also report.md, summary.json)")


def cmd_run(args: argparse.Namespace) -> int:
    from tfsload.orchestrate.experiment import check_model_folder, load_experiment
    from tfsload.orchestrate.runner import Runner, default_out_dir, request_rows
    from tfsload.report import write_report

    experiment = load_experiment(Path(args.experiment))
    check_model_folder(experiment)  # what it names is read now: bad input before any output
    request_rows(experiment)
    out = Path(args.out).resolve() if args.out else default_out_dir(experiment)
    problem = output_dir_problem(out)
    if problem:
        raise ConfigError(f"--out {out}: {problem}")
    if experiment.load.sweep:
        from tfsload.orchestrate.session import Session
        from tfsload.orchestrate.sweep import run_sweep

        levels = ", ".join(f"{level:g}" for level in experiment.load.sweep.levels)
        print(f"sweep {experiment.name}: {levels} per cell -> {out}", file=sys.stderr)
        return _run_session(Session(out, experiment, "sweep", None, None, None), run_sweep)
    experiment.require_length()
    cells = experiment.cells
    print(
        f"experiment {experiment.name}: {len(cells)} cells "
        f"({len(experiment.targets)} targets x {', '.join(experiment.protocols)}) -> {out}",
        file=sys.stderr,
    )
    Runner(experiment, out).run()
    summary = write_report(out)
    _print_summary(summary, out)
    return run_exit_code(summary)


def cmd_report(args: argparse.Namespace) -> int:
    from tfsload.report import ResultsError, write_report

    out = Path(args.dir).resolve()
    if (out / "search.json").exists():
        from tfsload.report.search_report import write_search_report

        record = write_search_report(out)
        _print_answers(record, out)
        return 0
    try:
        summary = write_report(out)
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    _print_summary(summary, out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tfsload.report import ResultsError
    from tfsload.report.compare import compare, load_summary

    if not 0 <= args.tolerance < float("inf"):  # NaN too
        raise ConfigError(f"--tolerance: must be a number at least 0, got {args.tolerance:g}")
    try:
        old, new = load_summary(Path(args.old)), load_summary(Path(args.new))
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    result = compare(old, new, args.tolerance)
    print("\n".join(result.lines))
    if result.regressions:
        print(f"\n{len(result.regressions)} regression(s) past {args.tolerance:.0%}:")
        for line in result.regressions:
            print(f"  {line}")
        return EXIT_FAILED
    print(f"\nno regression past {args.tolerance:.0%}")
    return 0


def _search_settings(args: argparse.Namespace) -> tuple[float, float, float]:
    """(p99 bound, fail-ratio bound, resolution) from the command line, checked."""
    if args.p99_ms is None:
        raise ConfigError("--p99-ms: required (the latency bound, ms), or --resume DIR")
    if not 0 < args.p99_ms < 3_600_000:
        raise ConfigError(f"--p99-ms: must be a positive number of ms, got {args.p99_ms:g}")
    fail_ratio = 0.001 if args.fail_ratio is None else args.fail_ratio
    if not 0 <= fail_ratio <= 1:
        raise ConfigError(f"--fail-ratio: must be between 0 and 1, got {fail_ratio:g}")
    resolution = 0.05 if args.resolution is None else args.resolution
    if not 0.001 <= resolution <= 1:
        raise ConfigError(f"--resolution: must be between 0.001 and 1, got {resolution:g}")
    return args.p99_ms, fail_ratio, resolution


def search_exit_code(record: dict) -> int:
    """The exit code of ``slo``, ``tune`` or a sweep (see the module docstring)."""
    if record["status"] == "partial":
        return EXIT_INTERRUPTED
    results = record["results"]
    if record["kind"] == "sweep":
        return EXIT_FAILED if any(r["status"] == "failed" for r in results) else 0
    if record["kind"] == "tune":
        results = [c["result"] for t in results for c in t["configurations"]]
    if any(r["status"] == "failed" for r in results):
        return EXIT_FAILED
    if record["kind"] == "tune":
        found = all(t["best"] or t["baseline"] for t in record["results"])
    else:
        found = all(r["highest"] is not None for r in results if r["status"] == "complete")
    return 0 if found else EXIT_THRESHOLD


def cmd_search(args: argparse.Namespace) -> int:
    """``slo`` and ``tune``: a new search into ``--out``, or one resumed from ``--resume``."""
    from tfsload.orchestrate.capacity import run_slo
    from tfsload.orchestrate.experiment import load_experiment
    from tfsload.orchestrate.restart import restartable
    from tfsload.orchestrate.session import Session, open_session
    from tfsload.orchestrate.slo import Bound
    from tfsload.orchestrate.tuner import run_tune

    kind = args.command
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes: must be more than 0, got {args.max_minutes:g}")
    resumed = None
    if args.resume:
        given = [f for f in ("experiment", "p99_ms", "fail_ratio", "resolution", "out")
                 if getattr(args, f) is not None]  # fmt: skip
        if given:
            flag = given[0].replace("_", "-")
            raise ConfigError(f"--resume: the folder keeps its search's settings; drop {flag}")
        out = Path(args.resume).resolve()
        resumed, experiment = open_session(out, kind)
        bound, resolution = Bound.from_dict(resumed["bound"]), resumed["resolution"]
    else:
        if args.experiment is None:
            raise ConfigError(f"tfsload {kind}: give an experiment file, or --resume DIR")
        p99, fail_ratio, resolution = _search_settings(args)
        bound = Bound(p99, fail_ratio)
        experiment = load_experiment(Path(args.experiment))
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"reports/{experiment.name}-{kind}-{stamp}").resolve()
        problem = output_dir_problem(out)
        if problem and out.is_dir():
            raise ConfigError(f"--out {out}: exists and is not empty (to go on: --resume {out})")
        if problem:
            raise ConfigError(f"--out {out}: {problem}")
    if kind == "tune":
        restartable(experiment)  # every target must be one the tuner can restart
    session = Session(out, experiment, kind, bound, resolution, args.max_minutes)
    verb = "resuming" if resumed else "starting"
    print(f"{kind} {experiment.name}: {verb}, {bound.describe()} -> {out}", file=sys.stderr)
    return _run_session(session, run_tune if kind == "tune" else run_slo, resumed)


def _run_session(session, run, resumed: dict | None = None) -> int:
    """Run a search or sweep to its end (or Ctrl-C, or the time budget), then report."""
    from tfsload.report.search_report import write_search_report

    session.begin(resumed)
    with session.signals():
        run(session)
    session.save(session.final_status())
    record = write_search_report(session.out)
    kept = f", {session.steps_kept} kept from before" if session.steps_kept else ""
    print(f"\n{session.steps_run} steps run{kept}.")
    _print_answers(record, session.out)
    return search_exit_code(record)


def _print_answers(record: dict, out: Path) -> None:
    from tfsload.report.search_report import answers

    print()
    for line in answers(record):
        print(f"- {line}")
    status = {"complete": "Report", "cut_short": "Report (CUT SHORT)"}.get(
        record["status"], "PARTIAL report"
    )
    print(f"\n{status}: {out / 'report.html'}")


def cmd_locustfile(_args: argparse.Namespace) -> int:
    print(resources.files("tfsload") / "locustfile.py")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or value said in one line (exit 2) rather than usage + error:
    every bad input of tfsload is one line naming it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfsload", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tfsload {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run an experiment file's matrix (or sweep) and write a report"
    )
    run.add_argument("experiment", help="experiment TOML file (see configs/experiments/)")
    run.add_argument("--out", help="results directory (default reports/<name>-<timestamp>)")
    run.set_defaults(func=cmd_run)
    report = commands.add_parser("report", help="re-render a report from a results directory")
    report.add_argument("dir", help="results directory of an earlier run")
    report.set_defaults(func=cmd_report)
    for kind, what in (
        ("slo", "the highest load per target and protocol that keeps a latency bound"),
        ("tune", "the batching parameters that carry the most load within a latency bound"),
    ):
        search = commands.add_parser(kind, help=what)
        search.add_argument("experiment", nargs="?", help="experiment TOML file")
        search.add_argument("--p99-ms", type=float, help="the p99 bound, ms (required)")
        search.add_argument(
            "--fail-ratio", type=float, help="the failed-requests bound, 0..1 (default 0.001)"
        )
        search.add_argument(
            "--resolution",
            type=float,
            help="stop bisecting when the bracket is this narrow, a fraction (default 0.05)",
        )
        search.add_argument("--out", help=f"results folder (default reports/<name>-{kind}-<time>)")
        search.add_argument(
            "--max-minutes", type=float, help="time budget of the whole search (best so far)"
        )
        search.add_argument("--resume", metavar="DIR", help="go on with the search in DIR")
        search.set_defaults(func=cmd_search)
    comp = commands.add_parser("compare", help="per-cell changes between two runs")
    comp.add_argument("old", help="baseline results directory or summary.json")
    comp.add_argument("new", help="new results directory or summary.json")
    comp.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="largest accepted change as a fraction (default 0.1 = 10%%)",
    )
    comp.set_defaults(func=cmd_compare)
    where = commands.add_parser(
        "locustfile",
        help='print the installed locustfile\'s path: locust -f "$(tfsload locustfile)"',
    )
    where.set_defaults(func=cmd_locustfile)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
