"""The transport section of the run spec: TLS settings, extra headers and where their values may
go (tfsload.core.headers). In-process; nothing here imports gevent or Locust."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tfsload.core import headers, run_spec
from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import RunSpec, SpecError, Transport
from tfsload.core.targets import normalize_grpc
from tfsload.generator.options import spec_from_options

SECRET = "s3cret-Value"


def spec_with(**transport) -> RunSpec:
    return run_spec.from_values({"transport": transport})


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (f"Bearer {SECRET}", "entry 1 is not 'Name: value'"),
        (f": {SECRET}", "entry 1 is not 'Name: value'"),
        (f"X Key: {SECRET}", "entry 1: a name has only letters"),
        (f"Content-Length: {SECRET}", "Content-Length: tfsload sets or cannot send this header"),
        (f"grpc-timeout: {SECRET}", "grpc-timeout: tfsload sets or cannot send this header"),
        (f"trace-bin: {SECRET}", "trace-bin: tfsload sets or cannot send this header"),
        (f"X-Key: {SECRET}é", "X-Key: a value has only printable ASCII characters"),
        (f"X-Key: {SECRET}\r\nX-Other: 1", "X-Key: a value has only printable ASCII characters"),
        ("X-Key: <redacted>", "X-Key: its value was redacted when this spec was written"),
    ],
)
def test_bad_headers_are_refused_without_quoting_their_value(entry, problem):
    with pytest.raises(SpecError) as caught:
        spec_with(headers=[entry])
    assert caught.value.key == "transport.headers"
    assert caught.value.problem.startswith(problem)
    assert SECRET not in str(caught.value)


def test_a_spec_written_to_a_file_keeps_header_names_and_references_only(tmp_path):
    spec = spec_with(headers=[f"X-Api-Key: {SECRET}", "Authorization: ${TFS_TOKEN}"])
    assert SECRET not in repr(spec)
    path = tmp_path / "run-spec.json"
    spec.write(path)
    text = path.read_text()
    assert SECRET not in text
    written = json.loads(text)["transport"]["headers"]
    assert written == ["X-Api-Key: <redacted>", "Authorization: ${TFS_TOKEN}"]
    with pytest.raises(ConfigError) as caught:
        run_spec.read(path)  # a redacted value cannot be sent: the file says how to give it
    assert "X-Api-Key: its value was redacted" in str(caught.value)
    assert "${VAR}" in str(caught.value)
    # Handed to this run's own workers, the values go along.
    assert run_spec.from_dict(spec.to_dict(secrets=True)) == spec


def test_references_resolve_from_the_environment(monkeypatch):
    entries = ("Authorization: ${TFS_TOKEN}", "X-Team: load")
    monkeypatch.setenv("TFS_TOKEN", "Bearer abc")
    assert headers.resolve(entries) == [("Authorization", "Bearer abc"), ("X-Team", "load")]
    monkeypatch.delenv("TFS_TOKEN")
    with pytest.raises(ValueError, match="Authorization: environment variable TFS_TOKEN is not"):
        headers.resolve(entries)


def test_header_options_repeat_and_tls_options_are_checked():
    options = SimpleNamespace(
        run_spec="", header=["X-A: 1", "X-B: 2"], grpc_tls="", grpc_client_cert="c.pem"
    )
    with pytest.raises(ConfigError, match=r"^--grpc-client-key: give a client certificate and"):
        spec_from_options(options)
    options.grpc_client_cert = ""
    spec = spec_from_options(options)
    assert spec.transport.headers == ("X-A: 1", "X-B: 2")
    assert not spec.transport.grpc_secure
    options.header = "X-Only: 1"  # one value from an environment variable
    assert spec_from_options(options).transport.headers == ("X-Only: 1",)
    options.header = ["no colon here"]
    with pytest.raises(ConfigError, match=r"^--header: entry 1 is not 'Name: value'$"):
        spec_from_options(options)


def test_any_grpc_tls_setting_turns_tls_on_and_insecure_excludes_a_ca_file():
    assert not Transport().grpc_secure
    for setting in ("grpc_tls", "grpc_ca_file", "grpc_server_name"):
        value = True if setting == "grpc_tls" else "x"
        assert spec_with(**{setting: value}).transport.grpc_secure
    with pytest.raises(SpecError, match="drop --rest-ca-file"):
        spec_with(insecure=True, rest_ca_file="ca.pem")


def test_grpcs_addresses_keep_their_scheme():
    assert normalize_grpc("grpcs://tfs.example:443") == "grpcs://tfs.example:443"
    assert normalize_grpc("grpc://127.0.0.1:8500") == "127.0.0.1:8500"
    with pytest.raises(ValueError, match="grpcs://host:port"):
        normalize_grpc("grpcs://no-port")
