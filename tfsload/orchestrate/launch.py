"""Start and stop the stand-in servers an experiment declares with ``launch = "standin"``.

The runner owns these processes: it picks free loopback ports (or the ones the target names),
starts ``python -m standin`` with TF Serving's flags, waits until the model is AVAILABLE, and
sends SIGTERM afterwards. Each stand-in runs in its own session so that a Ctrl-C in the
terminal reaches only the runner, which then stops everything in order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from tfsload.core.errors import ConfigError
from tfsload.core.processes import free_port, log_tail
from tfsload.core.serving_config import read_metrics_path
from tfsload.core.targets import Target
from tfsload.orchestrate.experiment import ExperimentTarget, Model, flag_value
from tfsload.orchestrate.probe import ServerInfo, model_status

START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0


def standin_command(
    grpc_port: int, rest_port: int, model_name: str, base_path: str | Path, flags: Sequence[str]
) -> list[str]:
    """``python -m standin`` on these ports and model, then ``flags`` as they are."""
    return [
        sys.executable,
        "-m",
        "standin",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={model_name}",
        f"--model_base_path={base_path}",
        *flags,
    ]


class LaunchError(Exception):
    """A launched server did not come up; the message says why (with its last log lines)."""


@dataclass
class Launched:
    """A running stand-in and the target with the addresses it actually listens on."""

    target: Target
    process: subprocess.Popen
    log_path: Path
    command: list[str]
    info: ServerInfo | None = None


def metrics_path(flags: tuple[str, ...], cwd: Path) -> str | None:
    """The Prometheus path a server started with ``flags`` serves, or None without monitoring.

    Read with the stand-in's own parser of the monitoring config (protobuf only, no
    TensorFlow), so the runner and the server can never disagree about it.
    """
    config = flag_value(flags, "--monitoring_config_file")
    if config is None:
        return None
    try:
        return read_metrics_path(str(cwd / config))
    except ConfigError:
        return None  # the server itself will refuse to start and say why


def _port_of(address: str) -> int:
    return urlsplit(address if "//" in address else f"//{address}").port or 0


def start_standin(
    et: ExperimentTarget,
    model: Model,
    cwd: Path,
    log_path: Path,
    should_stop: Callable[[], bool] = lambda: False,
    timeout: float = START_TIMEOUT_S,
) -> Launched:
    """Start ``et``'s stand-in and wait until the model is AVAILABLE; raises LaunchError."""
    rest_port = _port_of(et.target.rest or "") or free_port()
    grpc_port = _port_of(et.target.grpc or "") or free_port()
    flags = et.launch.flags if et.launch else ()
    command = standin_command(grpc_port, rest_port, model.name, model.base_path, flags)
    rest = f"http://127.0.0.1:{rest_port}"
    path = metrics_path(flags, cwd)
    target = replace(
        et.target,
        rest=rest,
        grpc=f"127.0.0.1:{grpc_port}",
        metrics=f"{rest}{path}" if path else None,
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    launched = Launched(target, process, log_path, command)
    try:
        launched.info = wait_available(
            "stand-in", target.rest, model.name, timeout, should_stop, process.poll,
            lambda: log_tail(log_path), poll_s=0.25,
        )  # fmt: skip
    except BaseException:
        stop(launched)
        raise
    return launched


def wait_available(
    what: str,
    rest: str,
    model_name: str,
    timeout: float,
    should_stop: Callable[[], bool],
    exit_code: Callable[[], int | None],
    tail: Callable[[], str],
    poll_s: float,
) -> ServerInfo:
    """Poll ``model_name``'s status at ``rest`` until it is AVAILABLE. A server that exits,
    ``should_stop``, or ``timeout`` raise LaunchError naming ``what`` (a stand-in, a container)
    with the server's last log lines from ``tail``."""
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        if should_stop():
            raise LaunchError(f"interrupted while the {what} was starting")
        code = exit_code()
        if code is not None:
            raise LaunchError(f"{what} exited with code {code} during start-up: {tail()}")
        info = model_status(rest, model_name, timeout=2.0)
        if info.error is None:
            return info
        time.sleep(poll_s)
    last = info.error if info else "no answer"
    raise LaunchError(f"{what} not AVAILABLE after {timeout:.0f} s ({last}); last lines: {tail()}")


def stop(launched: Launched, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM (graceful), then SIGKILL after ``timeout``; returns the exit code."""
    process = launched.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
