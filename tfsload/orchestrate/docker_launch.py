"""Start and stop the containers of ``launch = "docker"`` targets through the Docker SDK.

The container runs an image with TF Serving's entrypoint contract (``tensorflow/serving`` or
tfsload's stand-in image): ``MODEL_NAME`` and ``MODEL_BASE_PATH=/models`` from the experiment's
``[model]``, its model folder mounted read-only at ``/models/<name>``, the target's mounts
read-only, gRPC 8500 and REST 8501 published on free 127.0.0.1 ports that the engine picks, the
flags appended, the GPUs as NVIDIA device requests. The runner waits until the model is
AVAILABLE (or the time limit passes, or the container exits: the error carries its last log
lines), and records the image's id and digests and the command as the container ran it.

A container is always removed after use, also when its start fails and on Ctrl-C, its whole log
kept first. Containers carry the label ``tfsload.launched``, so any left by a runner that was
killed outright can be found: ``docker ps -a --filter label=tfsload.launched``.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import docker
import docker.errors
from docker.types import DeviceRequest

from tfsload.core.errors import ConfigError
from tfsload.core.files import write_atomic
from tfsload.core.serving_config import read_metrics_path
from tfsload.core.targets import Target
from tfsload.orchestrate.container_spec import MODELS_DIR, ContainerSpec
from tfsload.orchestrate.experiment import Experiment, ExperimentTarget, flag_value
from tfsload.orchestrate.launch import LaunchError, wait_available
from tfsload.orchestrate.probe import ServerInfo

GRPC_PORT, REST_PORT = 8500, 8501
START_TIMEOUT_S = 300.0  # a GPU image's first start (CUDA set-up, warm-up) is slow
STOP_TIMEOUT_S = 30
TAIL_LINES = 10
LABEL = "tfsload.launched"
# Files handed over at start (the tuner's batching parameters, on this machine) are mounted here.
HANDED_DIR = PurePosixPath("/tfsload/files")
HANDED_FLAGS = ("--batching_parameters_file", "--monitoring_config_file")


def engine() -> docker.DockerClient:
    """The Docker engine of the environment (``DOCKER_HOST`` or the local socket); ConfigError
    in one line when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ConfigError(f'launch = "docker": no Docker engine answers ({exc})') from None
    return client


def missing_gpus(device_ids: Sequence[str], dev: Path = Path("/dev")) -> list[str]:
    """The numeric device ids without a ``/dev/nvidia<N>`` here (UUIDs cannot be checked)."""
    return [d for d in device_ids if d.isdigit() and not (dev / f"nvidia{d}").exists()]


def preflight(experiment: Experiment, dev: Path = Path("/dev")) -> docker.DockerClient | None:
    """What the experiment's Docker targets need from this machine, checked before anything is
    launched: the GPUs they ask for, and an engine. ConfigError (one line) otherwise. Returns
    the engine, or None when no target is a container."""
    containers = [
        (i, et) for i, et in enumerate(experiment.targets) if container_spec(et) is not None
    ]
    for i, et in containers:
        gpus = container_spec(et).gpus
        missing = missing_gpus(gpus, dev)
        if missing:
            raise ConfigError(
                f"{experiment.path}: targets[{i}] ({et.name}) asks for GPU {', '.join(gpus)}, "
                f"and this machine has no NVIDIA GPU {missing[0]} ({dev / f'nvidia{missing[0]}'} "
                "is missing): run it on a GPU machine or leave that target out"
            )
    return engine() if containers else None


def container_spec(et: ExperimentTarget) -> ContainerSpec | None:
    return et.launch.container if et.launch is not None else None


def hand_over(flags: Sequence[str]) -> tuple[list[str], dict[str, dict]]:
    """Flags handed over at start (a batching file the tuner wrote on this machine) as the
    container sees them: each absolute file path such a flag names is mounted read-only under
    HANDED_DIR. Returns the flags and the extra volumes."""
    handed, volumes = [], {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if sep and name in HANDED_FLAGS and os.path.isabs(value):
            inside = HANDED_DIR / f"{len(volumes)}-{Path(value).name}"
            volumes[value] = {"bind": str(inside), "mode": "ro"}
            flag = f"{name}={inside}"
        handed.append(flag)
    return handed, volumes


@dataclass
class StartedContainer:
    """A container whose model is AVAILABLE, and what the results record about it."""

    container: object  # docker.models.containers.Container
    log_path: Path
    target: Target
    info: ServerInfo | None = None
    command: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        """The server's process on the engine's machine (this one, for a local engine)."""
        return self.container.attrs["State"].get("Pid") or None

    def exit_code(self) -> int | None:
        """None while it runs; its exit code once it stopped (-1 once it is gone)."""
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return -1
        state = self.container.attrs["State"]
        return None if state["Running"] else int(state["ExitCode"])

    def log_since(self, since: float) -> bytes:
        """What the server wrote since ``since`` (epoch seconds), stdout and stderr together."""
        try:
            return self.container.logs(since=datetime.datetime.fromtimestamp(since))
        except docker.errors.APIError as exc:
            return f"tfsload: the container's log cannot be read: {exc}\n".encode()

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last log lines on one line, for an error message."""
        try:
            text = self.container.logs(tail=lines).decode(errors="replace").strip()
        except docker.errors.APIError:
            return "no log"
        return " | ".join(text.splitlines()) or "no output"


def start_container(
    client: docker.DockerClient,
    et: ExperimentTarget,
    experiment: Experiment,
    flags: Sequence[str],
    log_path: Path,
    should_stop: Callable[[], bool] = lambda: False,
    volumes: dict[str, dict] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> StartedContainer:
    """Run ``et``'s container with ``flags`` (and ``volumes`` on top of the model and the
    target's mounts) and wait until the model is AVAILABLE; LaunchError otherwise, with the
    container removed and its log kept at ``log_path``."""
    spec = container_spec(et)
    assert spec is not None and experiment.model.base_path is not None
    image = _image(client, spec.image)
    model = experiment.model
    environment = {"MODEL_NAME": model.name, "MODEL_BASE_PATH": str(MODELS_DIR)}
    environment.update(spec.environment)
    mounts = {str(host): {"bind": str(inside), "mode": "ro"} for inside, host in spec.mounts}
    mounts[str(model.base_path)] = {"bind": str(MODELS_DIR / model.name), "mode": "ro"}
    mounts.update(volumes or {})
    gpus = [DeviceRequest(driver="nvidia", device_ids=list(spec.gpus), capabilities=[["gpu"]])]
    name = f"tfsload-{experiment.name}-{et.name}-{uuid.uuid4().hex[:8]}"
    try:
        container = client.containers.run(
            image.id,
            command=list(flags),
            name=name,
            detach=True,
            environment=environment,
            volumes=mounts,
            ports={f"{port}/tcp": ("127.0.0.1", None) for port in (GRPC_PORT, REST_PORT)},
            device_requests=gpus if spec.gpus else [],
            labels={LABEL: "1", "tfsload.experiment": experiment.name, "tfsload.target": et.name},
        )
    except docker.errors.APIError as exc:
        for leftover in client.containers.list(all=True, filters={"name": name}):
            leftover.remove(force=True)  # created, then refused to start (no GPU driver, ...)
        raise LaunchError(f"docker run {spec.image}: {exc.explanation or exc}") from None
    started = StartedContainer(container, log_path, et.target)
    try:
        container.reload()
        started.target = _published(started, spec, flags)
        started.info = wait_available(
            "container", started.target.rest, model.name, timeout, should_stop,
            started.exit_code, started.tail, poll_s=0.5,
        )  # fmt: skip
    except BaseException:
        stop_container(started)
        raise
    attrs = container.attrs
    started.command = [attrs["Path"], *attrs["Args"]]
    started.facts = {
        "image": spec.image,
        "image_id": image.id,
        "image_digests": image.attrs.get("RepoDigests") or [],
        "name": attrs["Name"].lstrip("/"),
        "gpus": list(spec.gpus),
        "mounts": {str(inside): str(host) for inside, host in spec.mounts},
        "environment": sorted(environment),  # names only: values may be secrets
    }
    return started


def stop_container(started: StartedContainer) -> int | None:
    """Stop the container (SIGTERM, SIGKILL after STOP_TIMEOUT_S), write its whole log to its
    log path and remove it; returns its exit code (None when it was already gone)."""
    container = started.container
    try:
        try:
            container.stop(timeout=STOP_TIMEOUT_S)
            code = started.exit_code()
        finally:
            try:
                write_atomic(started.log_path, container.logs())
            finally:
                container.remove(force=True)
    except docker.errors.NotFound:
        return None
    return code


def _image(client: docker.DockerClient, name: str):
    """The image, pulled from its registry when the engine does not have it."""
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise LaunchError(f"image {name}: {exc.explanation or exc}") from None
    try:
        return client.images.pull(name)
    except docker.errors.APIError as exc:
        reason = exc.explanation or exc
        raise LaunchError(f"image {name} is not here and could not be pulled: {reason}") from None


def _published(started: StartedContainer, spec: ContainerSpec, flags: Sequence[str]) -> Target:
    """The target at the host ports the engine picked, with its metrics URL."""
    ports = started.container.ports
    try:
        grpc, rest = (ports[f"{port}/tcp"][0]["HostPort"] for port in (GRPC_PORT, REST_PORT))
    except (KeyError, IndexError, TypeError):
        raise LaunchError(f"the container published no ports: {started.tail()}") from None
    rest_url = f"http://127.0.0.1:{rest}"
    path = _metrics_path(spec, flags)
    return replace(
        started.target,
        rest=rest_url,
        grpc=f"127.0.0.1:{grpc}",
        metrics=f"{rest_url}{path}" if path else None,
    )


def _metrics_path(spec: ContainerSpec, flags: Sequence[str]) -> str | None:
    """The Prometheus path the server serves, from its monitoring config (through the mounts)."""
    config = flag_value(tuple(flags), "--monitoring_config_file")
    host = spec.host_path(config) if config else None
    if host is None:
        return None
    try:
        return read_metrics_path(str(host))
    except ConfigError:
        return None  # the server refuses to start and says why
