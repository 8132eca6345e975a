"""tfsload's Locust options: declared from the run spec's fields, read back into a RunSpec.

Every option is a field of :class:`~tfsload.core.run_spec.RunSpec` (its flag and help live
there), added to Locust's parser with ``LOCUST_<OPTION>`` environment variables and, where it
makes sense, the web UI's start form. :func:`spec_from_options` turns parsed options (typed
from the command line, text from the web form) into a validated RunSpec; with ``--run-spec
FILE`` the file is the whole description and the other tfsload options are not read.

Locust prints ``--help`` before it loads a locustfile, so these options are not in its help
output; the README lists them and the web UI's start form shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tfsload.core import run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import RunSpec, SpecError

DEFAULT_TARGETS_FILE = "configs/targets.toml"
TARGETS_FILE_ENV = "LOCUST_TARGETS_FILE"


def env_var(flag: str) -> str:
    return "LOCUST_" + flag.removeprefix("--").replace("-", "_").upper()


def dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def add_options(parser: Any) -> None:
    """Add tfsload's options to a Locust argument parser (``init_command_line_parser``)."""
    # This project binds to loopback unless asked otherwise; Locust's own defaults are all
    # interfaces. LOCUST_WEB_HOST / --web-host and --master-bind-host still override these.
    parser.set_defaults(web_host="127.0.0.1", master_bind_host="127.0.0.1")
    for _section, spec_field in run_spec.option_fields():
        meta = spec_field.metadata
        flag = meta["flag"]
        kwargs: dict[str, Any] = {"help": meta["help"].replace("%", "%%")}
        if isinstance(spec_field.default, bool):
            kwargs.update(action="store_true", default=spec_field.default)
        elif isinstance(spec_field.default, tuple):
            kwargs.update(action="append", default=None)  # repeatable; None: not given
        else:
            kwargs.update(default=spec_field.default)
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        parser.add_argument(flag, env_var=env_var(flag), include_in_web_ui=meta["ui"], **kwargs)
    parser.add_argument(
        "--run-spec",
        env_var=env_var("--run-spec"),
        include_in_web_ui=False,
        default="",
        help="a tfsload-run-spec/1 JSON file: the whole run (the runner writes one per cell)",
    )
    parser.add_argument(
        "--targets-file",
        env_var=TARGETS_FILE_ENV,
        include_in_web_ui=False,
        default=DEFAULT_TARGETS_FILE,
        help="targets whose per-target user classes are offered (read when the locustfile loads)",
    )


def spec_from_options(options: Any) -> RunSpec:
    """The run's spec: ``--run-spec`` when given, else tfsload's options; ConfigError names the
    flag (or the file and setting) of the first bad value."""
    spec_file = str(getattr(options, "run_spec", "") or "").strip()
    if spec_file:
        return run_spec.read(Path(spec_file))
    sections: dict[str, dict] = {}
    flags: dict[str, str] = {}
    for section, spec_field in run_spec.option_fields():
        flag = spec_field.metadata["flag"]
        flags[f"{section}.{spec_field.name}"] = flag
        value = getattr(options, dest(flag), spec_field.default)
        sections.setdefault(section, {})[spec_field.name] = value
    try:
        return run_spec.from_values(sections, typed=False)
    except SpecError as exc:
        raise ConfigError(f"{flags.get(exc.key, exc.key)}: {exc.problem}") from None


def early_targets_file(argv: list[str] | None = None) -> tuple[Path, bool]:
    """The targets file named by ``--targets-file``, before Locust parses its options.

    Locust imports the locustfile (which declares one user class per target) before it parses
    the command line, so the file is looked up here: ``--targets-file`` on the command line,
    then ``LOCUST_TARGETS_FILE``, then ``configs/targets.toml`` in the current directory when it
    exists. Returns the path and whether it was asked for explicitly.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--targets-file", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    chosen = known.targets_file or os.environ.get(TARGETS_FILE_ENV)
    if chosen:
        return Path(os.path.expanduser(chosen)), True
    return Path(DEFAULT_TARGETS_FILE), False
