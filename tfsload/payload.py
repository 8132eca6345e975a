"""The request every user sends, encoded once: a REST JSON body and a serialized PredictRequest.

Encoding per request is what halves a load generator's rate (see docs/design.md), and every
request of a run is identical, so both encodings are built once per run and reused as bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from tfsload import protos
from tfsload.errors import ConfigError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
NUMPY_TYPES = {"DT_INT32": "<i4", "DT_FLOAT": "<f4"}  # little-endian, as TensorFlow writes


@dataclass(frozen=True)
class Payload:
    """One predict request in both wire formats; ``rows`` is how many instances it carries."""

    rows: int
    rest_path: str
    rest_body: bytes
    grpc_request: bytes


def read_instances(path: Path) -> list[list[int]]:
    """Read and check an instances file: a JSON list of equally long lists of int32 values."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--instances-file: {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--instances-file: {path}: cannot read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--instances-file: {path}: not JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"--instances-file: {path}: must be a non-empty JSON list of rows")
    width = len(data[0]) if isinstance(data[0], list) else 0
    for i, row in enumerate(data):
        if not isinstance(row, list) or not row or len(row) != width:
            raise ConfigError(f"--instances-file: {path}: row {i} must be a list of {width} ints")
        for value in row:
            if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
                raise ConfigError(f"--instances-file: {path}: row {i} has a non-int32 value")
    return data


def tensor_proto(values, dtype: str = "DT_INT32"):
    """A TensorProto of ``values`` (nested lists or an array) in ``tensor_content``, as
    tf.make_tensor_proto makes it; ``dtype`` is ``DT_INT32`` or ``DT_FLOAT``."""
    array = np.asarray(values, dtype=NUMPY_TYPES[dtype])
    tensor = protos.load().TensorProto()
    tensor.dtype = protos.dtype_number(dtype)
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = array.tobytes()
    return tensor


def build_payload(
    instances_file: Path, model_name: str, signature_name: str, input_name: str
) -> Payload:
    """Encode the instances once for REST and gRPC."""
    rows = read_instances(instances_file)
    body = json.dumps({"signature_name": signature_name, "instances": rows}, separators=(",", ":"))
    try:
        messages = protos.load()
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    request = messages.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[input_name].CopyFrom(tensor_proto(rows))
    return Payload(
        rows=len(rows),
        rest_path=f"/v1/models/{quote(model_name, safe='')}:predict",
        rest_body=body.encode(),
        grpc_request=request.SerializeToString(),
    )
