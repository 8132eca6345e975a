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

from tfsload.core import protos
from tfsload.core.errors import ConfigError
from tfsload.core.instances import read_instances
from tfsload.core.run_spec import Workload

NUMPY_TYPES = {"DT_INT32": "<i4", "DT_FLOAT": "<f4"}  # little-endian, as TensorFlow writes


@dataclass(frozen=True)
class Payload:
    """One predict request in both wire formats; ``rows`` is how many instances it carries."""

    rows: int
    rest_path: str
    rest_body: bytes
    grpc_request: bytes


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


def build_payload(workload: Workload) -> Payload:
    """Encode the workload's instances once for REST and gRPC."""
    rows = read_instances(Path(workload.instances_file), workload.rows_per_request)
    signature_name, model_name = workload.signature_name, workload.model_name
    body = json.dumps({"signature_name": signature_name, "instances": rows}, separators=(",", ":"))
    try:
        messages = protos.load()
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    request = messages.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[workload.input_name].CopyFrom(tensor_proto(rows))
    return Payload(
        rows=len(rows),
        rest_path=f"/v1/models/{quote(model_name, safe='')}:predict",
        rest_body=body.encode(),
        grpc_request=request.SerializeToString(),
    )
