"""Requests from an instances file: what predict calls send (the sample library).

One ``--instances-file`` holds one request or a pool of them, in any form TF Serving's users
already have (the format is told from the content; ``.jsonl`` and ``.ndjson`` files are always
one request per line):

- a JSON list of rows for a one-input model: ``[[1, 2, 3], [4, 5, 6]]``;
- a JSON list of row objects for several inputs: ``[{"a": [1.0, 2.0], "b": "x"}, ...]``;
- a TF Serving predict body, row form ``{"instances": <either list above>}`` or columnar
  ``{"inputs": <one input's value> | {"a": <value>, "b": <value>}}``, with an optional
  ``signature_name``;
- JSON Lines: one request per line, each in any form above; users cycle through them.

Values are numbers, ``true``/``false``, strings, or ``{"b64": "..."}`` for bytes, as in TF
Serving's JSON API. This module checks what a file can say on its own (JSON, one consistent
shape and kind of value per input, rows to count); whether the values fit the model is decided
against its signature by the generator. The orchestrator reads the file before any load to
refuse a bad one up front, and each load-generating process reads it again: both go through
:func:`read_instances`, so they accept and refuse the same files.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

from tfsload.core.errors import ConfigError

UNNAMED = ""  # the input a list of plain rows feeds: the model's only one
LINE_SUFFIXES = (".jsonl", ".ndjson")
BODY_KEYS = {"signature_name", "instances", "inputs"}
_KINDS = {int: "int", float: "float", bool: "bool", str: "string"}


@dataclass(frozen=True)
class Column:
    """One input's values in one request, as the file gives them (JSON values, one per row).

    ``kind`` is what the values are (int, float, bool or string; ints mixed with floats are
    float), ``shape`` the tensor they make, rows first; ``low``/``high`` bound int values.
    """

    values: list
    kind: str
    shape: tuple[int, ...]
    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        return f"{self.kind} {list(self.shape)}"


@dataclass(frozen=True)
class InstanceRequest:
    """One request: its inputs by name (:data:`UNNAMED` for a list of plain rows), and whether
    it is columnar (``inputs``) or row form (``instances``: row objects when inputs are named)."""

    inputs: dict[str, Column]
    columnar: bool = False
    label: str = ""  # where in the file, for messages (": line 3" in JSON Lines)

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0]


@dataclass(frozen=True)
class Instances:
    """The requests of a file, in file order, and where they came from (for messages)."""

    requests: tuple[InstanceRequest, ...]
    source: str

    @property
    def mean_rows(self) -> float | int:
        """Rows per request; the mean when a pool's requests differ."""
        counts = [request.rows for request in self.requests]
        if len(set(counts)) == 1:
            return counts[0]
        return round(sum(counts) / len(counts), 3)


def describe_value(value: object) -> tuple[str, tuple[int, ...], int | None, int | None]:
    """(kind, shape, smallest int, largest int) of a nested JSON list of values.

    Raises ValueError naming what is wrong: an empty or ragged list, ``null``, an object that is
    not ``{"b64": ...}``, or numbers mixed with strings or booleans.

    Answers are judged with this too, so the common case (a regular nest of lists) goes level by
    level with C-speed set and chain calls; anything irregular is walked item by item, which
    finds the exact place to name.
    """
    if type(value) is list and value:
        shape = [len(value)]
        level = value
        while set(map(type, level)) == {list}:
            widths = set(map(len, level))
            if len(widths) != 1 or 0 in widths:
                return _walk(value)
            shape.extend(widths)
            level = list(chain.from_iterable(level))
        types = set(map(type, level))
        kind = _KINDS.get(types.pop()) if len(types) == 1 else None
        if kind == "int":
            return kind, tuple(shape), min(level), max(level)
        if kind is not None:
            return kind, tuple(shape), None, None
    return _walk(value)


def _walk(value: object) -> tuple[str, tuple[int, ...], int | None, int | None]:
    """:func:`describe_value` item by item."""
    if type(value) is not list:
        return (*_scalar_kind(value), *_int_bounds(value))
    if not value:
        raise ValueError("an empty list")
    first = value[0]
    if type(first) is list:
        parts = [_walk(item) for item in value]
        kind, inner = parts[0][0], parts[0][1]
        for index, (other_kind, other_shape, _, _) in enumerate(parts):
            if other_shape != inner:
                raise ValueError(
                    f"item {index} has shape {list(other_shape)}, item 0 {list(inner)}"
                )
            kind = _merge(kind, other_kind)
        lows = [p[2] for p in parts if p[2] is not None]
        highs = [p[3] for p in parts if p[3] is not None]
        return kind, (len(value), *inner), min(lows, default=None), max(highs, default=None)
    types = dict.fromkeys(map(type, value))  # in order of appearance: stable messages
    if list in types:
        raise ValueError("item 0 is a value, a later item a list (ragged)")
    kind = None
    for kind_type in types:
        if kind_type is dict:
            for item in value:
                if type(item) is dict:
                    _scalar_kind(item)  # an object must be {"b64": ...}
            this = "string"
        elif kind_type in _KINDS:
            this = _KINDS[kind_type]
        else:
            raise ValueError(f"{'null' if kind_type is type(None) else kind_type.__name__} "
                             "is not a tensor value")  # fmt: skip
        kind = this if kind is None else _merge(kind, this)
    if kind == "int":
        return kind, (len(value),), min(value), max(value)
    return kind, (len(value),), None, None


def _scalar_kind(value: object) -> tuple[str, tuple[int, ...]]:
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind, ()
    if type(value) is dict:
        text = value.get("b64")
        if len(value) != 1 or not isinstance(text, str):
            raise ValueError('an object where a value belongs (bytes are {"b64": "..."})')
        try:
            base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError(f"{text[:20]!r} is not base64") from None
        return "string", ()
    name = "null" if value is None else type(value).__name__
    raise ValueError(f"{name} is not a tensor value")


def _int_bounds(value: object) -> tuple[int | None, int | None]:
    return (value, value) if type(value) is int else (None, None)


def _merge(kind: str, other: str) -> str:
    if kind == other:
        return kind
    if {kind, other} == {"int", "float"}:
        return "float"
    raise ValueError(f"mixes {kind} and {other} values")


def _column(values: list, where: str) -> Column:
    try:
        kind, shape, low, high = describe_value(values)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Column(values, kind, shape, low, high)


def _name(name: str) -> str:
    return f"input {name!r}" if name else "the rows"


def _rows_request(rows: object, where: str) -> InstanceRequest:
    """A list of plain rows or of row objects (``instances``)."""
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: must be a non-empty JSON list of rows")
    objects = [type(row) is dict and set(row) != {"b64"} for row in rows]
    if not any(objects):
        return InstanceRequest({UNNAMED: _column(rows, where)})
    if not all(objects):
        index = objects.index(not objects[0])
        raise ConfigError(f"{where}: row {index} is {'an object' if objects[index] else 'a value'}"
                          f", row 0 {'an object' if objects[0] else 'a value'}")  # fmt: skip
    names = list(rows[0])
    if not names:
        raise ConfigError(f"{where}: row 0 is an empty object")
    for index, row in enumerate(rows):
        if set(row) != set(names):
            raise ConfigError(
                f"{where}: row {index} has inputs {', '.join(sorted(row))}; "
                f"row 0 has {', '.join(sorted(names))}"
            )
    inputs = {
        name: _column([row[name] for row in rows], f"{where}: input {name!r}") for name in names
    }
    return InstanceRequest(inputs)


def _columnar_request(inputs: object, where: str) -> InstanceRequest:
    """The value of ``inputs``: one input's tensor, or an object of them by name."""
    named = type(inputs) is dict and set(inputs) != {"b64"}
    by_name = inputs if named else {UNNAMED: inputs}
    if not by_name:
        raise ConfigError(f"{where}: 'inputs' is an empty object")
    columns = {}
    for name, value in by_name.items():
        if type(value) is not list or not value:
            raise ConfigError(
                f"{where}: {_name(name)} must be a non-empty list (its rows come first)"
            )
        columns[name] = _column(value, f"{where}: {_name(name)}")
    counts = {name: column.shape[0] for name, column in columns.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ConfigError(f"{where}: inputs have different row counts ({listed})")
    return InstanceRequest(columns, columnar=True)


def parse_request(document: object, where: str, signature_name: str) -> InstanceRequest:
    """One request from a parsed JSON document (a list of rows or a TF Serving body)."""
    if type(document) is not dict:
        return _rows_request(document, where)
    unknown = sorted(set(document) - BODY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (a predict body has signature_name and "
            "instances or inputs)"
        )
    named = document.get("signature_name")
    if named is not None and named != signature_name:
        raise ConfigError(
            f"{where}: the body calls signature {named!r} and this run {signature_name!r} "
            f"(--signature-name {named} to call it)"
        )
    if ("instances" in document) == ("inputs" in document):
        raise ConfigError(f"{where}: a predict body has either 'instances' or 'inputs'")
    if "instances" in document:
        return _rows_request(document["instances"], f"{where}: instances")
    return _columnar_request(document["inputs"], f"{where}: inputs")


def repeat_rows(request: InstanceRequest, rows: int) -> InstanceRequest:
    """``request`` cut or repeated (row by row, in order) to ``rows`` rows."""
    inputs = {}
    for name, column in request.inputs.items():
        count = column.shape[0]
        values = [column.values[i % count] for i in range(rows)]
        inputs[name] = replace(column, values=values, shape=(rows, *column.shape[1:]))
    return replace(request, inputs=inputs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _loads(text: bytes | str) -> object:
    return json.loads(text, parse_constant=_reject_constant)


def read_instances(
    path: Path, rows_per_request: int = 0, signature_name: str = "serving_default"
) -> Instances:
    """The requests of an instances file, each cut or repeated to ``rows_per_request`` rows when
    that is not 0. ConfigError names the file (and line) and the problem."""
    where = f"--instances-file: {path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    documents = _documents(data, where, Path(path).suffix.lower() in LINE_SUFFIXES)
    requests = []
    for label, document in documents:
        request = replace(parse_request(document, f"{where}{label}", signature_name), label=label)
        if rows_per_request:
            request = repeat_rows(request, rows_per_request)
        requests.append(request)
    return Instances(tuple(requests), where)


def _documents(data: bytes, where: str, by_line: bool) -> list[tuple[str, object]]:
    """(label, parsed JSON) of each request: the whole file, or each non-blank line."""
    if not by_line:
        try:
            return [("", _loads(data))]
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            lines = [line for line in data.splitlines() if line.strip()]
            extra = isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data"
            if not (extra and len(lines) > 1):
                raise ConfigError(f"{where}: not JSON ({exc})") from None
    documents = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append((f": line {number}", _loads(line)))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{where}: line {number}: not JSON ({exc})") from None
    if not documents:
        raise ConfigError(f"{where}: no requests in it (one JSON request per line)")
    return documents
