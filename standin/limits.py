"""What one predict request may be and cost, checked before any array is allocated.

Every input is checked against the signature first: its rank and every dimension the signature
fixes (a ``[-1, 200]`` input takes rows of exactly 200 values; narrower rows are refused, not
broadcast). Then the request's cost is bounded by two stand-in flags: ``--max_request_rows``
(the first dimension) and ``--max_request_bytes`` (the inputs once decoded: elements times
element size). Both transports check the shapes a request declares (a gRPC ``tensor_shape``, the
nesting of REST JSON), so a small message that declares a huge tensor is refused without
memory being spent on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from standin.servable import TensorSpec
from standin.status import invalid

MAX_RANK = 64  # numpy's limit (TensorFlow allows 254); deeper values are refused up front
STRING_ELEMENT_BYTES = 8  # what a string element costs beyond its bytes (a pointer)


def shape_text(shape) -> str:
    return "[" + ",".join("-1" if d is None else str(d) for d in shape) + "]"


def check_shape(alias: str, spec: TensorSpec, shape: tuple[int, ...]) -> None:
    """Refuse ``shape`` for input ``alias`` when the signature's shape rules it out."""
    if len(shape) > MAX_RANK:
        raise invalid(
            f"Input {alias} has {len(shape)} dimensions; the stand-in takes at most {MAX_RANK}"
        )
    expected = spec.shape
    if expected is None:
        return
    if len(shape) != len(expected) or any(
        want is not None and want != got for want, got in zip(expected, shape, strict=True)
    ):
        raise invalid(
            f"Input {alias} has shape {shape_text(shape)}, which does not match the "
            f"signature's shape {shape_text(expected)}"
        )


@dataclass(frozen=True)
class Limits:
    """``--max_request_rows`` and ``--max_request_bytes``."""

    max_rows: int
    max_bytes: int

    def check_rows(self, rows: int) -> None:
        if rows > self.max_rows:
            raise invalid(
                f"Request of {rows} rows is larger than the stand-in's limit of "
                f"{self.max_rows} rows (--max_request_rows)"
            )

    def check_bytes(self, size: int) -> None:
        if size > self.max_bytes:
            raise invalid(
                f"Request inputs of {size} bytes are larger than the stand-in's limit of "
                f"{self.max_bytes} bytes (--max_request_bytes)"
            )

    def check(self, shapes: dict[str, tuple[int, ...]], sizes: dict[str, int]) -> None:
        """Rows (the first dimension of every input) and decoded bytes of a whole request."""
        rows = max((shape[0] for shape in shapes.values() if shape), default=1)
        self.check_rows(rows)
        self.check_bytes(sum(sizes.values()))


def element_bytes(spec: TensorSpec) -> int:
    """Bytes one element of ``spec``'s dtype takes once decoded (strings: their pointer)."""
    if spec.np_dtype is None or spec.np_dtype.kind == "O":
        return STRING_ELEMENT_BYTES
    return spec.np_dtype.itemsize
