"""TF Serving's gRPC services on ``grpc.aio``, built on ``tensorflow-serving-api``'s stubs.

``PredictionService.Predict`` and ``GetModelMetadata`` and ``ModelService.GetModelStatus``
answer with TF Serving's status codes and messages; the Predict response echoes the resolved
model spec and returns outputs in the typed TensorProto fields, as TF Serving does by default.
The methods the stand-in does not implement say so with UNIMPLEMENTED.
"""

from __future__ import annotations

import time

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from standin.metrics import Metrics
from standin.predictor import Predictor, decode_proto
from standin.status import ServingError, invalid
from standin.tensors import from_ndarray

SIGNATURE_DEF_FIELD = "signature_def"


def _spec(model_spec) -> tuple[str, int | None, str | None]:
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


async def _unsupported(context: grpc.aio.ServicerContext, method: str) -> None:
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED, f"{method} is not supported by the tfsload stand-in"
    )


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor, metrics: Metrics) -> None:
        self._predictor = predictor
        self._metrics = metrics

    async def Predict(self, request, context):
        start = time.perf_counter()
        name = request.model_spec.name
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            prediction = await self._predictor.predict(
                *_spec(request.model_spec),
                request.model_spec.signature_name,
                request.inputs,
                decode_proto,
                tuple(request.output_filter),
            )
        except ServingError as exc:
            self._metrics.request(name, exc.code_name, "Predict", "GRPC", 0)
            await context.abort(exc.code, exc.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = prediction.version
        response.model_spec.signature_name = prediction.signature_name
        for alias, array in prediction.outputs.items():
            from_ndarray(array, prediction.dtypes[alias], response.outputs[alias])
        self._metrics.request(name, "OK", "Predict", "GRPC", (time.perf_counter() - start) * 1e6)
        return response

    async def GetModelMetadata(self, request, context):
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
    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor

    async def GetModelStatus(self, request, context):
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


def add_services(server: grpc.aio.Server, predictor: Predictor, metrics: Metrics) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(predictor, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor), server)
