"""How long a search takes: probes per search (arithmetic) times seconds per stable step (measured).

A search's time is the number of probes it needs times what one probe costs. The first part
runs the bound search (tfsload.orchestrate.slo.find_highest) against answers spread log-evenly
over 20..5,000 req/s, for each resolution and start, and counts probes: pure arithmetic, no
load. The second part runs real stable steps, one-row gRPC requests at a fixed Poisson rate on a
launched stand-in, for each window length, and splits each step's wall time into the part
before its first whole window (Locust's start-up, user spawn, warm-up, the partial window),
the windows themselves, and the stop (Locust writing its results). Run from the repository:

    .venv/bin/python benchmarks/search_time.py [--rate 60] [--steps 3] [--windows 2,3,5]
                                               [--write-doc FILE]

The machine is shared: the step part's figures move with what else runs (its table shows the
other processes' CPU share per step).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfsload.orchestrate.experiment import Cell, load_experiment
from tfsload.orchestrate.launch import start_standin, stop
from tfsload.orchestrate.slo import OVER, PASS, Axis, Verdict, find_highest
from tfsload.orchestrate.step import StepLoad, run_step
from tfsload.orchestrate.windows import StabilityRule

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = """
name = "search-time"
protocols = ["grpc"]
[model]
base_path = "{model}"
[load]
users = 20
rows_per_request = 1
warmup_requests = 200
[[targets]]
name = "standin"
launch = "standin"
flags = ["--grpc_max_threads=256"]
"""


def probe_counts(resolutions: list[float], starts: list[float]) -> list[tuple]:
    """(start, resolution, mean probes, max probes) over 200 answers in 20..5,000 req/s."""
    answers = [20 * (5000 / 20) ** (i / 199) for i in range(200)]
    rows = []
    for start in starts:
        axis = Axis("rate", start, 1, 100_000)
        for resolution in resolutions:
            counts = []
            for answer in answers:
                search = find_highest(
                    lambda load, a=answer: Verdict(PASS if load <= a else OVER, ""), axis,
                    resolution,
                )  # fmt: skip
                counts.append(len(search.probes))
            rows.append((start, resolution, statistics.mean(counts), max(counts)))
    return rows


def step_times(rate: float, steps: int, windows: list[float]) -> list[dict]:
    """Run ``steps`` steps per window length on one launched stand-in; time their parts."""
    model = REPO / "models" / "model"
    if not (model / "instances.json").exists():
        sys.exit("benchmarks/search_time.py: export the model first (make export)")
    work = Path(tempfile.mkdtemp(prefix="search-time-"))
    path = work / "experiment.toml"
    path.write_text(EXPERIMENT.format(model=model))
    experiment = load_experiment(path)
    target = experiment.targets[0]
    launched = start_standin(target, experiment.model, work, work / "standin.log")
    results = []
    try:
        for window_s in windows:
            rule = StabilityRule(window_s=window_s, max_windows=8)
            for i in range(steps):
                began = time.time()
                load = StepLoad(20, rate, "poisson", late_after_ms=5.0)
                record = run_step(
                    experiment, Cell(target, "grpc"), launched.target, load, rule,
                    work / f"w{window_s:g}-{i}", server_pid=launched.process.pid,
                )  # fmt: skip
                if record["status"] != "complete":
                    print(f"step failed: {record['reason']}", file=sys.stderr)
                    continue
                first, last = record["windows"][0], record["windows"][-1]
                results.append(
                    {
                        "window_s": window_s,
                        "wall": record["wall_time_s"],
                        "before": first["start"] - began,
                        "windows": len(record["windows"]),
                        "measured": last["end"] - first["start"],
                        "after": began + record["wall_time_s"] - last["end"],
                        "stable": record["stable"],
                        "other": record["cpu"]["other_cpu_percent_of_machine"],
                    }
                )
                print(results[-1], file=sys.stderr)
    finally:
        stop(launched)
    return results


def report(counts: list[tuple], steps: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## How long a search takes",
        "",
        textwrap.fill(
            "A search's time is its number of probes times the seconds one stable step takes. "
            "Probes come from the search's arithmetic alone (bracketing by doubling or halving "
            "from the start, then bisection), counted here for 200 answers spread log-evenly "
            "over 20-5,000 req/s:",
            100,
        ),
        "",
        "| start | resolution | probes, mean | probes, most |",
        "|---|---|---|---|",
    ]
    for start, resolution, mean, most in counts:
        lines.append(f"| {start:g} req/s | {resolution:.0%} | {mean:.1f} | {most} |")
    lines += [
        "",
        textwrap.fill(
            f"Seconds per step, measured: one-row gRPC requests at {args.rate:g} req/s "
            f"(Poisson) on a launched stand-in, {args.steps} steps per window length, at most 8 "
            "windows; 'before' is Locust's start-up, user spawn, 200 warm-up requests and the "
            "partial first window, 'after' is stopping Locust and writing its results:",
            100,
        ),
        "",
        "| window | steps | stable | windows, mean | before (s) | windows (s) | after (s) "
        "| step (s) | other processes' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for window_s in sorted({s["window_s"] for s in steps}):
        rows = [s for s in steps if s["window_s"] == window_s]

        def mean(key: str, rows: list[dict] = rows) -> float:
            return statistics.mean(r[key] for r in rows)

        others = [r["other"] for r in rows if r["other"] is not None]
        lines.append(
            f"| {window_s:g} s | {len(rows)} | {sum(r['stable'] for r in rows)} "
            f"| {mean('windows'):.1f} | {mean('before'):.1f} | {mean('measured'):.1f} "
            f"| {mean('after'):.1f} | {mean('wall'):.1f} | "
            f"{min(others):.0f}-{max(others):.0f}% |"
        )
    per_step = {s["window_s"]: [] for s in steps}
    for s in steps:
        per_step[s["window_s"]].append(s["wall"])
    probes = next((mean for start, res, mean, _ in counts if res == 0.05), math.nan)
    lines += [""]
    estimates = ", ".join(
        f"{probes * statistics.mean(walls) / 60:.1f} min with {w:g}-s windows"
        for w, walls in sorted(per_step.items())
    )
    lines.append(
        textwrap.fill(
            f"So one `tfsload slo` search at 5 % resolution ({probes:.1f} probes on average) "
            f"takes about {estimates} per target and protocol; `tfsload tune` runs one such "
            "search per configuration (each after a server restart, and starting from the best "
            "rate so far, which saves the bracketing's first probes). Command: "
            f"`.venv/bin/python benchmarks/search_time.py --rate {args.rate:g} "
            f"--steps {args.steps} --windows {args.windows}`.",
            100,
        )
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="req/s of the measured steps")
    parser.add_argument("--steps", type=int, default=3, help="steps per window length")
    parser.add_argument("--windows", default="2,3,5", help="window lengths, seconds")
    parser.add_argument("--write-doc", type=Path, help="write the Markdown section here")
    args = parser.parse_args()
    counts = probe_counts([0.2, 0.1, 0.05, 0.02], [50.0, 100.0])
    windows = [float(w) for w in args.windows.split(",")]
    steps = step_times(args.rate, args.steps, windows)
    text = report(counts, steps, args)
    print(text)
    if args.write_doc:
        args.write_doc.write_text(text)


if __name__ == "__main__":
    main()
