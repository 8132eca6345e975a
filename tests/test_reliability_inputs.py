"""Every input file and flag of ``tfsload run|report|compare|slo`` and of tfsload's Locust
options: a bad one is one line naming it and exit 2, before anything runs, never a traceback.

Hostile and careless inputs, one table per command: missing files, directories where files
belong, files below regular files, bytes that are not UTF-8, nesting deep enough to break a
recursive parser, results paths that cannot be written. Each case is the real command line a
user types, run as a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_locust_runs import LOCUSTFILE, clean_env, tfsload_lines

NOT_UTF8 = b'name = "caf\xe9"\n'  # Latin-1 bytes in a TOML or JSON file
DEEP_TOML = "a = " + "[" * 100_000 + "\n"
DEEP_JSON = "[" * 100_000
INSTANCES = json.dumps([[1, 2, 3], [4, 5, 6]])
EXPERIMENT = """
name = "hostile"
protocols = ["rest"]
[model]
instances = "{instances}"
[load]
users = 1
requests = 10
{targets}
"""
TARGET = '[[targets]]\nname = "t"\nrest = "http://127.0.0.1:9"\n'
LAUNCHED = '[[targets]]\nname = "t"\nlaunch = "standin"\nflags = {flags}\n'


def workspace(tmp_path: Path) -> Path:
    """A folder with one of each kind of bad file next to good ones."""
    (tmp_path / "instances.json").write_text(INSTANCES)
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "not_utf8").write_bytes(NOT_UTF8)
    (tmp_path / "deep.toml").write_text(DEEP_TOML)
    (tmp_path / "deep.json").write_text(DEEP_JSON)
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept\n")
    return tmp_path


def experiment(
    tmp_path: Path, instances: str = "instances.json", targets: str = TARGET, **top: str
) -> Path:
    text = EXPERIMENT.format(instances=instances, targets=targets)
    text = "".join(f"{key} = {value}\n" for key, value in top.items()) + text
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def tfsload(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsload", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 2 and stderr is exactly one line holding every expected part, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


def launched(flag_file: str) -> str:
    return LAUNCHED.format(flags=json.dumps([f"--batching_parameters_file={flag_file}"]))


RUN_CASES = {
    "missing": (["nope.toml"], "nope.toml: no such file"),
    "directory": (["a_dir"], "a_dir: cannot read (Is a directory)"),
    "below-a-file": (["a_file/exp.toml"], "a_file/exp.toml: cannot read (Not a directory)"),
    "not-utf8": (["not_utf8"], "not_utf8: not UTF-8 text (byte 11)"),
    "deep": (["deep.toml"], "deep.toml: invalid TOML (nested too deeply)"),
    "out-below-a-file": (["{exp}", "--out", "a_file/sub"], "--out", "a_file is not a directory"),
    "out-a-file": (["{exp}", "--out", "a_file"], "--out", "exists and is not a directory"),
    "out-not-empty": (["{exp}", "--out", "full"], "--out", "exists and is not empty"),
    "out-below-a-file-deeper": (["{exp}", "--out", "a_file/x/y"], "a_file is not a directory"),
}


@pytest.mark.parametrize("case", RUN_CASES, ids=list(RUN_CASES))
def test_run_refuses_bad_files_and_out_in_one_line(tmp_path, case):
    root = workspace(tmp_path)
    exp = experiment(root)
    args, *expected = RUN_CASES[case]
    done = tfsload(root, "run", *(a.format(exp=exp) for a in args))
    assert_one_line(done, *expected)
    assert done.stderr.startswith("error: ")
    assert not (root / "reports").exists()  # nothing was created
    assert (root / "full" / "x").read_text() == "kept\n"


EXPERIMENT_CASES = {
    "instances-missing": ({"instances": "nope.json"}, "model.instances", "no such file"),
    "instances-directory": ({"instances": "a_dir"}, "model.instances", "is a directory"),
    "instances-below-a-file": ({"instances": "a_file/i.json"}, "model.instances", "Not a dir"),
    "instances-not-utf8": ({"instances": "not_utf8"}, "model.instances", "not JSON"),
    "instances-deep": ({"instances": "deep.json"}, "model.instances", "not JSON"),
    "targets-file-missing": ({"targets_file": '"nope.toml"'}, "targets_file", "no such file"),
    "targets-file-directory": ({"targets_file": '"a_dir"'}, "targets_file", "Is a directory"),
    "targets-file-below-a-file": ({"targets_file": '"a_file/t"'}, "targets_file", "Not a dir"),
    "targets-file-not-utf8": ({"targets_file": '"not_utf8"'}, "targets_file", "not UTF-8"),
    "targets-file-deep": ({"targets_file": '"deep.toml"'}, "targets_file", "nested too deeply"),
    "batching-not-utf8": ({"flags": "not_utf8"}, "targets[0].flags", "not UTF-8 text"),
    "batching-directory": ({"flags": "a_dir"}, "targets[0].flags", "cannot read it"),
    "batching-missing": ({"flags": "nope.cfg"}, "--batching_parameters_file", "cannot read"),
    "batching-bad": ({"flags": "instances.json"}, "Invalid protobuf file", "instances.json"),
    "base-path-missing": ({"base_path": "nowhere"}, "model.base_path", "no such directory"),
}


@pytest.mark.parametrize("case", EXPERIMENT_CASES, ids=list(EXPERIMENT_CASES))
def test_run_refuses_bad_files_named_in_the_experiment_in_one_line(tmp_path, case):
    """Files an experiment names (requests, targets, a launched stand-in's configs and model)
    are read before any load; a bad one names the experiment, the key and the problem."""
    root = workspace(tmp_path)
    settings, *expected = EXPERIMENT_CASES[case]
    targets = TARGET
    if "flags" in settings:
        targets = launched(settings["flags"])
    top = {"targets_file": settings["targets_file"]} if "targets_file" in settings else {}
    if top:
        targets = ""
    exp = experiment(root, settings.get("instances", "instances.json"), targets, **top)
    if "base_path" in settings or "flags" in settings:
        base = settings.get("base_path", "model")
        exp.write_text(exp.read_text().replace("[model]\n", f'[model]\nbase_path = "{base}"\n'))
    if "base_path" in settings:
        exp.write_text(exp.read_text().replace(TARGET, launched("nope.cfg").replace(
            json.dumps(["--batching_parameters_file=nope.cfg"]), "[]")))  # fmt: skip
    done = tfsload(root, "run", str(exp))
    line = assert_one_line(done, *expected)
    assert str(exp) in line
    assert not (root / "reports").exists()


RUN_JSON = json.dumps({"cells": ["t-rest"], "spec": {"format": "tfsload-run-spec/1"}})


def results_dir(root: Path, run_json: bytes | str | None, cell: str | None = None) -> Path:
    out = root / "results"
    out.mkdir()
    if run_json is not None:
        data = run_json.encode() if isinstance(run_json, str) else run_json
        (out / "run.json").write_bytes(data)
    if cell is not None:
        (out / "cells" / "t-rest").mkdir(parents=True)
        (out / "cells" / "t-rest" / "cell.json").write_text(cell)
    return out


REPORT_CASES = {
    "missing": (lambda root: root / "nope", "no run.json"),
    "a-file": (lambda root: root / "a_file", "Not a directory"),
    "below-a-file": (lambda root: root / "a_file" / "sub", "Not a directory"),
    "no-run-json": (lambda root: results_dir(root, None), "no run.json"),
    "not-utf8": (lambda root: results_dir(root, NOT_UTF8), "run.json: unreadable"),
    "deep": (lambda root: results_dir(root, DEEP_JSON), "run.json: unreadable"),
    "not-an-object": (lambda root: results_dir(root, "[]"), "run.json: not a JSON object"),
    "cells-not-a-list": (lambda root: results_dir(root, '{"cells": 3}'), "cells: must be"),
    "bad-cell": (
        lambda root: results_dir(root, RUN_JSON, cell="[1"),
        "cell.json: unreadable",
    ),
}


@pytest.mark.parametrize("case", REPORT_CASES, ids=list(REPORT_CASES))
def test_report_refuses_what_is_not_a_results_directory_in_one_line(tmp_path, case):
    root = workspace(tmp_path)
    make, expected = REPORT_CASES[case]
    done = tfsload(root, "report", str(make(root)))
    assert_one_line(done, expected)


def summary_file(root: Path, content: bytes | str) -> Path:
    path = root / "summary.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


GOOD_SUMMARY = json.dumps({"format": "tfsload-summary/1", "cells": []})
COMPARE_CASES = {
    "missing": (lambda root: [str(root / "nope")] * 2, "no such results directory"),
    "below-a-file": (lambda root: [str(root / "a_file" / "x")] * 2, "no such results"),
    "a-directory-of-nothing": (lambda root: [str(root / "a_dir")] * 2, "no run.json"),
    "not-utf8": (lambda root: [str(summary_file(root, NOT_UTF8))] * 2, "not a summary.json"),
    "deep": (lambda root: [str(summary_file(root, DEEP_JSON))] * 2, "not a summary.json"),
    "a-list": (lambda root: [str(summary_file(root, "[]"))] * 2, "not a summary.json"),
    "cells-not-a-list": (
        lambda root: [str(summary_file(root, '{"format": "tfsload-summary/1", "cells": 3}'))] * 2,
        "cells: must be a list",
    ),
    "cell-without-id": (
        lambda root: (
            [
                str(
                    summary_file(
                        root, '{"format": "tfsload-summary/1", "cells": [{"status": "ok"}]}'
                    )
                )
            ]
            * 2
        ),
        "cells[0].id: must be a string",
    ),
    "tolerance-nan": (
        lambda root: [str(summary_file(root, GOOD_SUMMARY))] * 2 + ["--tolerance", "nan"],
        "--tolerance: must be a number at least 0, got nan",
    ),
    "tolerance-not-a-number": (
        lambda root: [str(summary_file(root, GOOD_SUMMARY))] * 2 + ["--tolerance", "x"],
        "argument --tolerance: invalid float value: 'x'",
    ),
}


@pytest.mark.parametrize("case", COMPARE_CASES, ids=list(COMPARE_CASES))
def test_compare_refuses_bad_summaries_and_flags_in_one_line(tmp_path, case):
    root = workspace(tmp_path)
    make, expected = COMPARE_CASES[case]
    done = tfsload(root, "compare", *make(root))
    assert_one_line(done, expected)


def test_search_out_below_a_regular_file_is_one_line(tmp_path):
    root = workspace(tmp_path)
    exp = experiment(root)
    done = tfsload(root, "slo", str(exp), "--p99-ms", "50", "--out", "a_file/sub")
    assert_one_line(done, "--out", "a_file is not a directory")


LOCUST_CASES = {
    "instances-directory": (["--instances-file", "a_dir"], "--instances-file", "is a directory"),
    "instances-below-a-file": (["--instances-file", "a_file/i.json"], "--instances-file"),
    "instances-not-utf8": (["--instances-file", "not_utf8"], "--instances-file", "not JSON"),
    "instances-deep": (["--instances-file", "deep.json"], "--instances-file", "not JSON"),
    "targets-directory": (["--targets-file", "a_dir"], "--targets-file", "Is a directory"),
    "targets-below-a-file": (["--targets-file", "a_file/t.toml"], "--targets-file"),
    "targets-not-utf8": (["--targets-file", "not_utf8"], "--targets-file", "not UTF-8 text"),
    "targets-deep": (["--targets-file", "deep.toml"], "--targets-file", "nested too deeply"),
    "run-spec-missing": (["--run-spec", "nope.json"], "--run-spec", "no such file"),
    "run-spec-directory": (["--run-spec", "a_dir"], "--run-spec", "is a directory"),
    "run-spec-below-a-file": (["--run-spec", "a_file/s.json"], "--run-spec", "Not a directory"),
    "run-spec-not-utf8": (["--run-spec", "not_utf8"], "--run-spec", "not JSON"),
    "run-spec-deep": (["--run-spec", "deep.json"], "--run-spec", "not JSON"),
    "precise-json-directory": (["--precise-json", "a_dir"], "--precise-json", "is a directory"),
    "precise-json-below-a-file": (["--precise-json", "a_file/p.json"], "a_file is not a dir"),
    "windows-json-below-a-file": (["--windows-json", "a_file/w.json"], "--windows-json"),
    "html-below-a-file": (["--html", "a_file/r.html"], "--html", "a_file is not a directory"),
}


@pytest.mark.parametrize("case", LOCUST_CASES, ids=list(LOCUST_CASES))
def test_locust_options_refuse_bad_files_in_one_line(tmp_path, case):
    """Before any load: nothing listens at the address, and nothing is sent."""
    root = workspace(tmp_path)
    args, *expected = LOCUST_CASES[case]
    if "--instances-file" not in args and "--run-spec" not in args:
        args = [*args, "--instances-file", "instances.json"]
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "RestUser",
         "-H", "http://127.0.0.1:9", "--no-metadata", "-t", "30s", *args],
        cwd=root, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = tfsload_lines(done.stderr)
    for part in expected:
        assert part in line, line
    assert not any(p.name.startswith(".") for p in root.iterdir())  # no half-written result


def test_a_results_folder_is_never_made_below_a_file_even_by_default(tmp_path):
    """The default --out (reports/<name>-<time>) below a regular file named reports."""
    root = workspace(tmp_path)
    exp = experiment(root)
    shutil.copy(root / "a_file", root / "reports")
    done = tfsload(root, "run", str(exp))
    assert_one_line(done, "--out", "reports is not a directory")
