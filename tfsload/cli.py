"""``tfsload run|report|compare|locustfile``: run an experiment matrix, re-render, compare runs.

Exit codes of ``run``: 0 every cell ran and passed; 1 a cell could not run (unreachable target,
failed launch, Locust crashed); 2 bad input (nothing was run); 3 a cell's verdict is FAIL (a
threshold, a saturated generator, or errors with no fail_ratio threshold to judge them); 130
interrupted (the report is marked partial). ``compare`` exits 1 past the tolerance.
``locustfile`` prints the installed locustfile's path: ``locust -f "$(tfsload locustfile)"``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from tfsload import __version__
from tfsload.core.errors import ConfigError

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
    from tfsload.orchestrate.experiment import load_experiment
    from tfsload.orchestrate.runner import Runner, default_out_dir
    from tfsload.report import write_report

    experiment = load_experiment(Path(args.experiment))
    out = Path(args.out).resolve() if args.out else default_out_dir(experiment)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not empty; results are never overwritten")
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
    try:
        summary = write_report(out)
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    _print_summary(summary, out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tfsload.report import ResultsError
    from tfsload.report.compare import compare, load_summary

    if args.tolerance < 0:
        raise ConfigError("--tolerance: must be at least 0")
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


def cmd_locustfile(_args: argparse.Namespace) -> int:
    print(resources.files("tfsload") / "locustfile.py")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfsload", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tfsload {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment file's matrix and write a report")
    run.add_argument("experiment", help="experiment TOML file (see configs/experiments/)")
    run.add_argument("--out", help="results directory (default reports/<name>-<timestamp>)")
    run.set_defaults(func=cmd_run)
    report = commands.add_parser("report", help="re-render a report from a results directory")
    report.add_argument("dir", help="results directory of an earlier run")
    report.set_defaults(func=cmd_report)
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
