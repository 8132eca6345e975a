"""Server-side deltas from Prometheus text in TF Serving's format (names, labels, buckets)."""

from __future__ import annotations

import pytest

from tfsload.report.server_metrics import MetricsError, delta, parse

LATENCY_BOUNDS = [10 * 1.8**i for i in range(33)]  # TF Serving's request_latency buckets, µs
BATCH_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def histogram(name: str, labels: str, bounds: list[float], values: list[float]) -> list[str]:
    """Lines as TF Serving's exporter writes a histogram: cumulative buckets, +Inf, sum, count."""
    lines = []
    sep = "," if labels else ""
    for i, bound in enumerate([*bounds, float("inf")]):
        n = sum(1 for v in values if v <= bound)
        le = "+Inf" if i == len(bounds) else f"{bound:g}"
        lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {n}')
    lines.append(f"{name}_sum{{{labels}}} {sum(values):g}")
    lines.append(f"{name}_count{{{labels}}} {len(values)}")
    return lines


def exposition(ok: int, errors: int, latencies: list, batches: list, queued: list) -> str:
    """A whole metrics page for model 'model' plus an unrelated model that must be ignored."""
    p = ":tensorflow:serving:"
    lines = [f"# TYPE {p}request_count counter"]
    lines.append(f'{p}request_count{{model_name="model",status="OK"}} {ok}')
    lines.append(f'{p}request_count{{model_name="model",status="INVALID_ARGUMENT"}} {errors}')
    lines.append(f'{p}request_count{{model_name="other",status="OK"}} 999')
    lines.append(f"# TYPE {p}request_latency histogram")
    lines += histogram(
        f"{p}request_latency",
        'model_name="model",API="predict",entrypoint="REST"',
        LATENCY_BOUNDS,
        latencies,
    )
    lines += histogram(
        f"{p}request_latency",
        'model_name="other",API="predict",entrypoint="REST"',
        LATENCY_BOUNDS,
        [5e6] * 50,
    )
    lines.append(f"# TYPE {p}batching_session:processed_batch_size histogram")
    lines += histogram(f"{p}batching_session:processed_batch_size", "", BATCH_BOUNDS, batches)
    lines.append(f"# TYPE {p}batching_session:queuing_latency histogram")
    lines += histogram(
        f"{p}batching_session:queuing_latency",
        'thread_pool_name="model_batch_threads"',
        [100 * 1.2**i for i in range(52)],
        queued,
    )
    lines.append(f"# TYPE {p}batching_session:wrapped_run_count counter")
    lines.append(f"{p}batching_session:wrapped_run_count{{}} {len(batches)}")
    return "\n".join(lines) + "\n"


def test_delta_is_what_happened_between_the_scrapes():
    early_latency, early_batches, early_queue = [900.0] * 30, [5] * 30, [150.0] * 30
    cell_latency = [2000.0] * 90 + [40000.0] * 10
    cell_batches = [20] * 20 + [40] * 5  # 25 batches, 600 rows
    cell_queue = [1000.0] * 100
    before = exposition(30, 1, early_latency, early_batches, early_queue)
    after = exposition(
        130,
        3,
        early_latency + cell_latency,
        early_batches + cell_batches,
        early_queue + cell_queue,
    )
    result = delta(before, after, "model", rows_per_request=5)

    assert result["requests"] == {"total": 102, "by_status": {"INVALID_ARGUMENT": 2, "OK": 100}}
    latency = result["request_latency_us"]
    assert latency["count"] == 100  # the other model's slow requests are not counted
    assert latency["mean"] == pytest.approx((90 * 2000 + 10 * 40000) / 100)
    # Estimated from buckets, like histogram_quantile: inside the bucket holding the value.
    bucket_of = next(b for b in LATENCY_BOUNDS if b >= 2000)
    assert bucket_of / 1.8 < latency["p50"] <= bucket_of
    assert latency["p99"] > 20000
    batch = result["batch_size"]
    assert batch["source"] == "processed_batch_size"
    assert batch["batches"] == 25
    assert batch["mean_rows"] == pytest.approx(600 / 25)
    assert batch["distribution"] == [
        {"from": 16.0, "le": 32.0, "count": 20},
        {"from": 32.0, "le": 64.0, "count": 5},
    ]
    assert result["queuing_latency_us"]["count"] == 100
    assert result["queuing_latency_us"]["mean"] == pytest.approx(1000)


def test_batch_mean_falls_back_to_batched_runs_when_sizes_are_not_a_histogram():
    """TF Serving exports processed_batch_size as a percentile sampler, not a histogram."""

    def page(requests: int, runs: int) -> str:
        p = ":tensorflow:serving:"
        return (
            f"# TYPE {p}request_count counter\n"
            f'{p}request_count{{model_name="model",status="OK"}} {requests}\n'
            f"# TYPE {p}batching_session:processed_batch_size untyped\n"
            f"{p}batching_session:processed_batch_size{{}} 0\n"
            f"# TYPE {p}batching_session:wrapped_run_count counter\n"
            f"{p}batching_session:wrapped_run_count{{}} {runs}\n"
        )

    result = delta(page(10, 10), page(410, 110), "model", rows_per_request=5)
    assert result["batch_size"] == {
        "source": "wrapped_run_count",
        "batches": 100,
        "mean_rows": pytest.approx(400 * 5 / 100),
        "distribution": [],
    }


def test_no_batching_metrics_means_no_batch_size():
    page = ':tensorflow:serving:request_count{model_name="model",status="OK"} 5\n'
    result = delta(page, page.replace(" 5", " 9"), "model", rows_per_request=5)
    assert result["requests"]["total"] == 4
    assert "batch_size" not in result and "request_latency_us" not in result


def test_garbage_is_a_metrics_error():
    with pytest.raises(MetricsError):
        parse("<html><body>404</body></html>\n{not prometheus")
