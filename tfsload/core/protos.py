"""TF Serving's request and response messages without importing TensorFlow.

``tensorflow-serving-api``'s generated modules import ``tensorflow`` (3.4 s and 560 MB per
process), which every Locust worker would pay just to serialise a PredictRequest. Instead, the
file descriptors of the few API files the client uses are shipped in this package as a
``FileDescriptorSet`` (``tfserving_descriptors.binpb``, written by ``python -m
tfsload.core.protos build PATH`` where ``tensorflow-serving-api`` is installed, and checked
against it by tests/test_protos.py). Load-generating processes build the message classes from
that set with protobuf alone, in a private descriptor pool (so they never clash with
TensorFlow's own classes if both are loaded).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DEFAULT_PATH = Path(str(resources.files("tfsload.core") / "tfserving_descriptors.binpb"))

# The API file whose messages the client sends or reads; its imports come along.
API_MODULES = ("tensorflow_serving.apis.prediction_service_pb2",)

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"


def build(path: Path) -> int:
    """Write the FileDescriptorSet for API_MODULES and everything they import; returns its count."""
    import importlib

    ordered: list = []
    seen: set[str] = set()

    def visit(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        ordered.append(file_descriptor)  # dependencies first, as a pool needs them

    for module in API_MODULES:
        visit(importlib.import_module(module).DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet()
    for file_descriptor in ordered:
        file_descriptor.CopyToProto(fds.file.add())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(fds.SerializeToString())
    tmp.replace(path)
    return len(ordered)


@dataclass(frozen=True)
class Messages:
    """The message classes a client needs, built from the descriptor set."""

    PredictRequest: type
    PredictResponse: type
    TensorProto: type
    GetModelMetadataRequest: type
    GetModelMetadataResponse: type
    SignatureDefMap: type


@cache
def load(path: Path = DEFAULT_PATH) -> Messages:
    """Build the message classes from a descriptor set written by :func:`build`."""
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except FileNotFoundError:
        raise RuntimeError(
            f"{path} is missing: the tfsload package is incomplete (`python -m "
            f"tfsload.core.protos build {path}` where tensorflow-serving-api is installed)"
        ) from None
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        pool.Add(file_proto)

    def message(full_name: str) -> type:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))

    return Messages(
        **{
            name: message(
                f"tensorflow.{name}" if name == "TensorProto" else f"tensorflow.serving.{name}"
            )
            for name in Messages.__dataclass_fields__
        }
    )


@cache
def dtype_number(name: str) -> int:
    """The DataType enum value of ``name`` (``"DT_FLOAT"`` ...), from the loaded descriptors."""
    dtypes = load().TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    return dtypes.values_by_name[name].number


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m tfsload.core.protos build PATH", file=sys.stderr)
        return 2
    count = build(Path(argv[1]))
    print(f"tfsload.core.protos: wrote {count} file descriptors to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
