"""A TF-Serving-compatible stand-in server: ``python -m standin``.

It serves a real exported SavedModel over TensorFlow Serving's REST and gRPC APIs, batches the
way TF Serving's ``--enable_batching`` does and exports TF Serving's Prometheus metrics, so the
suite, CI and users without Docker have a faithful target. It is a stand-in and says so: every
REST response carries ``Server: tfsload-standin/<version>`` and its log lines name it.
"""

from tfsload import __version__

SERVER_HEADER = f"tfsload-standin/{__version__}"
BANNER = "tfsload stand-in (not TensorFlow Serving)"
