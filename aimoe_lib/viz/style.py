"""The book's house style: one place for figure size, fonts, colours, titles and takeaways, plain
text tables and number formatting. Every chapter module of :mod:`aimoe_lib.viz` draws with these.

A figure is a ``matplotlib.figure.Figure`` that is not registered with pyplot (a notebook shows it
once; widgets redraw without leaking). :func:`finish` puts the title on top
(``fig.get_suptitle()``) and a one-line takeaway computed from the plotted numbers at the bottom
(``fig.get_supxlabel()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = ["DPI", "FONT_SIZE", "C_3D", "C_2D", "C_DENSE", "C_MOE", "C_ACTIVE", "figure", "finish",
           "plain_log_axes", "table", "palette", "time_scale", "format_time", "format_number",
           "format_rate"]

DPI = 100
"""Resolution of every figure, dots per inch (the book's PNGs)."""
FONT_SIZE = 10
"""Base font size of axis labels and ticks, points."""

# Colours (matplotlib's default cycle, named by meaning).
C_3D = "tab:blue"
C_2D = "tab:orange"
C_DENSE = "tab:gray"
C_MOE = "tab:purple"
C_ACTIVE = "tab:green"


def figure(width_in: float, height_in: float) -> Figure:
    """A new constrained-layout figure of ``width_in`` x ``height_in`` inches at :data:`DPI`."""
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def finish(fig: Figure, title: str, takeaway: str) -> Figure:
    """Title on top, one-line takeaway at the bottom, fixed font sizes on every axis."""
    for ax in fig.axes:
        ax.xaxis.label.set_fontsize(FONT_SIZE)
        ax.yaxis.label.set_fontsize(FONT_SIZE)
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.title.set_fontsize(FONT_SIZE + 1)
    fig.suptitle(title, fontsize=FONT_SIZE + 3, fontweight="bold")
    fig.supxlabel(takeaway, fontsize=FONT_SIZE, style="italic", color="0.2")
    return fig


def _plain(v, _pos) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:.3g}"


def plain_log_axes(fig: Figure) -> Figure:
    """Plain numbers (1, 20, 500, 0.05) instead of powers of ten on every log-scaled axis; y log
    axes get ticks at 1, 2 and 5 per decade."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                if axis is ax.yaxis:
                    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(_plain))
                axis.set_minor_formatter(NullFormatter())
    return fig


def table(header: Sequence[str], body: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned plain-text table: ``right[i]`` right-aligns column i; a dashed rule under the
    header."""
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if rt else c.ljust(w)  # noqa: E731
                              for c, w, rt in zip(r, widths, right, strict=True)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


def palette(n: int) -> list:
    """n distinct colours without grey (grey marks 'other'): tab10 / tab20 minus their greys,
    then an evenly sampled continuous map."""
    import matplotlib

    if n <= 9:
        base = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7]
        return list(base[:n])
    if n <= 18:
        t20 = matplotlib.colormaps["tab20"].colors
        base = [t20[i] for i in range(0, 20, 2) if i != 14] + [t20[i] for i in range(1, 20, 2)
                                                              if i != 15]
        return list(base[:n])
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(x) for x in np.linspace(0.05, 0.95, n)]


def time_scale(ns: float) -> tuple[float, str]:
    """Factor and unit to show a time span of ``ns`` nanoseconds: ns below 5 µs, µs below 5 ms,
    else ms."""
    if ns < 5e3:
        return 1.0, "ns"
    if ns < 5e6:
        return 1e-3, "µs"
    return 1e-6, "ms"


def format_time(ns: float) -> str:
    """A time in its natural unit (:func:`time_scale`): ``'350 ns'``, ``'12.5 µs'``."""
    f, u = time_scale(ns)
    return f"{ns * f:,.3g} {u}" if ns * f < 100 else f"{ns * f:,.0f} {u}"


def format_number(v: float) -> str:
    """Three significant digits, no exponent: 3,852 / 22.4 / 0.00365."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def format_rate(v: float) -> str:
    """A number to three significant digits with a k / M prefix: ``'1.06 M'``, ``'174 k'``,
    ``'52.3'``."""
    if v >= 1e6:
        return f"{v / 1e6:.3g} M"
    if v >= 1e3:
        return f"{v / 1e3:.3g} k"
    return f"{v:.3g}"
