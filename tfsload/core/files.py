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


def _parent_problem(path: Path) -> str | None:
    """Why the folders above ``path`` cannot hold it: the nearest one that exists is not a
    folder (a regular file on the way) or is not writable; None when they can be made."""
    parent = path.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def output_file_problem(path: Path) -> str | None:
    """Why a result file could not be written at ``path``, or None.

    Checked before any load is sent, so that a run never measures for minutes and then fails
    to keep what it measured.
    """
    if path.is_dir():
        return "is a directory"
    return _parent_problem(path)


def output_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a new results folder (it must be new or empty), or None."""
    if path.exists():
        if not path.is_dir():
            return "exists and is not a directory"
        if any(path.iterdir()):
            return "exists and is not empty; results are never overwritten"
        return None
    return _parent_problem(path)
