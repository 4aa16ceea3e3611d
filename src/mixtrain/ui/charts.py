"""Loss curves as server-side SVG, drawn by matplotlib (pinned; no JavaScript charting).

Each series is a line with one marker per recorded step, and its SVG group carries the id
``series-<name>`` so the page (and its tests) can find the points.
"""

from __future__ import annotations

import io
import threading

_lock = threading.Lock()  # pyplot's state is global; the server renders from worker threads
SERIES = ("loss", "eval_loss")


def loss_svg(metrics: list[dict]) -> str | None:
    """An SVG of loss and eval-loss against step, or None when no step logged either."""
    series = {name: [(m["step"], m[name]) for m in metrics if m.get(name) is not None] for name in SERIES}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _lock:
        plt.rcParams["svg.hashsalt"] = "mixtrain"  # stable ids: same metrics, same SVG
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        try:
            for name, points in series.items():
                xs, ys = zip(*points, strict=False)
                (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=name.replace("_", " "))
                line.set_gid(f"series-{name}")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", frameon=False)
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype: the SVG is inlined in HTML
