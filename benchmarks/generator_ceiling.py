"""Generator ceiling: requests per second one Locust process can send, ours against stock.

Against null servers that answer a canned prediction at once (nginx for REST, or a raw-socket
Python server when nginx is absent; a minimal gRPC server for gRPC), pinned to other CPUs than
the generator, it runs for the same time and user count, one Locust process each:

- tfsload's RestUser vs a stock FastHttpUser posting a pre-encoded body;
- tfsload's GrpcUser vs a stock gevent gRPC user (benchmarks/stock_users.py);
- wrk, a C load generator, as the physical anchor for REST (skipped, and said so, if absent).

The goal is ours >= 0.9 x stock for both protocols: validating every answer and recording µs
histograms must not cost a meaningful share of the generator. Rounds alternate the order of
the cases; each figure is the median over the runs in which the generator was CPU-bound (a
ceiling is only measured there), and the table says how many runs that was. The generator's CPU
time per request is reported too.

    .venv/bin/python benchmarks/generator_ceiling.py [--seconds 15] [--users 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BOUND_PERCENT = 90

PREDICTIONS = json.dumps({"predictions": [[0.3, 0.7]] * 5}).encode()
NGINX_CONF = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp};
  proxy_temp_path {tmp};
  fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}"):read("*a")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


# --- the null servers -------------------------------------------------------------------------


async def serve_rest(port: int) -> None:
    """Fallback null REST server: reads each request (headers and body), answers at once."""
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(PREDICTIONS)}\r\n\r\n".encode()
        + PREDICTIONS
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(match.group(1)) if match else 0)
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


async def serve_grpc(port: int) -> None:
    """Null gRPC server: a canned PredictResponse for every Predict, no parsing."""
    import grpc

    from tfsload.core import protos
    from tfsload.generator.payload import tensor_proto

    response = protos.load().PredictResponse()
    response.outputs["output_0"].CopyFrom(tensor_proto([[0.3, 0.7]] * 5, "DT_FLOAT"))
    canned = response.SerializeToString()

    async def predict(_request: bytes, _context) -> bytes:
        return canned

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# --- running the cases ------------------------------------------------------------------------


def pinned(cpus: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *command] if shutil.which("taskset") else command


def run_measured(command: list[str], env: dict | None = None) -> tuple[str, float | None]:
    """Run to completion; (stdout and stderr, steady-state CPU percent of the process).

    CPU is sampled while the process runs and read from 3 s after its start (imports, spawning)
    to the last sample, so start-up costs do not count against a generator.
    """
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        with contextlib.suppress(psutil.Error):
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                times = watched.cpu_times()
                samples.append((time.monotonic(), times.user + times.system))
                time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{command[:6]} exited {process.returncode}:\n{output[-3000:]}")
    steady = [s for s in samples if s[0] >= samples[0][0] + 3] if samples else []
    if len(steady) < 2:
        return output, None
    (t0, cpu0), (t1, cpu1) = steady[0], steady[-1]
    return output, 100 * (cpu1 - cpu0) / (t1 - t0)


def locust_rate(json_file: Path) -> tuple[float, int, int]:
    """(req/s, requests, failures) from Locust's --json-file: requests over first-to-last."""
    entries = json.loads(json_file.read_text())
    requests = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    start = min(e["start_time"] for e in entries)
    end = max(e["last_request_timestamp"] for e in entries)
    return requests / (end - start), requests, failures


def run_locust_case(case: dict, args: argparse.Namespace, work: Path, env: dict) -> dict:
    out = work / case["key"]
    command = pinned(
        args.generator_cpus,
        [sys.executable, "-m", "locust", "-f", str(case["file"]), "--headless", case["user"],
         "-H", case["host"], "-u", str(args.users), "-r", str(args.users),
         "-t", f"{args.seconds}s", "--only-summary", "--json-file", str(out),
         *case.get("extra", [])],
    )  # fmt: skip
    output, cpu_percent = run_measured(command, env)
    rate, requests, failures = locust_rate(out.with_suffix(".json"))
    if failures:
        raise RuntimeError(f"{case['key']}: {failures} of {requests} requests failed:\n{output}")
    return {"rate": rate, "cpu_percent": cpu_percent}


def run_wrk(args: argparse.Namespace, work: Path, url: str, body: Path) -> dict | None:
    if not shutil.which("wrk"):
        return None
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    command = pinned(
        args.generator_cpus,
        ["wrk", "-t1", f"-c{args.users}", f"-d{args.seconds}s", "-s", str(script), url],
    )
    output, _ = run_measured(command)
    match = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if not match or "Non-2xx" in output:
        raise RuntimeError(f"wrk failed:\n{output}")
    return {"rate": float(match.group(1)), "cpu_percent": None}


def start_servers(args: argparse.Namespace, work: Path) -> tuple[list, str, str, str]:
    """Start the null servers on the server CPUs; returns (processes, rest url, grpc, rest kind)."""
    rest_port, grpc_port = free_port(), free_port()
    processes = []
    if shutil.which("nginx"):
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=work, port=rest_port, body=PREDICTIONS.decode()))
        command = ["nginx", "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)]
        rest_kind = "nginx (1 worker)"
    else:
        command = [sys.executable, __file__, "--serve-rest", str(rest_port)]
        rest_kind = "Python raw-socket server (nginx not found)"
    processes.append(subprocess.Popen(pinned(args.server_cpus, command), cwd=REPO))
    command = [sys.executable, __file__, "--serve-grpc", str(grpc_port)]
    processes.append(subprocess.Popen(pinned(args.server_cpus, command), cwd=REPO))
    wait_for_port(rest_port)
    wait_for_port(grpc_port)
    return processes, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", rest_kind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each run")
    parser.add_argument("--users", type=int, default=50, help="Locust users / wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; medians reported")
    parser.add_argument("--generator-cpus", default="0", help="taskset CPU list of generators")
    parser.add_argument("--server-cpus", default="1", help="taskset CPU list of null servers")
    parser.add_argument("--serve-rest", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_rest:
        asyncio.run(serve_rest(args.serve_rest))
        return 0
    if args.serve_grpc:
        asyncio.run(serve_grpc(args.serve_grpc))
        return 0

    work = Path(tempfile.mkdtemp(prefix="generator-ceiling-"))
    instances = work / "instances.json"
    rows = [[0] * 100 + [(i * 37 + j * 11) % 19999 + 1 for j in range(100)] for i in range(5)]
    instances.write_text(json.dumps(rows))
    body = work / "body.json"
    body.write_text(json.dumps({"signature_name": "serving_default", "instances": rows}))
    env = {**os.environ, "BENCH_INSTANCES": str(instances)}
    processes, rest_url, grpc_target, rest_kind = start_servers(args, work)
    ours = REPO / "locustfiles" / "tfserving.py"
    stock = REPO / "benchmarks" / "stock_users.py"
    ours_extra = ["--instances-file", str(instances)]
    cases = [
        {"key": "ours-rest", "label": "tfsload RestUser", "file": ours, "user": "RestUser",
         "host": rest_url, "extra": ours_extra},
        {"key": "stock-rest", "label": "stock FastHttpUser, pre-encoded body", "file": stock,
         "user": "StockRestUser", "host": rest_url},
        {"key": "ours-grpc", "label": "tfsload GrpcUser", "file": ours, "user": "GrpcUser",
         "host": f"grpc://{grpc_target}", "extra": ours_extra},
        {"key": "stock-grpc", "label": "stock gevent gRPC user", "file": stock,
         "user": "StockGrpcUser", "host": grpc_target},
    ]  # fmt: skip
    results: dict[str, list[dict]] = {case["key"]: [] for case in cases}
    results["wrk"] = []
    try:
        for round_index in range(args.rounds):
            order = cases if round_index % 2 == 0 else cases[::-1]
            for case in order:
                result = run_locust_case(case, args, work, env)
                results[case["key"]].append(result)
                print(f"round {round_index + 1} {case['key']}: {result['rate']:.0f} req/s, "
                      f"generator CPU {result['cpu_percent'] or 0:.0f}%", flush=True)  # fmt: skip
            wrk = run_wrk(args, work, f"{rest_url}/v1/models/model:predict", body)
            if wrk:
                results["wrk"].append(wrk)
                print(f"round {round_index + 1} wrk: {wrk['rate']:.0f} req/s", flush=True)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    def bound(key: str) -> list[dict]:
        """The runs that measured a ceiling: the generator was CPU-bound (wrk: all runs)."""
        runs = results[key]
        return [r for r in runs if r["cpu_percent"] is None or r["cpu_percent"] >= BOUND_PERCENT]

    def median(key: str, field: str = "rate") -> float | None:
        values = [r[field] for r in bound(key) if r[field] is not None]
        return statistics.median(values) if values else None

    def cpu_per_request(key: str) -> float | None:
        """Generator CPU time per request (µs)."""
        values = [1e4 * r["cpu_percent"] / r["rate"] for r in bound(key) if r["cpu_percent"]]
        return statistics.median(values) if values else None

    print(f"\nOne Locust process, {args.users} users, {args.seconds} s per run, {args.rounds} "
          f"rounds; generator on CPU {args.generator_cpus}, null servers on CPU "
          f"{args.server_cpus}; REST null server: {rest_kind}. Medians over the runs where the "
          f"generator was CPU-bound (at least {BOUND_PERCENT}% CPU; a run below that waited for "
          "something else, such as a CPU shared with other work):\n")  # fmt: skip
    print("| generator | runs | req/s | generator CPU | CPU µs/request | ours/stock req/s | "
          "stock/ours CPU per request |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ours_key, stock_key in (("ours-rest", "stock-rest"), ("ours-grpc", "stock-grpc")):
        for key in (ours_key, stock_key):
            label = next(c["label"] for c in cases if c["key"] == key)
            ratios = ["", ""]
            if key == ours_key and median(ours_key) and median(stock_key):
                ratios[0] = f"{median(ours_key) / median(stock_key):.2f}"
                ours_cpu, stock_cpu = cpu_per_request(ours_key), cpu_per_request(stock_key)
                ratios[1] = f"{stock_cpu / ours_cpu:.2f}" if ours_cpu and stock_cpu else "-"
            cpu, per_request = median(key, "cpu_percent"), cpu_per_request(key)
            runs = f"{len(bound(key))} of {len(results[key])}"
            print(f"| {label} | {runs} | {median(key) or 0:,.0f} | {cpu or 0:.0f}% | "
                  f"{per_request or 0:.0f} | {ratios[0]} | {ratios[1]} |")  # fmt: skip
    if results["wrk"]:
        print(f"| wrk (C), 1 thread, REST | {len(results['wrk'])} | {median('wrk'):,.0f} | | | | |")
    else:
        print("| wrk (C) | not installed: no physical anchor (apt-get install wrk) | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
