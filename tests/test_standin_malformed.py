"""Every malformed or hostile request gets a client error, never a 500 or a traceback.

REST: a 4xx with a JSON ``{"error": ...}`` body and the stand-in's ``Server`` header, also for
what aiohttp answers by itself (malformed HTTP, broken chunked or gzip bodies). gRPC: TF
Serving's status codes. Each case is one row of a table; afterwards the server still answers a
normal predict and its log holds no traceback.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

PREDICT = "/v1/models/model:predict"
ROW = [1] * 200
MAX_BODY = 64 * 1024 * 1024  # the stand-in's default --rest_api_max_body_bytes


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def over_the_body_limit():
    """A chunked body (no Content-Length) a little over the default limit, 1 MiB at a time."""
    chunk = b" " * (1024 * 1024)
    yield b'{"instances": [' + chunk
    for _ in range(MAX_BODY // len(chunk)):
        yield chunk


# (id, body, extra headers, HTTP status, fragment of the error)
REST_CASES = [
    (
        "10,000 rows",
        json.dumps({"instances": [ROW] * 10_000}).encode(),
        {},
        400,
        "Request of 10000 rows is larger than the stand-in's limit of 1000 rows "
        "(--max_request_rows)",
    ),
    (
        "300,000 one-value rows in 1.2 MB",
        b'{"instances": [' + b",".join([b"[1]"] * 300_000) + b"]}",
        {},
        400,
        "Request of 300000 rows",
    ),
    (
        "rows narrower than the signature",
        json.dumps({"instances": [[1]] * 5}).encode(),
        {},
        400,
        "Input input_1 has shape [5,1], which does not match the signature's shape [-1,200]",
    ),
    (
        "rows wider than the signature",
        json.dumps({"instances": [[1] * 201] * 2}).encode(),
        {},
        400,
        "has shape [2,201]",
    ),
    (
        "columnar narrow rows",
        json.dumps({"inputs": [[1]] * 5}).encode(),
        {},
        400,
        "has shape [5,1]",
    ),
    (
        "a scalar input",
        json.dumps({"inputs": 7}).encode(),
        {},
        400,
        "has shape []",
    ),
    (
        "instances nested 65 levels",
        b'{"instances": ' + nested(65) + b"}",
        {},
        400,
        "has 65 dimensions; the stand-in takes at most 64",
    ),
    ("instances nested 300 levels", b'{"instances": ' + nested(300) + b"}", {}, 400, ""),
    ("instances nested 990 levels", b'{"instances": ' + nested(990) + b"}", {}, 400, ""),
    (
        "second row nested 990 levels",
        b'{"instances": [' + json.dumps(ROW).encode() + b"," + nested(990) + b"]}",
        {},
        400,
        "",
    ),
    (
        "nested 100,000 levels",
        b'{"instances": ' + nested(100_000) + b"}",
        {},
        400,
        "nested too deeply",
    ),
    (
        "a 5,000-digit integer",
        b'{"instances": [[' + b"9" * 5000 + b"]]}",
        {},
        400,
        "JSON Parse error: Number too big to be stored in double. at offset: 16",
    ),
    (
        "a 400-digit integer for int32",
        b'{"instances": [[' + b"9" * 400 + b"," + b"1," * 198 + b"1]]}",
        {},
        400,
        "is not of expected type: int32",
    ),
    (
        "NaN for int32",
        b'{"instances": [[NaN' + b",1" * 199 + b"]]}",
        {},
        400,
        "is not of expected type: int32",
    ),
    ("bytes that are not UTF-8", b'{"instances": [[\xff\xfe]]}', {}, 400, "JSON Parse error"),
    (
        "chunked body over --rest_api_max_body_bytes",
        "chunked",
        {},
        413,
        f"Request body is larger than the stand-in's limit of {MAX_BODY} bytes "
        "(--rest_api_max_body_bytes)",
    ),
    (
        "gzip body over the limit once decompressed",
        gzip.compress(b'{"instances": [' + b" " * (MAX_BODY + 1024) + b"]}"),
        {"Content-Encoding": "gzip"},
        413,
        "(--rest_api_max_body_bytes)",
    ),
    (
        "a gzip body that is not gzip",
        b"not gzip at all",
        {"Content-Encoding": "gzip"},
        400,
        "Malformed request body: Can not decode content-encoding: gzip",
    ),
    (
        "declared Content-Length over the limit",
        b"{}",
        {"Content-Length": str(MAX_BODY + 1)},
        413,
        f"Request body of {MAX_BODY + 1} bytes is larger",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [case[1:] for case in REST_CASES],
    ids=[case[0] for case in REST_CASES],
)
def test_rest_refuses_with_a_json_client_error(standin, body, headers, status, fragment):
    if body == "chunked":
        body = over_the_body_limit()
    if "Content-Length" in headers:
        response = raw_http(
            standin,
            b"POST "
            + PREDICT.encode()
            + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + headers["Content-Length"].encode()
            + b"\r\n\r\n"
            + body,
        )
        assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:200]
        assert b"Server: tfsload-standin/" in response
        assert fragment.encode() in response
        return
    response = requests.post(standin.rest_url + PREDICT, data=body, headers=headers, timeout=120)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Server"].startswith("tfsload-standin/")
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["error"]


def raw_http(standin, request: bytes, timeout: float = 30) -> bytes:
    """Send bytes as they are; the answer, read up to its Content-Length."""
    port = int(standin.rest_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, found, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)", head)
            if found and length and len(body) >= int(length.group(1)):
                break
    return answer


PROTOCOL_CASES = [
    ("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40),
    ("unknown method", b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("HTTP version 9", b"GET /v1/models/model HTTP/9.9\r\nHost: x\r\n\r\n"),
    (
        "broken chunk size",
        b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    ),
    ("header line too long", b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n"),
    (
        "both Content-Length and chunked",
        b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
]


@pytest.mark.parametrize(
    "request_bytes", [case[1] for case in PROTOCOL_CASES], ids=[case[0] for case in PROTOCOL_CASES]
)
def test_malformed_http_is_a_json_400_with_the_stand_ins_server_header(standin, request_bytes):
    answer = raw_http(standin, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", answer[:300]
    assert b"\r\nServer: tfsload-standin/" in head
    assert b"aiohttp" not in head
    assert json.loads(body)["error"].startswith("Malformed HTTP request: ")


def test_clients_that_go_away_are_not_an_error(standin, saved_model_outputs):
    port = int(standin.rest_url.rsplit(":", 1)[1])
    head = b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    full = json.dumps({"instances": [ROW] * 200}).encode()
    for sent in (head % 1000 + b'{"inst', head % len(full) + full):  # mid-body; mid-predict
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(sent)
            time.sleep(0.05)
    small = requests.post(standin.rest_url + PREDICT, json={"instances": [ROW]}, timeout=60)
    assert small.status_code == 200
    np.testing.assert_allclose(small.json()["predictions"], saved_model_outputs([ROW]), atol=1e-5)


def tensor_request(dims, dtype=3, content=None, int_val=None, strings=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    tensor = request.inputs["input_1"]
    tensor.dtype = dtype
    for size in dims:
        tensor.tensor_shape.dim.add().size = size
    if content is not None:
        tensor.tensor_content = content
    if int_val is not None:
        tensor.int_val.extend(int_val)
    if strings is not None:
        tensor.string_val.extend(strings)
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT
PARSING = "tensor parsing error: input_1"
# (id, request, code, fragment of the details)
GRPC_CASES = [
    (
        "a 40-byte message declaring 50,000x200",
        tensor_request([50_000, 200], int_val=[1]),
        INVALID,
        "Request of 50000 rows is larger than the stand-in's limit of 1000 rows",
    ),
    (
        "tensor_content not a multiple of the element size",
        tensor_request([1, 200], content=b"x" * 799),
        INVALID,
        PARSING,
    ),
    (
        "tensor_content shorter than the shape",
        tensor_request([2, 200], content=b"\0" * 800),
        INVALID,
        PARSING,
    ),
    ("dimensions of 2^40", tensor_request([2**40, 200], int_val=[1]), INVALID, "2^40"),
    ("2^40 x 2^40 elements", tensor_request([2**40, 2**40], int_val=[1]), INVALID, PARSING),
    ("a negative dimension", tensor_request([-5, 200], int_val=[1]), INVALID, PARSING),
    ("more values than elements", tensor_request([1, 2], int_val=[1, 2, 3]), INVALID, PARSING),
    (
        "rows narrower than the signature",
        tensor_request([5, 1], int_val=[1]),
        INVALID,
        "Input input_1 has shape [5,1], which does not match the signature's shape [-1,200]",
    ),
    ("rank 3", tensor_request([1, 200, 1], int_val=[1]), INVALID, "has shape [1,200,1]"),
    (
        "strings for int32",
        tensor_request([1, 200], dtype=7, strings=[b"x"]),
        INVALID,
        "Expects arg[0] to be int32 but string is provided",
    ),
]


@pytest.fixture(scope="module")
def channel(standin):
    with grpc.insecure_channel(standin.grpc_target) as channel:
        yield channel


@pytest.mark.parametrize(
    ("request_message", "code", "fragment"),
    [case[1:] for case in GRPC_CASES],
    ids=[case[0] for case in GRPC_CASES],
)
def test_grpc_refuses_with_tf_servings_codes(channel, request_message, code, fragment):
    assert len(request_message.SerializeToString()) < 1000  # small messages, big claims
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request_message, timeout=60)
    assert refused.value.code() == code
    if fragment == "2^40":
        fragment = f"Request of {2**40} rows"
    assert fragment in refused.value.details()


def test_bytes_that_are_not_a_predict_request_are_internal_as_in_grpc_cpp(channel):
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as refused:
        raw(b"\xff\xff\xff", timeout=60)
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    assert refused.value.details().startswith(
        "Failed to parse the request as tensorflow.serving.PredictRequest"
    )


def test_after_all_of_it_a_normal_predict_succeeds_and_the_log_has_no_traceback(
    standin, channel, saved_model_outputs
):
    rows = np.random.default_rng(3).integers(0, 20000, size=(5, 200)).astype(np.int32)
    request = tensor_request([5, 200], content=rows.tobytes())
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    output = stub.Predict(request, timeout=60).outputs["output_0"]
    np.testing.assert_allclose(
        np.array(output.float_val).reshape(5, 2), saved_model_outputs(rows), atol=1e-5
    )
    log = standin.log()
    assert "Traceback" not in log
    assert "Error handling request" not in log
