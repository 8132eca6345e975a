"""Atomic file writes: a reader (or a crash, or Ctrl-C) never leaves a half-written result.

Everything a run measures is written through a temporary file in the same directory and then
renamed over the destination, which POSIX guarantees to be atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: object) -> None:
    """``write_atomic`` for JSON, indented so that results diff well."""
    write_atomic(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")
