"""Request rows from an instances file: what every predict call sends (the sample library).

The orchestrator reads the file before any load to refuse a bad one up front; each
load-generating process reads it again to encode its requests. Both go through
:func:`read_instances`, so they accept and refuse the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfsload.core.errors import ConfigError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def read_instances(path: Path, rows_per_request: int = 0) -> list[list[int]]:
    """A JSON list of equally long lists of int32 values, cut or repeated to
    ``rows_per_request`` rows when that is not 0. ConfigError names the file and the problem."""
    where = f"--instances-file: {path}"
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: must be a non-empty JSON list of rows")
    width = len(data[0]) if isinstance(data[0], list) else 0
    for i, row in enumerate(data):
        if not isinstance(row, list) or not row or len(row) != width:
            raise ConfigError(f"{where}: row {i} must be a list of {width} ints")
        for value in row:
            if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
                raise ConfigError(f"{where}: row {i} has a non-int32 value")
    if rows_per_request:
        data = [data[i % len(data)] for i in range(rows_per_request)]
    return data
