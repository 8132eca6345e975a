"""An installed package, used from outside the checkout as a user would.

``pip install .`` into a fresh virtual environment gives the base install: the Locust users,
the runner and the reports, without TensorFlow. From a directory outside the repository, its
``tfsload`` command answers and ``locust -f "$(tfsload locustfile)"`` loads both users and
measures a real stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "PYTHON"))}
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with ``pip install <wheel of this checkout>``; its bin/."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy: building in the checkout would leave build/ behind
    skip = shutil.ignore_patterns(".git", ".venv", "models", "reports", "build", "*.egg-info")
    shutil.copytree(REPO, source, ignore=skip)
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work, source, cwd=work
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = work.glob("tfsload-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    done = run(bin_dir / "python", "-m", "pip", "install", "-q", wheel, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def test_base_install_has_the_command_and_no_tensorflow(installed, tmp_path):
    version = run(installed / "tfsload", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("tfsload ")
    where = run(installed / "tfsload", "locustfile", cwd=tmp_path)
    locustfile = Path(where.stdout.strip())
    assert locustfile.is_file() and installed.parent in locustfile.parents
    missing = run(installed / "python", "-c", "import tensorflow", cwd=tmp_path)
    assert missing.returncode != 0 and "No module named 'tensorflow'" in missing.stderr


@pytest.mark.parametrize("user", ["RestUser", "GrpcUser"])
def test_installed_locustfile_measures_a_standin_from_outside_the_checkout(
    installed, standin, exported_model, tmp_path, user
):
    locustfile = run(installed / "tfsload", "locustfile", cwd=tmp_path).stdout.strip()
    host = standin.rest_url if user == "RestUser" else f"grpc://{standin.grpc_target}"
    done = run(
        installed / "locust", "-f", locustfile, "--headless", user, "-H", host, "-u", "2",
        "-r", "2", "-t", "60s", "--request-count", "40", "--instances-file",
        exported_model.instances_path, "--precise-json", tmp_path / "precise.json",
        cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    precise = json.loads((tmp_path / "precise.json").read_text())
    assert precise["total"]["count"] == 40 and precise["total"]["failures"] == 0
    assert not list(tmp_path.glob("configs"))  # nothing of the checkout was needed here
