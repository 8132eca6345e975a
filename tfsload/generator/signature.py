"""The model's signature: every input and output of the signature a run calls.

TF Serving describes a model with the SavedModel's ``SignatureDefMap`` (asked for before any
load by :mod:`tfsload.generator.metadata`); a run's requests are fitted to the chosen
signature's inputs and its answers judged by its outputs. Which version (or version label) a
request names is part of the same choice, so the helpers that write it live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from tfsload.core.errors import ConfigError
from tfsload.core.run_spec import Workload
from tfsload.generator.tensors import dtype_name


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: its dtype name and shape (-1 for any size; None for an
    unknown rank)."""

    dtype: str
    shape: tuple[int, ...] | None

    def describe(self) -> str:
        shape = "unknown shape" if self.shape is None else str(list(self.shape))
        return f"{self.dtype} {shape}"


@dataclass(frozen=True)
class Signature:
    """The chosen signature of the served model, and who described it."""

    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    source: str


def _tensor_spec(info) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(dim.size for dim in shape.dim)
    return TensorSpec(dtype_name(info.dtype), dims)


def from_signature_defs(signature_defs, workload: Workload, source: str) -> Signature:
    """The workload's signature out of a ``SignatureDefMap``; ConfigError when it has none."""
    defs = signature_defs.signature_def
    chosen = defs.get(workload.signature_name)
    if chosen is None:
        names = ", ".join(sorted(n for n in defs if not n.startswith("__"))) or "none"
        raise ConfigError(
            f"--signature-name: model {workload.model_name!r} at {source} has no signature "
            f"{workload.signature_name!r} (it has: {names})"
        )
    return Signature(
        name=workload.signature_name,
        inputs={name: _tensor_spec(info) for name, info in sorted(chosen.inputs.items())},
        outputs={name: _tensor_spec(info) for name, info in sorted(chosen.outputs.items())},
        source=source,
    )


def version_path(workload: Workload) -> str:
    """``/versions/<n>``, ``/labels/<label>`` or nothing: the REST path part that picks one."""
    version = workload.model_version
    if not version:
        return ""
    kind = "versions" if version.isdigit() else "labels"
    return f"/{kind}/{quote(version, safe='')}"


def set_version(model_spec, workload: Workload) -> None:
    """Fill a ModelSpec's version or version label from the workload."""
    version = workload.model_version
    if version.isdigit():
        model_spec.version.value = int(version)
    elif version:
        model_spec.version_label = version
