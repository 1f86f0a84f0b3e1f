"""Tables and the tornado chart of the sensitivity appendix: only formats and draws rows computed
by :mod:`aimoe_lib.sensitivity`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..sensitivity import RATIOS, top_knobs
from .style import C_2D, C_3D, figure, finish, format_number, plain_log_axes, table

__all__ = ["format_presets", "format_raw", "tornado_figure", "surviving"]


def format_presets(rows: Sequence[dict]) -> str:
    """The four ratios under each preset (one column per preset)."""
    header = ["conclusion (ratio > 1: holds)", *[r["preset"] for r in rows]]
    body = [[what, *[f"{r[key]:,.1f}x" for r in rows]] for key, what in RATIOS.items()]
    return table(header, body, [False] + [True] * len(rows))


_RAW = (("moe_tokens_per_s", "MoE-64 tokens/s (3D)", 1.0),
        ("dense_tokens_per_s", "dense-deeper tokens/s (3D)", 1.0),
        ("moe_uj_per_token", "MoE-64 µJ per token", 1.0),
        ("moe_dynamic_uj_per_token", "  of which dynamic", 1.0),
        ("dense_uj_per_token", "dense-deeper µJ per token", 1.0),
        ("moe_3d_tps_per_mm2", "MoE-64 tokens/s per mm², 3D", 1.0),
        ("moe_2d_tps_per_mm2", "MoE-64 tokens/s per mm², 2D", 1.0),
        ("mixtral_uj_per_token", "Mixtral-8x7B µJ per token, 3D AIMC", 1.0),
        ("mixtral_passive_fraction", "  of which static (%)", 100.0),
        ("gpu_uj_per_token", "Mixtral-8x7B µJ per token, H100s", 1.0))


def format_raw(rows: Sequence[dict]) -> str:
    """The numbers behind the ratios, one column per preset."""
    header = ["quantity", *[r["preset"] for r in rows]]
    body = [[what, *[format_number(r[key] * scale) for r in rows]] for key, what, scale in _RAW]
    return table(header, body, [False] + [True] * len(rows))


def surviving(base: dict, rows: Sequence[dict]) -> dict:
    """For each ratio, the knob settings (knob, factor) under which it falls to 1 or below."""
    return {key: [(r["knob"], r["factor"]) for r in rows if r[key] <= 1.0] for key in RATIOS}


def tornado_figure(base: dict, rows: Sequence[dict], n: int = 5) -> Figure:
    """One panel per conclusion: the ``n`` knobs that move its ratio most, two bars from the
    unscaled ratio to the ratio with the knob's constants x0.5 and x2 (log axis), the unscaled ratio as a line and 1 (where the conclusion
    would flip) as a dashed red line."""
    fig = figure(11.0, 7.0)
    axes = fig.subplots(2, 2).ravel()
    low_all = min(r[key] for r in rows for key in RATIOS)
    for ax, (key, what) in zip(axes, RATIOS.items(), strict=True):
        top = top_knobs(base, rows, key, n)[::-1]
        y = np.arange(len(top))
        b = base[key]
        for i, t in enumerate(top):
            lo, hi = t["low"], t["high"]  # ratio at x0.5 and at x2
            ax.barh(i + 0.17, lo - b, left=b, color=C_2D, height=0.34,
                    label="constants x0.5" if i == 0 else None)
            ax.barh(i - 0.17, hi - b, left=b, color=C_3D, height=0.34,
                    label="constants x2" if i == 0 else None)
        ax.set_yticks(y, [t["knob"] for t in top])
        ax.axvline(b, color="0.2", lw=1)
        ax.axvline(1.0, color="tab:red", ls="--", lw=1)
        ax.set_xscale("log")
        vals = [b] + [v for t in top for v in (t["low"], t["high"])]
        ax.set_xlim(min(0.8, min(vals) / 1.5), max(vals) * 1.5)
        ax.set_title(f"{what}: {b:,.1f}x", fontsize=10)
        ax.set_xlabel("ratio (log; > 1: the conclusion holds)")
    axes[0].legend(loc="lower right", fontsize=8)
    flips = [what for key, what in RATIOS.items()
             if any(r[key] <= 1 for r in rows)]
    takeaway = (f"Under '{base['preset']}', no single x0.5 or x2 change flips a conclusion: the "
                f"smallest ratio reached is {low_all:,.1f}x" if not flips else
                f"Under '{base['preset']}', a x0.5 or x2 change flips: " + "; ".join(flips))
    plain_log_axes(fig)
    return finish(fig, f"Which constants move the conclusions ('{base['preset']}' preset)",
                  takeaway)
