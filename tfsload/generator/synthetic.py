"""Requests made up from the model's signature (``--generate-instances ROWS``).

A user with a model and no data can still load-test it: every input gets random values of its
dtype and shape, reproducible from ``--seed``. Floats are uniform in [0, 1); integers uniform in
``--int-min``..``--int-max`` (token ids must stay inside the model's vocabulary, so the range is
the user's to give), clipped to what the dtype holds; booleans fair coin flips; strings short
lowercase words. An input whose inner size the signature leaves open cannot be made up: the
user must give an instances file for it.
"""

from __future__ import annotations

import numpy as np

from tfsload.core.errors import ConfigError
from tfsload.core.instances import Column, InstanceRequest
from tfsload.core.run_spec import Workload
from tfsload.generator import tensors
from tfsload.generator.signature import Signature, TensorSpec

WHERE = "--generate-instances"
WORD_LENGTHS = (3, 10)  # random strings are this many letters, at least and at most


def _shape(name: str, spec: TensorSpec, rows: int) -> tuple[int, ...]:
    if spec.shape is None or not spec.shape:
        kind = "an unknown shape" if spec.shape is None else "no rows (a scalar)"
        raise ConfigError(f"{WHERE}: input {name!r} has {kind}: give an --instances-file")
    leading, *inner = spec.shape
    if leading >= 0 and leading != rows:
        raise ConfigError(f"{WHERE}: input {name!r} takes {leading} rows per request, not {rows}")
    if any(size < 0 for size in inner):
        raise ConfigError(
            f"{WHERE}: input {name!r} is {spec.describe()}: its inner size is open, so values "
            "cannot be made up; give an --instances-file"
        )
    return (rows, *inner)


def _values(spec: TensorSpec, shape: tuple[int, ...], workload: Workload, rng) -> np.ndarray:
    dtype = tensors.DTYPES[spec.dtype]
    if dtype.kind == "float":
        return rng.random(shape).astype(dtype.numpy)
    if dtype.kind == "bool":
        return rng.random(shape) < 0.5
    if dtype.kind == "int":
        smallest, largest = tensors.int_limits(spec.dtype)
        low, high = max(workload.int_min, smallest), min(workload.int_max, largest)
        if low > high:
            raise ConfigError(
                f"--int-min/--int-max: {workload.int_min}..{workload.int_max} holds no "
                f"{spec.dtype} value ({smallest}..{largest})"
            )
        return rng.integers(low, high, size=shape, dtype=dtype.numpy, endpoint=True)
    lengths = rng.integers(*WORD_LENGTHS, size=shape, endpoint=True)
    words = [
        bytes(rng.integers(ord("a"), ord("z"), size=length, endpoint=True).astype(np.uint8))
        for length in lengths.reshape(-1)
    ]
    return np.array(words, dtype=object).reshape(shape)


def generate(signature: Signature, workload: Workload) -> InstanceRequest:
    """One request of ``workload.generate_instances`` rows for every input of ``signature``."""
    rows = workload.generate_instances
    rng = np.random.default_rng(workload.seed)
    inputs = {}
    for name, spec in signature.inputs.items():
        dtype = tensors.lookup(spec.dtype)
        if dtype is None:
            raise ConfigError(f"{WHERE}: input {name!r} is {spec.dtype}, which tfsload cannot send")
        shape = _shape(name, spec, rows)
        array = _values(spec, shape, workload, rng)
        low = int(array.min()) if dtype.kind == "int" else None
        high = int(array.max()) if dtype.kind == "int" else None
        values = tensors.json_values(array, spec.dtype)
        inputs[name] = Column(values, dtype.kind, shape, low, high)
    return InstanceRequest(inputs)
