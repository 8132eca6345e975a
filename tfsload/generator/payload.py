"""The requests users send, encoded once: REST JSON bodies and serialized PredictRequests.

Encoding per request is what halves a load generator's rate (see docs/design.md), so every
request of a run (one, or a pool from a JSON Lines file) is built once per process and reused
as bytes; users take them in turn. Each request is fitted to the model's signature first: the
file's inputs must be the signature's, their values must convert to its dtypes and their
shapes fit its shapes, or the run stops before any load with one line naming the input and
both sides. Without a signature the file's values decide the dtypes (ints int32, or int64 when
they do not fit; floats float32). Over REST the values are sent as written, in the file's form
(row or columnar); over gRPC as tensors of the signature's dtypes.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from tfsload.core import protos
from tfsload.core.errors import ConfigError
from tfsload.core.instances import UNNAMED, Column, InstanceRequest, read_instances, repeat_rows
from tfsload.core.run_spec import Workload
from tfsload.generator import tensors
from tfsload.generator.answers import AnswerCheck, RequestFailure
from tfsload.generator.signature import Signature, set_version, version_path
from tfsload.generator.synthetic import generate

FALLBACK_INPUT = "input_1"  # the IMDB export's input: what plain rows feed without metadata


@dataclass(frozen=True)
class Request:
    """One predict request in both wire formats, and how an answer to it is judged."""

    rows: int
    columnar: bool
    rest_path: str
    rest_body: bytes
    grpc_request: bytes
    answers: AnswerCheck = field(default_factory=AnswerCheck, compare=False)
    index: int = 0  # its place in the payload, for transports that keep per-request bytes
    context: dict = field(default_factory=dict, compare=False)  # the request event's context

    def __post_init__(self) -> None:
        self.context["rows"] = self.rows

    def rest_failure(self, status: int, body: bytes | None) -> RequestFailure | None:
        return self.answers.rest_failure(status, body, self.rows, self.columnar)

    def grpc_failure(self, reply: bytes) -> RequestFailure | None:
        return self.answers.grpc_reply_failure(reply, self.rows)


class Payload:
    """A run's requests in this process; :meth:`next` hands them out in turn."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = tuple(replace(r, index=i) for i, r in enumerate(requests))
        self._turns = itertools.cycle(self.requests)

    def next(self) -> Request:
        return next(self._turns)


def _mismatch(where: str, name: str, column: Column, signature: Signature, why: str) -> str:
    spec = signature.inputs[name]
    return (
        f"{where}: input {name!r} is {column.describe()}, signature {signature.name!r} has "
        f"{spec.describe()} ({why})"
    )


def _resolve_names(
    request: InstanceRequest, workload: Workload, signature: Signature | None, where: str
) -> dict[str, str]:
    """File input name -> the model's, checked against the signature's inputs."""
    if UNNAMED not in request.inputs:
        names = {name: name for name in request.inputs}
    elif signature is None:
        names = {UNNAMED: workload.input_name or FALLBACK_INPUT}
    elif workload.input_name:
        names = {UNNAMED: workload.input_name}
    elif len(signature.inputs) == 1:
        names = {UNNAMED: next(iter(signature.inputs))}
    else:
        raise ConfigError(
            f"{where}: plain rows feed one input, and signature {signature.name!r} has "
            f"{len(signature.inputs)} ({', '.join(signature.inputs)}): give row objects "
            "keyed by input name"
        )
    if signature is None:
        return names
    listed = ", ".join(f"{n} {s.describe()}" for n, s in signature.inputs.items())
    for name in names.values():
        if name not in signature.inputs:
            flag = "--input-name: " if UNNAMED in request.inputs else ""
            raise ConfigError(
                f"{where}: {flag}input {name!r} is not in signature {signature.name!r} "
                f"(its inputs: {listed})"
            )
    missing = [n for n in signature.inputs if n not in names.values()]
    if missing:
        spec = signature.inputs[missing[0]]
        raise ConfigError(
            f"{where}: input {missing[0]!r} of signature {signature.name!r} "
            f"({spec.describe()}) is missing from the instances"
        )
    return names


def _dtype(name: str, column: Column, signature: Signature | None, rest: bool, where: str) -> str:
    """The dtype the input is sent as, after checking the values fit the signature."""
    if signature is None:
        return tensors.infer_dtype(column.kind, column.low, column.high)
    spec = signature.inputs[name]
    problem = tensors.convert_problem(column.kind, column.low, column.high, spec.dtype)
    if problem:
        raise ConfigError(_mismatch(where, name, column, signature, problem))
    if spec.shape is not None:
        fits = len(spec.shape) == len(column.shape) and all(
            want < 0 or want == size for want, size in zip(spec.shape, column.shape, strict=True)
        )
        if not fits:
            raise ConfigError(_mismatch(where, name, column, signature, "shapes differ"))
    if rest and not tensors.DTYPES[spec.dtype].rest:
        raise ConfigError(
            f"{where}: input {name!r} is {spec.dtype}, which TF Serving's REST API does not "
            "convert from JSON (it answers UNIMPLEMENTED): load this model with GrpcUser"
        )
    return spec.dtype


def _rest_body(request: InstanceRequest, signature_name: str) -> bytes:
    columns = request.inputs
    if request.columnar:
        inputs = columns[UNNAMED].values if UNNAMED in columns else {
            name: column.values for name, column in columns.items()
        }  # fmt: skip
        body = {"signature_name": signature_name, "inputs": inputs}
    elif UNNAMED in columns:
        body = {"signature_name": signature_name, "instances": columns[UNNAMED].values}
    else:
        rows = [
            {name: column.values[i] for name, column in columns.items()}
            for i in range(request.rows)
        ]
        body = {"signature_name": signature_name, "instances": rows}
    return json.dumps(body, separators=(",", ":")).encode()


def _encode(
    request: InstanceRequest,
    workload: Workload,
    signature: Signature | None,
    rest: bool,
    answers: AnswerCheck,
    where: str,
) -> Request:
    names = _resolve_names(request, workload, signature, where)
    message = protos.load().PredictRequest()
    message.model_spec.name = workload.model_name
    set_version(message.model_spec, workload)
    message.model_spec.signature_name = workload.signature_name
    for file_name, column in request.inputs.items():
        name = names[file_name]
        dtype = _dtype(name, column, signature, rest, where)
        array = tensors.to_array(column.values, column.shape, dtype)
        message.inputs[name].CopyFrom(tensors.tensor_proto(array, dtype))
    return Request(
        rows=request.rows,
        columnar=request.columnar,
        rest_path=f"/v1/models/{quote(workload.model_name, safe='')}"
        f"{version_path(workload)}:predict",
        rest_body=_rest_body(request, workload.signature_name),
        grpc_request=message.SerializeToString(),
        answers=answers,
    )


def build_payload(
    workload: Workload, signature: Signature | None = None, rest: bool = True
) -> Payload:
    """Build the workload's requests for ``signature`` (None: as the instances say).

    ``rest`` says REST users take part (some dtypes only travel over gRPC). ConfigError names
    the file or flag and the problem.
    """
    try:
        protos.load()
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    if workload.generate_instances:
        if signature is None:
            raise ConfigError(
                "--generate-instances: needs the model's signature, and no server gave it "
                "(see the warnings above; --no-metadata turns asking off)"
            )
        sources = [("--generate-instances", generate(signature, workload))]
        if workload.rows_per_request:
            sources = [(w, repeat_rows(r, workload.rows_per_request)) for w, r in sources]
    else:
        instances = read_instances(
            Path(workload.instances_file), workload.rows_per_request, workload.signature_name
        )
        sources = [(f"{instances.source}{r.label}", r) for r in instances.requests]
    answers = AnswerCheck(signature.outputs if signature else None, workload.check_answers)
    return Payload([_encode(r, workload, signature, rest, answers, w) for w, r in sources])
