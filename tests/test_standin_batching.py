"""Dynamic batching in the running stand-in: batches form across REST and gRPC, padding, a full
queue is UNAVAILABLE/503, oversized requests are refused, and the REST body limit answers 413."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.standin_process import metric_value, start_standin

# A one-second window to fill a batch, one batch thread and a queue of one batch: requests sent
# together share a batch, and a request that needs a second batch while one waits is refused.
BATCHING = """
max_batch_size { value: 100 }
batch_timeout_micros { value: 1000000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 16
allowed_batch_sizes: 64
allowed_batch_sizes: 100
"""
BODY_LIMIT = 200_000
BATCHES = ":tensorflow:serving:batching_session:processed_batch_size_count"
ROWS = ":tensorflow:serving:batching_session:processed_batch_size_sum"
INPUTS = ":tensorflow:serving:batching_session:input_batch_size_count"


@pytest.fixture(scope="module")
def server(exported_model, tmp_path_factory):
    configs = tmp_path_factory.mktemp("batching")
    (configs / "batching.cfg").write_text(BATCHING)
    (configs / "monitoring.cfg").write_text("prometheus_config { enable: true }\n")
    with start_standin(
        exported_model.version_dir.parent,
        "--enable_batching",
        f"--batching_parameters_file={configs / 'batching.cfg'}",
        f"--monitoring_config_file={configs / 'monitoring.cfg'}",
        f"--rest_api_max_body_bytes={BODY_LIMIT}",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def instances(exported_model) -> np.ndarray:
    return np.array(json.loads(exported_model.instances_path.read_text()), dtype=np.int32)


def rest_predict(server, rows) -> requests.Response:
    body = {"instances": np.asarray(rows).tolist()}
    return requests.post(f"{server.rest_url}/v1/models/model:predict", json=body, timeout=60)


def grpc_request(rows) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(np.asarray(rows, dtype=np.int32)))
    return request


def metrics(server) -> dict[str, float]:
    return {name: metric_value(server.metrics_url, name) for name in (BATCHES, ROWS, INPUTS)}


def test_concurrent_rest_and_grpc_requests_share_batches(
    server, stub, instances, saved_model_outputs
):
    before = metrics(server)
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 20000, size=(5, 200)).astype(np.int32) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        rest = [pool.submit(rest_predict, server, rows) for rows in batches[:4]]
        grpc_calls = [pool.submit(stub.Predict, grpc_request(rows), 60) for rows in batches[4:]]
        rest_outputs = [np.array(f.result().json()["predictions"]) for f in rest]
        grpc_outputs = [tf.make_ndarray(f.result().outputs["output_0"]) for f in grpc_calls]
    for rows, output in zip(batches, rest_outputs + grpc_outputs, strict=True):
        np.testing.assert_allclose(output, saved_model_outputs(rows), atol=1e-5)

    after = metrics(server)
    ran = after[BATCHES] - before[BATCHES]
    assert after[INPUTS] - before[INPUTS] == 8
    assert 1 <= ran < 8, "eight concurrent requests should have shared batches"
    assert (after[ROWS] - before[ROWS]) / ran > 5, "a batch held more than one 5-row request"


def test_padding_rows_are_counted_and_dropped(server, instances, saved_model_outputs):
    label = {"execution_batch_size": "16"}
    padding = ":tensorflow:serving:batching_session:padding_size_sum"
    before = metric_value(server.metrics_url, padding, **label)
    response = rest_predict(server, instances[:3])
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (3, 2)
    np.testing.assert_allclose(predictions, saved_model_outputs(instances[:3]), atol=1e-5)
    assert metric_value(server.metrics_url, padding, **label) == before + 13


def test_full_queue_is_unavailable_over_rest_and_grpc(server, stub, instances):
    """60 rows open the only batch; another 60 would need a second one while it waits."""
    rows = np.tile(instances, (12, 1))
    submitted = metric_value(server.metrics_url, INPUTS)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(rest_predict, server, rows)
        deadline = time.monotonic() + 60
        while metric_value(server.metrics_url, INPUTS) == submitted:  # first is now queued
            assert time.monotonic() < deadline, "the first request never reached the batcher"
            time.sleep(0.005)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(grpc_request(rows), timeout=60)
        rest_refused = rest_predict(server, rows)
        assert first.result().status_code == 200
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == (
        "The batch scheduling queue to which this task was submitted is full; "
        "currently 1 batches enqueued and max_enqueued_batches is 1"
    )
    assert rest_refused.status_code == 503
    assert rest_refused.json()["error"] == refused.value.details()


def test_requests_above_max_batch_size_are_invalid(server, stub, instances):
    rows = np.tile(instances, (21, 1))  # 105 rows
    response = rest_predict(server, rows)
    assert response.status_code == 400
    assert response.json() == {"error": "Task size 105 is larger than maximum input batch size 100"}
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(grpc_request(rows), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_deadline_while_queued_is_deadline_exceeded(server, stub, instances):
    with pytest.raises(grpc.RpcError) as late:
        stub.Predict(grpc_request(instances), timeout=0.2)  # the batch waits a full second
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_rest_body_limit_answers_413(server, instances):
    big = json.dumps({"instances": np.tile(instances, (60, 1)).tolist()}).encode()
    assert len(big) > BODY_LIMIT
    response = requests.post(f"{server.rest_url}/v1/models/model:predict", data=big, timeout=60)
    assert response.status_code == 413
    error = response.json()["error"]
    assert f"limit of {BODY_LIMIT} bytes" in error and "--rest_api_max_body_bytes" in error
    assert rest_predict(server, instances).status_code == 200
