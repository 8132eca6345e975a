"""The served model: find the version directory, load the SavedModel, describe and run it.

TF Serving serves the highest numeric version under ``--model_base_path`` and describes it with
the SignatureDefs stored in ``saved_model.pb``; the stand-in does the same, and runs the
signature functions TensorFlow restores from that SavedModel. Runtime failures (an
out-of-vocabulary token, a wrong row length) come back as TensorFlow reports them, under TF
Serving's status codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from standin.status import ServingError, code_from_number, invalid
from tfsload.core.errors import ConfigError

SAVED_MODEL_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


def find_version(base_path: str) -> tuple[int, Path]:
    """The highest numeric version directory under ``--model_base_path`` (no TensorFlow)."""
    base = Path(base_path)
    try:
        versions = sorted(
            (int(child.name), child)
            for child in base.iterdir()
            if child.name.isdigit() and child.is_dir()
        )
    except FileNotFoundError:
        raise ConfigError(f"--model_base_path {base_path}: no such directory") from None
    except OSError as exc:  # a regular file, a path below one, no permission
        reason = exc.strerror or str(exc)
        raise ConfigError(f"--model_base_path {base_path}: cannot list it ({reason})") from None
    if not versions:
        raise ConfigError(
            f"--model_base_path {base_path}: no version directory in it "
            "(expected numeric subdirectories such as 1/ holding a SavedModel)"
        )
    version, path = versions[-1]
    if not (path / "saved_model.pb").is_file():
        raise ConfigError(f"--model_base_path {base_path}: {path} has no saved_model.pb")
    return version, path


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its TensorFlow dtype enum, numpy dtype and shape."""

    dtype: int
    np_dtype: np.dtype | None
    shape: tuple[int | None, ...] | None  # None: unknown rank; None entries: unknown dims


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    function: object  # the restored signature function, or None when it cannot be called


def _spec(tensor_info) -> TensorSpec:
    import tensorflow as tf

    try:
        np_dtype = np.dtype(tf.dtypes.as_dtype(tensor_info.dtype).as_numpy_dtype)
    except TypeError:
        np_dtype = None
    shape_proto = tensor_info.tensor_shape
    shape = (
        None
        if shape_proto.unknown_rank
        else tuple(None if d.size < 0 else d.size for d in shape_proto.dim)
    )
    return TensorSpec(tensor_info.dtype, np_dtype, shape)


def _clean_message(message: str) -> str:
    """TensorFlow's op error without the eager wrapper text TF Serving's C++ never adds."""
    if message.startswith("Graph execution error:"):
        marker = "<stack traces unavailable>\n"
        parts = message.split(marker, 1) if marker in message else message.split("\n\n", 1)
        message = parts[-1]
    return re.sub(r" \[Op:[^\]]*\]$", "", message.strip())


class Servable:
    """A loaded model version, callable from any thread (TensorFlow releases the GIL)."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        self.name = name
        self.version = version
        self.path = path
        saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        meta_graph = next(
            (mg for mg in saved_model.meta_graphs if SAVED_MODEL_TAG in mg.meta_info_def.tags),
            None,
        )
        if meta_graph is None:
            raise ConfigError(f"{path}: the SavedModel has no '{SAVED_MODEL_TAG}' tag-set")
        self.signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in meta_graph.signature_def.items():
            self.signature_def_map.signature_def[key].CopyFrom(signature_def)
        self._loaded = tf.saved_model.load(str(path), tags=[SAVED_MODEL_TAG])
        functions = self._loaded.signatures
        self.signatures = {
            key: Signature(
                name=key,
                method_name=sd.method_name,
                inputs={alias: _spec(info) for alias, info in sd.inputs.items()},
                outputs={alias: _spec(info) for alias, info in sd.outputs.items()},
                function=functions.get(key),
            )
            for key, sd in meta_graph.signature_def.items()
        }

    def run(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``signature`` on numpy inputs; TensorFlow errors become ServingErrors."""
        import tensorflow as tf

        if signature.function is None:
            raise invalid(f'Serving signature key "{signature.name}" cannot be run.')
        try:
            outputs = signature.function(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            error = ServingError(code_from_number(exc.error_code), _clean_message(exc.message))
            raise error from None
        except (TypeError, ValueError) as exc:
            raise invalid(str(exc).splitlines()[0]) from None
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}
