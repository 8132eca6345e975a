"""The model behind both transports: lookup, request checks, batched or direct runs, status.

REST and gRPC requests end up here as TF Serving's ``TensorflowPredictor`` sees them: the model
spec is resolved (``Servable not found for request: Latest(foo)``), the signature looked up, the
inputs checked against it in TF Serving's order, and the model run either through the shared
:class:`~standin.batcher.Batcher` or directly on a worker thread. Warm-up replays its records
through the same checks, so a record TF Serving would reject fails the load here too.

Every input's shape is checked against the signature, and the request's rows and decoded bytes
against the stand-in's limits, before anything is decoded (standin/limits.py). A request whose
caller gave up (a gRPC deadline or cancellation, a REST time-out or disconnect) is abandoned
where it waits: it leaves its batch, or never takes a model thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from standin.batcher import Batcher
from standin.faults import Faults
from standin.limits import STRING_ELEMENT_BYTES, Limits, check_shape
from standin.metrics import Metrics
from standin.servable import DEFAULT_SIGNATURE, Servable, Signature, TensorSpec
from standin.status import ServingError, invalid, not_found
from standin.tensors import dtype_name, inspect, to_ndarray
from tfsload.core.errors import ConfigError
from tfsload.core.serving_config import BatchingConfig

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


@dataclass(frozen=True)
class Codec:
    """How one transport's request inputs are sized and decoded.

    ``inspect(alias, value, spec)`` gives (DataType enum, shape, decoded bytes) without
    decoding; ``decode(alias, value)`` gives the array. Both raise ServingError.
    """

    inspect: Callable[[str, object, TensorSpec], tuple[int, tuple[int, ...], int]]
    decode: Callable[[str, object], np.ndarray]


def _inspect_proto(alias: str, proto, spec: TensorSpec) -> tuple[int, tuple[int, ...], int]:
    shape, size = inspect(proto, alias)
    return proto.dtype, shape, size


def _inspect_array(alias: str, array: np.ndarray, spec: TensorSpec):
    size = array.size * STRING_ELEMENT_BYTES if array.dtype.kind == "O" else array.nbytes
    return spec.dtype, array.shape, size


PROTO_INPUTS = Codec(_inspect_proto, lambda alias, proto: to_ndarray(proto, alias))
# REST inputs arrive as arrays already built for the signature's dtypes (standin/rest_json.py).
ARRAY_INPUTS = Codec(_inspect_array, lambda alias, array: array)


@dataclass(frozen=True)
class Prepared:
    """A checked request: what to run and which outputs to return."""

    signature: Signature
    arrays: dict[str, np.ndarray]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Prediction:
    version: int
    signature_name: str
    outputs: dict[str, np.ndarray]
    dtypes: dict[str, int]
    fault: str | None = None  # standin.faults.DROP or MALFORMED: what the transport does


def _names(keys) -> str:
    return ",".join(sorted(keys))


class Predictor:
    """Serves one model version; its state is what GetModelStatus reports."""

    def __init__(
        self,
        model_name: str,
        version: int,
        metrics: Metrics,
        batching: BatchingConfig | None,
        model_threads: int,
        limits: Limits | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.model_name = model_name
        self.version = version
        self.state = "LOADING"
        self.servable: Servable | None = None
        self.limits = limits
        self._metrics = metrics
        self._faults = faults
        self._executor = ThreadPoolExecutor(model_threads, "predict")
        # Taken before a request is handed to a model thread and given back when that thread is
        # done: requests wait here, where a cancelled one simply leaves (its arrays with it).
        self._model_slots = asyncio.Semaphore(model_threads)
        self._batcher = Batcher(batching, self._run_batch, metrics) if batching else None

    def resolve(self, name: str, version: int | None, label: str | None) -> Servable:
        """ServerCore::GetServableHandle: the servable for a model spec, or TF Serving's error."""
        if not name:
            raise invalid("ModelSpec has no name specified.")
        if label is not None:
            raise invalid(f"Unrecognized servable version label: {label}")
        servable = self.servable
        if servable is None or name != self.model_name or version not in (None, servable.version):
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise not_found(f"Servable not found for request: {request}")
        return servable

    def status(self, name: str, version: int | None) -> list[tuple[int, str]]:
        """(version, state) pairs, as GetModelStatusImpl reports them."""
        if name != self.model_name:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None and version != self.version:
            raise not_found(f"Could not find version {version} of model {name}")
        return [(self.version, self.state)]

    def prepare(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, object],
        codec: Codec,
        output_filter: tuple[str, ...] = (),
        limits: Limits | None = None,
    ) -> Prepared:
        """TF Serving's RunPredict/PreProcessPrediction checks, in its order, then the
        signature's shapes and ``limits``; inputs are decoded only when all of them pass."""
        key = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(key)
        if signature is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        expected = signature.inputs
        defaults = servable.signature_def_map.signature_def[key].defaults
        if len(inputs) > len(expected) or (len(inputs) < len(expected) and not defaults):
            extra = set(inputs) - set(expected)
            missing = set(expected) - set(inputs)
            raise invalid(
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"len({{{_names(inputs)}}}) != len({{{_names(expected)}}}). "
                f"Sent extra: {{{_names(extra)}}}. Missing but required: {{{_names(missing)}}}."
            )
        shapes: dict[str, tuple[int, ...]] = {}
        sizes: dict[str, int] = {}
        for alias, value in inputs.items():
            if alias not in expected:
                raise invalid(
                    f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{_names(expected)}}}."
                )
            spec = expected[alias]
            dtype, shape, size = codec.inspect(alias, value, spec)
            if dtype != spec.dtype:
                index = sorted(expected).index(alias)
                raise invalid(
                    f"Expects arg[{index}] to be {dtype_name(spec.dtype)} "
                    f"but {dtype_name(dtype)} is provided"
                )
            check_shape(alias, spec, shape)
            shapes[alias], sizes[alias] = shape, size
        if limits is not None:
            limits.check(shapes, sizes)
        outputs = tuple(output_filter) or tuple(signature.outputs)
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{_names(signature.outputs)}}}."
                )
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        arrays = {alias: codec.decode(alias, value) for alias, value in inputs.items()}
        return Prepared(signature, arrays, outputs)

    async def predict(
        self,
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        inputs: Mapping[str, object],
        codec: Codec,
        output_filter: tuple[str, ...] = (),
    ) -> Prediction:
        """Check and run one predict request (either transport)."""
        servable = self.resolve(name, version, label)
        prepared = self.prepare(servable, signature_name, inputs, codec, output_filter, self.limits)
        fault = await self._faults.predict() if self._faults is not None else None
        signature = prepared.signature
        start = time.perf_counter()
        if self._batcher is not None:
            shapes = tuple(
                (alias, array.dtype.str, array.shape[1:])
                for alias, array in sorted(prepared.arrays.items())
            )
            outputs = await self._batcher.submit((signature.name, shapes), prepared.arrays)
        else:
            outputs = await self._run_direct(servable, signature, prepared.arrays)
        self._metrics.runtime(name, (time.perf_counter() - start) * 1e6)
        return Prediction(
            version=servable.version,
            signature_name=signature.name,
            outputs={alias: outputs[alias] for alias in prepared.outputs},
            dtypes={alias: signature.outputs[alias].dtype for alias in prepared.outputs},
            fault=fault,
        )

    async def _run_direct(
        self, servable: Servable, signature: Signature, arrays: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run on a model thread once one is free. Cancelled while waiting, the request just
        leaves; cancelled while running, its thread finishes and only then frees its slot."""
        await self._model_slots.acquire()
        loop = asyncio.get_running_loop()

        def release(_future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone at exit
                loop.call_soon_threadsafe(self._model_slots.release)

        try:
            future = self._executor.submit(servable.run, signature, arrays)
        except BaseException:
            self._model_slots.release()
            raise
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def _run_batch(self, key: tuple, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        servable = self.servable
        return servable.run(servable.signatures[key[0]], inputs)

    def load(self, path: Path, warmup: bool) -> int:
        """Load the SavedModel and replay its warm-up records; returns how many were replayed.

        Runs on a worker thread while the transports already answer (status LOADING).
        """
        try:
            servable = Servable(self.model_name, self.version, path)
        except ConfigError:
            raise
        except Exception as exc:  # TensorFlow's many ways of refusing a SavedModel
            first = (str(exc).strip().splitlines() or [""])[0]
            problem = f"{type(exc).__name__}: {first}"
            raise ConfigError(f"{path}: cannot load the SavedModel ({problem})") from None
        replayed = self._warm_up(servable) if warmup else 0
        self.servable = servable
        self.state = "AVAILABLE"
        return replayed

    def _warm_up(self, servable: Servable) -> int:
        """TF Serving's saved_model_warmup: PredictionLog records, at most 1000, all must pass."""
        import tensorflow as tf
        from google.protobuf.message import DecodeError
        from tensorflow_serving.apis import prediction_log_pb2

        path = servable.path / WARMUP_FILE
        if not path.exists():
            return 0
        try:
            records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
        except tf.errors.OpError as exc:
            raise ConfigError(f"{path}: cannot read the warm-up records ({exc.message})") from None
        if len(records) > MAX_WARMUP_RECORDS:
            raise ConfigError(
                f"{path}: Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS})"
            )
        for index, raw in enumerate(records):
            try:
                log = prediction_log_pb2.PredictionLog.FromString(raw)
                if log.WhichOneof("log_type") != "predict_log":
                    raise invalid(
                        f"Unsupported log_type for warmup: {log.WhichOneof('log_type')} "
                        "(the stand-in replays predict_log records)"
                    )
                request = log.predict_log.request
                prepared = self.prepare(
                    servable,
                    request.model_spec.signature_name,
                    request.inputs,
                    PROTO_INPUTS,
                    tuple(request.output_filter),
                )
                servable.run(prepared.signature, prepared.arrays)
            except DecodeError:
                raise ConfigError(
                    f"{path}: warm-up record {index} is not a PredictionLog"
                ) from None
            except ServingError as exc:
                raise ConfigError(f"{path}: warm-up record {index} failed: {exc.message}") from None
        return len(records)

    def flush(self) -> None:
        """Queued batches run now instead of waiting to fill (shutdown has begun)."""
        if self._batcher is not None:
            self._batcher.flush()

    async def close(self) -> None:
        """Let queued and running work finish, then stop the worker threads."""
        self.state = "END"
        if self._batcher is not None:
            await self._batcher.close()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
