"""Stand-in throughput: served rows/s against the raw SavedModel on the same CPUs and threads.

One run measures:

- the raw SavedModel (its ``serving_default`` signature called back to back, in a process of
  its own) at batch 5 (the load tests' request) and over a sweep of batch sizes, for the best;
- the stand-in at saturation, gRPC and REST, with batching on and off, driven by an asyncio
  client (grpc.aio, aiohttp) that keeps ``--concurrency`` requests of the 5-row instances in
  flight.

Rounds interleave a raw sweep with the four served cases, and ratios are taken per round
before the median, because the machine this runs on may be shared with other work.

The server and the raw baseline get the same CPUs (``--server-cpus``) and the same TensorFlow
thread settings; the load client runs on other CPUs (``--client-cpus``). The goals: batching
on, gRPC served rows/s >= 0.8 x raw best; batching off >= 0.8 x raw batch 5.

    .venv/bin/python benchmarks/standin_throughput.py [--model-dir models/model] [--rounds 3]
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
CASES = ("gRPC, batching on", "REST, batching on", "gRPC, batching off", "REST, batching off")
BATCH_ROWS = ":tensorflow:serving:batching_session:processed_batch_size"
# Batching for a saturated CPU server (TF Serving's tuning guide: timeout 0, one batch thread
# per core, a batch size above what the clients keep in flight, a queue that never refuses).
BATCHING = """max_batch_size {{ value: {max_batch} }}
batch_timeout_micros {{ value: 0 }}
max_enqueued_batches {{ value: 1000 }}
num_batch_threads {{ value: {threads} }}
"""
PREDICT = "/tensorflow.serving.PredictionService/Predict"
METRICS_PATH = "/monitoring/prometheus/metrics"


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
    results = {}
    for size in RAW_SIZES:
        rows = tf.constant(np.resize(instances, (size, instances.shape[1])))
        for _ in range(3):
            signature(input_1=rows)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            signature(input_1=rows)
            calls += 1
        results[size] = calls * size / (time.perf_counter() - start)
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
        monitoring = Path(tmp) / "monitoring.cfg"
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
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
            f"--monitoring_config_file={monitoring}",
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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def baseline_of(case: str, raw: dict[int, float]) -> tuple[float, str]:
    """What a case is compared with: raw best for batching on, raw batch 5 for batching off."""
    if case.endswith("batching on"):
        return max(raw.values()), "raw best"
    return raw[5], "raw batch 5"


def render(rounds: list[dict], facts: dict, args: argparse.Namespace, command: str) -> str:
    raw = {size: median([r["raw"][size] for r in rounds]) for size in RAW_SIZES}
    best_size = max(raw, key=raw.get)
    lines = [
        SECTION,
        "",
        f"Measured {facts['date']} on {facts['machine']} (TensorFlow {facts['tf']}) with",
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
        f"`--grpc_max_threads` and `--rest_api_num_threads` {2 * args.concurrency}. Batching on: "
        f"`max_batch_size {args.max_batch}`, `batch_timeout_micros 0`, "
        f"`num_batch_threads {args.threads}`. {len(rounds)} rounds, each a raw sweep "
        f"({args.raw_seconds:g} s per batch size) followed by the four served cases; figures "
        "are medians over rounds, and each ratio is the median of the per-round ratios (served "
        "against the raw figure of the same round). Load average (1 min) at start and end: "
        f"{facts['load_before']:.2f} / {facts['load_after']:.2f}.",
        "",
        "| case | rows/s | ratio | ratio per round | goal |",
        "|---|---:|---:|---|---|",
        f"| raw SavedModel, batch 5 | {raw[5]:,.0f} | | | |",
        f"| raw SavedModel, best batch ({best_size}) | {raw[best_size]:,.0f} | | | |",
    ]
    for case in CASES:
        rates = [r["served"][case]["rows_per_s"] for r in rounds]
        ratios = [
            rate / baseline_of(case, r["raw"])[0] for rate, r in zip(rates, rounds, strict=True)
        ]
        name = baseline_of(case, raw)[1]
        goal = f"≥ 0.8 × {name}" if case.startswith("gRPC") else f"(reference: {name})"
        failures = sum(r["served"][case]["failed"] for r in rounds)
        failed = f" ({failures} failed)" if failures else ""
        batch = [r["served"][case].get("mean_batch") for r in rounds]
        batch_note = f", mean batch {median(batch):.0f} rows" if None not in batch else ""
        lines.append(
            f"| stand-in {case}{batch_note} | {median(rates):,.0f}{failed} | "
            f"{median(ratios):.2f} | {', '.join(f'{x:.2f}' for x in ratios)} | {goal} |"
        )
    lines += [
        "",
        "Raw SavedModel rows/s by batch size (medians): "
        + ", ".join(f"{size}: {rate:,.0f}" for size, rate in sorted(raw.items()))
        + ".",
        "",
    ]
    return "\n".join(lines)


def batch_stats(url: str) -> tuple[float, float]:
    """(rows, batches) the stand-in has run so far, from its Prometheus page."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}{METRICS_PATH}", timeout=30) as answer:
        text = answer.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values.get(BATCH_ROWS + "_sum", 0.0), values.get(BATCH_ROWS + "_count", 0.0)


def serve_case(case: str, target: str, url: str, rows, args: argparse.Namespace) -> dict:
    load = load_grpc if case.startswith("gRPC") else load_rest
    batching = case.endswith("batching on")
    before = batch_stats(url) if batching else None
    rate, failed = asyncio.run(
        load(
            target if load is load_grpc else url, rows, args.concurrency, args.warmup, args.seconds
        )
    )
    result = {"rows_per_s": rate * len(rows), "failed": failed}
    if before is not None:
        after = batch_stats(url)
        result["mean_batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
    return result


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
    # On one CPU this model's rows/s peaks around 25-50 rows a call (see the raw sweep), so the
    # tuned max_batch_size is small; TF Serving's guide tunes it to the hardware the same way.
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--raw-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
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
    facts = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "tf": tf.__version__,
        "load_before": os.getloadavg()[0],
    }
    batching = BATCHING.format(max_batch=args.max_batch, threads=args.threads)
    calls = 2 * args.concurrency
    rounds = []
    with (
        standin(args.model_dir, server_cpus, args.threads, calls, batching) as batched,
        standin(args.model_dir, server_cpus, args.threads, calls, None) as unbatched,
    ):
        for number in range(1, args.rounds + 1):
            raw = measure_raw(args.model_dir, server_cpus, args.threads, args.raw_seconds)
            print(f"round {number}: raw " + json.dumps({k: round(v) for k, v in raw.items()}))
            served = {}
            for case in CASES:
                target, url = batched if case.endswith("batching on") else unbatched
                served[case] = serve_case(case, target, url, rows, args)
                print(f"round {number}: {case}: {served[case]}", flush=True)
            rounds.append({"raw": raw, "served": served})
    facts["load_after"] = os.getloadavg()[0]
    command = ".venv/bin/python benchmarks/standin_throughput.py " + " ".join(sys.argv[1:])
    section = render(rounds, facts, args, command.strip())
    print(section)
    if args.write_doc:
        write_section(args.write_doc, section)


if __name__ == "__main__":
    main()
