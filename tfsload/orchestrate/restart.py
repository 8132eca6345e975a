"""Targets that tfsload can (re)start with server flags of its choosing: what the tuner needs.

The tuner measures one server configuration after another, so it must start a target with
given flags (``--enable_batching --batching_parameters_file=F``), measure, stop it, and start it
again differently. :class:`Restartable` is that contract; :class:`StandinTarget` fulfils it for
``launch = "standin"`` targets through :mod:`tfsload.orchestrate.launch`, and
:class:`DockerTarget` for ``launch = "docker"`` targets (TF Serving's image or the stand-in's)
through :mod:`tfsload.orchestrate.docker_launch`, a new container each start. The runner starts
every launched target through it too. :class:`ExternalTarget` is a server
someone else runs: it can be used as it is (``slo``), never restarted. :class:`OnDemand` starts
a target only when a step must really run, so a resumed search whose steps are all kept starts
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from tfsload.core.errors import ConfigError
from tfsload.core.targets import Target
from tfsload.orchestrate.docker_launch import (
    StartedContainer,
    hand_over,
    preflight,
    start_container,
    stop_container,
)
from tfsload.orchestrate.experiment import Experiment, ExperimentTarget, Launch
from tfsload.orchestrate.launch import Launched, LaunchError, start_standin, stop
from tfsload.orchestrate.probe import ServerInfo, model_status, port_open

# Flags the tuner owns: a target's own batching flags would fight the configuration tried.
BATCHING_FLAGS = ("--enable_batching", "--batching_parameters_file")


@dataclass
class Running:
    """A started target: where it listens, what it is, and the handle to stop it."""

    target: Target
    info: ServerInfo | None
    command: list[str]
    handle: object
    pid: int | None = None  # a server process on this machine, for the CPU account
    # What the results record about the server besides its command (a container's image, its
    # id and digests, its name).
    facts: dict = field(default_factory=dict)
    poll: Callable[[], int | None] = lambda: None  # its exit code once it exited, else None
    log_since: Callable[[float], bytes] | None = None  # its output since an epoch time


class Restartable(Protocol):
    """A target the tuner may start with extra server flags and stop again."""

    name: str

    @property
    def cores(self) -> int:
        """CPUs the server may use: TF Serving's guide sets ``num_batch_threads`` to this."""

    def start(
        self, flags: Sequence[str] | None, log_path: Path, should_stop: Callable[[], bool]
    ) -> Running:
        """Start with the target's own flags (None), or with them less any batching flags plus
        ``flags``; wait until the model is available. Raises ``LaunchError`` with the reason."""

    def stop(self, running: Running) -> int | None:
        """Stop it; returns the exit code."""


def without_batching(flags: Sequence[str]) -> tuple[str, ...]:
    """``flags`` less any batching flag (``--enable_batching[=...]``, the parameters file)."""
    return tuple(f for f in flags if f.split("=", 1)[0] not in BATCHING_FLAGS)


@dataclass
class StandinTarget:
    """A ``launch = "standin"`` target of an experiment, started by the runner's launcher."""

    et: ExperimentTarget
    experiment: Experiment

    @property
    def name(self) -> str:
        return self.et.name

    @property
    def cores(self) -> int:
        """The stand-in runs on this machine and may use every CPU of this process."""
        return len(os.sched_getaffinity(0))

    def start(
        self, flags: Sequence[str] | None, log_path: Path, should_stop: Callable[[], bool]
    ) -> Running:
        own = self.et.launch.flags
        chosen = own if flags is None else (*without_batching(own), *flags)
        et = replace(self.et, launch=Launch("standin", tuple(chosen)))
        launched = start_standin(
            et, self.experiment.model, self.experiment.base_dir, log_path, should_stop
        )
        process = launched.process
        return Running(
            launched.target, launched.info, launched.command, launched, process.pid,
            poll=process.poll,
        )  # fmt: skip

    def stop(self, running: Running) -> int | None:
        handle = running.handle
        assert isinstance(handle, Launched)
        return stop(handle)


@dataclass
class DockerTarget:
    """A ``launch = "docker"`` target of an experiment: a new container for each start."""

    et: ExperimentTarget
    experiment: Experiment
    client: object  # the engine (docker.DockerClient) that preflight found

    @property
    def name(self) -> str:
        return self.et.name

    @property
    def cores(self) -> int:
        """The engine's CPUs: a container without CPU limits may use them all."""
        return int(self.client.info()["NCPU"])

    def start(
        self, flags: Sequence[str] | None, log_path: Path, should_stop: Callable[[], bool]
    ) -> Running:
        own = self.et.launch.flags
        handed, volumes = hand_over(flags or ())
        chosen = own if flags is None else (*without_batching(own), *handed)
        started = start_container(
            self.client, self.et, self.experiment, chosen, log_path, should_stop, volumes
        )
        return Running(
            started.target, started.info, started.command, started, started.pid,
            facts=started.facts, poll=started.exit_code, log_since=started.log_since,
        )  # fmt: skip

    def stop(self, running: Running) -> int | None:
        handle = running.handle
        assert isinstance(handle, StartedContainer)
        return stop_container(handle)


@dataclass
class ExternalTarget:
    """A server tfsload does not start (``compose.yaml``'s, a remote one): used as it is."""

    et: ExperimentTarget
    experiment: Experiment

    @property
    def name(self) -> str:
        return self.et.name

    @property
    def cores(self) -> int:
        raise ConfigError(f"{self.et.name}: not launched by tfsload: its cores are unknown")

    def start(
        self, flags: Sequence[str] | None, log_path: Path, should_stop: Callable[[], bool]
    ) -> Running:
        if flags is not None:
            raise LaunchError(f"{self.et.name} is not launched by tfsload: cannot set its flags")
        target = self.et.target
        info = ServerInfo("unknown", None, None, None)
        if target.rest:
            info = model_status(target.rest, self.experiment.model.name)
        problem = info.error or (port_open(target.grpc) if target.grpc else None)
        if problem:
            raise LaunchError(f"unreachable: {problem}")
        return Running(target, info, [], None)

    def stop(self, running: Running) -> int | None:
        return None


def as_found(experiment: Experiment) -> list[Restartable]:
    """Every target as the experiment declares it: launched ones started by tfsload. What
    containers need from this machine (an engine, the GPUs they ask for) is checked first, so
    a machine without them is told in one line (ConfigError) before anything starts."""
    client = preflight(experiment)
    found: list[Restartable] = []
    for et in experiment.targets:
        if et.launch is None:
            found.append(ExternalTarget(et, experiment))
        elif et.launch.container is not None:
            found.append(DockerTarget(et, experiment, client))
        else:
            found.append(StandinTarget(et, experiment))
    return found


class OnDemand:
    """One configuration of a target, started the first time :meth:`target` is asked for."""

    def __init__(
        self, server: Restartable, flags: Sequence[str] | None, log_path: Path,
        should_stop: Callable[[], bool],
    ) -> None:  # fmt: skip
        self.server, self.flags, self.log_path = server, flags, log_path
        self.should_stop = should_stop
        self.running: Running | None = None
        self.exit_code: int | None = None

    def target(self) -> Target:
        """The running target's addresses; starts it first if needed (LaunchError)."""
        if self.running is None:
            self.running = self.server.start(self.flags, self.log_path, self.should_stop)
        return self.running.target

    @property
    def pid(self) -> int | None:
        return self.running.pid if self.running else None

    def close(self) -> None:
        if self.running is not None:
            self.exit_code = self.server.stop(self.running)
            self.running = None


def restartable(experiment: Experiment) -> list[Restartable]:
    """Every target of ``experiment`` as one the tuner can restart; ConfigError names the first
    target that cannot be (only launched targets can)."""
    for i, et in enumerate(experiment.targets):
        if et.launch is None:
            raise ConfigError(
                f"{experiment.path}: targets[{i}]: the tuner restarts its targets with other "
                'batching parameters: give it launch = "standin" or "docker"'
            )
    return as_found(experiment)
