"""TF Serving's REST API on aiohttp: routing, predict, status, metadata and the metrics page.

Routing follows TF Serving's ``http_server.cc`` and ``http_rest_api_util.cc``: the Prometheus
path is answered first, anything else not under ``/v1/`` gets a plain HTML 404, and ``/v1/``
paths are matched with TF Serving's (case-insensitive) regular expressions; a path or method
they do not match is ``Malformed request: <METHOD> <path>`` (400). Every answer carries
``Server: tfsload-standin/<version>``, which is how tools tell the stand-in from TF Serving.

It runs on aiohttp's low-level server with its own connection handler, so that what aiohttp
answers by itself (malformed HTTP, a broken chunked or gzip body) is also a JSON error with the
stand-in's ``Server`` header, and client disconnects and malformed HTTP are one debug line in
the log, never a traceback. Bodies are read with ``--rest_api_max_body_bytes`` counted on what
arrives (chunked and gzip bodies too: the limit is on the decompressed bytes), and decoded by a
:class:`~standin.body_parser.BodyParser` so that big bodies never hold the event loop. The
``--rest_api_timeout_in_ms`` clock covers reading, waiting for a slot and the predict; a call
that runs out of it, or whose client goes away, is abandoned (standin/predictor.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from google.protobuf import json_format

from standin import SERVER_HEADER
from standin.body_parser import Body, BodyParser
from standin.faults import DROP, MALFORMED, Faults
from standin.flags import Flags
from standin.json_writer import error_body
from standin.metrics import Metrics
from standin.predictor import ARRAY_INPUTS, Predictor
from standin.rest_json import response_body
from standin.status import ServingError, invalid

log = logging.getLogger("standin")

_API = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
# libevent's page for a path no handler claims, as TF Serving's HTTP server sends it.
_NOT_FOUND_HTML = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
    "<H1>Not Found</H1>\n</BODY></HTML>\n"
)
_JSON_OPTIONS = {"indent": 1, "always_print_fields_with_no_presence": True}
INT64_MAX = 2**63 - 1
_JSON_HEADERS = {"Server": SERVER_HEADER, "Content-Type": "application/json"}


@dataclass
class _Call:
    """What the request log and metrics need about a call, filled in as it is parsed."""

    model_name: str = ""
    api: str = ""


def _one_line(text: str) -> str:
    """aiohttp's multi-line parser messages (text, then the bytes, then a ``^`` marker) on one
    line."""
    lines = (line.strip() for line in str(text).splitlines())
    text = " ".join(line for line in lines if line and set(line) != {"^"})
    return re.sub(r"^\d{3}, message: ", "", text)


class _TooLarge(Exception):
    """The body passed ``--rest_api_max_body_bytes``; ``size`` when the client declared it."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


class _QuietLogger:
    """aiohttp's connection logger. What aiohttp logs is about clients (disconnects, malformed
    HTTP, bodies cut short): one debug line each, without a traceback."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return
        text = str(msg) % args if args else str(msg)
        if exc_info is True:
            exc_info = sys.exc_info()[1]
        if isinstance(exc_info, BaseException):
            text += f": {type(exc_info).__name__}: {exc_info}"
        self._logger.debug("REST connection: %s", text)

    debug = info = warning = error = exception = critical = _log

    def isEnabledFor(self, level: int) -> bool:  # logging.Logger's name
        return self._logger.isEnabledFor(logging.DEBUG)


class _Connection(RequestHandler):
    """aiohttp's per-connection handler, answering its own errors as the stand-in does."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        reason = message or (f"{type(exc).__name__}: {exc}" if exc else HTTPStatus(status).phrase)
        self.logger.debug("answered %d: %s", status, reason)
        if request.writer.output_size > 0:  # an answer is already on its way: nothing to add
            raise ConnectionError("a response was sent already")
        reason = _one_line(reason)
        text = f"Malformed HTTP request: {reason}" if status < 500 else reason
        response = web.Response(status=status, body=error_body(text), headers=_JSON_HEADERS)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class RestApi:
    """The REST server of one Predictor."""

    def __init__(
        self,
        predictor: Predictor,
        metrics: Metrics,
        flags: Flags,
        metrics_path: str | None,
        parser: BodyParser,
        faults: Faults | None = None,
    ) -> None:
        self._predictor = predictor
        self._metrics = metrics
        self._metrics_path = metrics_path
        self._parser = parser
        self._faults = faults
        self._slots = asyncio.Semaphore(flags.rest_api_num_threads)
        self._timeout = flags.rest_api_timeout_in_ms / 1000 or None
        self._max_body = flags.rest_api_max_body_bytes
        self._headers = {"Server": SERVER_HEADER}
        if flags.rest_api_enable_cors_support:
            self._headers.update(
                {
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "POST, GET",
                    "Access-Control-Allow-Headers": "Content-Type",
                }
            )

    def runner(self, shutdown_timeout: float) -> web.ServerRunner:
        server = _Server(
            self.handle,
            handler_cancellation=True,  # a client that goes away abandons its call
            logger=_QuietLogger(logging.getLogger("standin.http")),
            access_log=None,
        )
        return web.ServerRunner(server, handle_signals=False, shutdown_timeout=shutdown_timeout)

    def _reply(
        self, status: int, text: str, content_type: str = "application/json"
    ) -> web.Response:
        headers = {**self._headers, "Content-Type": content_type}
        return web.Response(status=status, body=text.encode("utf-8"), headers=headers)

    async def _gate(self) -> None:
        if self._faults is not None:
            await self._faults.gate()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await self._gate()
        response = await self._answer(request)
        await self._gate()
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if self._metrics_path is not None and path == self._metrics_path:
            return self._reply(200, self._metrics.render(), "text/plain")
        if not _API.fullmatch(path):
            return self._reply(404, _NOT_FOUND_HTML, "text/html")
        start = time.perf_counter()
        call = _Call()
        body = Body()
        try:
            async with asyncio.timeout(self._timeout):
                await self._read_body(request, body)
                async with self._slots:
                    text, fault = await self._process(request, path, body, call)
        except _TooLarge as exc:
            return self._too_large(exc.size)
        except TimeoutError:
            error = ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"Timed out after {self._timeout * 1000:.0f} ms (--rest_api_timeout_in_ms)",
            )
            return self._failed(call, error)
        except ServingError as exc:
            return self._failed(call, exc)
        except (RequestPayloadError, HttpProcessingError) as exc:
            reason = _one_line(getattr(exc, "message", None) or str(exc))
            log.debug("REST: unreadable body: %s", reason)
            return self._failed(call, invalid(f"Malformed request body: {reason}"))
        except Exception as exc:  # a bug, not a request error: one line, a 500 answer
            log.error("REST %s %s failed: %s: %s", request.method, path, type(exc).__name__, exc)
            error = ServingError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            return self._failed(call, error)
        finally:
            body.close()
        micros = (time.perf_counter() - start) * 1e6
        self._metrics.request(call.model_name, "OK", call.api, "REST", micros)
        if fault == DROP and request.transport is not None:
            request.transport.abort()  # the client sees the connection go, with no answer
        if fault == MALFORMED:
            return self._reply(200, text[: len(text) // 2])
        return self._reply(200, text)

    def _failed(self, call: _Call, error: ServingError) -> web.Response:
        self._metrics.request(call.model_name, error.code_name, call.api, "REST", 0)
        return self._reply(error.http_status, error_body(error.message))

    async def _read_body(self, request: web.BaseRequest, body: Body) -> None:
        """The whole body into ``body``, refused once it passes ``--rest_api_max_body_bytes``."""
        declared = request.content_length
        if declared is not None and declared > self._max_body:
            raise _TooLarge(declared)
        while chunk := await request.content.readany():
            if body.size + len(chunk) > self._max_body:  # chunked, or gzip decompressed
                raise _TooLarge(None)
            body.write(chunk)

    def _too_large(self, size: int | None) -> web.Response:
        what = f"Request body of {size} bytes" if size is not None else "Request body"
        response = self._reply(
            413,
            error_body(
                f"{what} is larger than the stand-in's limit of {self._max_body} bytes "
                "(--rest_api_max_body_bytes)"
            ),
        )
        response.force_close()  # the rest of the body is not read
        return response

    async def _process(
        self, request: web.BaseRequest, path: str, body: Body, call: _Call
    ) -> tuple[str, str | None]:
        """The JSON body of a successful call and its injected fault, if any; raises
        ServingError. Fills ``call`` for metrics."""
        method = request.method
        if method == "OPTIONS":
            if not re.search(r"https?://", request.headers.get("Origin", "")):
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Origin header is missing in CORS preflight",
                )
            return "", None
        regex = {"POST": _PREDICT, "GET": _STATUS}.get(method)
        match = regex.fullmatch(path) if regex else None
        malformed = invalid(f"Malformed request: {method} {path}")
        if match is None:
            raise malformed
        name, version, label = _model_spec(match)
        call.model_name = name
        if method == "POST":
            verb = match.group(4)
            if verb == "predict":
                call.api = verb
                return await self._predict(name, version, label, body)
            if verb in ("classify", "regress"):
                call.api = verb
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{verb} is not supported by the tfsload stand-in (predict only)",
                )
            raise malformed
        if not name:
            raise invalid("Missing model name in request.")
        if match.group(4) == "metadata":
            return self._metadata(name, version, label), None
        return self._status(name, version), None

    async def _predict(
        self, name: str, version: int | None, label: str | None, body: Body
    ) -> tuple[str, str | None]:
        try:
            servable = self._predictor.resolve(name, version, label)
        except ServingError as exc:
            unresolved, signatures = exc, None
        else:
            unresolved = None
            signatures = {key: sig.inputs for key, sig in servable.signatures.items()}
        # JSON errors come before the model lookup, as in TF Serving.
        result = await self._parser.decode(body, signatures, self._predictor.limits)
        if result[0] == "error":
            if result[1] == "INTERNAL":
                log.error("REST predict body could not be decoded: %s", result[2])
            raise ServingError(grpc.StatusCode[result[1]], result[2])
        if unresolved is not None:
            raise unresolved
        _, signature_name, tensors, rows = result
        prediction = await self._predictor.predict(
            name, version, label, signature_name, tensors, ARRAY_INPUTS
        )
        text = response_body(prediction.outputs, prediction.dtypes, rows)
        return text, prediction.fault

    def _status(self, name: str, version: int | None) -> str:
        from tensorflow_serving.apis import get_model_status_pb2

        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state in self._predictor.status(name, version):
            entry = response.model_version_status.add(version=number)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            entry.status.SetInParent()  # error_code OK, error_message "", as TF Serving sends
        return json_format.MessageToJson(response, **_JSON_OPTIONS)

    def _metadata(self, name: str, version: int | None, label: str | None) -> str:
        """TF Serving's hand-assembled metadata JSON (model_spec + signature_def map)."""
        from tensorflow_serving.apis import model_pb2

        servable = self._predictor.resolve(name, version, label)
        spec = model_pb2.ModelSpec(name=servable.name)
        spec.version.value = servable.version
        options = {**_JSON_OPTIONS, "preserving_proto_field_name": True}
        spec_json = json_format.MessageToJson(spec, **options)
        signatures_json = json_format.MessageToJson(servable.signature_def_map, **options)
        return (
            "{\n"
            f'"model_spec":{spec_json},\n'
            f'"metadata": {{"signature_def": {signatures_json}}}\n'
            "}\n"
        )


def _model_spec(match: re.Match) -> tuple[str, int | None, str | None]:
    """Model name, version and label from a path match (ParseModelInfo)."""
    name = urllib.parse.unquote(match.group(1) or "")
    version = None
    if match.group(2):
        version = int(match.group(2))
        if version > INT64_MAX:
            raise invalid(f"Failed to convert version: {match.group(2)} to numeric.")
    label = urllib.parse.unquote(match.group(3)) if match.group(3) else None
    return name, version, label
