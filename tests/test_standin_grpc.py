"""The stand-in's gRPC API through tensorflow-serving-api's own stubs, as users call TF Serving."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.test_standin_rest import counter


@pytest.fixture(scope="module")
def channel(standin):
    with grpc.insecure_channel(standin.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def prediction(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def instances(exported_model) -> np.ndarray:
    return np.array(json.loads(exported_model.instances_path.read_text()), dtype=np.int32)


def predict_request(rows, name: str = "model", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(rows))
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=60)
    return raised.value


def test_predict_equals_the_saved_model_and_echoes_the_model_spec(
    prediction, instances, saved_model_outputs
):
    rows = np.random.default_rng(1).integers(0, 20000, size=(9, 200)).astype(np.int32)
    for batch in (instances, rows, instances[:1]):
        response = prediction.Predict(predict_request(batch), timeout=60)
        assert response.model_spec.name == "model"
        assert response.model_spec.version.value == 1
        assert response.model_spec.signature_name == "serving_default"
        output = response.outputs["output_0"]
        assert output.dtype == tf.float32.as_datatype_enum
        assert len(output.float_val) == 2 * len(batch)  # typed field, as TF Serving answers
        np.testing.assert_allclose(tf.make_ndarray(output), saved_model_outputs(batch), atol=1e-5)


def test_predict_accepts_int_val_as_well_as_tensor_content(
    prediction, instances, saved_model_outputs
):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.version.value = 1
    tensor = request.inputs["input_1"]
    tensor.dtype = tf.int32.as_datatype_enum
    tensor.tensor_shape.dim.add().size = len(instances)
    tensor.tensor_shape.dim.add().size = 200
    tensor.int_val.extend(instances.ravel().tolist())
    response = prediction.Predict(request, timeout=60)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["output_0"]), saved_model_outputs(instances), atol=1e-5
    )


def with_extra_input(rows):
    request = predict_request(rows)
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto(rows))
    return request


def renamed_input(rows):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.inputs["tokens"].CopyFrom(tf.make_tensor_proto(rows))
    return request


def without_model_spec(rows):
    request = predict_pb2.PredictRequest()
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(rows))
    return request


def out_of_vocabulary(rows):
    bad = rows.copy()
    bad[0, 3] = 25000
    return predict_request(bad)


def unknown_output(rows):
    request = predict_request(rows)
    request.output_filter.append("probabilities")
    return request


PREDICT_ERRORS = [
    (
        "unknown model",
        lambda rows: predict_request(rows, name="foo"),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(foo)",
    ),
    (
        "unknown version",
        lambda rows: predict_request(rows, version=3),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(model, 3)",
    ),
    (
        "unknown label",
        lambda rows: predict_request(rows, version_label="canary"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: canary",
    ),
    (
        "unknown signature",
        lambda rows: predict_request(rows, signature_name="x"),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "x" not found.',
    ),
    (
        "int64 for int32",
        lambda rows: predict_request(rows.astype(np.int64)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be int32 but int64 is provided",
    ),
    (
        "extra input",
        with_extra_input,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({extra,input_1}) != len({input_1}). "
        "Sent extra: {extra}. Missing but required: {}.",
    ),
    (
        "wrong input name",
        renamed_input,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: tokens. "
        "Inputs expected to be in the set {input_1}.",
    ),
    ("no model spec", without_model_spec, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    (
        "out of vocabulary",
        out_of_vocabulary,
        grpc.StatusCode.INVALID_ARGUMENT,
        ("in", "indices[0,3] = 25000 is not in [0, 20000)"),
    ),
    (
        "unknown output",
        unknown_output,
        grpc.StatusCode.INVALID_ARGUMENT,
        ("in", "output tensor alias not found in signature: probabilities"),
    ),
]


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [case[1:] for case in PREDICT_ERRORS],
    ids=[case[0] for case in PREDICT_ERRORS],
)
def test_predict_errors_match_tf_serving(prediction, instances, build, code, message):
    error = rpc_error(prediction.Predict, build(instances))
    assert error.code() == code
    if isinstance(message, tuple):
        assert message[1] in error.details()
    else:
        assert error.details() == message


def test_messages_beyond_the_clients_4_mib_default_are_accepted(prediction):
    """TF Serving takes up to 2 GiB; a 6 MB request reaches the model checks, not a size limit."""
    big = np.zeros((7500, 200), dtype=np.int32)
    error = rpc_error(prediction.Predict, with_extra_input(big))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("input size does not match signature")


def test_model_metadata(prediction):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "model"
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, timeout=60)
    assert response.model_spec.name == "model"
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["input_1"].dtype == tf.int32.as_datatype_enum
    assert [d.size for d in serving.inputs["input_1"].tensor_shape.dim] == [-1, 200]

    request.ClearField("metadata_field")
    error = rpc_error(prediction.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    request.metadata_field.append("signature_def")
    request.model_spec.name = "foo"
    error = rpc_error(prediction.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "model"
    response = models.GetModelStatus(request, timeout=60)
    assert len(response.model_version_status) == 1
    status = response.model_version_status[0]
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.status.error_message == ""

    request.model_spec.version.value = 2
    error = rpc_error(models.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Could not find version 2 of model model"
    request.model_spec.name = "foo"
    request.model_spec.ClearField("version")
    error = rpc_error(models.GetModelStatus, request)
    assert error.details() == "Could not find any versions of model foo"


def test_health_service_says_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_requests_are_counted_with_their_labels(standin, prediction, instances):
    labels = {"model_name": "model", "API": "Predict", "entrypoint": "GRPC"}
    before = counter(standin, ":tensorflow:serving:request_latency_count", **labels)
    prediction.Predict(predict_request(instances), timeout=60)
    assert counter(standin, ":tensorflow:serving:request_latency_count", **labels) == before + 1
    runtime = counter(
        standin,
        ":tensorflow:serving:runtime_latency_count",
        model_name="model",
        API="Predict",
        runtime="TF1",
    )
    assert runtime >= 1
