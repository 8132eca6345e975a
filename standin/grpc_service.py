"""TF Serving's gRPC services on ``grpc.aio``, built on ``tensorflow-serving-api``'s stubs.

``PredictionService.Predict`` and ``GetModelMetadata`` and ``ModelService.GetModelStatus``
answer with TF Serving's status codes and messages; the Predict response echoes the resolved
model spec and returns outputs in the typed TensorProto fields, as TF Serving does by default.
The methods the stand-in does not implement say so with UNIMPLEMENTED.

PredictionService is registered from the method table below rather than the generated helper,
so that an injected malformed answer (``--fault_malformed_rate``) can go out as raw bytes, and a
request that is not the method's message is answered INTERNAL (as gRPC's C++ server, and so TF
Serving, answers it) without a traceback. A failure inside a handler that is not a request error
is also answered INTERNAL, with one log line. What grpc.aio itself logs about a call (a message
another service could not parse, say) is cut to one debug line by :class:`OneLineFilter`.
"""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from standin.faults import DROP, MALFORMED, Faults
from standin.metrics import Metrics
from standin.predictor import PROTO_INPUTS, Predictor
from standin.status import ServingError, invalid
from standin.tensors import from_ndarray

log = logging.getLogger("standin")

SIGNATURE_DEF_FIELD = "signature_def"
# Not a PredictResponse (nor any message): the client's parser refuses it.
MALFORMED_ANSWER = b"\xff\xff\xff\xff"
DROPPED = "Connection dropped (injected fault, stand-in --fault_drop_rate)"


def _spec(model_spec) -> tuple[str, int | None, str | None]:
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


async def _unsupported(context: grpc.aio.ServicerContext, method: str) -> None:
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED, f"{method} is not supported by the tfsload stand-in"
    )


def _serialize(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


class _Unparsable:
    """Stands for a request whose bytes are not the method's message."""

    def __init__(self, message_class, error: DecodeError) -> None:
        self.text = f"Failed to parse the request as {message_class.DESCRIPTOR.full_name}: {error}"


def _parser(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return _Unparsable(message_class, exc)

    return parse


async def _refuse_unparsable(request, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Unparsable):
        log.debug("gRPC: %s", request.text)
        await context.abort(grpc.StatusCode.INTERNAL, request.text)


class OneLineFilter(logging.Filter):
    """grpc.aio's own reports about a call (an unparsable message, a client gone): one debug
    line without the traceback. Installed on the log handlers by the server."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("grpc"):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("standin").isEnabledFor(record.levelno)


async def _internal(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    log.error("gRPC %s failed: %s: %s", method, type(exc).__name__, exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor, metrics: Metrics, faults: Faults | None) -> None:
        self._predictor = predictor
        self._metrics = metrics
        self._faults = faults

    async def _gate(self) -> None:
        if self._faults is not None:
            await self._faults.gate()

    async def Predict(self, request, context):
        await _refuse_unparsable(request, context)
        await self._gate()
        start = time.perf_counter()
        name = request.model_spec.name
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            prediction = await self._predictor.predict(
                *_spec(request.model_spec),
                request.model_spec.signature_name,
                request.inputs,
                PROTO_INPUTS,
                tuple(request.output_filter),
            )
            if prediction.fault == DROP:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, DROPPED)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = prediction.version
            response.model_spec.signature_name = prediction.signature_name
            for alias, array in prediction.outputs.items():
                from_ndarray(array, prediction.dtypes[alias], response.outputs[alias])
        except ServingError as exc:
            self._metrics.request(name, exc.code_name, "Predict", "GRPC", 0)
            await self._gate()
            await context.abort(exc.code, exc.message)
        except Exception as exc:  # a bug, not a request error
            self._metrics.request(name, "INTERNAL", "Predict", "GRPC", 0)
            await _internal(context, "Predict", exc)
        await self._gate()
        self._metrics.request(name, "OK", "Predict", "GRPC", (time.perf_counter() - start) * 1e6)
        return MALFORMED_ANSWER if prediction.fault == MALFORMED else response

    async def GetModelMetadata(self, request, context):
        await _refuse_unparsable(request, context)
        await self._gate()
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid(f"Metadata field {field} is not supported")
            servable = self._predictor.resolve(*_spec(request.model_spec))
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
        return response

    async def Classify(self, request, context):
        await _unsupported(context, "Classify")

    async def Regress(self, request, context):
        await _unsupported(context, "Regress")

    async def MultiInference(self, request, context):
        await _unsupported(context, "MultiInference")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor, faults: Faults | None) -> None:
        self._predictor = predictor
        self._faults = faults

    async def GetModelStatus(self, request, context):
        if self._faults is not None:
            await self._faults.gate()
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            name, version, _ = _spec(request.model_spec)
            states = self._predictor.status(name, version)
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state in states:
            entry = response.model_version_status.add(version=number)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            entry.status.SetInParent()  # error_code OK, error_message "", as TF Serving sends
        return response

    async def HandleReloadConfigRequest(self, request, context):
        await _unsupported(context, "HandleReloadConfigRequest")


def add_services(
    server: grpc.aio.Server, predictor: Predictor, metrics: Metrics, faults: Faults | None = None
) -> None:
    service = PredictionService(predictor, metrics, faults)
    methods = {
        "Predict": (service.Predict, predict_pb2.PredictRequest),
        "GetModelMetadata": (
            service.GetModelMetadata,
            get_model_metadata_pb2.GetModelMetadataRequest,
        ),
        "Classify": (service.Classify, classification_pb2.ClassificationRequest),
        "Regress": (service.Regress, regression_pb2.RegressionRequest),
        "MultiInference": (service.MultiInference, inference_pb2.MultiInferenceRequest),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=_parser(message), response_serializer=_serialize
        )
        for name, (method, message) in methods.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", handlers),)
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(predictor, faults), server
    )
