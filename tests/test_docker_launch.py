"""``launch = "docker"`` targets: experiment files run TF Serving-contract containers themselves.

On the local engine the image is tfsload's stand-in image (the same entrypoint contract as
tensorflow/serving). ``tfsload run`` is run as users run it; every test checks that no container
of its experiment is left, whatever happened. What needs no engine (the settings' validation,
the GPU check) runs everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests

from tests.conftest import REPO
from tests.docker_engine import STANDIN_IMAGE, built_images, require_engine
from tfsload.core.errors import ConfigError
from tfsload.orchestrate.docker_launch import missing_gpus
from tfsload.orchestrate.experiment import load_experiment
from tfsload.orchestrate.restart import DockerTarget, restartable

CONFIGS = REPO / "configs"
BATCHING_METRIC = ":tensorflow:serving:batching_session"
# The first test builds the images: from nothing that takes minutes (TensorFlow).
pytestmark = pytest.mark.timeout(1800)


def experiment_file(tmp_path: Path, model_dir: Path, targets: str, **load: object) -> Path:
    """An experiment with a unique name (its containers are labelled with it)."""
    settings = {"users": 2, "spawn_rate": 2, "requests": 40, "max_duration": "2m"} | load
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    path = tmp_path / "exp.toml"
    path.write_text(
        f'name = "docker{uuid.uuid4().hex[:8]}"\n'
        f'[model]\nbase_path = "{model_dir}"\ncheck_answers = "probabilities"\n'
        f"[load]\n{lines}\n{targets}"
    )
    return path


def docker_target(name: str, *flags: str, image: str = STANDIN_IMAGE, extra: str = "") -> str:
    return (
        f'[[targets]]\nname = "{name}"\nlaunch = "docker"\nimage = "{image}"\n'
        f'mounts = {{ "/configs" = "{CONFIGS}" }}\nflags = {json.dumps(list(flags))}\n{extra}'
    )


MONITORING = "--monitoring_config_file=/configs/monitoring.cfg"


def containers_of(path: Path) -> list:
    name = load_experiment(path).name
    client = docker.from_env()
    return client.containers.list(all=True, filters={"label": f"tfsload.experiment={name}"})


@pytest.fixture
def engine(request):
    """The engine and the stand-in image; afterwards no container launched by the test's
    experiments may remain (they are removed, and the test fails)."""
    require_engine()
    built_images()
    made: list[Path] = []
    yield made
    left = [c for path in made for c in containers_of(path)]
    for container in left:
        container.remove(force=True)
    assert not left, [c.name for c in left]


def tfsload(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsload", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# ---- with the engine ---------------------------------------------------------------------------


def test_a_docker_experiment_runs_its_containers_and_records_them(engine, tmp_path, exported_model):
    model_dir = exported_model.version_dir.parent
    targets = docker_target("plain", MONITORING) + docker_target(
        "batching",
        MONITORING,
        "--enable_batching",
        "--batching_parameters_file=/configs/batch-config.cfg",
    )
    path = experiment_file(tmp_path, model_dir, targets)
    engine.append(path)
    out = tmp_path / "out"
    result = tfsload("run", str(path), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    image_id = docker.from_env().images.get(STANDIN_IMAGE).id
    for name, batching in (("plain", False), ("batching", True)):
        record = run["targets"][name]
        assert record["launch"] == "docker"
        assert record["server"]["kind"] == "standin" and record["server"]["state"] == "AVAILABLE"
        container = record["container"]
        assert (container["image"], container["image_id"]) == (STANDIN_IMAGE, image_id)
        assert container["mounts"] == {"/configs": str(CONFIGS)}
        assert container["environment"] == ["MODEL_BASE_PATH", "MODEL_NAME"]
        # The full command as the container ran it: the image's entrypoint, then the flags.
        assert record["command"][0] == "/usr/bin/tf_serving_entrypoint.sh"
        assert record["command"][1:] == record["flags"]
        assert record["exit_code"] == 0  # stopped with SIGTERM, gracefully
        for address in (record["rest"], record["grpc"]):
            assert address.removeprefix("http://").startswith("127.0.0.1:")
        log = (out / "servers" / f"{name}.log").read_text()
        assert "tfsload stand-in (not TensorFlow Serving)" in log
        assert ("batching off" in log) != batching
        for protocol in ("rest", "grpc"):
            cell = out / "cells" / f"{name}-{protocol}"
            assert json.loads((cell / "cell.json").read_text())["status"] == "ok"
            precise = json.loads((cell / "precise.json").read_text())
            assert (precise["total"]["count"], precise["total"]["failures"]) == (40, 0)
            assert (cell / "server.log").exists()  # the container's log during the cell
            metrics = (cell / "metrics-after.prom").read_text()
            assert (BATCHING_METRIC in metrics) == batching
    assert not containers_of(path)


def test_a_container_that_fails_to_start_fails_its_cells_with_its_last_lines(
    engine, tmp_path, exported_model
):
    path = experiment_file(
        tmp_path, exported_model.version_dir.parent, docker_target("broken", "--no_such_flag=1")
    )
    engine.append(path)
    out = tmp_path / "out"
    result = tfsload("run", str(path), "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    for protocol in ("rest", "grpc"):
        cell = json.loads((out / "cells" / f"broken-{protocol}" / "cell.json").read_text())
        assert cell["status"] == "failed"
        assert cell["reason"].startswith("launch failed: container exited with code 2")
        assert "--no_such_flag" in cell["reason"]  # the stand-in's own line, from its log
    assert "--no_such_flag" in (out / "servers" / "broken.log").read_text()
    assert not containers_of(path)


def test_ctrl_c_removes_the_running_container(engine, tmp_path, exported_model):
    path = experiment_file(
        tmp_path,
        exported_model.version_dir.parent,
        docker_target("slow", MONITORING),
        requests=1_000_000,
        max_duration="5m",
    )
    engine.append(path)
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "tfsload", "run", str(path), "--out", str(out)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / "cells" / "slow-rest" / "locust.log").exists():
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert len(containers_of(path)) == 1
        time.sleep(3)  # under load
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, output[-3000:]
    assert json.loads((out / "run.json").read_text())["status"] == "partial"
    assert not containers_of(path)


def test_the_tuner_restarts_a_container_with_the_batching_file_it_wrote(
    engine, tmp_path, exported_model
):
    """The Restartable contract: the tuner's flags replace the target's batching flags, and its
    batching file (on this machine) is mounted into the container."""
    path = experiment_file(
        tmp_path,
        exported_model.version_dir.parent,
        docker_target("tuned", MONITORING, "--enable_batching=false"),
    )
    engine.append(path)
    (server,) = restartable(load_experiment(path))
    assert isinstance(server, DockerTarget) and server.cores == os.cpu_count()
    config = tmp_path / "batching" / "b8.cfg"
    config.parent.mkdir()
    config.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\n")
    flags = ["--enable_batching", f"--batching_parameters_file={config}"]
    running = server.start(flags, tmp_path / "tuned.log", lambda: False)
    try:
        assert running.command[1:] == [
            MONITORING,
            "--enable_batching",
            "--batching_parameters_file=/tfsload/files/0-b8.cfg",
        ]
        metrics = requests.get(running.target.metrics, timeout=10).text
        assert BATCHING_METRIC in metrics
        assert running.poll() is None and running.pid
    finally:
        code = server.stop(running)
    assert code == 0 and running.poll() == -1  # stopped, and gone
    assert (
        "batching max_batch_size=8 batch_timeout_micros=1000"
        in (tmp_path / "tuned.log").read_text()
    )


# ---- without an engine -------------------------------------------------------------------------


def test_a_machine_without_the_gpu_asked_for_is_told_in_one_line_before_anything(
    tmp_path, exported_model
):
    path = experiment_file(
        tmp_path,
        exported_model.version_dir.parent,
        docker_target("gpu", MONITORING, extra='gpus = ["0", 4096]\n'),
    )
    result = tfsload("run", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "targets[0] (gpu) asks for GPU 0, 4096" in line
    assert "no NVIDIA GPU" in line and "nvidia" in line
    assert not (tmp_path / "out").exists()


def test_gpus_are_checked_against_the_nvidia_devices(tmp_path):
    (tmp_path / "nvidia0").touch()
    assert missing_gpus(["0", "1", "GPU-5f2c"], tmp_path) == ["1"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('launch = "docker"\nflags = []', 'targets[0].image: required with launch = "docker"'),
        ('launch = "standin"\nimage = "x:1"', 'targets[0].image: only for launch = "docker"'),
        ('image = "x:1"', "targets[0].launch: must be one of standin, docker"),
        (
            'launch = "docker"\nimage = "x:1"\ngpus = ["0", "0"]',
            "targets[0].gpus: lists a device twice",
        ),
        (
            'launch = "docker"\nimage = "x:1"\nmounts = { "configs" = "." }',
            "targets[0].mounts: 'configs': a container path like /configs",
        ),
        (
            'launch = "docker"\nimage = "x:1"\nmounts = { "/models/x" = "." }',
            "targets[0].mounts: '/models/x': /models is the model's",
        ),
        (
            'launch = "docker"\nimage = "x:1"\nmounts = { "/c" = "nowhere" }',
            "targets[0].mounts.'/c':",
        ),
        (
            'launch = "docker"\nimage = "x:1"\nenvironment = { MODEL_NAME = "m" }',
            "targets[0].environment.MODEL_NAME: set by the runner from [model]",
        ),
        (
            'launch = "docker"\nimage = "x:1"\nflags = ["--monitoring_config_file=/etc/m.cfg"]',
            "--monitoring_config_file=/etc/m.cfg: not under any of the target's mounts",
        ),
        (
            f'launch = "docker"\nimage = "x:1"\nmounts = {{ "/c" = "{REPO}" }}\n'
            'flags = ["--batching_parameters_file=/c/README.md"]',
            "targets[0].flags: ",
        ),
        ('launch = "docker"\nimage = "x:1"\nflags = ["--port=1"]', "--port is set by the runner"),
    ],
)
def test_bad_container_settings_are_one_line_naming_the_key(tmp_path, table, message):
    (tmp_path / "model").mkdir()
    path = tmp_path / "exp.toml"
    path.write_text(
        f'[model]\nbase_path = "model"\n[load]\nusers = 1\nrequests = 1\n'
        f'[[targets]]\nname = "t"\n{table}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_seed_docker_experiment_is_the_original_on_tf_serving_containers():
    experiment = load_experiment(CONFIGS / "experiments" / "seed-docker.toml")
    seed = load_experiment(CONFIGS / "experiments" / "seed.toml")
    assert (experiment.load, experiment.checks) == (seed.load, seed.checks)
    assert [t.name for t in experiment.targets] == ["tfs-cpu", "tfs-gpu-batching", "tfs-gpu"]
    images = [t.launch.container.image for t in experiment.targets]
    assert images == ["tensorflow/serving:2.20.0", *["tensorflow/serving:2.20.0-gpu"] * 2]
    assert [t.launch.container.gpus for t in experiment.targets] == [(), ("0",), ("0",)]
    assert experiment.model == seed.model.__class__(
        seed.model.name, REPO / "models" / "model", None, seed.model.workload
    )
