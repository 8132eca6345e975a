"""Small SavedModels that are not the IMDB classifier, built with TensorFlow for the tests.

No training: each model is a few TensorFlow ops behind a serving signature, saved the way TF
Serving loads models (``<base>/<name>/1/saved_model.pb``). Together they reach what a user's own
model may have and the IMDB model has not: several named inputs and outputs, float features, a
string input and output, int64 and bool inputs, and every numeric dtype TF Serving's APIs carry.

    regression  features float32 [-1, 3], extra float32 [-1, 2]
                -> score float32 [-1, 1], parts float32 [-1, 2]
    strings     text string [-1] -> length int32 [-1], upper string [-1]
    ints        ids int64 [-1, 4], mask bool [-1, 4]
                -> total int64 [-1], probabilities float32 [-1, 2]
    dtypes      one input per dtype TF Serving's REST API carries besides those above (double,
                int8, int16, uint8, uint32, uint64), each [-1, 2], echoed as ``<name>_out``
    halves      the same for the dtypes only gRPC carries (half, uint16): TF Serving's JSON
                conversion answers UNIMPLEMENTED for them
"""

from __future__ import annotations

from pathlib import Path

SIGNATURE = "serving_default"
REST_DTYPES = ("float64", "int8", "int16", "uint8", "uint32", "uint64")
GRPC_ONLY_DTYPES = ("float16", "uint16")


def _save(module, function, base: Path, name: str) -> Path:
    import tensorflow as tf

    version_dir = base / name / "1"
    tf.saved_model.save(module, str(version_dir), signatures={SIGNATURE: function})
    return version_dir.parent


def regression(base: Path) -> Path:
    import tensorflow as tf

    weights = tf.constant([[0.5], [-1.0], [2.0]])

    class Regression(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="features"),
                tf.TensorSpec([None, 2], tf.float32, name="extra"),
            ]
        )
        def serve(self, features, extra):
            score = tf.matmul(features, weights) + tf.reduce_sum(extra, axis=1, keepdims=True)
            return {"score": score, "parts": extra * 2.0}

    module = Regression()
    return _save(module, module.serve, base, "regression")


def strings(base: Path) -> Path:
    import tensorflow as tf

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.strings.length(text), "upper": tf.strings.upper(text)}

    module = Strings()
    return _save(module, module.serve, base, "strings")


def ints(base: Path) -> Path:
    import tensorflow as tf

    class Ints(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.int64, name="ids"),
                tf.TensorSpec([None, 4], tf.bool, name="mask"),
            ]
        )
        def serve(self, ids, mask):
            kept = tf.where(mask, ids, tf.zeros_like(ids))
            total = tf.reduce_sum(kept, axis=1)
            logits = tf.stack([tf.cast(total % 7, tf.float32), tf.ones_like(total, tf.float32)], 1)
            return {"total": total, "probabilities": tf.nn.softmax(logits)}

    module = Ints()
    return _save(module, module.serve, base, "ints")


def echo(base: Path, name: str, dtype_names: tuple[str, ...]) -> Path:
    """A model that answers each input (``[-1, 2]`` of its dtype) as ``<input>_out``."""
    import tensorflow as tf

    specs = [tf.TensorSpec([None, 2], getattr(tf, n), name=n) for n in dtype_names]

    class Echo(tf.Module):
        @tf.function(input_signature=specs)
        def serve(self, *inputs):
            return {f"{n}_out": tf.identity(x) for n, x in zip(dtype_names, inputs, strict=True)}

    module = Echo()
    return _save(module, module.serve, base, name)


BUILDERS = {
    "regression": regression,
    "strings": strings,
    "ints": ints,
    "dtypes": lambda base: echo(base, "dtypes", REST_DTYPES),
    "halves": lambda base: echo(base, "halves", GRPC_ONLY_DTYPES),
}


def build_all(base: Path) -> dict[str, Path]:
    """Every model of the zoo under ``base``; returns name -> model base path."""
    return {name: build(base) for name, build in BUILDERS.items()}
