"""Shared fixtures: one real trained model per test session, exported the way users export it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
# Enough synthetic rows for the model to learn (validation accuracy well above 0.7) while the
# whole export stays around 30 s on two cores.
TEST_SAMPLES = 3000


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """Train on synthetic data and export ``model`` version 1, once per session."""
    from model_export.data import synthetic
    from model_export.export import train_and_export

    out = tmp_path_factory.mktemp("models")
    data = synthetic(n_train=TEST_SAMPLES, n_val=TEST_SAMPLES, seed=0)
    return train_and_export(
        data, out=out, model_name="model", version=1, epochs=2, seed=0, force=False, verbose=0
    )


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m ...`` from the repository root with the test interpreter."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture(scope="session")
def standin(exported_model, tmp_path_factory):
    """One stand-in for the session: the exported model, batching off, metrics on.

    Tests that share it must not depend on its metrics starting at zero (read deltas).
    """
    from tests.standin_process import start_standin

    monitoring = tmp_path_factory.mktemp("standin") / "monitoring.cfg"
    monitoring.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    )
    with start_standin(
        exported_model.version_dir.parent, f"--monitoring_config_file={monitoring}"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def saved_model_outputs(exported_model):
    """``rows -> output_0`` computed by the exported SavedModel itself, in this process."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(exported_model.version_dir)).signatures["serving_default"]

    def predict(rows) -> np.ndarray:
        return signature(input_1=tf.constant(np.asarray(rows, dtype=np.int32)))["output_0"].numpy()

    return predict
