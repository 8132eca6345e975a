"""Small facts about local processes and ports that several parts of tfsload need."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file joined by `` | ``, for one-line error messages."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])
