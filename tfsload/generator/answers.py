"""Is an answer a valid prediction, and if not, what is the failure called?

Locust groups failures by their text, so the text names the cause and nothing that varies from
one request to the next: an HTTP status with TF Serving's error message (shortened), a gRPC
status code name with a shortened detail, a transport error's kind, or what was wrong with an
answer. Addresses, ipv4/ipv6 variants and measured numbers stay out of it.
"""

from __future__ import annotations

import json

import numpy as np
from google.protobuf.message import DecodeError

from tfsload.core import protos

CLASSES = 2  # the model answers two class probabilities per row
TOLERANCE = 1e-3  # rows must sum to 1 within this
MAX_DETAIL = 100
# Answers already found valid, by their exact bytes (see ``rest_failure``). Bounded in number and
# in size (larger answers are checked every time): a server whose answers all differ costs a set
# lookup per answer and at most 16 MiB.
MAX_KNOWN_VALID = 256
MAX_KNOWN_BYTES = 64 * 1024
_known_valid: set[tuple] = set()


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


def _remember(
    key: tuple, answer: bytes | None, failure: RequestFailure | None
) -> RequestFailure | None:
    if (
        failure is None
        and len(_known_valid) < MAX_KNOWN_VALID
        and len(answer or b"") <= MAX_KNOWN_BYTES
    ):
        _known_valid.add(key)
    return failure


def rest_failure(status: int, body: bytes | None, rows: int) -> RequestFailure | None:
    """Check a REST predict answer: HTTP 200 with ``{"predictions": <rows>}``.

    Validity is a function of the answer's bytes, and a server answering the load tests' fixed
    request mostly sends the same bytes each time: those are checked once and then recognised
    by a set lookup, which keeps the check a small share of the generator's CPU per request.
    """
    key = ("rest", status, body, rows)
    if key in _known_valid:
        return None
    return _remember(key, body, _rest_failure(status, body, rows))


def _rest_failure(status: int, body: bytes | None, rows: int) -> RequestFailure | None:
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


def tensor_rows(tensor) -> list | None:
    """A 2-D float TensorProto as nested lists, or None if it is not one.

    Plain lists rather than numpy arrays for the typed field: an answer holds a few values, and
    for so few numpy's per-call overhead would be most of the cost of every check.
    """
    if tensor.dtype != protos.dtype_number("DT_FLOAT"):
        return None
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if len(shape) != 2:
        return None
    rows, columns = shape
    content = tensor.tensor_content
    if content:
        if len(content) % 4:
            return None
        values = np.frombuffer(content, dtype="<f4").tolist()
    else:
        values = list(tensor.float_val)
    if len(values) != rows * columns:
        return None
    if columns == 0:
        return [[] for _ in range(rows)]
    return [values[start : start + columns] for start in range(0, len(values), columns)]


def grpc_reply_failure(reply: bytes, rows: int) -> RequestFailure | None:
    """Check a serialized PredictResponse: one output, a float tensor of <rows> probabilities.

    Known-valid answers are recognised by their bytes, as in :func:`rest_failure`.
    """
    key = ("grpc", reply, rows)
    if key in _known_valid:
        return None
    return _remember(key, reply, _grpc_reply_failure(reply, rows))


def _grpc_reply_failure(reply: bytes, rows: int) -> RequestFailure | None:
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
