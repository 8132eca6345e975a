"""TF Serving's REST API on aiohttp: routing, predict, status, metadata and the metrics page.

Routing follows TF Serving's ``http_server.cc`` and ``http_rest_api_util.cc``: the Prometheus
path is answered first, anything else not under ``/v1/`` gets a plain HTML 404, and ``/v1/``
paths are matched with TF Serving's (case-insensitive) regular expressions; a path or method
they do not match is ``Malformed request: <METHOD> <path>`` (400). Every answer carries
``Server: tfsload-standin/<version>``, which is how tools tell the stand-in from TF Serving.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.protobuf import json_format

from standin import SERVER_HEADER
from standin.flags import Flags
from standin.json_writer import error_body
from standin.metrics import Metrics
from standin.predictor import Predictor
from standin.rest_json import parse_body, request_tensors, response_body
from standin.servable import DEFAULT_SIGNATURE
from standin.status import ServingError, invalid

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


@dataclass
class _Call:
    """What the request log and metrics need about a call, filled in as it is parsed."""

    model_name: str = ""
    api: str = ""


class RestApi:
    """The aiohttp application serving one Predictor."""

    def __init__(
        self, predictor: Predictor, metrics: Metrics, flags: Flags, metrics_path: str | None
    ) -> None:
        self._predictor = predictor
        self._metrics = metrics
        self._metrics_path = metrics_path
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

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _reply(
        self, status: int, text: str, content_type: str = "application/json"
    ) -> web.Response:
        headers = {**self._headers, "Content-Type": content_type}
        return web.Response(status=status, body=text.encode("utf-8"), headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        if self._metrics_path is not None and path == self._metrics_path:
            return self._reply(200, self._metrics.render(), "text/plain")
        if not _API.fullmatch(path):
            return self._reply(404, _NOT_FOUND_HTML, "text/html")
        if request.content_length is not None and request.content_length > self._max_body:
            return self._too_large(request.content_length)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return self._too_large(exc.actual_size)
        start = time.perf_counter()
        call = _Call()
        try:
            async with self._slots:
                text = await self._process(request, path, body, call)
        except ServingError as exc:
            self._metrics.request(call.model_name, exc.code_name, call.api, "REST", 0)
            return self._reply(exc.http_status, error_body(exc.message))
        micros = (time.perf_counter() - start) * 1e6
        self._metrics.request(call.model_name, "OK", call.api, "REST", micros)
        return self._reply(200, text)

    def _too_large(self, size: int) -> web.Response:
        return self._reply(
            413,
            error_body(
                f"Request body of {size} bytes is larger than the stand-in's limit of "
                f"{self._max_body} bytes (--rest_api_max_body_bytes)"
            ),
        )

    async def _process(self, request: web.Request, path: str, body: bytes, call: _Call) -> str:
        """The JSON body of a successful call; raises ServingError. Fills ``call`` for metrics."""
        method = request.method
        if method == "OPTIONS":
            if not re.search(r"https?://", request.headers.get("Origin", "")):
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Origin header is missing in CORS preflight",
                )
            return ""
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
            return self._metadata(name, version, label)
        return self._status(name, version)

    async def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> str:
        doc = parse_body(body)  # JSON errors come before the model lookup, as in TF Serving
        signature_name = doc.get("signature_name", "")
        servable = self._predictor.resolve(name, version, label)
        key = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        tensors, rows = request_tensors(doc, signature.inputs, signature_name)
        specs = signature.inputs

        def decode(alias: str, array):
            return specs[alias].dtype, array

        try:
            async with asyncio.timeout(self._timeout):
                prediction = await self._predictor.predict(
                    name, version, label, signature_name, tensors, decode
                )
        except TimeoutError:
            raise ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"Timed out after {self._timeout * 1000:.0f} ms (--rest_api_timeout_in_ms)",
            ) from None
        return response_body(prediction.outputs, prediction.dtypes, rows)

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
