"""RestUser's wire (tfsload.generator.rest_transport) against servers that write answers byte
for byte: every way HTTP/1.1 ends an answer, answers cut short or trickled, time limits, kept
connections the server dropped, TLS verified and refused, extra headers.

In-process with plain blocking sockets (the same code runs on gevent's inside Locust; the
Locust runs are in test_transport_runs.py). Nothing here imports gevent or Locust.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.raw_servers import (
    PREDICTIONS,
    answer,
    chunked,
    http_server,
    make_certificates,
    read_request,
    replying,
)
from tfsload.core.errors import ConfigError
from tfsload.core.processes import free_port
from tfsload.core.run_spec import Transport
from tfsload.generator.rest_transport import BrokenAnswer, RestConnection, origin

BODY = b'{"instances": [[1, 2]]}'
OK = b"HTTP/1.1 200 OK\r\n"


def connection(url: str, **settings) -> RestConnection:
    transport = Transport(**{"rest_timeout_s": 2.0, "rest_connect_timeout_s": 2.0, **settings})
    where = origin(url, transport)
    return RestConnection(where, where.request("/v1/models/m:predict", BODY))


def test_a_kept_connection_carries_every_request_and_the_request_is_exact():
    with http_server(replying(lambda _request: answer())) as server:
        http = connection(server.url, headers=("X-Api-Key: k1", "X-Team: load"))
        for _ in range(3):
            assert http.exchange() == (200, PREDICTIONS)
        http.close()
    assert server.connections == 1
    request = server.requests[0]
    assert request.line == "POST /v1/models/m:predict HTTP/1.1"
    assert request.body == BODY
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(BODY))
    assert (request.headers["x-api-key"], request.headers["x-team"]) == ("k1", "load")


@pytest.mark.parametrize(
    "reply",
    [
        chunked(),  # small chunks, an extension, a trailer
        chunked(sizes=(1,)),
        answer(extra="Connection: keep-alive\r\nX-Other:  spaced \r\n"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + answer(),  # an interim answer first
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + chunked(),
    ],
    ids=["chunked", "one-byte-chunks", "extra-headers", "100-continue", "103-then-chunked"],
)
def test_answers_end_where_http_says(reply):
    with http_server(replying(lambda _request: reply)) as server:
        http = connection(server.url)
        assert http.exchange() == (200, PREDICTIONS)
        assert http.exchange() == (200, PREDICTIONS)
        http.close()
    assert server.connections == 1


def test_connection_close_and_http_1_0_answers_end_with_the_connection():
    replies = iter(
        [
            answer(extra="Connection: close\r\n"),
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + PREDICTIONS,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PREDICTIONS,  # no length: to EOF
        ]
    )

    def handle(conn, server):
        request = read_request(conn, bytearray())
        server.requests.append(request)
        conn.sendall(next(replies))

    with http_server(handle) as server:
        http = connection(server.url)
        for _ in range(3):
            assert http.exchange() == (200, PREDICTIONS)
    assert server.connections == 3


def test_answers_written_a_byte_at_a_time_are_read_whole():
    replies = iter([answer(), chunked()])

    def handle(conn, server):
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            server.requests.append(request)
            for byte in next(replies):
                conn.sendall(bytes([byte]))
                time.sleep(0.0005)

    with http_server(handle) as server:
        http = connection(server.url)
        assert http.exchange() == (200, PREDICTIONS)
        assert http.exchange() == (200, PREDICTIONS)
    assert server.connections == 1


def test_a_kept_connection_closed_by_the_server_while_idle_is_reopened_once():
    def handle(conn, server):  # answers one request per connection, then hangs up silently
        request = read_request(conn, bytearray())
        server.requests.append(request)
        conn.sendall(answer())

    with http_server(handle) as server:
        http = connection(server.url)
        assert http.exchange() == (200, PREDICTIONS)
        time.sleep(0.1)  # the server's close arrives while the connection is idle
        assert http.exchange() == (200, PREDICTIONS)
    assert server.connections == 2 and len(server.requests) == 2


def test_no_content_and_error_statuses_keep_their_bodies():
    replies = iter([b"HTTP/1.1 204 No Content\r\n\r\n", answer(b'{"error": "x"}', "404 NF")])
    with http_server(replying(lambda _request: next(replies))) as server:
        http = connection(server.url)
        assert http.exchange() == (204, b"")
        assert http.exchange() == (404, b'{"error": "x"}')


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (None, "connection closed before the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "connection closed in the headers"),
        (answer()[:-5], "connection closed in the body"),
        (chunked(sizes=(100,))[:-30], "connection closed in the chunk"),
        (chunked()[:-20], "connection closed in the chunk size"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nab", "bad Content-Length"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabcd", "chunk not followed by CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "the server switched protocols"),
        (answer(b"x" * 200), "answer larger than --max-message-bytes"),
        (chunked(b"x" * 200), "answer larger than --max-message-bytes"),
    ],
    ids=[
        "closed", "closed-in-headers", "cut-body", "cut-chunk", "cut-chunk-size", "not-http",
        "bad-length", "two-lengths", "bad-chunk-size", "no-crlf-after-chunk", "switched",
        "too-large", "too-large-chunked",
    ],
)  # fmt: skip
def test_broken_answers_fail_with_what_broke(reply, problem):
    def handle(conn, server):
        server.requests.append(read_request(conn, bytearray()))
        if reply is not None:
            conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.2)

    with http_server(handle) as server:
        http = connection(server.url, max_message_bytes=100)
        with pytest.raises(BrokenAnswer) as caught:
            http.exchange()
    assert str(caught.value) == problem
    assert http.sock is None  # a connection in an unknown state is never reused


def test_a_server_that_never_answers_times_out_on_time():
    def handle(conn, server):
        server.requests.append(read_request(conn, bytearray()))
        time.sleep(3)

    with http_server(handle) as server:
        http = connection(server.url, rest_timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            http.exchange()
    assert 0.25 < time.monotonic() - started < 2


def test_a_trickling_server_cannot_stretch_the_answer_past_its_time_limit():
    def handle(conn, server):
        server.requests.append(read_request(conn, bytearray()))
        for byte in answer():
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with http_server(handle) as server:
        http = connection(server.url, rest_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            http.exchange()
    assert time.monotonic() - started < 1.5


def test_refused_connections_are_oserrors():
    http = connection(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionRefusedError):
        http.exchange()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def test_https_is_verified_against_the_given_ca(certificates):
    with http_server(replying(lambda _r: answer()), tls=certificates.server_context()) as server:
        assert server.url.startswith("https://")
        http = connection(server.url, rest_ca_file=str(certificates.ca))
        assert http.exchange() == (200, PREDICTIONS)
        for refused in (
            connection(server.url),  # the system's roots do not know this CA
            connection(server.url, rest_ca_file=str(certificates.other_ca)),
        ):
            with pytest.raises(ssl.SSLCertVerificationError):
                refused.exchange()
        insecure = connection(server.url, insecure=True)  # encrypted, not checked
        assert insecure.exchange() == (200, PREDICTIONS)


def test_https_host_name_must_match_the_certificate(certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.named_cert, certificates.named_key)  # "tfs.test" only
    with http_server(replying(lambda _r: answer()), tls=context) as server:
        http = connection(server.url, rest_ca_file=str(certificates.ca))
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            http.exchange()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rest_ca_file": "/nope/ca.pem"}, "--rest-ca-file: /nope/ca.pem: no such file"),
        ({"rest_ca_file": "{garbage}"}, "--rest-ca-file: {garbage}: no PEM certificates"),
        ({"headers": ("X-Key: ${TFSLOAD_TEST_UNSET}",)},
         "--header: X-Key: environment variable TFSLOAD_TEST_UNSET is not set"),
    ],
)  # fmt: skip
def test_bad_tls_files_and_unset_header_variables_are_named(tmp_path, settings, message):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    if "rest_ca_file" in settings:
        settings = {"rest_ca_file": settings["rest_ca_file"].replace("{garbage}", str(garbage))}
        message = message.replace("{garbage}", str(garbage))
    with pytest.raises(ConfigError) as caught:
        origin("https://127.0.0.1:1", Transport(**settings))
    assert str(caught.value).startswith(message)


def test_header_values_come_from_the_environment_and_stay_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("TFSLOAD_TEST_KEY", "s3cret")
    where = origin("http://127.0.0.1:1", Transport(headers=("X-Key: ${TFSLOAD_TEST_KEY}",)))
    assert b"X-Key: s3cret\r\n" in where.request("/p", b"")
    assert "s3cret" not in repr(where)
