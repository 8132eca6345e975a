"""A small TF Serving look-alike whose predict answers a test chooses, right or wrong.

It describes one signature (GetModelMetadata over gRPC, ``GET .../metadata`` over REST, as TF
Serving writes them, or answers neither, as a gateway that does not route metadata) and answers
each predict with the outputs ``answer(rows, protocol)`` returns, ``{name: (values, dtype)}``,
so a test can send the Locust users answers of the wrong shape, dtype or row count and see how
they are judged. REST answers are row form (``predictions``) or columnar (``outputs``), as the
request was. Both ports bind to 127.0.0.1; the context manager stops them.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
from google.protobuf import json_format

from tfsload.core import protos
from tfsload.generator.signature import Signature
from tfsload.generator.tensors import tensor_proto

Outputs = dict[str, tuple[list, str]]  # name -> (values, DT_... dtype)


@dataclass
class AnswerServer:
    rest_url: str
    grpc_target: str
    predicts: collections.Counter  # predict calls answered, by protocol
    metadata_asks: list  # (protocol, headers or gRPC metadata as a dict) of each metadata call


def signature_defs(signature: Signature):
    """The SignatureDefMap a server with this signature describes."""
    defs = protos.load().SignatureDefMap()
    chosen = defs.signature_def[signature.name]
    chosen.method_name = "tensorflow/serving/predict"
    for infos, specs in ((chosen.inputs, signature.inputs), (chosen.outputs, signature.outputs)):
        for name, spec in specs.items():
            infos[name].name = f"{name}:0"
            infos[name].dtype = protos.dtype_number(spec.dtype)
            for size in spec.shape:
                infos[name].tensor_shape.dim.add().size = size
    return defs


def _json_value(values: list, dtype: str) -> list:
    if dtype == "DT_STRING":
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    return np.asarray(values).tolist()


@contextlib.contextmanager
def answer_server(
    signature: Signature,
    answer: Callable[[int, str], Outputs],
    metadata: bool = True,
    certificates=None,
) -> Iterator[AnswerServer]:
    """Serve ``signature``; answer a predict of ``rows`` rows with ``answer(rows, protocol)``
    (``rest`` or ``grpc``). With ``certificates`` (tests/raw_servers.py's) both ports speak
    TLS with their server certificate: https:// and grpcs://."""
    messages = protos.load()
    defs = signature_defs(signature)
    predicts: collections.Counter = collections.Counter()
    asks: list = []

    class Rest(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            asks.append(("rest", {k.lower(): v for k, v in self.headers.items()}))
            if metadata and self.path.endswith("/metadata"):
                section = json_format.MessageToDict(defs, preserving_proto_field_name=True)
                self._send(
                    200, {"model_spec": {"name": "m"}, "metadata": {"signature_def": section}}
                )
            else:
                self._send(404, {"error": "Not found"})

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            predicts["rest"] += 1
            columnar = "inputs" in request
            if columnar:
                inputs = request["inputs"]
                first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
                rows = len(first)
            else:
                rows = len(request["instances"])
            outputs = {n: _json_value(v, d) for n, (v, d) in answer(rows, "rest").items()}
            if columnar:
                self._send(200, {"outputs": outputs})
                return
            names = list(outputs)
            count = max(len(v) for v in outputs.values()) if outputs else rows
            predictions = [{n: outputs[n][i] for n in names if i < len(outputs[n])}
                           for i in range(count)]  # fmt: skip
            self._send(200, {"predictions": predictions})

    def predict(request_bytes: bytes, context) -> bytes:
        request = messages.PredictRequest.FromString(request_bytes)
        predicts["grpc"] += 1
        rows = next(iter(request.inputs.values())).tensor_shape.dim[0].size
        response = messages.PredictResponse()
        for name, (values, dtype) in answer(rows, "grpc").items():
            response.outputs[name].CopyFrom(tensor_proto(np.asarray(values), dtype))
        return response.SerializeToString()

    def get_metadata(_request: bytes, context) -> bytes:
        asks.append(("grpc", dict(context.invocation_metadata())))
        if not metadata:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        response = messages.GetModelMetadataResponse()
        response.model_spec.name = "m"
        response.metadata["signature_def"].Pack(defs)
        return response.SerializeToString()

    http = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    http.daemon_threads = True
    if certificates is not None:
        http.socket = certificates.server_context().wrap_socket(http.socket, server_side=True)
    rest_thread = threading.Thread(target=http.serve_forever, daemon=True)
    rest_thread.start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {
            "Predict": grpc.unary_unary_rpc_method_handler(predict),
            "GetModelMetadata": grpc.unary_unary_rpc_method_handler(get_metadata),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    if certificates is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        pair = (certificates.server_key.read_bytes(), certificates.server_cert.read_bytes())
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([pair]))
    server.start()
    scheme = ("http", "") if certificates is None else ("https", "grpcs://")
    try:
        yield AnswerServer(
            f"{scheme[0]}://127.0.0.1:{http.server_port}",
            f"{scheme[1]}127.0.0.1:{port}",
            predicts,
            asks,
        )
    finally:
        server.stop(grace=None)
        http.shutdown()
        http.server_close()
        rest_thread.join(timeout=10)
