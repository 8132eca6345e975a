"""Command-line flags: ``tensorflow_model_server``'s names, defaults and boolean syntax.

The exact flags a compose file passes to TF Serving start the stand-in. Flags the stand-in adds
(``--bind_address``, the request limits ``--rest_api_max_body_bytes``, ``--max_request_rows``
and ``--max_request_bytes``, and the ``--fault_*`` flags that inject faults on demand) have TF
Serving-style names. Every bad flag is one ConfigError line naming it; nothing here imports
TensorFlow, so flag and config-file mistakes are reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from standin.faults import FaultConfig, parse_faults
from tfsload.core.errors import ConfigError

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_REQUEST_ROWS = 1000

# Flags TF Serving has that make no difference to a single-model, load-once stand-in: accepted
# so the same command lines work, and named in the start-up log as ignored.
IGNORED_FLAGS = {
    "file_system_poll_wait_seconds": "the stand-in loads the model once",
    "enable_grpc_healthcheck_service": "the stand-in always serves grpc.health.v1.Health",
    "per_process_gpu_memory_fraction": "the stand-in runs on CPU",
}


def parse_bool(text: str) -> bool:
    """TF's flag parser: ``--flag``, ``--flag=true|false`` (also 1/0)."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (use true or false)")


class _Parser(argparse.ArgumentParser):
    """Turns argparse's usage-plus-error exit into one ConfigError line."""

    def error(self, message: str):
        raise ConfigError(message)


@dataclass(frozen=True)
class Flags:
    port: int
    rest_api_port: int
    model_name: str
    model_base_path: str
    enable_batching: bool
    batching_parameters_file: str
    monitoring_config_file: str
    enable_model_warmup: bool
    grpc_max_threads: int
    rest_api_num_threads: int
    rest_api_timeout_in_ms: int
    rest_api_enable_cors_support: bool
    tensorflow_intra_op_parallelism: int
    tensorflow_inter_op_parallelism: int
    bind_address: str
    rest_api_max_body_bytes: int
    max_request_rows: int | None  # None: 1000, or max_batch_size when batching allows more
    max_request_bytes: int
    faults: FaultConfig
    ignored: tuple[str, ...]


def _parser() -> argparse.ArgumentParser:
    cpus = len(os.sched_getaffinity(0))
    parser = _Parser(
        prog="python -m standin",
        description="TF-Serving-compatible stand-in server (not TensorFlow Serving).",
        allow_abbrev=False,
    )
    add = parser.add_argument

    def flag_bool(name: str, default: bool, text: str) -> None:
        add(
            f"--{name}",
            type=parse_bool,
            nargs="?",
            const=True,
            default=default,
            metavar="true|false",
            help=f"{text} (default {str(default).lower()})",
        )

    add("--port", type=int, default=8500, help="gRPC port (0 disables gRPC)")
    add("--rest_api_port", type=int, default=0, help="REST port (0 disables REST)")
    add("--model_name", default="default", help="name the model is served under")
    add("--model_base_path", default="", help="directory whose highest numeric version is served")
    flag_bool("enable_batching", False, "batch requests as TF Serving does")
    add("--batching_parameters_file", default="", help="BatchingParameters text proto")
    add("--monitoring_config_file", default="", help="MonitoringConfig text proto")
    flag_bool("enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests")
    add("--grpc_max_threads", type=int, default=4 * cpus, help="concurrent gRPC calls")
    add("--rest_api_num_threads", type=int, default=4 * cpus, help="concurrent REST calls")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="REST call timeout")
    flag_bool("rest_api_enable_cors_support", False, "add CORS headers to REST responses")
    add("--tensorflow_intra_op_parallelism", type=int, default=0, help="0: TensorFlow's choice")
    add("--tensorflow_inter_op_parallelism", type=int, default=0, help="0: TensorFlow's choice")
    add("--bind_address", default="127.0.0.1", help="address both ports bind to")
    add(
        "--rest_api_max_body_bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="larger REST bodies get 413",
    )
    add(
        "--max_request_rows",
        type=int,
        default=None,
        help="rows one predict request may carry (default 1000, or max_batch_size if larger)",
    )
    add(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="bytes one predict request's inputs may take once decoded (default 64 MiB)",
    )
    # Faults on demand (standin/faults.py), all off by default.
    add("--fault_latency", default="", help="added latency: 50ms, exp:50ms, uniform:10ms-90ms")
    add("--fault_error_rate", type=float, default=0.0, help="share of predicts that fail")
    add("--fault_error_code", default="503", help="429, 500, 503, 504 or a gRPC code name")
    add("--fault_drop_rate", type=float, default=0.0, help="share of predicts dropped")
    add("--fault_malformed_rate", type=float, default=0.0, help="share answered with bad bytes")
    add("--fault_pause_s", type=float, default=0.0, help="length of one whole-server pause")
    add("--fault_pause_after_s", type=float, default=0.0, help="pause start, after ready")
    add("--fault_seed", type=int, default=None, help="seed of the fault draws (default random)")
    for name, why in IGNORED_FLAGS.items():
        add(f"--{name}", nargs="?", const="true", metavar="VALUE", help=f"ignored: {why}")
    return parser


def parse_flags(argv: list[str]) -> Flags:
    """Parse and check ``argv``; raises ConfigError with one line naming the bad flag."""
    ns = _parser().parse_args(argv)
    values = vars(ns)
    ignored = tuple(name for name in IGNORED_FLAGS if values.pop(name) is not None)
    for name in ("port", "rest_api_port"):
        if not 0 <= values[name] <= 65535:
            raise ConfigError(f"--{name}: {values[name]} is not a port number (0 to 65535)")
    rows = values["max_request_rows"]
    if rows is not None and rows < 1:
        raise ConfigError(f"--max_request_rows: must be at least 1, got {rows}")
    for name in (
        "grpc_max_threads",
        "rest_api_num_threads",
        "rest_api_max_body_bytes",
        "max_request_bytes",
    ):
        if values[name] < 1:
            raise ConfigError(f"--{name}: must be at least 1, got {values[name]}")
    for name in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if values[name] < 0:
            raise ConfigError(f"--{name}: must be 0 (auto) or more, got {values[name]}")
    if values["rest_api_timeout_in_ms"] < 0:
        raise ConfigError("--rest_api_timeout_in_ms: must not be negative")
    if not values["model_base_path"]:
        raise ConfigError("--model_base_path is required (the directory holding version dirs)")
    if not values["model_name"]:
        raise ConfigError("--model_name must not be empty")
    if values["port"] == 0 and values["rest_api_port"] == 0:
        raise ConfigError("--port and --rest_api_port are both 0: nothing to serve on")
    if values["batching_parameters_file"] and not values["enable_batching"]:
        raise ConfigError(
            "--batching_parameters_file is set without --enable_batching "
            "(TF Serving refuses this too)"
        )
    fault_values = {name: values.pop(name) for name in list(values) if name.startswith("fault_")}
    return Flags(**values, faults=parse_faults(fault_values), ignored=ignored)
