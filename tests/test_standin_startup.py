"""Start-up failures of ``python -m standin``: one line naming the flag or file, non-zero exit.

These fail before TensorFlow is imported, so each run takes a fraction of a second.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import run_cli


@pytest.fixture()
def model_base(tmp_path):
    """A base path with a version directory, enough to get past the model checks."""
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "model" / "1" / "saved_model.pb").write_bytes(b"")
    return tmp_path / "model"


def fails(*flags: str) -> str:
    """Run the stand-in with ``flags``; assert a one-line failure and return that line."""
    result = run_cli("-m", "standin", "--port=0", "--rest_api_port=1", *flags, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_unknown_flag(model_base):
    line = fails(f"--model_base_path={model_base}", "--model_config_file=x.cfg")
    assert "--model_config_file" in line


def test_bad_boolean(model_base):
    line = fails(f"--model_base_path={model_base}", "--enable_batching=maybe")
    assert "--enable_batching" in line and "maybe" in line


def test_bad_number(model_base):
    line = fails(f"--model_base_path={model_base}", "--grpc_max_threads=many")
    assert "--grpc_max_threads" in line


def test_batching_file_without_enable_batching(model_base, tmp_path):
    config = write(tmp_path / "b.cfg", "max_batch_size { value: 8 }\n")
    line = fails(f"--model_base_path={model_base}", f"--batching_parameters_file={config}")
    assert "--batching_parameters_file" in line and "--enable_batching" in line
    line = fails(
        f"--model_base_path={model_base}",
        "--enable_batching=false",
        f"--batching_parameters_file={config}",
    )
    assert "--enable_batching" in line


def test_malformed_batching_file_names_file_and_line(model_base, tmp_path):
    config = write(tmp_path / "b.cfg", "max_batch_size { value: 8 }\nbatch_timeout_micros: 5\n")
    line = fails(
        f"--model_base_path={model_base}",
        "--enable_batching",
        f"--batching_parameters_file={config}",
    )
    assert line.startswith(f"standin: Invalid protobuf file: '{config}'")
    assert "line 2" in line


def test_unknown_field_in_batching_file(model_base, tmp_path):
    config = write(tmp_path / "b.cfg", "max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n")
    line = fails(
        f"--model_base_path={model_base}",
        "--enable_batching",
        f"--batching_parameters_file={config}",
    )
    assert f"'{config}'" in line and "line 2" in line and "max_batch_sise" in line


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "max_batch_size { value: 64 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 32\n",
            "last entry must equal max_batch_size (64), got 32",
        ),
        (
            "max_batch_size { value: 32 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 8\n"
            "allowed_batch_sizes: 32\n",
            "entries must be positive and increasing",
        ),
        ("max_batch_size { value: 0 }\n", "max_batch_size must be positive"),
        (
            "max_batch_size { value: 8 }\nenable_large_batch_splitting { value: true }\n"
            "max_execution_batch_size { value: 16 }\n",
            "max_execution_batch_size must be between 1 and max_batch_size (8)",
        ),
    ],
    ids=["last allowed size", "not increasing", "zero batch size", "execution size"],
)
def test_bad_batching_values_name_file_line_and_field(model_base, tmp_path, text, problem):
    config = write(tmp_path / "b.cfg", text)
    line = fails(
        f"--model_base_path={model_base}",
        "--enable_batching",
        f"--batching_parameters_file={config}",
    )
    assert line.startswith(f"standin: {config}:")
    assert problem in line


def test_malformed_monitoring_file(model_base, tmp_path):
    config = write(tmp_path / "m.cfg", "prometheus_config { enable: yes }\n")
    line = fails(f"--model_base_path={model_base}", f"--monitoring_config_file={config}")
    assert f"Invalid protobuf file: '{config}'" in line and "line 1" in line


def test_missing_model_base_path(tmp_path):
    line = fails(f"--model_base_path={tmp_path / 'nowhere'}")
    assert line == f"standin: --model_base_path {tmp_path / 'nowhere'}: no such directory"
    assert "--model_base_path" in fails()


def test_base_path_without_versions(tmp_path):
    (tmp_path / "model" / "latest").mkdir(parents=True)
    line = fails(f"--model_base_path={tmp_path / 'model'}")
    assert "--model_base_path" in line and "no version directory" in line


def test_port_in_use(exported_model):
    """The one start-up check made after TensorFlow is imported: binding the ports."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "-m",
            "standin",
            f"--port={port}",
            f"--model_base_path={exported_model.version_dir.parent}",
            timeout=120,
        )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"standin: --port {port}: cannot listen on 127.0.0.1:{port} (in use?)"
    )
