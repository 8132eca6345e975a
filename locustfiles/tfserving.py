"""Load-test TensorFlow Serving's predict API over REST and gRPC.

    locust -f locustfiles/tfserving.py --headless RestUser -H http://127.0.0.1:8501 -u 10 -t 30s
    locust -f locustfiles/tfserving.py --headless GrpcUser -H grpc://127.0.0.1:8500 -u 10 -t 30s
    locust -f locustfiles/tfserving.py --class-picker          # web UI: pick targets to compare

Besides RestUser and GrpcUser there is one class per target and protocol of --targets-file
(default configs/targets.toml), e.g. TfsCpuRest or TfsGpuBatchingGrpc. The options
(--model-name, --request-count, --check-p99-ms, --precise-json, ...) are listed by --help and
described in the README; the mechanics live in the tfsload package.
"""

import sys
from pathlib import Path

# Locust puts only this file's folder on the import path; the tfsload package is one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfsload import plugin
from tfsload.users import GrpcUser, RestUser

TARGET_CLASSES = plugin.target_user_classes()
globals().update(TARGET_CLASSES)

__all__ = ["GrpcUser", "RestUser", *TARGET_CLASSES]
