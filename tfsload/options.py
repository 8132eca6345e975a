"""Command-line options of the Locust users, and the validated settings a run works from.

The options are added to Locust's own parser (so ``--help``, config files, ``LOCUST_*``
environment variables and the web UI start form all know them). Values can arrive as strings
from the web UI form, so :func:`settings_from` converts and checks every one of them and names
the flag in a one-line :class:`~tfsload.errors.ConfigError` when it is wrong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfsload.errors import ConfigError
from tfsload.targets import DEFAULT_TARGETS_FILE

DEFAULT_INSTANCES_FILE = Path(__file__).resolve().parents[1] / "models" / "model" / "instances.json"
ARRIVAL_MODES = ("constant", "poisson")
SATURATION_CPU_PERCENT = 90.0
TARGETS_FILE_ENV = "LOCUST_TARGETS_FILE"

# The thresholds, in the order they are reported: (flag, check name in the results).
THRESHOLD_FLAGS = (
    ("--check-p50-ms", "p50_ms"),
    ("--check-p95-ms", "p95_ms"),
    ("--check-p99-ms", "p99_ms"),
    ("--check-fail-ratio", "fail_ratio"),
    ("--check-min-rps", "min_rps"),
)


def add_options(parser: Any) -> None:
    """Add tfsload's options to a Locust argument parser (``init_command_line_parser``)."""

    def option(flag: str, *, ui: bool = True, **kwargs: Any) -> None:
        env = "LOCUST_" + flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(flag, env_var=env, include_in_web_ui=ui, **kwargs)

    # This project binds to loopback unless asked otherwise; Locust's own defaults are all
    # interfaces. LOCUST_WEB_HOST / --web-host and --master-bind-host still override these.
    parser.set_defaults(web_host="127.0.0.1", master_bind_host="127.0.0.1")
    option("--model-name", default="model", help="TF Serving model name")
    option("--signature-name", default="serving_default", help="signature to call")
    option("--input-name", default="input_1", help="name of the model's input tensor")
    option(
        "--instances-file",
        default=str(DEFAULT_INSTANCES_FILE),
        help="JSON list of rows (lists of ints) sent in every request",
    )
    option("--grpc-timeout", type=float, default=10.0, help="deadline of each gRPC call, seconds")
    option("--rest-host", default="", help="REST address for RestUser (http://host:port)")
    option("--grpc-host", default="", help="gRPC address for GrpcUser (grpc://host:port)")
    option(
        "--targets-file",
        ui=False,
        default=str(DEFAULT_TARGETS_FILE),
        help="targets whose per-target user classes are offered (read when the locustfile loads)",
    )
    option("--target-name", default="", help="stats rows of RestUser/GrpcUser: '<name> rest'")
    option(
        "--request-count",
        type=int,
        default=0,
        help="stop once this many requests completed (all users and workers); 0: no limit",
    )
    option(
        "--warmup-requests",
        type=int,
        default=0,
        help="leave the first N completed requests out of all results",
    )
    option(
        "--arrival-rate",
        type=float,
        default=0.0,
        help="open loop: requests per second for the whole run; 0: closed loop",
    )
    option(
        "--arrival",
        choices=ARRIVAL_MODES,
        default="constant",
        help="open-loop inter-arrival times: constant or poisson",
    )
    for flag, check in THRESHOLD_FLAGS:
        unit = {"fail_ratio": "failed/all, 0..1", "min_rps": "req/s, at least"}.get(
            check, "ms, at most"
        )
        option(flag, default=None, help=f"fail (exit 3) unless {check} ({unit}) holds")
    option(
        "--fail-on-saturation",
        action="store_true",
        default=False,
        help="exit 4 if a load-generating process used more than 90%% CPU",
    )
    option(
        "--saturation-cpu-percent",
        ui=False,
        type=float,
        default=SATURATION_CPU_PERCENT,
        help="CPU percent of one core above which a generator process counts as saturated",
    )
    option("--precise-json", ui=False, default="", help="write precise results to this JSON file")


@dataclass(frozen=True)
class Settings:
    """Validated options of one run."""

    model_name: str
    signature_name: str
    input_name: str
    instances_file: Path
    grpc_timeout: float
    rest_host: str
    grpc_host: str
    target_name: str
    request_count: int
    warmup_requests: int
    arrival_rate: float
    arrival: str
    thresholds: dict[str, float]
    fail_on_saturation: bool
    saturation_cpu_percent: float
    precise_json: Path | None

    @property
    def open_loop(self) -> bool:
        return self.arrival_rate > 0


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(options: Any, dest: str, kind: type, minimum: float, default: Any = None) -> Any:
    raw = _text(getattr(options, dest, None))
    if raw == "":
        return default
    flag = "--" + dest.replace("_", "-")
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{flag}: {raw!r} is not a {kind.__name__}") from None
    if value < minimum or value != value:
        raise ConfigError(f"{flag}: must be at least {minimum}, got {raw}")
    return value


def _flag(value: Any) -> bool:
    return value is True or _text(value).lower() in ("true", "1", "yes", "on")


def settings_from(options: Any) -> Settings:
    """Check parsed options (from the command line or the web UI form) and build Settings."""
    names = {}
    for dest in ("model_name", "signature_name", "input_name"):
        value = _text(getattr(options, dest, None))
        if not value:
            raise ConfigError(f"--{dest.replace('_', '-')}: must not be empty")
        names[dest] = value
    arrival = _text(getattr(options, "arrival", None)) or "constant"
    if arrival not in ARRIVAL_MODES:
        raise ConfigError(f"--arrival: must be one of {', '.join(ARRIVAL_MODES)}, got {arrival!r}")
    thresholds = {}
    for flag, check in THRESHOLD_FLAGS:
        dest = flag.removeprefix("--").replace("-", "_")
        limit = _number(options, dest, float, 0.0)
        if limit is not None:
            if check == "fail_ratio" and limit > 1:
                raise ConfigError(f"{flag}: a ratio between 0 and 1, got {limit}")
            thresholds[check] = limit
    precise_json = _text(getattr(options, "precise_json", None))
    return Settings(
        **names,
        instances_file=Path(
            _text(getattr(options, "instances_file", None)) or DEFAULT_INSTANCES_FILE
        ),
        grpc_timeout=_number(options, "grpc_timeout", float, 0.001, 10.0),
        rest_host=_text(getattr(options, "rest_host", None)),
        grpc_host=_text(getattr(options, "grpc_host", None)),
        target_name=_text(getattr(options, "target_name", None)),
        request_count=_number(options, "request_count", int, 0, 0),
        warmup_requests=_number(options, "warmup_requests", int, 0, 0),
        arrival_rate=_number(options, "arrival_rate", float, 0.0, 0.0),
        arrival=arrival,
        thresholds=thresholds,
        fail_on_saturation=_flag(getattr(options, "fail_on_saturation", False)),
        saturation_cpu_percent=_number(
            options, "saturation_cpu_percent", float, 0.0, SATURATION_CPU_PERCENT
        ),
        precise_json=Path(precise_json) if precise_json else None,
    )


def early_targets_file(argv: list[str] | None = None) -> tuple[Path, bool]:
    """The targets file named by ``--targets-file``, before Locust parses its options.

    Locust imports the locustfile (which declares one user class per target) before it parses
    the command line, so the file is looked up here the way Locust will look it up later:
    command line, then ``LOCUST_TARGETS_FILE``, then ``locust.conf`` / ``pyproject.toml``
    ``[tool.locust]``. Returns the path and whether it was asked for explicitly.
    """
    from locust.argument_parser import get_empty_argument_parser

    parser = get_empty_argument_parser(add_help=False)
    parser.add_argument("--targets-file", env_var=TARGETS_FILE_ENV, default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.targets_file:
        return Path(os.path.expanduser(known.targets_file)), True
    return DEFAULT_TARGETS_FILE, False
