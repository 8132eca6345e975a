"""Is an answer a valid prediction, and if not, what is the failure called?

Locust groups failures by their text, so the text names the cause and nothing that varies from
one request to the next: an HTTP status with TF Serving's error message (shortened), a gRPC
status code name with a shortened detail, a transport error's kind, or what was wrong with an
answer. Addresses, ipv4/ipv6 variants and measured numbers stay out of it.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
from google.protobuf.message import DecodeError

from tfsload import protos

CLASSES = 2  # the model answers two class probabilities per row
TOLERANCE = 1e-3  # rows must sum to 1 within this
MAX_DETAIL = 100


class RequestFailure(Exception):
    """A failed request as reported to Locust; its repr is its text, so tables show the cause."""

    def __repr__(self) -> str:
        return str(self)


def shorten(message: str) -> str:
    """First line of ``message`` up to the first ``"; "`` (gRPC appends per-address detail)."""
    lines = message.strip().splitlines()
    first = lines[0].split("; ")[0].strip() if lines else ""
    return first if len(first) <= MAX_DETAIL else first[: MAX_DETAIL - 1] + "…"


def check_rows(rows: object, expected: int) -> str | None:
    """None if ``rows`` holds ``expected`` rows of CLASSES probabilities summing to 1.

    Plain loops and exact type checks: this runs for every answer, in the generator's CPU.
    """
    if type(rows) is not list or len(rows) != expected:
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        return f"expected {expected} rows, got {got}"
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != CLASSES:
            return f"row {i} is not {CLASSES} numbers"
        total = 0.0
        for p in row:
            if type(p) is not float and type(p) is not int:  # bool is not int here
                return f"row {i} is not {CLASSES} numbers"
            if not -TOLERANCE <= p <= 1 + TOLERANCE:  # also false for NaN
                return f"row {i} has a value outside [0, 1]"
            total += p
        if not -TOLERANCE <= total - 1 <= TOLERANCE:
            return f"row {i} does not sum to 1"
    return None


def _invalid(problem: str | None) -> RequestFailure | None:
    return RequestFailure(f"invalid response: {problem}") if problem else None


def rest_failure(status: int, body: bytes | None, rows: int) -> RequestFailure | None:
    """Check a REST predict answer: HTTP 200 with ``{"predictions": <rows>}``."""
    try:
        document = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        document = None
    if status != 200:
        message = document.get("error") if isinstance(document, dict) else None
        detail = shorten(message) if isinstance(message, str) else ""
        return RequestFailure(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
    if not isinstance(document, dict) or "predictions" not in document:
        return _invalid("no predictions")
    return _invalid(check_rows(document["predictions"], rows))


@cache
def _dtype(name: str) -> int:
    dtypes = protos.load().TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    return dtypes.values_by_name[name].number


def tensor_rows(tensor) -> list | None:
    """A 2-D float TensorProto as nested lists, or None if it is not one."""
    dims = tensor.tensor_shape.dim
    if tensor.dtype != _dtype("DT_FLOAT") or len(dims) != 2:
        return None
    shape = (dims[0].size, dims[1].size)
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        values = np.asarray(tensor.float_val, dtype="<f4")
    if values.size != shape[0] * shape[1]:
        return None
    return values.reshape(shape).tolist()


def grpc_reply_failure(reply: bytes, rows: int) -> RequestFailure | None:
    """Check a serialized PredictResponse: one output, a float tensor of <rows> probabilities."""
    try:
        response = protos.load().PredictResponse.FromString(reply)
    except DecodeError:
        return _invalid("not a PredictResponse")
    if len(response.outputs) != 1:
        return _invalid(f"expected one output, got {len(response.outputs)}")
    (tensor,) = response.outputs.values()
    values = tensor_rows(tensor)
    if values is None:
        return _invalid("output is not a 2-D float tensor")
    return _invalid(check_rows(values, rows))


def grpc_failure(code_name: str, details: str | None) -> RequestFailure:
    """A failed call: its status code name (UNAVAILABLE, ...) with a shortened detail."""
    detail = shorten(details or "")
    return RequestFailure(f"{code_name}: {detail}" if detail else code_name)


def transport_failure(error: BaseException) -> RequestFailure:
    """A request that got no HTTP answer (refused, reset, timed out): the error's kind."""
    detail = shorten(str(error))
    kind = type(error).__name__
    return RequestFailure(f"{kind}: {detail}" if detail else kind)
