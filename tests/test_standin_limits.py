"""The stand-in's bounds: what one request may cost, memory after bursts, no loop stalls from
big bodies, and calls whose caller gave up are abandoned rather than run."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from standin.metrics import Metrics
from standin.predictor import Predictor
from tests.standin_process import metric_value, rss_bytes, start_standin

PREDICT = "/v1/models/model:predict"
MB = 1024 * 1024


def grpc_request(rows: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    tensor = request.inputs["input_1"]
    tensor.dtype = 3  # DT_INT32
    for size in rows.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = rows.astype(np.int32).tobytes()
    return request


def random_rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 20000, size=(count, 200)).astype(np.int32)


def rest_predict(url: str, rows: np.ndarray, timeout: float = 120) -> requests.Response:
    return requests.post(url + PREDICT, json={"instances": rows.tolist()}, timeout=timeout)


def test_the_limits_are_flags_and_name_themselves(exported_model):
    flags = (
        "--max_request_rows=10",
        "--max_request_bytes=4000",  # 5 rows of 200 int32
        "--rest_api_timeout_in_ms=500",
    )
    with start_standin(exported_model.version_dir.parent, *flags) as server:
        assert "limits max_request_rows=10 max_request_bytes=4000" in server.log()
        eleven = rest_predict(server.rest_url, random_rows(11))
        assert eleven.status_code == 400
        assert eleven.json()["error"] == (
            "Request of 11 rows is larger than the stand-in's limit of 10 rows (--max_request_rows)"
        )
        assert rest_predict(server.rest_url, random_rows(5)).status_code == 200
        six = rest_predict(server.rest_url, random_rows(6))
        assert six.status_code == 400
        assert six.json()["error"] == (
            "Request inputs of 4800 bytes are larger than the stand-in's limit of 4000 bytes "
            "(--max_request_bytes)"
        )
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Predict(grpc_request(random_rows(6)), timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "(--max_request_bytes)" in refused.value.details()
            # gRPC itself refuses messages over twice --max_request_bytes plus 1 MiB.
            with pytest.raises(grpc.RpcError) as too_big:
                stub.Predict(grpc_request(random_rows(2000)), timeout=60)
            assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # A body that never arrives is cut off by --rest_api_timeout_in_ms.
        port = int(server.rest_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 504 "), answer
        assert b"(--rest_api_timeout_in_ms)" in answer


def test_memory_returns_to_a_steady_level_after_bursts(exported_model):
    """Bursts of the largest requests allowed (1000 rows) over both APIs, then the hostile
    requests of the reliability probe. The first burst grows TensorFlow's allocator to the
    working set of two concurrent runs; later bursts and refused requests must not add to it."""
    with start_standin(
        exported_model.version_dir.parent, "--tensorflow_inter_op_parallelism=2"
    ) as server:
        rows = random_rows(1000)
        body = json.dumps({"instances": rows.tolist()}).encode()
        request = grpc_request(rows)
        started = rss_bytes(server)

        def burst() -> int:
            with (
                grpc.insecure_channel(server.grpc_target) as channel,
                ThreadPoolExecutor(8) as pool,
            ):
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                calls = [
                    pool.submit(requests.post, server.rest_url + PREDICT, data=body, timeout=300)
                    for _ in range(6)
                ] + [pool.submit(stub.Predict, request, 300) for _ in range(6)]
                for call in calls:
                    result = call.result()
                    if isinstance(result, requests.Response):
                        assert result.status_code == 200, result.text[:200]
            time.sleep(1)
            return rss_bytes(server)

        first = burst()
        second = burst()
        third = burst()
        hostile(server)
        after_hostile = rss_bytes(server)
        figures = (
            f"RSS MB: started {started / MB:.0f}, bursts {first / MB:.0f} "
            f"{second / MB:.0f} {third / MB:.0f}, after hostile {after_hostile / MB:.0f}"
        )
        print(figures)
        # Two 1000-row runs at once need about 1.6 GB of this model's working memory.
        assert first - started < 3000 * MB, figures
        assert third < first * 1.1 + 150 * MB, figures
        assert after_hostile < third + 150 * MB, figures


def hostile(server) -> None:
    """The probe's requests that once took the stand-in to many gigabytes: all refused now."""
    url = server.rest_url + PREDICT
    assert rest_predict(server.rest_url, random_rows(10_000)).status_code == 400
    one_value_rows = b'{"instances": [' + b",".join([b"[1]"] * 300_000) + b"]}"
    assert requests.post(url, data=one_value_rows, timeout=120).status_code == 400
    declared = predict_pb2.PredictRequest()
    declared.model_spec.name = "model"
    declared.inputs["input_1"].dtype = 3
    for size in (50_000, 200):
        declared.inputs["input_1"].tensor_shape.dim.add().size = size
    declared.inputs["input_1"].int_val.append(1)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(declared, timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_large_body_does_not_stall_a_concurrent_small_predict(standin):
    """A 55 MB body (parsed in a worker process, then refused for its rows) while small
    predicts run back to back: none of them waits on the big one's parsing."""
    url = standin.rest_url + PREDICT
    small = json.dumps({"instances": random_rows(5).tolist()}).encode()
    big = json.dumps({"instances": random_rows(45_000).tolist()}).encode()
    started = time.perf_counter()
    json.loads(big)
    inline_parse_s = time.perf_counter() - started  # what the loop would have spent on it
    with requests.Session() as session:
        for _ in range(10):
            assert session.post(url, data=small, timeout=60).status_code == 200
        finished = threading.Event()
        outcome = {}

        def send_big() -> None:
            began = time.perf_counter()
            outcome["status"] = requests.post(url, data=big, timeout=120).status_code
            outcome["seconds"] = time.perf_counter() - began
            finished.set()

        sender = threading.Thread(target=send_big)
        sender.start()
        latencies = []
        while not finished.is_set():
            began = time.perf_counter()
            assert session.post(url, data=small, timeout=60).status_code == 200
            latencies.append(time.perf_counter() - began)
        sender.join()
    worst = max(latencies)
    figures = (
        f"{len(big) / MB:.0f} MB body took {outcome['seconds']:.2f} s (inline JSON parse alone "
        f"{inline_parse_s:.2f} s); {len(latencies)} small predicts meanwhile, worst "
        f"{worst * 1000:.0f} ms, median {np.median(latencies) * 1000:.1f} ms"
    )
    print(figures)
    assert outcome["status"] == 400, figures
    assert len(latencies) >= 5, figures
    assert worst < 0.5, figures  # generous: a stall by the parse would be seconds


BATCHING = """
max_batch_size { value: 100 }
batch_timeout_micros { value: 1500000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
"""
BATCHES = ":tensorflow:serving:batching_session:processed_batch_size_count"
ROWS = ":tensorflow:serving:batching_session:processed_batch_size_sum"


def test_calls_whose_caller_gave_up_leave_their_batch(exported_model, tmp_path):
    """60 rows whose gRPC deadline passes, then 60 whose REST call times out: both leave the
    open batch. Were they kept, the next 60 rows would need a second batch, and the queue
    (one batch) would refuse them; instead they run alone."""
    (tmp_path / "batching.cfg").write_text(BATCHING)
    (tmp_path / "monitoring.cfg").write_text("prometheus_config { enable: true }\n")
    with start_standin(
        exported_model.version_dir.parent,
        "--enable_batching",
        f"--batching_parameters_file={tmp_path / 'batching.cfg'}",
        f"--monitoring_config_file={tmp_path / 'monitoring.cfg'}",
        "--rest_api_timeout_in_ms=300",
    ) as server:
        rows = random_rows(60)
        before = {name: metric_value(server.metrics_url, name) for name in (BATCHES, ROWS)}
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as late:
                stub.Predict(grpc_request(rows), timeout=0.3)
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.2)
            timed_out = rest_predict(server.rest_url, rows)
            assert timed_out.status_code == 504, timed_out.text
            time.sleep(0.2)
            answer = stub.Predict(grpc_request(rows), timeout=60)
        assert len(answer.outputs["output_0"].float_val) == 120
        assert metric_value(server.metrics_url, BATCHES) == before[BATCHES] + 1
        assert metric_value(server.metrics_url, ROWS) == before[ROWS] + 60


class BlockingServable:
    """Stands in for a model: each run waits for ``release`` and records its input."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.ran: list[int] = []

    def run(self, signature, arrays):
        self.ran.append(arrays["x"])
        self.started.release()
        assert self.release.wait(30)
        return {"y": arrays["x"]}


def test_without_batching_a_cancelled_call_never_takes_a_model_thread():
    servable = BlockingServable()

    async def scenario():
        predictor = Predictor("m", 1, Metrics(None), None, model_threads=1)
        first = asyncio.ensure_future(predictor._run_direct(servable, None, {"x": 1}))
        await asyncio.to_thread(servable.started.acquire)  # the only model thread is busy
        waiting = asyncio.ensure_future(predictor._run_direct(servable, None, {"x": 2}))
        await asyncio.sleep(0.05)
        waiting.cancel()  # its caller gave up while it waited for the thread
        first.cancel()  # and this one while it ran: its thread finishes it
        third = asyncio.ensure_future(predictor._run_direct(servable, None, {"x": 3}))
        await asyncio.sleep(0.1)
        assert servable.ran == [1]  # the running call still holds the thread
        servable.release.set()
        result = await third
        await predictor.close()
        return result

    result = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert result == {"y": 3}
    assert servable.ran == [1, 3]
