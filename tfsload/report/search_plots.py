"""Figures of searches and sweeps: probes against the bound, the tuner's Pareto plot, and
throughput against p50/p99 per protocol with the knee marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tfsload.report.plots import _no_data, _plain_log_axis, _png


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (p99, throughput) no other point beats on both (lower p99 and
    higher throughput), ordered by p99."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(tuning: dict, bound_ms: float) -> bytes:
    """Throughput at the highest passing load against its p99, one labelled point per
    configuration; the front drawn (over the scan; the back-to-back confirmations are hollow
    and left out of it), the baseline (no batching) and the best marked."""
    title = f"{tuning['cell']}: configurations at their highest load with p99 <= {bound_ms:g} ms"
    offered = tuning.get("capacity_unit") == "req/s offered"
    key = "highest" if offered else "throughput_rps"
    measured = [c for c in tuning["configurations"] if c["result"].get(key)]
    if not measured:
        return _no_data(title, "no configuration met the bound at any load tried")
    points = [(c["result"]["p99_ms"], c["result"][key]) for c in measured]
    fig, ax = plt.subplots(figsize=(11, 6))
    scanned = [i for i, c in enumerate(measured) if c["phase"] != "confirm"]
    front = [scanned[i] for i in pareto_front([points[i] for i in scanned])]
    ax.step(
        [points[i][0] for i in front], [points[i][1] for i in front], where="post",
        color="tab:green", alpha=0.6, linewidth=2,
        label="Pareto front (no other configuration has more req/s at a lower p99)",
    )  # fmt: skip
    for n, (config, (p99, rps)) in enumerate(zip(measured, points, strict=True)):
        baseline = config["batching"] is None
        best = config["id"] == tuning.get("best")
        marker, color = ("s", "tab:red") if baseline else ("o", "tab:blue")
        ax.scatter(
            [p99], [rps], marker=marker, s=90 if best or baseline else 40, zorder=3,
            color=color, facecolors="none" if config["phase"] == "confirm" else color,
            edgecolors="black" if best else color,
        )  # fmt: skip
        label = ("BASELINE: " if baseline else "BEST: " if best else "") + config["label"]
        offset = (5, 4) if n % 2 == 0 else (5, -10)  # alternate: neighbours overlap less
        ax.annotate(label, (p99, rps), textcoords="offset points", xytext=offset, fontsize=6.5)
    ax.axvline(bound_ms, color="grey", linestyle=":", label=f"p99 bound {bound_ms:g} ms")
    ax.scatter([], [], marker="s", color="tab:red", label="no batching (baseline)")
    ax.scatter([], [], marker="o", color="tab:blue", label="batching configuration")
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="grey",
               label="measured again, back to back (the verdict's pair)")  # fmt: skip
    ax.set_xlabel("p99 at that load (ms)")
    ax.set_ylabel(
        "highest Poisson rate within the bound (req/s)"
        if offered
        else "throughput at the most users within the bound (req/s)"
    )
    ax.set_title(title, fontsize=10)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _png(fig)


def probes_plot(results: list[dict], bound_ms: float, axis: str) -> bytes:
    """Every probe's p99 against its load, per cell; passing probes filled, others crossed,
    the highest passing load starred, the bound drawn."""
    title = f"Probes of the search: p99 against load (bound {bound_ms:g} ms)"
    searched = [r for r in results if r.get("search") and r["search"]["probes"]]
    if not searched:
        return _no_data(title, "no probe ran")
    fig, ax = plt.subplots(figsize=(10, 5))
    for result in searched:
        probes = sorted(
            (p for p in result["search"]["probes"] if p["evidence"].get("p99_ms") is not None),
            key=lambda p: p["load"],
        )
        name = f"{result['cell']}" + (
            f" {result['configuration']}" if result["configuration"] != "as-declared" else ""
        )
        (line,) = ax.plot([p["load"] for p in probes], [p["evidence"]["p99_ms"] for p in probes],
                          alpha=0.5, label=name)  # fmt: skip
        for probe in probes:
            passed = probe["kind"] == "pass"
            ax.scatter([probe["load"]], [probe["evidence"]["p99_ms"]], color=line.get_color(),
                       marker="o" if passed else "x", zorder=3)  # fmt: skip
        best = next((p for p in probes if p["load"] == result.get("highest")), None)
        if best:
            ax.scatter([best["load"]], [best["evidence"]["p99_ms"]], marker="*", s=220,
                       color=line.get_color(), edgecolors="black", zorder=4)  # fmt: skip
    ax.axhline(bound_ms, color="grey", linestyle=":", label=f"bound {bound_ms:g} ms")
    _plain_log_axis(ax)
    ax.set_xlabel("users" if axis == "users" else "offered load (req/s, open loop)")
    ax.set_ylabel("p99 (ms, log scale)")
    ax.set_title(title + ": o within, x beyond, * highest within", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def sweep_plot(curves: list[dict], protocol: str) -> bytes:
    """Throughput against p50 (left) and p99 (right) for every target of one protocol; hollow
    markers are steps that did not stabilise, a star the knee."""
    title = f"{protocol}: latency against throughput, one point per load step"
    if not any(c["points"] for c in curves):
        return _no_data(title, "no step measured")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True)
    for ax, key, name in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
        for curve in curves:
            points = [p for p in curve["points"] if p.get(key) is not None]
            if not points:
                continue
            (line,) = ax.plot([p["rps"] for p in points], [p[key] for p in points],
                              alpha=0.7, label=curve["target"])  # fmt: skip
            for point in points:
                ax.scatter([point["rps"]], [point[key]], color=line.get_color(), zorder=3,
                           facecolors=line.get_color() if point["stable"] else "none")  # fmt: skip
                ax.annotate(f"{point['level']:g}", (point["rps"], point[key]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))  # fmt: skip
            knee = next((p for p in points if p["level"] == curve.get("knee")), None)
            if knee:
                ax.scatter([knee["rps"]], [knee[key]], marker="*", s=250, color=line.get_color(),
                           edgecolors="black", zorder=4)  # fmt: skip
        _plain_log_axis(ax)
        ax.set_xlabel("throughput (req/s)")
        ax.set_ylabel(f"{name} (ms, log scale)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title + " (labels: load level; hollow: not stable; *: knee)", fontsize=10)
    return _png(fig)
