"""Reports rendered from raw results: summary.json, report.md and report.html agree; plots are
real images; stand-in cells say so; partial runs say so; findings come from the numbers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.report_data import FakeCell, latencies, make_results
from tfsload.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def markdown_rows(text: str) -> dict[str, list[str]]:
    """Cell table of report.md: first column + protocol -> cells."""
    section = text.split("## Cells", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    table = {}
    for line in rows:
        values = [v.strip() for v in line.strip("|").split(" | ")]
        table[f"{values[0]}-{values[2]}"] = values
    return table


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.images: list[str] = []
        self._row: str | None = None
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-cell" in attrs:
            self._row = attrs["data-cell"]
            self.rows[self._row] = []
        elif tag == "td" and self._row:
            self._in_td = True
            self.rows[self._row].append("")
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._in_td and self._row:
            self.rows[self._row][-1] += data


def html_cells(text: str) -> _Cells:
    parser = _Cells()
    parser.feed(text)
    return parser


def expected_row(cell: dict) -> dict[str, str]:
    """How a summary.json cell must read in both tables (formatted independently here)."""

    def ms(key):
        return f"{cell[key]:.3f} ms"

    return {
        "requests": f"{cell['requests']:,}",
        "req/s": f"{cell['rps']:,.1f}",
        "rows/s": f"{cell['rows_per_s']:,.1f}",
        "p50": ms("p50_ms"),
        "p90": ms("p90_ms"),
        "p95": ms("p95_ms"),
        "p99": ms("p99_ms"),
        "p99.9": ms("p999_ms"),
        "errors": str(cell["failures"]),
    }


COLUMNS = {"requests": 3, "req/s": 5, "rows/s": 6, "p50": 7, "p90": 8, "p95": 9, "p99": 10}
COLUMNS |= {"p99.9": 11, "errors": 12}


@pytest.fixture
def results(tmp_path) -> Path:
    cells = [
        FakeCell("nobatch", "rest", latencies(8.0, seed=1), wall_time_s=20.0),
        FakeCell("nobatch", "grpc", latencies(3.0, seed=2), wall_time_s=10.0, failures=3),
        FakeCell("batching", "rest", latencies(6.0, seed=3), wall_time_s=15.0, batches=[25] * 80),
        FakeCell(
            "batching",
            "grpc",
            latencies(2.5, seed=4),
            wall_time_s=8.0,
            batches=[40] * 50,
            server_cpu_s=3.0,
            other_cpu_percent=35.0,
        ),
    ]
    return make_results(tmp_path / "run", cells, thresholds={"p99_ms": 12.0})


def test_numbers_agree_across_summary_markdown_and_html(results):
    summary = write_report(results)
    on_disk = json.loads((results / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert [c["id"] for c in on_disk["cells"]] == [
        "nobatch-rest",
        "nobatch-grpc",
        "batching-rest",
        "batching-grpc",
    ]
    md = markdown_rows((results / "report.md").read_text())
    html = html_cells((results / "report.html").read_text())
    for cell in on_disk["cells"]:
        assert cell["requests"] == (2000 + cell["failures"])
        for column, text in expected_row(cell).items():
            assert md[cell["id"]][COLUMNS[column]] == text, (cell["id"], column)
            assert html.rows[cell["id"]][COLUMNS[column]] == text, (cell["id"], column)
        assert md[cell["id"]][1] == html.rows[cell["id"]][1] == "stand-in"
    # The server's batches, from the metrics delta, in the batch-mean column.
    assert on_disk["cells"][2]["server_batch_mean"] == pytest.approx(25.0)
    assert md["batching-rest"][13] == html.rows["batching-rest"][13] == "25.0 rows"
    assert md["nobatch-rest"][13] == "–"


def test_plots_exist_as_valid_png_and_are_embedded(results):
    import matplotlib.image

    write_report(results)
    pngs = sorted((results / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(
        ["percentiles", "throughput", "latency_over_time", "batch_sizes"]
    )
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC)
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100
    html = html_cells((results / "report.html").read_text())
    assert len(html.images) == 4
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in html.images)
    md = (results / "report.md").read_text()
    assert "](plots/batch_sizes.png)" in md


def test_verdicts_thresholds_errors_and_saturation(tmp_path):
    cells = [
        FakeCell("fast", "grpc", latencies(2.0)),
        FakeCell("slow", "grpc", latencies(20.0)),
        FakeCell("busy", "grpc", latencies(2.0), saturated=True),
        FakeCell("flaky", "grpc", latencies(2.0), failures=7),
    ]
    summary = write_report(make_results(tmp_path, cells, thresholds={"p99_ms": 10.0}))
    verdicts = {c["id"]: c["verdict"] for c in summary["cells"]}
    assert verdicts["fast-grpc"] == "PASS"
    assert verdicts["slow-grpc"].startswith("FAIL: p99_ms = ")
    assert "limit <= 10" in verdicts["slow-grpc"]
    assert verdicts["busy-grpc"] == "FAIL: generator saturated"
    assert verdicts["flaky-grpc"] == "FAIL: 7 errors"
    assert any("saturated in busy-grpc" in line for line in summary["findings"])


def test_a_saturated_generator_fails_a_cell_only_when_the_experiment_says_so(tmp_path):
    """[thresholds] fail_on_saturation = false: the finding stays, the verdict is PASS."""
    cells = [FakeCell("busy", "grpc", latencies(2.0), saturated=True)]
    summary = write_report(make_results(tmp_path, cells, fail_on_saturation=False))
    (cell,) = summary["cells"]
    assert cell["saturated"] and cell["verdict"] == "PASS"
    assert any("saturated in busy-grpc" in line for line in summary["findings"])


def test_findings_state_measured_differences(results):
    summary = write_report(results)
    by_id = {c["id"]: c for c in summary["cells"]}
    change = by_id["batching-rest"]["rps"] / by_id["nobatch-rest"]["rps"] - 1
    expected = f"rest: batching vs nobatch: throughput {abs(change):.0%} higher"
    assert any(line.startswith(expected) for line in summary["findings"]), summary["findings"]
    # 3 s of server CPU for the 2000 requests its metrics counted.
    assert (
        "batching-grpc: the server ran batches of 40.0 rows on average (about 8.0 requests); "
        "it spent 1.500 ms of CPU per request." in summary["findings"]
    )
    noisy = [line for line in summary["findings"] if line.startswith("Other processes")]
    assert noisy and "up to 35% of this machine's CPU" in noisy[0] and "(batching-grpc)" in noisy[0]
    assert any("stand-in server" in line for line in summary["findings"])


def test_partial_run_is_marked_and_missing_cells_listed(tmp_path):
    cells = [
        FakeCell("a", "rest", latencies(3.0)),
        FakeCell("a", "grpc", latencies(3.0), status="interrupted"),
        FakeCell("b", "rest", [], status="not_run"),
    ]
    out = make_results(tmp_path, cells, status="running")  # killed before it could finish
    summary = write_report(out)
    assert summary["status"] == "partial"
    assert [c["status"] for c in summary["cells"]] == ["ok", "interrupted", "not_run"]
    md = (out / "report.md").read_text()
    assert md.startswith("# tfsload report: fake (PARTIAL)")
    rows = markdown_rows(md)
    assert rows["b-rest"][-1].startswith("NOT RUN")
    assert "(PARTIAL)" in (out / "report.html").read_text()


def test_header_states_machine_versions_model_and_server_kind(results):
    write_report(results)
    md = (results / "report.md").read_text()
    assert "**Machine**: Test CPU 9000, 2 logical / 1 physical cores, 7.8 GiB memory" in md
    assert re.search(r"\*\*Versions\*\*: tfsload 0\.1\.0, locust 2\.47\.0", md)
    assert "657,758 parameters" in md and "5 rows per request" in md
    assert "**Servers**: stand-in" in md


def test_report_command_rerenders_and_rejects_non_results(results, tmp_path):
    write_report(results)
    before = json.loads((results / "summary.json").read_text())
    for name in ("summary.json", "report.md", "report.html"):
        (results / name).unlink()
    done = run_cli("-m", "tfsload", "report", str(results), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((results / "summary.json").read_text()) == before
    assert str(results / "report.html") in done.stdout
    bad = run_cli("-m", "tfsload", "report", str(tmp_path / "nothing"), timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing'}: no run.json, not a tfsload results directory"
    ]
