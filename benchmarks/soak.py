"""Soak: mixed REST and gRPC against a batching stand-in for minutes; errors and memory.

A stand-in with batching on (``python -m standin``, the exported model) takes a steady mixed
load from plain Python clients in this process: ``--rest-clients`` threads posting JSON with
``requests`` and ``--grpc-clients`` threads calling Predict with ``grpc`` and the message
classes of ``tfsload.core.protos`` (no TensorFlow, no Locust). Most requests carry the load
tests' 5 rows; one in ``--big-every`` carries 200 rows, so REST bodies also take the stand-in's
worker-process path (over 64 KiB) and batches vary in size. Every answer is checked (status,
output shape); anything else is an error.

Every ``--sample-s`` seconds it prints the requests and errors of the interval, latency
percentiles, and the resident memory (RSS) of every process: the stand-in, its body-parser
processes, and this client. After ``--warmup-s`` the RSS is the baseline; the goals are zero
errors and less than 10 % growth of the stand-in's RSS (with its children) from there to the end.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--model-dir models/model]
        [--rest-clients 4] [--grpc-clients 4] [--write-doc docs/benchmarks.md]

Exit status 0 when both goals are met, 1 when not. With ``--write-doc`` the figures replace
the "## Soak" section of that file (or are appended as it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402

from tfsload.core import protos  # noqa: E402 - needs REPO on the path
from tfsload.core.processes import free_port  # noqa: E402

SECTION = "## Soak"
GROWTH_GOAL = 0.10
# Batching as a CPU server would run it: batches of at most 32 rows (200-row requests are split
# over several), a short wait, a queue that never refuses.
BATCHING = """max_batch_size {{ value: 256 }}
enable_large_batch_splitting {{ value: true }}
max_execution_batch_size {{ value: 32 }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 1000 }}
num_batch_threads {{ value: {threads} }}
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
"""
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@dataclass
class Interval:
    """What the clients saw since the last sample."""

    requests: dict[str, int] = field(default_factory=lambda: {"REST": 0, "gRPC": 0})
    errors: dict[str, int] = field(default_factory=lambda: {"REST": 0, "gRPC": 0})
    latencies: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


class Tally:
    """Thread-safe counters the client threads add to and the sampler drains."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = Interval()
        self.total_requests = {"REST": 0, "gRPC": 0}
        self.total_errors = {"REST": 0, "gRPC": 0}
        self.error_examples: list[str] = []

    def add(self, api: str, seconds: float, error: str | None) -> None:
        with self._lock:
            self._current.requests[api] += 1
            self.total_requests[api] += 1
            self._current.latencies.append(seconds)
            if error is not None:
                self._current.errors[api] += 1
                self.total_errors[api] += 1
                if len(self.error_examples) < 10:
                    self.error_examples.append(f"{api}: {error}")

    def drain(self) -> Interval:
        with self._lock:
            current, self._current = self._current, Interval()
        return current


def payloads(rows: int, seed: int) -> tuple[bytes, bytes]:
    """A REST body and a serialized gRPC PredictRequest for ``rows`` random token rows."""
    values = np.random.default_rng(seed).integers(0, 20000, size=(rows, 200)).astype(np.int32)
    body = json.dumps({"instances": values.tolist()}).encode()
    messages = protos.load()
    request = messages.PredictRequest()
    request.model_spec.name = "model"
    tensor = request.inputs["input_1"]
    tensor.dtype = protos.dtype_number("DT_INT32")
    for size in values.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = values.tobytes()
    return body, request.SerializeToString()


def rest_client(url: str, tally: Tally, stop: threading.Event, big_every: int, seed: int) -> None:
    small, _ = payloads(5, seed)
    big, _ = payloads(200, seed + 1)
    headers = {"Content-Type": "application/json"}
    count = 0
    with requests.Session() as session:
        while not stop.is_set():
            count += 1
            rows, body = (200, big) if count % big_every == 0 else (5, small)
            began = time.perf_counter()
            error = None
            try:
                response = session.post(url, data=body, headers=headers, timeout=30)
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                elif len(response.json()["predictions"]) != rows:
                    error = "wrong number of predictions"
            except (requests.RequestException, ValueError, KeyError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            tally.add("REST", time.perf_counter() - began, error)


def grpc_client(
    target: str, tally: Tally, stop: threading.Event, big_every: int, seed: int
) -> None:
    _, small = payloads(5, seed)
    _, big = payloads(200, seed + 1)
    response_class = protos.load().PredictResponse
    count = 0
    with grpc.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        predict = channel.unary_unary(protos.PREDICT_METHOD)
        while not stop.is_set():
            count += 1
            rows, message = (200, big) if count % big_every == 0 else (5, small)
            began = time.perf_counter()
            error = None
            try:
                answer = response_class.FromString(predict(message, timeout=30))
                if len(answer.outputs["output_0"].float_val) != 2 * rows:
                    error = "wrong number of outputs"
            except grpc.RpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # a broken answer
                error = f"{type(exc).__name__}: {exc}"
            tally.add("gRPC", time.perf_counter() - began, error)


def rss_by_process(server: psutil.Process) -> dict[str, int]:
    """RSS of the stand-in, each of its children and this client, by a readable name."""
    found = {"stand-in": server.memory_info().rss}
    parsers = 0
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            command = " ".join(child.cmdline())
            if "resource_tracker" in command:
                name = "stand-in's resource tracker"
            else:
                parsers += 1
                name = f"stand-in body parser {parsers}"
            found[name] = child.memory_info().rss
    found["soak client"] = psutil.Process().memory_info().rss
    return found


def server_rss(sample: dict[str, int]) -> int:
    return sum(v for k, v in sample.items() if k.startswith("stand-in"))


def wait_ready(rest_url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"soak: the stand-in exited:\n{log.read_text(errors='replace')}")
        try:
            if '"AVAILABLE"' in requests.get(f"{rest_url}/v1/models/model", timeout=5).text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"soak: the stand-in was not ready after {timeout} s")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "model")
    parser.add_argument("--rest-clients", type=int, default=4)
    parser.add_argument("--grpc-clients", type=int, default=4)
    parser.add_argument("--big-every", type=int, default=50, help="one request in N has 200 rows")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument(
        "--warmup-s", type=float, default=None, help="default: a sixth of the run, at most 60 s"
    )
    parser.add_argument("--write-doc", type=Path, default=None)
    args = parser.parse_args(argv)
    duration = args.minutes * 60
    warmup = args.warmup_s if args.warmup_s is not None else min(60.0, duration / 6)
    if not (args.model_dir / "1").is_dir() and not any(args.model_dir.glob("[0-9]*")):
        print(f"soak: no model under {args.model_dir} (make export)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="tfsload-soak-"))
    threads = len(os.sched_getaffinity(0))
    (workdir / "batching.cfg").write_text(BATCHING.format(threads=threads))
    (workdir / "monitoring.cfg").write_text(MONITORING)
    grpc_port, rest_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "standin",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--model_name=model",
        f"--model_base_path={args.model_dir}",
        "--enable_batching",
        f"--batching_parameters_file={workdir / 'batching.cfg'}",
        f"--monitoring_config_file={workdir / 'monitoring.cfg'}",
    ]
    log_path = workdir / "standin.log"
    rest_url = f"http://127.0.0.1:{rest_port}"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    try:
        wait_ready(rest_url, process, log_path, 240)
        return soak(
            args, duration, warmup, process, rest_url, f"127.0.0.1:{grpc_port}", command, log_path
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def soak(
    args: argparse.Namespace,
    duration: float,
    warmup: float,
    process: subprocess.Popen,
    rest_url: str,
    grpc_target: str,
    command: list[str],
    log_path: Path,
) -> int:
    server = psutil.Process(process.pid)
    tally = Tally()
    stop = threading.Event()
    clients = [
        threading.Thread(
            target=rest_client,
            args=(rest_url + "/v1/models/model:predict", tally, stop, args.big_every, i),
            daemon=True,
        )
        for i in range(args.rest_clients)
    ] + [
        threading.Thread(
            target=grpc_client,
            args=(grpc_target, tally, stop, args.big_every, 100 + i),
            daemon=True,
        )
        for i in range(args.grpc_clients)
    ]
    started = time.monotonic()
    for client in clients:
        client.start()
    samples: list[tuple[float, Interval, dict[str, int]]] = []
    print(f"soak: {args.minutes:g} min, warm-up {warmup:g} s, sampling every {args.sample_s:g} s")
    print(f"{'t s':>6} {'REST':>6} {'gRPC':>6} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}  RSS MB")
    next_sample = started + args.sample_s
    while True:
        time.sleep(max(0.0, next_sample - time.monotonic()))
        elapsed = time.monotonic() - started
        interval = tally.drain()
        memory = rss_by_process(server)
        samples.append((elapsed, interval, memory))
        errors = sum(interval.errors.values())
        rss_text = ", ".join(f"{name} {value / 2**20:.0f}" for name, value in memory.items())
        print(
            f"{elapsed:6.0f} {interval.requests['REST']:6d} {interval.requests['gRPC']:6d} "
            f"{errors:6d} {percentile(interval.latencies, 50) * 1000:7.1f} "
            f"{percentile(interval.latencies, 99) * 1000:7.1f}  {rss_text}",
            flush=True,
        )
        if process.poll() is not None:
            print("soak: the stand-in exited during the run", file=sys.stderr)
            break
        if elapsed >= duration - 1e-6:
            break
        next_sample += args.sample_s
    stop.set()
    for client in clients:
        client.join(timeout=60)

    after_warmup = next((s for s in samples if s[0] >= warmup - 1e-6), samples[0])
    baseline = after_warmup[2]
    end = samples[-1][2]
    base_total, end_total = server_rss(baseline), server_rss(end)
    growth = (end_total - base_total) / base_total
    peak_total = max(server_rss(s[2]) for s in samples)
    total_requests = sum(tally.total_requests.values())
    total_errors = sum(tally.total_errors.values())
    measured = samples[-1][0]
    all_latencies = [v for s in samples for v in s[1].latencies]
    log_text = log_path.read_text(errors="replace")
    tracebacks = log_text.count("Traceback")
    met = total_errors == 0 and growth < GROWTH_GOAL and process.poll() is None
    print()
    print(
        f"soak: {total_requests} requests in {measured:.0f} s "
        f"(REST {tally.total_requests['REST']}, gRPC {tally.total_requests['gRPC']}; "
        f"{total_requests / measured:.0f}/s), {total_errors} errors, {tracebacks} tracebacks in "
        "the stand-in's log"
    )
    print(
        f"soak: stand-in RSS (with its children) {base_total / 2**20:.0f} MB after the "
        f"{warmup:g} s warm-up, {end_total / 2**20:.0f} MB at the end ({growth:+.1%}), "
        f"peak {peak_total / 2**20:.0f} MB; goals (0 errors, growth < 10%): "
        f"{'met' if met else 'MISSED'}"
    )
    for example in tally.error_examples:
        print(f"soak: error: {example}")
    if args.write_doc:
        write_doc(
            args,
            warmup,
            samples,
            baseline,
            end,
            growth,
            peak_total,
            tally,
            measured,
            all_latencies,
            tracebacks,
            met,
        )
    return 0 if met else 1


def write_doc(
    args,
    warmup,
    samples,
    baseline,
    end,
    growth,
    peak_total,
    tally,
    measured,
    latencies,
    tracebacks,
    met,
) -> None:
    total = sum(tally.total_requests.values())
    errors = sum(tally.total_errors.values())
    rows = []
    for name in baseline:
        first = samples[0][2].get(name)
        peak = max(s[2].get(name, 0) for s in samples)
        change = (end.get(name, 0) - baseline[name]) / baseline[name]
        rows.append(
            f"| {name} | {first / 2**20:.0f} | {baseline[name] / 2**20:.0f} | "
            f"{end.get(name, 0) / 2**20:.0f} | {peak / 2**20:.0f} | {change:+.1%} |"
        )
    timeline = ", ".join(f"{server_rss(s[2]) / 2**20:.0f}" for s in samples)
    command = (
        f".venv/bin/python benchmarks/soak.py --minutes {args.minutes:g}"
        + ("" if args.rest_clients == 4 else f" --rest-clients {args.rest_clients}")
        + ("" if args.grpc_clients == 4 else f" --grpc-clients {args.grpc_clients}")
    )
    load = os.getloadavg()
    text = f"""{SECTION}

Mixed REST and gRPC against a batching stand-in for minutes, with every answer checked and the
memory of every process sampled (`benchmarks/soak.py`; 10 minutes by default, `--minutes` to
shorten). Clients are plain Python in the script's process: {args.rest_clients} threads posting
JSON with `requests`, {args.grpc_clients} calling Predict with `grpc` and the
`tfsload.core.protos` messages; one request in {args.big_every} carries 200 rows instead of 5
(so REST bodies also take the stand-in's worker-process path and batch sizes vary). The
stand-in batches with `batch_timeout_micros` 2000 and splitting on: requests up to 256 rows,
executed in batches of at most 32 (allowed sizes 8/16/32). Goals: zero errors, and under 10 %
growth of the stand-in's RSS (with its body-parser processes) from the end of the warm-up
({warmup:g} s) to the end.

```sh
{command}
```

Measured {datetime.date.today().isoformat()} on this project's {os.cpu_count()}-CPU VM
({platform.machine()}, Python {platform.python_version()}; load average {load[0]:.1f} at the end;
the machine is shared with other engineers' work).

{total:,} requests in {measured:.0f} s ({total / measured:.0f}/s: REST
{tally.total_requests["REST"]:,}, gRPC {tally.total_requests["gRPC"]:,}), **{errors} errors**,
{tracebacks} tracebacks in the stand-in's log; latency p50 {percentile(latencies, 50) * 1000:.1f}
ms, p99 {percentile(latencies, 99) * 1000:.1f} ms. Stand-in RSS {growth:+.1%} after the
warm-up (peak {peak_total / 2**20:.0f} MB): goals **{"met" if met else "missed"}**. The rate
and latencies are those of {args.rest_clients + args.grpc_clients} closed-loop clients sharing
the CPUs with the server (and, on a shared machine, with other work), not throughput figures
(those are under "Stand-in throughput").

| process | RSS at 10 s (MB) | after warm-up | at the end | peak | growth after warm-up |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

The stand-in's RSS (with children, MB) every {args.sample_s:g} s: {timeline}.
"""
    text = wrap_prose(text)
    path = args.write_doc
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    start = current.find(f"\n{SECTION}\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        rest = current.find("\n## ", start + len(SECTION) + 2)
        updated = current[: start + 1] + text + (current[rest:] if rest >= 0 else "")
    path.write_text(updated)
    print(f"soak: wrote the {SECTION[3:]} section of {path}")


def wrap_prose(text: str, width: int = 96) -> str:
    """Re-wrap the Markdown's prose paragraphs (not headings, tables or code) to ``width``."""
    blocks, out = text.split("\n\n"), []
    for block in blocks:
        first = block.lstrip()
        if first.startswith(("#", "|", "```")):
            out.append(block)
        else:
            out.append(textwrap.fill(" ".join(block.split()), width=width))
    return "\n\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
