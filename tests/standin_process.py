"""Start the real stand-in server (``python -m standin``) as a subprocess for tests.

Other test files use this with the flags they need (the compose tests pass the compose file's
exact flags); ``tests/conftest.py`` builds the shared session server on it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tfsload.orchestrate import launch
from tfsload.orchestrate.launch import free_port

__all__ = [
    "StandinProcess",
    "free_port",
    "metric_value",
    "rss_bytes",
    "start_standin",
    "wait_available",
]

REPO = Path(__file__).resolve().parents[1]
# What standin/server.py logs once the model is loaded and the server is ready.
READY_LINE = " warm-up records replayed): "


@dataclass
class StandinProcess:
    """A running stand-in: where to reach it and its process."""

    process: subprocess.Popen
    rest_url: str  # http://127.0.0.1:Q
    grpc_target: str  # 127.0.0.1:P
    model_name: str
    metrics_url: str | None  # set when a monitoring config was passed
    log_path: Path
    _final_log: str | None = None

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far (also after it stopped)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def metric_value(metrics_url: str, name: str, **labels: str) -> float:
    """The current value of one Prometheus sample (0 when absent), read with prometheus-client.

    prometheus-client's parser names counter samples ``<name>_total``.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(metrics_url, timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def rss_bytes(server: StandinProcess) -> int:
    """Resident memory of the stand-in and its child processes (its REST body parsers)."""
    import psutil

    process = psutil.Process(server.process.pid)
    total = 0
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total


def wait_available(server: StandinProcess, timeout: float) -> None:
    """Poll model status until it says AVAILABLE and the log has the ready line.

    The model turns AVAILABLE the moment its load finishes, a moment before the server logs
    that it is ready, so tests reading the ready line wait for both. Fails with the log if the
    server exits.
    """
    deadline = time.monotonic() + timeout
    url = f"{server.rest_url}/v1/models/{server.model_name}"
    available = False
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"stand-in exited with {server.process.returncode} before it was ready:\n"
                + server.log()
            )
        with contextlib.suppress(requests.RequestException):
            available = available or '"AVAILABLE"' in requests.get(url, timeout=5).text
        if available and READY_LINE in server.log():
            return
        time.sleep(0.2)
    raise RuntimeError(f"stand-in not AVAILABLE after {timeout} s:\n" + server.log())


@contextlib.contextmanager
def start_standin(
    model_base_path: Path,
    *flags: str,
    model_name: str = "model",
    timeout: float = 120,
    wait: bool = True,
    ports: tuple[int, int] | None = None,
) -> Iterator[StandinProcess]:
    """Run ``python -m standin`` on free ports until the block ends (then SIGTERM and wait).

    ``flags`` are passed as they are, after the ports, model name and base path: the stand-in's
    limits and faults too, e.g. ``start_standin(base, "--fault_error_rate=0.5",
    "--fault_error_code=503", "--fault_latency=exp:20ms")`` (see README, "The stand-in server").
    With ``wait=False`` the block starts as soon as the process does (call ``wait_available``).
    ``ports`` are the (gRPC, REST) ports, e.g. a stopped server's to start its successor on;
    two free ones by default.
    """
    grpc_port, rest_port = ports or (launch.free_port(), launch.free_port())
    log_fd, log_name = tempfile.mkstemp(prefix="standin-", suffix=".log")
    command = launch.standin_command(grpc_port, rest_port, model_name, model_base_path, flags)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log_fd, stderr=subprocess.STDOUT, env=env
        )
    finally:
        os.close(log_fd)
    metrics_path = launch.metrics_path(flags, REPO)
    rest_url = f"http://127.0.0.1:{rest_port}"
    server = StandinProcess(
        process=process,
        rest_url=rest_url,
        grpc_target=f"127.0.0.1:{grpc_port}",
        model_name=model_name,
        metrics_url=f"{rest_url}{metrics_path}" if metrics_path else None,
        log_path=Path(log_name),
    )
    try:
        if wait:
            wait_available(server, timeout)
        yield server
    finally:
        try:
            server.stop()
        finally:
            server._final_log = server.log()
            server.log_path.unlink(missing_ok=True)
