"""The stand-in's REST API against TF Serving's: bodies, messages, codes, headers, metrics."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import requests

from tests.standin_process import metric_value

STATUS_TEXT = """{
 "model_version_status": [
  {
   "version": "1",
   "state": "AVAILABLE",
   "status": {
    "error_code": "OK",
    "error_message": ""
   }
  }
 ]
}"""


@pytest.fixture(scope="module")
def instances(exported_model) -> list[list[int]]:
    return json.loads(exported_model.instances_path.read_text())


@pytest.fixture(scope="module")
def random_rows() -> list[list[int]]:
    return np.random.default_rng(0).integers(0, 20000, size=(7, 200)).tolist()


def post(standin, path: str, body) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{standin.rest_url}{path}", data=data, timeout=60)


def counter(standin, name: str, **labels) -> float:
    return metric_value(standin.metrics_url, name, **labels)


def test_status_is_tf_servings_json_text(standin):
    for path in ("/v1/models/model", "/v1/models/model/versions/1", "/v1/MODELS/model"):
        response = requests.get(f"{standin.rest_url}{path}", timeout=30)
        assert response.status_code == 200
        assert response.text == STATUS_TEXT
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Server"].startswith("tfsload-standin/")


def test_metadata_describes_the_signature(standin):
    response = requests.get(f"{standin.rest_url}/v1/models/model/metadata", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["model_spec"] == {"name": "model", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["input_1"]["dtype"] == "DT_INT32"
    dims = signature["inputs"]["input_1"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "200"]
    assert signature["outputs"]["output_0"]["dtype"] == "DT_FLOAT"


def test_row_predict_equals_the_saved_model(standin, instances, random_rows, saved_model_outputs):
    for rows in (instances, random_rows, instances[:1]):
        response = post(standin, "/v1/models/model:predict", {"instances": rows})
        assert response.status_code == 200, response.text
        assert response.headers["Server"].startswith("tfsload-standin/")
        assert response.text.startswith('{\n    "predictions": [[')  # TF Serving's layout
        predictions = np.array(response.json()["predictions"])
        np.testing.assert_allclose(predictions, saved_model_outputs(rows), atol=1e-5)


def test_columnar_predict_and_explicit_version_and_signature(
    standin, instances, saved_model_outputs
):
    body = {"signature_name": "serving_default", "inputs": instances}
    response = post(standin, "/v1/models/model/versions/1:predict", body)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["outputs"]
    np.testing.assert_allclose(
        np.array(response.json()["outputs"]), saved_model_outputs(instances), atol=1e-5
    )


def test_floats_are_written_as_tf_serving_writes_them(standin, instances):
    """WriteDecimal(): %.6g when that reads back as the same float32, else %.9g."""
    text = post(standin, "/v1/models/model:predict", {"instances": instances}).text
    tokens = re.findall(r"-?\d[\d.]*(?:e[-+]?\d+)?", text)
    assert len(tokens) == 2 * len(instances)
    for token in tokens:
        value = np.float32(token)
        expected = f"{value:.6g}"
        if np.float32(expected) != value:
            expected = f"{value:.9g}"
        if "." not in expected and "e" not in expected:
            expected += ".0"
        assert token == expected


def ragged(instances):
    return {"instances": [instances[0], instances[1][:100]]}


ERROR_CASES = [
    # (id, path, body, HTTP status, expected message: exact, or ("in", fragment))
    ("empty body", ":predict", b"", 400, "JSON Parse error: The document is empty"),
    ("bad json", ":predict", b'{"instances": [1', 400, ("in", "JSON Parse error: ")),
    ("bad json, unknown model", "foo:predict", b"{", 400, ("in", "JSON Parse error: ")),
    ("not an object", ":predict", b"[1, 2]", 400, "JSON Value: [1, 2] Is not object"),
    ("no key", ":predict", {"rows": [1]}, 400, "Missing 'inputs' or 'instances' key"),
    ("empty instances", ":predict", {"instances": []}, 400, ("in", "No values in 'instances'")),
    (
        "float for int32",
        ":predict",
        {"instances": [[1.5] + [1] * 199]},
        400,
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON Value: 1.5 Type: Number is not of expected type: int32",
    ),
    (
        "bool for int32",
        ":predict",
        {"instances": [[True] * 200]},
        400,
        ("in", "JSON Value: true Type: True is not of expected type: int32"),
    ),
    (
        "ragged rows",
        ":predict",
        "ragged",
        400,
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 200 but got: 100",
    ),
    ("short rows", ":predict", {"instances": [[1] * 100] * 2}, 400, ("in", "")),
    (
        "out of vocabulary",
        ":predict",
        {"instances": [[25000] * 200]},
        400,
        ("in", "25000 is not in [0, 20000)"),
    ),
    (
        "both keys",
        ":predict",
        {"instances": [[1] * 200], "inputs": [[1] * 200]},
        400,
        ("in", "Not formatted correctly expecting only one of 'inputs' or 'instances' keys"),
    ),
    (
        "unknown signature",
        ":predict",
        {"signature_name": "x", "instances": [[1] * 200]},
        400,
        'Serving signature name: "x" not found in signature def',
    ),
    ("unknown verb", ":foo", {}, 400, "Malformed request: POST /v1/models/model:foo"),
    (
        "unknown model",
        "foo:predict",
        {"instances": [[1] * 200]},
        404,
        "Servable not found for request: Latest(foo)",
    ),
    (
        "unknown version",
        "/versions/3:predict",
        {"instances": [[1] * 200]},
        404,
        "Servable not found for request: Specific(model, 3)",
    ),
    (
        "unknown label",
        "/labels/stable:predict",
        {"instances": [[1] * 200]},
        400,
        "Unrecognized servable version label: stable",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_predict_errors_match_tf_serving(standin, instances, path, body, status, message):
    url = "/v1/models/model" + path if not path.startswith("foo") else "/v1/models/" + path
    response = post(standin, url, ragged(instances) if body == "ragged" else body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Server"].startswith("tfsload-standin/")
    assert response.text.startswith('{\n    "error": ')
    error = response.json()["error"]
    if isinstance(message, tuple):
        assert message[1] in error
    else:
        assert error == message


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v1/models/foo", 404, "Could not find any versions of model foo"),
        ("GET", "/v1/models/model/versions/2", 404, "Could not find version 2 of model model"),
        ("GET", "/v1/models/foo/metadata", 404, "Servable not found for request: Latest(foo)"),
        ("GET", "/v1/models", 400, "Missing model name in request."),
        ("PUT", "/v1/models/model", 400, "Malformed request: PUT /v1/models/model"),
        (
            "DELETE",
            "/v1/models/model:predict",
            400,
            "Malformed request: DELETE /v1/models/model:predict",
        ),
    ],
)
def test_status_and_routing_errors(standin, method, path, status, message):
    response = requests.request(method, f"{standin.rest_url}{path}", timeout=30)
    assert response.status_code == status
    assert response.json() == {"error": message}


def test_paths_outside_v1_get_a_plain_html_404(standin):
    for path in ("/", "/healthz", "/v2/models/model", "/monitoring/other"):
        response = requests.get(f"{standin.rest_url}{path}", timeout=30)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "text/html"
        assert "<H1>Not Found</H1>" in response.text
        assert response.headers["Server"].startswith("tfsload-standin/")


def test_metrics_count_requests_with_tf_serving_names_and_labels(standin, instances):
    ok_before = counter(standin, ":tensorflow:serving:request_count_total", status="OK")
    missing_before = counter(
        standin, ":tensorflow:serving:request_count_total", model_name="foo", status="NOT_FOUND"
    )
    latency_before = counter(
        standin,
        ":tensorflow:serving:request_latency_count",
        model_name="model",
        API="predict",
        entrypoint="REST",
    )
    assert post(standin, "/v1/models/model:predict", {"instances": instances}).status_code == 200
    assert post(standin, "/v1/models/foo:predict", {"instances": instances}).status_code == 404
    assert counter(standin, ":tensorflow:serving:request_count_total", status="OK") >= ok_before + 1
    missing = counter(
        standin, ":tensorflow:serving:request_count_total", model_name="foo", status="NOT_FOUND"
    )
    assert missing == missing_before + 1
    latency = counter(
        standin,
        ":tensorflow:serving:request_latency_count",
        model_name="model",
        API="predict",
        entrypoint="REST",
    )
    assert latency == latency_before + 1

    text = requests.get(standin.metrics_url, timeout=30).text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert '\n:tensorflow:serving:request_count{model_name="foo",status="NOT_FOUND"} ' in text
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith(
            ':tensorflow:serving:request_latency_bucket{model_name="model",API="predict",'
            'entrypoint="REST",'
        )
    ]
    assert len(buckets) == 34  # 33 limits 10·1.8^i, then +Inf
    assert buckets[0].split("le=")[1].startswith('"10"') and '"+Inf"' in buckets[-1]
    assert "runtime_latency" in text and "_created" not in text and "# HELP" not in text
