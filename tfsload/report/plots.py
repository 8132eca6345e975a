"""The report's four plots, drawn with matplotlib into PNG bytes.

Percentiles and throughput per cell answer "which set-up is better"; latency over time shows
whether a cell was steady or drifting (warm-up, queue build-up); the batch-size distribution
shows whether the server actually formed batches, which client numbers alone cannot tell.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import LogLocator, ScalarFormatter

from tfsload.core.percentiles import KEYS as PERCENTILES
from tfsload.core.percentiles import LABELS as PERCENTILE_LABELS
from tfsload.report.table import server_name

PLOTS = {
    "percentiles": "Client latency percentiles per cell",
    "throughput": "Throughput per cell",
    "latency_over_time": "Latency over time (p50 dashed, p99 solid)",
    "batch_sizes": "Server batch-size distribution",
}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _no_data(title: str, why: str) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 2))
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return _png(fig)


def _plain_log_axis(ax) -> None:
    """Log scale with plain numbers (2, 5, 10, 20 ms), not powers of ten."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())


def _measured(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c.get("rps") is not None]


def percentiles_plot(cells: list[dict]) -> bytes:
    cells = _measured(cells)
    if not cells:
        return _no_data(PLOTS["percentiles"], "no cell produced measurements")
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(cells)), 4.5))
    width = 0.8 / len(PERCENTILES)
    for i, p in enumerate(PERCENTILES):
        xs = [j + (i - (len(PERCENTILES) - 1) / 2) * width for j in range(len(cells))]
        ax.bar(xs, [c.get(p) or 0 for c in cells], width, label=PERCENTILE_LABELS[p])
    ax.set_xticks(range(len(cells)), [_cell_label(c) for c in cells], rotation=20, ha="right")
    ax.set_ylabel("latency (ms)")
    ax.set_title(PLOTS["percentiles"])
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def throughput_plot(cells: list[dict]) -> bytes:
    cells = _measured(cells)
    if not cells:
        return _no_data(PLOTS["throughput"], "no cell produced measurements")
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(cells)), 4.5))
    colors = ["tab:blue" if c["protocol"] == "rest" else "tab:orange" for c in cells]
    bars = ax.bar(range(len(cells)), [c["rps"] for c in cells], color=colors)
    ax.bar_label(bars, labels=[f"{c['rps']:,.0f}" for c in cells])
    ax.set_xticks(range(len(cells)), [_cell_label(c) for c in cells], rotation=20, ha="right")
    ax.set_ylabel("requests per second")
    ax.set_title(PLOTS["throughput"] + " (blue REST, orange gRPC)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_over_time_plot(cells: list[dict]) -> bytes:
    cells = [c for c in _measured(cells) if c.get("timeline")]
    if not cells:
        return _no_data(PLOTS["latency_over_time"], "no per-second timeline was recorded")
    protocols = list(dict.fromkeys(c["protocol"] for c in cells))
    fig, axes = plt.subplots(
        len(protocols), 1, figsize=(9, 3.5 * len(protocols)), squeeze=False, sharex=True
    )
    for ax, protocol in zip(axes[:, 0], protocols, strict=True):
        for i, cell in enumerate(c for c in cells if c["protocol"] == protocol):
            color = f"C{i}"
            ts = [t["t"] for t in cell["timeline"]]
            ax.plot(ts, [t.get("p99_ms") for t in cell["timeline"]], color=color, label=cell["id"])
            ax.plot(ts, [t.get("p50_ms") for t in cell["timeline"]], color=color, ls="--")
        _plain_log_axis(ax)
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(f"{PLOTS['latency_over_time']}: {protocol}")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3, which="both")
    axes[-1, 0].set_xlabel("seconds since the cell's measurements started")
    return _png(fig)


def _bucket_label(bucket: tuple[float, float | str]) -> str:
    low, high = bucket
    return f"{low:g} or more" if high == "+Inf" else f"{low:g} to <{high:g}"


def _cell_label(cell: dict) -> str:
    """Cell id and what served it, so stand-in bars never pass for TF Serving's."""
    return f"{cell['id']}\n({server_name(cell)})"


def batch_sizes_plot(cells: list[dict]) -> bytes:
    with_data = [
        c
        for c in cells
        if ((c.get("server_metrics") or {}).get("batch_size") or {}).get("distribution")
    ]
    if not with_data:
        return _no_data(
            PLOTS["batch_sizes"],
            "no cell's server exported a batch-size histogram (batching off or no metrics)",
        )
    # One shared axis of buckets, so cells compare bucket by bucket.
    buckets = sorted(
        {
            (r.get("from", 0.0), r["le"])
            for c in with_data
            for r in c["server_metrics"]["batch_size"]["distribution"]
        },
        key=lambda b: b[0],
    )
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(buckets) * len(with_data) ** 0.5), 4.5))
    width = 0.8 / len(with_data)
    for i, cell in enumerate(with_data):
        batch = cell["server_metrics"]["batch_size"]
        counts = {(r.get("from", 0.0), r["le"]): r["count"] for r in batch["distribution"]}
        total = sum(counts.values()) or 1
        xs = [j + (i - (len(with_data) - 1) / 2) * width for j in range(len(buckets))]
        label = f"{cell['id']}: {batch['batches']:,} batches, mean {batch['mean_rows']:.1f} rows"
        ax.bar(xs, [counts.get(b, 0) / total for b in buckets], width, label=label)
    ax.set_xticks(range(len(buckets)), [_bucket_label(b) for b in buckets])
    ax.set_xlabel("rows per executed batch (the server's histogram buckets)")
    ax.set_ylabel("share of batches")
    ax.set_title(PLOTS["batch_sizes"])
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def draw_all(cells: list[dict]) -> dict[str, bytes]:
    """Every plot as PNG bytes, keyed like PLOTS."""
    return {
        "percentiles": percentiles_plot(cells),
        "throughput": throughput_plot(cells),
        "latency_over_time": latency_over_time_plot(cells),
        "batch_sizes": batch_sizes_plot(cells),
    }
