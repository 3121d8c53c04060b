"""The PNG chart: admitted and rejected requests per 100 ms over time, one panel per run.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state);
this module is imported only by the commands that draw, so the rest of the CLI works
without matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from ratelimit.cli.report import BIN, Timeline

__all__ = ["Panel", "write_chart"]

_ADMITTED = "#2e8b57"
_REJECTED = "#d9534f"
_ERRORS = "#7f7f7f"
_DROPPED = "#f0ad4e"
_LIMIT = "#1f4e9c"
_BAR_LABELS = ("admitted", "rejected (429)", "errors", "dropped (not sent)")


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel: a title, the binned counts and the configured rate (per second) if known.

    ``show_served`` adds a line of admitted requests by response time (for shaping servers).
    """

    title: str
    timeline: Timeline
    rate: float | None = None
    rate_label: str = ""
    show_served: bool = False


def write_chart(
    path: str | os.PathLike[str],
    title: str,
    panels: Sequence[Panel],
    marks: Sequence[tuple[float, str]] = (),
) -> None:
    """Draw ``panels`` stacked vertically, sharing the time axis, and save a PNG at ``path``.

    ``marks`` are ``(seconds, label)`` moments drawn as dotted vertical lines on every panel.
    """
    count = len(panels)
    fig = Figure(figsize=(11, 1.9 * count + 1.6), dpi=110, layout="constrained")
    axes = fig.subplots(count, 1, sharex=True, squeeze=False)[:, 0]
    top: float = 1
    for panel in panels:
        t = panel.timeline
        top = max(
            top,
            *(
                a + r + e + d
                for a, r, e, d in zip(t.admitted, t.rejected, t.errors, t.dropped, strict=True)
            ),
        )
        if panel.rate is not None:
            top = max(top, panel.rate * BIN)
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, panels, strict=True):
        t = panel.timeline
        x = [i * BIN for i in range(len(t.admitted))]
        bottom = [0] * len(x)
        for values, color, label in (
            (t.admitted, _ADMITTED, "admitted"),
            (t.rejected, _REJECTED, "rejected (429)"),
            (t.errors, _ERRORS, "errors"),
            (t.dropped, _DROPPED, "dropped (not sent)"),
        ):
            if label in ("errors", "dropped (not sent)") and not any(values):
                continue
            ax.bar(
                x,
                values,
                width=BIN,
                bottom=bottom,
                align="edge",
                color=color,
                label=label,
                linewidth=0,
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        if panel.show_served:
            ax.step(
                [*x, len(x) * BIN],
                [*t.served, t.served[-1] if t.served else 0],
                where="post",
                color="black",
                linewidth=1.2,
                label="admitted, by response time",
            )
        if panel.rate is not None:
            per_bin = panel.rate * BIN
            label = panel.rate_label or f"limit {panel.rate:g}/s"
            ax.axhline(per_bin, color=_LIMIT, linewidth=1.6, linestyle="--", label=label)
        for when, mark in marks:
            ax.axvline(when, color="#444444", linewidth=1, linestyle=":", label=mark)
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.set_ylabel("requests\nper 100 ms", fontsize=8)
        ax.set_ylim(0, top * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, len(x) * BIN)
        if len(x) * BIN <= 30:
            ax.xaxis.set_major_locator(MultipleLocator(1))
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[-1].set_xlabel("seconds since the start of the traffic")
    fig.suptitle(title, fontsize=12)
    bars_first = sorted(handles, key=lambda label: label not in _BAR_LABELS)
    fig.legend(
        [handles[label] for label in bars_first],
        bars_first,
        loc="outside lower center",
        ncols=min(6, len(handles)),
        fontsize=8,
        frameon=False,
    )
    fig.savefig(os.fspath(path), format="png")
