"""The Locust users' arithmetic, in-process: nothing here imports Locust or gevent.

Histograms, merging, thresholds, budgets, schedules, answer checks, encodings and the results
document are plain Python; the Locust runs themselves are in test_locust_runs.py.
"""

from __future__ import annotations

import json
import random
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tfsload.core.errors import ConfigError
from tfsload.core.thresholds import CheckResult, Threshold, evaluate
from tfsload.generator.arrival import ArrivalSchedule, Lateness, arrival_summary
from tfsload.generator.options import spec_from_options
from tfsload.generator.payload import Payload, Request
from tfsload.generator.precise import PreciseStats
from tfsload.generator.request_count import Completion, RequestBudget, split_evenly
from tfsload.generator.results import build_results, csv_text, exit_code, summary_text
from tfsload.generator.run_state import RunState, Share, split_run


def options(**overrides) -> SimpleNamespace:
    """Parsed options as the web UI form leaves them: everything it touched is a string."""
    values = {
        "model_name": "model", "signature_name": "serving_default", "input_name": "input_1",
        "instances_file": "/x/instances.json", "grpc_timeout": 10.0, "rest_host": "",
        "grpc_host": "", "target_name": "", "request_count": 0, "warmup_requests": 0,
        "arrival_rate": 0.0, "arrival": "constant", "check_p50_ms": None, "check_p95_ms": None,
        "check_p99_ms": None, "check_fail_ratio": None, "check_min_rps": None,
        "fail_on_saturation": False, "saturation_cpu_percent": 90.0, "precise_json": "",
        "rows_per_request": 0, "run_spec": "",
    }  # fmt: skip
    values.update(overrides)
    return SimpleNamespace(**values)


def test_no_locust_or_gevent_in_this_process():
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules


# --- thresholds -------------------------------------------------------------------------------


def test_thresholds_pass_and_fail_on_the_total_row():
    total = {"count": 200, "failures": 10, "rps": 50.0, "p50_ms": 2.0, "p95_ms": 4.0, "p99_ms": 9.0}
    limits = [Threshold("p50_ms", 2.0), Threshold("p95_ms", 3.0), Threshold("p99_ms", 10.0),
              Threshold("fail_ratio", 0.01), Threshold("min_rps", 50.0)]  # fmt: skip
    results = evaluate(limits, total)
    assert [(r.check, r.value, r.passed) for r in results] == [
        ("p50_ms", 2.0, True),
        ("p95_ms", 4.0, False),
        ("p99_ms", 9.0, True),
        ("fail_ratio", 0.05, False),
        ("min_rps", 50.0, True),
    ]
    assert results[1].describe() == "p95_ms = 4, limit <= 3: FAILED"
    assert results[4].describe() == "min_rps = 50, limit >= 50: passed"
    assert CheckResult(**results[3].to_dict()) == results[3]


def test_a_check_without_a_measured_value_fails():
    (result,) = evaluate([Threshold("p99_ms", 1e9)], {"count": 3, "failures": 3, "p99_ms": None})
    assert result.value is None and not result.passed
    assert "not measured" in result.describe()
    with pytest.raises(ValueError, match="unknown check"):
        Threshold("p42_ms", 1.0)


# --- precise statistics -----------------------------------------------------------------------


def record_all(stats: PreciseStats, latencies_ms: list[float], failed_every: int = 0) -> None:
    for i, ms in enumerate(latencies_ms):
        failed = bool(failed_every) and i % failed_every == 0
        stats.record("gRPC", "grpc", ms, failed, rows=5, when=1000.0 + i / 100)


def test_precise_summary_keeps_microseconds_and_exact_extremes():
    stats = PreciseStats()
    latencies = [1.203 + i * 0.001 for i in range(1000)]  # 1.203 ms .. 2.202 ms
    record_all(stats, latencies, failed_every=100)  # 10 failures, not in the histogram
    entries, total = stats.summaries(wall_time_s=10.0)
    (entry,) = entries
    ok = [ms for i, ms in enumerate(latencies) if i % 100]
    assert entry["count"] == 1000 and entry["failures"] == 10
    assert entry["rps"] == 100.0 and entry["rows_per_s"] == 990 * 5 / 10
    assert entry["min_ms"] == round(min(ok), 3) and entry["max_ms"] == round(max(ok), 3)
    assert entry["mean_ms"] == pytest.approx(sum(ok) / len(ok), abs=0.001)
    exact_p99 = float(np.percentile(ok, 99, method="inverted_cdf"))
    assert entry["p99_ms"] == pytest.approx(exact_p99, rel=0.001)  # HDR: 3 significant digits
    assert entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"] <= entry["max_ms"]
    assert total["name"] == "Aggregated" and total["count"] == 1000
    assert entry["histogram"].startswith("HISTF")


def test_merged_exports_equal_one_process_recording_everything():
    rng = random.Random(7)
    latencies = [rng.lognormvariate(1, 0.5) for _ in range(3000)]
    single = PreciseStats()
    record_all(single, latencies, failed_every=37)
    workers = [PreciseStats(), PreciseStats()]
    for i, ms in enumerate(latencies):
        workers[i % 2].record("gRPC", "grpc", ms, i % 37 == 0, rows=5, when=1000.0 + i / 100)
    master = PreciseStats()
    for worker in workers:
        master.merge(json.loads(json.dumps(worker.export())))  # as it travels
        assert not worker.entries and not worker.seconds  # exports are deltas
    assert master.summaries(3.0) == single.summaries(3.0)
    assert master.timeline(1000.0) == single.timeline(1000.0)


def test_timeline_has_one_point_per_second():
    stats = PreciseStats()
    for i in range(30):
        stats.record("POST", "rest", 2.0 + i % 3, i == 4, rows=5, when=100.2 + i / 10)
    points = stats.timeline(start_time=100.2)
    assert [p["count"] for p in points] == [8, 10, 10, 2]
    assert [p["failures"] for p in points] == [1, 0, 0, 0]
    assert points[0]["t"] == 0.8 and points[1]["t"] == 1.8
    assert all(p["name"] == "Aggregated" and p["p50_ms"] <= p["p99_ms"] for p in points)


# --- request count, warm-up, shares -----------------------------------------------------------


def test_split_evenly_gives_every_request_to_someone():
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    spec = spec_from_options(options(request_count="1001", warmup_requests="3", arrival_rate="9"))
    shares = split_run(spec, 2)
    assert shares == [Share(2, 501, 4.5), Share(1, 500, 4.5)]


def test_budget_hands_out_exactly_warmup_plus_count_tickets():
    budget = RequestBudget(warmup=2, count=3, started=0.0)
    tickets = [budget.take() for _ in range(7)]
    assert tickets == [0, 1, 2, 3, 4, None, None]
    assert [budget.is_warmup_send(t) for t in tickets[:5]] == [True, True, False, False, False]
    kinds = [budget.complete(now=10.0 + i) for i in range(5)]
    assert kinds == [Completion.WARMUP, Completion.WARMUP, Completion.MEASURED,
                     Completion.MEASURED, Completion.LAST]  # fmt: skip
    assert budget.measured_start == 11.0 and budget.last_completion == 14.0
    assert budget.done and budget.measured == 3


def test_budget_without_count_or_warmup_measures_from_the_start():
    budget = RequestBudget(warmup=0, count=0, started=5.0)
    assert all(budget.take() is not None for _ in range(1000))
    assert budget.complete(6.0) is Completion.MEASURED
    assert budget.measured_start == 5.0 and not budget.done


# --- open loop --------------------------------------------------------------------------------


def test_constant_schedule_is_evenly_spaced_from_the_first_claim():
    schedule = ArrivalSchedule(rate=200, mode="constant")
    times = [schedule.next_time(now=50.0) for _ in range(5)]
    assert times == pytest.approx([50.0, 50.005, 50.010, 50.015, 50.020])


def test_poisson_schedule_has_the_asked_mean_rate():
    schedule = ArrivalSchedule(rate=1000, mode="poisson", rng=random.Random(1))
    times = [schedule.next_time(now=0.0) for _ in range(20001)]
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.001, rel=0.05)
    assert gaps.std() == pytest.approx(0.001, rel=0.1)  # exponential: std equals mean


def test_late_sends_are_counted_and_the_schedule_flagged():
    schedule = ArrivalSchedule(rate=100, mode="constant")
    schedule.note_send(intended=1.0, actual=1.0005, counted=True)  # within the 1 ms slack
    schedule.note_send(intended=1.01, actual=1.05, counted=True)  # 40 ms late
    schedule.note_send(intended=1.02, actual=1.5, counted=False)  # warm-up: not counted
    assert schedule.lateness == Lateness(sends=2, late_sends=1, max_lateness_s=pytest.approx(0.04))
    summary = arrival_summary("constant", 100.0, [schedule.lateness, Lateness(98, 0, 0.0)])
    assert summary["late_sends"] == 1 and summary["sends"] == 100
    assert summary["max_lateness_ms"] == 40.0 and summary["schedule_kept"]
    assert not arrival_summary("constant", 100.0, [schedule.lateness])["schedule_kept"]
    assert arrival_summary("constant", None, [])["mode"] == "closed"


def test_session_paces_and_stops_at_its_share():
    payload = Payload([Request(5, False, "/v1/models/model:predict", b"{}", b"")])
    settings = spec_from_options(options(request_count="3", arrival_rate="10"))
    session = RunState(settings, payload, split_run(settings, 1)[0], endpoints={})
    sends = [session.next_send(now=7.0) for _ in range(4)]
    assert [s.intended for s in sends[:3]] == pytest.approx([7.0, 7.1, 7.2])
    assert sends[3] is None
    closed = RunState(spec_from_options(options()), payload, Share(0, 0, 0.0), endpoints={})
    assert closed.next_send(now=1.0).intended is None
    assert RunState(settings, payload, Share(0, 0, 0.0, sends=False), {}).next_send(1.0) is None


# --- options ------------------------------------------------------------------------------


def test_settings_convert_web_form_strings():
    settings = spec_from_options(
        options(
            request_count="10000",
            warmup_requests="100",
            arrival_rate="250.5",
            arrival="poisson",
            check_p99_ms="12.5",
            check_fail_ratio="0",
            fail_on_saturation="true",
            precise_json="out/p.json",
        )
    )
    load, checks = settings.load, settings.checks
    assert load.request_count == 10000 and load.warmup_requests == 100
    assert load.open_loop and load.arrival_rate == 250.5
    assert [(t.check, t.limit) for t in checks.thresholds] == [("p99_ms", 12.5), ("fail_ratio", 0)]
    assert checks.fail_on_saturation and settings.outputs.precise_json == "out/p.json"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"request_count": "ten"}, "--request-count: 'ten' is not an integer"),
        ({"warmup_requests": "-1"}, "--warmup-requests: must be at least 0"),
        ({"check_fail_ratio": "2"}, "--check-fail-ratio: must be at most 1"),
        ({"check_p99_ms": "fast"}, "--check-p99-ms: 'fast' is not a number"),
        ({"arrival": "bursty"}, "--arrival: must be one of constant, poisson"),
        ({"model_name": " "}, "--model-name: must not be empty"),
        ({"grpc_timeout": "0"}, "--grpc-timeout: must be at least"),
    ],
)
def test_bad_options_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_options(options(**override))


# --- the results document ---------------------------------------------------------------------


def facts(start, last, done, cpu_max=40.0, late=0):
    return {
        "cpu": {"max_percent": cpu_max, "sum_percent": cpu_max * 2, "samples": 2},
        "lateness": {"sends": 100, "late_sends": late, "max_lateness_s": 0.002 * late},
        "measured_start": start,
        "last_completion": last,
        "done": done,
    }


def test_results_of_a_counted_run_end_with_its_last_request():
    stats = PreciseStats()
    record_all(stats, [2.0] * 100)
    spec = spec_from_options(options(request_count="100", warmup_requests="10", check_p99_ms="5"))
    results = build_results(
        stats, spec=spec, facts=[facts(100.0, 104.0, True), facts(101.0, 105.0, True)],
        started=99.0, stopped=109.0, failures=[],
    )  # fmt: skip
    assert results["format"] == "tfsload-precise/1"
    assert (results["start_time"], results["end_time"], results["wall_time_s"]) == (100, 105, 5)
    assert results["total"]["rps"] == 20.0 and results["request_count_target"] == 100
    assert results["generator"] == {
        "cpu_percent_max": 40.0, "cpu_percent_mean": 40.0, "saturated": False, "processes": 2,
    }  # fmt: skip
    assert results["thresholds"] == [
        {"check": "p99_ms", "limit": 5.0, "value": 2.0, "passed": True}
    ]
    assert results["passed"] and exit_code(results, fail_on_saturation=True) is None
    assert (
        csv_text([*results["entries"], results["total"]])
        .splitlines()[1]
        .startswith("gRPC,grpc,100,0,20.0,100.0,2.0,2.0,2.0")
    )


def test_results_flag_thresholds_saturation_and_a_broken_schedule():
    stats = PreciseStats()
    record_all(stats, [2.0] * 100, failed_every=50)
    spec = spec_from_options(options(check_p50_ms="1", arrival_rate="100", fail_on_saturation=True))
    results = build_results(
        stats, spec=spec, facts=[facts(100.0, 104.0, False, cpu_max=97.0, late=30)],
        started=99.0, stopped=110.0, failures=[{"name": "grpc", "error": "X", "occurrences": 2}],
    )  # fmt: skip
    assert results["wall_time_s"] == 10.0  # not a counted run: until the test stopped
    assert results["generator_saturated"] and not results["passed"]
    assert results["arrival"]["late_sends"] == 30 and not results["arrival"]["schedule_kept"]
    assert exit_code(results, fail_on_saturation=True) == 3  # a failed threshold comes first
    results["thresholds"] = []
    assert exit_code(results, fail_on_saturation=True) == 4
    assert exit_code(results, fail_on_saturation=False) is None
    text = summary_text(results)
    assert "the send schedule was not kept" in text and "was saturated" in text
