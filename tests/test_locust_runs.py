"""Real Locust runs (subprocesses) of locustfiles/tfserving.py against the real stand-in.

Each run checks what a user of the suite relies on: requests complete and are validated, the
precise results count exactly what Locust counts, failures are named by cause, thresholds and
saturation set the exit code, --request-count and --processes hold, the web UI shows the tab,
and no Locust process imports TensorFlow. Runs are short; nothing here asserts on speed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from tests.standin_process import free_port

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "locustfiles" / "tfserving.py"
DEFAULT_CLASSES = [
    "GrpcUser", "RestUser", "TfsCpuGrpc", "TfsCpuRest", "TfsGpuBatchingGrpc",
    "TfsGpuBatchingRest", "TfsGpuGrpc", "TfsGpuRest",
]  # fmt: skip

# A second locustfile loaded beside ours: at the end it prints which TensorFlow modules the
# Locust process has imported (there must be none; see tfsload/core/protos.py).
PROBE = """
import sys
from locust import events

@events.quit.add_listener
def report_tensorflow(**_kwargs):
    roots = ("tensorflow", "tensorflow_serving")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in roots)
    print("probe: tensorflow modules:", ",".join(loaded) or "none", flush=True)
"""


@dataclass
class LocustRun:
    code: int
    stdout: str
    stderr: str
    precise: dict | None
    locust_stats: dict[str, tuple[int, int]]  # Locust's own final (requests, failures) by name
    precise_csv: dict[str, dict]

    def count(self, name: str = "Aggregated") -> int:
        return self.locust_stats[name][0]

    def failures(self, name: str = "Aggregated") -> int:
        return self.locust_stats[name][1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}


def locust_command(*args: str, locustfiles: str = str(LOCUSTFILE)) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", locustfiles, *args]


def read_csv(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def read_locust_json(path: Path) -> dict[str, tuple[int, int]]:
    """Locust's final numbers from --json-file (its CSV is rewritten only once a second)."""
    if not path.exists():
        return {}
    rows = {e["name"]: (e["num_requests"], e["num_failures"]) for e in json.loads(path.read_text())}
    rows["Aggregated"] = tuple(sum(values) for values in zip(*rows.values(), strict=True))
    return rows


def run_locust(tmp_path: Path, *args: str, probe: bool = False, timeout: float = 180) -> LocustRun:
    """A headless run with CSV and precise JSON output; returns everything it left."""
    out = tmp_path / "out"
    locustfiles = str(LOCUSTFILE)
    if probe:
        (tmp_path / "probe.py").write_text(PROBE)
        locustfiles += f",{tmp_path / 'probe.py'}"
    command = locust_command(
        "--headless", "--only-summary", "--csv", str(out / "locust"),
        "--json-file", str(out / "locust"), "--precise-json", str(out / "precise.json"), *args,
        locustfiles=locustfiles,
    )  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    precise_path = out / "precise.json"
    return LocustRun(
        code=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        precise=json.loads(precise_path.read_text()) if precise_path.exists() else None,
        locust_stats=read_locust_json(out / "locust.json"),
        precise_csv=read_csv(out / "locust_precise.csv"),
    )


def assert_counts_agree(run: LocustRun) -> None:
    """Precise JSON, precise CSV and Locust's own stats count the same requests per row."""
    precise = run.precise
    assert precise is not None, run.stderr[-3000:]
    for entry in [*precise["entries"], precise["total"]]:
        assert (entry["count"], entry["failures"]) == run.locust_stats[entry["name"]]
        assert int(run.precise_csv[entry["name"]]["Request Count"]) == entry["count"]
    assert precise["total"]["count"] == sum(e["count"] for e in precise["entries"])


def assert_valid_latencies(entry: dict) -> None:
    assert entry["failures"] == 0 and entry["count"] > 0
    assert 0 < entry["min_ms"] <= entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"]
    assert entry["p99_ms"] <= entry["p999_ms"] <= entry["max_ms"]
    assert entry["rows_per_s"] == pytest.approx(5 * entry["rps"], rel=0.01)


def tfsload_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tfsload:")]


@pytest.fixture(scope="module")
def target(standin, exported_model):
    """Where and what to send: the shared stand-in and the exported model's instances."""
    return {
        "rest": standin.rest_url,
        "grpc": standin.grpc_target,
        "instances": str(exported_model.instances_path),
    }


def test_rest_run_counts_what_locust_counts_and_passes_all_thresholds(tmp_path, target):
    run = run_locust(
        tmp_path, "RestUser", "-H", target["rest"], "--instances-file", target["instances"],
        "-u", "4", "-r", "4", "-t", "120s", "--request-count", "200", "--warmup-requests", "20",
        "--check-p50-ms", "60000", "--check-p95-ms", "60000", "--check-p99-ms", "60000",
        "--check-fail-ratio", "0", "--check-min-rps", "0.01", probe=True,
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert_counts_agree(run)
    precise = run.precise
    assert run.count() == 200  # exactly the count, the 20 warm-up requests left out
    assert precise["format"] == "tfsload-precise/1"
    assert precise["request_count_target"] == 200 and precise["warmup_requests"] == 20
    (entry,) = precise["entries"]
    assert (entry["name"], entry["type"]) == ("rest", "POST")
    assert_valid_latencies(entry)
    assert precise["wall_time_s"] > 0 and precise["passed"]
    assert [t["check"] for t in precise["thresholds"]] == [
        "p50_ms", "p95_ms", "p99_ms", "fail_ratio", "min_rps",
    ]  # fmt: skip
    assert all(t["passed"] for t in precise["thresholds"])
    assert precise["arrival"]["mode"] == "closed" and precise["generator"]["processes"] == 1
    assert sum(point["count"] for point in precise["timeline"]) == 200
    assert "Precise latency" in run.stdout and not tfsload_lines(run.stderr)
    assert (tmp_path / "out" / "locust_stats.csv").exists()  # Locust's own CSV is still written
    assert "probe: tensorflow modules: none" in run.stdout


def test_grpc_run_trips_latency_and_rate_thresholds(tmp_path, target):
    run = run_locust(
        tmp_path, "GrpcUser", "-H", f"grpc://{target['grpc']}", "--target-name", "cell-a",
        "--instances-file", target["instances"], "-u", "4", "-r", "4", "-t", "120s",
        "--request-count", "100",
        "--check-p50-ms", "0.001", "--check-p95-ms", "0.001", "--check-p99-ms", "0.001",
        "--check-fail-ratio", "0", "--check-min-rps", "1000000", probe=True,
    )  # fmt: skip
    assert run.code == 3, run.stderr[-3000:]
    assert_counts_agree(run)
    assert run.count() == 100 and run.failures() == 0
    (entry,) = run.precise["entries"]
    assert (entry["name"], entry["type"]) == ("cell-a grpc", "gRPC")  # --target-name
    assert_valid_latencies(entry)
    failed = [line.split(":")[2].split("=")[0].strip() for line in tfsload_lines(run.stderr)]
    assert failed == ["p50_ms", "p95_ms", "p99_ms", "min_rps"]  # fail_ratio 0 held
    assert not run.precise["passed"]
    assert "probe: tensorflow modules: none" in run.stdout


def test_wrong_model_over_grpc_is_not_found_and_trips_the_fail_ratio(tmp_path, target):
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "--model-name", "missing", "-u", "2", "-r", "2", "-t", "2s", "--check-fail-ratio", "0.5",
    )  # fmt: skip
    assert run.code == 3, run.stderr[-3000:]
    assert_counts_agree(run)
    total = run.precise["total"]
    assert total["count"] == total["failures"] > 0 and total["p50_ms"] is None
    assert run.precise["failures"] == [
        {
            "name": "grpc",
            "error": "NOT_FOUND: Servable not found for request: Latest(missing)",
            "occurrences": total["count"],
        }
    ]
    assert "threshold failed: fail_ratio = 1" in run.stderr


def test_wrong_model_over_rest_is_404_and_saturation_exits_4(tmp_path, target):
    # A limit of 0.001 % CPU: any busy generator counts as saturated, so exit 4 must follow.
    run = run_locust(
        tmp_path, "RestUser", "-H", target["rest"], "--instances-file", target["instances"],
        "--model-name", "missing", "-u", "2", "-r", "2", "-t", "2s", "--fail-on-saturation",
        "--saturation-cpu-percent", "0.001",
    )  # fmt: skip
    assert run.code == 4, run.stderr[-3000:]
    assert_counts_agree(run)
    (failure,) = run.precise["failures"]
    assert failure["error"] == "HTTP 404: Servable not found for request: Latest(missing)"
    assert failure["occurrences"] == run.precise["total"]["count"] > 0
    assert run.precise["generator_saturated"] and run.precise["generator"]["saturated"]
    assert "the load generator was saturated" in run.stdout


def test_server_down_counts_failures_by_cause_and_ends_on_time(tmp_path, target):
    closed = free_port()  # nothing listens there
    run = run_locust(
        tmp_path, "RestUser", "GrpcUser", "--rest-host", f"http://127.0.0.1:{closed}",
        "--grpc-host", f"127.0.0.1:{closed}", "--instances-file", target["instances"],
        "-u", "2", "-r", "2", "-t", "2s", timeout=120,
    )  # fmt: skip
    assert run.code == 1, run.stderr[-3000:]
    assert_counts_agree(run)
    causes = {(f["name"], f["error"]) for f in run.precise["failures"]}
    assert causes == {
        ("rest", "ConnectionRefusedError: [Errno 111] Connection refused"),
        ("grpc", "UNAVAILABLE: failed to connect to all addresses"),
    }
    total = run.precise["total"]
    assert total["failures"] == total["count"] > 0
    assert sum(f["occurrences"] for f in run.precise["failures"]) == total["count"]
    assert run.precise["wall_time_s"] < 30  # -t 2s: the run did not hang


def test_processes_merge_per_target_classes_into_exact_counts(tmp_path, target):
    targets = tmp_path / "targets.toml"
    targets.write_text(
        f'[[targets]]\nname = "stand-in"\nlabel = "the stand-in"\n'
        f'rest = "{target["rest"]}"\ngrpc = "grpc://{target["grpc"]}"\n'
    )
    run = run_locust(
        tmp_path, "--targets-file", str(targets), "StandInRest", "StandInGrpc",
        "-H", "http://127.0.0.1:9", "--instances-file", target["instances"], "--processes", "2",
        "-u", "4", "-r", "4", "-t", "120s", "--request-count", "300", "--warmup-requests", "10",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert_counts_agree(run)
    assert run.precise["total"]["count"] == run.count() == 300
    assert {e["name"] for e in run.precise["entries"]} == {"stand-in rest", "stand-in grpc"}
    for entry in run.precise["entries"]:
        assert_valid_latencies(entry)
    assert run.precise["generator"]["processes"] == 2
    assert "-H is ignored by StandInGrpc, StandInRest" in run.stderr


def test_open_loop_counts_late_sends_when_the_schedule_cannot_be_kept(tmp_path, target):
    # One user cannot send 2000 requests per second to a server that takes milliseconds.
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "-u", "1", "-r", "1", "-t", "120s", "--request-count", "60", "--arrival-rate", "2000",
        "--arrival", "poisson",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert_counts_agree(run)
    arrival = run.precise["arrival"]
    assert (arrival["mode"], arrival["rate"], arrival["sends"]) == ("poisson", 2000.0, 60)
    assert arrival["late_sends"] > 0 and arrival["max_lateness_ms"] > 0
    assert not arrival["schedule_kept"]
    assert "the send schedule was not kept" in run.stdout
    # Latency counts from the intended send time, so the queueing shows in it.
    assert run.precise["total"]["max_ms"] >= arrival["max_lateness_ms"]


def test_web_ui_shows_the_precise_latency_tab(tmp_path, target):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = locust_command(
        "RestUser", "-H", target["rest"], "--instances-file", target["instances"],
        "-u", "2", "-r", "2", "--autostart", "--web-port", str(port),
    )  # fmt: skip
    log = open(tmp_path / "locust.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command, cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        rows = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (rows and rows[-1]["count"] > 0):
            time.sleep(0.5)
            try:
                stats = requests.get(f"{base}/stats/requests", timeout=5).json()
            except requests.RequestException:
                continue
            (extended,) = stats.get("extended_stats") or [{"data": []}]
            rows = extended["data"]
        assert rows and rows[-1]["name"] == "Aggregated" and rows[-1]["count"] > 0
        assert rows[0]["name"] == "rest" and rows[0]["p99_ms"] >= rows[0]["p50_ms"] > 0
        page = requests.get(f"{base}/", timeout=5).text
        assert '"title": "Precise latency"' in page
        table = requests.get(f"{base}/precise/csv", timeout=5).text.splitlines()
        assert table[0].startswith("Type,Name,Request Count") and table[1].startswith("POST,rest,")
        assert requests.get(f"{base}/precise", timeout=5).json()[-1]["name"] == "Aggregated"
        listening = {
            c.laddr for c in psutil.Process(process.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }  # fmt: skip
        assert listening == {("127.0.0.1", port)}, "the web UI binds to loopback by default"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.close()
    output = (tmp_path / "locust.log").read_text()
    assert code == 0, output[-3000:]
    assert "Precise latency" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--headless", "-H", "http://127.0.0.1:1"], "name the user classes to run"),
        (["--headless", "GrpcUser", "-H", "http://127.0.0.1:8501"], "-H: "),
        (
            ["--headless", "RestUser", "-H", "http://127.0.0.1:1", "--instances-file", "nope.json"],
            "--instances-file: nope.json: no such file",
        ),
        (
            ["--headless", "RestUser", "-H", "http://x:1", "--targets-file", "bad.toml"],
            "--targets-file: bad.toml: targets[0].name: required",
        ),
        (
            ["--headless", "RestUser", "-H", "http://x:1", "--check-p99-ms", "soon"],
            "--check-p99-ms: 'soon' is not a number",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    (tmp_path / "bad.toml").write_text('[[targets]]\nrest = "http://127.0.0.1:1"\n')
    done = subprocess.run(
        locust_command(*args), cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = tfsload_lines(done.stderr)
    assert expected in line
    assert "Traceback" not in done.stderr
    if "name the user classes" in line:
        assert "RestUser" in line and "GrpcUser" in line


def test_list_shows_one_class_per_target_and_protocol(tmp_path):
    """configs/targets.toml of the current directory by default (the repository's here)."""
    done = subprocess.run(
        locust_command("--list"), cwd=REPO, env=clean_env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(done.stdout.split()[2:]) == DEFAULT_CLASSES
    done = subprocess.run(
        locust_command("--list"), cwd=tmp_path, env=clean_env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert sorted(done.stdout.split()[2:]) == ["GrpcUser", "RestUser"]
    targets = tmp_path / "targets.toml"
    targets.write_text('[[targets]]\nname = "edge_box"\ngrpc = "10.0.0.1:8500"\n')
    done = subprocess.run(
        locust_command("--list"), cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**clean_env(), "LOCUST_TARGETS_FILE": str(targets)},
    )  # fmt: skip
    assert sorted(done.stdout.split()[2:]) == ["EdgeBoxGrpc", "GrpcUser", "RestUser"]


def test_run_time_counts_from_the_end_of_set_up(tmp_path, target):
    """-t 3s gives three seconds of load: set-up (encoding the requests) is not taken from it."""
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "-u", "2", "-r", "2", "-t", "3s",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert 2.9 <= run.precise["wall_time_s"] < 10
    assert run.precise["timeline"][-1]["t"] >= 2.9


def write_spec(path: Path, **sections: dict) -> Path:
    from tfsload.core import run_spec

    run_spec.from_values(sections).write(path)
    return path


@pytest.mark.parametrize("fail_on_saturation", [True, False])
def test_a_run_spec_file_is_the_whole_run_and_saturation_fails_it_only_when_asked(
    tmp_path, target, fail_on_saturation
):
    """What the runner does per cell: every tfsload setting and the load come from the file."""
    out = tmp_path / "out"
    spec = write_spec(
        tmp_path / "run-spec.json",
        workload={"instances_file": target["instances"]},
        load={"users": 2, "spawn_rate": 2, "run_time_s": 30, "request_count": 60},
        checks={"fail_on_saturation": fail_on_saturation, "saturation_cpu_percent": 0.001},
        target={"name": "spec", "rest": target["rest"]},
        outputs={"precise_json": str(out / "precise.json"), "html": str(out / "locust.html")},
    )
    done = subprocess.run(
        locust_command("--headless", "--only-summary", "--run-spec", str(spec), "RestUser"),
        cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == (4 if fail_on_saturation else 0), done.stderr[-3000:]
    precise = json.loads((out / "precise.json").read_text())
    assert precise["total"]["count"] == 60 and precise["entries"][0]["name"] == "spec rest"
    assert precise["generator_saturated"] and precise["passed"] is not fail_on_saturation
    assert (out / "locust.html").exists()


def test_a_bad_run_spec_is_one_line_and_exit_2(tmp_path):
    spec = tmp_path / "run-spec.json"
    spec.write_text(json.dumps({"format": "tfsload-run-spec/1", "load": {"users": -1}}))
    done = subprocess.run(
        locust_command("--headless", "--run-spec", str(spec), "RestUser"), cwd=tmp_path,
        env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = tfsload_lines(done.stderr)
    assert line == f"tfsload: --run-spec: {spec}: load.users: must be at least 0, got -1"
