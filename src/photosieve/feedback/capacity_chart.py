"""The team forecast as one SVG chart for the admin page (matplotlib, Agg, rendered server-side).

Left: reviewers needed at 1M, 10M and 100M users (log scale, value on each bar). Right: the
review rate the exact certificate allows as labelled production positives accumulate, with the
team it would take at 10M users.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from photosieve.feedback.capacity import Workload


def capacity_svg(
    forecast: Sequence[dict[str, float]], curve: Sequence[dict[str, Any]], workload: Workload
) -> bytes:
    """The chart as SVG bytes (no script, no external reference)."""
    fig = Figure(figsize=(9.0, 3.4))
    left, right = fig.subplots(1, 2)
    labels = [f"{r['users'] / 1e6:,.0f}M users" for r in forecast]
    values = [max(r["reviewers"], 1e-2) for r in forecast]
    bars = left.bar(labels, values, color="#3b6ea5")
    left.set_yscale("log")
    left.set_ylabel("reviewers needed")
    left.set_title(f"{workload.uploads_per_user_per_day:g} uploads/user/day, "
                   f"{workload.decisions_per_hour:.0f} decisions/h", fontsize=9)  # fmt: skip
    for bar, row in zip(bars, forecast, strict=True):
        left.annotate(f"{row['reviewers']:,.1f}", (bar.get_x() + bar.get_width() / 2,
                      bar.get_height()), ha="center", va="bottom", fontsize=9)  # fmt: skip
    shown = [c for c in curve if c.get("review_rate") is not None]
    if shown:
        xs = [c["positives"] for c in shown]
        ys = [100 * c["review_rate"] for c in shown]
        right.plot(xs, ys, marker="o", color="#a5533b")
        right.set_xscale("log")
        right.set_xlabel("labelled production positives")
        right.set_ylabel("certified review rate (%)")
        right.set_title("review rate the certificate allows", fontsize=9)
        right.axhline(100 * workload.review_share, color="grey", ls="--", lw=1,
                      label=f"now {100 * workload.review_share:.1f}%")  # fmt: skip
        right.legend(fontsize=8)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "no calibration reference in the bundle", ha="center", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    return buffer.getvalue()
