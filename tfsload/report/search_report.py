"""The report of ``tfsload slo``, ``tfsload tune`` and sweeps, rendered from ``search.json``.

It states the answer first (per cell: the highest load within the bound, or the best batching
configuration and how much it beats no batching, or that batching does not pay, or a sweep's
knee), then the evidence: every configuration and step with its figures, stability, and the
generator's state. ``tfsload report DIR`` redoes it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tfsload.core.files import write_atomic
from tfsload.report.blocks import Blocks, html_page, markdown

STATUS_WORDS = {
    "complete": "complete",
    "cut_short": "CUT SHORT by the time budget: the best found so far",
    "partial": "PARTIAL: interrupted; finished steps are kept (resume with --resume)",
    "running": "still running, or stopped without a word (resume with --resume)",
}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} ms"


def _num(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.1f}{unit}"


def _load(value: float | None, axis: str) -> str:
    if value is None:
        return "none"
    return f"{value:g} users" if axis == "users" else f"{value:g} req/s"


def cell_answer(result: dict, axis: str, bound: str) -> str:
    """One sentence: the highest load within the bound for one search, and what stopped it."""
    name = result["cell"]
    if result["status"] == "failed":
        return f"{name}: not measured: {result['reason']}"
    search = result["search"]
    limit = {
        "over": "above it the server broke the bound",
        "generator": "above it the GENERATOR could not deliver the load, so the server's limit "
        "is not known",
        "failed": "above it a step failed to measure",
        "maximum": "the search's maximum load passed",
    }.get(search["limited_by"], "")
    cut = "" if result["status"] == "complete" else f" (search stopped: {result['reason']})"
    if result["highest"] is None:
        return f"{name}: no load tried kept {bound}{cut}"
    high = search["lowest_failing"]
    bracket = f", {_load(high, axis)} did not" if high is not None else ""
    return (
        f"{name}: {_load(result['highest'], axis)} kept {bound} "
        f"({_num(result['throughput_rps'])} req/s served, p99 {_ms(result['p99_ms'])}{bracket}); "
        f"{limit}{cut}"
    )


def probe_rows(result: dict, axis: str) -> list[list[str]]:
    rows = []
    for probe in result.get("search", {}).get("probes", []):
        e = probe["evidence"]
        setting = probe["load_setting"]
        load = _load(probe["load"], axis)
        if setting.get("rate"):
            load += f" ({setting['users']} users)"
        if e["status"] != "complete":
            rows.append([load, *["–"] * 8, probe["kind"], probe["reason"]])
            continue
        rows.append(
            [
                load,
                f"{'yes' if e['stable'] else 'NO'} ({e['windows']})",
                _num(e["rps"]),
                _ms(e["p50_ms"]),
                _ms(e["p99_ms"]),
                f"{e['fail_ratio']:.3%}",
                "yes" if e["schedule_kept"] else f"NO ({e['late_sends']} late)",
                f"{e['generator_cpu_max']:.0f}%"
                + (" SATURATED" if e["generator_saturated"] else ""),
                _percent(e.get("other_cpu_percent")),
                probe["kind"].upper(),
                probe["reason"],
            ]
        )
    return rows


PROBE_HEADERS = [
    "load", "stable (windows)", "req/s", "p50", "p99", "failed", "schedule kept",
    "generator CPU max", "other processes' CPU", "verdict", "why",
]  # fmt: skip


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def tune_answer(tuning: dict, resolution: float) -> str:
    """By how much the best batching configuration beats no batching, or that it does not pay,
    or that the search's maximum load hid the difference; from the back-to-back confirmation
    when there is one, with the scan's own figures beside it."""
    configs = {c["id"]: c for c in tuning["configurations"]}
    best = configs.get(tuning["best"]) if tuning["best"] else None
    base_cap, best_cap = tuning.get("baseline_capacity"), tuning.get("best_capacity")
    unit = tuning.get("capacity_unit", "req/s")
    name = tuning["cell"]
    cut = "" if tuning["complete"] else " (the tuning was stopped before it finished)"
    first = tuning.get("first_pass") or {}
    if tuning.get("confirmed") and first.get("baseline_capacity") and first.get("best_capacity"):
        when = (
            f" (measured again back to back; in the scan {first['best_capacity']:,.1f} against "
            f"{first['baseline_capacity']:,.1f})"
        )
    else:
        when = " (from the scan; not confirmed back to back)"
    if best is None and not tuning["complete"]:
        return f"{name}: no batching configuration kept the bound before the tuning stopped"
    if best is None:
        return f"{name}: no batching configuration kept the bound at any load tried"
    if not base_cap:
        return (
            f"{name}: best batching {best['label']} carried {best_cap:,.1f} {unit} within the "
            f"bound; no batching kept the bound at no load tried{cut}"
        )
    gain = best_cap / base_cap - 1
    if tuning.get("undecided"):
        return (
            f"{name}: cannot tell: the best batching configuration ({best['label']}) and no "
            f"batching both kept the bound at the search's maximum, {best_cap:,.1f} {unit}; "
            f"raise [search] maximum{cut}"
        )
    if tuning["batching_pays"]:
        return (
            f"{name}: batching pays: {best['label']} carried {best_cap:,.1f} {unit} within the "
            f"bound, {gain:+.0%} against {base_cap:,.1f} without batching{when} "
            f"(file: {tuning['best_file']}){cut}"
        )
    return (
        f"{name}: batching does NOT pay for this model and load: the best batching "
        f"configuration ({best['label']}) carried {best_cap:,.1f} {unit} against "
        f"{base_cap:,.1f} without batching ({gain:+.0%}, not beyond the search's "
        f"{resolution:.0%} resolution){when}{cut}"
    )


CONFIG_HEADERS = [
    "configuration", "phase", "max_batch_size", "batch_timeout_micros", "num_batch_threads",
    "max_enqueued_batches", "allowed_batch_sizes", "highest load", "req/s", "p50", "p99",
    "limited by", "probes", "status",
]  # fmt: skip


def config_rows(tuning: dict, axis: str) -> list[list[str]]:
    rows = []
    for config in tuning["configurations"]:
        b = config["batching"] or {}
        r = config["result"]
        search = r.get("search") or {}
        mark = " (best)" if config["id"] == tuning["best"] else ""
        rows.append(
            [
                config["id"] + mark,
                config["phase"],
                str(b.get("max_batch_size", "–")),
                str(b.get("batch_timeout_micros", "–")),
                str(b.get("num_batch_threads", "–")),
                str(b.get("max_enqueued_batches", "–")),
                " ".join(str(s) for s in b.get("allowed_batch_sizes", [])) or "–",
                _load(r.get("highest"), axis),
                _num(r.get("throughput_rps")),
                _ms(r.get("p50_ms")),
                _ms(r.get("p99_ms")),
                search.get("limited_by") or "–",
                str(len(search.get("probes", []))),
                r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
            ]
        )
    return rows


def configurations_csv(tunings: list[dict], axis: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["cell", *CONFIG_HEADERS])
    for tuning in tunings:
        for row in config_rows(tuning, axis):
            writer.writerow([tuning["cell"], *row])
    return out.getvalue()


def _level(value: float, load: dict) -> str:
    return f"{value:g} req/s" if load.get("rate") else f"{value:g} users"


def sweep_answer(curve: dict) -> str:
    """A sweep cell's knee and its highest throughput."""
    points = [p for p in curve["points"] if p["status"] == "complete"]
    stopped = "" if curve["status"] == "complete" else f" ({curve['status']}: {curve['reason']})"
    if not points:
        return f"{curve['cell']}: no step measured{stopped}"
    top = max(points, key=lambda p: p["rps"])
    unstable = [_level(p["level"], p["load"]) for p in points if not p["stable"]]
    knee = next((p for p in points if p["level"] == curve.get("knee")), None)
    knee_text = (
        f"knee at {_level(knee['level'], knee['load'])} ({knee['rps']:,.1f} req/s, p99 "
        f"{_ms(knee['p99_ms'])}): beyond it p99 climbs faster than throughput"
        if knee
        else "no knee within the sweep (p99 never climbed faster than throughput)"
    )
    return (
        f"{curve['cell']}: {knee_text}; most throughput {top['rps']:,.1f} req/s at "
        f"{_level(top['level'], top['load'])}"
        + (f"; not stable: {', '.join(unstable)}" if unstable else "")
        + stopped
    )


SWEEP_HEADERS = [
    "load", "stable (windows)", "req/s", "rows/s", "p50", "p99", "failed", "schedule kept",
    "generator CPU max", "other processes' CPU",
]  # fmt: skip


def sweep_rows(curve: dict) -> list[list[str]]:
    rows = []
    for p in curve["points"]:
        level = _level(p["level"], p["load"])
        level += " (knee)" if p["level"] == curve.get("knee") else ""
        if p["status"] != "complete":
            rows.append([level, p.get("reason") or p["status"], *["–"] * 8])
            continue
        rows.append(
            [
                level,
                f"{'yes' if p['stable'] else 'NO'} ({p['windows']})",
                _num(p["rps"]),
                _num(p["rows_per_s"]),
                _ms(p["p50_ms"]),
                _ms(p["p99_ms"]),
                f"{p['fail_ratio']:.3%}",
                "yes" if p["schedule_kept"] else f"NO ({p['late_sends']} late)",
                f"{p['generator_cpu_max']:.0f}%"
                + (" SATURATED" if p["generator_saturated"] else ""),
                _percent(p.get("other_cpu_percent")),
            ]
        )
    return rows


def answers(record: dict) -> list[str]:
    """The headline sentences, one per cell (printed at the end of a search, too)."""
    if record["kind"] == "sweep":
        return [sweep_answer(curve) for curve in record["results"]]
    bound = record["bound"]["text"]
    axis = record["axis"]
    if record["kind"] == "tune":
        return [tune_answer(t, record["resolution"]) for t in record["results"]]
    return [cell_answer(r, axis, bound) for r in record["results"]]


def build(record: dict, commands: str) -> Blocks:
    from tfsload.report.search_plots import pareto_plot, probes_plot, sweep_plot

    bound = record["bound"]
    axis = record["axis"]
    kind = record["kind"]
    blocks = Blocks()
    title = {
        "slo": "highest load under a latency bound",
        "tune": "batching tuner",
        "sweep": "load sweep",
    }[kind]
    blocks.heading(f"tfsload {kind}: {record['experiment']['name']}: {title}", 1)
    if record["experiment"].get("description"):
        blocks.paragraph(record["experiment"]["description"])
    rule = record["rule"]
    machine = record.get("machine", {})
    facts = [
        f"status: {STATUS_WORDS.get(record['status'], record['status'])}"
        + (f" ({record['stopped']})" if record.get("stopped") else "")
    ]
    if bound:
        facts.append(
            f"bound: {bound['text']}; resolution {record['resolution']:.0%}; load axis: "
            + ("closed-loop users" if axis == "users" else "open-loop rate (req/s)")
        )
    blocks.bullets(
        [
            *facts,
            f"each load is a stable step: windows of {rule['window_s']:g} s until the last "
            f"{rule['stable_windows']} agree within {rule['tolerance']:.0%} on throughput and "
            f"p99 (at most {rule['max_windows']} windows); its figures come from those windows",
            f"machine: {machine.get('cpu_model', '?')}, {machine.get('logical_cores', '?')} "
            f"logical cores; "
            f"started {record['started_at']}, finished {record.get('finished_at', '–')}",
        ]
    )
    blocks.code(commands)
    blocks.heading("Answer")
    blocks.bullets(answers(record))
    if kind == "sweep":
        for protocol in dict.fromkeys(c["protocol"] for c in record["results"]):
            curves = [c for c in record["results"] if c["protocol"] == protocol]
            blocks.figure(f"sweep-{protocol}", sweep_plot(curves, protocol), f"{protocol} sweep")
        for curve in record["results"]:
            blocks.heading(f"{curve['cell']} ({curve['label']})", 3)
            blocks.paragraph(sweep_answer(curve))
            blocks.table(SWEEP_HEADERS, sweep_rows(curve))
        return blocks
    if kind == "slo":
        blocks.figure(
            "probes", probes_plot(record["results"], bound["p99_ms"], axis), "p99 of every probe"
        )
        for result in record["results"]:
            blocks.heading(f"{result['cell']}: probes", 3)
            blocks.paragraph(cell_answer(result, axis, bound["text"]))
            blocks.table(PROBE_HEADERS, probe_rows(result, axis))
        return blocks
    for tuning in record["results"]:
        blocks.heading(f"{tuning['cell']} ({tuning['label']})")
        blocks.paragraph(tune_answer(tuning, record["resolution"]))
        blocks.figure(
            f"pareto-{tuning['cell']}",
            pareto_plot(tuning, bound["p99_ms"]),
            f"{tuning['cell']}: throughput against p99 of every configuration",
        )
        blocks.table(CONFIG_HEADERS, config_rows(tuning, axis))
        for config in tuning["configurations"]:
            blocks.heading(f"{tuning['cell']} {config['id']}: probes", 3)
            blocks.table(PROBE_HEADERS, probe_rows(config["result"], axis))
    return blocks


def command_lines(record: dict) -> str:
    """The command that reproduces this search, and the one that resumes it."""
    if record["kind"] == "sweep":
        return f"tfsload run {record['experiment']['file']}"
    bound = record["bound"]
    run = (
        f"tfsload {record['kind']} {record['experiment']['file']} --p99-ms {bound['p99_ms']:g} "
        f"--fail-ratio {bound['fail_ratio']:g} --resolution {record['resolution']:g}"
    )
    if record.get("max_minutes"):
        run += f" --max-minutes {record['max_minutes']:g}"
    return f"{run}\ntfsload {record['kind']} --resume <this folder>"


def write_search_report(out: Path) -> dict:
    """Write report.md, report.html, plots/*.png (and configurations.csv for tune)."""
    record = json.loads((out / "search.json").read_text())
    blocks = build(record, command_lines(record))
    plot_files = {}
    for key, png in blocks.images.items():
        plot_files[key] = f"plots/{key}.png"
        write_atomic(out / plot_files[key], png)
    if record["kind"] == "tune":
        table = configurations_csv(record["results"], record["axis"])
        write_atomic(out / "configurations.csv", table)
    write_atomic(out / "report.md", markdown(blocks, plot_files))
    title = f"tfsload {record['kind']}: {record['experiment']['name']}"
    write_atomic(out / "report.html", html_page(blocks, title))
    return record
