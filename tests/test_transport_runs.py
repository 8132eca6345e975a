"""Real Locust runs (subprocesses) over TLS and with extra headers, against small test servers
made here with a self-signed CA: verified and refused as appropriate, headers and metadata
reach the server, and their values appear in no file the run writes nor in its output. Also:
answers framed every way HTTP/1.1 allows under gevent, time limits, gRPC deadlines, and calls
cancelled on the server when the run stops.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from tests.raw_servers import (
    answer,
    chunked,
    grpc_server,
    http_server,
    make_certificates,
    predict_reply,
    read_request,
    replying,
)
from tests.test_locust_runs import clean_env, locust_command
from tfsload.core import run_spec

SECRET = "tfs-Secret-9f3a"
ROWS = [[1, 2, 3], [4, 5, 6]]
PROBABILITIES = [[0.25, 0.75], [0.5, 0.5]]
REST_ANSWER = json.dumps({"predictions": PROBABILITIES}).encode()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def instances(tmp_path) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ROWS))
    return path


def run(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 120) -> dict:
    """A headless run writing every output Locust and tfsload have; what it left, by name."""
    out = tmp_path / "out"
    command = locust_command(
        "--headless", "--only-summary", "--csv", str(out / "locust"),
        "--json-file", str(out / "locust"), "--html", str(out / "report.html"), *args,
    )  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=tmp_path, env={**clean_env(), **(env or {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    precise = out / "precise.json"
    return {
        "code": done.returncode,
        "output": done.stdout + done.stderr,
        "precise": json.loads(precise.read_text()) if precise.exists() else None,
        "seconds": time.monotonic() - started,
    }


def assert_secret_nowhere(tmp_path: Path, result: dict) -> None:
    """The header value is in no file under ``tmp_path`` and not in the run's output."""
    assert SECRET not in result["output"]
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "precise.json" for path in files)
    leaked = [path for path in files if SECRET.encode() in path.read_bytes()]
    assert not leaked


def assert_all_passed(result: dict, count: int) -> None:
    precise = result["precise"]
    assert result["code"] == 0, result["output"][-3000:]
    assert precise["total"]["count"] == count and precise["total"]["failures"] == 0


def test_rest_over_tls_with_a_header_from_the_environment_through_a_spec_file(
    tmp_path, certificates, instances
):
    framings = itertools.cycle(
        [
            answer(REST_ANSWER),
            chunked(REST_ANSWER, sizes=(3, 1, 50)),
            answer(REST_ANSWER, extra="Connection: close\r\n"),
        ]
    )

    def reply(request):
        if not request.line.startswith("POST"):  # the model's metadata: not served here
            return answer(b'{"error": "not here"}', "404 Not Found")
        return next(framings)

    with http_server(replying(reply), tls=certificates.server_context()) as server:
        spec = run_spec.from_values(
            {
                "workload": {"instances_file": str(instances)},
                "transport": {
                    "rest_ca_file": str(certificates.ca),
                    "headers": ["X-Api-Key: ${TFSLOAD_TEST_KEY}"],
                },
                "load": {"users": 2, "spawn_rate": 2, "run_time_s": 60, "request_count": 30},
                "target": {"rest": server.url},
                "outputs": {"precise_json": str(tmp_path / "out" / "precise.json")},
            }
        )
        spec_file = tmp_path / "run-spec.json"
        spec.write(spec_file)
        result = run(
            tmp_path, "RestUser", "--run-spec", str(spec_file), env={"TFSLOAD_TEST_KEY": SECRET}
        )
    assert_all_passed(result, 30)
    predicts = [r for r in server.requests if r.line.startswith("POST")]
    assert len(predicts) >= 30
    assert all(r.headers["x-api-key"] == SECRET for r in server.requests)
    assert server.connections >= 10  # every third answer closed its connection
    assert_secret_nowhere(tmp_path, result)


def test_rest_refuses_an_unknown_certificate_and_times_out_a_silent_server(
    tmp_path, certificates, instances
):
    def silent(conn, server):
        read_request(conn, bytearray())
        time.sleep(5)

    with (
        http_server(replying(lambda _r: answer(REST_ANSWER)), certificates.server_context()) as tls,
        http_server(silent) as quiet,
    ):
        targets = tmp_path / "targets.toml"
        targets.write_text(
            f'[[targets]]\nname = "tls"\nrest = "{tls.url}"\n\n'
            f'[[targets]]\nname = "quiet"\nrest = "{quiet.url}"\n'
        )
        result = run(
            tmp_path, "--targets-file", str(targets), "TlsRest", "QuietRest",
            "--instances-file", str(instances), "--rest-timeout", "0.5", "-u", "2", "-r", "2",
            "-t", "3s", "--precise-json", str(tmp_path / "out" / "precise.json"),
        )  # fmt: skip
    assert result["code"] == 1, result["output"][-3000:]
    causes = {f["name"]: f["error"] for f in result["precise"]["failures"]}
    assert causes["tls rest"].startswith(
        "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert causes["quiet rest"] == "TimeoutError: timed out"
    total = result["precise"]["total"]
    assert total["failures"] == total["count"] > 0
    assert result["seconds"] < 60


def grpc_tls(certificates, require_client: bool):
    return grpc.ssl_server_credentials(
        [(certificates.named_key.read_bytes(), certificates.named_cert.read_bytes())],
        root_certificates=certificates.ca.read_bytes() if require_client else None,
        require_client_auth=require_client,
    )


def test_grpc_over_mutual_tls_with_a_server_name_and_metadata(tmp_path, certificates, instances):
    credentials = grpc_tls(certificates, require_client=True)
    with grpc_server(predict_reply(PROBABILITIES), tls=credentials) as server:
        result = run(
            tmp_path, "GrpcUser", "-H", f"grpcs://{server.target}",
            "--grpc-ca-file", str(certificates.ca), "--grpc-server-name", "tfs.test",
            "--grpc-client-cert", str(certificates.client_cert),
            "--grpc-client-key", str(certificates.client_key),
            "--header", "Authorization: ${TFSLOAD_TEST_TOKEN}", "--header", "X-Team: load",
            "--instances-file", str(instances), "-u", "2", "-r", "2", "-t", "60s",
            "--request-count", "30", "--precise-json", str(tmp_path / "out" / "precise.json"),
            env={"TFSLOAD_TEST_TOKEN": SECRET},
        )  # fmt: skip
    assert_all_passed(result, 30)
    assert len(server.metadata) >= 30
    assert all((m["authorization"], m["x-team"]) == (SECRET, "load") for m in server.metadata)
    assert_secret_nowhere(tmp_path, result)


@pytest.mark.parametrize(
    "missing", ["--grpc-server-name", "--grpc-client-cert"], ids=["wrong-name", "no-client-cert"]
)
def test_grpc_over_tls_is_refused_without_the_right_name_or_client_certificate(
    tmp_path, certificates, instances, missing
):
    settings = {
        "--grpc-ca-file": str(certificates.ca),
        "--grpc-server-name": "tfs.test",
        "--grpc-client-cert": str(certificates.client_cert),
        "--grpc-client-key": str(certificates.client_key),
    }
    del settings[missing]
    if missing == "--grpc-client-cert":
        del settings["--grpc-client-key"]
    with grpc_server(predict_reply(PROBABILITIES), tls=grpc_tls(certificates, True)) as server:
        result = run(
            tmp_path, "GrpcUser", "-H", server.target, *itertools.chain(*settings.items()),
            "--instances-file", str(instances), "-u", "1", "-r", "1", "-t", "2s",
            "--precise-json", str(tmp_path / "out" / "precise.json"),
        )  # fmt: skip
    assert result["code"] == 1, result["output"][-3000:]
    (failure,) = result["precise"]["failures"]
    assert failure["error"].startswith("UNAVAILABLE")
    assert failure["occurrences"] == result["precise"]["total"]["count"] > 0
    assert not server.metadata or missing == "--grpc-client-cert"  # no call got through


def test_grpc_deadlines_fail_calls_and_no_call_is_left_running_on_the_server(tmp_path, instances):
    """Calls past their deadline fail as DEADLINE_EXCEEDED and the server sees each one end
    (cancelled), the last ones too when the run stops; a user killed mid-call cancels it
    (tests/test_grpc_transport.py shows that alone)."""
    with grpc_server(predict_reply(PROBABILITIES), hold_s=30) as server:
        result = run(
            tmp_path, "GrpcUser", "-H", server.target, "--instances-file", str(instances),
            "--grpc-timeout", "1", "-u", "2", "-r", "2", "-t", "3s",
            "--precise-json", str(tmp_path / "out" / "precise.json"),
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while server.cancelled < len(server.metadata) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert result["code"] == 1, result["output"][-3000:]
    assert result["seconds"] < 25  # not the server's 30 s
    (failure,) = result["precise"]["failures"]
    assert failure["error"] == "DEADLINE_EXCEEDED: Deadline Exceeded"
    assert failure["occurrences"] == result["precise"]["total"]["count"] >= 2
    assert len(server.metadata) >= failure["occurrences"]
    assert server.cancelled == len(server.metadata)  # none still held by the server
