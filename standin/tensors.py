"""TensorProto <-> numpy, as TF Serving reads requests and writes responses.

Requests may carry values in ``tensor_content`` (what ``tf.make_tensor_proto`` writes) or in the
typed ``*_val`` fields (a short list is filled with its last value, as TensorFlow does).
Responses use the typed fields, as TF Serving's default ``AsProtoField`` serialisation does.
Common dtypes are converted with numpy directly; ``tf.make_ndarray`` handles the rest.
"""

from __future__ import annotations

import math

import numpy as np

from standin.status import invalid

# DataType enum -> (TensorProto field, numpy dtype); tensorflow/core/framework/types.proto.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT32, DT_UINT64 = 9, 10, 22, 23
FIELDS = {
    DT_FLOAT: ("float_val", np.float32),
    DT_DOUBLE: ("double_val", np.float64),
    DT_INT32: ("int_val", np.int32),
    DT_UINT8: ("int_val", np.uint8),
    DT_INT16: ("int_val", np.int16),
    DT_INT8: ("int_val", np.int8),
    DT_INT64: ("int64_val", np.int64),
    DT_BOOL: ("bool_val", np.bool_),
    DT_UINT32: ("uint32_val", np.uint32),
    DT_UINT64: ("uint64_val", np.uint64),
    DT_STRING: ("string_val", object),
}


_NAMES = {
    1: "float",
    2: "double",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    18: "complex128",
    19: "half",
    22: "uint32",
    23: "uint64",
}


def dtype_name(dtype: int) -> str:
    """TensorFlow's DataTypeString(): ``int32``, ``float`` ... as in TF Serving's messages."""
    return _NAMES.get(dtype, f"<dtype {dtype}>")


# Bytes per element of the types FIELDS does not cover (bfloat16, uint16, half, complex).
_OTHER_SIZES = {14: 2, 17: 2, 19: 2, 8: 8, 18: 16}
INT64_MAX = 2**63 - 1


def _parse_error(alias: str):
    return invalid(f"tensor parsing error: {alias}")


def element_size(dtype: int) -> int | None:
    """Bytes per element of a DataType, None for strings and types the stand-in cannot size."""
    entry = FIELDS.get(dtype)
    if entry is not None:
        return None if entry[1] is object else np.dtype(entry[1]).itemsize
    return _OTHER_SIZES.get(dtype)


def inspect(proto, alias: str) -> tuple[tuple[int, ...], int]:
    """The shape a request tensor declares and the bytes it takes once decoded, checked
    without decoding it: negative or overflowing dimensions, ``tensor_content`` whose length
    is not the shape's, and more values than elements are TF Serving's ``tensor parsing
    error`` (Tensor::FromProto refuses them)."""
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise _parse_error(alias)
    count = math.prod(shape)
    if count > INT64_MAX:
        raise _parse_error(alias)
    if proto.dtype == DT_STRING:
        values = proto.string_val
        if len(values) > count or (count and not values):
            raise _parse_error(alias)
        return shape, count * 8 + sum(len(v) for v in values)
    size = element_size(proto.dtype)
    if proto.tensor_content:
        if size is not None and len(proto.tensor_content) != count * size:
            raise _parse_error(alias)
    else:
        entry = FIELDS.get(proto.dtype)
        if entry is not None and len(getattr(proto, entry[0])) > count:
            raise _parse_error(alias)
    return shape, count * (size or 8)


def to_ndarray(proto, alias: str) -> np.ndarray:
    """Decode one request tensor (after :func:`inspect` accepted it and the request's limits
    allowed its size); a malformed one is TF Serving's ``tensor parsing error``."""
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    count = math.prod(shape)
    entry = FIELDS.get(proto.dtype)
    if entry is None or any(d < 0 for d in shape):
        return _with_tensorflow(proto, alias)
    field, np_dtype = entry
    if proto.tensor_content and np_dtype is not object:
        if len(proto.tensor_content) != count * np.dtype(np_dtype).itemsize:
            raise _parse_error(alias)
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    values = getattr(proto, field)
    if len(values) > count or (count and not values and proto.dtype == DT_STRING):
        raise _parse_error(alias)
    array = np.array(values, dtype=np_dtype)
    if len(values) < count:
        fill = array[-1] if len(values) else np.zeros((), dtype=np_dtype)
        array = np.concatenate([array, np.full(count - len(values), fill, dtype=np_dtype)])
    return array.reshape(shape)


def _with_tensorflow(proto, alias: str) -> np.ndarray:
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except Exception:
        raise invalid(f"tensor parsing error: {alias}") from None


def from_ndarray(array: np.ndarray, dtype: int, proto) -> None:
    """Fill ``proto`` (a TensorProto) from ``array`` with TF Serving's typed-field layout."""
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    entry = FIELDS.get(dtype)
    if entry is None:
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    field, _ = entry
    flat = array.ravel()
    if dtype == DT_STRING:
        getattr(proto, field).extend(bytes(v) for v in flat)
    else:
        getattr(proto, field).extend(flat.tolist())
