"""The exported SavedModel is what TF Serving and the original clients expect."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_export import INPUT_NAME, MAXLEN, OUTPUT_NAME, SIGNATURE_NAME, VOCAB_SIZE
from model_export.data import pad_pre, synthetic
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def signature(exported_model):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported_model.version_dir))
    return loaded.signatures[SIGNATURE_NAME]


def test_signature_names_dtypes_and_shapes(signature):
    import tensorflow as tf

    inputs = signature.structured_input_signature[1]
    assert list(inputs) == [INPUT_NAME]
    assert inputs[INPUT_NAME].dtype == tf.int32
    assert inputs[INPUT_NAME].shape.as_list() == [None, MAXLEN]
    outputs = signature.structured_outputs
    assert list(outputs) == [OUTPUT_NAME]
    assert outputs[OUTPUT_NAME].dtype == tf.float32
    assert outputs[OUTPUT_NAME].shape.as_list() == [None, 2]


def test_saved_model_matches_keras_and_sums_to_one(exported_model, signature):
    rows = synthetic(n_train=1, n_val=64, seed=7).x_val
    keras_out = exported_model.model.predict(rows, verbose=0)
    served = signature(**{INPUT_NAME: rows})[OUTPUT_NAME].numpy()
    np.testing.assert_allclose(served, keras_out, atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_parameter_count_and_metadata(exported_model):
    meta = json.loads((exported_model.version_dir.parent / "metadata.json").read_text())
    assert meta["parameters"] == 657_758
    assert meta["data_source"] == "synthetic"
    assert meta["inputs"] == {INPUT_NAME: {"dtype": "DT_INT32", "shape": [-1, MAXLEN]}}
    assert meta["validation_accuracy"] > 0.70, "synthetic data must be learnable"


def test_instances_are_five_valid_rows(exported_model):
    instances = json.loads(exported_model.instances_path.read_text())
    arr = np.asarray(instances)
    assert arr.shape == (5, MAXLEN)
    assert arr.dtype.kind == "i"
    assert arr.min() >= 0 and arr.max() < VOCAB_SIZE
    assert (arr != 0).any(axis=1).all(), "each instance holds a review, not only padding"


def test_warmup_records_parse_and_run(exported_model, signature):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported_model.version_dir / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert 1 <= len(records) <= 1000
    batch_sizes = []
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        request = log.predict_log.request
        assert request.model_spec.name == "model"
        assert request.model_spec.signature_name == SIGNATURE_NAME
        rows = tf.make_ndarray(request.inputs[INPUT_NAME])
        assert rows.dtype == np.int32
        out = signature(**{INPUT_NAME: rows})[OUTPUT_NAME].numpy()
        assert out.shape == (len(rows), 2)
        batch_sizes.append(len(rows))
    assert 5 in batch_sizes


def test_pad_pre_keeps_the_tail_like_the_original():
    padded = pad_pre([np.arange(1, 4), np.arange(1, 300)], maxlen=5)
    assert padded.tolist() == [[0, 0, 1, 2, 3], [295, 296, 297, 298, 299]]


def test_refuses_to_overwrite_an_existing_version(exported_model):
    out = exported_model.version_dir.parents[1]
    before = sorted(p.name for p in exported_model.version_dir.iterdir())
    result = run_cli("-m", "model_export", "--data", "synthetic", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in exported_model.version_dir.iterdir()) == before


def test_corrupt_imdb_npz_is_one_line_error(tmp_path):
    bad = tmp_path / "imdb.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    result = run_cli(
        "-m",
        "model_export",
        "--data",
        "imdb",
        "--imdb-npz",
        str(bad),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--imdb-npz" in lines[0] and str(bad) in lines[0]
    assert not (tmp_path / "out" / "model" / "1").exists()


def test_unwritable_out_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    result = run_cli("-m", "model_export", "--data", "synthetic", "--out", str(blocker / "m"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0]


def test_imdb_npz_is_encoded_like_keras(tmp_path):
    """A small real-format npz goes through the keras id scheme and pre-padding."""
    from model_export.data import load_imdb_npz

    reviews = np.empty(4, dtype=object)
    for i in range(4):
        reviews[i] = [*range(1, 10 + i), 30000]
    path = tmp_path / "imdb.npz"
    np.savez(
        path,
        x_train=reviews,
        y_train=np.array([0, 1, 0, 1]),
        x_test=reviews,
        y_test=np.array([1, 0, 1, 0]),
    )
    data = load_imdb_npz(path)
    assert data.x_train.shape == (4, MAXLEN) and data.x_train.dtype == np.int32
    row = data.x_train[0][data.x_train[0] != 0]
    assert row[0] == 1 and row[-1] == 2, "start marker first, out-of-vocabulary id last"
    assert row[1] == 1 + 3, "word ranks are shifted by index_from=3"


def test_cli_exports_end_to_end(tmp_path):
    result = run_cli(
        "-m",
        "model_export",
        "--data",
        "synthetic",
        "--samples",
        "64",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--model-name",
        "tiny",
        "--version",
        "3",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "synthetic" in result.stdout
    assert (tmp_path / "tiny" / "3" / "saved_model.pb").is_file()
    assert not [p for p in (tmp_path / "tiny").iterdir() if p.name.startswith(".")]
