"""Locust's web UI as its users drive it, against the session's stand-in: real processes only.

A single process and a master with two workers, each ``locust -f locustfiles/tfserving.py
--class-picker``, driven through the endpoints the UI's page uses: the start form's POST
(``/swarm``), ``/stats/requests`` (which the page polls; tfsload's rows ride in it),
``/precise``, ``/logs`` and ``/stop``; one test drives the page itself in a headless Chromium.
Every run has a request count, so it ends by itself with an exact count; each run uses a count
of its own, so that a wait for its end cannot be met by the previous run's numbers.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from ruamel.yaml import YAML

from tests import webdriver
from tests.conftest import REPO
from tests.standin_process import free_port
from tests.test_locust_runs import clean_env, locust_command

WARMUP = 20
USERS = 2  # one per worker: each worker then has a share of the count and the warm-up
TARGET_CLASSES = ["LocalGrpc", "LocalRest"]  # what the targets file below makes
NO_ADDRESS = "RestUser needs an address: -H http://host:port or --rest-host"

T = TypeVar("T")


@dataclass
class LocustUI:
    """A running Locust web UI and its processes (the master or single process first).

    Locust caches ``/stats/requests`` for two seconds, so the state and worker count are read
    from the page (``/``), which is built afresh on each request, and tfsload's rows from
    ``/precise``; Locust's own numbers are compared once its cache has caught up.
    """

    url: str
    instances: str  # the instances file every form names, unless a test names another
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, timeout=30).json()

    def stats(self) -> dict:
        return self.get("/stats/requests")

    def template_args(self) -> dict:
        """What the page is built from (``window.templateArgs``): state, offered classes."""
        page = requests.get(self.url + "/", timeout=30).text
        (line,) = [x for x in page.splitlines() if "window.templateArgs = " in x]
        return json.loads(line.split("window.templateArgs = ", 1)[1])

    def state(self) -> str:
        return self.template_args()["state"]

    def precise_total(self) -> int:
        rows = self.get("/precise")
        return rows[-1]["count"] if rows else 0

    def log_lines(self) -> list[str]:
        """The master's (or single process's) lines in the UI's Logs tab."""
        return self.get("/logs")["master"]

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self.logs)

    def swarm(self, classes: list[str], count: int, host: str = "", **options: Any) -> dict:
        """Send the start form as the page does; returns its answer."""
        form = {
            "user_count": USERS, "spawn_rate": USERS, "host": host, "user_classes": classes,
            "request_count": count, "warmup_requests": WARMUP, "instances_file": self.instances,
            "check_p99_ms": "", **options,
        }  # fmt: skip
        return requests.post(self.url + "/swarm", data=form, timeout=30).json()

    def wait(self, probe: Callable[[], T], what: str, timeout: float = 60) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the processes' logs."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not after {timeout} s\n{self.output()}")
            time.sleep(0.1)

    def wait_idle(self, workers: int = 0) -> None:
        """Until no test runs and ``workers`` workers are connected, ready for the next start
        (a stopped master has every connected worker back in its ready state)."""
        self.wait(
            lambda: (
                (args := self.template_args())["state"] in ("ready", "stopped")
                and args["worker_count"] == workers
            ),
            f"idle with {workers} ready workers",
        )

    def run(self, classes: list[str], count: int, workers: int = 0, **form: Any) -> dict:
        """A started run to its end (its count reached); returns /stats/requests once
        Locust's numbers are in."""
        self.wait_idle(workers)
        answer = self.swarm(classes, count, **form)
        assert answer["success"], answer
        return self.finish(count)

    def finish(self, count: int) -> dict:
        """Until the started run has ended at its count; then as :meth:`run`."""
        self.wait(
            lambda: self.state() == "stopped" and self.precise_total() == count,
            f"a run of {count} requests",
        )
        return self.wait(lambda: self.stats_counting(count), "Locust's numbers of the run")

    def stats_counting(self, count: int) -> dict | None:
        """/stats/requests, once Locust's own total is ``count`` (its cache caught up)."""
        stats = self.stats()
        return stats if locust_total(stats) == count else None


def precise_rows(stats: dict) -> list[dict]:
    (extended,) = stats["extended_stats"]
    assert extended["key"] == "precise-latency"
    return extended["data"]


def locust_rows(stats: dict) -> dict[str, tuple[int, int]]:
    return {row["name"]: (row["num_requests"], row["num_failures"]) for row in stats["stats"]}


def locust_total(stats: dict) -> int:
    return locust_rows(stats)["Aggregated"][0]


def assert_exact_run(ui: LocustUI, stats: dict, count: int, names: set[str]) -> None:
    """The run counted exactly ``count`` requests in µs rows per target, Locust agreeing."""
    rows = precise_rows(stats)
    assert rows == ui.get("/precise")
    *entries, total = rows
    assert {row["name"] for row in entries} == names
    assert (total["name"], total["count"], total["failures"]) == ("Aggregated", count, 0)
    assert sum(row["count"] for row in entries) == count
    locust = locust_rows(stats)
    for row in rows:
        assert locust[row["name"]] == (row["count"], row["failures"])
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]


def start(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextlib.contextmanager
def web_ui(
    tmp: Path, env: dict, instances: str, *args: str, workers: int = 0
) -> Iterator[LocustUI]:
    """``locust ARGS`` with its web UI on a free port, and with ``--master`` in ``args``,
    ``workers`` workers, until the block ends. The master (or single process) runs in
    ``tmp/ui``, the workers in ``tmp/workers``: what one reads by a relative path, the others
    do not see."""
    web_port, master_port = free_port(), free_port()
    (tmp / "ui").mkdir()
    (tmp / "workers").mkdir()
    ui = LocustUI(url=f"http://127.0.0.1:{web_port}", instances=instances)
    master = ["--master-bind-port", str(master_port)] if "--master" in args else []
    command = locust_command(*args, "--web-port", str(web_port), *master)
    try:
        ui.logs.append(tmp / "ui.log")
        ui.processes.append(start(command, tmp / "ui", env, ui.logs[-1]))
        for index in range(workers):
            ui.logs.append(tmp / f"worker{index}.log")
            worker = locust_command("--worker", "--master-port", str(master_port))
            ui.processes.append(start(worker, tmp / "workers", env, ui.logs[-1]))
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                ui.stats()
                break
            exited = [p.args for p in ui.processes if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                raise RuntimeError(f"the web UI did not come up ({exited})\n{ui.output()}")
            time.sleep(0.2)
        ui.wait_idle(workers)
        yield ui
    finally:
        for process in ui.processes:
            stop(process)


@pytest.fixture(scope="module")
def targets_env(standin, tmp_path_factory) -> dict[str, str]:
    """The environment of Locust processes that know the stand-in as target ``local``."""
    targets = tmp_path_factory.mktemp("targets") / "targets.toml"
    targets.write_text(
        f'[[targets]]\nname = "local"\nlabel = "the stand-in"\n'
        f'rest = "{standin.rest_url}"\ngrpc = "{standin.grpc_target}"\n'
    )
    return {**clean_env(), "LOCUST_TARGETS_FILE": str(targets)}


@pytest.fixture(scope="module")
def instances(exported_model) -> str:
    return str(exported_model.instances_path)


@pytest.fixture(scope="module")
def single(tmp_path_factory, targets_env, instances) -> Iterator[LocustUI]:
    """One process with the class picker and a targets file: it offers the targets' classes."""
    tmp = tmp_path_factory.mktemp("single")
    with web_ui(tmp, targets_env, instances, "--class-picker") as ui:
        yield ui


@pytest.fixture(scope="module")
def master(tmp_path_factory, targets_env, instances) -> Iterator[LocustUI]:
    """A master offering the target classes and RestUser, two workers; a copy of the rows
    that only the master can read as ``rows.json``."""
    tmp = tmp_path_factory.mktemp("distributed")
    precise = tmp / "precise.json"
    with web_ui(
        tmp, targets_env, instances, "--master", "--class-picker", *TARGET_CLASSES, "RestUser",
        "--precise-json", str(precise), workers=2,
    ) as ui:  # fmt: skip
        shutil.copy(instances, tmp / "ui" / "rows.json")
        yield ui


# ---- a single process ------------------------------------------------------------------------


def test_single_process_offers_the_targets_and_refuses_a_bad_form_then_runs(single):
    args = single.template_args()
    assert args["show_userclass_picker"]
    assert args["available_user_classes"] == TARGET_CLASSES  # ticked by default: a run that works
    answer = single.swarm(TARGET_CLASSES, 200, check_p99_ms="soon")
    assert answer == {
        "success": False, "message": "tfsload: --check-p99-ms: 'soon' is not a number", "host": "",
    }  # fmt: skip
    assert single.state() == "ready"  # nothing started
    assert any(
        line.endswith("tfsload: the run was not started: --check-p99-ms: 'soon' is not a number")
        for line in single.log_lines()
    )
    answer = single.swarm(["Nope"], 200)
    offered = ", ".join(TARGET_CLASSES)
    assert answer["message"] == f"tfsload: pick at least one user class (offered: {offered})"
    stats = single.run(TARGET_CLASSES, 200)
    assert_exact_run(single, stats, 200, {"local grpc", "local rest"})


def test_single_process_without_targets_runs_a_generic_class_at_the_forms_host(
    tmp_path, standin, instances
):
    """No targets file: RestUser and GrpcUser are offered, and the form's host decides."""
    with web_ui(tmp_path, clean_env(), instances, "--class-picker") as ui:
        assert ui.template_args()["available_user_classes"] == ["GrpcUser", "RestUser"]
        answer = ui.swarm(["GrpcUser", "RestUser"], 210, host=standin.rest_url)
        assert not answer["success"]
        assert answer["message"].startswith("tfsload: -H: ")
        assert answer["message"].endswith("GrpcUser needs grpc://host:port")
        assert any("tfsload: the run was not started: -H: " in x for x in ui.log_lines())
        stats = ui.run(["RestUser"], 210, host=standin.rest_url)
        assert_exact_run(ui, stats, 210, {"rest"})


@pytest.mark.skipif(not webdriver.available(), reason="needs Debian's chromium, chromium-driver")
def test_the_page_starts_the_preselected_targets_and_shows_precise_latency(single, tmp_path):
    """The start form and the "Precise latency" tab in a real browser, as a user sees them."""
    single.wait_idle()
    with webdriver.chromium(tmp_path / "profile") as browser:
        browser.open(single.url + "/")
        if single.state() != "ready":  # after an earlier run: the "New" button opens the form
            browser.click("//button[.='New']")
        checked = browser.wait_for(
            lambda: browser.script(
                "return [...document.querySelectorAll('tr')]"
                ".filter(r => r.querySelector('input[type=checkbox]:checked'))"
                ".map(r => r.innerText.trim()).filter(t => t)"
            ),
            "the class picker",
        )
        assert checked == TARGET_CLASSES
        browser.fill("//input[@name='userCount']", str(USERS))
        browser.fill("//input[@name='spawnRate']", str(USERS))
        browser.click("//*[normalize-space()='Custom parameters']")
        browser.fill("//input[@name='requestCount']", "220")
        browser.fill("//input[@name='warmupRequests']", str(WARMUP))
        browser.fill("//input[@name='instancesFile']", "missing.json")
        browser.click("//button[@type='submit']")
        refusal = "tfsload: --instances-file: missing.json"
        browser.wait_for(lambda: refusal in browser.text(), "the refusal next to the form")
        assert single.state() in ("ready", "stopped")
        browser.fill("//input[@name='instancesFile']", single.instances)
        browser.click("//button[@type='submit']")
        stats = single.finish(220)
        assert_exact_run(single, stats, 220, {"local grpc", "local rest"})
        browser.click("//*[@role='tab' and .='Precise latency']")
        # The page polls /stats/requests every two seconds: wait for this run's rows.
        table = browser.wait_for(lambda: shown_table(browser, "Aggregated", "220"), "the table")
    header, *rows = table
    assert header[:4] == ["Name", "Type", "# Requests", "# Fails"]
    shown = {row[0]: row for row in rows}
    assert set(shown) == {"Aggregated", "local grpc", "local rest"}
    for row in precise_rows(stats):
        assert shown[row["name"]][2:4] == [str(row["count"]), "0"]
        assert float(shown[row["name"]][header.index("p99 (ms)")]) == row["p99_ms"]


def shown_table(browser: webdriver.Browser, name: str, count: str) -> list[list[str]] | None:
    """The "Precise latency" table's cells, header first, once row ``name`` shows ``count``."""
    table = browser.script(
        "const t = [...document.querySelectorAll('table')]"
        ".find(t => t.innerText.includes('p99.9 (ms)'));"
        "return t && [...t.querySelectorAll('tr')].map(r => r.innerText.split('\\t'))"
    )
    if table and [name, "", count] in [row[:3] for row in table]:
        return table
    return None


# ---- a master and two workers ----------------------------------------------------------------


def test_master_refuses_a_start_without_an_address_at_the_form(master):
    assert master.template_args()["available_user_classes"] == [*TARGET_CLASSES, "RestUser"]
    answer = master.swarm([*TARGET_CLASSES, "RestUser"], 230)
    assert (answer["success"], answer["message"]) == (False, f"tfsload: {NO_ADDRESS}")
    answer = master.swarm(TARGET_CLASSES, 230, user_count=1)
    assert answer["message"] == (
        "tfsload: -u/--users: 1 users cannot cover 2 workers, each of which has a share of the "
        "count, warm-up or rate; use at least one user per worker"
    )
    assert master.state() == "ready"
    refused = f"tfsload: the run was not started: {NO_ADDRESS}"
    assert any(line.endswith(refused) for line in master.log_lines())


def test_a_refusal_on_the_workers_is_logged_and_stops_the_run_then_a_corrected_start_runs(master):
    """rows.json is only in the master's directory: the workers refuse, the run stops on all of
    them and the UI's Logs tab says why; twice, then the same master and workers run."""
    before = len(refusals(master))
    for attempt in range(2):
        master.wait_idle(workers=2)
        seen = len(refusals(master))
        answer = master.swarm(TARGET_CLASSES, 240, instances_file="rows.json")
        assert answer["success"], answer  # the master does not read the rows itself
        master.wait(lambda seen=seen: len(refusals(master)) > seen, f"refusal {attempt}")
        master.wait_idle(workers=2)  # stopped, and neither worker was let go
        assert master.state() == "stopped" and master.precise_total() == 0
    new = refusals(master)[before:]
    assert all("--instances-file: rows.json" in line for line in new), new
    stats = master.run(TARGET_CLASSES, 240, workers=2)
    assert_exact_run(master, stats, 240, {"local grpc", "local rest"})


def refusals(ui: LocustUI) -> list[str]:
    return [line for line in ui.log_lines() if "tfsload: worker " in line and "refused" in line]


def test_the_stop_button_ends_a_distributed_run_and_the_counts_agree(master):
    master.wait_idle(workers=2)
    assert master.swarm(TARGET_CLASSES, 1_000_000)["success"]
    master.wait(lambda: master.state() == "running" and master.precise_total(), "requests")
    assert requests.post(master.url + "/stop", timeout=60).json()["success"]
    master.wait_idle(workers=2)
    assert master.state() == "stopped"
    # The workers' last reports arrive after the stop; Locust's numbers and tfsload's travel in
    # the same messages, so they agree once both are in.
    total = master.wait(
        lambda: (n := master.precise_total()) == locust_total(master.stats()) and n,
        "the stopped run's final numbers",
    )
    assert 0 < total < 1_000_000


def test_generic_class_takes_the_forms_host_and_the_master_writes_merged_results(master, standin):
    """Last of the master's tests: it quits, and writes the precise results of its last run."""
    stats = master.run(["RestUser"], 250, workers=2, host=standin.rest_url)
    assert_exact_run(master, stats, 250, {"rest"})
    process = master.processes[0]
    assert stop(process) == 0, master.output()
    results_path = Path(process.args[process.args.index("--precise-json") + 1])
    results = json.loads(results_path.read_text())
    assert results["total"]["count"] == 250
    assert results["generator"]["processes"] == 2  # merged from both workers


# ---- compose.yaml's master ---------------------------------------------------------------------


def test_compose_master_offers_the_classes_of_the_servers_compose_starts(tmp_path, instances):
    """Started with the service's command and environment, as its container starts it (but on
    loopback and free ports): the picker offers, and ticks, REST and gRPC of the three servers."""
    compose = YAML(typ="safe").load(REPO / "compose.yaml")
    service = compose["services"]["locust-master"]
    env = {**clean_env(), **service["environment"]}
    env["LOCUST_TARGETS_FILE"] = str(REPO / env["LOCUST_TARGETS_FILE"])  # the image's workdir
    loopback = ("--web-host", "127.0.0.1", "--master-bind-host", "127.0.0.1")
    with web_ui(tmp_path, env, instances, *service["command"], *loopback) as ui:
        args = ui.template_args()
    assert args["show_userclass_picker"] and args["is_distributed"]
    assert args["available_user_classes"] == sorted(
        f"{server}{protocol}"
        for server in ("TfsCpu", "TfsGpuBatching", "TfsGpu")
        for protocol in ("Rest", "Grpc")
    )
