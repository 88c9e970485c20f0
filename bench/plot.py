"""The PNG of a `make bench` run: requests/s and p99 per scenario, service beside baseline, and the
outbox drain rates. ``python -m bench.plot bench/results/<run>.json`` redraws one."""

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
    http = [name for name, t in results.items() if isinstance(t, dict) and any("rps" in f for f in t.values())]
    drains = [name for name, t in results.items() if isinstance(t, dict) and "rate" in t.get("service", {})]
    panels = [p for p in (http and "rps", http and "p99", drains and "drain") if p]
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
    fig.suptitle(
        f"make bench {report['started']} | {report['machine']['nproc']} cores | gunicorn {config['gunicorn']} | "
        f"{config['connections']} connections, {config['duration']} s",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1])
    print(plot(json.loads(source.read_text()), source.with_suffix(".png")))
