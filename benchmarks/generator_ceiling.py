"""Generator ceiling: requests per second one core of load generator sends, ours against stock
Locust users and against C and Go generators, and the latency it adds at one request in flight.

Null servers answer a canned prediction at once, pinned to other CPUs than the generator: nginx
for REST and, over HTTP/2, for gRPC (a canned gRPC answer with its trailer; without nginx, a
raw-socket Python server for REST and a grpc.aio server for gRPC, which saturate long before a
generator does, and the table says so). nginx reads every gRPC request body (the ``mirror``
to an empty location): a body it skipped would count against its HTTP/2 flood check, which
then ends the connection with a GOAWAY every few thousand calls, failing the calls in flight.
Each case runs for the same time, one process each:

- ceiling, ``--users`` users or connections: tfsload's RestUser and GrpcUser, a stock
  FastHttpUser posting a pre-encoded body and a stock gevent gRPC user as in Locust's example
  (benchmarks/stock_users.py), wrk (C) and hey (Go) where installed;
- one request in flight: tfsload's users at one user, wrk with one connection, and a bare
  synchronous grpcio loop (no gevent, no Locust): the anchors for the latency a generator adds.

Goals (issue "generator per core"): GrpcUser >= 2.0 x the stock gRPC user; RestUser >= 0.5 x
hey; at one request in flight, RestUser's p50 within 30 us of wrk's and GrpcUser's within 20 us
of the bare grpcio loop's. Rounds alternate the order of the cases; each ceiling is the median
over the runs in which the generator was CPU-bound (a ceiling is only measured there; the table
says how many runs that was), latencies are medians over all rounds.

``--processes-list 1,2`` measures scale-out instead: a single process, then ``--processes N``
(a master and N workers) on the generator CPUs, the master's CPU and the workers' CPU per
request; on a machine with more cores give more generator CPUs and larger N, unchanged.

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
import struct
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
PREDICT_PATH = "tensorflow.serving.PredictionService/Predict"

PREDICTIONS = json.dumps({"predictions": [[0.3, 0.7]] * 5}).encode()
NGINX_CONF = """daemon off;
worker_processes {workers};
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
  http2_max_concurrent_streams 4096;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
  server {{
    listen 127.0.0.1:{grpc_port} http2;
    root {tmp}/grpc-root;
    location / {{
      mirror /drained;
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      error_page 405 =200 $uri;
    }}
    location = /drained {{ internal; return 204; }}
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


def instance_rows() -> list[list[int]]:
    """Five IMDB-like rows of 200 token ids (100 of padding), as every case sends."""
    return [[0] * 100 + [(i * 37 + j * 11) % 19999 + 1 for j in range(100)] for i in range(5)]


def predict_messages() -> tuple[bytes, bytes]:
    """(serialized PredictRequest of the instances, serialized canned 5x2 PredictResponse)."""
    import numpy as np

    from tfsload.core import protos

    messages = protos.load()

    def tensor(values, dtype: str, numpy_type: str):
        array = np.asarray(values, dtype=numpy_type)
        proto = messages.TensorProto(dtype=protos.dtype_number(dtype))
        for size in array.shape:
            proto.tensor_shape.dim.add().size = size
        proto.tensor_content = array.tobytes()
        return proto

    request = messages.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.signature_name = "serving_default"
    request.inputs["input_1"].CopyFrom(tensor(instance_rows(), "DT_INT32", "<i4"))
    response = messages.PredictResponse()
    response.outputs["output_0"].CopyFrom(tensor([[0.3, 0.7]] * 5, "DT_FLOAT", "<f4"))
    return request.SerializeToString(), response.SerializeToString()


# --- the null servers and the bare grpcio loop (run as child processes of this script) --------


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
    """Fallback null gRPC server: a canned PredictResponse for every Predict, no parsing."""
    import grpc

    _, canned = predict_messages()

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


def bare_grpc_loop(target: str, seconds: float) -> None:
    """One synchronous Predict after another on one channel; prints rate and p50 as JSON."""
    import grpc

    request, _ = predict_messages()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/" + PREDICT_PATH)
        for _ in range(200):  # connect and warm up
            call(request, timeout=10)
        latencies = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sent = time.perf_counter()
            call(request, timeout=10)
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
    result = {"rate": len(latencies) / elapsed, "p50_us": 1e6 * statistics.median(latencies)}
    print(json.dumps(result), flush=True)


# --- running the cases ------------------------------------------------------------------------


def cpu_count(cpus: str) -> int:
    """How many CPUs a taskset list names: ``0-3,8`` -> 5."""
    count = 0
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def pinned(cpus: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *command] if shutil.which("taskset") else command


def run_measured(command: list[str], env: dict | None = None) -> tuple[str, dict]:
    """Run to completion; (stdout and stderr, steady-state CPU percent by role).

    CPU is sampled while the process runs, for it and its children (a master's workers), and
    read from 3 s after its start (imports, spawning) to the last sample, so start-up costs do
    not count against a generator. Roles: ``all``, ``main`` (the process itself), ``children``.
    """
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    samples: list[tuple[float, float, float]] = []
    children_seen: dict[int, float] = {}  # latest CPU time of every child, exited ones too

    def cpu_of(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            return times.user + times.system
        return 0.0

    def sample() -> None:
        with contextlib.suppress(psutil.Error):
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                # Through taskset (which execs) the generator is this process itself.
                for child in watched.children(recursive=True):
                    children_seen[child.pid] = max(children_seen.get(child.pid, 0.0), cpu_of(child))
                samples.append((time.monotonic(), cpu_of(watched), sum(children_seen.values())))
                time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{command[:6]} exited {process.returncode}:\n{output[-3000:]}")
    steady = [s for s in samples if s[0] >= samples[0][0] + 3] if samples else []
    if len(steady) < 2:
        return output, {}
    first, last = steady[0], steady[-1]
    span = last[0] - first[0]
    main = 100 * (last[1] - first[1]) / span
    children = 100 * (last[2] - first[2]) / span
    return output, {"all": main + children, "main": main, "children": children}


def locust_rate(json_file: Path) -> tuple[float, int, int]:
    """(req/s, requests, failures) from Locust's --json-file: requests over first-to-last."""
    entries = json.loads(json_file.read_text())
    requests = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    start = min(e["start_time"] for e in entries)
    end = max(e["last_request_timestamp"] for e in entries)
    return requests / (end - start), requests, failures


def ours_options() -> list[str]:
    """Options of tfsload's users for null servers: no metadata to ask (the null servers answer
    only predicts), and the IMDB experiments' answer check, rows of probabilities summing to 1."""
    return ["--no-metadata", "--check-answers", "probabilities"]


def run_locust_case(case: dict, args: argparse.Namespace, work: Path, env: dict) -> dict:
    out = work / case["key"]
    users = str(case.get("users", args.users))
    precise = work / f"{case['key']}-precise.json"
    command = pinned(
        args.generator_cpus,
        [sys.executable, "-m", "locust", "-f", str(case["file"]), "--headless", case["user"],
         "-H", case["host"], "-u", users, "-r", users, "-t", f"{args.seconds}s",
         "--only-summary", "--json-file", str(out), *case.get("extra", []),
         *(["--precise-json", str(precise)] if case.get("ours") else [])],
    )  # fmt: skip
    output, cpu = run_measured(command, env)
    rate, requests, failures = locust_rate(out.with_suffix(".json"))
    if failures:
        raise RuntimeError(f"{case['key']}: {failures} of {requests} requests failed:\n{output}")
    result = {"rate": rate, "cpu_percent": cpu.get("all"), "cpu": cpu}
    if case.get("ours"):
        result["p50_us"] = 1000 * json.loads(precise.read_text())["total"]["p50_ms"]
    return result


def wrk_latency_us(output: str) -> float | None:
    match = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        return None
    return float(match.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[match.group(2)]


def run_wrk(args, work: Path, url: str, body: Path, connections: int) -> dict:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    command = pinned(
        args.generator_cpus,
        ["wrk", "-t1", f"-c{connections}", f"-d{args.seconds}s", "--latency", "-s", str(script),
         url],
    )  # fmt: skip
    output, _ = run_measured(command)
    match = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if not match or "Non-2xx" in output:
        raise RuntimeError(f"wrk failed:\n{output}")
    return {"rate": float(match.group(1)), "cpu_percent": None, "p50_us": wrk_latency_us(output)}


def run_hey(args, url: str, body: Path, connections: int) -> dict:
    command = pinned(
        args.generator_cpus,
        ["hey", "-z", f"{args.seconds}s", "-c", str(connections), "-m", "POST",
         "-T", "application/json", "-D", str(body), url],
    )  # fmt: skip
    output, _ = run_measured(command)
    match = re.search(r"Requests/sec:\s*([\d.]+)", output)
    codes = re.findall(r"\[(\d{3})\]\s+\d+ responses", output)
    if not match or set(codes) - {"200"}:
        raise RuntimeError(f"hey failed:\n{output}")
    return {"rate": float(match.group(1)), "cpu_percent": None}


def run_bare_grpc(args, target: str) -> dict:
    command = pinned(
        args.generator_cpus,
        [sys.executable, __file__, "--bare-grpc", target, "--seconds", str(args.seconds)],
    )
    output, _ = run_measured(command)
    result = json.loads(output.strip().splitlines()[-1])
    return {**result, "cpu_percent": None}


def start_servers(args: argparse.Namespace, work: Path) -> tuple[list, str, str, str]:
    """Start the null servers on the server CPUs; returns (processes, rest url, grpc target,
    what serves them)."""
    rest_port, grpc_port = free_port(), free_port()
    processes = []
    if shutil.which("nginx"):
        _, canned = predict_messages()
        answer = work / "grpc-root" / PREDICT_PATH
        answer.parent.mkdir(parents=True)
        answer.write_bytes(b"\x00" + struct.pack(">I", len(canned)) + canned)  # one gRPC frame
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                tmp=work,
                port=rest_port,
                grpc_port=grpc_port,
                body=PREDICTIONS.decode(),
                workers=cpu_count(args.server_cpus),
            )
        )
        command = ["nginx", "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)]
        processes.append(subprocess.Popen(pinned(args.server_cpus, command), cwd=REPO))
        workers = cpu_count(args.server_cpus)
        kind = f"nginx, {workers} worker(s) (REST: canned JSON; gRPC: canned answer over HTTP/2)"
    else:
        for flag, port in (("--serve-rest", rest_port), ("--serve-grpc", grpc_port)):
            command = [sys.executable, __file__, flag, str(port)]
            processes.append(subprocess.Popen(pinned(args.server_cpus, command), cwd=REPO))
        kind = ("Python raw-socket REST and grpc.aio servers (nginx not found: these saturate "
                "before the generators do, so the ceilings below are the servers')")  # fmt: skip
    wait_for_port(rest_port)
    wait_for_port(grpc_port)
    return processes, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", kind


# --- the two measurements ---------------------------------------------------------------------


def median_of(runs: list[dict], field: str) -> float | None:
    values = [r[field] for r in runs if r.get(field) is not None]
    return statistics.median(values) if values else None


def bound(runs: list[dict]) -> list[dict]:
    """The runs that measured a ceiling: the generator was CPU-bound (wrk, hey: all runs)."""
    return [r for r in runs if r["cpu_percent"] is None or r["cpu_percent"] >= BOUND_PERCENT]


def cpu_per_request(runs: list[dict]) -> float | None:
    """Generator CPU µs per request, median over all runs: on a machine shared with other work
    (too few CPU-bound runs) the ratio of these is the fair comparison of two generators."""
    values = [1e4 * r["cpu_percent"] / r["rate"] for r in runs if r["cpu_percent"]]
    return statistics.median(values) if values else None


def ceiling_and_latency(args, work: Path, env: dict, rest_url: str, grpc_target: str) -> dict:
    ours = REPO / "locustfiles" / "tfserving.py"
    stock = REPO / "benchmarks" / "stock_users.py"
    extra = ["--instances-file", env["BENCH_INSTANCES"], *ours_options()]
    cases = [
        {"key": "ours-rest", "label": "tfsload RestUser", "file": ours, "user": "RestUser",
         "host": rest_url, "extra": extra, "ours": True},
        {"key": "stock-rest", "label": "stock FastHttpUser, pre-encoded body", "file": stock,
         "user": "StockRestUser", "host": rest_url},
        {"key": "ours-grpc", "label": "tfsload GrpcUser", "file": ours, "user": "GrpcUser",
         "host": f"grpc://{grpc_target}", "extra": extra, "ours": True},
        {"key": "stock-grpc", "label": "stock gevent gRPC user", "file": stock,
         "user": "StockGrpcUser", "host": grpc_target},
        {"key": "ours-rest-1", "label": "tfsload RestUser, 1 user", "file": ours,
         "user": "RestUser", "host": rest_url, "extra": extra, "ours": True, "users": 1},
        {"key": "ours-grpc-1", "label": "tfsload GrpcUser, 1 user", "file": ours,
         "user": "GrpcUser", "host": f"grpc://{grpc_target}", "extra": extra, "ours": True,
         "users": 1},
    ]  # fmt: skip
    url = f"{rest_url}/v1/models/model:predict"
    body = Path(env["BENCH_BODY"])
    anchors = {"bare-grpc-1": lambda: run_bare_grpc(args, grpc_target)}
    if shutil.which("wrk"):
        anchors["wrk"] = lambda: run_wrk(args, work, url, body, args.users)
        anchors["wrk-1"] = lambda: run_wrk(args, work, url, body, 1)
    if shutil.which("hey"):
        anchors["hey"] = lambda: run_hey(args, url, body, args.users)
    results: dict[str, list[dict]] = {c["key"]: [] for c in cases}
    results.update({key: [] for key in anchors})
    for round_index in range(args.rounds):
        order = cases if round_index % 2 == 0 else cases[::-1]
        for case in order:
            result = run_locust_case(case, args, work, env)
            results[case["key"]].append(result)
            print(f"round {round_index + 1} {case['key']}: {result['rate']:.0f} req/s, "
                  f"generator CPU {result['cpu_percent'] or 0:.0f}%, "
                  f"p50 {result.get('p50_us') or 0:.0f} us", flush=True)  # fmt: skip
        for key, anchor in anchors.items():
            result = anchor()
            results[key].append(result)
            print(f"round {round_index + 1} {key}: {result['rate']:.0f} req/s, "
                  f"p50 {result.get('p50_us') or 0:.0f} us", flush=True)  # fmt: skip
    labels = {c["key"]: c["label"] for c in cases}
    labels.update({
        "wrk": f"wrk (C), 1 thread, {args.users} connections", "hey": f"hey (Go), {args.users}"
        " connections", "wrk-1": "wrk (C), 1 connection",
        "bare-grpc-1": "bare synchronous grpcio loop, 1 call in flight",
    })  # fmt: skip
    return {"results": results, "labels": labels}


def report_ceiling(args, measured: dict, kind: str) -> None:
    results, labels = measured["results"], measured["labels"]

    def ceiling(key: str) -> float | None:
        return median_of(bound(results.get(key, [])), "rate")

    print(f"\nOne process per case, {args.users} users or connections, {args.seconds} s per run, "
          f"{args.rounds} rounds; generator on CPU {args.generator_cpus}, null servers on CPU "
          f"{args.server_cpus}: {kind}. Ceilings are medians over the runs where the generator "
          f"was CPU-bound (at least {BOUND_PERCENT}% CPU; a run below that waited for something "
          "else, such as a CPU shared with other work); generator CPU and CPU µs per request are "
          "medians over all runs.\n")  # fmt: skip
    print("| generator | runs | req/s | generator CPU | CPU µs/request | ours/stock | "
          "stock/ours CPU per request | ours/hey |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key in ("ours-rest", "stock-rest", "hey", "wrk", "ours-grpc", "stock-grpc"):
        if key not in results:
            continue
        runs = results[key]
        ratios = ["", "", ""]
        if key.startswith("ours"):
            stock_key = key.replace("ours", "stock")
            stock, ours = ceiling(stock_key), ceiling(key)
            ratios[0] = f"{ours / stock:.2f}" if ours and stock else "-"
            ours_cpu, stock_cpu = cpu_per_request(runs), cpu_per_request(results[stock_key])
            ratios[1] = f"{stock_cpu / ours_cpu:.2f}" if ours_cpu and stock_cpu else "-"
            if key == "ours-rest" and ceiling("hey"):
                ratios[2] = f"{ours / ceiling('hey'):.2f}" if ours else "-"
        cpu, per_request = median_of(runs, "cpu_percent"), cpu_per_request(runs)
        cpu_text = f"{cpu:.0f}%" if cpu else ""
        per_text = f"{per_request:.0f}" if per_request else ""
        print(f"| {labels[key]} | {len(bound(runs))} of {len(runs)} | {ceiling(key) or 0:,.0f} | "
              f"{cpu_text} | {per_text} | {' | '.join(ratios)} |")  # fmt: skip
    print("\nOne request in flight (medians over all rounds):\n")
    print("| generator | runs | p50 µs | req/s |")
    print("|---|---:|---:|---:|")
    for key in ("ours-rest-1", "wrk-1", "ours-grpc-1", "bare-grpc-1"):
        if key in results:
            runs = results[key]
            p50, rate = median_of(runs, "p50_us"), median_of(runs, "rate")
            print(f"| {labels[key]} | {len(runs)} | {p50 or 0:.0f} | {rate or 0:,.0f} |")

    def goal(text: str, value: float | None, limit: float, at_least: bool) -> None:
        if value is None:
            print(f"- {text}: not measured")
            return
        met = value >= limit if at_least else value <= limit
        print(f"- {text}: {value:.2f} ({'met' if met else 'MISSED'})")

    print("\nGoals:")
    ours_grpc, stock_grpc = ceiling("ours-grpc"), ceiling("stock-grpc")
    goal("GrpcUser / stock gRPC user >= 2.0", ours_grpc / stock_grpc if ours_grpc and
         stock_grpc else None, 2.0, True)  # fmt: skip
    ours_cpu, stock_cpu = (
        cpu_per_request(results["ours-grpc"]),
        cpu_per_request(results["stock-grpc"]),
    )
    goal("  the same from CPU per request, all runs (stock/ours) >= 2.0",
         stock_cpu / ours_cpu if ours_cpu and stock_cpu else None, 2.0, True)  # fmt: skip
    if "hey" in results:
        ours_rest, hey = ceiling("ours-rest"), ceiling("hey")
        goal("RestUser / hey >= 0.5", ours_rest / hey if ours_rest and hey else None, 0.5, True)
    else:
        print("- RestUser / hey >= 0.5: hey not installed (apt-get install hey)")

    def delta(ours: str, anchor: str) -> float | None:
        a, b = median_of(results.get(ours, []), "p50_us"), median_of(results.get(anchor, []),
                                                                     "p50_us")  # fmt: skip
        return a - b if a is not None and b is not None else None

    goal("GrpcUser p50 at 1 user - bare grpcio loop's, µs <= 20", delta("ours-grpc-1",
         "bare-grpc-1"), 20, False)  # fmt: skip
    if "wrk-1" in results:
        goal("RestUser p50 at 1 user - wrk's at 1 connection, µs <= 30",
             delta("ours-rest-1", "wrk-1"), 30, False)  # fmt: skip
    else:
        print("- RestUser p50 at 1 user - wrk's: wrk not installed (apt-get install wrk)")


def scale_out(args, env: dict, rest_url: str, grpc_target: str) -> None:
    """Single process, then --processes N: req/s, master CPU, workers' CPU per request."""
    ours = REPO / "locustfiles" / "tfserving.py"
    extra = ["--instances-file", env["BENCH_INSTANCES"], *ours_options()]
    counts = [int(n) for n in args.processes_list.split(",")]
    rows = []
    for user, host in (("RestUser", rest_url), ("GrpcUser", f"grpc://{grpc_target}")):
        for _ in range(args.rounds):
            for processes in [0, *counts]:
                work = Path(tempfile.mkdtemp(prefix="scale-"))
                spread = ["--processes", str(processes)] if processes else []
                case = {"key": "scale", "file": ours, "user": user, "host": host,
                        "extra": [*extra, *spread]}  # fmt: skip
                result = run_locust_case(case, args, work, env)
                shutil.rmtree(work, ignore_errors=True)
                cpu = result["cpu"]
                rows.append((user, processes, result["rate"], cpu.get("main"), cpu.get("children")))
                print(f"{user} processes={processes}: {result['rate']:.0f} req/s, "
                      f"main CPU {cpu.get('main') or 0:.0f}%, workers CPU "
                      f"{cpu.get('children') or 0:.0f}%", flush=True)  # fmt: skip
    print("\n| user | processes | runs | req/s | master CPU | workers' CPU | workers' CPU "
          "µs/request |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for user in ("RestUser", "GrpcUser"):
        for processes in [0, *counts]:
            runs = [r for r in rows if r[0] == user and r[1] == processes]
            rate = statistics.median(r[2] for r in runs)
            main = statistics.median(r[3] or 0 for r in runs)
            children = statistics.median(r[4] or 0 for r in runs)
            generating = children if processes else main
            per_request = 1e4 * generating / rate
            label = str(processes) if processes else "single process"
            master = f"{main:.1f}%" if processes else "-"
            print(f"| {user} | {label} | {len(runs)} | {rate:,.0f} | {master} | "
                  f"{generating:.0f}% | {per_request:.0f} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each run")
    parser.add_argument("--users", type=int, default=50, help="Locust users / connections")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; medians reported")
    parser.add_argument("--generator-cpus", default="0", help="taskset CPU list of generators")
    parser.add_argument("--server-cpus", default="1", help="taskset CPU list of null servers")
    parser.add_argument(
        "--processes-list", default="", help="measure scale-out with these --processes counts"
    )
    parser.add_argument("--serve-rest", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-grpc", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_rest:
        asyncio.run(serve_rest(args.serve_rest))
        return 0
    if args.serve_grpc:
        asyncio.run(serve_grpc(args.serve_grpc))
        return 0
    if args.bare_grpc:
        bare_grpc_loop(args.bare_grpc, args.seconds)
        return 0

    work = Path(tempfile.mkdtemp(prefix="generator-ceiling-"))
    rows = instance_rows()
    instances = work / "instances.json"
    instances.write_text(json.dumps(rows))
    body = work / "body.json"
    body.write_text(json.dumps({"signature_name": "serving_default", "instances": rows}))
    env = {**os.environ, "BENCH_INSTANCES": str(instances), "BENCH_BODY": str(body)}
    processes, rest_url, grpc_target, kind = start_servers(args, work)
    try:
        if args.processes_list:
            scale_out(args, env, rest_url, grpc_target)
        else:
            measured = ceiling_and_latency(args, work, env, rest_url, grpc_target)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    if not args.processes_list:
        report_ceiling(args, measured, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
