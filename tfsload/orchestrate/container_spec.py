"""What a ``launch = "docker"`` target asks of its container, validated from the experiment file.

A Docker target names an image that keeps TF Serving's entrypoint contract (``tensorflow/serving``
itself, or tfsload's stand-in image): the runner sets ``MODEL_NAME`` and ``MODEL_BASE_PATH``,
mounts the experiment's model folder at ``/models/<model name>``, publishes gRPC 8500 and REST
8501 on free 127.0.0.1 ports, and appends the target's ``flags``. The file adds::

    image = "tensorflow/serving:2.20.0-gpu"
    gpus = ["0"]                          # NVIDIA device ids (default: none)
    mounts = { "/configs" = ".." }        # container path = host path, read-only
    environment = { TF_FORCE_GPU_ALLOW_GROWTH = "true" }

Paths inside ``flags`` are the container's: a config file a flag names must lie under one of
the mounts, and is read here with the same parsers as for a stand-in, so a bad one is bad input
before anything starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tfsload.core.errors import ConfigError

MODELS_DIR = PurePosixPath("/models")
CONTAINER_KEYS = frozenset({"image", "gpus", "mounts", "environment"})
# Set by the runner from the experiment's [model]: the image's entrypoint reads them.
RUNNER_ENVIRONMENT = frozenset({"MODEL_NAME", "MODEL_BASE_PATH"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IMAGE = re.compile(r"^[\w.\-/:@]+$")


@dataclass(frozen=True)
class ContainerSpec:
    """A Docker target's container: image, GPUs, read-only mounts, extra environment."""

    image: str
    gpus: tuple[str, ...] = ()
    mounts: tuple[tuple[PurePosixPath, Path], ...] = ()  # (container path, host path)
    environment: tuple[tuple[str, str], ...] = ()

    def host_path(self, container_path: str) -> Path | None:
        """Where a path inside the container lies on this machine, through the mounts; None
        when no mount holds it (or it is not absolute)."""
        path = PurePosixPath(container_path)
        if not path.is_absolute():
            return None
        for target, source in sorted(self.mounts, key=lambda m: -len(m[0].parts)):
            if path.is_relative_to(target):
                return source / path.relative_to(target)
        return None


def _strings(value: object) -> bool:
    return isinstance(value, str) and value.strip() == value and bool(value)


def parse_container(table: dict, where: str, base: Path) -> ContainerSpec:
    """The container keys of one ``[[targets]]`` table; ConfigError names the key."""
    image = table.get("image")
    if not _strings(image) or not IMAGE.match(image):
        raise ConfigError(f'{where}.image: required with launch = "docker": an image name')
    gpus = table.get("gpus", [])
    ids_ok = isinstance(gpus, list) and all(
        (type(g) is int and g >= 0) or (_strings(g) and " " not in g) for g in gpus
    )
    if not ids_ok:
        raise ConfigError(f"{where}.gpus: must be a list of GPU device ids (0, 1, or UUIDs)")
    if len({str(g) for g in gpus}) != len(gpus):
        raise ConfigError(f"{where}.gpus: lists a device twice")
    mounts = []
    for container, host in _table(table, "mounts", where).items():
        inside = PurePosixPath(container)
        if not inside.is_absolute() or inside == PurePosixPath("/"):
            raise ConfigError(f"{where}.mounts: {container!r}: a container path like /configs")
        if inside.is_relative_to(MODELS_DIR) or MODELS_DIR.is_relative_to(inside):
            raise ConfigError(f"{where}.mounts: {container!r}: {MODELS_DIR} is the model's")
        source = (base / host).resolve()
        if not source.exists():
            raise ConfigError(f"{where}.mounts.{container!r}: {source}: no such file or folder")
        mounts.append((inside, source))
    environment = _table(table, "environment", where)
    for name in environment:
        if not ENV_NAME.match(name):
            raise ConfigError(f"{where}.environment: {name!r} is not a variable name")
        if name in RUNNER_ENVIRONMENT:
            raise ConfigError(f"{where}.environment.{name}: set by the runner from [model]")
    return ContainerSpec(
        image=image,
        gpus=tuple(str(g) for g in gpus),
        mounts=tuple(mounts),
        environment=tuple(environment.items()),
    )


def _table(table: dict, key: str, where: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}.{key}: must be a table of strings")
    return value


def container_file(spec: ContainerSpec, flag: str, value: str, where: str) -> Path:
    """The host file behind a flag's container path (a config file the server reads)."""
    host = spec.host_path(value)
    if host is None:
        raise ConfigError(
            f"{where}.flags: {flag}={value}: not under any of the target's mounts (paths in a "
            "container's flags are the container's: mount the folder with mounts)"
        )
    return host
