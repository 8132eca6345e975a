"""The typed description of one load run: what is sent, how load arrives, what passes, where to.

A :class:`RunSpec` is the one contract between the part of tfsload that orchestrates runs and
the part that runs inside Locust processes. The runner writes one per cell as JSON
(``tfsload-run-spec/1``) and starts Locust with ``--run-spec FILE``; a person running Locust by
hand gives the same settings as options, which :mod:`tfsload.generator.options` declares from
the fields below. Either way the values pass through :func:`from_values`, so one validation and
one help text per setting exist, and the experiment file's ``[thresholds]`` cannot mean
something else than ``--check-*``.

The sections follow MLPerf LoadGen's split: the workload (what is sent and how answers are
judged) is separate from the load shape (how requests arrive), from the checks (what counts as
passing) and from the target (what serves them).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tfsload.core import headers
from tfsload.core.errors import ConfigError
from tfsload.core.targets import normalize_grpc, normalize_http
from tfsload.core.thresholds import CHECKS, Threshold

FORMAT = "tfsload-run-spec/1"
ARRIVAL_MODES = ("constant", "poisson")
DEFAULT_INSTANCES_FILE = "models/model/instances.json"
SATURATION_CPU_PERCENT = 90.0
ANSWER_CHECKS = ("signature", "probabilities")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
INT64_MAX = 2**63 - 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class SpecError(ConfigError):
    """A bad setting; ``key`` is its place in the spec (``load.request_count``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    ui: bool = True,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """A spec field with what an option needs: its flag (None: spec files only) and help.

    A ``secret`` field stays out of the spec's repr (and so out of any log line quoting it).
    """
    meta = {"flag": flag, "help": help, "ui": ui, "min": minimum, "max": maximum}
    meta["choices"] = choices
    return field(default=default, metadata=meta, repr=not secret)


def _kind(default: Any) -> type:
    return type(default) if default is not None else float


@dataclass(frozen=True)
class Workload:
    """What every request sends and where it goes on the server (the sample library)."""

    model_name: str = setting("model", "TF Serving model name", flag="--model-name")
    model_version: str = setting(
        "", "model version number or version label to call; empty: the latest",
        flag="--model-version",
    )  # fmt: skip
    signature_name: str = setting("serving_default", "signature to call", flag="--signature-name")
    input_name: str = setting(
        "",
        "the input a list of plain rows feeds; empty: the signature's only input (input_1 "
        "when the server gives no metadata)",
        flag="--input-name",
    )
    instances_file: str = setting(
        DEFAULT_INSTANCES_FILE,
        "requests to send: a JSON list of rows or row objects, a TF Serving predict body "
        "(instances or inputs), or JSON Lines of them (a pool users cycle through)",
        flag="--instances-file",
    )
    generate_instances: int = setting(
        0,
        "instead of --instances-file, send requests of this many rows of random values made "
        "from the model's signature; 0: read the file",
        flag="--generate-instances",
        minimum=0,
    )
    seed: int = setting(0, "seed of --generate-instances' random values", flag="--seed")
    int_min: int = setting(
        0, "smallest value --generate-instances puts in integer inputs", flag="--int-min"
    )
    int_max: int = setting(
        99,
        "largest value --generate-instances puts in integer inputs (token ids: keep it "
        "inside the vocabulary)",
        flag="--int-max",
    )
    rows_per_request: int = setting(
        0,
        "cut or repeat the instances to this many rows per request; 0: the file's rows",
        flag="--rows-per-request",
        minimum=0,
    )
    no_metadata: bool = setting(
        False,
        "do not ask the server for the model's signature: send the instances as written",
        flag="--no-metadata",
    )
    check_answers: str = setting(
        "signature",
        "signature: every output with its dtype and shape, the rows sent, finite numbers; "
        "probabilities: also every float output's rows sum to 1",
        flag="--check-answers",
        choices=ANSWER_CHECKS,
    )


@dataclass(frozen=True)
class Transport:
    """How requests travel: time limits, TLS, extra headers and message size.

    Every request has a time limit: a server that accepts connections and never answers must
    show up as failed requests, never as a quiet run. The defaults fit inference calls.
    TLS is on for a ``grpcs://`` or ``https://`` address, or with ``--grpc-tls`` (which any
    other ``--grpc-*`` TLS setting implies). Header values are secrets
    (:mod:`tfsload.core.headers`): a spec written to a file keeps only their names.
    """

    grpc_timeout_s: float = setting(
        10.0, "deadline of each gRPC call, seconds", flag="--grpc-timeout", minimum=0.001
    )
    grpc_retries: bool = setting(
        False,
        "let grpcio retry a call the server refused unread (GOAWAY, REFUSED_STREAM), as its "
        "clients do by default; off, each call is one attempt and a refusal counts as a failure",
        flag="--grpc-retries",
        ui=False,
    )
    rest_connect_timeout_s: float = setting(
        3.0,
        "time to open a REST connection, seconds",
        flag="--rest-connect-timeout",
        minimum=0.001,
    )
    rest_timeout_s: float = setting(
        10.0,
        "time to wait for each REST answer once sent, seconds",
        flag="--rest-timeout",
        minimum=0.001,
    )
    grpc_tls: bool = setting(
        False, "gRPC over TLS (as a grpcs:// address does)", flag="--grpc-tls", ui=False
    )
    grpc_ca_file: str = setting(
        "",
        "PEM certificates that may sign the gRPC server's; empty: the system's",
        flag="--grpc-ca-file",
        ui=False,
    )
    grpc_client_cert: str = setting(
        "", "PEM client certificate for gRPC (with --grpc-client-key)", flag="--grpc-client-cert",
        ui=False,
    )  # fmt: skip
    grpc_client_key: str = setting(
        "", "PEM private key of --grpc-client-cert", flag="--grpc-client-key", ui=False
    )
    grpc_server_name: str = setting(
        "",
        "host name the gRPC server's certificate must carry, if not the address's",
        flag="--grpc-server-name",
        ui=False,
    )
    rest_ca_file: str = setting(
        "",
        "PEM certificates that may sign an https:// REST server's; empty: the system's",
        flag="--rest-ca-file",
        ui=False,
    )
    insecure: bool = setting(
        False,
        "https:// REST without checking the server's certificate (encrypted, not authenticated)",
        flag="--insecure",
        ui=False,
    )
    headers: tuple[str, ...] = setting(
        (),
        "extra header 'Name: value' of every request (REST header, gRPC metadata), repeatable; "
        "a value ${VAR} is read from the environment; values are never written out",
        flag="--header",
        ui=False,
        secret=True,
    )
    max_message_bytes: int = setting(
        MAX_MESSAGE_BYTES,
        "largest request or answer, bytes (gRPC's message limits; a larger REST answer fails)",
        flag="--max-message-bytes",
        ui=False,
        minimum=1,
    )

    @property
    def grpc_secure(self) -> bool:
        """Whether a gRPC address without a scheme is reached over TLS."""
        return self.grpc_tls or any(
            (self.grpc_ca_file, self.grpc_client_cert, self.grpc_client_key, self.grpc_server_name)
        )


@dataclass(frozen=True)
class LoadShape:
    """How load arrives (the scenario). ``users``, ``spawn_rate`` and ``run_time_s`` are
    Locust's ``-u``, ``-r`` and ``-t``; 0 leaves them to Locust's own options."""

    users: int = setting(0, "concurrent users; 0: Locust's -u", minimum=0)
    spawn_rate: float = setting(0.0, "users started per second; 0: Locust's -r", minimum=0)
    run_time_s: float = setting(0.0, "seconds of load; 0: Locust's -t", minimum=0)
    request_count: int = setting(
        0,
        "stop once this many requests completed (all users and workers); 0: no limit",
        flag="--request-count",
        minimum=0,
    )
    warmup_requests: int = setting(
        0,
        "leave the first N completed requests out of all results",
        flag="--warmup-requests",
        minimum=0,
    )
    arrival_rate: float = setting(
        0.0,
        "open loop: requests per second for the whole run; 0: closed loop",
        flag="--arrival-rate",
        minimum=0,
    )
    arrival: str = setting(
        "constant",
        "open-loop inter-arrival times: constant or poisson",
        flag="--arrival",
        choices=ARRIVAL_MODES,
    )
    late_after_ms: float = setting(
        1.0,
        "open loop: a send leaving more than this late counts as late (more than 1% late: the "
        "schedule was not kept)",
        flag="--late-after-ms",
        ui=False,
        minimum=0,
    )

    @property
    def open_loop(self) -> bool:
        return self.arrival_rate > 0


def _check_setting(check: str) -> Any:
    unit = {"fail_ratio": "failed/all, 0..1", "min_rps": "req/s, at least"}.get(
        check, "ms, at most"
    )
    maximum = 1.0 if check == "fail_ratio" else None
    flag = "--check-" + check.replace("_", "-")
    return setting(None, f"fail (exit 3) unless {check} ({unit}) holds", flag=flag, minimum=0,
                   maximum=maximum)  # fmt: skip


@dataclass(frozen=True)
class Checks:
    """Pass/fail thresholds on the precise totals, as data (:mod:`tfsload.core.thresholds`)."""

    p50_ms: float | None = _check_setting("p50_ms")
    p95_ms: float | None = _check_setting("p95_ms")
    p99_ms: float | None = _check_setting("p99_ms")
    fail_ratio: float | None = _check_setting("fail_ratio")
    min_rps: float | None = _check_setting("min_rps")
    fail_on_saturation: bool = setting(
        False,
        "a saturated load generator fails the run (exit 4 from Locust; FAIL in reports)",
        flag="--fail-on-saturation",
    )
    saturation_cpu_percent: float = setting(
        SATURATION_CPU_PERCENT,
        "CPU percent of one core above which a generator process counts as saturated",
        flag="--saturation-cpu-percent",
        ui=False,
        minimum=0,
    )

    @property
    def thresholds(self) -> list[Threshold]:
        """The thresholds that are set, in :data:`~tfsload.core.thresholds.CHECKS` order."""
        return [
            Threshold(check, getattr(self, check))
            for check in CHECKS
            if getattr(self, check) is not None
        ]


@dataclass(frozen=True)
class TargetAddress:
    """Where the generic user classes send, and the name of their stats rows."""

    name: str = setting("", "stats rows of RestUser/GrpcUser: '<name> rest'", flag="--target-name")
    rest: str = setting("", "REST address for RestUser (http://host:port)", flag="--rest-host")
    grpc: str = setting("", "gRPC address for GrpcUser (grpc://host:port)", flag="--grpc-host")


@dataclass(frozen=True)
class Outputs:
    """Files the run writes besides Locust's own (``--csv`` is Locust's, read before plugins)."""

    precise_json: str = setting(
        "", "write the precise results to this JSON file", flag="--precise-json", ui=False
    )
    junit_xml: str = setting(
        "",
        "write the verdict to this JUnit XML file for CI: a test case per threshold (the "
        "measured value in its message), one for failed requests, one for saturation",
        flag="--junit-xml",
        ui=False,
    )
    html: str = setting("", "Locust's HTML report; empty: Locust's --html")
    windows_json: str = setting(
        "",
        "keep rewriting this JSON file with the finished measurement windows (counts, p50/p99, "
        "histograms), for deciding while the run goes on whether the load is stable",
        flag="--windows-json",
        ui=False,
    )
    window_s: float = setting(
        5.0, "length of a measurement window, seconds", flag="--window-s", ui=False, minimum=0.5
    )


_KIND_WORDS = {bool: "must be true or false", int: "must be an integer", float: "must be a number"}

SECTIONS: dict[str, type] = {
    "workload": Workload,
    "transport": Transport,
    "load": LoadShape,
    "checks": Checks,
    "target": TargetAddress,
    "outputs": Outputs,
}


@dataclass(frozen=True)
class RunSpec:
    """Everything tfsload needs to know about one load run, validated."""

    workload: Workload = field(default_factory=Workload)
    transport: Transport = field(default_factory=Transport)
    load: LoadShape = field(default_factory=LoadShape)
    checks: Checks = field(default_factory=Checks)
    target: TargetAddress = field(default_factory=TargetAddress)
    outputs: Outputs = field(default_factory=Outputs)

    def to_dict(self, secrets: bool = False) -> dict:
        """The JSON form. Header values are redacted unless ``secrets`` (only for handing the
        spec to this run's own worker processes, never for a file)."""
        data = {"format": FORMAT, **asdict(self)}
        if not secrets:
            transport = data["transport"]
            transport["headers"] = headers.redact(self.transport.headers)
        return data

    def write(self, path: Path) -> None:
        from tfsload.core.files import write_json_atomic

        write_json_atomic(path, self.to_dict())

    def with_values(self, section: str, **values: Any) -> RunSpec:
        """A copy with some settings of one section changed, validated again."""
        current = getattr(self, section)
        merged = {**asdict(current), **values}
        return replace(self, **{section: _build(section, merged, typed=True)})


def _coerce(section: str, spec_field: Any, raw: Any, typed: bool) -> Any:
    """One setting from JSON/TOML (``typed``) or from a command line or web form (text)."""
    key = f"{section}.{spec_field.name}"
    meta = spec_field.metadata
    default = spec_field.default if spec_field.default is not MISSING else None
    kind = _kind(default)
    if kind is tuple:
        return _coerce_texts(key, raw)
    if raw is None:
        if default is None:
            return None
        raise SpecError(key, "must have a value")
    if typed and isinstance(raw, str) and kind is not str:
        raise SpecError(key, _KIND_WORDS[kind])
    if isinstance(raw, str):
        text = raw.strip()
        if text == "" and kind is not str:
            return default
        raw = text
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no",
                                                    "off"):  # fmt: skip
            return raw.lower() in ("true", "1", "yes", "on")
        raise SpecError(key, f"{_KIND_WORDS[bool]}, got {raw!r}")
    if kind is str:
        if not isinstance(raw, str):
            raise SpecError(key, "must be a string")
        if meta["choices"] and raw not in meta["choices"]:
            raise SpecError(key, f"must be one of {', '.join(meta['choices'])}, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise SpecError(key, _KIND_WORDS[kind])
    try:
        value = kind(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise SpecError(
            key, f"{raw!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is int and not isinstance(value, int):
        raise SpecError(key, "must be an integer")
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        raise SpecError(key, "must be a finite number")
    low, high = meta["min"], meta["max"]
    if low is not None and value < low:
        raise SpecError(key, f"must be at least {low:g}, got {raw}")
    if high is not None and value > high:
        raise SpecError(key, f"must be at most {high:g}, got {raw}")
    return float(value) if kind is float else value


def _coerce_texts(key: str, raw: Any) -> tuple[str, ...]:
    """A list of strings: from JSON, a repeated option, or one text (an environment variable)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,) if raw.strip() else ()
    if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
        raise SpecError(key, "must be a list of strings")
    return tuple(raw)


def _build(section: str, values: dict, typed: bool) -> Any:
    cls = SECTIONS[section]
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SpecError(f"{section}.{unknown[0]}", "unknown setting")
    built = {}
    for name, value in values.items():
        built[name] = _coerce(section, known[name], value, typed)
    result = cls(**built)
    _check(section, result)
    return result


def _check_workload(value: Workload) -> None:
    for name in ("model_name", "signature_name", "instances_file"):
        if not getattr(value, name).strip():
            raise SpecError(f"workload.{name}", "must not be empty")
    version = value.model_version
    if version.isdigit() and int(version) > INT64_MAX:
        raise SpecError("workload.model_version", f"{version} is larger than a version can be")
    if version and not version.isdigit() and not LABEL_PATTERN.match(version):
        raise SpecError(
            "workload.model_version",
            f"{version!r} is neither a version number nor a label (letters, digits, '-', '_')",
        )
    if value.int_min > value.int_max:
        raise SpecError("workload.int_max", f"{value.int_max} is below int_min {value.int_min}")


def _check(section: str, value: Any) -> None:
    """Checks that involve the meaning of a value, not just its type and range."""
    if section == "workload":
        _check_workload(value)
    if section == "transport":
        for index, entry in enumerate(value.headers):
            wrong = headers.problem(index, entry)
            if wrong:
                raise SpecError("transport.headers", wrong)
        if bool(value.grpc_client_cert) != bool(value.grpc_client_key):
            raise SpecError("transport.grpc_client_key", "give a client certificate and its key")
        if value.insecure and value.rest_ca_file:
            raise SpecError("transport.insecure", "checks no certificate: drop --rest-ca-file")
    if section == "target":
        for protocol, check in (("rest", normalize_http), ("grpc", normalize_grpc)):
            address = getattr(value, protocol)
            if address:
                try:
                    check(address)
                except ValueError as exc:
                    raise SpecError(f"target.{protocol}", str(exc)) from None


def from_values(sections: dict[str, dict], typed: bool = True) -> RunSpec:
    """Build a RunSpec from ``{section: {setting: value}}``: typed values (JSON, TOML) or, with
    ``typed=False``, text as a command line or the web UI's form gives it."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SpecError(unknown[0], "unknown section")
    built = {name: _build(name, dict(values), typed) for name, values in sections.items()}
    return RunSpec(**built)


def from_dict(data: object) -> RunSpec:
    """A RunSpec from its JSON form; the format must be this version's."""
    if not isinstance(data, dict):
        raise SpecError("format", "a run spec is a JSON object")
    if data.get("format") != FORMAT:
        raise SpecError("format", f"expected {FORMAT!r}, got {data.get('format')!r}")
    sections = {key: value for key, value in data.items() if key != "format"}
    for key, value in sections.items():
        if not isinstance(value, dict):
            raise SpecError(key, "must be an object")
    return from_values(sections)


def read(path: Path) -> RunSpec:
    """Read a spec file; every problem is one ConfigError line naming the file and setting."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"--run-spec: {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--run-spec: {path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"--run-spec: {path}: cannot read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"--run-spec: {path}: not JSON ({exc})") from None
    try:
        return from_dict(data)
    except SpecError as exc:
        raise ConfigError(f"--run-spec: {path}: {exc}") from None


def option_fields() -> list[tuple[str, Any]]:
    """(section, field) of every setting that is also a command-line option."""
    return [
        (section, spec_field)
        for section, cls in SECTIONS.items()
        for spec_field in fields(cls)
        if spec_field.metadata.get("flag")
    ]
