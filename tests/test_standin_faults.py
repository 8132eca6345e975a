"""Faults on demand (``--fault_*``): they happen as configured, seen by real clients.

Other tests can start a misbehaving stand-in the same way, e.g.
``start_standin(base, "--fault_error_rate=0.5", "--fault_error_code=429")``.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from standin.faults import DROP, MALFORMED, Faults, parse_faults
from standin.status import ServingError
from tests.standin_process import start_standin

PREDICT = "/v1/models/model:predict"
ROWS = np.random.default_rng(0).integers(0, 20000, size=(5, 200)).astype(np.int32)
REQUESTS_PER_API = 150


def grpc_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    tensor = request.inputs["input_1"]
    tensor.dtype = 3
    for size in ROWS.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = ROWS.tobytes()
    return request


def rest_outcome(session: requests.Session, url: str) -> str:
    try:
        response = session.post(url, json={"instances": ROWS.tolist()}, timeout=30)
    except requests.ConnectionError:
        return "dropped"
    if response.status_code == 503:
        assert "Injected fault: UNAVAILABLE" in response.json()["error"]
        return "error"
    assert response.status_code == 200, response.text
    try:
        assert len(response.json()["predictions"]) == len(ROWS)
    except ValueError:
        return "malformed"
    return "ok"


def grpc_outcome(stub) -> str:
    try:
        answer = stub.Predict(grpc_request(), timeout=30)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and "Injected fault" in exc.details():
            return "error"
        if exc.code() == grpc.StatusCode.UNAVAILABLE and "Connection dropped" in exc.details():
            return "dropped"
        if exc.code() == grpc.StatusCode.INTERNAL and "deserializ" in exc.details():
            return "malformed"  # the client could not parse the answer
        raise
    assert len(answer.outputs["output_0"].float_val) == 2 * len(ROWS)
    return "ok"


def test_errors_drops_malformed_answers_and_latency_happen_at_their_rates(exported_model):
    flags = (
        "--fault_latency=uniform:20ms-40ms",
        "--fault_error_rate=0.3",
        "--fault_error_code=503",
        "--fault_drop_rate=0.2",
        "--fault_malformed_rate=0.2",
        "--fault_seed=7",
    )
    with start_standin(exported_model.version_dir.parent, *flags) as server:
        url = server.rest_url + PREDICT
        outcomes = {"REST": [], "gRPC": []}
        latencies = []
        with requests.Session() as session, grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(REQUESTS_PER_API):
                outcomes["REST"].append(rest_outcome(session, url))
                began = time.perf_counter()
                outcomes["gRPC"].append(grpc_outcome(stub))
                latencies.append(time.perf_counter() - began)
            # Status is not subject to faults: readiness checks keep working.
            status = session.get(f"{server.rest_url}/v1/models/model", timeout=30)
            assert status.status_code == 200
        log = server.log()
    assert "injects faults: latency=uniform:20ms-40ms error_rate=0.3 (UNAVAILABLE)" in log
    assert "Traceback" not in log
    for api, seen in outcomes.items():
        counts = {kind: seen.count(kind) / len(seen) for kind in ("error", "dropped", "malformed")}
        # Binomial with n=150: three standard deviations are at most 0.12.
        assert abs(counts["error"] - 0.3) < 0.12, (api, counts)
        assert abs(counts["dropped"] - 0.2) < 0.12, (api, counts)
        assert abs(counts["malformed"] - 0.2) < 0.12, (api, counts)
    assert min(latencies) >= 0.020
    assert 0.025 < statistics.median(latencies) < 0.2


def test_a_pause_holds_every_call_for_its_length(exported_model):
    with start_standin(
        exported_model.version_dir.parent, "--fault_pause_s=2", "--fault_pause_after_s=1"
    ) as server:
        url = server.rest_url + PREDICT
        body = json.dumps({"instances": ROWS.tolist()})
        latencies = []
        deadline = time.monotonic() + 6
        with requests.Session() as session:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                response = session.post(url, data=body, timeout=30)
                assert response.status_code == 200
                latencies.append(time.perf_counter() - began)
                time.sleep(0.02)
        log = server.log()
    assert "fault: pausing for 2 s (--fault_pause_s)" in log and "fault: pause over" in log
    assert 1.0 < max(latencies) < 3.0, max(latencies)
    assert statistics.median(latencies) < 0.5


@pytest.mark.parametrize(
    ("flag", "code", "http"),
    [
        ("429", grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        ("500", grpc.StatusCode.INTERNAL, 500),
        ("503", grpc.StatusCode.UNAVAILABLE, 503),
        ("504", grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        ("resource_exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        ("UNKNOWN", grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_error_codes_map_to_grpc_and_http(flag, code, http):
    faults = Faults(config(fault_error_rate=1.0, fault_error_code=flag))
    with pytest.raises(ServingError) as raised:
        asyncio.run(faults.predict())
    assert raised.value.code == code
    assert raised.value.http_status == http


def config(**values):
    defaults = {
        "fault_latency": "",
        "fault_error_rate": 0.0,
        "fault_error_code": "503",
        "fault_drop_rate": 0.0,
        "fault_malformed_rate": 0.0,
        "fault_pause_s": 0.0,
        "fault_pause_after_s": 0.0,
        "fault_seed": 1,
    }
    return parse_faults({**defaults, **values})


def test_latency_distributions():
    rng = random.Random(3)
    fixed = config(fault_latency="50ms").latency
    assert fixed.draw(rng) == pytest.approx(0.05)
    exp = config(fault_latency="exp:20ms").latency
    draws = [exp.draw(rng) for _ in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(0.02, rel=0.05)
    uniform = config(fault_latency="uniform:1ms-3ms").latency
    draws = [uniform.draw(rng) for _ in range(2000)]
    assert min(draws) >= 0.001 and max(draws) <= 0.003
    assert config(fault_latency="250us").latency.draw(rng) == pytest.approx(0.00025)
    assert config(fault_latency="1.5s").latency.draw(rng) == pytest.approx(1.5)


def test_one_draw_splits_between_error_drop_and_malformed():
    faults = Faults(config(fault_error_rate=0.25, fault_drop_rate=0.25, fault_malformed_rate=0.25))

    async def draws():
        seen = []
        for _ in range(4000):
            try:
                seen.append(await faults.predict())
            except ServingError:
                seen.append("error")
        return seen

    seen = asyncio.run(draws())
    for kind in ("error", DROP, MALFORMED, None):
        assert seen.count(kind) / len(seen) == pytest.approx(0.25, abs=0.03)
    assert not config().active
