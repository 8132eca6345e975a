"""Start-up failures of ``python -m standin``: one line naming the flag or file, exit status 2.

These fail before TensorFlow is imported, so each run takes a fraction of a second.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import run_cli
from tests.standin_process import free_port


@pytest.fixture()
def model_base(tmp_path):
    """A base path with a version directory, enough to get past the model checks."""
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "model" / "1" / "saved_model.pb").write_bytes(b"")
    return tmp_path / "model"


def fails(*flags: str) -> str:
    """Run the stand-in with ``flags``; assert a one-line failure, exit 2, and return that line."""
    result = run_cli(
        "-m", "standin", "--port=0", f"--rest_api_port={free_port()}", *flags, timeout=60
    )
    assert result.returncode == 2
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


def test_port_in_use(model_base):
    """Ports are tried before TensorFlow is imported, so this fails in a fraction of a second."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("-m", "standin", f"--port={port}", f"--model_base_path={model_base}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"standin: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )


def _regular_file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("not a directory\n")
    return path


def _non_utf8(tmp_path, name: str, text: bytes):
    path = tmp_path / name
    path.write_bytes(text)
    return path


BATCHING_NOT_UTF8 = b"max_batch_size { }\n\xff"
# (id, flags given tmp_path and model_base, fragment of the one line)
INPUT_CASES = [
    (
        "batching file not UTF-8",
        lambda tmp, base: [
            "--enable_batching",
            "--batching_parameters_file=" + str(_non_utf8(tmp, "b.cfg", BATCHING_NOT_UTF8)),
        ],
        "--batching_parameters_file {tmp}/b.cfg: not UTF-8 text (byte 0xff at offset 19)",
    ),
    (
        "monitoring file not UTF-8",
        lambda tmp, base: [
            "--monitoring_config_file=" + str(_non_utf8(tmp, "m.cfg", b"\xfe\xffprometheus"))
        ],
        "--monitoring_config_file {tmp}/m.cfg: not UTF-8 text (byte 0xfe at offset 0)",
    ),
    (
        "batching file is a directory",
        lambda tmp, base: ["--enable_batching", f"--batching_parameters_file={tmp}"],
        "--batching_parameters_file {tmp}: cannot read it (Is a directory)",
    ),
    (
        "monitoring file below a regular file",
        lambda tmp, base: [f"--monitoring_config_file={_regular_file(tmp)}/m.cfg"],
        "--monitoring_config_file {tmp}/plain.txt/m.cfg: cannot read it (Not a directory)",
    ),
    (
        "model base path is a regular file",
        lambda tmp, base: [f"--model_base_path={_regular_file(tmp)}"],
        "--model_base_path {tmp}/plain.txt: cannot list it (Not a directory)",
    ),
    (
        "model base path below a regular file",
        lambda tmp, base: [f"--model_base_path={_regular_file(tmp)}/model"],
        "--model_base_path {tmp}/plain.txt/model: cannot list it (Not a directory)",
    ),
    (
        "model base path not UTF-8",
        lambda tmp, base: [f"--model_base_path={tmp}/\udcff"],
        "--model_base_path {tmp}/\\udcff: no such directory",
    ),
    (
        "bind address not an address",
        lambda tmp, base: ["--bind_address=not an address"],
        "--bind_address 'not an address': not an address to listen on",
    ),
    (
        "bind address not on this machine",
        lambda tmp, base: ["--bind_address=192.0.2.1"],  # TEST-NET-1: never a local address
        "--bind_address 192.0.2.1: no network interface of this machine has that address",
    ),
    ("empty bind address", lambda tmp, base: ["--bind_address="], "--bind_address is empty"),
    ("zero rows limit", lambda tmp, base: ["--max_request_rows=0"], "--max_request_rows: must"),
    (
        "negative bytes limit",
        lambda tmp, base: ["--max_request_bytes=-1"],
        "--max_request_bytes: must be at least 1",
    ),
    (
        "error rate above 1",
        lambda tmp, base: ["--fault_error_rate=1.5"],
        "--fault_error_rate: must be between 0 and 1, got 1.5",
    ),
    (
        "rates adding up above 1",
        lambda tmp, base: ["--fault_error_rate=0.6", "--fault_drop_rate=0.6"],
        "add up to 1.2, more than 1",
    ),
    (
        "unknown error code",
        lambda tmp, base: ["--fault_error_code=404"],
        "--fault_error_code: '404' is not one of 429, 500, 503, 504",
    ),
    (
        "latency without a unit",
        lambda tmp, base: ["--fault_latency=50"],
        "--fault_latency: '50' is not a duration",
    ),
    (
        "latency distribution unknown",
        lambda tmp, base: ["--fault_latency=normal:5ms"],
        "--fault_latency: 'normal:5ms' is not 50ms, exp:MEAN or uniform:LOW-HIGH",
    ),
    (
        "uniform latency upside down",
        lambda tmp, base: ["--fault_latency=uniform:9ms-1ms"],
        "has its high end below its low end",
    ),
    (
        "pause start without a pause",
        lambda tmp, base: ["--fault_pause_after_s=5"],
        "--fault_pause_after_s is set without --fault_pause_s",
    ),
    (
        "negative pause",
        lambda tmp, base: ["--fault_pause_s=-1"],
        "--fault_pause_s: must not be negative",
    ),
]


@pytest.mark.parametrize(
    ("make_flags", "fragment"),
    [case[1:] for case in INPUT_CASES],
    ids=[case[0] for case in INPUT_CASES],
)
def test_every_bad_input_is_one_line_naming_it_and_exit_2(
    model_base, tmp_path, make_flags, fragment
):
    configs = tmp_path / "configs"
    configs.mkdir()
    flags = make_flags(configs, model_base)
    if not any(flag.startswith("--model_base_path=") for flag in flags):
        flags.insert(0, f"--model_base_path={model_base}")
    result = run_cli("-m", "standin", "--port=0", f"--rest_api_port={free_port()}", *flags)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("standin: ")
    assert fragment.format(tmp=configs) in lines[0]
