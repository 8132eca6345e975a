"""The runner's live progress: one rewritten line on a terminal, plain periodic lines elsewhere.

A matrix run takes minutes; without feedback users cannot tell a slow cell from a hung one. On a
TTY the current cell's line is redrawn in place; in CI logs (not a TTY) a line is printed every
``interval`` seconds so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_elapsed(seconds: float) -> str:
    """``42.1 s`` under a minute, ``3m07s`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Progress:
    """Reports cell i/n, elapsed time, requests done and the current request rate."""

    def __init__(self, stream: TextIO = sys.stderr, tty: bool | None = None, interval: float = 10):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self.run_start = time.monotonic()
        self.cell_start = self.run_start
        self.label = ""
        self.last_plain = 0.0
        self.width = 0

    def _write_line(self, text: str) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that stays (start-ups, failures, results)."""
        self._write_line(text)

    def start_cell(self, index: int, total: int, cell_id: str) -> None:
        self.cell_start = time.monotonic()
        self.last_plain = self.cell_start
        self.label = f"[{index}/{total}] {cell_id}"
        self.update(0, 0.0, 0)

    def update(self, requests: int, rps: float, failures: int) -> None:
        """Called about once a second while a cell runs."""
        now = time.monotonic()
        failed = f" ({failures:,} failed)" if failures else ""
        line = (
            f"{self.label}  {format_elapsed(now - self.cell_start)}  {requests:,} requests{failed}"
            f"  {rps:,.1f} req/s  (run {format_elapsed(now - self.run_start)})"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = max(self.width, len(line))
            self.stream.flush()
        elif now - self.last_plain >= self.interval:
            self.last_plain = now
            self._write_line(line)
