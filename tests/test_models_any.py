"""Any TF Serving model: RestUser and GrpcUser against stand-ins serving models that are not IMDB.

Real Locust runs (subprocesses) against the real stand-in serving the small models of
tests/model_zoo.py: several named inputs and outputs, strings, int64 and bool, every dtype the
APIs carry. Each run learns the signature from the server, sends instances in one of the file
forms (or made up from the signature) and must end with zero failures and the right counts.
Instances that do not fit the signature stop the run before any load (the stand-in counts no
request), and answers of the wrong shape, dtype or row count from a small server are failures
named by output. Nothing here asserts on speed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
from pathlib import Path

import pytest

from tests.answer_server import answer_server
from tests.conftest import run_cli
from tests.model_zoo import BUILDERS
from tests.raw_servers import make_certificates
from tests.standin_process import start_standin
from tests.test_locust_runs import (
    assert_counts_agree,
    clean_env,
    locust_command,
    run_locust,
    tfsload_lines,
)
from tfsload.generator.signature import Signature, TensorSpec

REQUESTS = 40
REGRESSION_ROWS = [
    {"features": [1, 2.5, 3], "extra": [0.5, 1]},
    {"features": [4, 5, 6], "extra": [1, 1]},
]
FORMS = {
    ("regression", "row objects"): ("instances.json", REGRESSION_ROWS, 2),
    ("regression", "pool of every form"): (
        "pool.jsonl",
        "\n".join([
            json.dumps(REGRESSION_ROWS),
            json.dumps({"instances": REGRESSION_ROWS[:1]}),
            json.dumps({"signature_name": "serving_default",
                        "inputs": {"features": [[0, 0, 0]] * 3, "extra": [[1, 2]] * 3}}),
        ]),
        2,
    ),
    ("strings", "plain rows, text and b64"): (
        "instances.json", ["hello", {"b64": base64.b64encode(b"\x00\xffbytes").decode()}], 2),
    ("strings", "columnar body"): ("body.json", {"inputs": ["a", "bb", "ccc"]}, 3),
    ("ints", "row body"): (
        "body.json",
        {"instances": [{"ids": [1, 2, 3, 2**40], "mask": [True, False, True, True]}]},
        1,
    ),
    ("dtypes", "row objects"): (
        "instances.json",
        [{"float64": [1e300, 2.5], "int8": [-128, 127], "int16": [300, -300],
          "uint8": [255, 0], "uint32": [2**32 - 1, 0], "uint64": [2**64 - 1, 0]}],
        1,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def zoo_model(tmp_path_factory):
    """The base path of a model of tests/model_zoo.py, built once a test asks for it."""
    base = tmp_path_factory.mktemp("zoo")
    paths = {}

    def build(name: str) -> Path:
        if name not in paths:
            paths[name] = BUILDERS[name](base)
        return paths[name]

    return build


@pytest.fixture(scope="module")
def zoo(zoo_model):
    """Each model of tests/model_zoo.py, served by its own stand-in once a test asks for it."""
    servers = {}
    with contextlib.ExitStack() as stack:

        def serve(name: str):
            if name not in servers:
                server = start_standin(zoo_model(name), model_name=name)
                servers[name] = stack.enter_context(server)
            return servers[name]

        yield serve


def both_users(server) -> list[str]:
    return ["RestUser", "GrpcUser", "--rest-host", server.rest_url, "--grpc-host",
            server.grpc_target, "--model-name", server.model_name]  # fmt: skip


def assert_all_answered(run, rows_per_request: float, classes=("rest", "grpc")) -> None:
    assert run.code == 0, run.stderr[-3000:]
    assert_counts_agree(run)
    assert run.count() == REQUESTS and run.failures() == 0
    entries = {entry["name"]: entry for entry in run.precise["entries"]}
    assert set(entries) == set(classes)
    for entry in entries.values():
        assert entry["count"] > 0 and entry["failures"] == 0
        assert entry["rows_per_s"] == pytest.approx(rows_per_request * entry["rps"], rel=0.2)
    assert "no model metadata" not in run.stderr


def write_instances(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(("model", "form"), list(FORMS))
def test_both_users_load_the_model_with_every_file_form(tmp_path, zoo, model, form):
    name, content, rows = FORMS[model, form]
    path = write_instances(tmp_path, name, content)
    run = run_locust(
        tmp_path, *both_users(zoo(model)), "--instances-file", str(path), "-u", "2", "-r", "2",
        "-t", "120s", "--request-count", str(REQUESTS),
    )  # fmt: skip
    assert_all_answered(run, rows)
    signature_line = next(line for line in run.stderr.splitlines() if "signature" in line)
    assert "tfsload: signature 'serving_default' from" in signature_line


@pytest.mark.parametrize("model", ["regression", "strings", "ints", "dtypes"])
def test_both_users_load_the_model_with_generated_instances(tmp_path, zoo, model):
    run = run_locust(
        tmp_path, *both_users(zoo(model)), "--generate-instances", "3", "--seed", "5",
        "--int-min", "0", "--int-max", "9", "-u", "2", "-r", "2", "-t", "120s",
        "--request-count", str(REQUESTS),
    )  # fmt: skip
    assert_all_answered(run, 3)


def test_grpc_carries_the_dtypes_rest_cannot_and_rest_is_refused_before_load(tmp_path, zoo):
    server = zoo("halves")
    run = run_locust(
        tmp_path, "GrpcUser", "-H", server.grpc_target, "--model-name", "halves",
        "--generate-instances", "4", "--rows-per-request", "6", "-u", "1", "-r", "1",
        "-t", "120s", "--request-count", str(REQUESTS),
    )  # fmt: skip
    assert_all_answered(run, 6, classes=("grpc",))
    refused = run_locust(
        tmp_path, "RestUser", "-H", server.rest_url, "--model-name", "halves",
        "--generate-instances", "4", "-u", "1", "-r", "1", "-t", "60s",
    )  # fmt: skip
    assert refused.code == 2
    (line,) = tfsload_lines(refused.stderr)
    assert "which TF Serving's REST API does not convert from JSON" in line


def test_a_version_is_called_by_number_and_a_pool_keeps_rows_per_request(tmp_path, zoo):
    name, content, _ = FORMS["regression", "pool of every form"]
    path = write_instances(tmp_path, name, content)
    run = run_locust(
        tmp_path, *both_users(zoo("regression")), "--model-version", "1",
        "--instances-file", str(path), "--rows-per-request", "4", "-u", "2", "-r", "2",
        "-t", "120s", "--request-count", str(REQUESTS),
    )  # fmt: skip
    assert_all_answered(run, 4)


# --- refused before any load ----------------------------------------------------------------


MISMATCHES = {
    "shapes differ": (
        [{"features": [1, 2, 3, 4], "extra": [0.5, 1]}],
        [],
        "input 'features' is int [1, 4], signature 'serving_default' has DT_FLOAT [-1, 3] "
        "(shapes differ)",
    ),
    "dtype": (
        [{"features": ["a", "b", "c"], "extra": [1, 1]}],
        [],
        "input 'features' is string [1, 3], signature 'serving_default' has DT_FLOAT [-1, 3] "
        "(string values do not convert to DT_FLOAT)",
    ),
    "missing input": (
        [{"features": [1, 2, 3]}],
        [],
        "input 'extra' of signature 'serving_default' (DT_FLOAT [-1, 2]) is missing from the "
        "instances",
    ),
    "unknown input": (
        [{"features": [1, 2, 3], "extra": [1, 1], "bonus": [1]}],
        [],
        "input 'bonus' is not in signature 'serving_default'",
    ),
    "unknown signature": (
        REGRESSION_ROWS,
        ["--signature-name", "predict"],
        "--signature-name: model 'regression' at ",
    ),
    "malformed file": ("[[1, 2], [3]]", [], "item 1 has shape [1], item 0 [2]"),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_instances_that_miss_the_signature_stop_the_run_before_any_load(tmp_path, case):
    content, extra, expected = MISMATCHES[case]
    path = write_instances(tmp_path, "instances.json", content)
    with answer_server(TWO_OUTPUTS, right) as server:
        done = subprocess.run(
            locust_command(
                "--headless", "RestUser", "GrpcUser", "--rest-host", server.rest_url,
                "--grpc-host", server.grpc_target, "--model-name", "regression",
                "--instances-file", str(path), *extra, "-u", "2", "-r", "2", "-t", "30s",
            ),
            cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-3000:]
        (line,) = tfsload_lines(done.stderr)
        assert expected in line
        assert "Traceback" not in done.stderr
        assert not server.predicts  # no load was sent


# --- answers judged by the signature --------------------------------------------------------

TWO_OUTPUTS = Signature(
    "serving_default",
    {"features": TensorSpec("DT_FLOAT", (-1, 3)), "extra": TensorSpec("DT_FLOAT", (-1, 2))},
    {"score": TensorSpec("DT_FLOAT", (-1, 1)), "parts": TensorSpec("DT_FLOAT", (-1, 2))},
    "test",
)


def right(rows: int, _protocol: str = "") -> dict:
    return {"score": ([[1.0]] * rows, "DT_FLOAT"), "parts": ([[0.5, 2.0]] * rows, "DT_FLOAT")}


# Wrong answers, and the failure each is for (rest, grpc): REST's row form carries the rows of
# all outputs together, so there the row count is the answer's, not one output's.
WRONG = [
    (lambda rows: {**right(rows), "score": ([[1.0]] * (rows + 1), "DT_FLOAT")},
     "expected 2 rows, got 3", "output 'score': expected 2 rows, got 3"),
    (lambda rows: {**right(rows), "parts": ([[0.5, 2.0, 1.0]] * rows, "DT_FLOAT")},
     "output 'parts' has shape [2, 3], signature says [-1, 2]",
     "output 'parts' has shape [2, 3], signature says [-1, 2]"),
    (lambda rows: {"score": right(rows)["score"]},
     "output 'parts' is missing", "output 'parts' is missing"),
    (lambda rows: {**right(rows), "score": ([b"x"] * rows, "DT_STRING")},
     "output 'score' has string values, signature says DT_FLOAT",
     "output 'score' is DT_STRING, signature says DT_FLOAT"),
]  # fmt: skip


def test_answers_of_the_wrong_shape_dtype_or_rows_are_failures_naming_the_output(tmp_path):
    # Each protocol's answers cycle through the wrong kinds: 12 requests meet each kind 3 times.
    kinds = {protocol: itertools.cycle(w[0] for w in WRONG) for protocol in ("rest", "grpc")}
    path = write_instances(tmp_path, "instances.json", REGRESSION_ROWS)
    with answer_server(TWO_OUTPUTS, lambda rows, protocol: next(kinds[protocol])(rows)) as server:
        for index, user, address in ((1, "RestUser", server.rest_url),
                                     (2, "GrpcUser", server.grpc_target)):  # fmt: skip
            run = run_locust(
                tmp_path, user, "-H", address, "--instances-file", str(path), "-u", "1",
                "-r", "1", "-t", "120s", "--request-count", "12",
            )  # fmt: skip
            assert run.code == 1, run.stderr[-3000:]
            assert_counts_agree(run)
            assert run.failures() == run.count() == 12
            failures = {f["error"]: f["occurrences"] for f in run.precise["failures"]}
            assert failures == {f"invalid response: {wrong[index]}": 3 for wrong in WRONG}


def test_a_server_without_metadata_gets_the_instances_as_written(tmp_path):
    path = write_instances(tmp_path, "instances.json", REGRESSION_ROWS)
    with answer_server(TWO_OUTPUTS, right, metadata=False) as server:
        run = run_locust(
            tmp_path, "RestUser", "GrpcUser", "--rest-host", server.rest_url, "--grpc-host",
            server.grpc_target, "--instances-file", str(path), "-u", "2", "-r", "2",
            "-t", "120s", "--request-count", str(REQUESTS),
        )  # fmt: skip
        generated = run_locust(
            tmp_path, "GrpcUser", "-H", server.grpc_target, "--generate-instances", "2",
            "-u", "1", "-r", "1", "-t", "60s",
        )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert run.count() == REQUESTS and run.failures() == 0
    warnings = [line for line in run.stderr.splitlines() if "no model metadata from" in line]
    assert len(warnings) == 2
    assert any("HTTP 404: Not found" in line for line in warnings)
    assert any("UNIMPLEMENTED: Method not found!" in line for line in warnings)
    assert generated.code == 2
    (line,) = tfsload_lines(generated.stderr)
    assert "--generate-instances: needs the model's signature" in line


def test_the_metadata_call_carries_the_runs_headers_and_asks_rest_first(tmp_path):
    path = write_instances(tmp_path, "instances.json", REGRESSION_ROWS)
    header = ["--header", "X-Api-Key: ${TFSLOAD_TEST_KEY}"]
    env_key = {"TFSLOAD_TEST_KEY": "s3cret-value"}
    with answer_server(TWO_OUTPUTS, right) as server:
        for users in (["GrpcUser", "-H", server.grpc_target],
                      ["RestUser", "GrpcUser", "--rest-host", server.rest_url,
                       "--grpc-host", server.grpc_target]):  # fmt: skip
            done = subprocess.run(
                locust_command(
                    "--headless", *users, "--instances-file", str(path), *header,
                    "-u", "2", "-r", "2", "-t", "30s", "--request-count", "10",
                ),
                cwd=tmp_path, env={**clean_env(), **env_key}, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            assert "s3cret-value" not in done.stdout + done.stderr
    # GrpcUser alone asks over gRPC; with a REST class too, REST answers first and is enough.
    assert [protocol for protocol, _ in server.metadata_asks] == ["grpc", "rest"]
    assert all(asked.get("x-api-key") == "s3cret-value" for _, asked in server.metadata_asks)


def test_an_experiment_runs_a_model_from_its_signature_alone(tmp_path, zoo_model):
    """`tfsload run` with [model] generate_instances: nothing but the model's name and path."""
    model_dir = zoo_model("ints")
    experiment = tmp_path / "ints.toml"
    experiment.write_text(f"""name = "ints"
protocols = ["rest", "grpc"]
[model]
name = "ints"
base_path = "{model_dir}"
generate_instances = 3
int_max = 50
check_answers = "probabilities"
[load]
users = 2
requests = 30
max_duration = "2m"
[thresholds]
fail_ratio = 0
[[targets]]
name = "standin"
label = "stand-in"
launch = "standin"
""")
    done = run_cli("-m", "tfsload", "run", str(experiment), "--out", str(tmp_path / "out"),
                   timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for protocol in ("rest", "grpc"):
        cell = tmp_path / "out" / "cells" / f"standin-{protocol}"
        spec = json.loads((cell / "run-spec.json").read_text())
        assert spec["workload"]["generate_instances"] == 3
        precise = json.loads((cell / "precise.json").read_text())
        assert precise["total"]["count"] == 30 and precise["total"]["failures"] == 0
        assert precise["total"]["rows_per_s"] == pytest.approx(3 * precise["total"]["rps"], 0.01)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["model"]["rows_per_request"] == 3


def test_the_metadata_call_goes_over_tls_like_the_predicts(tmp_path):
    (tmp_path / "certificates").mkdir()
    certificates = make_certificates(tmp_path / "certificates")
    path = write_instances(tmp_path, "instances.json", REGRESSION_ROWS)
    with answer_server(TWO_OUTPUTS, right, certificates=certificates) as server:
        for users in (["GrpcUser", "-H", server.grpc_target, "--grpc-ca-file"],
                      ["RestUser", "-H", server.rest_url, "--rest-ca-file"]):  # fmt: skip
            run = run_locust(
                tmp_path, *users, str(certificates.ca), "--instances-file", str(path),
                "-u", "1", "-r", "1", "-t", "60s", "--request-count", "10",
            )  # fmt: skip
            assert run.code == 0, run.stderr[-3000:]
            assert run.count() == 10 and run.failures() == 0
            scheme = "grpcs://" if users[0] == "GrpcUser" else "https://"
            assert f"tfsload: signature 'serving_default' from {scheme}127.0.0.1:" in run.stderr
    assert [protocol for protocol, _ in server.metadata_asks] == ["grpc", "rest"]
