"""GrpcUser's wire (tfsload.generator.grpc_transport), which uses grpcio's private core API.

These tests fail loudly when that API moves (a grpcio upgrade): the parts it names are checked,
and real calls go through it from gevent greenlets in a child process (this process must not
import gevent): answers, status codes with their details, deadlines, metadata, many calls in
flight, and a greenlet killed mid-call cancelling its call on the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import grpc

from tests.raw_servers import grpc_server, predict_reply

REPO = Path(__file__).resolve().parents[1]
REPLY = predict_reply([[0.25, 0.75]])

CLIENT = """
import json, sys
import gevent
from tfsload.core.run_spec import Transport
from tfsload.generator import grpc_transport as g

g.check_grpcio()
target = sys.argv[1]

def connect(timeout):
    transport = Transport(grpc_timeout_s=timeout, headers=("X-Api-Key: k1", "X-Team: load"))
    connection = g.GrpcConnection(g.settings(target, transport))
    connection.acquire()
    return connection

def outcome(connection, request):
    try:
        return ["ok", connection.call(request).hex()]
    except g.CallFailed as failed:
        return [failed.code_name, failed.details]

short, long = connect(1.0), connect(30.0)
requests = (b"ok",) * 40 + (b"missing", b"slow")
calls = [gevent.spawn(outcome, short, request) for request in requests]
gevent.joinall(calls)
print(json.dumps([call.value for call in calls]), flush=True)
killed = gevent.spawn(outcome, long, b"hold")
gevent.sleep(0.3)
killed.kill()  # as Locust stops a user: the call is cancelled, long before its deadline
print("killed", flush=True)
sys.stdin.readline()  # the test has seen the server's side
short.release()
long.release()
print("released", flush=True)
"""


NATIVE_LOCKS = """
import gevent.monkey
gevent.monkey.patch_all()  # as Locust does
import threading
from tfsload.generator import grpc_transport as g

made = g._with_native_locks(threading.Condition)
print(type(made._lock).__module__, type(made._lock).__name__)
print(type(threading.Condition()._lock._block).__module__)
"""

EXPERIMENTS = """
import os
from tfsload.core.run_spec import Transport
from tfsload.generator import grpc_transport as g

print(os.environ.get("GRPC_EXPERIMENTS"), flush=True)
for retries in (False, True):
    options = dict(g.settings("127.0.0.1:1", Transport(grpc_retries=retries)).options)
    print(options["grpc.enable_retries"], flush=True)
g.open_channel(g.settings("127.0.0.1:1", Transport())).close()
"""


def answer(request: bytes, context) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(x)")
    if request in (b"slow", b"hold"):
        end = time.monotonic() + 3
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
    return REPLY


def test_grpcio_is_the_pinned_version_whose_core_api_is_used():
    pinned = [
        d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("grpcio==")
    ]  # fmt: skip
    assert pinned == [f"grpcio=={grpc.__version__}"]


def test_calls_from_greenlets_go_through_grpcio_core():
    with grpc_server(answer) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CLIENT, server.target], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            outcomes = json.loads(child.stdout.readline() or "null")
            assert outcomes is not None, child.stderr.read()[-3000:]
            assert outcomes[:40] == [["ok", REPLY.hex()]] * 40
            assert outcomes[40] == ["NOT_FOUND", "Servable not found for request: Latest(x)"]
            assert outcomes[41] == ["DEADLINE_EXCEEDED", "Deadline Exceeded"]
            assert child.stdout.readline() == "killed\n"
            deadline = time.monotonic() + 5
            while server.cancelled < 2 and time.monotonic() < deadline:  # slow's and killed's
                time.sleep(0.05)
            assert server.cancelled == 2  # before the channels close: the kill cancelled it
            child.stdin.write("go on\n")
            child.stdin.flush()
            assert child.stdout.readline() == "released\n"
            assert child.wait(timeout=30) == 0, child.stderr.read()[-3000:]
        finally:
            child.kill()
            child.wait()
    sent = [m for m in server.metadata if "x-api-key" in m]
    assert len(sent) == len(server.metadata) == 43
    assert all((m["x-api-key"], m["x-team"]) == ("k1", "load") for m in sent)


def test_channels_are_made_with_native_locks_under_monkey_patching():
    """grpcio's channel takes its call lock from threading when it is made; made through
    _with_native_locks it is a native lock, which the hub's thread and the poll thread can share
    (a gevent lock there could hang a run). Fails if threading or gevent stop working so."""
    done = subprocess.run(
        [sys.executable, "-c", NATIVE_LOCKS], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["_thread", "RLock", "gevent.thread"]


def test_grpcio_knows_the_client_experiment_turned_off_and_retries_are_off_unless_asked():
    """GrpcUser turns grpcio's EventEngine client off through GRPC_EXPERIMENTS: a grpcio that
    no longer knows the name says so on stderr (and loses the gain), which fails this test. A
    GRPC_EXPERIMENTS of the user's own is kept."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    for given, expected in ((None, "-event_engine_client"), ("", "")):
        if given is not None:
            env["GRPC_EXPERIMENTS"] = given
        done = subprocess.run(
            [sys.executable, "-c", EXPERIMENTS], cwd=REPO, capture_output=True, text=True,
            timeout=60, env={**env, "GRPC_VERBOSITY": "INFO"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines() == [expected, "0", "1"]
        assert "experiment" not in done.stderr.lower(), done.stderr[-3000:]
