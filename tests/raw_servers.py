"""Small servers for transport tests: an HTTP/1.1 server whose answers a test writes byte for
byte (chunked, cut short, slow, closing), optionally over TLS; a gRPC server that records the
metadata it receives; and a self-signed certificate authority made in the test.

Everything binds to 127.0.0.1 and stops with its context manager.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREDICTIONS = b'{"predictions": [[0.25, 0.75], [0.5, 0.5]]}'


@dataclass
class Request:
    """One request as the server read it: request line, headers (lowercased names), body."""

    line: str
    headers: dict[str, str]
    body: bytes


def read_request(conn: socket.socket, buffer: bytearray) -> Request | None:
    """Read one request (Content-Length bodies only) from ``conn``; None at end of stream."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return Request(head[0], headers, body)


def answer(body: bytes = PREDICTIONS, status: str = "200 OK", extra: str = "") -> bytes:
    """A Content-Length answer; ``extra`` is more header lines, each ending in CRLF."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(body: bytes = PREDICTIONS, sizes: tuple[int, ...] = (7, 1, 100)) -> bytes:
    """``body`` in chunks of the given sizes (cycled), with an extension and a trailer."""
    out = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ]
    position, index = 0, 0
    while position < len(body):
        piece = body[position : position + sizes[index % len(sizes)]]
        out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
        position += len(piece)
        index += 1
    out.append(b"0\r\nX-Trailer: yes\r\n\r\n")
    return b"".join(out)


Handler = Callable[[socket.socket, "HttpServer"], None]


@dataclass
class HttpServer:
    """A raw HTTP server: ``handler(conn, server)`` serves one connection at a time per thread."""

    handler: Handler
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve_one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self)


@contextlib.contextmanager
def http_server(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[HttpServer]:
    server = HttpServer(handler, tls)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopped.set()
        server.listener.close()
        thread.join(timeout=5)


def replying(reply: Callable[[Request], bytes | None]) -> Handler:
    """A handler that answers each request of a connection with ``reply(request)``'s bytes and
    hangs up when it returns None."""

    def handle(conn: socket.socket, server: HttpServer) -> None:
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            server.requests.append(request)
            data = reply(request)
            if data is None:
                return
            conn.sendall(data)

    return handle


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate it signed (for 127.0.0.1 and localhost) and a client one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verifying against it must fail
    named_cert: Path  # a server certificate for the name "tfs.test" only, signed by ``ca``
    named_key: Path

    def server_context(self, require_client: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Self-signed CAs and leaf certificates written as PEM files into ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def build(subject, subject_key, issuer, issuer_key, ca: bool, sans=None, usage=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(path: Path, certificate=None, private_key=None) -> Path:
        if certificate is not None:
            path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(
                private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return path

    ca_key, other_key = key(), key()
    ca = build(name("tfsload test CA"), ca_key, name("tfsload test CA"), ca_key, ca=True)
    other = build(name("other CA"), other_key, name("other CA"), other_key, ca=True)
    server_key, client_key, named_key = key(), key(), key()
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = build(
        name("tfsload test server"), server_key, ca.subject, ca_key, ca=False, sans=sans,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )  # fmt: skip
    named = build(
        name("tfs.test"), named_key, ca.subject, ca_key, ca=False, sans=[x509.DNSName("tfs.test")],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )  # fmt: skip
    client = build(
        name("tfsload test client"), client_key, ca.subject, ca_key, ca=False,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )  # fmt: skip
    return Certificates(
        ca=write(directory / "ca.pem", ca),
        server_cert=write(directory / "server.pem", server),
        server_key=write(directory / "server-key.pem", private_key=server_key),
        client_cert=write(directory / "client.pem", client),
        client_key=write(directory / "client-key.pem", private_key=client_key),
        other_ca=write(directory / "other-ca.pem", other),
        named_cert=write(directory / "named.pem", named),
        named_key=write(directory / "named-key.pem", private_key=named_key),
    )


def predict_reply(rows: list[list[float]]) -> bytes:
    """A serialized PredictResponse with one float output ``output_0`` holding ``rows``."""
    from tfsload.core import protos

    response = protos.load().PredictResponse()
    tensor = response.outputs["output_0"]
    tensor.dtype = protos.dtype_number("DT_FLOAT")
    tensor.tensor_shape.dim.add().size = len(rows)
    tensor.tensor_shape.dim.add().size = len(rows[0])
    tensor.float_val.extend(value for row in rows for value in row)
    return response.SerializeToString()


@dataclass
class GrpcRecorder:
    """What a test gRPC server saw: each call's metadata, and how many calls the client
    cancelled while the server held them."""

    target: str
    metadata: list[dict[str, str]] = field(default_factory=list)
    cancelled: int = 0


@contextlib.contextmanager
def grpc_server(
    reply: bytes | Callable[[bytes, object], bytes], hold_s: float = 0.0, tls: object | None = None
) -> Iterator[GrpcRecorder]:
    """A PredictionService answering every Predict after ``hold_s`` seconds with ``reply`` or
    ``reply(request, context)`` (which may abort the call); ``tls`` is a
    ``grpc.ServerCredentials``. Other methods answer UNIMPLEMENTED."""
    import time
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    recorder = GrpcRecorder("")
    lock = threading.Lock()

    def predict(request: bytes, context) -> bytes:
        with lock:
            recorder.metadata.append(dict(context.invocation_metadata()))
        end = time.monotonic() + hold_s
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
        result = reply(request, context) if callable(reply) else reply
        if not context.is_active():
            with lock:
                recorder.cancelled += 1
        return result

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server.add_generic_rpc_handlers((handler,))
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, tls) if tls else server.add_insecure_port(address)
    recorder.target = f"127.0.0.1:{port}"
    server.start()
    try:
        yield recorder
    finally:
        server.stop(grace=None)
