"""TF Serving's tensor dtypes on both wire formats: JSON values and TensorProtos, via numpy.

One table says, per ``DataType``, what numpy type holds it, which kind of JSON value carries it
and which typed ``TensorProto`` field TF Serving answers it in. Requests are built from it
(JSON values -> numpy -> ``tensor_content``, or ``string_val`` for strings) and answers read
with it. Half and uint16 travel over gRPC only: TF Serving's JSON conversion does not handle
them (it answers UNIMPLEMENTED).
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass

import numpy as np

from tfsload.core import protos


@dataclass(frozen=True)
class DType:
    """How one TensorFlow dtype is carried: numpy type, JSON kind, typed TensorProto field."""

    numpy: str | None  # None: bytes (DT_STRING)
    kind: str  # float, int, bool or string
    field: str
    rest: bool = True  # TF Serving's JSON API converts it

    @functools.cached_property
    def itemsize(self) -> int:
        return np.dtype(self.numpy).itemsize


DTYPES = {
    "DT_HALF": DType("<f2", "float", "half_val", rest=False),
    "DT_FLOAT": DType("<f4", "float", "float_val"),
    "DT_DOUBLE": DType("<f8", "float", "double_val"),
    "DT_INT8": DType("i1", "int", "int_val"),
    "DT_INT16": DType("<i2", "int", "int_val"),
    "DT_INT32": DType("<i4", "int", "int_val"),
    "DT_INT64": DType("<i8", "int", "int64_val"),
    "DT_UINT8": DType("u1", "int", "int_val"),
    "DT_UINT16": DType("<u2", "int", "int_val", rest=False),
    "DT_UINT32": DType("<u4", "int", "uint32_val"),
    "DT_UINT64": DType("<u8", "int", "uint64_val"),
    "DT_BOOL": DType("?", "bool", "bool_val"),
    "DT_STRING": DType(None, "string", "string_val"),
}
# Which JSON kinds convert to a dtype kind (JSON integers are welcome in float tensors).
CONVERTS = {"float": {"float", "int"}, "int": {"int"}, "bool": {"bool"}, "string": {"string"}}


def lookup(dtype: str) -> DType | None:
    return DTYPES.get(dtype)


def int_limits(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(DTYPES[dtype].numpy))
    return int(info.min), int(info.max)


def convert_problem(kind: str, low: int | None, high: int | None, dtype: str) -> str | None:
    """Why JSON values of ``kind`` (ints between low and high) cannot make a ``dtype`` tensor."""
    entry = DTYPES.get(dtype)
    if entry is None:
        return f"{dtype} is not a dtype tfsload can send"
    if kind not in CONVERTS[entry.kind]:
        return f"{kind} values do not convert to {dtype}"
    if kind == "int" and entry.kind == "int" and low is not None:
        smallest, largest = int_limits(dtype)
        if low < smallest or high > largest:
            return f"values {low}..{high} do not fit {dtype} ({smallest}..{largest})"
    return None


def infer_dtype(kind: str, low: int | None, high: int | None) -> str:
    """The dtype a JSON value kind makes when no signature says (int32 ints, as TF Serving
    models mostly take, int64 when they do not fit; float32 floats)."""
    if kind == "int":
        small = low is not None and low >= -(2**31) and high <= 2**31 - 1
        return "DT_INT32" if small else "DT_INT64"
    return {"float": "DT_FLOAT", "bool": "DT_BOOL", "string": "DT_STRING"}[kind]


def _bytes(value: object) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value.encode()


def to_array(values: list, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """JSON values (already checked with :func:`convert_problem`) as a numpy array."""
    entry = DTYPES[dtype]
    if entry.numpy is None:
        flat = np.array(values, dtype=object).reshape(-1)
        return np.array([_bytes(v) for v in flat], dtype=object).reshape(shape)
    return np.array(values, dtype=entry.numpy)


def json_values(array: np.ndarray, dtype: str) -> list:
    """A numpy array as JSON values: strings as text when they are UTF-8, else ``{"b64"}``."""
    if DTYPES[dtype].numpy is not None:
        return array.tolist()

    def text(value: bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}

    return np.vectorize(text, otypes=[object])(array).tolist()


def tensor_proto(values, dtype: str = "DT_INT32"):
    """A TensorProto of ``values`` (nested lists or an array; bytes for strings), numbers in
    ``tensor_content`` as tf.make_tensor_proto writes them, strings in ``string_val``."""
    entry = DTYPES[dtype]
    tensor = protos.load().TensorProto()
    tensor.dtype = protos.dtype_number(dtype)
    if entry.numpy is None:
        array = np.asarray(values, dtype=object)
        tensor.string_val.extend(array.reshape(-1).tolist())
    else:
        array = np.asarray(values, dtype=entry.numpy)
        tensor.tensor_content = array.tobytes()
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    return tensor


@functools.cache
def dtype_name(number: int) -> str:
    """``DT_FLOAT`` for 1, from the loaded descriptors (cached: every answer asks)."""
    enum = protos.load().TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    value = enum.values_by_number.get(number)
    return value.name if value is not None else f"dtype {number}"


def tensor_values(tensor, dtype: str, shape: tuple[int, ...]) -> list | None:
    """The values of an answer's TensorProto (of ``shape``) as a flat list, or None when they
    do not fill it (too few or too many, ``tensor_content`` of the wrong length)."""
    entry = DTYPES[dtype]
    count = math.prod(shape)
    content = tensor.tensor_content
    if content and entry.numpy is not None:
        if len(content) != count * entry.itemsize:
            return None
        return np.frombuffer(content, dtype=entry.numpy).tolist()
    values = getattr(tensor, entry.field)
    if len(values) != count:
        return None
    if dtype == "DT_HALF":  # half_val holds the 16-bit patterns
        return np.array(values, dtype=np.uint16).view(np.float16).tolist()
    return list(values)
