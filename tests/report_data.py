"""Results directories laid out exactly as the runner writes them, for report and compare tests.

Latencies go through the real precise-statistics code (``tfsload.generator.precise``), and
metrics pages are written in TF Serving's exposition format, so reports are built from realistic
raw files without starting servers. End-to-end runs are covered in test_runner_e2e.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tfsload.core import run_spec
from tfsload.generator.precise import PreciseStats

ROWS = 5


@dataclass
class FakeCell:
    """What one cell measured: latencies (ms) of its requests and optional server batches."""

    target: str
    protocol: str
    latencies_ms: list[float]
    failures: int = 0
    wall_time_s: float = 10.0
    status: str = "ok"
    server_kind: str = "standin"
    batches: list[int] = field(default_factory=list)
    saturated: bool = False
    server_cpu_s: float | None = None
    other_cpu_percent: float = 1.0

    @property
    def id(self) -> str:
        return f"{self.target}-{self.protocol}"


def latencies(median_ms: float, n: int = 2000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [median_ms * rng.lognormvariate(0, 0.4) for _ in range(n)]


def precise_json(cell: FakeCell) -> dict:
    stats = PreciseStats()
    start = 1_800_000_000.0
    n = len(cell.latencies_ms) + cell.failures
    for i, ms in enumerate(cell.latencies_ms + [1.0] * cell.failures):
        when = start + cell.wall_time_s * i / n
        failed = i >= len(cell.latencies_ms)
        stats.record(
            cell.protocol.upper(), f"{cell.target} {cell.protocol}", ms, failed, ROWS, when
        )
    entries, total = stats.summaries(cell.wall_time_s)
    return {
        "format": "tfsload-precise/1",
        "start_time": start,
        "end_time": start + cell.wall_time_s,
        "wall_time_s": cell.wall_time_s,
        "request_count_target": len(cell.latencies_ms),
        "warmup_requests": 0,
        "arrival": {"mode": "closed", "rate": None, "late_sends": 0, "max_lateness_ms": 0.0},
        "generator": {
            "cpu_percent_max": 97.0 if cell.saturated else 40.0,
            "cpu_percent_mean": 95.0 if cell.saturated else 30.0,
            "saturated": cell.saturated,
            "processes": 1,
        },
        "generator_saturated": cell.saturated,
        "entries": entries,
        "total": total,
        "failures": [
            {
                "name": f"{cell.target} {cell.protocol}",
                "error": "UNAVAILABLE",
                "occurrences": cell.failures,
            }
        ]
        if cell.failures
        else [],
        "timeline": stats.timeline(start),
        "thresholds": [],
        "passed": True,
    }


def metrics_page(requests: int, batches: list[int]) -> str:
    p = ":tensorflow:serving:"
    bounds = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, float("inf")]
    lines = [
        f"# TYPE {p}request_count counter",
        f'{p}request_count{{model_name="model",status="OK"}} {requests}',
        f"# TYPE {p}batching_session:processed_batch_size histogram",
    ]
    for bound in bounds:
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        count = sum(1 for b in batches if b <= bound)
        lines.append(f'{p}batching_session:processed_batch_size_bucket{{le="{le}"}} {count}')
    lines.append(f"{p}batching_session:processed_batch_size_sum{{}} {sum(batches)}")
    lines.append(f"{p}batching_session:processed_batch_size_count{{}} {len(batches)}")
    return "\n".join(lines) + "\n"


def make_results(
    out: Path,
    cells: list[FakeCell],
    status: str = "complete",
    thresholds: dict | None = None,
    fail_on_saturation: bool = True,
) -> Path:
    """Write run.json and every cell's raw files under ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    checks = {"fail_on_saturation": fail_on_saturation, **(thresholds or {})}
    spec = run_spec.from_values({"load": {"users": 10, "request_count": 2000}, "checks": checks})
    run = {
        "format": "tfsload-run/1",
        "status": status,
        "experiment": {
            "name": "fake",
            "description": "report test",
            "protocols": sorted({c.protocol for c in cells}),
            "load": {"users": 10, "requests": 2000},
        },
        "spec": spec.to_dict(),
        "model": {
            "name": "model",
            "rows_per_request": ROWS,
            "metadata": {
                "version": 1,
                "parameters": 657758,
                "data_source": "synthetic",
                "validation_accuracy": 0.88,
                "tensorflow_version": "2.21.0",
            },
        },
        "machine": {
            "cpu_model": "Test CPU 9000",
            "logical_cores": 2,
            "physical_cores": 1,
            "memory_gib": 7.8,
            "os": "Linux",
        },
        "versions": {"tfsload": "0.1.0", "locust": "2.47.0"},
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00",
        "cells": [c.id for c in cells],
        "targets": {
            c.target: {"label": f"{c.target} label", "launch": "standin", "flags": []}
            for c in cells
        },
    }
    (out / "run.json").write_text(json.dumps(run))
    for cell in cells:
        cell_dir = out / "cells" / cell.id
        if cell.status == "not_run":
            continue  # the runner never got to it: no directory at all
        cell_dir.mkdir(parents=True)
        record = {
            "id": cell.id,
            "target": cell.target,
            "label": f"{cell.target} label",
            "protocol": cell.protocol,
            "status": cell.status,
            "reason": None if cell.status == "ok" else "unreachable: connection refused",
            "exit_code": 0 if cell.status == "ok" else None,
            "wall_time_s": cell.wall_time_s + 2,
            "client_cpu_percent": 30.0,
            "server_cpu_s": cell.server_cpu_s,
            "other_cpu_percent_of_machine": cell.other_cpu_percent,
            "server": {
                "kind": cell.server_kind,
                "version": "0.1.0",
                "state": "AVAILABLE",
                "error": None,
            },
        }
        (cell_dir / "cell.json").write_text(json.dumps(record))
        if cell.status != "ok":
            continue
        (cell_dir / "precise.json").write_text(json.dumps(precise_json(cell)))
        if cell.batches:
            (cell_dir / "metrics-before.prom").write_text(metrics_page(0, []))
            n = len(cell.latencies_ms)
            (cell_dir / "metrics-after.prom").write_text(metrics_page(n, cell.batches))
    return out
