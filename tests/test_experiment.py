"""Experiment files: valid ones parse into the matrix; every malformed one is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tfsload.core.errors import ConfigError
from tfsload.orchestrate.experiment import load_experiment, parse_duration

VALID = """
name = "tiny"
description = "two targets"
protocols = ["rest", "grpc"]

[model]
name = "model"
base_path = "models/model"

[load]
users = 4
spawn_rate = 4
requests = 100
warmup_requests = 10

[thresholds]
p99_ms = 250
fail_ratio = 0.01
fail_on_saturation = true

[[targets]]
name = "launched"
label = "stand-in, batching"
launch = "standin"
flags = ["--enable_batching", "--batching_parameters_file=batch.cfg"]

[[targets]]
name = "remote"
rest = "http://127.0.0.1:8501"
grpc = "127.0.0.1:8500"
metrics = "http://127.0.0.1:8501/monitoring/prometheus/metrics"
"""


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    """The experiment file, beside the batching file VALID names (a launched target's configs
    are read when the experiment is)."""
    (tmp_path / "batch.cfg").write_text("max_batch_size { value: 8 }\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_experiment_builds_the_matrix(tmp_path):
    exp = load_experiment(write(tmp_path, VALID))
    assert exp.name == "tiny"
    assert [c.id for c in exp.cells] == [
        "launched-rest",
        "launched-grpc",
        "remote-rest",
        "remote-grpc",
    ]
    launched, remote = exp.targets
    assert launched.launch.kind == "standin"
    assert launched.launch.flags == ("--enable_batching", "--batching_parameters_file=batch.cfg")
    assert launched.target.rest == "http://127.0.0.1:0"  # port picked at launch
    assert remote.launch is None and remote.target.metrics.endswith("/metrics")
    assert exp.model.base_path == (tmp_path / "models" / "model").resolve()
    assert exp.load.requests == 100 and exp.load.duration is None
    assert exp.load.time_limit_s == 600  # the default safety cap, 10m
    assert [(t.check, t.limit) for t in exp.checks.thresholds] == [
        ("p99_ms", 250.0),
        ("fail_ratio", 0.01),
    ]
    spec = exp.spec()
    assert (spec.load.users, spec.load.spawn_rate, spec.load.request_count) == (4, 4.0, 100)
    assert spec.load.warmup_requests == 10 and spec.load.run_time_s == 600
    assert spec.workload.instances_file == str(tmp_path / "models" / "model" / "instances.json")


def test_thresholds_mean_what_the_locust_options_mean(tmp_path):
    """[thresholds] and --check-* are one setting each: the same checks by construction."""
    from types import SimpleNamespace

    from tfsload.core.run_spec import option_fields
    from tfsload.generator.options import dest, spec_from_options

    exp = load_experiment(write(tmp_path, VALID))
    values = {dest(f.metadata["flag"]): f.default for _, f in option_fields()}
    values |= {"check_p99_ms": "250", "check_fail_ratio": "0.01", "fail_on_saturation": True}
    assert spec_from_options(SimpleNamespace(run_spec="", **values)).checks == exp.checks
    off = load_experiment(write(tmp_path, VALID.replace("fail_on_saturation = true", "")))
    assert not off.checks.fail_on_saturation


def test_targets_file_is_relative_to_the_experiment(tmp_path):
    (tmp_path / "conf").mkdir()
    write(
        tmp_path / "conf",
        '[[targets]]\nname = "a"\nrest = "http://127.0.0.1:9"\ngrpc = "127.0.0.1:9"\n',
        "targets.toml",
    )
    exp_dir = tmp_path / "conf" / "experiments"
    exp_dir.mkdir()
    path = write(exp_dir, 'targets_file = "../targets.toml"\n[load]\nusers = 1\nduration = "5s"\n')
    exp = load_experiment(path)
    assert [c.id for c in exp.cells] == ["a-rest", "a-grpc"]
    assert exp.name == "exp" and exp.load.time_limit_s == 5


def test_shipped_experiments_are_valid():
    seed = load_experiment(REPO / "configs" / "experiments" / "seed.toml")
    assert len(seed.cells) == 6 and seed.load.requests == 10_000 and seed.load.users == 500
    demo = load_experiment(REPO / "configs" / "experiments" / "demo.toml")
    assert len(demo.cells) == 6 and all(t.launch for t in demo.targets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1\n" + VALID, "exp.toml: bogus: unknown key"),
        (VALID.replace("users = 4", "users = 4\nthreads = 3"), "load.threads: unknown key"),
        (VALID.replace("users = 4", 'users = "four"'), "load.users: must be an integer"),
        (VALID.replace("users = 4", "users = true"), "load.users: must be an integer"),
        (VALID.replace("users = 4", "users = 0"), "load.users: must be at least 1"),
        (VALID.replace("requests = 100", 'duration = "30s"\nrequests = 1'), "load.requests:"),
        (VALID.replace("requests = 100", 'duration = "30 sec"'), "load.duration:"),
        (VALID.replace("p99_ms = 250", 'p99_ms = "fast"'), "thresholds.p99_ms: must be a number"),
        (VALID.replace("fail_ratio = 0.01", "fail_ratio = 2"), "thresholds.fail_ratio:"),
        (VALID.replace('"rest", "grpc"]', '"rest", "http"]'), "protocols: 'http' is not one"),
        (VALID.replace('launch = "standin"', 'launch = "kubernetes"'), "targets[0].launch:"),
        (VALID.replace("--enable_batching", "--port=1"), "targets[0].flags: --port is set"),
        (
            VALID.replace('label = "stand-in', 'colour = "x"\nlabel = "stand-in'),
            "targets[0].colour",
        ),
        (VALID.replace('rest = "http://127.0.0.1:8501"', 'rest = "8501"'), "targets[1].rest:"),
        (VALID.replace('base_path = "models/model"', ""), "model.base_path: required"),
        (VALID.split("[[targets]]")[0], "targets: needs at least one"),
        ('targets_file = "nope.toml"\n' + VALID, "targets_file: give either"),
        ('targets_file = "nope.toml"\n' + VALID.split("[[targets]]")[0], "exp.toml: targets_file:"),
        (VALID.replace("[load]", "[load"), "exp.toml: invalid TOML"),
        ("[model]\nname = 'model'\n", "load: required"),
    ],
)
def test_malformed_experiment_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert str(tmp_path) in message


def test_cli_rejects_a_bad_file_before_any_load(tmp_path):
    path = write(tmp_path, VALID.replace("users = 4", 'users = "many"'))
    out = tmp_path / "out"
    result = run_cli("-m", "tfsload", "run", str(path), "--out", str(out), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {path}: load.users: must be an integer"]
    assert not out.exists()  # nothing was started, nothing written


def test_parse_duration():
    assert parse_duration("90") == 90
    assert parse_duration("1m30s") == 90
    assert parse_duration("2h") == 7200
    with pytest.raises(ValueError):
        parse_duration("")
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_transport_settings_for_all_targets_and_per_target(tmp_path):
    """[transport] applies to every cell; a target's own transport table overrides it, with
    file paths relative to the experiment file, as every path in it."""
    from tfsload.orchestrate.runner import cell_spec

    text = VALID.replace(
        '[[targets]]\nname = "remote"',
        '[transport]\nrest_timeout_s = 5\nheaders = ["X-Team: ${TEAM}"]\n\n'
        '[[targets]]\nname = "remote"\n'
        'transport = { grpc_ca_file = "ca.pem", grpc_server_name = "tfs.local", '
        'headers = ["X-Api-Key: ${API_KEY}"] }',
    )
    exp = load_experiment(write(tmp_path, text))
    specs = {c.id: cell_spec(exp, c, c.target.target, tmp_path) for c in exp.cells}
    remote, launched = specs["remote-grpc"].transport, specs["launched-grpc"].transport
    assert (
        remote.grpc_ca_file == str(tmp_path / "ca.pem") and remote.grpc_server_name == "tfs.local"
    )
    assert remote.headers == ("X-Api-Key: ${API_KEY}",) and remote.rest_timeout_s == 5
    assert launched.headers == ("X-Team: ${TEAM}",) and not launched.grpc_ca_file
    bad = text.replace("rest_timeout_s = 5", "rest_timeout_s = -1")
    with pytest.raises(ConfigError, match=r"transport.rest_timeout_s: must be at least"):
        load_experiment(write(tmp_path, bad))
    bad = text.replace('grpc_server_name = "tfs.local"', "grpc_server = 1")
    with pytest.raises(ConfigError, match=r"targets\[1\].transport.grpc_server: unknown key"):
        load_experiment(write(tmp_path, bad))
