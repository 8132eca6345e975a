"""TF Serving's JSON predict API: request bodies to tensors, tensors to response bodies.

The rules and messages follow TF Serving's ``json_tensor.cc``: a body is parsed before the
model is looked up, ``instances`` (row format) and ``inputs`` (columnar) are checked value by
value against the signature's dtypes (int32 takes JSON integers only), ragged rows are named by
index, and every failure is INVALID_ARGUMENT with TF Serving's text. Well-formed rows take a
fast path (type sets and min/max instead of a Python loop per value).

Before any value is copied, the shape the JSON implies (the row count and the first row's
nesting) is checked against the signature and the request limits (see standin/limits.py), so
narrow rows, deep nesting and oversized requests are refused without building them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys

import grpc
import numpy as np

from standin.json_writer import PrettyWriter, debug_string, decimal_texts, quote
from standin.limits import MAX_RANK, Limits, check_shape, element_bytes
from standin.servable import TensorSpec
from standin.status import ServingError, invalid
from standin.tensors import (
    DT_BOOL,
    DT_DOUBLE,
    DT_FLOAT,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_STRING,
    DT_UINT8,
    DT_UINT32,
    DT_UINT64,
    dtype_name,
)

# TF Serving checks rapidjson's IsInt() for every type up to int32 (narrower ones then wrap).
_INT_RANGES = {
    DT_INT32: (-(2**31), 2**31 - 1),
    DT_INT16: (-(2**31), 2**31 - 1),
    DT_INT8: (-(2**31), 2**31 - 1),
    DT_UINT8: (-(2**31), 2**31 - 1),
    DT_INT64: (-(2**63), 2**63 - 1),
    DT_UINT32: (0, 2**32 - 1),
    DT_UINT64: (0, 2**64 - 1),
}
_NUMBER = {int, float}

# Python's json messages -> rapidjson's (GetParseError_En), which TF Serving quotes.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}
_DECODER = json.JSONDecoder()
_TOO_BIG = "Number too big to be stored in double."


def _long_number_offset(body: bytes) -> int:
    """Where the first integer too long for Python's int conversion starts (0 if none)."""
    limit = sys.get_int_max_str_digits() or 4300
    match = re.search(rb"-?[0-9]{%d,}" % (limit + 1), body)
    return match.start() if match else 0


def _container_at(text: str, pos: int) -> str:
    """Whether ``pos`` is inside an array or an object (for rapidjson's comma messages)."""
    stack = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "["


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object, or TF Serving's ``JSON Parse error`` / ``Is not object``.

    Like TF Serving (rapidjson with kParseStopWhenDoneFlag), text after the first complete
    value is ignored, and NaN/Infinity are accepted.
    """
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise invalid(f"JSON Parse error: The document is empty. at offset: {len(body)}")
    try:
        doc, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        reason = _PARSE_ERRORS.get(exc.msg)
        if reason is None and exc.msg == "Expecting ',' delimiter":
            if _container_at(text, exc.pos) == "{":
                reason = "Missing a comma or '}' after an object member."
            else:
                reason = "Missing a comma or ']' after an array element."
        offset = len(text[: exc.pos].encode("utf-8"))
        raise invalid(f"JSON Parse error: {reason or exc.msg + '.'} at offset: {offset}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply at offset: 0") from None
    except ValueError:  # an integer beyond Python's int-string limit: rapidjson's too-big number
        offset = _long_number_offset(body)
        raise invalid(f"JSON Parse error: {_TOO_BIG} at offset: {offset}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {debug_string(doc)} Is not object")
    if "signature_name" in doc and not isinstance(doc["signature_name"], str):
        raise invalid(
            f"JSON Value: {debug_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return doc


def _json_type(value: object) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _type_error(value: object, dtype: int) -> ServingError:
    return invalid(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _scalar(value: object, dtype: int) -> object:
    """One JSON leaf as a tensor value (TF Serving's AddValueToTensor)."""
    if isinstance(value, dict):
        if dtype != DT_STRING:
            raise _type_error(value, dtype)
        if not _is_b64(value):
            raise invalid(
                f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid("Unable to base64 decode") from None
    kind = type(value)
    if dtype in (DT_FLOAT, DT_DOUBLE):
        if kind not in _NUMBER:
            raise _type_error(value, dtype)
        return value
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if kind is not int or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == DT_STRING:
        if kind is not str:
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == DT_BOOL:
        if kind is not bool:
            raise _type_error(value, dtype)
        return value
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}",
    )


def _fast_leaf_list(values: list, dtype: int) -> bool:
    """True when a list of leaves is all valid for ``dtype`` (checked without a Python loop)."""
    kinds = set(map(type, values))
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        return kinds == {int} and low <= min(values) and max(values) <= high
    if dtype in (DT_FLOAT, DT_DOUBLE):
        return kinds <= _NUMBER and bool(kinds)
    return False


def dense_shape(value: object) -> tuple[int, ...]:
    """The shape implied by the first element at each level (GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _fill(value: object, level: int, shape: tuple[int, ...], dtype: int, out: list) -> None:
    """Check ``value`` against ``shape`` and append its leaves to ``out`` (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    if level == rank - 1 and value and _fast_leaf_list(value, dtype):
        out.extend(value)
        return
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _array(values: list, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    if spec.dtype == DT_STRING or spec.np_dtype is None:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    try:
        if spec.np_dtype.kind in "iu" and spec.np_dtype.itemsize < 8:
            return np.array(values, dtype=np.int64).astype(spec.np_dtype).reshape(shape)
        return np.array(values, dtype=spec.np_dtype).reshape(shape)
    except OverflowError:  # an integer beyond any double, given for a float input
        raise invalid(f"JSON Parse error: {_TOO_BIG}") from None


def _check_cost(
    shapes: dict[str, tuple[int, ...]], specs: dict[str, TensorSpec], limits: Limits | None
) -> None:
    """The signature's shapes, then the row and byte limits, for the shapes the JSON implies."""
    for name, shape in shapes.items():
        check_shape(name, specs[name], shape)
    if limits is not None:
        limits.check(
            shapes,
            {name: math.prod(shape) * element_bytes(specs[name]) for name, shape in shapes.items()},
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


class _Rows:
    """Accumulates ``instances`` items per input name (AddInstanceItem)."""

    def __init__(self, specs: dict[str, TensorSpec]) -> None:
        self.specs = specs
        self.values: dict[str, list] = {}
        self.sizes: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def add(self, item: object, name: str) -> None:
        if name not in self.specs:
            raise invalid(f"JSON object: does not have named input: {name}")
        shape = dense_shape(item)
        if len(shape) >= MAX_RANK:  # checked before the recursive fill
            check_shape(name, self.specs[name], (1, *shape))
        out: list = []
        _fill(item, 0, shape, self.specs[name].dtype, out)
        if name not in self.sizes:
            self.sizes[name] = len(out)
            self.shapes[name] = shape
            self.values[name] = out
            return
        if self.sizes[name] != len(out):
            raise invalid(f"Expecting tensor size: {self.sizes[name]} but got: {len(out)}")
        if self.shapes[name] != shape:
            raise invalid(
                f"Expecting shape {_shape_text(self.shapes[name])} but got: {_shape_text(shape)}"
            )
        self.values[name].extend(out)


def _wrapped(error: ServingError, prefix: str) -> ServingError:
    return invalid(f"{prefix} Error: {error.code_name}: {error.message}")


def _from_instances(
    items: list, specs: dict[str, TensorSpec], limits: Limits | None
) -> dict[str, np.ndarray]:
    if not isinstance(items[0], dict) and len(specs) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    objects = isinstance(items[0], dict) and not _is_b64(items[0])
    if limits is not None:
        limits.check_rows(len(items))
    # Every row must have the first row's shape (checked as they are read), so checking the
    # first row against the signature and the limits covers the whole request.
    first = items[0]
    columns = (
        {name: first[name] for name in sorted(first) if name in specs}
        if objects
        else {sorted(specs)[0]: first}
    )
    _check_cost({name: (len(items), *dense_shape(v)) for name, v in columns.items()}, specs, limits)
    rows = _Rows(specs)
    names = sorted(specs)
    for index, item in enumerate(items):
        element_is_object = isinstance(item, dict) and not _is_b64(item)
        if objects:
            if not element_is_object:
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for name, value in item.items():
                try:
                    rows.add(value, name)
                except ServingError as exc:
                    raise _wrapped(
                        exc, f"Failed to process element: {index} key: {name} of 'instances' list."
                    ) from None
            if set(item) != set(names):
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(item)} keys must be equal to: {','.join(names)}"
                )
        else:
            if element_is_object:
                raise invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                rows.add(item, names[0])
            except ServingError as exc:
                raise _wrapped(
                    exc, f"Failed to process element: {index} of 'instances' list."
                ) from None
    return {
        name: _array(rows.values[name], specs[name], (len(items), *rows.shapes[name]))
        for name in rows.values
    }


def _from_inputs(
    value: object, specs: dict[str, TensorSpec], limits: Limits | None
) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(specs) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        columns = {next(iter(specs)): value}
    else:
        columns = {}
        for name in sorted(specs):
            if name not in value:
                raise invalid(f"Missing named input: {name} in 'inputs' object.")
            columns[name] = value[name]
    _check_cost({name: dense_shape(column) for name, column in columns.items()}, specs, limits)
    tensors = {}
    for name, column in columns.items():
        shape = dense_shape(column)
        out: list = []
        _fill(column, 0, shape, specs[name].dtype, out)
        tensors[name] = _array(out, specs[name], shape)
    return tensors


def request_tensors(
    doc: dict, specs: dict[str, TensorSpec], signature_name: str, limits: Limits | None = None
) -> tuple[dict[str, np.ndarray], bool]:
    """The input tensors of a parsed predict body, and whether it used the row format.

    Shapes are checked against ``specs`` and ``limits`` (when given) before values are copied.
    """
    if not specs:
        raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances = "instances" in doc
    if has_instances and "inputs" in doc:
        raise invalid(
            f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        items = doc["instances"]
        if not isinstance(items, list):
            raise invalid(
                f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array"
            )
        if not items:
            raise invalid(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        return _from_instances(items, specs, limits), True
    if "inputs" in doc:
        return _from_inputs(doc["inputs"], specs, limits), False
    raise invalid("Missing 'inputs' or 'instances' key")


def _value_texts(name: str, array: np.ndarray, dtype: int) -> list:
    if dtype in (DT_FLOAT, DT_DOUBLE) or array.dtype.kind == "f":
        return decimal_texts(array)
    if dtype == DT_BOOL:
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if dtype == DT_STRING:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]
        if name.endswith("_bytes"):
            return [base64.b64encode(v).decode("ascii") for v in values]  # written as b64 objects
        return [quote(v.decode("utf-8", errors="replace")) for v in values]
    return [str(v) for v in array.ravel().tolist()]


def _write_tensor(
    writer: PrettyWriter, texts: list, shape: tuple[int, ...], dim: int, pos: list, as_b64: bool
) -> None:
    """AddTensorValues(): nested arrays from ``dim`` on, consuming ``texts`` in order."""
    if dim >= len(shape):
        text = texts[pos[0]]
        pos[0] += 1
        if as_b64:
            writer.start(array=False)
            writer.key("b64")
            writer.raw(quote(text))
            writer.end()
        else:
            writer.raw(text)
        return
    writer.start(array=True)
    for _ in range(shape[dim]):
        _write_tensor(writer, texts, shape, dim + 1, pos, as_b64)
    writer.end()


def response_body(outputs: dict[str, np.ndarray], dtypes: dict[str, int], rows: bool) -> str:
    """``{"predictions": ...}`` (row requests) or ``{"outputs": ...}`` as TF Serving lays it out."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    texts = {n: _value_texts(n, outputs[n], dtypes[n]) for n in names}
    b64 = {n: dtypes[n] == DT_STRING and n.endswith("_bytes") for n in names}
    writer = PrettyWriter()
    writer.start(array=False)
    several = len(names) > 1
    if rows:
        batch = -1
        for name in names:
            if outputs[name].ndim == 0:
                raise invalid(f"Tensor name: {name} has no shape information ")
            size = outputs[name].shape[0]
            if batch >= 0 and size != batch:
                raise invalid(
                    f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}"
                )
            batch = size
        writer.key("predictions")
        writer.start(array=True)
        positions = {name: [0] for name in names}
        for _ in range(batch):
            if several:
                writer.start(array=False)
            writer.single_line_arrays = True
            for name in names:
                if several:
                    writer.key(name)
                shape = outputs[name].shape
                _write_tensor(writer, texts[name], shape, 1, positions[name], b64[name])
            writer.single_line_arrays = False
            if several:
                writer.end()
        writer.end()
    else:
        writer.key("outputs")
        if several:
            writer.start(array=False)
        for name in names:
            if several:
                writer.key(name)
            _write_tensor(writer, texts[name], outputs[name].shape, 0, [0], b64[name])
        if several:
            writer.end()
    writer.end()
    return writer.text()
