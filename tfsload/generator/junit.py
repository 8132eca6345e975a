"""The run's verdict as JUnit XML (``--junit-xml FILE``), so CI systems show which check failed.

CI services (GitHub Actions' test reporters, GitLab, Jenkins) read JUnit XML, not tfsload's
precise JSON. Each threshold becomes one test case named after the check and its limit, with
the measured value in its message; two more cases carry the rest of the verdict that sets
Locust's exit code: requests that failed (or none completed), and, with
``--fail-on-saturation``, a saturated load generator. It is built from the precise results
document (``tfsload-precise/1``), so it says exactly what the JSON and the exit code say.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from pathlib import Path

from tfsload.core.files import write_atomic
from tfsload.core.thresholds import CHECKS, CheckResult

SUITE = "tfsload"


def _case(suite: ET.Element, classname: str, name: str, failure: str | None, detail: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    if failure is not None:
        ET.SubElement(case, "failure", message=failure, type=classname).text = detail
    else:
        ET.SubElement(case, "system-out").text = detail


def junit_text(results: dict) -> str:
    """The JUnit XML document for one run's precise results."""
    total = results["total"]
    cases: list[tuple[str, str, str | None, str]] = []
    for check in results["thresholds"]:
        line = CheckResult(**check).describe()
        _, at_most = CHECKS[check["check"]]
        name = f"{check['check']} {'<=' if at_most else '>='} {check['limit']:g}"
        cases.append(("tfsload.threshold", name, None if check["passed"] else line, line))
    count, failures = total["count"], total["failures"]
    counted = f"{count - failures} of {count} requests succeeded"
    if count == 0:
        problem = "no request completed"
    elif failures:
        causes = "; ".join(
            f"{f['occurrences']} x {f['name']}: {f['error']}" for f in results["failures"][:5]
        )
        problem = f"{failures} of {count} requests failed" + (f" ({causes})" if causes else "")
    else:
        problem = None
    cases.append(("tfsload.requests", "every request succeeded", problem, counted))
    if results.get("fail_on_saturation"):
        generator = results["generator"]
        cpu = f"generator CPU max {generator['cpu_percent_max']:g}% of one core"
        saturated = f"the load generator was saturated ({cpu})"
        cases.append(
            (
                "tfsload.generator",
                "load generator not saturated",
                saturated if generator["saturated"] else None,
                cpu,
            )
        )
    failed = sum(1 for case in cases if case[2] is not None)
    stamp = datetime.datetime.fromtimestamp(results["start_time"], datetime.UTC)
    attributes = {"name": SUITE, "tests": str(len(cases)), "failures": str(failed)}
    root = ET.Element("testsuites", attributes)
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            **attributes,
            "errors": "0",
            "skipped": "0",
            "time": f"{results['wall_time_s']:.3f}",
            "timestamp": stamp.isoformat(timespec="seconds").removesuffix("+00:00"),
        },
    )
    for classname, name, failure, detail in cases:
        _case(suite, classname, name, failure, detail)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, results: dict) -> None:
    write_atomic(path, junit_text(results))
