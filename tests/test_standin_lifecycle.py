"""The stand-in's life: LOADING until warm-up is done, then AVAILABLE; time-outs and the gRPC
thread limit while serving; a graceful SIGTERM; and a warm-up record that fails the load."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from tests.conftest import run_cli
from tests.standin_process import free_port, metric_value, start_standin

WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"
INPUTS = ":tensorflow:serving:batching_session:input_batch_size_count"
# Batches wait up to a minute to fill: requests stay in flight until the test acts on them
# (at SIGTERM the stand-in runs queued batches at once, as TF Serving's scheduler does).
BATCHING = """
max_batch_size { value: 100 }
batch_timeout_micros { value: 60000000 }
max_enqueued_batches { value: 10 }
num_batch_threads { value: 1 }
"""


def predict_request(rows: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(rows))
    return request


def model_with_warmup(exported_model, base: Path, requests_rows: list[np.ndarray]) -> Path:
    """A copy of the exported model whose warm-up file holds one record per array."""
    version = base / "model" / "1"
    shutil.copytree(exported_model.version_dir, version)
    with tf.io.TFRecordWriter(str(version / WARMUP)) as writer:
        for rows in requests_rows:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(predict_request(rows))
            writer.write(log.SerializeToString())
    return version.parent


@pytest.fixture(scope="module")
def instances(exported_model) -> np.ndarray:
    return np.array(json.loads(exported_model.instances_path.read_text()), dtype=np.int32)


def test_ready_after_warm_up_then_serves_and_stops_gracefully(
    exported_model, instances, tmp_path, saved_model_outputs
):
    # 12 warm-up records of 200 rows take a second or more to replay: time to watch LOADING.
    rows = np.tile(instances, (40, 1))
    base = model_with_warmup(exported_model, tmp_path, [rows] * 12)
    (tmp_path / "batching.cfg").write_text(BATCHING)
    (tmp_path / "monitoring.cfg").write_text("prometheus_config { enable: true }\n")
    flags = (
        "--enable_batching",
        f"--batching_parameters_file={tmp_path / 'batching.cfg'}",
        f"--monitoring_config_file={tmp_path / 'monitoring.cfg'}",
        "--grpc_max_threads=2",
        "--rest_api_timeout_in_ms=500",
    )
    with start_standin(base, *flags, wait=False) as server:
        # Readiness: status says LOADING (and predict finds no servable) until warm-up is over.
        states, loading_predict = [], None
        deadline = time.monotonic() + 180
        while not states or states[-1] != "AVAILABLE":
            assert time.monotonic() < deadline, server.log()
            assert server.process.poll() is None, server.log()
            try:
                status = requests.get(f"{server.rest_url}/v1/models/model", timeout=10).json()
            except requests.ConnectionError:
                time.sleep(0.02)
                continue
            states.append(status["model_version_status"][0]["state"])
            if states[-1] == "LOADING" and loading_predict is None:
                loading_predict = requests.post(
                    f"{server.rest_url}/v1/models/model:predict",
                    json={"instances": instances.tolist()},
                    timeout=10,
                )
        assert states[0] == "LOADING", states
        assert set(states) == {"LOADING", "AVAILABLE"} and states.index("AVAILABLE") > 0
        assert loading_predict.status_code == 404
        assert loading_predict.json() == {"error": "Servable not found for request: Latest(model)"}
        assert "(12 warm-up records replayed)" in server.log()
        assert "tfsload stand-in (not TensorFlow Serving)" in server.log()

        with grpc.insecure_channel(server.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            # --rest_api_timeout_in_ms: the batch would wait a minute; the REST call gives up.
            late = requests.post(
                f"{server.rest_url}/v1/models/model:predict",
                json={"instances": instances.tolist()},
                timeout=60,
            )
            assert late.status_code == 504
            assert late.json() == {"error": "Timed out after 500 ms (--rest_api_timeout_in_ms)"}

            # --grpc_max_threads=2: two calls in flight, a third is RESOURCE_EXHAUSTED.
            queued_before = metric_value(server.metrics_url, INPUTS)
            in_flight = [stub.Predict.future(predict_request(instances), timeout=60) for _ in "ab"]
            while metric_value(server.metrics_url, INPUTS) < queued_before + 2:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Predict(predict_request(instances), timeout=60)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            # SIGTERM: no new connections; the two queued calls run at once and complete.
            server.process.send_signal(signal.SIGTERM)
            while True:
                assert time.monotonic() < deadline, server.log()
                try:
                    requests.get(f"{server.rest_url}/v1/models/model", timeout=5)
                except requests.ConnectionError:
                    break
                time.sleep(0.01)
            for call in in_flight:
                # Well inside the minute the batch would otherwise have waited.
                output = tf.make_ndarray(call.result(timeout=40).outputs["output_0"])
                np.testing.assert_allclose(output, saved_model_outputs(instances), atol=1e-5)
        assert server.process.wait(timeout=60) == 0
        stop_lines = [
            line for line in server.log().splitlines() if " stopped after SIGTERM" in line
        ]
        assert len(stop_lines) == 1
        assert "batching max_batch_size=100 batch_timeout_micros=60000000" in stop_lines[0]
        assert "grpc_max_threads=2" in stop_lines[0]


def test_a_bad_warm_up_record_fails_the_load_unless_warm_up_is_off(
    exported_model, instances, tmp_path
):
    base = model_with_warmup(exported_model, tmp_path, [instances, instances.astype(np.int64)])
    result = run_cli("-m", "standin", f"--port={free_port()}", f"--model_base_path={base}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"standin: {base / '1' / WARMUP}: warm-up record 1 failed: "
        "Expects arg[0] to be int32 but int64 is provided"
    )
    with start_standin(base, "--enable_model_warmup=false") as server:
        assert "(0 warm-up records replayed)" in server.log()
