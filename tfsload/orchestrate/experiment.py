"""Experiment files: which servers, which protocols, what load, what counts as passing.

An experiment is a TOML file (see ``configs/experiments/demo.toml`` for a commented one)::

    name = "demo"
    description = "..."
    protocols = ["rest", "grpc"]
    [model]            # name on the server, base path for launched stand-ins; the requests:
                       # instances (any instances-file form) or generate_instances (rows, with
                       # seed, int_min, int_max); version, signature, input_name, metadata;
                       # check_answers ("signature" or "probabilities")
    [load]             # users, spawn_rate, requests | duration, warmup_requests, arrival_rate,
                       # arrival, rows_per_request; a sweep: users = [1, 2, 4] or
                       # arrival_rates = [100, 200] (then no requests or duration)
    [search]           # windows of a stable step, and what slo/tune search (SearchSettings)
    [thresholds]       # p50_ms, p95_ms, p99_ms, fail_ratio, min_rps, fail_on_saturation,
                       # saturation_cpu_percent
    [[targets]]        # as in a targets file, plus launch = "standin" or "docker" (with image,
                       # gpus, mounts, environment: container_spec.py) and flags = [...]
    # or: targets_file = "../targets.toml"

Everything is validated before any load is sent: a bad file gives one ``ConfigError`` line naming
the file and the key. The settings a Locust process uses are validated by the run spec
(:mod:`tfsload.core.run_spec`) itself, so an experiment file and Locust's options accept and
refuse the same values. Relative paths are relative to the experiment file's directory, and a
launched stand-in runs in that directory too, so paths inside its flags follow the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import pairwise
from pathlib import Path

from tfsload.core import run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import Checks, LoadShape, RunSpec, SpecError, Transport, Workload
from tfsload.core.serving_config import read_batching, read_metrics_path
from tfsload.core.targets import NAME_PATTERN, Target, load_targets, parse_targets, read_toml
from tfsload.orchestrate.container_spec import (
    CONTAINER_KEYS,
    ContainerSpec,
    container_file,
    parse_container,
)

PROTOCOLS = ("rest", "grpc")
TOP_KEYS = {
    "name",
    "description",
    "protocols",
    "model",
    "load",
    "thresholds",
    "targets",
    "targets_file",
    "search",
    "transport",
}
# Transport settings that name files: relative to the experiment file, like every other path.
TRANSPORT_FILES = ("grpc_ca_file", "grpc_client_cert", "grpc_client_key", "rest_ca_file")
# [model] key -> workload setting; name, base_path and instances are the Model's own.
MODEL_SETTINGS = {
    "version": "model_version",
    "signature": "signature_name",
    "input_name": "input_name",
    "generate_instances": "generate_instances",
    "seed": "seed",
    "int_min": "int_min",
    "int_max": "int_max",
    "check_answers": "check_answers",
    "metadata": "no_metadata",
}
MODEL_KEYS = {"name", "base_path", "instances", *MODEL_SETTINGS}
# [load] key -> (run spec section, setting); duration and max_duration become load.run_time_s.
LOAD_SETTINGS = {
    "users": ("load", "users"),
    "spawn_rate": ("load", "spawn_rate"),
    "requests": ("load", "request_count"),
    "warmup_requests": ("load", "warmup_requests"),
    "arrival_rate": ("load", "arrival_rate"),
    "arrival": ("load", "arrival"),
    "rows_per_request": ("workload", "rows_per_request"),
}
LOAD_KEYS = {*LOAD_SETTINGS, "duration", "max_duration", "arrival_rates"}
SEARCH_AXES = ("rate", "users")
THRESHOLD_KEYS = {f.name for f in fields(Checks)}
LAUNCH_KINDS = ("standin", "docker")
# Flags the runner sets itself for a launched stand-in: the ports it picked and the model.
RUNNER_FLAGS = {
    "--port",
    "--rest_api_port",
    "--model_name",
    "--model_base_path",
    "--model_config_file",
}
DURATION_PATTERN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DEFAULT_MAX_DURATION = "10m"


@dataclass(frozen=True)
class Model:
    """The served model: its name on the server, where launched stand-ins load it from, the
    requests it gets and how its answers are judged (``workload``: the rest of ``[model]``)."""

    name: str
    base_path: Path | None
    instances: Path | None
    workload: Workload = field(default_factory=Workload)


@dataclass(frozen=True)
class Sweep:
    """Load levels each cell runs through, one stable step each: ``kind`` is ``users``
    (closed loop) or ``arrival_rate`` (open loop, sent by the experiment's users)."""

    kind: str
    levels: tuple[float, ...]


@dataclass(frozen=True)
class Load:
    """How each cell is loaded; every cell gets exactly the same load."""

    shape: LoadShape
    duration: str | None
    max_duration: str
    rows_per_request: int
    sweep: Sweep | None = None
    arrival_given: bool = False  # [load] arrival is in the file

    @property
    def step_arrival(self) -> str:
        """Open-loop arrivals of stable steps (sweeps, slo, tune): the file's ``arrival``, else
        Poisson, as MLPerf's Server scenario."""
        return self.shape.arrival if self.arrival_given else "poisson"

    @property
    def users(self) -> int:
        return self.shape.users

    @property
    def requests(self) -> int | None:
        return self.shape.request_count or None

    @property
    def time_limit_s(self) -> float:
        """Locust's own run-time limit for a cell: the duration, or the safety cap on counts."""
        return self.shape.run_time_s


@dataclass(frozen=True)
class SearchSettings:
    """``[search]``: how a step is cut into windows and judged stable, where a search for the
    highest load under a bound starts and stops, and what the batching tuner tries.

    ``axis`` ``rate`` searches open-loop Poisson rates (MLPerf's Server scenario); ``users``
    searches closed-loop concurrency, for "how many users at a time can this serve".
    """

    window_s: float = 5.0
    stable_windows: int = 3
    tolerance: float = 0.1
    max_windows: int = 10
    axis: str = "rate"
    start: float | None = None  # default: 50 req/s, or 1 user
    minimum: float | None = None  # default: 1 req/s, or 1 user
    maximum: float | None = None  # default: 100,000 req/s, or 1,024 users
    max_batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    batch_timeouts_us: tuple[int, ...] = (0, 1000, 2000, 5000)
    scan_timeout_us: int | None = None  # default: half the p99 bound
    batch_threads: int | None = None  # default: the server's cores
    extras: bool = True  # also try allowed_batch_sizes and max_enqueued_batches


SEARCH_DEFAULTS = {"rate": (50.0, 1.0, 100_000.0), "users": (1.0, 1.0, 1024.0)}


@dataclass(frozen=True)
class Launch:
    """A server the runner starts itself with extra flags: a stand-in process
    (``launch = "standin"``) or a container (``launch = "docker"``, with its ``container``)."""

    kind: str
    flags: tuple[str, ...]
    container: ContainerSpec | None = None


@dataclass(frozen=True)
class ExperimentTarget:
    """A target plus, for launched servers, how to start it.

    Launched targets may leave out ``rest`` and ``grpc``: port 0 stands for "pick a free one".
    """

    target: Target
    launch: Launch | None
    # Transport settings of this target alone (TLS, headers ...), over the experiment's.
    transport: tuple[tuple[str, object], ...] = ()

    @property
    def name(self) -> str:
        return self.target.name


@dataclass(frozen=True)
class Cell:
    """One target x protocol combination: one Locust run."""

    target: ExperimentTarget
    protocol: str

    @property
    def id(self) -> str:
        return f"{self.target.name}-{self.protocol}"


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file."""

    path: Path
    name: str
    description: str
    protocols: tuple[str, ...]
    model: Model
    load: Load
    checks: Checks
    targets: tuple[ExperimentTarget, ...]
    search: SearchSettings = SearchSettings()
    transport: Transport = field(default_factory=Transport)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths (and launched stand-ins) are resolved in."""
        return self.path.parent

    def spec(self) -> RunSpec:
        """What every cell's run spec shares (the runner adds each cell's target and files)."""
        instances = self.model.instances or (
            self.model.base_path / "instances.json" if self.model.base_path else None
        )
        workload = replace(
            self.model.workload,
            model_name=self.model.name,
            rows_per_request=self.load.rows_per_request,
        )
        if instances is not None and not workload.generate_instances:
            workload = replace(workload, instances_file=str(instances))
        return RunSpec(
            workload=workload, transport=self.transport, load=self.load.shape, checks=self.checks
        )

    @property
    def cells(self) -> list[Cell]:
        """All cells in run order: per target, each protocol."""
        return [Cell(t, p) for t in self.targets for p in self.protocols]

    def require_length(self) -> None:
        """A matrix run needs each cell's length; slo, tune and sweeps run until stable."""
        if self.load.sweep is None and self.load.requests is None and self.load.duration is None:
            raise ConfigError(
                f"{self.path}: load.requests: give requests or duration (or a sweep: a users "
                "list or arrival_rates)"
            )


def parse_duration(text: str) -> float:
    """Seconds in a Locust-style duration (``90``, ``30s``, ``1m30s``, ``1h``)."""
    if text.isdigit():
        return float(text)
    match = DURATION_PATTERN.match(text)
    if not text or not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1m30s")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


class _Table:
    """Typed access to one TOML table, raising ConfigError lines that name file and key."""

    def __init__(self, data: object, file: Path, prefix: str, allowed: set[str]):
        self.file, self.prefix = file, prefix
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {prefix}: must be a table")
        self.data = data
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")

    def key(self, key: str) -> str:
        """``file: table.key``, the prefix of every error about ``key``."""
        return f"{self.file}: {self.prefix}.{key}" if self.prefix else f"{self.file}: {key}"

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.key(key)}: must be a string")
        return value

    def number(self, key: str, minimum: float, integer: bool = False, maximum: float | None = None):
        value = self.data.get(key)
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(f"{self.key(key)}: must be {kind}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            raise ConfigError(f"{self.key(key)}: must be at least {minimum:g}{upper}")
        return value

    def path(self, key: str, base: Path) -> Path | None:
        value = self.string(key)
        return None if value is None else (base / value).resolve()


def _parse_model(data: object, file: Path) -> Model:
    table = _Table(data, file, "model", MODEL_KEYS)
    name = table.string("name", "model")
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{table.key('name')}: letters, digits, '-' and '_', starting with a letter"
        )
    values, names = {}, {}
    for key, setting in MODEL_SETTINGS.items():
        names[setting] = f"model.{key}"
        if key in table.data:
            values[setting] = table.data[key]
    version = values.get("model_version")
    if isinstance(version, int) and not isinstance(version, bool):
        values["model_version"] = str(version)  # version = 3 as well as version = "3"
    if "no_metadata" in values:
        if not isinstance(values["no_metadata"], bool):
            raise ConfigError(f"{table.key('metadata')}: must be true or false")
        values["no_metadata"] = not values["no_metadata"]
    if "instances" in table.data and values.get("generate_instances"):
        raise ConfigError(
            f"{table.key('generate_instances')}: give either instances or generate_instances"
        )
    workload = _spec_section("workload", values, names, file)
    base = file.parent
    return Model(name, table.path("base_path", base), table.path("instances", base), workload)


def _spec_section(section: str, values: dict, keys: dict[str, str], file: Path):
    """Build one run spec section from experiment keys; its errors name the experiment's key."""
    try:
        return getattr(run_spec.from_values({section: values}), section)
    except SpecError as exc:
        setting = exc.key.split(".", 1)[1]
        raise ConfigError(f"{file}: {keys.get(setting, setting)}: {exc.problem}") from None


def _levels(table: _Table, key: str, integer: bool) -> tuple[float, ...]:
    """A sweep's load levels: a non-empty, increasing list of positive numbers."""
    values = table.data[key]
    kind = "integers" if integer else "numbers"
    kinds = (int,) if integer else (int, float)
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, kinds) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise ConfigError(f"{table.key(key)}: must be a non-empty list of positive {kind}")
    if any(b <= a for a, b in pairwise(values)):
        raise ConfigError(f"{table.key(key)}: must increase from one level to the next")
    return tuple(float(v) for v in values)


def _parse_sweep(table: _Table) -> Sweep | None:
    """``users = [..]`` (closed loop) or ``arrival_rates = [..]`` (open loop), or None."""
    users, rates = table.data.get("users"), table.data.get("arrival_rates")
    if isinstance(users, list) and rates is not None:
        raise ConfigError(f"{table.key('arrival_rates')}: give a users list or arrival_rates")
    if rates is not None:
        if "arrival_rate" in table.data:
            raise ConfigError(f"{table.key('arrival_rates')}: give arrival_rate or arrival_rates")
        return Sweep("arrival_rate", _levels(table, "arrival_rates", integer=False))
    if isinstance(users, list):
        if "arrival_rate" in table.data:
            raise ConfigError(f"{table.key('users')}: a users list is closed loop: no arrival_rate")
        return Sweep("users", _levels(table, "users", integer=True))
    return None


def _parse_load(data: object, file: Path) -> Load:
    table = _Table(data, file, "load", LOAD_KEYS)
    if table.data.get("users") is None:
        raise ConfigError(f"{table.key('users')}: required")
    sweep = _parse_sweep(table)
    requests = table.data.get("requests")
    duration = table.string("duration")
    if requests is not None and duration is not None:
        raise ConfigError(f"{table.key('requests')}: give exactly one of requests or duration")
    if sweep and (requests is not None or duration is not None):
        key = "requests" if requests is not None else "duration"
        raise ConfigError(f"{table.key(key)}: a sweep's steps run until stable: leave it out")
    max_duration = table.string("max_duration", DEFAULT_MAX_DURATION)
    for key, value in (("duration", duration), ("max_duration", max_duration)):
        try:
            if value is not None and parse_duration(value) <= 0:
                raise ValueError(f"{value!r} is not a positive duration")
        except ValueError as exc:
            raise ConfigError(f"{table.key(key)}: {exc}") from None
    sections: dict[str, dict] = {"load": {}, "workload": {}}
    names: dict[str, str] = {}
    for key, (section, setting) in LOAD_SETTINGS.items():
        names[setting] = f"load.{key}"
        if key in table.data:
            sections[section][setting] = table.data[key]
    if sweep and sweep.kind == "users":
        sections["load"]["users"] = int(max(sweep.levels))
    sections["load"]["run_time_s"] = parse_duration(duration or max_duration)
    workload = _spec_section("workload", sections["workload"], names, file)
    shape = _spec_section("load", sections["load"], names, file)
    if shape.users < 1:
        raise ConfigError(f"{table.key('users')}: must be at least 1")
    if requests is not None and shape.request_count < 1:
        raise ConfigError(f"{table.key('requests')}: must be at least 1")
    if not shape.spawn_rate:
        shape = replace(shape, spawn_rate=float(shape.users))
    given = "arrival" in table.data
    return Load(shape, duration, max_duration, workload.rows_per_request, sweep, given)


def _parse_search(data: object, file: Path) -> SearchSettings:
    allowed = {f.name for f in fields(SearchSettings)}
    table = _Table(data, file, "search", allowed)
    values: dict = {}
    for key, minimum, integer in (
        ("window_s", 0.5, False),
        ("stable_windows", 2, True),
        ("tolerance", 0.001, False),
        ("max_windows", 2, True),
        ("start", 1, False),
        ("minimum", 1, False),
        ("maximum", 1, False),
        ("scan_timeout_us", 0, True),
        ("batch_threads", 1, True),
    ):
        value = table.number(key, minimum, integer=integer)
        if value is not None:
            values[key] = value
    if "axis" in table.data:
        axis = table.string("axis")
        if axis not in SEARCH_AXES:
            raise ConfigError(f"{table.key('axis')}: must be one of {', '.join(SEARCH_AXES)}")
        values["axis"] = axis
    for key, minimum in (("max_batch_sizes", 1), ("batch_timeouts_us", 0)):
        if key in table.data:
            items = table.data[key]
            if (
                not isinstance(items, list)
                or not items
                or not all(type(v) is int and v >= minimum for v in items)
            ):
                raise ConfigError(
                    f"{table.key(key)}: must be a non-empty list of integers >= {minimum}"
                )
            values[key] = tuple(items)
    if "extras" in table.data:
        if not isinstance(table.data["extras"], bool):
            raise ConfigError(f"{table.key('extras')}: must be true or false")
        values["extras"] = table.data["extras"]
    settings = SearchSettings(**values)
    if settings.max_windows < settings.stable_windows:
        raise ConfigError(f"{table.key('max_windows')}: must be at least stable_windows")
    start, low, high = SEARCH_DEFAULTS[settings.axis]
    settings = replace(
        settings,
        start=settings.start or start,
        minimum=settings.minimum or low,
        maximum=settings.maximum or high,
    )
    if not settings.minimum <= settings.start <= settings.maximum:
        raise ConfigError(f"{table.key('start')}: must lie between minimum and maximum")
    return settings


def _parse_thresholds(data: object, file: Path) -> Checks:
    table = _Table(data, file, "thresholds", THRESHOLD_KEYS)
    names = {key: f"thresholds.{key}" for key in THRESHOLD_KEYS}
    return _spec_section("checks", dict(table.data), names, file)


def _parse_protocols(data: object, file: Path) -> tuple[str, ...]:
    where = f"{file}: protocols"
    if not isinstance(data, list) or not data or not all(isinstance(p, str) for p in data):
        raise ConfigError(f"{where}: must be a non-empty list of {', '.join(PROTOCOLS)}")
    for protocol in data:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if len(set(data)) != len(data):
        raise ConfigError(f"{where}: lists a protocol twice")
    return tuple(data)


def flag_value(flags: tuple[str, ...], name: str) -> str | None:
    """The value of ``name`` in ``flags`` (``--name=value`` or ``--name value``), last one wins."""
    value = None
    for i, flag in enumerate(flags):
        if flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
        elif flag == name and i + 1 < len(flags):
            value = flags[i + 1]
    return value


def _check_config_files(
    flags: tuple[str, ...], file_of: Callable[[str, str], Path], where: str
) -> None:
    """Read the batching and monitoring configs a launched server will be given, with the
    stand-in's own parsers, so that a bad one is bad input now rather than a failed launch.
    ``file_of(flag, value)`` is where the file lies on this machine."""
    for flag, read in (
        ("--batching_parameters_file", read_batching),
        ("--monitoring_config_file", read_metrics_path),
    ):
        value = flag_value(flags, flag)
        if value:
            try:
                read(str(file_of(flag, value)))
            except ConfigError as exc:
                raise ConfigError(f"{where}.flags: {exc}") from None


def _parse_launch(table: dict, where: str, base: Path) -> Launch:
    kind = table.get("launch")
    if kind not in LAUNCH_KINDS:
        raise ConfigError(f"{where}.launch: must be one of {', '.join(LAUNCH_KINDS)}")
    flags = table.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise ConfigError(f"{where}.flags: must be a list of strings")
    for flag in flags:
        name = flag.split("=", 1)[0]
        if not name.startswith("--"):
            raise ConfigError(f"{where}.flags: {flag!r} is not a --flag[=value]")
        if name in RUNNER_FLAGS:
            raise ConfigError(f"{where}.flags: {name} is set by the runner")
    container = parse_container(table, where, base) if kind == "docker" else None
    given = sorted(CONTAINER_KEYS & set(table))
    if container is None and given:
        raise ConfigError(f'{where}.{given[0]}: only for launch = "docker"')

    def file_of(flag: str, value: str) -> Path:
        return container_file(container, flag, value, where) if container else base / value

    _check_config_files(tuple(flags), file_of, where)
    return Launch(kind, tuple(flags), container)


def _transport_values(data: object, file: Path, where: str) -> dict:
    """A ``transport`` table's settings, with its file paths resolved against the experiment."""
    known = {f.name for f in fields(Transport)}
    table = _Table(data, file, where, known)
    values = dict(table.data)
    if isinstance(values.get("headers"), list):
        values["headers"] = tuple(values["headers"])
    for key in TRANSPORT_FILES:
        if isinstance(values.get(key), str) and values[key]:
            values[key] = str((file.parent / values[key]).resolve())
    return values


def _parse_transport(data: object, file: Path, where: str, base: Transport) -> Transport:
    """Transport settings over ``base``, validated by the run spec; errors name file and key."""
    values = {**asdict(base), **_transport_values(data, file, where)}
    names = {key: f"{where}.{key}" for key in values}
    return _spec_section("transport", values, names, file)


def _parse_targets(data: dict, file: Path, transport: Transport) -> tuple[ExperimentTarget, ...]:
    if "targets_file" in data:
        if "targets" in data:
            raise ConfigError(f"{file}: targets_file: give either targets_file or [[targets]]")
        ref = data["targets_file"]
        if not isinstance(ref, str):
            raise ConfigError(f"{file}: targets_file: must be a string")
        try:
            targets = load_targets((file.parent / ref).resolve())
        except ConfigError as exc:
            raise ConfigError(f"{file}: targets_file: {exc}") from None
        return tuple(ExperimentTarget(t, None) for t in targets)
    tables = data.get("targets")
    where = f"{file}: targets"
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: needs at least one [[targets]] table or a targets_file")
    # Launched servers get their addresses from the runner: port 0 means "pick a free port".
    launches: list[Launch | None] = []
    filled = []
    for i, table in enumerate(tables):
        if isinstance(table, dict) and {"launch", "flags", *CONTAINER_KEYS} & set(table):
            launches.append(_parse_launch(table, f"{where}[{i}]", file.parent))
            table = {"rest": "http://127.0.0.1:0", "grpc": "127.0.0.1:0", **table}
        else:
            launches.append(None)
        filled.append(table)
    extra = frozenset({"launch", "flags", "transport", *CONTAINER_KEYS})
    targets = parse_targets(filled, where, extra_keys=extra)
    own: list[tuple] = []
    for i, table in enumerate(filled):
        if "transport" not in table:
            own.append(())
            continue
        at = f"targets[{i}].transport"
        _parse_transport(table["transport"], file, at, transport)  # refuse bad values now
        own.append(tuple(sorted(_transport_values(table["transport"], file, at).items())))
    return tuple(
        ExperimentTarget(t, launch, settings)
        for t, launch, settings in zip(targets, launches, own, strict=True)
    )


def check_model_folder(experiment: Experiment) -> None:
    """ConfigError when a target is to be launched and the model folder is not there: bad
    input before a run, rather than a failed launch. (An experiment file is valid before the
    model is exported, so this is checked when it is about to run.)"""
    base_path = experiment.model.base_path
    if any(et.launch for et in experiment.targets) and not base_path.is_dir():
        raise ConfigError(f"{experiment.path}: model.base_path: {base_path}: no such directory")


def load_experiment(path: Path) -> Experiment:
    """Read and validate an experiment file; raises ConfigError naming the file and key."""
    file = Path(path).resolve()
    data = read_toml(file)
    top = _Table(data, file, "", TOP_KEYS)
    name = top.string("name", file.stem)
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{file}: name: letters, digits, '-' and '_', starting with a letter")
    if "load" not in data:
        raise ConfigError(f"{file}: load: required ([load] with users and requests or duration)")
    protocols = _parse_protocols(data.get("protocols", list(PROTOCOLS)), file)
    model = _parse_model(data.get("model", {}), file)
    load = _parse_load(data["load"], file)
    checks = _parse_thresholds(data.get("thresholds", {}), file)
    search = _parse_search(data.get("search", {}), file)
    transport = _parse_transport(data.get("transport", {}), file, "transport", Transport())
    targets = _parse_targets(data, file, transport)
    for i, et in enumerate(targets):
        for protocol in protocols:
            if et.target.url(protocol) is None:
                raise ConfigError(
                    f"{file}: targets[{i}].{protocol}: required, protocols lists {protocol}"
                )
        if et.launch and model.base_path is None:
            raise ConfigError(f"{file}: model.base_path: required to launch {et.name!r}")
    return Experiment(
        path=file,
        name=name,
        description=top.string("description", "") or "",
        protocols=protocols,
        model=model,
        load=load,
        checks=checks,
        targets=targets,
        search=search,
        transport=transport,
    )
