"""compose.yaml, compose.standin.yaml, their configs and the images, checked without running
containers.

Each part is checked by the real thing that can run without building or starting an image: the
compose files by the official Compose schema (check-jsonschema's vendored compose-spec), the
contract on the parsed file (YAML anchors resolved as Compose resolves them), the TF Serving
flags by starting the stand-in with each service's exact command line, the healthcheck by running
it against that stand-in, the Locust services' settings by starting Locust with them in the
image's layout, and the Dockerfile by a Dockerfile parser. Compose's own parser runs where an
engine answers; tests/test_compose_engine.py builds and runs the whole topology.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import requests
from dockerfile_parse import DockerfileParser
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, SequenceNode

from tests.conftest import REPO
from tests.standin_process import start_standin
from tfsload import __version__
from tfsload.core.protos import DEFAULT_PATH as DESCRIPTORS_PATH
from tfsload.core.serving_config import read_batching, read_metrics_path
from tfsload.core.targets import load_targets

COMPOSE_FILES = sorted(REPO.glob("compose*.yaml"))
COMPOSE = REPO / "compose.yaml"
STANDIN_OVERRIDE = REPO / "compose.standin.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CONFIGS = REPO / "configs"
TFSERVING = ("tfs-cpu", "tfs-gpu-batching", "tfs-gpu")
GPU_SERVICES = {"tfs-gpu-batching", "tfs-gpu"}
# Host ports of the original experiment: {service: {host port: container port}}.
PUBLISHED = {
    "tfs-cpu": {8500: 8500, 8501: 8501},
    "tfs-gpu-batching": {8505: 8500, 8506: 8501},
    "tfs-gpu": {8507: 8500, 8508: 8501},
    "locust-master": {8089: 8089},
    "prometheus": {9090: 9090},
}
GRPC_PORT, REST_PORT = 8500, 8501
# The official image's entrypoint runs these before the service's `command:` flags.
ENTRYPOINT_FLAGS = (
    f"--port={GRPC_PORT}",
    f"--rest_api_port={REST_PORT}",
    "--model_name=model",
    "--model_base_path=/models/model",
)
BATCHING_FLAGS = ("--enable_batching", "--batching_parameters_file")
# Each GPU service's device id comes from its own variable (default GPU 0 for both).
GPU_DEVICE_VARIABLES = {
    "tfs-gpu-batching": "TFSLOAD_TFS_GPU_BATCHING_DEVICE",
    "tfs-gpu": "TFSLOAD_TFS_GPU_DEVICE",
}
GPU_MEMORY_FLAG = "--per_process_gpu_memory_fraction"
COMMON_FLAGS = {
    "--grpc_max_threads": "1000",
    "--monitoring_config_file": "/configs/monitoring.cfg",
    "--enable_model_warmup": "true",
}


def _untagged(constructor, node):
    if isinstance(node, MappingNode):
        return constructor.construct_mapping(node, deep=True)
    if isinstance(node, SequenceNode):
        return constructor.construct_sequence(node, deep=True)
    return constructor.construct_scalar(node)


def load_yaml(path: Path) -> dict:
    """Parse YAML with anchors and ``<<`` merge keys resolved, as Compose reads its files.

    Compose's merge tags of override files (``!reset``, ``!override``) are read as the plain
    value they tag, which is what the schema checks them as.
    """
    yaml = YAML(typ="safe")
    for tag in ("!reset", "!override"):
        yaml.constructor.add_constructor(tag, _untagged)
    return yaml.load(path)


def dump_yaml(data: dict, path: Path) -> None:
    YAML(typ="safe").dump(data, path)


# Compose's interpolation: ``$$``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ...
VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?P<op>:?-)?(?P<default>[^}]*)\})")


def variables(value) -> list[re.Match]:
    """Every ``${...}`` in the strings of a parsed compose file."""
    if isinstance(value, dict):
        return [m for v in value.values() for m in variables(v)]
    if isinstance(value, list):
        return [m for v in value for m in variables(v)]
    if isinstance(value, str):
        return [m for m in VARIABLE.finditer(value) if m["name"]]
    return []


def with_defaults(value):
    """A parsed compose file as Compose reads it with none of its variables set.

    The contract below is the one users get without setting anything; a variable without a
    default fails here.
    """
    if isinstance(value, dict):
        return {key: with_defaults(v) for key, v in value.items()}
    if isinstance(value, list):
        return [with_defaults(v) for v in value]
    if isinstance(value, str):

        def default(match: re.Match) -> str:
            if not match["name"]:
                return "$"
            assert match["op"], f"{match[0]}: a variable without a default"
            return match["default"]

        return VARIABLE.sub(default, value)
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    """compose.yaml with its ``${...}`` variables as written."""
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return with_defaults(raw_compose)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def run(
    *args: str, cwd: Path = REPO, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    """The official Compose JSON schema, as vendored (with its checksum) by check-jsonschema.

    check-jsonschema's YAML parser knows no merge tags, so a file using them is checked as
    :func:`load_yaml` reads it.
    """
    with tempfile.TemporaryDirectory() as plain:
        if re.search(r"!(reset|override)\b", path.read_text()):
            dump_yaml(load_yaml(path), Path(plain, path.name))
            path = Path(plain, path.name)
        return run(
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        )


def flag_map(flags: list[str]) -> dict[str, str]:
    """``--name=value`` flags as {"--name": "value"}; a bare ``--name`` maps to ""."""
    return dict(f.split("=", 1) if "=" in f else (f, "") for f in flags)


def published(service: dict) -> dict[int, int]:
    """{host port: container port} of a service, requiring every port to bind to 127.0.0.1."""
    ports = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{entry!r}: not bound to 127.0.0.1"
        ports[int(parts[1])] = int(parts[2])
    return ports


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """{container path: (host path, mode)} from a service's short-syntax volumes."""
    result = {}
    for entry in service.get("volumes", []):
        host, container, *mode = entry.split(":")
        assert host.startswith("./"), f"{entry!r}: only bind mounts of repository paths are used"
        result[container] = (host, mode[0] if mode else "rw")
    return result


def host_path(container_path: str, service: dict, replace: dict[str, Path] | None = None) -> Path:
    """Where ``container_path`` of ``service`` lies on this machine, through its bind mounts.

    ``replace`` maps a mount's host path (``./models``) to another directory (a test's model).
    """
    path = PurePosixPath(container_path)
    for target, (host, _mode) in mounts(service).items():
        if path.is_relative_to(target):
            base = (replace or {}).get(host, REPO / host)
            return Path(base, path.relative_to(target))
    raise AssertionError(f"{container_path} is not under any volume of the service")


# ---- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path):
    result = check_compose_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def misspelt_key(compose: dict) -> None:
    compose["services"]["tfs-cpu"]["helthcheck"] = compose["services"]["tfs-cpu"].pop("healthcheck")


def unknown_condition(compose: dict) -> None:
    compose["services"]["tfs-cpu"]["depends_on"]["model-export"]["condition"] = "service_done"


def gpu_without_capabilities(compose: dict) -> None:
    del compose["services"]["tfs-gpu"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ]


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (misspelt_key, "helthcheck"),
        (unknown_condition, "service_done"),
        (gpu_without_capabilities, "capabilities"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_the_schema_check_rejects_a_broken_compose_file(tmp_path, compose, breakage, named):
    broken = copy.deepcopy(compose)
    breakage(broken)
    path = tmp_path / "compose.yaml"
    dump_yaml(broken, path)
    result = check_compose_schema(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stdout


# ---- the contract ----------------------------------------------------------------------------


def test_the_services(services):
    assert set(services) == {
        "model-export",
        *TFSERVING,
        "locust-master",
        "locust-worker",
        "prometheus",
    }


def test_pulled_images_are_pinned_and_the_gpu_image_is_the_same_release(services):
    for name, service in services.items():
        if "build" in service:
            continue  # built here; the Dockerfile's base images are checked below
        tag = service["image"].partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(-gpu)?", tag), f"{name}: image {service['image']}"
    cpu_tag = services["tfs-cpu"]["image"]
    assert cpu_tag.startswith("tensorflow/serving:")
    for name in GPU_SERVICES:
        assert services[name]["image"] == f"{cpu_tag}-gpu"


def test_ports_are_the_original_experiments_on_127_0_0_1(services):
    for name, service in services.items():
        assert published(service) == PUBLISHED.get(name, {}), name


def test_the_host_targets_file_points_at_the_published_ports(services):
    container_port = {"rest": REST_PORT, "grpc": GRPC_PORT}
    for target in load_targets(CONFIGS / "targets.toml"):
        host_ports = {c: h for h, c in published(services[target.name]).items()}
        for protocol, port in container_port.items():
            address = urlsplit(f"//{target.url(protocol).split('//')[-1]}")
            assert (address.hostname, address.port) == ("127.0.0.1", host_ports[port])


def test_the_in_network_targets_file_points_at_the_services():
    targets = load_targets(CONFIGS / "targets-compose.toml")
    assert [t.name for t in targets] == list(TFSERVING)
    for t in targets:
        assert t.rest == f"http://{t.name}:{REST_PORT}"
        assert t.grpc == f"{t.name}:{GRPC_PORT}"


def gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_gpu_reservations_only_on_the_gpu_services(services):
    for name, service in services.items():
        devices = gpu_devices(service)
        if name in GPU_SERVICES:
            assert devices == [
                {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}
            ], name
        else:
            assert not devices, name
        assert "gpus" not in service, name


def test_each_gpu_service_takes_its_device_id_from_its_own_variable(raw_compose):
    for name, variable in GPU_DEVICE_VARIABLES.items():
        (device,) = gpu_devices(raw_compose["services"][name])
        assert device["device_ids"] == [f"${{{variable}:-0}}"], name


def test_gpu_services_bound_their_memory_so_two_fit_on_one_gpu(services):
    """TensorFlow maps nearly all of a GPU's memory at start; by default both GPU services get
    GPU 0, so each must take less than half of it."""
    fractions = {}
    for name in TFSERVING:
        flags = flag_map(services[name]["command"])
        if name in GPU_SERVICES:
            fractions[name] = float(flags[GPU_MEMORY_FLAG])
        else:
            assert GPU_MEMORY_FLAG not in flags, name
    assert set(fractions) == GPU_SERVICES, fractions
    assert all(f > 0 for f in fractions.values()) and sum(fractions.values()) < 1, fractions


def test_every_variable_has_a_default_and_the_tfsload_prefix(raw_compose):
    found = variables(raw_compose)
    assert found
    for match in found:
        assert match["op"] == ":-" and match["default"], match[0]
        assert match["name"].startswith("TFSLOAD_"), match[0]


def test_batching_flags_only_on_tfs_gpu_batching(services):
    for name in TFSERVING:
        flags = flag_map(services[name]["command"])
        batching = {f: v for f, v in flags.items() if f in BATCHING_FLAGS}
        if name == "tfs-gpu-batching":
            assert batching == {
                "--enable_batching": "true",
                "--batching_parameters_file": "/configs/batch-config.cfg",
            }
        else:
            assert not batching, name
    for name, service in services.items():
        if name not in TFSERVING:
            assert not any("batching" in str(arg) for arg in service.get("command", [])), name


def test_every_tf_serving_service_shares_the_setup(services):
    for name in TFSERVING:
        service = services[name]
        flags = flag_map(service["command"])
        assert {f: flags.get(f) for f in COMMON_FLAGS} == COMMON_FLAGS, name
        assert mounts(service)["/models"] == ("./models", "ro"), name
        assert service["depends_on"] == {
            "model-export": {"condition": "service_completed_successfully"}
        }, name
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and '"AVAILABLE"' in test[-1] and "/v1/models/model " in test[-1]


def test_every_mounted_path_exists_or_is_the_exported_model(services):
    """./models is not in git: the model-export service (or ``make export``) writes it."""
    writers = {n for n, s in services.items() if ("./models", "rw") in mounts(s).values()}
    assert writers == {"model-export"}
    assert "/models/" in (REPO / ".gitignore").read_text().split()
    for name, service in services.items():
        for container, (host, _mode) in mounts(service).items():
            if host != "./models":
                assert (REPO / host).exists(), f"{name}: {host} (mounted at {container})"


def test_flag_paths_exist_through_the_mounts(services):
    for name in TFSERVING:
        for flag in ("--monitoring_config_file", "--batching_parameters_file"):
            value = flag_map(services[name]["command"]).get(flag)
            if value:
                assert host_path(value, services[name]).is_file(), f"{name}: {flag}={value}"


def test_locust_master_and_workers_share_the_image_and_settings(services, image_build):
    master, worker = services["locust-master"], services["locust-worker"]
    for key in ("build", "image", "environment", "volumes"):
        assert master[key] == worker[key], key
    # The classes the picker offers and ticks (tests/test_webui.py starts this master).
    assert master["command"][:2] == ["--master", "--class-picker"]
    assert worker["command"] == ["--worker", "--master-host", "locust-master"]
    assert worker["depends_on"]["locust-master"] == {"condition": "service_started"}
    for service in (master, worker):
        assert service["depends_on"]["model-export"] == {
            "condition": "service_completed_successfully"
        }
    env, image = master["environment"], image_build["stages"][-1]
    # The image links the installed locustfile into its working directory.
    assert env["LOCUST_LOCUSTFILE"] == "locustfile.py"
    assert ["ln", "-s", "$(tfsload locustfile)", env["LOCUST_LOCUSTFILE"]] in image.commands
    assert image.repository_path(env["LOCUST_TARGETS_FILE"]) == CONFIGS / "targets-compose.toml"
    assert host_path(env["LOCUST_INSTANCES_FILE"], master) == (
        REPO / "models" / "model" / "instances.json"
    )


def image_layout(stage: Stage, root: Path) -> Path:
    """The Locust image's working directory laid out under ``root``: its copied files, and
    locustfile.py linked to the installed one as the image links it. Returns that directory."""
    workdir = root / stage.workdir.relative_to("/")
    for image_path, source in stage.copies.items():
        shutil.copytree(source, root / image_path.relative_to("/"))
    installed = run(str(Path(sys.executable).with_name("tfsload")), "locustfile").stdout.strip()
    (workdir / "locustfile.py").symlink_to(installed)
    return workdir


@pytest.mark.parametrize("name", ["locust-master", "locust-worker"])
def test_locust_started_as_the_container_offers_a_class_per_target(
    name, services, image_build, tmp_path
):
    """A real Locust process with the service's environment and command in the image's layout
    (its entrypoint is ``locust``, run in its working directory, laid out here).

    The repository's configs/targets.toml would make the same class names, so the targets file
    the environment names is also replaced by a missing one, which Locust must then refuse.
    """
    service = services[name]
    workdir = image_layout(image_build["stages"][-1], tmp_path)
    locust = Path(sys.executable).with_name("locust")
    env = {**os.environ, **service["environment"]}
    result = run(str(locust), *service["command"], "--list", cwd=workdir, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = set(result.stdout.split())
    assert {
        f"{prefix}{protocol}"
        for prefix in ("TfsCpu", "TfsGpuBatching", "TfsGpu")
        for protocol in ("Rest", "Grpc")
    } <= listed
    env["LOCUST_TARGETS_FILE"] += ".missing"
    result = run(str(locust), *service["command"], "--list", cwd=workdir, env=env, timeout=120)
    assert result.returncode != 0 and "--targets-file" in result.stderr


def test_the_batching_config_is_the_original_experiments():
    config = read_batching(str(CONFIGS / "batch-config.cfg"))
    assert (
        config.max_batch_size,
        config.batch_timeout_micros,
        config.max_enqueued_batches,
        config.num_batch_threads,
    ) == (1000, 1000, 16, 16)


def test_everything_scrapes_the_path_the_monitoring_config_serves(services):
    metrics_path = read_metrics_path(str(CONFIGS / "monitoring.cfg"))
    prometheus = load_yaml(host_path("/etc/prometheus/prometheus.yml", services["prometheus"]))
    assert prometheus["scrape_configs"][0]["metrics_path"] == metrics_path
    for targets_file in ("targets.toml", "targets-compose.toml"):
        for target in load_targets(CONFIGS / targets_file):
            assert target.metrics == f"{target.rest}{metrics_path}"


def test_prometheus_scrapes_the_three_servers_in_its_profile(services):
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["metrics"]
    config = load_yaml(host_path("/etc/prometheus/prometheus.yml", prometheus))
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert static["targets"] == [f"{name}:{REST_PORT}" for name in TFSERVING]


def test_model_export_skips_an_existing_export(tmp_path, services):
    """The export service's own command exits 0 without training when the model is there.

    Only the shell runs: were its check wrong, it would try ``python -m model_export`` in an
    empty directory and fail.
    """
    export = services["model-export"]
    workdir = tmp_path / "opt-tfsload"
    models = host_path("/opt/tfsload/models", export, {"./models": workdir / "models"})
    (models / "model").mkdir(parents=True)
    (models / "model" / "instances.json").write_text("[]")
    result = run(*export["command"], cwd=workdir, timeout=30)
    assert result.returncode == 0, result.stderr
    (models / "model" / "instances.json").unlink()
    assert run(*export["command"], cwd=workdir, timeout=60).returncode != 0


# ---- the Locust image ------------------------------------------------------------------------


def dockerfile_stages(path: Path) -> tuple[dict[str, str], list[list[dict]]]:
    """The build arguments declared before the first FROM ({name: default}) and the
    instructions of each build stage, in order (comments left out)."""
    arguments: dict[str, str] = {}
    stages: list[list[dict]] = []
    with path.open("rb") as dockerfile:
        structure = DockerfileParser(fileobj=dockerfile).structure
    for instruction in structure:
        kind = instruction["instruction"]
        if kind == "COMMENT":
            continue
        if kind == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
        else:
            assert kind == "ARG", f"{kind} before the first FROM"
            name, _, default = instruction["value"].partition("=")
            arguments[name] = default
    return arguments, stages


def normalise(requirement: str) -> str:
    """``Name_x==1.0`` as ``name-x==1.0`` (PEP 503 names), so spellings compare equal."""
    name, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def pins(*extras: str) -> set[str]:
    """pyproject.toml's pinned base dependencies, plus those of ``extras``, normalised."""
    found = list(PYPROJECT["dependencies"])
    for extra in extras:
        found += PYPROJECT["optional-dependencies"][extra]
    return {normalise(pin) for pin in found}


class Stage:
    """One build stage, replayed: where its COPY instructions put repository files and what its
    RUN instructions run (each ``&&``-joined command on its own)."""

    def __init__(self, instructions: list[dict], context: Path, arguments: dict[str, str]):
        base, _, self.name = instructions[0]["value"].partition(" AS ")
        # The base image as written (``${PYTHON_IMAGE}``) and with the arguments' defaults.
        self.base_written = base
        self.base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], base)
        self.workdir = PurePosixPath("/")
        self.env: dict[str, str] = {}
        self.entrypoint: list[str] | None = None
        self.copies: dict[PurePosixPath, Path] = {}  # image path -> repository path
        self.from_stage: list[tuple[str, PurePosixPath, PurePosixPath]] = []
        self.commands: list[list[str]] = []  # argv of every command of every RUN
        for instruction in instructions[1:]:
            kind, value = instruction["instruction"], instruction["value"]
            words = shlex.split(value)
            if kind == "WORKDIR":
                self.workdir = self.workdir / words[0]
            elif kind == "ENV":
                self.env.update(word.split("=", 1) for word in words)
            elif kind == "ENTRYPOINT":
                self.entrypoint = json.loads(value)
            elif kind == "RUN":
                self._add_commands(words)
            elif kind == "COPY":
                self._add_copy(words, context)

    def _add_commands(self, words: list[str]) -> None:
        command: list[str] = []
        for word in words:
            if word == "&&":
                self.commands.append(command)
                command = []
            else:
                command.append(word)
        self.commands.append(command)

    def _add_copy(self, words: list[str], context: Path) -> None:
        options = [w for w in words if w.startswith("--")]
        *sources, dest = [w for w in words if not w.startswith("--")]
        stage = next((o.removeprefix("--from=") for o in options if o.startswith("--from=")), None)
        if stage:
            (source,) = sources
            self.from_stage.append((stage, PurePosixPath(source), self.at(dest)))
            return
        for source in sources:
            assert (context / source).exists(), f"COPY {source}: not in the repository"
            # A directory's contents go to dest; a file goes into a dest ending in /.
            into = dest.endswith("/") and (context / source).is_file()
            self.copies[self.at(dest) / Path(source).name if into else self.at(dest)] = (
                context / source
            )

    def at(self, path: str) -> PurePosixPath:
        return self.workdir / path

    def repository_path(self, image_path: str) -> Path:
        """The repository file that the image holds at ``image_path`` (relative: to WORKDIR)."""
        path = self.at(image_path)
        for copied, source in self.copies.items():
            if path.is_relative_to(copied):
                return source / path.relative_to(copied)
        raise AssertionError(f"{path} is not copied into the image")

    def pip(self, verb: str) -> list[list[str]]:
        """The arguments of every ``pip VERB`` command, options included."""
        return [argv[2:] for argv in self.commands if argv[:2] == ["pip", verb]]


@pytest.fixture(scope="module")
def image_build(services) -> dict:
    build = services["locust-master"]["build"]
    context = (REPO / build["context"]).resolve()
    arguments, stages = dockerfile_stages(context / build["dockerfile"])
    replayed = [Stage(s, context, arguments) for s in stages]
    return {
        "context": context,
        "stages": replayed,
        "by_name": {stage.name: stage for stage in replayed},
        "build": build,
        "arguments": arguments,
    }


def test_the_wheel_stage_builds_tfsload_from_the_packaged_sources(image_build):
    wheel = image_build["by_name"]["wheel"]
    (arguments,) = wheel.pip("wheel")
    assert "--no-deps" in arguments and arguments[-1] == "."
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name.rstrip("*") for name in setuptools["packages"]["find"]["include"]}
    copied = {path.relative_to(wheel.workdir).as_posix() for path in wheel.copies}
    assert copied == {"pyproject.toml", "README.md"} | packages
    # The descriptors of TF Serving's API ship inside the package: no stage builds them.
    assert DESCRIPTORS_PATH.is_relative_to(REPO / "tfsload")
    assert not any("tfsload.core.protos" in argv for argv in wheel.commands)


def installs_the_wheel(stage: Stage) -> list[str]:
    """``stage`` copies the wheel stage's output and pip installs tfsload's wheel from it with
    no extras; returns that pip command's arguments."""
    ((source_stage, _, dest),) = stage.from_stage
    assert source_stage == "wheel"
    (arguments,) = [argv for argv in stage.pip("install") if any(".whl" in w for w in argv)]
    assert [w for w in arguments if not w.startswith("-")] == [f"{dest}/tfsload-*.whl"]
    return arguments


def test_the_tensorflow_stage_installs_the_pins_of_the_standin_extra(image_build, tmp_path):
    """The pins' layer comes from pyproject.toml alone: its own command, run here on a copy,
    lists exactly the base and ``standin`` pins; the wheel then goes in without dependencies."""
    stage = image_build["by_name"]["tensorflow"]
    (listing,) = [argv for argv in stage.commands if argv[:2] == ["python", "-c"]]
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    listed = subprocess.run(
        [sys.executable, *listing[1:3]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert {normalise(pin) for pin in listed} == pins("standin")
    assert any(pin.startswith("tensorflow==") for pin in listed)
    assert listing[3:] == [">", "/tmp/pins.txt"]
    assert stage.pip("install")[0][-2:] == ["-r", "/tmp/pins.txt"]
    assert "--no-deps" in installs_the_wheel(stage)


def test_the_locust_image_installs_the_base_package_on_its_pinned_locust(image_build):
    final = image_build["stages"][-1]
    assert "--no-deps" not in installs_the_wheel(final)
    base = pins()
    assert not any(pin.startswith("tensorflow") for pin in base)
    locust_pin = next(pin for pin in base if pin.startswith("locust=="))
    assert final.base == f"locustio/locust:{locust_pin.removeprefix('locust==')}"
    # The official image's working directory, which its user owns: a WORKDIR that made a new
    # directory would be root's, and Locust's CSV and results could not be written there.
    assert final.workdir == PurePosixPath("/home/locust")


def test_the_standin_stage_keeps_tf_servings_entrypoint_contract(image_build):
    """The entrypoint path, variables and ports of tensorflow/serving's image; the script passes
    the container's arguments (the service's flags) on."""
    stage = image_build["by_name"]["standin"]
    assert stage.base == "tensorflow"
    assert stage.entrypoint == ["/usr/bin/tf_serving_entrypoint.sh"]
    assert stage.env == {"MODEL_NAME": "model", "MODEL_BASE_PATH": "/models"}
    script = stage.repository_path("/usr/bin/tf_serving_entrypoint.sh")
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    for part in (
        "exec python -m standin --port=8500 --rest_api_port=8501",
        '--model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}"',
        '--bind_address=0.0.0.0 "$@"',
    ):
        assert part in text


def test_every_base_image_is_pinned(image_build):
    stages = image_build["by_name"]
    for stage in image_build["stages"]:
        if stage.base in stages:
            continue  # built on an earlier stage
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", stage.base), stage.base


def test_base_images_are_build_arguments_compose_passes_from_the_environment(
    image_build, raw_compose
):
    """Users get the Dockerfile's defaults (the registry images); CI names local ones through
    TFSLOAD_<ARGUMENT> (.ci/docker-engine's images.env)."""
    arguments = image_build["arguments"]
    stages = image_build["by_name"]
    assert {s.base_written for s in image_build["stages"] if s.base not in stages} == {
        f"${{{name}}}" for name in arguments
    }
    build = raw_compose["services"]["locust-master"]["build"]
    assert build["args"] == {
        name: f"${{TFSLOAD_{name}:-{default}}}" for name, default in arguments.items()
    }
    assert raw_compose["services"]["model-export"]["build"]["args"] == build["args"]
    for name, service in load_yaml(STANDIN_OVERRIDE)["services"].items():
        assert service["build"]["args"] == build["args"], name
    # BuildKit would fetch a `# syntax=` frontend from the registry; the classic builder is used
    # where there is none.
    dockerfile = (image_build["context"] / build["dockerfile"]).read_text()
    assert not re.search(r"(?m)^#\s*syntax\s*=", dockerfile)


def test_built_images_are_tagged_with_the_package_version(services):
    built = {name: s["image"] for name, s in services.items() if "build" in s}
    built |= {name: s["image"] for name, s in load_yaml(STANDIN_OVERRIDE)["services"].items()}
    for name, image in built.items():
        assert image.startswith("tfsload-") and image.endswith(f":{__version__}"), name


def test_the_export_service_runs_the_tensorflow_stage(services, image_build):
    builder = image_build["by_name"]["tensorflow"]
    export = services["model-export"]
    assert export["build"] == {**image_build["build"], "target": builder.name}
    # Its command runs in the stage's working directory and writes ./models there.
    assert mounts(export)[str(builder.workdir / "models")] == ("./models", "rw")


def test_the_build_context_leaves_out_local_state(image_build):
    ignored = set((image_build["context"] / ".dockerignore").read_text().split())
    assert {".venv", "models", ".git", "build", "*.egg-info"} <= ignored


# ---- the stand-in override -------------------------------------------------------------------


def test_the_standin_override_gives_the_servers_the_standin_image_and_no_gpu(image_build):
    """Only the image changes (flags, mounts, ports and healthcheck stay compose.yaml's), and
    the GPU services' reservations are reset, not merged."""
    override = with_defaults(load_yaml(STANDIN_OVERRIDE))["services"]
    assert set(override) == set(TFSERVING)
    for name, service in override.items():
        assert service["build"] == {**image_build["build"], "target": "standin"}, name
        gpu = {"deploy"} if name in GPU_SERVICES else set()
        assert set(service) == {"build", "image", *gpu}, name
    text = STANDIN_OVERRIDE.read_text()
    for name in GPU_SERVICES:
        block = re.search(rf"(?m)^  {name}:\n((?:    .*\n)*)", text)
        assert block and "    deploy: !reset {}\n" in block[1], name


# ---- what needs Docker -----------------------------------------------------------------------


def docker_missing(*check: str) -> str | None:
    """Why a Docker check cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI on this machine"
    result = run("docker", *check, timeout=60)
    return None if result.returncode == 0 else f"`docker {' '.join(check)}` failed"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_accepts_the_file(path):
    """compose.yaml alone; an override file on top of compose.yaml, as it is used."""
    reason = docker_missing("compose", "version")
    if reason:
        pytest.skip(f"{reason}: Compose's own parser cannot run (the schema check above did)")
    files = ["-f", str(COMPOSE)] + (["-f", str(path)] if path != COMPOSE else [])
    result = run("docker", "compose", *files, "--profile", "metrics", "config", "-q")
    assert result.returncode == 0, result.stderr


def test_docker_compose_merges_the_standin_override_as_intended():
    """Compose itself merges compose.standin.yaml: the servers get the stand-in image and build,
    keep compose.yaml's flags, ports, mounts and healthcheck, and reserve no GPU."""
    reason = docker_missing("compose", "version")
    if reason:
        pytest.skip(f"{reason}: Compose's own parser cannot run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFSLOAD_")}
    plain, merged = (
        json.loads(run("docker", "compose", *files, "config", "--format", "json", env=env).stdout)[
            "services"
        ]
        for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(STANDIN_OVERRIDE)])
    )
    for name, service in merged.items():
        if name not in TFSERVING:
            assert service == plain[name], name
            continue
        assert service["image"] == f"tfsload-standin:{__version__}", name
        assert service["build"]["target"] == "standin", name
        assert "deploy" not in service, name
        for key in ("command", "ports", "volumes", "healthcheck", "depends_on"):
            assert service[key] == plain[name][key], (name, key)
    assert all("deploy" in plain[name] for name in GPU_SERVICES)


def test_docker_compose_takes_the_images_and_gpus_from_the_environment(services):
    """Compose itself, given the variables, puts them where the contract above expects."""
    reason = docker_missing("compose", "version")
    if reason:
        pytest.skip(f"{reason}: Compose's own parser cannot run")
    chosen = {
        "TFSLOAD_TFS_GPU_BATCHING_DEVICE": "1",
        "TFSLOAD_TFS_GPU_DEVICE": "2",
        "TFSLOAD_GPU_MEMORY_FRACTION": "0.9",
        "TFSLOAD_PYTHON_IMAGE": "example.test/python:1.0.0",
        "TFSLOAD_LOCUST_IMAGE": "example.test/locust:1.0.0",
        "TFSLOAD_PROMETHEUS_IMAGE": "example.test/prometheus:1.0.0",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFSLOAD_")} | chosen
    result = run("docker", "compose", "--profile", "metrics", "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    for name, variable in GPU_DEVICE_VARIABLES.items():
        assert gpu_devices(resolved[name])[0]["device_ids"] == [chosen[variable]]
        assert flag_map(resolved[name]["command"])[GPU_MEMORY_FLAG] == "0.9"
    for name in ("model-export", "locust-master", "locust-worker"):
        assert resolved[name]["build"]["args"] == {
            "PYTHON_IMAGE": chosen["TFSLOAD_PYTHON_IMAGE"],
            "LOCUST_IMAGE": chosen["TFSLOAD_LOCUST_IMAGE"],
        }
    assert resolved["prometheus"]["image"] == chosen["TFSLOAD_PROMETHEUS_IMAGE"]


# ---- the TF Serving flags, served by the stand-in --------------------------------------------


def healthcheck(service: dict, rest_port: int) -> subprocess.CompletedProcess:
    """Run the service's own healthcheck here, aimed at ``rest_port`` instead of 8501."""
    kind, *argv = service["healthcheck"]["test"]
    assert kind == "CMD" and argv[:2] == ["bash", "-c"]
    container_address = f"/dev/tcp/127.0.0.1/{REST_PORT}"
    assert argv[2].count(container_address) == 1
    script = argv[2].replace(container_address, f"/dev/tcp/127.0.0.1/{rest_port}")
    return run("bash", "-c", script, timeout=30)


def server_setups() -> list[tuple[str, ...]]:
    """The TF Serving services grouped by identical flags, mounts and healthcheck.

    Services in one group would start the same server here, so each group starts one.
    """
    services = with_defaults(load_yaml(COMPOSE))["services"]
    groups: dict[str, list[str]] = {}
    for name in TFSERVING:
        setup = {key: services[name][key] for key in ("command", "volumes", "healthcheck")}
        groups.setdefault(json.dumps(setup, sort_keys=True), []).append(name)
    return [tuple(names) for names in groups.values()]


@pytest.mark.parametrize("names", server_setups(), ids="+".join)
def test_the_services_flags_start_a_server_that_predicts(names, services, exported_model):
    """The image's entrypoint flags plus the service's `command:`, paths mapped to this machine.

    The stand-in accepts TF Serving's flags and reads the same config files, so a flag or a
    config file that TF Serving would refuse fails here too.
    """
    service = services[names[0]]
    entrypoint = flag_map(list(ENTRYPOINT_FLAGS))
    models = {"./models": exported_model.version_dir.parents[1]}
    base_path = host_path(entrypoint["--model_base_path"], service, models)
    assert base_path == exported_model.version_dir.parent
    flags = [
        f"{flag}={host_path(value, service) if value.startswith('/') else value}"
        for flag, value in flag_map(service["command"]).items()
    ]
    instances = exported_model.instances_path.read_text()
    with start_standin(base_path, *flags, model_name=entrypoint["--model_name"]) as server:
        reply = requests.post(
            f"{server.rest_url}/v1/models/model:predict",
            data=f'{{"instances": {instances}}}',
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        assert [len(row) for row in predictions] == [2] * 5
        metrics = requests.get(server.metrics_url, timeout=30)
        assert ":tensorflow:serving:request_count" in metrics.text
        assert (":tensorflow:serving:batching_session" in metrics.text) == (
            "tfs-gpu-batching" in names
        )
        rest_port = urlsplit(server.rest_url).port
        result = healthcheck(service, rest_port)
        assert result.returncode == 0, result.stderr
    # Stopped: the same check must now report the server unhealthy.
    assert healthcheck(service, rest_port).returncode != 0
