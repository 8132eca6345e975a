"""--junit-xml: real Locust runs against the stand-in write the verdict CI systems read.

Each threshold is one test case named after its check and limit, with the measured value (the
precise JSON's) in its message; failed requests and, with --fail-on-saturation, saturation are
cases too, so the XML fails exactly when the exit code says the run failed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.test_locust_runs import run_locust


@pytest.fixture(scope="module")
def target(standin, exported_model):
    return {"grpc": standin.grpc_target, "instances": str(exported_model.instances_path)}


def read_junit(path) -> tuple[ET.Element, dict[str, ET.Element]]:
    """The suite and its test cases by name, checking the totals the CI reads."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failed = [case for case in cases.values() if case.find("failure") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == str(len(failed))
    return suite, cases


def test_one_case_per_threshold_with_the_measured_value(tmp_path, target):
    junit = tmp_path / "reports" / "junit.xml"
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "-u", "2", "-r", "2", "-t", "120s", "--request-count", "60",
        "--check-p99-ms", "60000", "--check-min-rps", "1000000", "--fail-on-saturation",
        "--junit-xml", str(junit),
    )  # fmt: skip
    assert run.code == 3, run.stderr[-3000:]
    suite, cases = read_junit(junit)
    assert list(cases) == [
        "p99_ms <= 60000",
        "min_rps >= 1e+06",
        "every request succeeded",
        "load generator not saturated",
    ]
    total = run.precise["total"]
    assert float(suite.get("time")) == pytest.approx(run.precise["wall_time_s"], abs=1e-3)
    # Passed: no failure element, the measured value in the case's output.
    p99 = cases["p99_ms <= 60000"]
    assert p99.find("failure") is None
    assert p99.findtext("system-out") == f"p99_ms = {total['p99_ms']:g}, limit <= 60000: passed"
    # Failed: the measured rate in the failure's message, as the run printed it.
    failure = cases["min_rps >= 1e+06"].find("failure")
    assert failure.get("message") == f"min_rps = {total['rps']:g}, limit >= 1e+06: FAILED"
    assert f"tfsload: threshold failed: {failure.get('message')}" in run.stderr
    assert cases["every request succeeded"].findtext("system-out") == (
        "60 of 60 requests succeeded"
    )
    assert cases["load generator not saturated"].find("failure") is None


def test_failed_requests_fail_their_case_with_the_cause(tmp_path, target):
    junit = tmp_path / "junit.xml"
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "--model-name", "missing", "-u", "1", "-r", "1", "-t", "120s", "--request-count", "5",
        "--junit-xml", str(junit),
    )  # fmt: skip
    assert run.code == 1, run.stderr[-3000:]
    _suite, cases = read_junit(junit)
    assert list(cases) == ["every request succeeded"]  # no threshold, no saturation check
    message = cases["every request succeeded"].find("failure").get("message")
    assert message.startswith("5 of 5 requests failed (5 x grpc: NOT_FOUND")


def test_a_junit_path_that_cannot_be_written_is_bad_input_before_any_load(tmp_path, target):
    (tmp_path / "taken").mkdir()
    run = run_locust(
        tmp_path, "GrpcUser", "-H", target["grpc"], "--instances-file", target["instances"],
        "-u", "1", "-r", "1", "-t", "30s", "--junit-xml", str(tmp_path / "taken"),
    )  # fmt: skip
    assert run.code == 2, run.stderr[-3000:]
    assert f"--junit-xml: {tmp_path / 'taken'}: " in run.stderr
    assert run.precise is None  # nothing ran
