"""A dead or stalled server is never a pass, and every fault is counted by its cause.

Real Locust runs (single process, ``--processes 2``, and a master with two worker processes)
against a server that accepts TCP connections and never answers, and against real stand-ins
started with their ``--fault_*`` flags: a pause in the middle of a run, errors by code, dropped
connections, malformed answers, added latency, and a server stopped and started again on the
same ports while Locust keeps running. Runs are a few seconds each; nothing asserts on speed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.raw_servers import PREDICTIONS, answer, http_server, replying
from tests.standin_process import free_port, start_standin, wait_available
from tests.test_locust_runs import (
    LOCUSTFILE,
    LocustRun,
    assert_counts_agree,
    clean_env,
    read_csv,
    read_locust_json,
    run_locust,
    tfsload_lines,
)
from tfsload.core.run_spec import Transport
from tfsload.generator.rest_transport import BrokenAnswer, RestConnection, origin

REQUEST_COUNT = ":tensorflow:serving:request_count_total"
TIMEOUT_CAUSES = {
    "rest": "TimeoutError: timed out",
    "grpc": "DEADLINE_EXCEEDED: Deadline Exceeded",
}


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port whose server accepts every connection and never answers (a hung process)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def run_distributed(tmp_path: Path, *args: str, timeout: float = 120):
    """``locust --master`` with two ``--worker`` processes, all headless; returns the master's
    run in the shape of :func:`tests.test_locust_runs.run_locust`."""
    out, port = tmp_path / "out", free_port()
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    workers = [
        subprocess.Popen(
            [*common, "--worker", "--master-port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        master = subprocess.run(
            [*common, "--master", "--master-bind-port", str(port), "--expect-workers", "2",
             "--headless", "--only-summary", "--csv", str(out / "locust"),
             "--json-file", str(out / "locust"), "--precise-json", str(out / "precise.json"),
             *args],
            cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        for worker in workers:
            worker.wait(timeout=30)  # the master's quit reaches every worker: none is left
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    precise = out / "precise.json"
    return LocustRun(
        code=master.returncode,
        stdout=master.stdout,
        stderr=master.stderr,
        precise=json.loads(precise.read_text()) if precise.exists() else None,
        locust_stats=read_locust_json(out / "locust.json"),
        precise_csv=read_csv(out / "locust_precise.csv"),
    )


def locust_run(tmp_path: Path, mode: str, *args: str):
    if mode == "master-workers":
        return run_distributed(tmp_path, *args)
    extra = ["--processes", "2"] if mode == "processes" else []
    return run_locust(tmp_path, *extra, *args, timeout=120)


def predicts_served(metrics_url: str) -> float:
    """Predict calls a server has answered, whatever their status (its request_count)."""
    text = requests.get(metrics_url, timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == REQUEST_COUNT
    )


def both_users(rest: str, grpc: str, *extra: str) -> list[str]:
    return ["RestUser", "GrpcUser", "--rest-host", rest, "--grpc-host", grpc, *extra]


def by_name(run) -> dict[str, dict]:
    return {entry["name"]: entry for entry in run.precise["entries"]}


def causes(run) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for failure in run.precise["failures"]:
        found.setdefault(failure["name"], set()).add(failure["error"])
    return found


MODES = ["single", "processes", "master-workers"]


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_never_answers_fails_the_run_with_the_reason(tmp_path, mode, exported_model):
    """Each call fails at its own time limit, also the ones still waiting when the run ends
    (REST's 1 s limit ends calls during the 2 s run, gRPC's 3 s one only after it): none is
    dropped uncounted, and the run exits 1 with a line saying why."""
    with silent_server() as port:
        run = locust_run(
            tmp_path, mode,
            *both_users(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"),
            "--instances-file", str(exported_model.instances_path), "--no-metadata",
            "--rest-timeout", "1", "--grpc-timeout", "3", "-u", "2", "-r", "2", "-t", "2s",
        )  # fmt: skip
    assert run.code == 1, run.stderr[-3000:]
    assert_counts_agree(run)
    entries = by_name(run)
    for name in ("rest", "grpc"):
        assert entries[name]["failures"] == entries[name]["count"] > 0, entries
    assert entries["rest"]["count"] >= 2  # at least one call per second of the run
    assert causes(run) == {name: {cause} for name, cause in TIMEOUT_CAUSES.items()}
    assert not run.precise["passed"]
    (line,) = tfsload_lines(run.stderr)
    assert line.startswith(f"tfsload: {run.precise['total']['count']} of ") and "failed" in line
    assert run.precise["wall_time_s"] < 30


@pytest.mark.parametrize("mode", MODES)
def test_a_run_that_measured_nothing_is_exit_1_with_the_reason(tmp_path, mode, exported_model):
    """Every call failed inside a warm-up that never ended: not one counted request, on a
    single process as on a master whose workers measured nothing."""
    with silent_server() as port:
        run = locust_run(
            tmp_path, mode, "RestUser", "-H", f"http://127.0.0.1:{port}", "--no-metadata",
            "--instances-file", str(exported_model.instances_path), "--rest-timeout", "0.5",
            "--warmup-requests", "1000000", "-u", "2", "-r", "2", "-t", "2s",
        )  # fmt: skip
    assert run.code == 1, run.stderr[-3000:]
    assert run.precise["total"]["count"] == 0 and not run.precise["passed"]
    (line,) = tfsload_lines(run.stderr)
    assert line.startswith("tfsload: no request completed")


@pytest.mark.parametrize("mode", ["single", "processes"])
def test_a_server_that_stalls_mid_run_fails_the_run(tmp_path, mode, exported_model):
    """The stand-in answers, then stops answering (--fault_pause_s, 4.5 s after it is ready,
    about 3 s into the load) until after the run's end: the calls caught in the pause fail
    on their deadline, also those still waiting when the run ends, and fail the run."""
    base = exported_model.version_dir.parent
    with start_standin(base, "--fault_pause_after_s=4.5", "--fault_pause_s=5") as server:
        run = locust_run(
            tmp_path, mode, *both_users(server.rest_url, server.grpc_target), "--no-metadata",
            "--instances-file", str(exported_model.instances_path),
            "--rest-timeout", "3", "--grpc-timeout", "3", "-u", "2", "-r", "2", "-t", "6s",
        )  # fmt: skip
        assert "fault: pausing" in server.log()
    assert run.code == 1, run.stderr[-3000:]
    assert_counts_agree(run)
    total = run.precise["total"]
    assert 0 < total["failures"] < total["count"], "answers before the pause, then failures"
    assert set().union(*causes(run).values()) <= set(TIMEOUT_CAUSES.values()), causes(run)
    (line,) = tfsload_lines(run.stderr)
    assert f"{total['failures']} of {total['count']} requests failed" in line


def test_a_dropped_request_is_never_sent_again():
    """A kept connection closed under a request (the server read it, then hung up) fails
    that request; it is not quietly resent on a new connection."""
    replies = iter([answer(), None, answer()])
    with http_server(replying(lambda _request: next(replies))) as server:
        transport = Transport(rest_timeout_s=2.0, rest_connect_timeout_s=2.0)
        where = origin(server.url, transport)
        http = RestConnection(where, where.request("/v1/models/m:predict", b"{}"))
        assert http.exchange() == (200, PREDICTIONS)
        with pytest.raises(BrokenAnswer, match="connection closed before the answer"):
            http.exchange()
        assert len(server.requests) == 2
        assert http.exchange() == (200, PREDICTIONS)  # a new connection for the next one
    assert server.connections == 2 and len(server.requests) == 3


FAULTS = {  # target -> stand-in flags
    "errors-429": ("--fault_error_rate=0.3", "--fault_error_code=429", "--fault_drop_rate=0.2",
                   "--fault_malformed_rate=0.2", "--fault_seed=1"),
    "errors-503": ("--fault_error_rate=0.5", "--fault_error_code=503", "--fault_seed=2"),
    "errors-500": ("--fault_error_rate=0.5", "--fault_error_code=500",
                   "--fault_latency=40ms", "--fault_seed=3"),
}  # fmt: skip
EXPECTED_CAUSES = {
    "errors-429 rest": {
        "HTTP 429: Injected fault: RESOURCE_EXHAUSTED (stand-in --fault_error_rate=0.3)",
        "BrokenAnswer: connection closed before the answer",
        "invalid response: no predictions",
    },
    "errors-429 grpc": {
        "RESOURCE_EXHAUSTED: Injected fault: RESOURCE_EXHAUSTED (stand-in --fault_error_rate=0.3)",
        "UNAVAILABLE: Connection dropped (injected fault, stand-in --fault_drop_rate)",
        "invalid response: not a PredictResponse",
    },
    "errors-503 rest": {"HTTP 503: Injected fault: UNAVAILABLE (stand-in --fault_error_rate=0.5)"},
    "errors-503 grpc": {
        "UNAVAILABLE: Injected fault: UNAVAILABLE (stand-in --fault_error_rate=0.5)"
    },
    "errors-500 rest": {"HTTP 500: Injected fault: INTERNAL (stand-in --fault_error_rate=0.5)"},
    "errors-500 grpc": {"INTERNAL: Injected fault: INTERNAL (stand-in --fault_error_rate=0.5)"},
}


def test_the_users_count_every_fault_by_cause(tmp_path, exported_model):
    """Three stand-ins with different faults, all six user classes in one run: every injected
    fault is a failure row of its own cause, each request reached its server exactly once
    (the servers counted as many predicts as the users), and added latency shows in the
    percentiles of the successful ones."""
    base = exported_model.version_dir.parent
    monitoring = tmp_path / "monitoring.cfg"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                start_standin(base, *flags, f"--monitoring_config_file={monitoring}", wait=False)
            )
            for name, flags in FAULTS.items()
        }
        for server in servers.values():
            wait_available(server, 180)
        before = {name: predicts_served(s.metrics_url) for name, s in servers.items()}
        targets = tmp_path / "targets.toml"
        targets.write_text(
            "".join(
                f'[[targets]]\nname = "{name}"\nrest = "{s.rest_url}"\ngrpc = "{s.grpc_target}"\n'
                for name, s in servers.items()
            )
        )
        classes = [f"{word}{protocol}" for word in ("Errors429", "Errors503", "Errors500")
                   for protocol in ("Rest", "Grpc")]  # fmt: skip
        run = run_locust(
            tmp_path, "--targets-file", str(targets), *classes, "--no-metadata",
            "--instances-file", str(exported_model.instances_path),
            "-u", "6", "-r", "6", "-t", "4s",
        )  # fmt: skip
        served = {
            name: predicts_served(s.metrics_url) - before[name] for name, s in servers.items()
        }
    assert run.code == 1, run.stderr[-3000:]
    assert_counts_agree(run)
    assert causes(run) == EXPECTED_CAUSES
    entries = by_name(run)
    for name in FAULTS:
        sent = entries[f"{name} rest"]["count"] + entries[f"{name} grpc"]["count"]
        assert served[name] == sent, f"{name}: the server counted {served[name]}, users {sent}"
    for row, entry in entries.items():
        assert 0 < entry["failures"] < entry["count"], row
        slow = row.startswith("errors-500")
        assert (entry["min_ms"] >= 40) == slow, (row, entry["min_ms"])
    failed = sum(f["occurrences"] for f in run.precise["failures"])
    assert failed == run.precise["total"]["failures"]


def test_connections_recover_after_the_server_restarts(tmp_path, exported_model):
    """Stop the stand-in while Locust runs and start another on the same ports: the same
    Locust process's gRPC channel and HTTP connections reach the new one, and requests
    succeed again, with the outage counted as failures in between."""
    base = exported_model.version_dir.parent
    grpc_port, rest_port = free_port(), free_port()
    history = tmp_path / "out" / "locust_stats_history.csv"
    with start_standin(base, ports=(grpc_port, rest_port)) as first:
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "--csv", str(tmp_path / "out" / "locust"), "--csv-full-history",
            *both_users(first.rest_url, first.grpc_target),
            "--instances-file", str(exported_model.instances_path),
            "--rest-timeout", "2", "--grpc-timeout", "2", "-u", "2", "-r", "2", "-t", "300s",
        ]  # fmt: skip
        locust = subprocess.Popen(
            command, cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: all(phases(history, n)[0] > 20 for n in ("rest", "grpc")), locust)
        except BaseException:
            locust.kill()
            raise
    try:
        with start_standin(base, ports=(grpc_port, rest_port)):
            wait_for(lambda: all(phases(history, n)[2] > 20 for n in ("rest", "grpc")), locust)
            locust.send_signal(signal.SIGTERM)  # the same Locust process all along
            _, stderr = locust.communicate(timeout=60)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()
    assert locust.returncode == 1, stderr[-3000:]  # the outage failed some requests
    for name in ("rest", "grpc"):
        assert phases(history, name)[1] > 0, f"{name}: no failure while the server was down"


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``condition`` (reading Locust's files) until it holds while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "Locust ended early"
        with contextlib.suppress(OSError, LookupError, ValueError, StopIteration):
            if condition():
                return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s")


def phases(history: Path, name: str) -> tuple[int, int, int]:
    """(successes before the first failure, failures, successes after the last failure) of
    one stats row, from Locust's per-second history (cumulative counts)."""
    with open(history, newline="") as f:
        rows = [
            (int(row["Total Request Count"]), int(row["Total Failure Count"]))
            for row in csv.DictReader(f)
            if row["Name"] == name
        ]
    if not rows[-1][1]:
        return rows[-1][0], 0, 0
    first = next(i for i, (_, failures) in enumerate(rows) if failures)
    last = max(i for i in range(1, len(rows)) if rows[i][1] > rows[i - 1][1])
    final_count, final_failures = rows[-1]
    count, failures = rows[last]
    return (
        rows[first - 1][0] if first else 0,
        final_failures,
        final_count - count - (final_failures - failures),
    )
