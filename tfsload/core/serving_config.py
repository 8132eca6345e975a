"""TF Serving's text-protobuf config files: ``BatchingParameters`` and ``MonitoringConfig``.

``tensorflow-serving-api`` ships neither message, so both are declared here from a
``FileDescriptorProto`` with TF Serving's field names, numbers and wrapper types, and the files
are read with protobuf's own text-format parser: a file TF Serving would reject is rejected here
with the same ``Invalid protobuf file`` line, plus the parser's line and column. The values are
then checked the way TF Serving checks them when it creates the batch scheduler, so a bad
``allowed_batch_sizes`` stops the server at start instead of failing requests later.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from tfsload.core.errors import ConfigError

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"

_F = descriptor_pb2.FieldDescriptorProto
# (message, field, number, type, wrapper message or None, repeated)
_FIELDS = (
    ("BatchingParameters", "max_batch_size", 1, _F.TYPE_MESSAGE, "Int64Value", False),
    ("BatchingParameters", "batch_timeout_micros", 2, _F.TYPE_MESSAGE, "Int64Value", False),
    ("BatchingParameters", "max_enqueued_batches", 3, _F.TYPE_MESSAGE, "Int64Value", False),
    ("BatchingParameters", "num_batch_threads", 4, _F.TYPE_MESSAGE, "Int64Value", False),
    ("BatchingParameters", "thread_pool_name", 5, _F.TYPE_MESSAGE, "StringValue", False),
    ("BatchingParameters", "allowed_batch_sizes", 6, _F.TYPE_INT64, None, True),
    ("BatchingParameters", "pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, False),
    ("BatchingParameters", "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, "BoolValue", False),
    ("BatchingParameters", "max_execution_batch_size", 9, _F.TYPE_MESSAGE, "Int64Value", False),
    ("PrometheusConfig", "enable", 1, _F.TYPE_BOOL, None, False),
    ("PrometheusConfig", "path", 2, _F.TYPE_STRING, None, False),
    ("MonitoringConfig", "prometheus_config", 1, _F.TYPE_MESSAGE, ".PrometheusConfig", False),
)


@cache
def message_class(name: str) -> type:
    """The class of ``tensorflow.serving.<name>``, built in a private descriptor pool."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfsload/tfserving_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for message, field, number, ftype, type_name, repeated in _FIELDS:
        if message not in messages:
            messages[message] = proto.message_type.add(name=message)
        entry = messages[message].field.add(
            name=field,
            number=number,
            type=ftype,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            json_name=field,
        )
        if type_name and type_name.startswith("."):
            entry.type_name = f".tensorflow.serving{type_name}"
        elif type_name:
            entry.type_name = f".google.protobuf.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))


def parse_text_proto(path: str, message_name: str, flag: str):
    """Parse ``path`` as a text ``message_name``; any failure is one ConfigError line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{flag} {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    message = message_class(message_name)()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        where = ""
        if exc.GetLine() is not None:
            where = f" line {exc.GetLine()} column {exc.GetColumn()}:"
        reason = str(exc).split(" : ", 1)[-1]
        raise ConfigError(f"Invalid protobuf file: '{path}' ({flag}):{where} {reason}") from None
    return message, text


@dataclass(frozen=True)
class BatchingConfig:
    """BatchingParameters with TF Serving's defaults filled in and checked."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 1000

    def describe(self) -> str:
        """The settings in force, for the start-up log line."""
        text = (
            f"max_batch_size={self.max_batch_size} "
            f"batch_timeout_micros={self.batch_timeout_micros} "
            f"max_enqueued_batches={self.max_enqueued_batches} "
            f"num_batch_threads={self.num_batch_threads}"
        )
        if self.allowed_batch_sizes:
            text += f" allowed_batch_sizes={list(self.allowed_batch_sizes)}"
        if self.enable_large_batch_splitting:
            text += (
                f" large_batch_splitting max_execution_batch_size={self.max_execution_batch_size}"
            )
        return text


def default_batch_threads() -> int:
    """TF's MaxParallelism(): the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def _line_of(text: str, field: str) -> str:
    """``:N`` for the first line that sets ``field`` (comments skipped), to point users at it."""
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(rf"\b{field}\b", line.split("#", 1)[0]):
            return f":{number}"
    return ""


def read_batching(path: str | None) -> BatchingConfig:
    """Read ``--batching_parameters_file`` (or TF Serving's defaults without one)."""
    if not path:
        return BatchingConfig(
            num_batch_threads=default_batch_threads(), thread_pool_name="model_server_batch_threads"
        )
    message, text = parse_text_proto(path, "BatchingParameters", "--batching_parameters_file")

    def fail(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}{_line_of(text, field)}: {field} {problem}")

    def wrapped(field: str, default):
        return getattr(message, field).value if message.HasField(field) else default

    max_batch_size = wrapped("max_batch_size", 1000)
    splitting = wrapped("enable_large_batch_splitting", False)
    config = BatchingConfig(
        max_batch_size=max_batch_size,
        batch_timeout_micros=wrapped("batch_timeout_micros", 0),
        max_enqueued_batches=wrapped("max_enqueued_batches", 10),
        num_batch_threads=wrapped("num_batch_threads", default_batch_threads()),
        thread_pool_name=wrapped("thread_pool_name", "batch_threads"),
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=(
            wrapped("max_execution_batch_size", max_batch_size) if splitting else max_batch_size
        ),
    )
    for field in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(config, field) <= 0:
            raise fail(field, f"must be positive, got {getattr(config, field)}")
    if config.batch_timeout_micros < 0:
        raise fail(
            "batch_timeout_micros", f"must not be negative, got {config.batch_timeout_micros}"
        )
    if splitting and not 0 < config.max_execution_batch_size <= config.max_batch_size:
        raise fail(
            "max_execution_batch_size",
            f"must be between 1 and max_batch_size ({config.max_batch_size}), "
            f"got {config.max_execution_batch_size}",
        )
    if message.pad_variable_length_inputs:
        raise fail("pad_variable_length_inputs", "is not supported by the stand-in")
    sizes = config.allowed_batch_sizes
    if sizes:
        if sizes[0] <= 0 or any(b <= a for a, b in itertools.pairwise(sizes)):
            raise fail(
                "allowed_batch_sizes", f"entries must be positive and increasing, got {list(sizes)}"
            )
        limit_name = "max_execution_batch_size" if splitting else "max_batch_size"
        limit = config.max_execution_batch_size if splitting else config.max_batch_size
        if sizes[-1] != limit:
            raise fail(
                "allowed_batch_sizes",
                f"last entry must equal {limit_name} ({limit}), got {sizes[-1]}",
            )
    return config


def read_metrics_path(path: str | None) -> str | None:
    """The Prometheus path from ``--monitoring_config_file``, or None when metrics are off."""
    if not path:
        return None
    message, text = parse_text_proto(path, "MonitoringConfig", "--monitoring_config_file")
    prometheus = message.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or DEFAULT_METRICS_PATH
    if not metrics_path.startswith("/"):
        raise ConfigError(
            f"{path}{_line_of(text, 'path')}: path must start with '/', got {metrics_path!r}"
        )
    return metrics_path
