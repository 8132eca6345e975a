"""Start-up, readiness and graceful shutdown of the stand-in.

Order: flags, config files and the addresses to listen on are checked before TensorFlow is
imported (mistakes are reported in a fraction of a second); then both ports open with the model
in state LOADING, the SavedModel loads and warms up on a worker thread, and only then does
status say AVAILABLE (and the gRPC health service SERVING). SIGTERM or SIGINT stops accepting
new calls, runs queued batches at once, lets in-flight calls finish, and the process exits 0.
One log line at start and one at stop carry the configuration and limits in force.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys

from standin import BANNER, SERVER_HEADER
from standin.flags import DEFAULT_MAX_REQUEST_ROWS, IGNORED_FLAGS, Flags
from standin.limits import Limits
from standin.servable import find_version
from tfsload.core.errors import ConfigError
from tfsload.core.quiet import native_stderr_hidden
from tfsload.core.serving_config import BatchingConfig, read_batching, read_metrics_path

log = logging.getLogger("standin")

MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving accepts messages up to 2 GiB
SHUTDOWN_GRACE_S = 60.0
BODY_PARSER_PROCESSES = 2


def request_limits(flags: Flags, batching: BatchingConfig | None) -> Limits:
    """``--max_request_rows`` (by default 1000, or max_batch_size when batching allows more)
    and ``--max_request_bytes``."""
    rows = flags.max_request_rows
    if rows is None:
        rows = max(DEFAULT_MAX_REQUEST_ROWS, batching.max_batch_size if batching else 0)
    return Limits(max_rows=rows, max_bytes=flags.max_request_bytes)


def grpc_receive_limit(flags: Flags) -> int:
    """gRPC refuses larger messages itself (RESOURCE_EXHAUSTED): twice what the inputs may
    decode to, plus room for the rest of the message, and at most TF Serving's 2 GiB."""
    return min(MAX_MESSAGE_BYTES, 2 * flags.max_request_bytes + 1024 * 1024)


def check_addresses(flags: Flags) -> None:
    """``--bind_address`` and the ports, tried before TensorFlow is imported: one line
    naming the flag that is wrong (an address that is not one, an address this machine does
    not have, a port in use or not allowed)."""
    address = flags.bind_address
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"--bind_address {address!r}: not an address to listen on ({reason})"
        ) from None
    if not address:
        raise ConfigError("--bind_address is empty (use 127.0.0.1, or 0.0.0.0 for all)")
    for flag, port in (("--port", flags.port), ("--rest_api_port", flags.rest_api_port)):
        if not port:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((sockaddr[0], port, *sockaddr[2:]))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ConfigError(
                        f"--bind_address {address}: no network interface of this machine has "
                        f"that address ({exc.strerror})"
                    ) from None
                raise ConfigError(
                    f"{flag} {port}: cannot listen on {address}:{port} ({exc.strerror})"
                ) from None


def import_tensorflow(flags: Flags):
    """Import TensorFlow and apply the thread settings before anything runs on it; its native
    start-up lines stay hidden (``TFSLOAD_TF_LOGS=1`` shows them)."""
    with native_stderr_hidden():
        import tensorflow as tf

        import standin.grpc_service  # noqa: F401  (imports tensorflow_serving's protos)

        threading = tf.config.threading
        if flags.tensorflow_intra_op_parallelism:
            threading.set_intra_op_parallelism_threads(flags.tensorflow_intra_op_parallelism)
        if flags.tensorflow_inter_op_parallelism:
            threading.set_inter_op_parallelism_threads(flags.tensorflow_inter_op_parallelism)
        tf.config.list_physical_devices("GPU")  # probes CUDA now, while its complaints are hidden
    return tf


def describe(
    flags: Flags,
    version: int,
    batching: BatchingConfig | None,
    metrics_path: str | None,
    limits: Limits | None = None,
) -> str:
    """The configuration in force, for the start and stop log lines."""
    grpc_at = f"{flags.bind_address}:{flags.port}" if flags.port else "off"
    rest_at = f"{flags.bind_address}:{flags.rest_api_port}" if flags.rest_api_port else "off"
    parts = [
        f"model '{flags.model_name}' version {version} from {flags.model_base_path}",
        f"gRPC {grpc_at}",
        f"REST {rest_at}",
        f"metrics {metrics_path or 'off'}",
        f"batching {batching.describe() if batching else 'off'}",
        f"grpc_max_threads={flags.grpc_max_threads}",
        f"rest_api_num_threads={flags.rest_api_num_threads}",
        f"rest_api_timeout_in_ms={flags.rest_api_timeout_in_ms}",
        f"intra_op={flags.tensorflow_intra_op_parallelism}",
        f"inter_op={flags.tensorflow_inter_op_parallelism}",
        f"warmup={'on' if flags.enable_model_warmup else 'off'}",
    ]
    if limits is not None:
        parts.append(
            f"limits max_request_rows={limits.max_rows} max_request_bytes={limits.max_bytes} "
            f"rest_api_max_body_bytes={flags.rest_api_max_body_bytes}"
        )
    if flags.faults.active:
        parts.append(f"FAULTS {flags.faults.describe()}")
    if flags.ignored:
        parts.append(
            "ignored " + ", ".join(f"--{name} ({IGNORED_FLAGS[name]})" for name in flags.ignored)
        )
    return "; ".join(parts)


async def serve(flags: Flags) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status. Bad input raises ConfigError."""
    batching = read_batching(flags.batching_parameters_file) if flags.enable_batching else None
    metrics_path = read_metrics_path(flags.monitoring_config_file)
    version, version_dir = find_version(flags.model_base_path)
    check_addresses(flags)
    import_tensorflow(flags)

    import grpc
    from aiohttp import web
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1._async import HealthServicer

    from standin.body_parser import BodyParser
    from standin.faults import Faults
    from standin.grpc_service import OneLineFilter, add_services
    from standin.metrics import Metrics
    from standin.predictor import Predictor
    from standin.rest import RestApi

    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLineFilter())
    limits = request_limits(flags, batching)
    faults = Faults(flags.faults) if flags.faults.active else None
    metrics = Metrics(batching)
    predictor = Predictor(
        flags.model_name,
        version,
        metrics,
        batching,
        # Unbatched requests run as TF Serving's Session::Run calls do: as many at once as
        # TensorFlow's inter-op pool has threads; the rest wait their turn.
        model_threads=flags.tensorflow_inter_op_parallelism or len(os.sched_getaffinity(0)),
        limits=limits,
        faults=faults,
    )
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    grpc_server = None
    if flags.port:
        grpc_server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", grpc_receive_limit(flags)),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=flags.grpc_max_threads,
        )
        add_services(grpc_server, predictor, metrics, faults)
        health_pb2_grpc.add_HealthServicer_to_server(health, grpc_server)
        address = f"{flags.bind_address}:{flags.port}"
        with native_stderr_hidden():  # gRPC logs its own multi-line complaint; ours is one line
            try:
                bound = grpc_server.add_insecure_port(address)
            except RuntimeError:
                bound = 0
        if not bound:
            raise ConfigError(f"--port {flags.port}: gRPC could not listen on {address}")
        await grpc_server.start()

    rest_runner = None
    parser = BodyParser(min(BODY_PARSER_PROCESSES, len(os.sched_getaffinity(0))))
    if flags.rest_api_port:
        api = RestApi(predictor, metrics, flags, metrics_path, parser, faults)
        rest_runner = api.runner(SHUTDOWN_GRACE_S)
        await rest_runner.setup()
        try:
            await web.TCPSite(
                rest_runner, flags.bind_address, flags.rest_api_port, backlog=1024
            ).start()
        except OSError as exc:
            if grpc_server is not None:
                await grpc_server.stop(None)
            raise ConfigError(
                f"--rest_api_port {flags.rest_api_port}: cannot listen on "
                f"{flags.bind_address}:{flags.rest_api_port} ({exc.strerror or exc})"
            ) from None

    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda s=signum: (received.append(s.name), stop.set()))

    config = describe(flags, version, batching, metrics_path, limits)
    ready = False
    try:
        load = asyncio.ensure_future(
            asyncio.to_thread(predictor.load, version_dir, flags.enable_model_warmup)
        )
        if flags.rest_api_port:
            await parser.start()  # while the model loads
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({load, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if load.done():
            records = load.result()  # raises ConfigError when the load or warm-up fails
            await health.set("", health_pb2.HealthCheckResponse.SERVING)
            log.info(
                "%s %s ready (%d warm-up records replayed): %s",
                BANNER,
                SERVER_HEADER.split("/")[1],
                records,
                config,
            )
            ready = True
            if faults is not None:
                log.warning("%s injects faults: %s", BANNER, flags.faults.describe())
                faults.start()
            await stopping
    finally:
        await health.enter_graceful_shutdown()
        predictor.flush()  # in-flight calls waiting for a batch to fill must not wait it out
        await asyncio.gather(
            grpc_server.stop(SHUTDOWN_GRACE_S) if grpc_server else asyncio.sleep(0),
            rest_runner.cleanup() if rest_runner else asyncio.sleep(0),
        )
        await predictor.close()
        await parser.close()
    if ready:
        why = f"after {received[0]}" if received else "on its own"
        log.info("%s stopped %s; configuration was: %s", BANNER, why, config)
    return 0


def main(argv: list[str]) -> int:
    from standin.flags import parse_flags

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    try:
        flags = parse_flags(argv)
        return asyncio.run(serve(flags))
    except ConfigError as exc:
        # Paths from the command line may hold bytes that are not UTF-8: shown escaped.
        line = f"standin: {exc}".encode("utf-8", "backslashreplace").decode("utf-8")
        print(line, file=sys.stderr)
        return 2
