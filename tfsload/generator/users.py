"""The Locust users: TF Serving predict over REST (RestUser) and gRPC (GrpcUser).

Both send the run's pre-encoded requests in turn (:mod:`tfsload.generator.payload`), check
every answer against the model's signature (:mod:`tfsload.generator.answers`) and report one
request event per call, failures named by cause. In closed loop a user sends again as soon
as its answer is in; in open loop it waits for the send time it claimed from the process's
schedule, and its latency counts from that time.

The generic classes take their address from ``-H`` (or ``--rest-host`` / ``--grpc-host`` when
one process runs both). :func:`target_user_classes` makes one subclass per target and protocol
of a targets file; those keep their address in ``target``, because Locust's ``-H`` overwrites
the ``host`` of every user class.
"""

from __future__ import annotations

import functools
import math
import time
from http.client import HTTPException
from typing import Any, ClassVar

import gevent
from locust import User, constant, task

from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import RunSpec, Transport
from tfsload.core.targets import Target, normalize_grpc, normalize_http
from tfsload.generator import grpc_transport, rest_transport, run_state
from tfsload.generator.answers import RequestFailure, grpc_failure, transport_failure
from tfsload.generator.payload import Payload
from tfsload.generator.run_state import Endpoint, Send

IDLE_S = 0.5  # how long a user with nothing to send waits before asking again
# What a REST call can fail with before a whole HTTP answer: refused, reset, timed out, TLS
# refused, a name that does not resolve (all OSError), a broken or cut answer (HTTPException).
TRANSPORT_ERRORS = (OSError, HTTPException)


class PredictUser(User):
    """What RestUser and GrpcUser share: the send loop, pacing and naming."""

    abstract = True
    protocol: ClassVar[str]
    target: ClassVar[Target | None] = None
    wait_time = constant(0)

    @classmethod
    def endpoint(cls, spec: RunSpec, host: str | None) -> Endpoint:
        """Where this class sends and its stats row; ConfigError names the missing option."""
        if cls.target is not None:
            address = cls.target.url(cls.protocol)
            name = f"{cls.target.name} {cls.protocol}"
            return Endpoint(name, address, cls.prepare(address, spec.transport))
        target = spec.target
        name = f"{target.name} {cls.protocol}" if target.name else cls.protocol
        own_flag = f"--{cls.protocol}-host"
        own = target.rest if cls.protocol == "rest" else target.grpc
        example = "http://host:port" if cls.protocol == "rest" else "grpc://host:port"
        if not (own or host):
            raise ConfigError(f"{cls.__name__} needs an address: -H {example} or {own_flag}")
        check = normalize_http if cls.protocol == "rest" else normalize_grpc
        try:
            address = check(own or host)
        except ValueError as exc:
            flag = own_flag if own else "-H"
            raise ConfigError(f"{flag}: {exc}; {cls.__name__} needs {example}") from None
        return Endpoint(name, address, cls.prepare(address, spec.transport))

    @classmethod
    def prepare(cls, address: str, transport: Transport) -> Any:
        """Read and check what connections to ``address`` need (TLS files, headers) before any
        load; ConfigError names the flag. The result is shared by the class's users."""
        raise NotImplementedError

    def on_start(self) -> None:
        self.state = run_state.current()
        endpoint = self.state.endpoints.get(type(self)) if self.state else None
        if endpoint is None:  # the run's settings were rejected (already reported), or no run
            self.state = None
            return
        self.stats_name = endpoint.name
        self.connect(endpoint.connection)

    def connect(self, prepared: Any) -> None:
        """Prepare to send, from what :meth:`prepare` made (in on_start, after any fork)."""

    def send(self, intended: float | None) -> None:
        """Make one predict call, check the answer and :meth:`report` it."""
        raise NotImplementedError

    def report(
        self, request_type: str, started: float, ended: float, intended: float | None,
        length: int, failure: RequestFailure | None,
    ) -> None:  # fmt: skip
        """Fire the request event. In open loop a send that left late counts from its intended
        time (coordinated omission); one that left early counts from when it left."""
        origin = started if intended is None else min(started, intended)
        self.environment.events.request.fire(
            request_type=request_type,
            name=self.stats_name,
            response_time=(ended - origin) * 1000,
            response_length=length,
            exception=failure,
            context=self.request_context,
        )

    @task
    def predict(self) -> None:
        run = self.state
        send: Send | None = run.next_send(time.perf_counter()) if run else None
        if send is None:
            gevent.sleep(IDLE_S)
            return
        if send.intended is not None:
            wait_until(send.intended)
            if run.stopped:  # the run ended while this user waited for its send time
                return
        run.sent(send, time.perf_counter())
        try:
            self.send(send.intended)
        finally:
            run.returned()


def wait_until(intended: float) -> None:
    """Sleep until about ``intended`` (a perf_counter time), and never later than needed.

    gevent's timers round a timeout up to whole milliseconds (epoll), so sleeping the exact
    delay leaves every open-loop send about 1 ms late, and that lateness would be added to its
    latency. Sleeping the whole milliseconds below the delay leaves it up to 1 ms early
    instead; an early send's latency counts from when it really left (see ``report``).
    """
    whole_ms = math.floor((intended - time.perf_counter()) * 1000)
    if whole_ms > 0:
        gevent.sleep(whole_ms / 1000)


class RestUser(PredictUser):
    """POST /v1/models/<model>:predict with the pre-encoded JSON body.

    Each user keeps one keep-alive connection that writes the prepared request bytes and reads
    answers with minimal parsing (:mod:`tfsload.generator.rest_transport`): the request never
    changes, so a general client's per-request work would only cost generator CPU.
    """

    abstract = False
    protocol = "rest"
    http: rest_transport.RestConnection | None = None

    @classmethod
    def prepare(cls, address: str, transport: Transport) -> rest_transport.RestOrigin:
        return rest_transport.origin(address, transport)

    def connect(self, prepared: rest_transport.RestOrigin) -> None:
        self.wire = wire_requests(prepared, self.state.payload)
        self.http = rest_transport.RestConnection(prepared, self.wire[0])

    def on_stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def send(self, intended: float | None) -> None:
        request = self.state.payload.next()
        self.request_context = request.context
        self.http.request = self.wire[request.index]
        started = time.perf_counter()
        try:
            status, body = self.http.exchange()
        except TRANSPORT_ERRORS as error:
            ended = time.perf_counter()
            self.report("POST", started, ended, intended, 0, transport_failure(error))
            return
        ended = time.perf_counter()
        failure = request.rest_failure(status, body)
        self.report("POST", started, ended, intended, len(body), failure)


@functools.cache
def wire_requests(origin: rest_transport.RestOrigin, payload: Payload) -> list[bytes]:
    """Each request of the payload as the bytes sent to ``origin``: built once per user class
    and process, whatever the number of users."""
    return [origin.request(r.rest_path, r.rest_body) for r in payload.requests]


class GrpcUser(PredictUser):
    """PredictionService/Predict with the pre-serialized PredictRequest; the users of a class
    share one channel per process (:mod:`tfsload.generator.grpc_transport`)."""

    abstract = False
    protocol = "grpc"
    grpc: grpc_transport.GrpcConnection | None = None

    @classmethod
    def prepare(cls, address: str, transport: Transport) -> grpc_transport.GrpcConnection:
        return grpc_transport.GrpcConnection(grpc_transport.settings(address, transport))

    def connect(self, prepared: grpc_transport.GrpcConnection) -> None:
        prepared.acquire()
        self.grpc = prepared

    def on_stop(self) -> None:
        if self.grpc is not None:
            self.grpc.release()
            self.grpc = None

    def send(self, intended: float | None) -> None:
        request = self.state.payload.next()
        self.request_context = request.context
        started = time.perf_counter()
        try:
            reply = self.grpc.call(request.grpc_request)
        except grpc_transport.CallFailed as error:
            ended = time.perf_counter()
            failure = grpc_failure(error.code_name, error.details)
            self.report("gRPC", started, ended, intended, 0, failure)
            return
        ended = time.perf_counter()
        failure = request.grpc_failure(reply)
        self.report("gRPC", started, ended, intended, len(reply), failure)


def class_name(target_name: str, protocol: str) -> str:
    """``tfs-gpu-batching`` + ``grpc`` -> ``TfsGpuBatchingGrpc``."""
    words = target_name.replace("_", "-").split("-")
    return "".join(word[:1].upper() + word[1:] for word in words) + protocol.capitalize()


def target_user_classes(targets: list[Target], source: str) -> dict[str, type[PredictUser]]:
    """One user class per target and protocol it serves, named by :func:`class_name`."""
    classes: dict[str, type[PredictUser]] = {}
    for target in targets:
        for base in (RestUser, GrpcUser):
            address = target.url(base.protocol)
            if not address:
                continue
            name = class_name(target.name, base.protocol)
            if name in classes or name in (RestUser.__name__, GrpcUser.__name__):
                raise ConfigError(f"{source}: target {target.name!r} makes a second class {name}")
            doc = f"{target.label}: {base.protocol.upper()} predict to {address}."
            classes[name] = type(name, (base,), {"target": target, "__doc__": doc})
    return classes
