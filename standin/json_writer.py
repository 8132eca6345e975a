"""JSON text exactly as TF Serving writes it (rapidjson's PrettyWriter and its quirks).

TF Serving writes responses with rapidjson's pretty writer: four-space indents, rows of a
``predictions`` list on one line, float32 values as ``%.6g`` when that reads back as the same
float and ``%.9g`` otherwise, whole numbers with ``.0``. Error messages quote request values in
the same writer's single-line-array style, cut at 256 bytes. This module reproduces that output
from the writer's rules (indentation, separators, number formatting), so clients that parse or
log TF Serving's bodies see the same text from the stand-in.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_ESCAPES.update({chr(c): f"\\u{c:04X}" for c in range(0x20) if chr(c) not in _ESCAPES})
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def quote(text: str) -> str:
    """A JSON string as rapidjson writes it (control characters escaped, UTF-8 kept)."""
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


class _Full(Exception):
    """Raised when a size-limited writer stops, as rapidjson's limited writer does."""


class _Level:
    __slots__ = ("count", "in_array")

    def __init__(self, in_array: bool) -> None:
        self.in_array = in_array
        self.count = 0


class PrettyWriter:
    """Event-driven writer with rapidjson PrettyWriter's layout rules.

    ``single_line_arrays`` is rapidjson's kFormatSingleLineArray: array elements separated by
    ``", "`` without line breaks. ``limit`` stops writing once that many characters are out.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._levels: list[_Level] = []
        self._limit = limit
        self.single_line_arrays = False

    def text(self) -> str:
        return "".join(self._parts)

    def _put(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)

    def _check(self) -> None:
        if self._limit is not None and self._size >= self._limit:
            raise _Full

    def _prefix(self) -> None:
        if not self._levels:
            return
        level = self._levels[-1]
        indent = " " * (4 * len(self._levels))
        if level.in_array:
            if level.count > 0:
                self._put(", " if self.single_line_arrays else ",")
            if not self.single_line_arrays:
                self._put("\n" + indent)
        else:
            if level.count > 0:
                self._put(",\n" if level.count % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level.count % 2 == 0:
                self._put(indent)
        level.count += 1

    def raw(self, text: str) -> None:
        """A scalar already in JSON form (a number, ``true``, a quoted string)."""
        self._check()
        self._prefix()
        self._put(text)

    def key(self, name: str) -> None:
        self.raw(quote(name))

    def start(self, array: bool) -> None:
        self._check()
        self._prefix()
        self._levels.append(_Level(array))
        self._put("[" if array else "{")

    def end(self) -> None:
        self._check()
        level = self._levels.pop()
        if level.count and (not level.in_array or not self.single_line_arrays):
            self._put("\n" + " " * (4 * len(self._levels)))
        self._put("]" if level.in_array else "}")


def double_text(value: float) -> str | None:
    """A double as rapidjson's Writer::Double prints it; None for NaN/Inf (it refuses them)."""
    if not math.isfinite(value):
        return None
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    fraction = fraction.rstrip("0")
    digits = (whole + fraction).lstrip("0")
    k = int(exponent or 0) - len(fraction)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if k >= 0 and kk <= 21:
        return f"{sign}{digits}{'0' * k}.0"
    if 0 < kk <= 21:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -6 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    if length == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"


def write_value(writer: PrettyWriter, value: object) -> None:
    """Write a parsed JSON value (dict, list, str, number, bool, None)."""
    if isinstance(value, dict):
        writer.start(array=False)
        for key, item in value.items():
            writer.key(key)
            write_value(writer, item)
        writer.end()
    elif isinstance(value, list):
        writer.start(array=True)
        for item in value:
            write_value(writer, item)
        writer.end()
    elif isinstance(value, str):
        writer.raw(quote(value))
    elif value is None or isinstance(value, bool):
        writer.raw({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int):
        writer.raw(str(value))
    else:
        text = double_text(value)
        if text is None:
            raise _Full
        writer.raw(text)


def debug_string(value: object) -> str:
    """TF Serving's JsonValueToDebugString(): single-line arrays, at most ~256 bytes."""
    writer = PrettyWriter(limit=256)
    writer.single_line_arrays = True
    with contextlib.suppress(_Full):
        write_value(writer, value)
    return writer.text()


def error_body(message: str) -> str:
    """``{"error": message}`` laid out as TF Serving's MakeJsonFromStatus()."""
    writer = PrettyWriter()
    writer.start(array=False)
    writer.key("error")
    writer.raw(quote(message))
    writer.end()
    return writer.text()


def decimal_texts(array: np.ndarray) -> list[str]:
    """Floats as TF Serving's WriteDecimal(): ``%.6g`` unless it does not round-trip."""
    values = array.ravel()
    wide = ".9g" if values.dtype == np.float32 else ".17g"
    floats = values.tolist()
    short = [f"{v:.6g}" for v in floats]
    back = np.array(short).astype(values.dtype) if short else values
    texts = []
    for v, text, ok in zip(floats, short, back == values, strict=True):
        if not math.isfinite(v):
            text = "NaN" if math.isnan(v) else ("-Infinity" if v < 0 else "Infinity")
        else:
            if not ok:
                text = format(v, wide)
            if "." not in text and "e" not in text:
                text += ".0"
        texts.append(text)
    return texts
