"""Load-test TensorFlow Serving's predict API over REST and gRPC: the file for ``locust -f``.

    locust -f "$(tfsload locustfile)" --headless RestUser -H http://127.0.0.1:8501 -u 10 -t 30s
    locust -f "$(tfsload locustfile)" --headless GrpcUser -H grpc://127.0.0.1:8500 -u 10 -t 30s
    locust -f "$(tfsload locustfile)" --class-picker     # web UI: pick the targets to compare

Besides RestUser and GrpcUser there is one class per target and protocol of --targets-file
(default configs/targets.toml in the current directory, when it exists), e.g. TfsCpuRest or
TfsGpuBatchingGrpc. tfsload's options (--model-name, --request-count, --check-p99-ms, ...) are
in the README and the web UI's start form; the mechanics live in tfsload.generator.
"""

from tfsload.generator import plugin
from tfsload.generator.users import GrpcUser, RestUser

TARGET_CLASSES = plugin.target_user_classes()
globals().update(TARGET_CLASSES)

__all__ = ["GrpcUser", "RestUser", *TARGET_CLASSES]
