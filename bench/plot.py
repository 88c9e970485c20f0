"""The PNG of a `make bench` run: requests/s and p99 per scenario, service beside baseline, the paired
rounds' ratios against their targets, and the outbox drain rates.
``python -m bench.plot bench/results/<run>.json`` redraws one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


class NothingToPlot(ValueError):
    """Only the in-process profile ran: no throughput or drain to draw."""


def plot(report: dict, path: Path) -> Path:
    results = report["results"]
    http = [
        name
        for name, t in results.items()
        if isinstance(t, dict) and any("rps" in t.get(kind, {}) for kind in ("baseline", "service"))
    ]
    drains = [name for name, t in results.items() if isinstance(t, dict) and "rate" in t.get("service", {})]
    paired = results.get("paired", {}).get("targets", {})
    panels = [p for p in (http and "rps", http and "p99", paired and "paired", drains and "drain") if p]
    if not panels:
        raise NothingToPlot("nothing to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    width = 0.38
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "drain":
            rates = [results[n]["service"]["rate"] or 0 for n in drains]
            ax.bar(range(len(drains)), rates, color="tab:green")
            ax.set_xticks(range(len(drains)), drains, rotation=30, ha="right")
            ax.set_ylabel("messages sent / s")
            ax.set_title("outbox drain (run_worker --once)")
            for x, rate in enumerate(rates):
                ax.annotate(f"{rate:g}", (x, rate), ha="center", va="bottom", fontsize=8)
            continue
        if panel == "paired":
            modes = list(paired)
            rounds = results["paired"]["rounds"]
            for x, mode in enumerate(modes):
                target = paired[mode]
                ratio = target["ratio"] or 0
                ax.bar(x, ratio, 0.6, color="tab:blue" if target["met"] else "tab:red")
                label = f"{ratio:g}"
                if "p99_ms" in target:  # the ingest's target bounds its p99 too: red may be the p99's doing
                    label += f"\np99 {target['p99_ms']:.1f} ms (< {target['p99_under_ms']:g})"
                ax.annotate(label, (x, ratio), ha="center", va="bottom", fontsize=8)
                ax.hlines(target["at_least"], x - 0.4, x + 0.4, colors="black", linestyles="dashed")
            highest = max(max(t["ratio"] or 0, t["at_least"]) for t in paired.values())
            ax.set_ylim(0, highest * 1.3)  # room for the labels
            ax.set_xticks(range(len(modes)), modes, rotation=30, ha="right")
            ax.set_ylabel("service / baseline's inbound messages")
            ax.set_title(f"paired: median of {rounds} rounds (dashed: target; red: missed)")
            continue
        key = "rps" if panel == "rps" else "p99_ms"
        for offset, kind, color in ((-width / 2, "baseline", "tab:gray"), (width / 2, "service", "tab:blue")):
            values = [results[n].get(kind, {}).get(key, 0) for n in http]
            bars = ax.bar([x + offset for x in range(len(http))], values, width, label=kind, color=color)
            for bar, value in zip(bars, values, strict=True):
                if value:
                    ax.annotate(
                        f"{value:g}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=7
                    )
        ax.set_xticks(range(len(http)), http, rotation=30, ha="right")
        ax.set_ylabel("2xx requests / s" if panel == "rps" else "p99 latency, ms")
        ax.set_title("throughput" if panel == "rps" else "p99 latency")
        ax.legend()
    config = report["config"]
    found = report["machine"]
    title = (
        f"make bench {report['started']} | {found['nproc']} cores | gunicorn {config['gunicorn']} | "
        f"{config['connections']} connections, {config['duration']} s"
    )
    speed = []
    if found.get("python_loop_seconds") is not None:
        speed.append(f"ten million additions in Python {found['python_loop_seconds']:g} s")
    if found.get("cpu_during_run"):
        speed.append(f"{found['cpu_during_run']['steal_pct']:g}% of the CPU time stolen by the hypervisor over the run")
    if speed:
        title += "\n" + ", ".join(speed)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1])
    print(plot(json.loads(source.read_text()), source.with_suffix(".png")))
