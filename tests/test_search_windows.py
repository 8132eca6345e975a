"""Measurement windows: how the generator cuts them, how they travel, how stability is judged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfsload.generator.precise import PreciseStats
from tfsload.generator.results import windows_document
from tfsload.orchestrate.windows import StabilityRule, agree, figures, stable_tail


def record(stats: PreciseStats, start: float, seconds: float, rate: int, latency_ms) -> None:
    """``rate`` requests a second for ``seconds`` from ``start``; latency_ms(i) each."""
    for i in range(int(seconds * rate)):
        stats.record("gRPC", "grpc", latency_ms(i), i % 50 == 49, rows=2, when=start + i / rate)


def test_windows_are_whole_epoch_aligned_spans_of_the_measured_phase():
    stats = PreciseStats(window_s=2.0)
    record(stats, 1000.5, 9.0, 100, lambda i: 1.0 + (i % 10) / 10)
    facts = [{"measured_start": 1000.5}]
    document = windows_document(stats, facts, complete_by=1009.0, final=False)
    windows = document["windows"]
    # 1000.5 falls inside [1000, 1002): the first whole window starts at 1002; 1008-1010 is open
    assert [(w["start"], w["end"]) for w in windows] == [(1002, 1004), (1004, 1006), (1006, 1008)]
    assert [w["count"] for w in windows] == [200, 200, 200]
    assert [w["failures"] for w in windows] == [4, 4, 4]
    assert windows[0]["rows"] == 196 * 2
    assert windows[0]["p50_ms"] == pytest.approx(1.4, abs=0.01)
    assert document["format"] == "tfsload-windows/1" and document["window_s"] == 2.0


def test_a_window_in_which_nothing_completed_is_listed_empty():
    stats = PreciseStats(window_s=1.0)
    record(stats, 100.0, 1.0, 50, lambda i: 2.0)
    record(stats, 103.0, 1.0, 50, lambda i: 2.0)  # the server stalled for two seconds
    windows = stats.full_windows(100.0, 104.0)
    assert [w["count"] for w in windows] == [50, 0, 0, 50]
    assert windows[1]["p99_ms"] is None and windows[1]["histogram"] == ""


def test_no_windows_before_the_warm_up_ends_or_when_not_asked_for():
    stats = PreciseStats(window_s=1.0)
    record(stats, 100.0, 3.0, 10, lambda i: 2.0)
    assert windows_document(stats, [{"measured_start": None}], 200.0, False)["windows"] == []
    plain = PreciseStats()
    record(plain, 100.0, 3.0, 10, lambda i: 2.0)
    assert plain.full_windows(100.0, 200.0) == [] and plain.windows == {}


def test_windows_merged_from_workers_equal_one_process_recording_everything():
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(1, 0.5, 4000)
    single, workers, master = PreciseStats(2.0), [PreciseStats(2.0), PreciseStats(2.0)], None
    for i, ms in enumerate(latencies):
        when = 1000.0 + i / 400
        single.record("gRPC", "grpc", float(ms), i % 37 == 0, rows=1, when=when)
        workers[i % 2].record("gRPC", "grpc", float(ms), i % 37 == 0, rows=1, when=when)
    master = PreciseStats(2.0)
    for worker in workers:
        master.merge(json.loads(json.dumps(worker.export())))
    assert master.full_windows(1000.0, 1010.0) == single.full_windows(1000.0, 1010.0)


def test_figures_of_windows_come_from_their_merged_histograms():
    stats = PreciseStats(window_s=1.0)
    record(stats, 10.0, 3.0, 200, lambda i: 1.0 + i / 100)  # 1.00 .. 6.99 ms, one per 5 ms
    windows = stats.full_windows(10.0, 13.0)
    merged = figures(windows)
    ok = [1.0 + i / 100 for i in range(600) if i % 50 != 49]
    assert merged["requests"] == 600 and merged["failures"] == 12
    assert merged["rps"] == 200.0 and merged["fail_ratio"] == pytest.approx(0.02)
    _, total = stats.summaries(3.0)  # the run's own total: one histogram of everything
    assert [merged[k] for k in ("p50_ms", "p99_ms")] == [total[k] for k in ("p50_ms", "p99_ms")]
    exact_p99 = float(np.percentile(ok, 99, method="inverted_cdf"))
    assert merged["p99_ms"] == pytest.approx(exact_p99, rel=0.002)  # HDR: 3 digits
    # not the mean of the three windows' p99s, which would be far lower
    assert merged["p99_ms"] > sum(w["p99_ms"] for w in windows) / 3 * 1.3


def test_stability_needs_the_last_windows_to_agree_on_throughput_and_p99():
    rule = StabilityRule(window_s=1.0, stable_windows=3, tolerance=0.1)

    def window(count: int, p99: float | None) -> dict:
        return {"start": 0.0, "end": 1.0, "count": count, "p99_ms": p99}

    steady = [window(80, 30.0), window(100, 10.0), window(104, 10.5), window(97, 9.8)]
    assert stable_tail(steady, rule) == steady[-3:]
    assert stable_tail(steady[:2], rule) is None  # too few windows yet
    climbing = [window(100, 10.0), window(100, 12.0), window(100, 14.5)]
    assert stable_tail(climbing, rule) is None
    slowing = [window(100, 10.0), window(90, 10.0), window(70, 10.0)]
    assert stable_tail(slowing, rule) is None
    dead = [window(0, None)] * 3
    assert stable_tail(dead, rule) == dead  # steadily nothing: stable, and judged as such
    assert not agree([None, 10.0, 10.0], 0.1)
