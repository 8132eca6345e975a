"""The workload, in-process: instances files, requests fitted to a signature, answer checks.

What is sent and how answers are judged (the sample library) is plain Python: every file form,
every malformed file, every way instances can miss a signature, and every way an answer can be
wrong are checked here without Locust or a server; tests/test_models_any.py runs the same paths
end to end.
"""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest

from tfsload.core import protos
from tfsload.core.errors import ConfigError
from tfsload.core.instances import describe_value, read_instances
from tfsload.core.run_spec import Workload, from_values
from tfsload.generator import answers as answers_module
from tfsload.generator.answers import AnswerCheck, grpc_failure, shorten, transport_failure
from tfsload.generator.payload import build_payload
from tfsload.generator.signature import Signature, TensorSpec, from_signature_defs
from tfsload.generator.synthetic import generate
from tfsload.generator.tensors import tensor_proto, tensor_values

IMDB = Signature(
    "serving_default",
    {"input_1": TensorSpec("DT_INT32", (-1, 200))},
    {"output_0": TensorSpec("DT_FLOAT", (-1, 2))},
    "test",
)
REGRESSION = Signature(
    "serving_default",
    {"features": TensorSpec("DT_FLOAT", (-1, 3)), "extra": TensorSpec("DT_FLOAT", (-1, 2))},
    {"score": TensorSpec("DT_FLOAT", (-1, 1)), "parts": TensorSpec("DT_FLOAT", (-1, 2))},
    "test",
)
STRINGS = Signature(
    "serving_default",
    {"text": TensorSpec("DT_STRING", (-1,))},
    {"length": TensorSpec("DT_INT32", (-1,)), "upper": TensorSpec("DT_STRING", (-1,))},
    "test",
)
ROWS = [[0.25, 0.75]] * 5
REGRESSION_ROWS = [
    {"features": [1, 2.5, 3], "extra": [0.5, 1]},
    {"features": [4, 5, 6], "extra": [1, 1]},
]


def test_no_locust_or_gevent_in_this_process():
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules


def write(tmp_path, content, name: str = "instances.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def grpc_message(request):
    return protos.load().PredictRequest.FromString(request.grpc_request)


def sent(request, name: str) -> np.ndarray:
    """The tensor a request sends to input ``name`` over gRPC, as an array."""
    tensor = grpc_message(request).inputs[name]
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    dtype = protos.load().TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    values = tensor_values(tensor, dtype.values_by_number[tensor.dtype].name, shape)
    return np.array(values, dtype=object).reshape(shape)


# --- instances files ----------------------------------------------------------------------------


def test_the_imdb_rows_become_int32_tensors_and_the_same_json_without_a_signature(tmp_path):
    rows = [[0] * 190 + list(range(10)) for _ in range(5)]
    path = write(tmp_path, rows)
    payload = build_payload(Workload(model_name="imdb", instances_file=str(path)))
    (request,) = payload.requests
    assert request.rows == 5 and request.rest_path == "/v1/models/imdb:predict"
    assert json.loads(request.rest_body) == {"signature_name": "serving_default", "instances": rows}
    message = grpc_message(request)
    assert message.model_spec.name == "imdb"
    assert message.model_spec.signature_name == "serving_default"
    tensor = message.inputs["input_1"]  # the IMDB export's input name, without metadata
    assert tensor.dtype == protos.dtype_number("DT_INT32")
    assert [d.size for d in tensor.tensor_shape.dim] == [5, 200]
    assert np.frombuffer(tensor.tensor_content, "<i4").reshape(5, 200).tolist() == rows
    assert payload.next() is payload.next()  # one request: always the same


def test_every_file_form_makes_the_same_tensors(tmp_path):
    features = [[1, 2.5, 3], [4, 5, 6]]
    extra = [[0.5, 1], [1, 1]]
    forms = {
        "row objects": REGRESSION_ROWS,
        "row body": {"instances": REGRESSION_ROWS},
        "columnar body": {"signature_name": "serving_default",
                          "inputs": {"features": features, "extra": extra}},
    }  # fmt: skip
    for form, content in forms.items():
        (request,) = build_payload(
            Workload(instances_file=str(write(tmp_path, content))), REGRESSION
        ).requests
        assert request.rows == 2, form
        assert request.columnar == (form == "columnar body")
        assert sent(request, "features").tolist() == features, form
        assert sent(request, "extra").tolist() == extra, form
        body = json.loads(request.rest_body)
        key = "inputs" if request.columnar else "instances"
        original = content if isinstance(content, list) else content.get(key)
        assert body == {"signature_name": "serving_default", key: original}, form


def test_a_json_lines_pool_is_cycled_and_each_request_keeps_its_rows(tmp_path):
    lines = [
        json.dumps(REGRESSION_ROWS),
        "",  # blank lines are skipped
        json.dumps({"instances": REGRESSION_ROWS[:1]}),
        json.dumps({"inputs": {"features": [[0, 0, 0]] * 3, "extra": [[1, 2]] * 3}}),
    ]
    path = write(tmp_path, "\n".join(lines), "pool.jsonl")
    payload = build_payload(Workload(instances_file=str(path)), REGRESSION)
    assert [r.rows for r in payload.requests] == [2, 1, 3]
    assert [payload.next().rows for _ in range(7)] == [2, 1, 3, 2, 1, 3, 2]
    assert [r.context for r in payload.requests] == [{"rows": 2}, {"rows": 1}, {"rows": 3}]
    assert read_instances(path).mean_rows == 2
    same = write(tmp_path, "\n".join(lines), "pool.json")  # found out from the content too
    assert [r.rows for r in read_instances(same).requests] == [2, 1, 3]


def test_rows_per_request_cuts_or_repeats_every_form(tmp_path):
    pool = write(tmp_path, f"{json.dumps(REGRESSION_ROWS)}\n"
                 f"{json.dumps({'inputs': {'features': [[9, 9, 9]], 'extra': [[1, 1]]}})}\n",
                 "pool.jsonl")  # fmt: skip
    payload = build_payload(Workload(instances_file=str(pool), rows_per_request=5), REGRESSION)
    first, second = payload.requests
    assert (first.rows, second.rows) == (5, 5)
    assert [row[0] for row in sent(first, "features").tolist()] == [1, 4, 1, 4, 1]
    assert sent(second, "features").tolist() == [[9, 9, 9]] * 5
    assert len(json.loads(second.rest_body)["inputs"]["extra"]) == 5
    cut = build_payload(Workload(instances_file=str(pool), rows_per_request=1), REGRESSION)
    assert [r.rows for r in cut.requests] == [1, 1]


def test_strings_and_bytes_go_as_text_or_b64_in_json_and_as_bytes_in_grpc(tmp_path):
    raw = b"\xff\x00binary"
    rows = ["hello", {"b64": base64.b64encode(raw).decode()}]
    (request,) = build_payload(
        Workload(instances_file=str(write(tmp_path, rows))), STRINGS
    ).requests
    assert json.loads(request.rest_body)["instances"] == rows
    assert sent(request, "text").tolist() == [b"hello", raw]
    assert grpc_message(request).inputs["text"].dtype == protos.dtype_number("DT_STRING")


def test_values_take_the_signatures_dtypes(tmp_path):
    signature = Signature(
        "serving_default",
        {name: TensorSpec(dtype, (-1, 2)) for name, dtype in [
            ("h", "DT_HALF"), ("d", "DT_DOUBLE"), ("i8", "DT_INT8"), ("u16", "DT_UINT16"),
            ("u64", "DT_UINT64"), ("b", "DT_BOOL"), ("i64", "DT_INT64"),
        ]},
        {}, "test",
    )  # fmt: skip
    row = {"h": [1, 2.5], "d": [1e300, 2], "i8": [-128, 127], "u16": [65535, 0],
           "u64": [2**64 - 1, 0], "b": [True, False], "i64": [-(2**63), 5]}  # fmt: skip
    path = write(tmp_path, [row])
    (request,) = build_payload(Workload(instances_file=str(path)), signature, rest=False).requests
    message = grpc_message(request)
    for name, spec in signature.inputs.items():
        assert message.inputs[name].dtype == protos.dtype_number(spec.dtype), name
        assert sent(request, name).tolist() == [row[name]], name
    with pytest.raises(ConfigError, match="input 'h' is DT_HALF, which TF Serving's REST API"):
        build_payload(Workload(instances_file=str(path)), signature, rest=True)


def test_without_a_signature_values_decide_the_dtypes(tmp_path):
    row = {"small": [1, 2], "big": [1, 2**40], "f": [1, 0.5], "b": [True], "s": ["x"]}
    (request,) = build_payload(Workload(instances_file=str(write(tmp_path, [row])))).requests
    dtypes = {name: t.dtype for name, t in grpc_message(request).inputs.items()}
    number = protos.dtype_number
    assert dtypes == {"small": number("DT_INT32"), "big": number("DT_INT64"),
                      "f": number("DT_FLOAT"), "b": number("DT_BOOL"),
                      "s": number("DT_STRING")}  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{", "not JSON"),
        ("[1, NaN]", "not JSON (NaN is not JSON)"),
        ("[]", "must be a non-empty JSON list of rows"),
        ('"rows"', "must be a non-empty JSON list of rows"),
        ("[[1, 2], [3]]", "item 1 has shape [1], item 0 [2]"),
        ("[[1, 2], 3]", "item 1 has shape [], item 0 [2]"),
        ("[[1, null]]", "null is not a tensor value"),
        ('[[1, "a"]]', "mixes int and string values"),
        ("[[true, 1]]", "mixes bool and int values"),
        ("[[[]]]", "an empty list"),
        ('[{"a": [1]}, [2]]', "row 1 is a value, row 0 an object"),
        ('[{"a": [1]}, {"b": [2]}]', "row 1 has inputs b; row 0 has a"),
        ('[{"a": {"x": 1}}]', "input 'a': an object where a value belongs"),
        ('[{"b64": "***"}]', "is not base64"),
        ('{"instances": [[1]], "inputs": [[1]]}', "either 'instances' or 'inputs'"),
        ('{"rows": [[1]]}', "unknown key 'rows'"),
        ('{"signature_name": "other", "instances": [[1]]}',
         "the body calls signature 'other' and this run 'serving_default'"),
        ('{"inputs": {"a": [[1]], "b": [[1], [2]]}}', "different row counts (a 1, b 2)"),
        ('{"inputs": {"a": 3}}', "input 'a' must be a non-empty list"),
        ('{"inputs": {}}', "'inputs' is an empty object"),
        ("[[1]]\n{oops\n", "line 2: not JSON"),
    ],
)  # fmt: skip
def test_malformed_instances_files_are_named(tmp_path, content, message):
    path = tmp_path / "instances.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        read_instances(path)
    assert str(caught.value).startswith(f"--instances-file: {path}")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_empty_json_lines_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no requests in it"):
        read_instances(write(tmp_path, "\n\n", "empty.jsonl"))


def test_describe_value_walks_nested_lists():
    assert describe_value([[1, 2], [3, 4]]) == ("int", (2, 2), 1, 4)
    assert describe_value([[1, 2.5]])[:2] == ("float", (1, 2))
    assert describe_value([{"b64": "AA=="}, "x"])[:2] == ("string", (2,))
    assert describe_value(7) == ("int", (), 7, 7)
    assert describe_value([[[1, 2]], [[3, 4]]]) == ("int", (2, 1, 2), 1, 4)
    assert describe_value([[True], [False]])[:2] == ("bool", (2, 1))
    with pytest.raises(ValueError, match=r"item 1 has shape \[1, 1\], item 0 \[1, 2\]"):
        describe_value([[[1, 2]], [[3]]])


# --- instances against the signature ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"features": [1, 2, 3, 4], "extra": [0.5, 1]}],
         "input 'features' is int [1, 4], signature 'serving_default' has DT_FLOAT [-1, 3] "
         "(shapes differ)"),
        ([{"features": ["a", "b", "c"], "extra": [1, 1]}],
         "input 'features' is string [1, 3], signature 'serving_default' has DT_FLOAT [-1, 3] "
         "(string values do not convert to DT_FLOAT)"),
        ([{"features": [1, 2, 3]}],
         "input 'extra' of signature 'serving_default' (DT_FLOAT [-1, 2]) is missing"),
        ([{"features": [1, 2, 3], "extra": [1, 1], "more": [1]}],
         "input 'more' is not in signature 'serving_default' (its inputs: features DT_FLOAT "
         "[-1, 3], extra DT_FLOAT [-1, 2])"),
        ([[1, 2, 3]], "plain rows feed one input, and signature 'serving_default' has 2"),
    ],
)  # fmt: skip
def test_instances_that_miss_the_signature_name_the_input_and_both_sides(tmp_path, content,
                                                                         message):  # fmt: skip
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        build_payload(Workload(instances_file=str(path)), REGRESSION)
    assert str(caught.value).startswith(f"--instances-file: {path}: {message}")


def test_int_values_must_fit_the_dtype_and_ints_must_not_be_floats(tmp_path):
    small = Signature("serving_default", {"x": TensorSpec("DT_UINT8", (-1, 2))}, {}, "test")
    with pytest.raises(ConfigError, match=r"values -1\.\.300 do not fit DT_UINT8 \(0\.\.255\)"):
        build_payload(Workload(instances_file=str(write(tmp_path, [[300, -1]]))), small)
    with pytest.raises(ConfigError, match="float values do not convert to DT_INT32"):
        build_payload(Workload(instances_file=str(write(tmp_path, [[1.5] * 200]))), IMDB)


def test_plain_rows_feed_the_named_or_the_only_input(tmp_path):
    path = write(tmp_path, [[1, 2, 3]])
    only = Signature("serving_default", {"x": TensorSpec("DT_FLOAT", (-1, 3))}, {}, "test")
    (request,) = build_payload(Workload(instances_file=str(path)), only).requests
    assert list(grpc_message(request).inputs) == ["x"]
    with pytest.raises(ConfigError, match="--input-name: input 'y' is not in signature"):
        build_payload(Workload(instances_file=str(path), input_name="y"), only)
    (request,) = build_payload(Workload(instances_file=str(path), input_name="y")).requests
    assert list(grpc_message(request).inputs) == ["y"]  # no signature: the name as given


def test_a_pool_names_the_line_of_the_request_that_misses(tmp_path):
    lines = [json.dumps(REGRESSION_ROWS), json.dumps([{"features": [1, 2], "extra": [1, 1]}])]
    path = write(tmp_path, "\n".join(lines), "pool.jsonl")
    with pytest.raises(ConfigError, match=r"pool.jsonl: line 2: input 'features' is int \[1, 2\]"):
        build_payload(Workload(instances_file=str(path)), REGRESSION)


def test_versions_and_labels_go_into_the_path_and_the_model_spec(tmp_path):
    path = write(tmp_path, [[1] * 200])
    (numbered,) = build_payload(Workload(instances_file=str(path), model_version="3")).requests
    assert numbered.rest_path == "/v1/models/model/versions/3:predict"
    assert grpc_message(numbered).model_spec.version.value == 3
    (labelled,) = build_payload(Workload(instances_file=str(path), model_version="canary")).requests
    assert labelled.rest_path == "/v1/models/model/labels/canary:predict"
    assert grpc_message(labelled).model_spec.version_label == "canary"


# --- generated instances ------------------------------------------------------------------------


def test_generated_requests_follow_the_signature_and_the_seed():
    ints = Signature(
        "serving_default",
        {"ids": TensorSpec("DT_INT64", (-1, 4)), "mask": TensorSpec("DT_BOOL", (-1, 4)),
         "text": TensorSpec("DT_STRING", (-1,)), "x": TensorSpec("DT_HALF", (-1, 2))},
        {}, "test",
    )  # fmt: skip
    workload = Workload(generate_instances=6, seed=3, int_min=10, int_max=12)
    (request,) = build_payload(workload, ints, rest=False).requests
    assert request.rows == 6
    ids = sent(request, "ids")
    assert ids.shape == (6, 4) and set(ids.ravel()) <= {10, 11, 12}
    assert sent(request, "mask").shape == (6, 4)
    assert all(isinstance(v, bytes) and v.isalpha() for v in sent(request, "text").ravel())
    again = build_payload(workload, ints, rest=False).requests[0]
    assert again.grpc_request == request.grpc_request  # same seed, same request
    other = build_payload(Workload(generate_instances=6, seed=4), ints, rest=False).requests[0]
    assert other.grpc_request != request.grpc_request
    rows = json.loads(build_payload(workload, REGRESSION).requests[0].rest_body)["instances"]
    assert len(rows) == 6 and set(rows[0]) == {"features", "extra"}


def test_generated_requests_keep_rows_per_request():
    workload = Workload(generate_instances=2, rows_per_request=7)
    assert build_payload(workload, REGRESSION).requests[0].rows == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TensorSpec("DT_FLOAT", (-1, -1)), "its inner size is open"),
        (TensorSpec("DT_FLOAT", None), "has an unknown shape"),
        (TensorSpec("DT_FLOAT", ()), "has no rows (a scalar)"),
        (TensorSpec("DT_FLOAT", (1, 3)), "takes 1 rows per request, not 4"),
        (TensorSpec("DT_UINT8", (-1,)), "--int-min/--int-max: 300..400 holds no DT_UINT8 value"),
        (TensorSpec("DT_COMPLEX64", (-1,)), "is DT_COMPLEX64, which tfsload cannot send"),
    ],
)
def test_what_cannot_be_generated_is_named(spec, message):
    signature = Signature("serving_default", {"x": spec}, {}, "test")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(signature, Workload(generate_instances=4, int_min=300, int_max=400))


def test_generating_needs_a_signature():
    with pytest.raises(ConfigError, match="--generate-instances: needs the model's signature"):
        build_payload(Workload(generate_instances=4), None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model_version": "a/b"}, "neither a version number nor a label"),
        ({"model_version": str(2**63)}, "larger than a version can be"),
        ({"int_min": 5, "int_max": 4}, "workload.int_max: 4 is below int_min 5"),
        ({"check_answers": "exact"}, "must be one of signature, probabilities"),
        ({"generate_instances": -1}, "must be at least 0"),
    ],
)
def test_bad_workload_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        from_values({"workload": values})


# --- the signature ------------------------------------------------------------------------------


def test_the_signature_comes_out_of_the_metadata_map():
    messages = protos.load()
    defs = messages.SignatureDefMap()
    chosen = defs.signature_def["serving_default"]
    chosen.inputs["x"].dtype = protos.dtype_number("DT_INT64")
    for size in (-1, 4):
        chosen.inputs["x"].tensor_shape.dim.add().size = size
    chosen.outputs["y"].dtype = protos.dtype_number("DT_FLOAT")
    chosen.outputs["y"].tensor_shape.unknown_rank = True
    signature = from_signature_defs(defs, Workload(), "grpc://here")
    assert signature.inputs == {"x": TensorSpec("DT_INT64", (-1, 4))}
    assert signature.outputs == {"y": TensorSpec("DT_FLOAT", None)}
    with pytest.raises(ConfigError, match=r"has no signature 'other' \(it has: serving_default\)"):
        from_signature_defs(defs, Workload(signature_name="other"), "grpc://here")


# --- answers ------------------------------------------------------------------------------------


def rest(document) -> bytes:
    return json.dumps(document).encode()


def grpc_answer(outputs: dict) -> bytes:
    response = protos.load().PredictResponse()
    for name, (values, dtype) in outputs.items():
        response.outputs[name].CopyFrom(tensor_proto(np.asarray(values), dtype))
    return response.SerializeToString()


def typed_answer(values: np.ndarray) -> bytes:
    """output_0 in the typed float field, as TF Serving answers by default."""
    response = protos.load().PredictResponse()
    tensor = response.outputs["output_0"]
    tensor.dtype = protos.dtype_number("DT_FLOAT")
    for size in values.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.extend(values.ravel().tolist())
    return response.SerializeToString()


def test_imdb_answers_with_the_probabilities_check():
    check = AnswerCheck(IMDB.outputs, "probabilities")
    assert check.rest_failure(200, rest({"predictions": ROWS}), 5) is None
    assert check.grpc_reply_failure(grpc_answer({"output_0": (ROWS, "DT_FLOAT")}), 5) is None
    assert check.grpc_reply_failure(typed_answer(np.array(ROWS)), 5) is None
    assert check.rest_failure(200, rest({"predictions": [[1, 0]] * 5}), 5) is None  # "1" is float
    cases = {
        "output 'output_0': row 4 does not sum to 1": [[0.5, 0.5]] * 4 + [[0.5, 0.49]],
        "output 'output_0': row 0 has a value outside [0, 1]": [[1.5, -0.5]] * 5,
    }
    for problem, rows in cases.items():
        assert str(check.rest_failure(200, rest({"predictions": rows}), 5)) == (
            f"invalid response: {problem}"
        )
        answer = grpc_answer({"output_0": (rows, "DT_FLOAT")})
        assert str(check.grpc_reply_failure(answer, 5)) == f"invalid response: {problem}"
    assert check.rest_failure(200, rest({"predictions": [[0.5, 0.4995]] * 5}), 5) is None


def test_answers_of_the_wrong_shape_dtype_or_rows_name_the_output():
    check = AnswerCheck(REGRESSION.outputs)
    good_rows = [{"score": [1.0], "parts": [1.0, 2.0]}] * 2
    assert check.rest_failure(200, rest({"predictions": good_rows}), 2) is None
    columnar = {"outputs": {"score": [[1.0]] * 2, "parts": [[1.0, 2.0]] * 2}}
    assert check.rest_failure(200, rest(columnar), 2, columnar=True) is None
    good = {"score": ([[1.0]] * 2, "DT_FLOAT"), "parts": ([[1.0, 2.0]] * 2, "DT_FLOAT")}
    assert check.grpc_reply_failure(grpc_answer(good), 2) is None
    rest_cases = {
        "expected 2 rows, got 1": ({"predictions": good_rows[:1]}, False),
        "output 'parts' is missing": ({"predictions": [{"score": [1.0]}] * 2}, False),
        "unexpected output 'extra'": (
            {"predictions": [{**good_rows[0], "extra": [1]}] * 2}, False),
        "output 'parts' has shape [2, 3], signature says [-1, 2]": (
            {"predictions": [{"score": [1.0], "parts": [1.0, 2.0, 3.0]}] * 2}, False),
        "output 'score' has string values, signature says DT_FLOAT": (
            {"predictions": [{"score": ["a"], "parts": [1.0, 2.0]}] * 2}, False),
        "output 'score': expected 2 rows, got 3": (
            {"outputs": {"score": [[1.0]] * 3, "parts": [[1.0, 2.0]] * 2}}, True),
        "no predictions": ({"outputs": {}}, False),
        "output 'parts' has a value that is not finite": (
            {"predictions": [{"score": [1.0], "parts": [float("nan"), 2.0]}] * 2}, False),
    }  # fmt: skip
    for problem, (document, is_columnar) in rest_cases.items():
        failure = check.rest_failure(200, rest(document), 2, columnar=is_columnar)
        assert str(failure) == f"invalid response: {problem}"
    grpc_cases = {
        "output 'score' is DT_DOUBLE, signature says DT_FLOAT": {
            **good, "score": ([[1.0]] * 2, "DT_DOUBLE")},
        "output 'score': expected 2 rows, got 3": {**good, "score": ([[1.0]] * 3, "DT_FLOAT")},
        "output 'parts' has shape [2, 3], signature says [-1, 2]": {
            **good, "parts": ([[1.0, 2.0, 3.0]] * 2, "DT_FLOAT")},
        "output 'parts' is missing": {"score": good["score"]},
        "output 'score' has a value that is not finite": {
            **good, "score": ([[np.inf]] * 2, "DT_FLOAT")},
    }  # fmt: skip
    for problem, outputs in grpc_cases.items():
        assert str(check.grpc_reply_failure(grpc_answer(outputs), 2)) == (
            f"invalid response: {problem}"
        )
    assert (
        str(check.grpc_reply_failure(b"\xff\xff", 2)) == "invalid response: not a PredictResponse"
    )


def test_gRPC_values_must_fill_the_shape():
    response = protos.load().PredictResponse()
    tensor = response.outputs["output_0"]
    tensor.CopyFrom(tensor_proto(np.array(ROWS), "DT_FLOAT"))
    tensor.tensor_content = tensor.tensor_content[:-4]
    failure = AnswerCheck(IMDB.outputs).grpc_reply_failure(response.SerializeToString(), 5)
    assert str(failure) == "invalid response: output 'output_0': its values do not fill [5, 2]"


def test_strings_and_ints_are_checked_by_kind_and_shape():
    check = AnswerCheck(STRINGS.outputs)
    good = [{"length": 2, "upper": "AB"}, {"length": 1, "upper": {"b64": "QQ=="}}]
    assert check.rest_failure(200, rest({"predictions": good}), 2) is None
    wrong = [{"length": 2.5, "upper": "AB"}] * 2
    assert str(check.rest_failure(200, rest({"predictions": wrong}), 2)) == (
        "invalid response: output 'length' has float values, signature says DT_INT32"
    )
    answer = grpc_answer({"length": ([2, 1], "DT_INT32"), "upper": ([b"AB", b"A"], "DT_STRING")})
    assert check.grpc_reply_failure(answer, 2) is None


def test_without_a_signature_answers_need_the_rows_sent_and_finite_numbers():
    check = AnswerCheck(None)
    assert check.rest_failure(200, rest({"predictions": [[1.5, 2]] * 3}), 3) is None
    assert check.rest_failure(200, rest({"predictions": [{"a": 1, "b": [2]}] * 3}), 3) is None
    assert str(check.rest_failure(200, rest({"predictions": [[1.5]] * 2}), 3)) == (
        "invalid response: expected 3 rows, got 2"
    )
    assert str(check.rest_failure(200, rest({"outputs": {"a": [1, 2]}}), 3, columnar=True)) == (
        "invalid response: output 'a': expected 3 rows, got 2"
    )
    assert check.grpc_reply_failure(grpc_answer({"y": ([[1.0]] * 3, "DT_FLOAT")}), 3) is None
    assert str(check.grpc_reply_failure(grpc_answer({}), 3)) == "invalid response: no outputs"
    nan = grpc_answer({"y": ([[np.nan]] * 3, "DT_DOUBLE")})
    assert str(check.grpc_reply_failure(nan, 3)) == (
        "invalid response: output 'y' has a value that is not finite"
    )


def test_http_and_transport_failures_by_status_and_message():
    check = AnswerCheck(IMDB.outputs)
    missing = rest({"error": "Servable not found for request: Latest(foo)"})
    assert str(check.rest_failure(404, missing, 5)) == (
        "HTTP 404: Servable not found for request: Latest(foo)"
    )
    assert str(check.rest_failure(503, b"<html>busy</html>", 5)) == "HTTP 503"
    assert str(check.rest_failure(200, b"[]", 5)) == "invalid response: no predictions"
    failure = transport_failure(ConnectionRefusedError(111, "Connection refused"))
    assert repr(failure) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_grpc_failures_are_one_row_per_code():
    variants = [
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8500: refused",
        "failed to connect to all addresses; last error: UNKNOWN: ipv6:[::1]:8500: refused",
    ]
    names = {repr(grpc_failure("UNAVAILABLE", details)) for details in variants}
    assert names == {"UNAVAILABLE: failed to connect to all addresses"}
    assert repr(grpc_failure("RESOURCE_EXHAUSTED", "")) == "RESOURCE_EXHAUSTED"
    assert shorten("x" * 300).endswith("…") and len(shorten("x" * 300)) == 100
    assert shorten("indices[0,1] = 25000 is not in [0, 20000)\n\t [[{{node x}}]]") == (
        "indices[0,1] = 25000 is not in [0, 20000)"
    )


def test_answers_known_valid_by_their_bytes_are_still_checked_for_rows_and_status(monkeypatch):
    check = AnswerCheck(IMDB.outputs, "probabilities")
    good = grpc_answer({"output_0": (ROWS, "DT_FLOAT")})
    assert check.grpc_reply_failure(good, 5) is None
    assert (good, 5) in check._known
    assert check.grpc_reply_failure(good, 5) is None  # recognised
    assert str(check.grpc_reply_failure(good, 4)) == (
        "invalid response: output 'output_0': expected 4 rows, got 5"
    )
    wrong = grpc_answer({"output_0": ([[0.5, 0.6]] * 5, "DT_FLOAT")})
    for _ in range(2):  # a failure is never remembered
        assert "row 0 does not sum to 1" in str(check.grpc_reply_failure(wrong, 5))
    ok = rest({"predictions": ROWS})
    assert check.rest_failure(200, ok, 5) is None
    assert str(check.rest_failure(500, ok, 5)) == "HTTP 500"  # the status is part of what is known
    assert check.rest_failure(200, ok, 5, columnar=True) is not None  # and so is the form
    # Too large to keep, or the set is full: checked every time, and the set stops growing.
    other = grpc_answer({"output_0": ([[0.5, 0.5]] * 5, "DT_FLOAT")})
    monkeypatch.setattr(answers_module, "MAX_KNOWN_BYTES", len(other) - 1)
    assert check.grpc_reply_failure(other, 5) is None
    assert (other, 5) not in check._known
    monkeypatch.setattr(answers_module, "MAX_KNOWN_BYTES", len(other))
    monkeypatch.setattr(answers_module, "MAX_KNOWN_VALID", len(check._known))
    assert check.grpc_reply_failure(other, 5) is None
    assert (other, 5) not in check._known


# --- the experiment's [model] -------------------------------------------------------------------

EXPERIMENT = """
protocols = ["rest"]

[model]
name = "regression"
{model}

[load]
users = 2
requests = 10

[[targets]]
name = "remote"
rest = "http://127.0.0.1:8501"
"""


def experiment(tmp_path, model: str):
    from tfsload.orchestrate.experiment import load_experiment

    return load_experiment(write(tmp_path, EXPERIMENT.format(model=model), "exp.toml"))


def test_the_model_table_sets_the_workload(tmp_path):
    model = """version = 3
signature = "predict"
input_name = "x"
generate_instances = 4
seed = 7
int_min = 1
int_max = 5
check_answers = "probabilities"
metadata = true"""
    workload = experiment(tmp_path, model).spec().workload
    assert (workload.model_name, workload.model_version, workload.signature_name) == (
        "regression", "3", "predict",
    )  # fmt: skip
    assert (workload.generate_instances, workload.seed, workload.int_min, workload.int_max) == (
        4, 7, 1, 5,
    )  # fmt: skip
    assert workload.check_answers == "probabilities" and not workload.no_metadata
    assert workload.input_name == "x"
    off = experiment(tmp_path, 'instances = "pool.jsonl"\nmetadata = false').spec().workload
    assert off.no_metadata and off.instances_file == str(tmp_path / "pool.jsonl")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('metadata = "no"', "model.metadata: must be true or false"),
        ('check_answers = "exact"', "model.check_answers: must be one of signature, probabilities"),
        ('version = "a/b"', "model.version: 'a/b' is neither a version number nor a label"),
        ("generate_instances = -2", "model.generate_instances: must be at least 0"),
        ("int_min = 9\nint_max = 1", "model.int_max: 1 is below int_min 9"),
        ('instances = "x.json"\ngenerate_instances = 3',
         "model.generate_instances: give either instances or generate_instances"),
        ('sample = "x"', "model.sample: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_model_table_is_one_line_naming_the_key(tmp_path, model, message):
    with pytest.raises(ConfigError, match=message):
        experiment(tmp_path, model)


def test_the_runner_counts_rows_of_a_pool_and_of_generated_requests(tmp_path):
    from tfsload.orchestrate.runner import request_rows

    pool = [json.dumps(REGRESSION_ROWS), json.dumps({"instances": REGRESSION_ROWS[:1]})]
    write(tmp_path, "\n".join(pool), "pool.jsonl")
    assert request_rows(experiment(tmp_path, 'instances = "pool.jsonl"')) == 1.5
    assert request_rows(experiment(tmp_path, "generate_instances = 4")) == 4
    write(tmp_path, '{"instances": []}', "empty.json")
    with pytest.raises(ConfigError, match=r"model\.instances: .*empty\.json: instances: must be"):
        request_rows(experiment(tmp_path, 'instances = "empty.json"'))
