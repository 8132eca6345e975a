"""The Docker engine and the project's images, for the tests that build and run containers.

Those tests run under ``make test`` wherever an engine answers (CI starts one with
.ci/docker-engine) and skip, with the reason, only where ``docker info`` fails. The images are
built once per test session through Compose, from the registry base images or, where
.ci/docker-engine wrote its images.env, the local ones it names.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tfsload import __version__

IMAGES_ENV = Path(os.environ.get("TFSLOAD_CI_STATE_DIR", "/var/lib/tfsload-ci"), "images.env")
COMPOSE_FILES = ("-f", str(REPO / "compose.yaml"), "-f", str(REPO / "compose.standin.yaml"))
STANDIN_IMAGE = f"tfsload-standin:{__version__}"
BUILD_TIMEOUT_S = 1500  # the first build installs TensorFlow


@functools.cache
def engine_problem() -> str | None:
    """Why no engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on this machine"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`docker info` failed: {last}"
    return None


def require_engine() -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(f"{problem}: the images cannot be built or run here")


def compose_env(**extra: str) -> dict[str, str]:
    """The environment for Compose: the base images of .ci/docker-engine's images.env where
    it exists (variables already set win), then ``extra``."""
    env = dict(os.environ)
    if IMAGES_ENV.is_file():
        for line in IMAGES_ENV.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                env.setdefault(name, value)
    return env | extra


@functools.cache
def built_images() -> float:
    """Build every image of compose.yaml and compose.standin.yaml (once per session); returns
    the seconds it took. A failed build fails the test with the build's last lines."""
    require_engine()
    started = time.monotonic()
    result = subprocess.run(
        ["docker", "compose", *COMPOSE_FILES, "build"],
        cwd=REPO,
        env=compose_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if result.returncode:
        pytest.fail(f"docker compose build failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return time.monotonic() - started
