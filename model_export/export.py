"""Write a trained model as a TF Serving version directory, atomically.

Everything is assembled in a hidden temporary directory next to the target and renamed into
place at the end, so a server polling the model base path never sees a half-written version and
an interrupted export leaves nothing that looks like a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_export import INPUT_NAME, MAXLEN, OUTPUT_NAME, SIGNATURE_NAME, ExportError
from model_export.data import Dataset
from tfsload.core.files import write_json_atomic

N_INSTANCES = 5
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


@dataclass(frozen=True)
class ExportResult:
    """What an export produced; the Keras model is kept for callers that compare outputs."""

    version_dir: Path
    instances_path: Path
    metadata: dict
    model: object


def prepare_target(out: Path, model_name: str, version: int, force: bool) -> tuple[Path, Path]:
    """Check the destination before any training: fail fast on a bad ``--out`` or a clash.

    Returns (final version directory, empty staging directory beside it).
    """
    model_dir = out / model_name
    final = model_dir / str(version)
    if final.exists() and not force:
        raise ExportError(f"--out {final} already exists; pass --force to replace it")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".export-{version}-", dir=model_dir))
        staging.chmod(0o755)  # servers in containers may run as another user
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return final, staging


def write_warmup(version_dir: Path, model_name: str, instances: np.ndarray) -> None:
    """Write TF Serving warm-up records: PredictionLogs for batch 1 and the 5-row request.

    TF Serving replays them before it reports the model AVAILABLE, so the first real requests do
    not pay for graph tracing and memory allocation.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for rows in (instances[:1], instances):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_NAME)
            )
            request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(rows, dtype=tf.int32))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def install(staging: Path, final: Path) -> None:
    """Rename the staged version into place, replacing an older one only after success."""
    old = None
    if final.exists():
        old = final.with_name(f".replaced-{final.name}-{os.getpid()}")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train_and_export(
    data: Dataset,
    *,
    out: Path,
    model_name: str,
    version: int,
    epochs: int,
    seed: int,
    force: bool,
    verbose: int = 2,
) -> ExportResult:
    """Train the transformer on ``data`` and export version ``version`` under ``out``."""
    final, staging = prepare_target(out, model_name, version, force)
    try:
        import keras
        import tensorflow as tf

        from model_export.model import build_model

        model = build_model(seed)
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=32,
            epochs=epochs,
            validation_data=(data.x_val, data.y_val),
            verbose=verbose,
        )
        _, val_accuracy = model.evaluate(data.x_val, data.y_val, batch_size=256, verbose=0)
        model.export(str(staging), format="tf_saved_model", verbose=False)
        instances = data.x_val[:N_INSTANCES].astype(np.int32)
        write_warmup(staging, model_name, instances)
        metadata = {
            "model_name": model_name,
            "version": version,
            "data_source": data.source,
            "train_rows": len(data.x_train),
            "validation_rows": len(data.x_val),
            "epochs": epochs,
            "seed": seed,
            "validation_accuracy": round(float(val_accuracy), 4),
            "parameters": int(model.count_params()),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "signature_name": SIGNATURE_NAME,
            "inputs": {INPUT_NAME: {"dtype": "DT_INT32", "shape": [-1, MAXLEN]}},
            "outputs": {OUTPUT_NAME: {"dtype": "DT_FLOAT", "shape": [-1, 2]}},
            "saved_model_bytes": directory_size(staging),
        }
        install(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    instances_path = final.parent / "instances.json"
    write_json_atomic(instances_path, instances.tolist())
    write_json_atomic(final.parent / "metadata.json", metadata)
    return ExportResult(final, instances_path, metadata, model)
