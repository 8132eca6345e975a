"""A bounded fuzz pass over the stand-in's REST bodies and gRPC messages (hypothesis).

Whatever arrives, the answer is a success or a client error (REST: a 4xx with a JSON error
body; gRPC: TF Serving's codes), never a 500, UNKNOWN or a traceback; afterwards a normal
predict still succeeds and the server's memory has not run away. Examples are derandomized
(the same ones every run) and not stored, so the pass is repeatable and leaves no files.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.standin_process import rss_bytes

PREDICT = "/v1/models/model:predict"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MB = 1024 * 1024

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.builds(lambda s: {"b64": s}, st.text(max_size=8))
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(["input_1", "b64", "x", ""]), children, max_size=3)
    ),
    max_leaves=40,
)
rows = st.lists(
    st.lists(st.integers(min_value=-5, max_value=25_000), min_size=0, max_size=203),
    min_size=0,
    max_size=4,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "instances": rows | json_values,
        "inputs": rows | json_values | st.dictionaries(st.just("input_1"), rows | json_values),
        "signature_name": st.sampled_from(["", "serving_default", "other"]) | json_values,
    },
)


def mutated(text: bytes, data) -> bytes:
    """``text`` with a few bytes replaced, cut, or repeated."""
    body = bytearray(text)
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "nest"]))
        if action == "flip":
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[at:]
        else:
            body[at:at] = b"[" * data.draw(st.integers(1, 80))
    return bytes(body)


@pytest.fixture(scope="module")
def memory_before(standin):
    return rss_bytes(standin)


@FUZZ
@given(data=st.data())
def test_rest_bodies(standin, memory_before, data):
    kind = data.draw(st.sampled_from(["document", "mutated", "bytes"]))
    if kind == "bytes":
        body = data.draw(st.binary(max_size=3000))
    else:
        body = json.dumps(data.draw(documents), allow_nan=True).encode()
        if kind == "mutated":
            body = mutated(body, data)
    path = data.draw(
        st.sampled_from([PREDICT, "/v1/models/model/versions/1:predict", "/v1/models/x:predict"])
    )
    headers = data.draw(
        st.sampled_from([{}, {"Content-Type": "application/json"}, {"Content-Encoding": "gzip"}])
    )
    response = requests.post(standin.rest_url + path, data=body, headers=headers, timeout=60)
    assert response.status_code < 500, (body[:300], response.text[:300])
    assert response.headers["Server"].startswith("tfsload-standin/")
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


tensor_protos = st.builds(
    lambda *fields: fields,
    st.sampled_from([1, 2, 3, 4, 6, 7, 9, 10, 14, 19, 0, 99]),
    st.lists(
        st.integers(min_value=-3, max_value=300) | st.sampled_from([2**31, 2**40, 2**62]),
        max_size=4,
    ),
    st.none() | st.binary(max_size=1700),
    st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=250),
    st.lists(st.floats(width=32, allow_nan=True), max_size=20),
    st.lists(st.binary(max_size=10), max_size=5),
)


def predict_request(name, version, aliases, tensors, output_filter) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    if name is not None:
        request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    for alias, (dtype, dims, content, ints, floats, strings) in zip(aliases, tensors, strict=False):
        tensor = request.inputs[alias]
        tensor.dtype = dtype
        for size in dims:
            tensor.tensor_shape.dim.add().size = size
        if content is not None:
            tensor.tensor_content = content
        tensor.int_val.extend(ints)
        tensor.float_val.extend(floats)
        tensor.string_val.extend(strings)
    request.output_filter.extend(output_filter)
    return request


CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.fixture(scope="module")
def channel(standin):
    with grpc.insecure_channel(standin.grpc_target) as channel:
        yield channel


@FUZZ
@given(
    name=st.sampled_from(["model", "model", "other", ""]) | st.none(),
    version=st.sampled_from([None, None, 1, 2, -1]),
    aliases=st.lists(st.sampled_from(["input_1", "input_1", "x"]), max_size=2),
    tensors=st.lists(tensor_protos, max_size=2),
    output_filter=st.lists(st.sampled_from(["output_0", "nope"]), max_size=2),
    raw=st.none() | st.binary(max_size=300),
)
def test_grpc_messages(channel, name, version, aliases, tensors, output_filter, raw):
    if raw is not None:  # bytes that may not be a PredictRequest at all
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        message = raw
    else:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        call = stub.Predict
        message = predict_request(name, version, aliases, tensors, output_filter)
    try:
        call(message, timeout=60)
    except grpc.RpcError as exc:
        allowed = CLIENT_ERRORS | ({grpc.StatusCode.INTERNAL} if raw is not None else set())
        assert exc.code() in allowed, (message, exc.code(), exc.details())
        if exc.code() == grpc.StatusCode.INTERNAL:
            assert exc.details().startswith("Failed to parse the request")


def test_after_the_fuzz_the_server_serves_and_its_memory_is_bounded(
    standin, memory_before, saved_model_outputs
):
    rows = np.random.default_rng(5).integers(0, 20000, size=(3, 200)).tolist()
    response = requests.post(standin.rest_url + PREDICT, json={"instances": rows}, timeout=60)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["predictions"], saved_model_outputs(rows), atol=1e-5)
    grown = rss_bytes(standin) - memory_before
    assert grown < 300 * MB, f"RSS grew by {grown / MB:.0f} MB during the fuzz pass"
    log = standin.log()
    assert "Traceback" not in log
