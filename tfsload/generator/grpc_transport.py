"""gRPC's wire: predict calls from gevent greenlets, with grpcio's core on its own threads.

grpcio's gevent mode (``grpc.experimental.gevent.init_gevent``, what Locust's gRPC example uses)
runs every blocking call's completion-queue poll through a gevent thread pool and back, and
grpcio's public future API starts and ends a thread whenever no call of the channel is in
flight, and builds about ten Python objects per call: that was most of a generator's CPU per
call, and the thread start alone added about 0.1 ms to every call at one user
(docs/benchmarks.md). So calls are made one level down, on the channel's completion queue
(``grpc._cython.cygrpc``, grpcio's private API: :func:`check_grpcio` says at start when it has
moved, and tests/test_grpc_transport.py fails). One thread per channel, alive as long as the
channel, waits for finished calls and hands them to this process's gevent hub through one async
watcher; many calls can finish per wake-up, and no greenlet ever blocks the hub.

The channel itself is made with grpcio's public API (address, TLS credentials, options). All
users of a class in one process share it (grpcio would share the TCP connection of equal
channels anyway); the first user to start opens it, after any fork, and the last to stop
closes it. A greenlet killed while its call is in flight (Locust stopping a user) cancels the
call, so the server sees the cancellation as it would from any client.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
import weakref
from dataclasses import dataclass

# grpcio's EventEngine client reads a call's answer on one of its own threads and hands it to
# the completion queue's poller on another: two thread wake-ups per call, and on a generator's
# busy core each one preempts the user greenlets' thread. Without it (grpcio's long-standing
# client I/O), the thread that polls the queue reads the socket itself; one core sends 10-20 %
# more calls (docs/benchmarks.md). grpcio reads this once, when it is first imported, so it is
# set before the import below; a GRPC_EXPERIMENTS of the user's own is kept as it is.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")

import gevent
import gevent.monkey
import grpc
from gevent.hub import Waiter
from grpc._cython import cygrpc

from tfsload.core import headers, protos
from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import Transport
from tfsload.generator.tls import PemFile, client_context


@dataclass(frozen=True)
class TlsFiles:
    """The PEM bytes of a TLS channel: roots (None: the system's) and an optional client pair."""

    roots: bytes | None
    key: bytes | None
    chain: bytes | None


@dataclass(frozen=True)
class GrpcSettings:
    """What every channel of one user class needs: where, how secured, with which metadata."""

    target: str
    tls: TlsFiles | None
    options: tuple[tuple[str, object], ...]
    metadata: tuple[tuple[str, str], ...] | None
    timeout_s: float


def settings(address: str, transport: Transport) -> GrpcSettings:
    """Check and read everything a channel to ``address`` needs (``grpcs://`` means TLS);
    ConfigError names the flag of a bad file or header.

    Runs before any load and before any fork: it reads files and creates no grpcio object.
    """
    check_grpcio()
    secure = address.startswith("grpcs://") or transport.grpc_secure
    tls = None
    options: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", transport.max_message_bytes),
        ("grpc.max_send_message_length", transport.max_message_bytes),
        # grpcio's retry machinery holds every call's messages in case it is retried: about
        # 15 % of a generator's CPU per call (docs/benchmarks.md), and a retried call's
        # latency would hide the refusal. Off unless asked for.
        ("grpc.enable_retries", int(transport.grpc_retries)),
    ]
    if secure:
        t = transport
        ca = PemFile("--grpc-ca-file", t.grpc_ca_file) if t.grpc_ca_file else None
        cert = PemFile("--grpc-client-cert", t.grpc_client_cert) if t.grpc_client_cert else None
        key = PemFile("--grpc-client-key", t.grpc_client_key) if t.grpc_client_key else None
        client_context(ca, cert, key)
        tls = TlsFiles(
            roots=ca.read() if ca else None,
            key=key.read() if key else None,
            chain=cert.read() if cert else None,
        )
        if t.grpc_server_name:
            options.append(("grpc.ssl_target_name_override", t.grpc_server_name))
    try:
        pairs = headers.resolve(transport.headers)
    except ValueError as exc:
        raise ConfigError(f"--header: {exc}") from None
    metadata = tuple((name.lower(), value) for name, value in pairs) or None
    target = address.removeprefix("grpcs://")
    return GrpcSettings(target, tls, tuple(options), metadata, transport.grpc_timeout_s)


def open_channel(s: GrpcSettings) -> grpc.Channel:
    """A channel with the settings' target, TLS and options (predict and metadata calls)."""
    if s.tls is None:
        return grpc.insecure_channel(s.target, options=s.options)
    credentials = grpc.ssl_channel_credentials(s.tls.roots, s.tls.key, s.tls.chain)
    return grpc.secure_channel(s.target, credentials, options=s.options)


CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# grpcio's client words its own deadline two ways, by how far the call had got when it expired:
# one cause, one wording in the results.
LOCAL_WORDINGS = {"Stream removed (Deadline Exceeded)": "Deadline Exceeded"}
# The parts of grpcio's private core API used here, checked at start by check_grpcio().
CORE_API = {
    "cygrpc": (
        "SendInitialMetadataOperation", "SendMessageOperation", "SendCloseFromClientOperation",
        "ReceiveInitialMetadataOperation", "ReceiveMessageOperation",
        "ReceiveStatusOnClientOperation", "OperationType", "CompletionType", "StatusCode",
    ),
    "cygrpc.Channel": ("integrated_call", "next_call_event"),
    "cygrpc.OperationType": ("receive_message", "receive_status_on_client"),
    "cygrpc.CompletionType": ("operation_complete", "queue_timeout"),
    "cygrpc.StatusCode": ("cancelled",),
}  # fmt: skip


class CallFailed(Exception):
    """A call that ended with a status other than OK: its code's name and detail."""

    def __init__(self, code_name: str, details: str) -> None:
        super().__init__(f"{code_name}: {details}")
        self.code_name = code_name
        self.details = details


def check_grpcio() -> None:
    """Raise ConfigError naming what is missing when this grpcio lacks the core API used here."""
    for owner_name, names in CORE_API.items():
        owner = cygrpc
        for part in owner_name.split(".")[1:]:
            owner = getattr(owner, part)
        for name in names:
            if not hasattr(owner, name):
                raise ConfigError(
                    f"grpcio {grpc.__version__} has no {owner_name}.{name}, which tfsload's "
                    "GrpcUser uses: install the grpcio version pinned in pyproject.toml"
                )


class _Hub:
    """Finished calls handed from the channels' threads to the greenlets waiting for them."""

    def __init__(self) -> None:
        self.finished: collections.deque = collections.deque()
        self.watcher = gevent.get_hub().loop.async_()
        self.watcher.start(self._hand_over)

    def _hand_over(self) -> None:
        finished = self.finished
        while finished:
            waiter, event = finished.popleft()
            waiter.switch(event)


_hub: _Hub | None = None
# Real threads and locks even where Locust has monkey-patched threading into greenlets: the
# poll blocks its thread, and closing waits for it to return.
_start_thread = gevent.monkey.get_original("_thread", "start_new_thread")
_allocate_lock = gevent.monkey.get_original("_thread", "allocate_lock")
_native_rlock = gevent.monkey.get_original("_thread", "RLock")
_open_connections: weakref.WeakSet = weakref.WeakSet()
STOP_WAIT_S = 5.0


def _with_native_locks(make, *args):
    """``make(*args)`` with threading's locks native while it runs.

    grpcio's channel takes the lock that guards its calls from ``threading`` when it is made;
    under Locust that is one of gevent's, and it is shared here by two native threads (the hub's,
    which starts calls, and the channel's, which finishes them): contended, the two could wait
    on each other for good (about one run in four with 50 users). A native lock is held for
    microseconds by either side, so blocking on it briefly is harmless.
    """
    if not gevent.monkey.is_module_patched("threading"):
        return make(*args)
    patched = threading._allocate_lock, threading._CRLock
    # The channel's call lock is an RLock under a Condition: gevent leaves threading only its
    # pure-Python RLock, taken twice per call; the C one costs a fraction of that.
    threading._allocate_lock, threading._CRLock = _allocate_lock, _native_rlock
    try:
        return make(*args)
    finally:
        threading._allocate_lock, threading._CRLock = patched


class _Stop:
    """The tag of the call that wakes a channel's thread to stop polling."""


class GrpcConnection:
    """The channel one user class shares in this process, its thread and its calls.

    grpcio's core must not destroy a completion queue that a thread is polling, so closing is
    in order: the last user stops, the thread sees every call started on the channel finish,
    then a call that never leaves the process (no metadata sent, cancelled at once) wakes it a
    last time and it returns; only then is the channel closed.
    """

    def __init__(self, settings: GrpcSettings) -> None:
        self.settings = settings
        self.users = 0
        self.channel: grpc.Channel | None = None
        self.core: cygrpc.Channel | None = None
        self.method = protos.PREDICT_METHOD.encode()
        self.started = 0  # calls started on the open channel (by this process's hub thread)
        self.polling = _allocate_lock()  # held while the channel's thread polls

    def acquire(self) -> None:
        """A user starts: open the channel if it is the first (after any fork)."""
        global _hub
        if _hub is None:
            _hub = _Hub()
        if self.channel is None:
            self.channel = _with_native_locks(open_channel, self.settings)
            self.core = self.channel._channel
            self.started = 0
            self.polling.acquire()
            _start_thread(self._poll, (self.core, _hub))
            _open_connections.add(self)
        self.users += 1

    def release(self) -> None:
        """A user stops: close the channel after the last one."""
        self.users -= 1
        if self.users <= 0:
            self.close()

    def close(self) -> None:
        """Stop the channel's thread, then close the channel (see the class's docstring)."""
        if self.channel is None:
            return
        wake = self.core.integrated_call(
            0, self.method, None, None, None, None,
            (((cygrpc.ReceiveStatusOnClientOperation(0),), _Stop()),), None, None,
        )  # fmt: skip
        wake.cancel(cygrpc.StatusCode.cancelled, "closing")
        if self.polling.acquire(timeout=STOP_WAIT_S):  # blocks the hub: the calls were cancelled
            self.polling.release()
            self.channel.close()
        self.channel = self.core = None
        _open_connections.discard(self)

    def _poll(self, core: cygrpc.Channel, hub: _Hub) -> None:
        """The channel's thread: hand each finished call to its greenlet until told to stop
        and every call started has finished."""
        finished, watcher = hub.finished, hub.watcher
        complete = cygrpc.CompletionType.operation_complete
        done, stopping = 0, False
        try:
            while not (stopping and done >= self.started):
                event = core.next_call_event()
                if event.completion_type != complete:
                    continue
                if type(event.tag) is _Stop:
                    stopping = True
                    continue
                done += 1
                finished.append((event.tag, event))
                watcher.send()
        finally:
            self.polling.release()

    def call(self, request: bytes, method: bytes | None = None) -> bytes:
        """One call (Predict unless ``method`` names another) with the run's deadline and
        metadata; raises CallFailed."""
        s = self.settings
        waiter = Waiter()
        operations = (
            cygrpc.SendInitialMetadataOperation(s.metadata, 0),
            cygrpc.SendMessageOperation(request, 0),
            cygrpc.SendCloseFromClientOperation(0),
            cygrpc.ReceiveInitialMetadataOperation(0),
            cygrpc.ReceiveMessageOperation(0),
            cygrpc.ReceiveStatusOnClientOperation(0),
        )
        deadline = time.time() + s.timeout_s
        name = method or self.method
        self.started += 1
        call = self.core.integrated_call(
            0, name, None, deadline, s.metadata, None, ((operations, waiter),), None, None
        )
        try:
            event = waiter.get()
        except BaseException:
            call.cancel(cygrpc.StatusCode.cancelled, "Locally cancelled by application!")
            raise
        reply = None
        kinds = cygrpc.OperationType
        for operation in event.batch_operations:
            kind = operation.type()
            if kind == kinds.receive_message:
                reply = operation.message()
            elif kind == kinds.receive_status_on_client and operation.code() != 0:
                code = operation.code()
                details = operation.details() or ""
                raise CallFailed(
                    CODE_NAMES.get(code, "UNKNOWN"), LOCAL_WORDINGS.get(details, details)
                )
        if reply is None:
            raise CallFailed("INTERNAL", "OK status without an answer")
        return reply


@atexit.register
def _close_at_exit() -> None:
    """Stop the channels' threads before the interpreter destroys what they poll."""
    for connection in list(_open_connections):
        connection.close()
