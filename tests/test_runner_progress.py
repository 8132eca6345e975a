"""The progress line: redrawn in place on a terminal, plain periodic lines in logs."""

from __future__ import annotations

import io

from tfsload.orchestrate.progress import Progress, format_elapsed


def test_terminal_redraws_one_line_and_keeps_messages():
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.start_cell(2, 6, "standin-batching-rest")
    progress.update(1234, 456.7, 0)
    progress.update(2345, 512.3, 3)
    progress.message("[2/6] standin-batching-rest: ok (5.1 s)")
    text = out.getvalue()
    assert "\n" not in text.split("[2/6] standin-batching-rest: ok")[0]  # updates stay on one line
    last_update = text.split("\r")[-3]
    assert last_update.startswith("[2/6] standin-batching-rest  ")
    assert "2,345 requests (3 failed)  512.3 req/s" in last_update
    assert text.endswith("[2/6] standin-batching-rest: ok (5.1 s)\n")


def test_log_gets_a_line_per_interval_only():
    out = io.StringIO()
    progress = Progress(out, tty=False, interval=0)
    progress.start_cell(1, 2, "a-grpc")
    progress.update(10, 5.0, 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[1].startswith("[1/2] a-grpc") and "10 requests  5.0 req/s" in lines[1]
    quiet = io.StringIO()
    slow = Progress(quiet, tty=False, interval=3600)
    slow.start_cell(1, 2, "a-grpc")
    slow.update(10, 5.0, 0)
    assert quiet.getvalue() == ""


def test_format_elapsed():
    assert format_elapsed(4.25) == "4.2 s"
    assert format_elapsed(187) == "3m07s"
