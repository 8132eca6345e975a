"""Stand-in throughput: served rows/s against the raw SavedModel on the same CPUs and threads.

One run measures:

- the raw SavedModel (its ``serving_default`` signature called back to back, in a process of
  its own) at batch 5 (the load tests' request) and over a sweep of batch sizes, for the best;
- the stand-in at saturation, gRPC and REST, with batching on and off, driven by a
  multi-connection asyncio client (grpc.aio / aiohttp) sending the 5-row instances.

The server and the raw baseline get the same CPUs (``--server-cpus``) and the same TensorFlow
thread settings; the load client runs on other CPUs (``--client-cpus``). The goals: batching
on, gRPC served rows/s >= 0.8 x raw best; batching off >= 0.8 x raw batch 5.

    .venv/bin/python benchmarks/standin_throughput.py [--model-dir models/model] [--seconds 10]
        [--server-cpus 0] [--client-cpus 1] [--concurrency 64] [--write-doc docs/benchmarks.md]

With ``--write-doc`` the figures replace the "## Stand-in throughput" section of that file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Stand-in throughput"
RAW_SIZES = (1, 5, 25, 50, 100, 200, 320, 500)
RAW_ROUNDS = 3  # the sweep runs this often; each size reports its median (the machine is shared)
# Batching for a saturated CPU server (TF Serving's tuning guide: timeout 0, one batch thread
# per core, a batch size above what the clients keep in flight, a queue that never refuses).
BATCHING = """max_batch_size {{ value: {max_batch} }}
batch_timeout_micros {{ value: 0 }}
max_enqueued_batches {{ value: 1000 }}
num_batch_threads {{ value: {threads} }}
"""
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def pinned(cpus: set[int]):
    """preexec_fn: run the child on ``cpus`` only (affinity is inherited by all its threads)."""
    return lambda: os.sched_setaffinity(0, cpus)


# --- The raw baseline (runs in a child process: ``standin_throughput.py raw ...``) -------------


def raw_child(model_dir: Path, threads: int, seconds: float) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    version = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    instances = np.array(json.loads((model_dir / "instances.json").read_text()), dtype=np.int32)
    rates: dict[int, list[float]] = {size: [] for size in RAW_SIZES}
    for _ in range(RAW_ROUNDS):
        for size in RAW_SIZES:
            rows = tf.constant(np.resize(instances, (size, instances.shape[1])))
            for _ in range(3):
                signature(input_1=rows)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                signature(input_1=rows)
                calls += 1
            rates[size].append(calls * size / (time.perf_counter() - start))
    results = {size: sorted(values)[len(values) // 2] for size, values in rates.items()}
    print(json.dumps(results))


def measure_raw(model_dir: Path, cpus: set[int], threads: int, seconds: float) -> dict[int, float]:
    command = [sys.executable, __file__, "raw", str(model_dir), str(threads), str(seconds)]
    result = subprocess.run(
        command, capture_output=True, text=True, preexec_fn=pinned(cpus), check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"raw baseline failed:\n{result.stderr}")
    return {int(size): rate for size, rate in json.loads(result.stdout.splitlines()[-1]).items()}


# --- The stand-in ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def standin(
    model_dir: Path, cpus: set[int], threads: int, calls: int, batching: str | None
) -> Iterator[tuple[str, str]]:
    """Run ``python -m standin`` on ``cpus``; yields (gRPC target, REST URL) once AVAILABLE."""
    grpc_port, rest_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        flags = [
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=model",
            f"--model_base_path={model_dir.resolve()}",
            f"--tensorflow_intra_op_parallelism={threads}",
            f"--tensorflow_inter_op_parallelism={threads}",
            # TF Serving's defaults (4 x CPUs) would refuse or queue the client's calls.
            f"--grpc_max_threads={calls}",
            f"--rest_api_num_threads={calls}",
        ]
        if batching:
            config = Path(tmp) / "batching.cfg"
            config.write_text(batching)
            flags += ["--enable_batching", f"--batching_parameters_file={config}"]
        log = open(Path(tmp) / "standin.log", "w+b")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [sys.executable, "-m", "standin", *flags],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpus),
        )
        rest = f"http://127.0.0.1:{rest_port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"stand-in did not start:\n{log.read().decode()}")
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{rest}/v1/models/model", timeout=5) as answer,
                ):
                    if b'"AVAILABLE"' in answer.read():
                        break
                time.sleep(0.2)
            yield f"127.0.0.1:{grpc_port}", rest
        finally:
            process.terminate()
            process.wait(timeout=120)
            log.close()


# --- The load client ---------------------------------------------------------------------------


async def _drive(send, concurrency: int, warmup: float, seconds: float) -> tuple[float, int]:
    """Keep ``concurrency`` requests in flight; (requests/s in the measured window, failures)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    window = (start + warmup, start + warmup + seconds)
    done = failed = 0

    async def worker() -> None:
        nonlocal done, failed
        while loop.time() < window[1]:
            ok = await send()
            finished = loop.time()
            if window[0] <= finished < window[1]:
                done += ok
                failed += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / seconds, failed


async def load_grpc(target: str, rows, concurrency: int, warmup: float, seconds: float):
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    tensor = request.inputs["input_1"]
    tensor.dtype = 3  # DT_INT32
    for size in rows.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = np.ascontiguousarray(rows, dtype=np.int32).tobytes()
    payload = request.SerializeToString()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(PREDICT)  # bytes in, bytes out: the client stays cheap

        async def send() -> bool:
            try:
                await call(payload, timeout=60)
                return True
            except grpc.aio.AioRpcError:
                return False

        return await _drive(send, concurrency, warmup, seconds)


async def load_rest(url: str, rows, concurrency: int, warmup: float, seconds: float):
    import aiohttp

    body = json.dumps({"instances": rows.tolist()}).encode()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        target = f"{url}/v1/models/model:predict"

        async def send() -> bool:
            async with session.post(target, data=body) as response:
                await response.read()
                return response.status == 200

        return await _drive(send, concurrency, warmup, seconds)


# --- Report ------------------------------------------------------------------------------------


def render(results: dict, args: argparse.Namespace, command: str) -> str:
    raw = results["raw"]
    best_size = max(raw, key=raw.get)
    raw5, best = raw[5], raw[best_size]
    lines = [
        SECTION,
        "",
        f"Measured {results['date']} on {results['machine']} (TensorFlow {results['tf']}) with",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Server and raw baseline on CPU {args.server_cpus} with "
        f"`--tensorflow_intra_op_parallelism={args.threads}` and "
        f"`--tensorflow_inter_op_parallelism={args.threads}` (the raw baseline sets the same); "
        f"load client on CPU {args.client_cpus}, {args.concurrency} requests of 5 rows in flight, "
        f"{args.warmup:g} s warm-up then {args.seconds:g} s measured per case; "
        f"`--grpc_max_threads` and `--rest_api_num_threads` {2 * args.concurrency}. Raw figures "
        f"are medians of {RAW_ROUNDS} sweeps of {args.raw_seconds:g} s per size. Batching on: "
        f"`max_batch_size {args.max_batch}`, `batch_timeout_micros 0`, "
        f"`num_batch_threads {args.threads}`. Load average (1 min) before/after: "
        f"{results['load_before']:.2f} / {results['load_after']:.2f}.",
        "",
        "| case | rows/s | ratio | goal |",
        "|---|---:|---:|---|",
        f"| raw SavedModel, batch 5 | {raw5:,.0f} | | |",
        f"| raw SavedModel, best batch ({best_size}) | {best:,.0f} | | |",
    ]
    for case in (
        "gRPC, batching on",
        "REST, batching on",
        "gRPC, batching off",
        "REST, batching off",
    ):
        rate, failures = results["served"][case]
        baseline, name = (best, "raw best") if "on" in case.split(",")[1] else (raw5, "raw batch 5")
        goal = f"≥ 0.8 × {name}" if case.startswith("gRPC") else f"(reference: {name})"
        failed = f" ({failures} failed)" if failures else ""
        lines.append(f"| stand-in {case} | {rate:,.0f}{failed} | {rate / baseline:.2f} | {goal} |")
    lines += [
        "",
        "Raw SavedModel rows/s by batch size: "
        + ", ".join(f"{size}: {rate:,.0f}" for size, rate in sorted(raw.items()))
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's section, leaving the rest of the file alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "raw":
        raw_child(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "model")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--threads", type=int, default=None, help="TF threads (default: #CPUs)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--raw-seconds", type=float, default=2.0)
    parser.add_argument("--write-doc", type=Path)
    args = parser.parse_args()
    if not (args.model_dir / "instances.json").exists():
        raise SystemExit(f"--model-dir {args.model_dir}: no exported model (run `make export`)")
    server_cpus, client_cpus = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    args.threads = args.threads or len(server_cpus)
    os.sched_setaffinity(0, client_cpus)
    import numpy as np
    import tensorflow as tf

    rows = np.array(json.loads((args.model_dir / "instances.json").read_text()), dtype=np.int32)
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "tf": tf.__version__,
        "load_before": os.getloadavg()[0],
    }
    print("raw SavedModel ...", flush=True)
    results["raw"] = measure_raw(args.model_dir, server_cpus, args.threads, args.raw_seconds)
    print(json.dumps(results["raw"]), flush=True)
    results["served"] = {}
    batching = BATCHING.format(max_batch=args.max_batch, threads=args.threads)
    for label, config in (("on", batching), ("off", None)):
        calls = 2 * args.concurrency
        with standin(args.model_dir, server_cpus, args.threads, calls, config) as (target, url):
            for protocol, load in (("gRPC", load_grpc), ("REST", load_rest)):
                case = f"{protocol}, batching {label}"
                rate, failed = asyncio.run(
                    load(
                        target if protocol == "gRPC" else url,
                        rows,
                        args.concurrency,
                        args.warmup,
                        args.seconds,
                    )
                )
                results["served"][case] = (rate * len(rows), failed)
                print(f"{case}: {rate * len(rows):,.0f} rows/s ({failed} failed)", flush=True)
    results["load_after"] = os.getloadavg()[0]
    command = ".venv/bin/python benchmarks/standin_throughput.py " + " ".join(sys.argv[1:])
    section = render(results, args, command.strip())
    print(section)
    if args.write_doc:
        write_section(args.write_doc, section)


if __name__ == "__main__":
    main()
