"""REST's wire: one keep-alive HTTP/1.1 connection per user that sends a prepared request.

The predict request never changes during a run, so it is built once as bytes (request line,
headers, body) and written with one send; the answer is read with just enough parsing to find
its end (``Content-Length``, ``Transfer-Encoding: chunked``, or the connection closing) and to
learn whether the server keeps the connection. A general client's per-request work (building
headers, a liveness ``select()`` before reusing a connection, a parser object per answer) was
most of the generator's CPU per request (docs/benchmarks.md).

Plain ``socket`` and ``ssl`` are used: under Locust they are gevent's (Locust monkey-patches them
when it is imported), so a user waiting for its answer lets the others run; outside Locust
(tests) they block as usual.

Time limits: connecting, TLS handshake included, within ``connect_timeout_s``; the whole answer
within ``timeout_s`` of the request being sent, so a server that trickles bytes cannot stretch
it. A kept connection that has been idle for ``IDLE_CHECK_S`` is checked before it is used
again (one ``select()``, never under back-to-back load), and reopened if the server closed it
meanwhile; one whose request could not even be written is reopened for that request. A request
that reached the server is never sent again: a connection closed under it fails it, so a server
that drops calls is seen dropping every one of them.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from http.client import HTTPException

from tfsload import __version__
from tfsload.core import headers
from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import Transport
from tfsload.generator.tls import PemFile, client_context

RECEIVE_BYTES = 65536
IDLE_CHECK_S = 0.01  # a kept connection idle this long may have been closed by the server
MAX_HEAD_BYTES = 65536  # status line and headers of one answer
NO_BODY = (204, 304)


class BrokenAnswer(HTTPException):
    """An answer that breaks HTTP/1.1's rules, stops short, or is over the size limit.

    Its text names the problem and never a number that varies, so Locust groups them."""


class _Stale(Exception):
    """A kept connection was closed by the server before the request could be written."""


@dataclass(frozen=True)
class RestOrigin:
    """Where one user class sends over REST and how: checked and read once per process."""

    host: str
    port: int
    tls: ssl.SSLContext | None = field(repr=False)
    connect_timeout_s: float
    timeout_s: float
    max_answer_bytes: int
    extra_headers: bytes = field(repr=False)  # "Name: value\r\n" lines (secrets)

    def request(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        """The whole request as bytes: request line, headers, body."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            f"User-Agent: tfsload/{__version__}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        return head.encode("latin-1") + self.extra_headers + b"\r\n" + body


def origin(address: str, transport: Transport) -> RestOrigin:
    """Check and read what connections to ``address`` (``http[s]://host:port``) need;
    ConfigError names the flag of a bad file or header."""
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    tls = None
    if scheme == "https":
        ca = PemFile("--rest-ca-file", transport.rest_ca_file) if transport.rest_ca_file else None
        tls = client_context(ca, verify=not transport.insecure)
    try:
        pairs = headers.resolve(transport.headers)
    except ValueError as exc:
        raise ConfigError(f"--header: {exc}") from None
    extra = "".join(f"{name}: {value}\r\n" for name, value in pairs).encode("latin-1")
    return RestOrigin(
        host=host.strip("[]"),
        port=int(port),
        tls=tls,
        connect_timeout_s=transport.rest_connect_timeout_s,
        timeout_s=transport.rest_timeout_s,
        max_answer_bytes=transport.max_message_bytes,
        extra_headers=extra,
    )


class RestConnection:
    """One user's connection: sends the prepared request, returns (status, body)."""

    def __init__(self, origin: RestOrigin, request: bytes) -> None:
        self.origin = origin
        self.request = request
        self.sock: socket.socket | None = None
        self.leftover = b""  # bytes read past the previous answer
        self.idle_from = 0.0  # time.monotonic() when the kept connection's last answer ended

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.leftover = b""

    def _connect(self) -> socket.socket:
        o = self.origin
        sock = socket.create_connection((o.host, o.port), timeout=o.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if o.tls is not None:
                sock = o.tls.wrap_socket(sock, server_hostname=o.host)
            sock.settimeout(o.timeout_s)
        except BaseException:
            sock.close()
            raise
        return sock

    def exchange(self) -> tuple[int, bytes]:
        """Send the request and read its answer; raises OSError (refused, reset, timed out,
        TLS) or BrokenAnswer. The connection is kept only after a complete kept answer."""
        if self._closed_while_idle():
            self.close()
        reused = self.sock is not None
        try:
            if not reused:
                self.sock = self._connect()
            try:
                return self._round_trip(reused)
            except _Stale:
                self.close()
                self.sock = self._connect()
                return self._round_trip(False)
        except BaseException:
            self.close()
            raise

    def _closed_while_idle(self) -> bool:
        """True when a kept connection idle for ``IDLE_CHECK_S`` has become readable: the
        server closed it (or wrote to it unasked) since its last answer."""
        if self.sock is None or time.monotonic() - self.idle_from < IDLE_CHECK_S:
            return False
        return bool(select.select([self.sock], [], [], 0)[0])

    def _round_trip(self, reused: bool) -> tuple[int, bytes]:
        sock, origin = self.sock, self.origin
        deadline = time.monotonic() + origin.timeout_s
        try:
            sock.sendall(self.request)
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                raise _Stale from None
            raise
        reader = _Reader(sock, deadline, self.leftover, origin.max_answer_bytes)
        status, body, keep = reader.answer()
        if not keep:
            self.close()
            return status, body
        self.leftover = reader.rest()
        if reader.retimed:
            sock.settimeout(origin.timeout_s)
        self.idle_from = time.monotonic()
        return status, body


class _Reader:
    """Reads one answer from a socket. ``data[pos:]`` is what was received and not yet used;
    ``data`` becomes a bytearray only when an answer takes more than one receive."""

    def __init__(self, sock: socket.socket, deadline: float, data: bytes, limit: int) -> None:
        self.sock = sock
        self.deadline = deadline
        self.data: bytes | bytearray = data
        self.pos = 0
        self.limit = limit
        self.first = True
        self.retimed = False

    def rest(self) -> bytes:
        return bytes(self.data[self.pos :])

    def receive(self) -> bool:
        """Append more bytes to ``data`` within what is left of the deadline; False at the end
        of the stream."""
        if self.first:
            self.first = False  # the socket's timeout is the whole limit: no need to set it
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            self.sock.settimeout(left)
            self.retimed = True
        more = self.sock.recv(RECEIVE_BYTES)
        if not more:
            return False
        if not self.data:
            self.data, self.pos = more, 0
        else:
            if type(self.data) is bytes:
                self.data = bytearray(self.data[self.pos :])
                self.pos = 0
            self.data += more
        return True

    def fill(self, size: int, where: str) -> None:
        """Receive until ``data[pos:]`` holds at least ``size`` bytes."""
        while len(self.data) - self.pos < size:
            if not self.receive():
                raise BrokenAnswer(f"connection closed in the {where}")

    def take(self, size: int) -> bytes:
        start = self.pos
        self.pos += size
        return bytes(self.data[start : self.pos])

    def line(self, where: str) -> bytes:
        """The next CRLF-terminated line (without CRLF)."""
        while (end := self.data.find(b"\r\n", self.pos)) < 0:
            if len(self.data) - self.pos > MAX_HEAD_BYTES:
                raise BrokenAnswer(f"{where} line too long")
            self.fill(len(self.data) - self.pos + 1, where)
        line = bytes(self.data[self.pos : end])
        self.pos = end + 2
        return line

    def answer(self) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection can be kept)."""
        while True:
            status, length, chunked, keep = self.head()
            if status >= 200 or status == 101:
                break  # 1xx interim answers (100 Continue, 103 Early Hints) precede the real one
        if status == 101:
            raise BrokenAnswer("the server switched protocols")
        if status in NO_BODY:
            return status, b"", keep
        if chunked:
            return status, self.chunked_body(), keep
        if length is None:
            return status, self.body_to_close(), False
        if length > self.limit:
            raise BrokenAnswer("answer larger than --max-message-bytes")
        self.fill(length, "body")
        return status, self.take(length), keep

    def head(self) -> tuple[int, int | None, bool, bool]:
        """Status line and headers: (status, Content-Length, chunked, keep-alive)."""
        while (end := self.data.find(b"\r\n\r\n", self.pos)) < 0:
            if len(self.data) - self.pos > MAX_HEAD_BYTES:
                raise BrokenAnswer("answer headers too long")
            started = len(self.data) > self.pos
            if not self.receive():
                raise BrokenAnswer(
                    "connection closed in the headers"
                    if started
                    else "connection closed before the answer"
                )
        lines = self.data[self.pos : end].lower().split(b"\r\n")
        self.pos = end + 4
        first = lines[0]
        if first[:7] != b"http/1." or first[8:9] != b" " or not first[9:12].isdigit():
            raise BrokenAnswer("not an HTTP/1.x status line")
        status = int(first[9:12])
        keep = first[7:8] != b"0"  # HTTP/1.0 closes unless it says keep-alive
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise BrokenAnswer("header line without ':'")
            name = name.rstrip()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise BrokenAnswer("bad Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.rstrip().endswith(b"chunked")
            elif name == b"connection":
                tokens = {token.strip() for token in value.split(b",")}
                if b"close" in tokens:
                    keep = False
                elif b"keep-alive" in tokens:
                    keep = True
        if chunked:
            length = None
        return status, length, chunked, keep

    def chunked_body(self) -> bytes:
        parts = []
        total = 0
        while True:
            size_text = self.line("chunk size").split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BrokenAnswer("bad chunk size") from None
            if size == 0:
                while self.line("trailer"):  # trailer fields up to an empty line
                    pass
                return b"".join(parts)
            total += size
            if total > self.limit:
                raise BrokenAnswer("answer larger than --max-message-bytes")
            self.fill(size + 2, "chunk")
            parts.append(self.take(size))
            if self.take(2) != b"\r\n":
                raise BrokenAnswer("chunk not followed by CRLF")

    def body_to_close(self) -> bytes:
        while self.receive():
            if len(self.data) - self.pos > self.limit:
                raise BrokenAnswer("answer larger than --max-message-bytes")
        if len(self.data) - self.pos > self.limit:
            raise BrokenAnswer("answer larger than --max-message-bytes")
        return self.take(len(self.data) - self.pos)
