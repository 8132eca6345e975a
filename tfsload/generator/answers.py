"""Is an answer a valid prediction, and if not, what is the failure called?

An answer is judged against the model's signature (:mod:`tfsload.generator.signature`): every
output it declares is there and no other, with its dtype, the rows sent as its leading
dimension, its fixed inner dimensions, and finite numbers. Without a signature (a server that
gives no metadata) every output must still have the rows sent and finite numbers. Checks that
depend on what the model means are opt-in (``--check-answers probabilities``: every float
output's rows are probabilities that sum to 1).

Locust groups failures by their text, so the text names the cause and nothing that varies from
one request to the next: an HTTP status with TF Serving's error message (shortened), a gRPC
status code name with a shortened detail, a transport error's kind, or what was wrong with an
answer and in which output. Addresses, ipv4/ipv6 variants and measured numbers stay out of it.
"""

from __future__ import annotations

import json
import math

from google.protobuf.message import DecodeError

from tfsload.core import protos
from tfsload.core.instances import describe_value
from tfsload.generator import tensors
from tfsload.generator.signature import TensorSpec

TOLERANCE = 1e-3  # probability rows must sum to 1 within this
MAX_DETAIL = 100
# Answers already found valid, by their exact bytes (see ``AnswerCheck.rest_failure``). Bounded
# in number and in size (larger answers are checked every time): a server whose answers all
# differ costs a set lookup per answer and at most 16 MiB.
MAX_KNOWN_VALID = 256
MAX_KNOWN_BYTES = 64 * 1024


class RequestFailure(Exception):
    """A failed request as reported to Locust; its repr is its text, so tables show the cause."""

    def __repr__(self) -> str:
        return str(self)


def shorten(message: str) -> str:
    """First line of ``message`` up to the first ``"; "`` (gRPC appends per-address detail)."""
    lines = message.strip().splitlines()
    first = lines[0].split("; ")[0].strip() if lines else ""
    return first if len(first) <= MAX_DETAIL else first[: MAX_DETAIL - 1] + "…"


def _invalid(problem: str | None) -> RequestFailure | None:
    return RequestFailure(f"invalid response: {problem}") if problem else None


def probability_problem(values: list, width: int) -> str | None:
    """None if flat ``values`` are rows of ``width`` probabilities, each summing to 1.

    Plain loops over plain lists: an answer holds a few values, and for so few numpy's per-call
    overhead would be most of the cost of the check.
    """
    if width == 0:
        return None
    for start in range(0, len(values), width):
        total = 0.0
        for p in values[start : start + width]:
            if not -TOLERANCE <= p <= 1 + TOLERANCE:  # also false for NaN
                return f"row {start // width} has a value outside [0, 1]"
            total += p
        if not -TOLERANCE <= total - 1 <= TOLERANCE:
            return f"row {start // width} does not sum to 1"
    return None


def _flatten(value: object) -> list:
    if type(value) is not list:
        return [value]
    if value and type(value[0]) is list:
        return [item for part in value for item in _flatten(part)]
    return value


class AnswerCheck:
    """How the answers to this run's requests are judged.

    ``outputs`` are the signature's (None: unknown, no metadata); ``check`` is one of
    :data:`~tfsload.core.run_spec.ANSWER_CHECKS`. Validity is a function of an answer's bytes
    and the request's rows and form, and a server answering a load test's few requests mostly
    sends the same bytes each time: those are checked once and then recognised by a set
    lookup, which keeps the check a small share of the generator's CPU per request.
    """

    def __init__(self, outputs: dict[str, TensorSpec] | None = None, check: str = "signature"):
        self.outputs = outputs
        self.probabilities = check == "probabilities"
        self._known: set[tuple] = set()

    def _remember(
        self, key: tuple, answer: bytes | None, failure: RequestFailure | None
    ) -> RequestFailure | None:
        if (
            failure is None
            and len(self._known) < MAX_KNOWN_VALID
            and len(answer or b"") <= MAX_KNOWN_BYTES
        ):
            self._known.add(key)
        return failure

    # -- one output, either protocol -------------------------------------------------------

    def _output_problem(
        self, name: str, found: str, shape: tuple[int, ...], numbers: list | None, rows: int
    ) -> str | None:
        """What is wrong with one output: ``found`` is its dtype (gRPC) or the kind of its JSON
        values (REST); ``numbers`` its values when they are to be finite (and probabilities);
        None when nothing is wrong."""
        label = f"output {name!r}" if name else "the output"
        spec = self.outputs.get(name) if self.outputs else None
        if spec is not None:
            if found.startswith("DT_"):
                if found != spec.dtype:
                    return f"{label} is {found}, signature says {spec.dtype}"
            else:
                expected = tensors.lookup(spec.dtype)
                if expected and found not in tensors.CONVERTS[expected.kind]:
                    return f"{label} has {found} values, signature says {spec.dtype}"
        problem = _shape_problem(label, shape, spec, rows)
        if problem or numbers is None:
            return problem
        if not all(map(math.isfinite, numbers)):
            return f"{label} has a value that is not finite"
        if self.probabilities:
            problem = probability_problem(numbers, shape[-1] if shape else 1)
            return f"{label}: {problem}" if problem else None
        return None

    def _floats(self, name: str, found: str) -> bool:
        """Whether an output holds floating-point numbers: by the signature's dtype, else by the
        tensor's dtype (gRPC) or its JSON values (REST: a float printed as ``1`` reads as int)."""
        spec = self.outputs.get(name) if self.outputs else None
        dtype = tensors.lookup(spec.dtype if spec is not None else found)
        if dtype is not None:
            return dtype.kind == "float"
        return found in ("float", "int")

    # -- REST --------------------------------------------------------------------------------

    def rest_failure(
        self, status: int, body: bytes | None, rows: int, columnar: bool = False
    ) -> RequestFailure | None:
        """Check a REST predict answer: HTTP 200 with ``{"predictions": ...}`` for row-form
        requests, ``{"outputs": ...}`` for columnar ones."""
        key = (status, body, rows, columnar)
        if key in self._known:
            return None
        return self._remember(key, body, self._rest_failure(status, body, rows, columnar))

    def _rest_failure(
        self, status: int, body: bytes | None, rows: int, columnar: bool
    ) -> RequestFailure | None:
        try:
            document = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            document = None
        if status != 200:
            message = document.get("error") if isinstance(document, dict) else None
            detail = shorten(message) if isinstance(message, str) else ""
            return RequestFailure(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        field = "outputs" if columnar else "predictions"
        if not isinstance(document, dict) or field not in document:
            return _invalid(f"no {field}")
        columns = self._rest_columns(document[field], rows, columnar)
        if isinstance(columns, str):
            return _invalid(columns)
        for name, value in columns.items():
            try:
                kind, shape, _, _ = describe_value(value)
            except ValueError as exc:
                return _invalid(f"output {name!r}: {exc}" if name else f"the output: {exc}")
            numbers = _flatten(value) if self._floats(name, kind) else None
            problem = self._output_problem(name, kind, shape, numbers, rows)
            if problem:
                return _invalid(problem)
        return None

    def _rest_columns(self, value: object, rows: int, columnar: bool) -> dict | str:
        """The answer's outputs by name ("" for a model's only, unnamed one), or a problem."""
        if self.outputs is not None:
            named = len(self.outputs) > 1
        else:
            first = value[0] if not columnar and type(value) is list and value else value
            named = _is_object(first)
        if columnar:
            if not named:
                return {self._only_name(): value}
            if not _is_object(value):
                return "outputs is not an object of named outputs"
            columns = dict(value)
        else:
            if type(value) is not list or len(value) != rows:
                got = len(value) if isinstance(value, list) else type(value).__name__
                return f"expected {rows} rows, got {got}"
            if not named:
                return {self._only_name(): value}
            if not all(_is_object(row) for row in value):
                return "a row of predictions is not an object of named outputs"
            names = list(value[0])
            if any(set(row) != set(names) for row in value):
                return "rows of predictions name different outputs"
            columns = {name: [row[name] for row in value] for name in names}
        return self._names_problem(set(columns)) or columns

    def _only_name(self) -> str:
        return next(iter(self.outputs)) if self.outputs else ""

    def _names_problem(self, names: set[str]) -> str | None:
        if self.outputs is None:
            return None if names else "no outputs"
        for name in self.outputs:
            if name not in names:
                return f"output {name!r} is missing"
        extra = sorted(names - set(self.outputs))
        return f"unexpected output {extra[0]!r}" if extra else None

    # -- gRPC --------------------------------------------------------------------------------

    def grpc_reply_failure(self, reply: bytes, rows: int) -> RequestFailure | None:
        """Check a serialized PredictResponse; known-valid answers are recognised by their
        bytes, as in :meth:`rest_failure`."""
        key = (reply, rows)
        if key in self._known:
            return None
        return self._remember(key, reply, self._grpc_reply_failure(reply, rows))

    def _grpc_reply_failure(self, reply: bytes, rows: int) -> RequestFailure | None:
        try:
            response = protos.load().PredictResponse.FromString(reply)
        except DecodeError:
            return _invalid("not a PredictResponse")
        outputs = response.outputs
        problem = self._names_problem(set(outputs))
        if problem:
            return _invalid(problem)
        for name, tensor in outputs.items():
            dtype = tensors.dtype_name(tensor.dtype)
            shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
            values = None
            if tensors.lookup(dtype) is not None:
                values = tensors.tensor_values(tensor, dtype, shape)
                if values is None:
                    return _invalid(f"output {name!r}: its values do not fill {list(shape)}")
            numbers = values if self._floats(name, dtype) else None
            problem = self._output_problem(name, dtype, shape, numbers, rows)
            if problem:
                return _invalid(problem)
        return None


def _is_object(value: object) -> bool:
    """A JSON object of named values (``{"b64": ...}`` is one value, not an object of them)."""
    return type(value) is dict and set(value) != {"b64"}


def _shape_problem(label: str, shape: tuple, spec: TensorSpec | None, rows: int) -> str | None:
    """Rows first, then the signature's fixed dimensions (where it declares a shape)."""
    declared = spec.shape if spec is not None else None
    if declared is not None and len(declared) != len(shape):
        return f"{label} has shape {list(shape)}, signature says {list(declared)}"
    if declared == ():
        return None
    leading = declared[0] if declared and declared[0] >= 0 else rows
    if not shape:
        return f"{label} is a scalar, expected {leading} rows"
    if shape[0] != leading:
        return f"{label}: expected {leading} rows, got {shape[0]}"
    if declared is not None:
        for size, want in zip(shape[1:], declared[1:], strict=True):
            if want >= 0 and size != want:
                return f"{label} has shape {list(shape)}, signature says {list(declared)}"
    return None


def grpc_failure(code_name: str, details: str | None) -> RequestFailure:
    """A failed call: its status code name (UNAVAILABLE, ...) with a shortened detail."""
    detail = shorten(details or "")
    return RequestFailure(f"{code_name}: {detail}" if detail else code_name)


def transport_failure(error: BaseException) -> RequestFailure:
    """A request that got no HTTP answer (refused, reset, timed out): the error's kind."""
    detail = shorten(str(error))
    kind = type(error).__name__
    return RequestFailure(f"{kind}: {detail}" if detail else kind)
