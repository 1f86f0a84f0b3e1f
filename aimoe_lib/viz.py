"""Figures and small tables for the book: matplotlib only, numpy only, no pyplot state.

Every figure function takes plain parameters, builds a ``matplotlib.figure.Figure`` (not
registered with pyplot, so a notebook shows it once, and widgets can redraw it without leaking) and
returns it. Each figure carries a title (``fig.get_suptitle()``), axis labels with units and a
one-line takeaway computed from the numbers it plots (``fig.get_supxlabel()``).

Chapter 1 (the 3D AIMC tile): :func:`tile_capacity_area`, :func:`one_tier_at_a_time`,
:func:`model_fits` (with :func:`tiers_needed`).
Chapter 2 (mixture of experts): :func:`params_table`, :func:`format_params_table`,
:func:`published_table`, :func:`total_vs_active`, :func:`moe_scaling`, :func:`toy_router`,
:func:`routing_example`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from . import zoo
from .hardware import AreaModel, ChipConfig, CostModel
from .models import ModelSpec, Role

__all__ = [
    "tile_capacity_area",
    "mvm_makespan_ns",
    "one_tier_at_a_time",
    "tiers_needed",
    "model_fits",
    "ParamRow",
    "params_table",
    "format_params_table",
    "published_table",
    "total_vs_active",
    "moe_scaling",
    "RouterSample",
    "toy_router",
    "routing_example",
]

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


def _figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _finish(fig: Figure, title: str, takeaway: str) -> Figure:
    """Title on top, one-line takeaway at the bottom, fixed font sizes on every axis."""
    for ax in fig.axes:
        ax.xaxis.label.set_fontsize(FONT_SIZE)
        ax.yaxis.label.set_fontsize(FONT_SIZE)
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.title.set_fontsize(FONT_SIZE + 1)
    fig.suptitle(title, fontsize=FONT_SIZE + 3, fontweight="bold")
    fig.supxlabel(takeaway, fontsize=FONT_SIZE, style="italic", color="0.2")
    return fig


def _tier_grid(n_tiers_max: int) -> list[int]:
    """1, 2, 4, ... up to n_tiers_max, with n_tiers_max itself as the last point."""
    if not isinstance(n_tiers_max, int) or n_tiers_max < 1:
        raise ValueError(f"n_tiers_max={n_tiers_max!r}: must be an integer >= 1")
    grid = [2**i for i in range(int(math.log2(n_tiers_max)) + 1)]
    if grid[-1] != n_tiers_max:
        grid.append(n_tiers_max)
    return grid


# =============================================================================== chapter 1
def tile_capacity_area(n_tiles: int = 100, n_tiers_max: int = 1024, tier_rows: int = 512,
                       tier_cols: int = 512, area: AreaModel | None = None, n_dpus: int = 4,
                       n_mha_units: int = 1) -> Figure:
    """Capacity and area of a 3D chip as its tiles grow tiers, against the 2D chip of equal
    capacity.

    The 3D chip has ``n_tiles`` tiles of 1, 2, 4, ... ``n_tiers_max`` tiers; the 2D chip is
    :meth:`~aimoe_lib.hardware.ChipConfig.as_2d` of it (tiles x tiers tiles of one tier). Areas are
    :attr:`~aimoe_lib.hardware.ChipConfig.area_mm2` (tiles + DPUs + attention units) from ``area`` (default
    :class:`~aimoe_lib.hardware.AreaModel`, whose constants carry their sources). Three panels: capacity (M weights),
    chip area (mm²) and area per million weights (mm² / M weights), all against tiers per tile.
    """
    area = area if area is not None else AreaModel()
    tiers = _tier_grid(n_tiers_max)
    chips = [ChipConfig(n_tiles=n_tiles, n_tiers=t, tier_rows=tier_rows, tier_cols=tier_cols,
                        n_dpus=n_dpus, n_mha_units=n_mha_units, area=area) for t in tiers]
    flats = [c.as_2d() for c in chips]
    cap_m = np.array([c.capacity_weights for c in chips]) / 1e6
    a3 = np.array([c.area_mm2 for c in chips])
    a2 = np.array([c.area_mm2 for c in flats])
    x = np.array(tiers)

    fig = _figure(11.0, 3.9)
    ax_cap, ax_area, ax_dens = fig.subplots(1, 3)
    ax_cap.plot(x, cap_m, "o-", color=C_3D, label=f"3D: {n_tiles} tiles x T tiers")
    ax_cap.axhline(cap_m[0], color=C_2D, ls="--", label=f"2D: the same {n_tiles} tiles")
    ax_cap.set(xscale="log", yscale="log", xlabel="tiers per tile, T",
               ylabel="capacity (M weights)", title="Capacity grows with tiers")
    ax_area.plot(x, a3, "o-", color=C_3D, label="3D chip")
    ax_area.plot(x, a2, "s--", color=C_2D, label="2D chip of equal capacity")
    ax_area.set(xscale="log", yscale="log", xlabel="tiers per tile, T",
                ylabel="chip area (mm²)", title="Area at equal capacity")
    ax_dens.plot(x, a3 / cap_m, "o-", color=C_3D, label="3D chip")
    ax_dens.plot(x, a2 / cap_m, "s--", color=C_2D, label="2D chip")
    ax_dens.set(xscale="log", yscale="log", xlabel="tiers per tile, T",
                ylabel="area per capacity (mm² / M weights)", title="Area per weight")
    for ax in (ax_cap, ax_area, ax_dens):
        ax.set_xscale("log", base=2)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=FONT_SIZE - 2, loc="best")
    if len(x) == 1:  # a single point: give the log axes some room
        panels = ((ax_cap, cap_m), (ax_area, np.r_[a3, a2]), (ax_dens, np.r_[a3, a2] / cap_m[0]))
        for ax, values in panels:
            ax.set_xlim(0.5, 2.0 * x[0])
            ax.set_ylim(values.min() / 3.0, values.max() * 3.0)
    ratio = a2[-1] / a3[-1]
    takeaway = (f"At T = {tiers[-1]}: {cap_m[-1]:,.0f} M weights in {a3[-1]:,.0f} mm² (3D) "
                f"vs {a2[-1]:,.0f} mm² (2D), {ratio:.1f}x less area for the 3D chip")
    return _finish(fig, f"3D AIMC chip: {n_tiles} tiles of {tier_rows}x{tier_cols} tiers", takeaway)


def mvm_makespan_ns(n_mvms: int, n_tiles: int, mvm_latency_ns: float) -> float:
    """Closed form: ``n_mvms`` independent tier MVMs spread round-robin over ``n_tiles`` tiles.

    A tile runs one tier MVM at a time, so the busiest tile holds ceil(n_mvms / n_tiles) of them
    and finishes last: makespan = ceil(n_mvms / n_tiles) x mvm_latency_ns. One tile: k x latency;
    k tiles: one latency.
    """
    if n_mvms < 1 or n_tiles < 1:
        raise ValueError(f"mvm_makespan_ns(n_mvms={n_mvms!r}, n_tiles={n_tiles!r}): "
                         "both must be >= 1")
    return math.ceil(n_mvms / n_tiles) * mvm_latency_ns


def _draw_tile_stack(ax, n_tiers: int, active: dict[int, str], x0: float, label: str) -> None:
    """A tile seen from the side: periphery block with its tiers stacked above; ``active`` maps the
    busy tiers to their colours."""
    ax.add_patch(Rectangle((x0, 0.0), 1.0, 0.6, facecolor="0.75", edgecolor="k"))
    ax.text(x0 + 0.5, 0.3, "ADC\nDAC", ha="center", va="center", fontsize=FONT_SIZE - 3)
    h = 3.0 / n_tiers
    for t in range(n_tiers):
        ax.add_patch(Rectangle((x0, 0.7 + t * h), 1.0, h * 0.85,
                               facecolor=active.get(t, "white"), edgecolor="k", lw=0.6))
    ax.text(x0 + 0.5, 3.85, label, ha="center", va="bottom", fontsize=FONT_SIZE - 2)


def one_tier_at_a_time(n_mvms: int = 4, n_tiers: int = 8, mvm_latency_ns: float | None = None,
                       mvm_energy_pj: float | None = None, cost: CostModel | None = None) -> Figure:
    """Schematic and timeline of the one-tier-at-a-time rule.

    ``n_mvms`` independent tier MVMs (for example the k experts a token picks) either sit in
    ``n_mvms`` tiers of one tile, which computes with one tier at a time (k x latency), or in one
    tier of each of ``n_mvms`` different tiles, which run in parallel (one latency). Latency and
    energy per tier MVM default to ``cost`` (default :class:`~aimoe_lib.hardware.CostModel`: 100 ns and 10 nJ, from
    3D-SiM's defaults and the MoEwithPIM table); the energy is the same in both placements. Times
    are the closed form :func:`mvm_makespan_ns`, not a simulation.
    """
    cost = cost if cost is not None else CostModel()
    lat = cost.mvm_latency_ns if mvm_latency_ns is None else float(mvm_latency_ns)
    e_pj = cost.mvm_energy_pj if mvm_energy_pj is None else float(mvm_energy_pj)
    if not isinstance(n_mvms, int) or not 1 <= n_mvms <= n_tiers:
        raise ValueError(f"one_tier_at_a_time(n_mvms={n_mvms!r}): must be an integer in "
                         f"1..n_tiers={n_tiers} (the MVMs must fit in the tiers of one tile)")
    serial = mvm_makespan_ns(n_mvms, 1, lat)
    parallel = mvm_makespan_ns(n_mvms, n_mvms, lat)

    fig = _figure(11.0, 3.9)
    gs = fig.add_gridspec(2, 2, width_ratios=[1.0, 2.2])
    ax_s = fig.add_subplot(gs[:, 0])
    ax_one = fig.add_subplot(gs[0, 1])
    ax_many = fig.add_subplot(gs[1, 1], sharex=ax_one)

    colours = [f"C{i % 10}" for i in range(n_mvms)]
    n_side = min(n_mvms, 4)  # draw at most four separate tiles
    _draw_tile_stack(ax_s, n_tiers, dict(enumerate(colours)), 0.0, f"1 tile,\n{n_mvms} tiers busy")
    for i in range(n_side):
        _draw_tile_stack(ax_s, n_tiers, {0: colours[i]}, 1.6 + 1.2 * i, "")
    more = f"\n({n_side} drawn)" if n_mvms > n_side else ""
    ax_s.text(1.6 + 0.6 * n_side, 3.85, f"{n_mvms} tiles, 1 tier busy each{more}", ha="center",
              va="bottom", fontsize=FONT_SIZE - 2)
    ax_s.set(xlim=(-0.2, 1.6 + 1.2 * n_side), ylim=(-0.1, 4.6),
             xlabel="tiles, side view (grey: periphery, boxes: tiers)",
             ylabel=f"tier height ({n_tiers} tiers)",
             title="Where the MVMs sit")
    ax_s.set_xticks([])
    ax_s.set_yticks([])

    for i in range(n_mvms):
        ax_one.broken_barh([(i * lat, lat)], (i - 0.4, 0.8), facecolors=colours[i])
        ax_many.broken_barh([(0.0, lat)], (i - 0.4, 0.8), facecolors=colours[i])
    ticks = range(0, n_mvms, math.ceil(n_mvms / 8))  # at most 8 labels per axis
    ax_one.set_yticks(ticks, [f"tile 0 / tier {i}" for i in ticks])
    ax_many.set_yticks(ticks, [f"tile {i} / tier 0" for i in ticks])
    ax_one.set(ylabel="tier", title=f"Same tile: serial, done at {serial:,.0f} ns")
    ax_many.set(xlabel="time (ns)", ylabel="tile",
                title=f"Different tiles: parallel, done at {parallel:,.0f} ns")
    for ax in (ax_one, ax_many):
        ax.axvline(serial if ax is ax_one else parallel, color="k", ls=":", lw=1)
        ax.set_ylim(n_mvms - 0.5, -0.5)
        ax.grid(True, axis="x", alpha=0.3)
    ax_one.set_xlim(0, serial * 1.05)
    ax_one.tick_params(labelbottom=False)
    ax_one.set_xlabel("time (ns)")  # same axis as below: labelled, but shown once
    ax_one.xaxis.label.set_visible(False)
    takeaway = (f"{n_mvms} MVMs of {lat:g} ns: {serial:,.0f} ns on one tile vs {parallel:,.0f} ns "
                f"on {n_mvms} tiles; energy {n_mvms * e_pj / 1e3:,.1f} nJ either way")
    return _finish(fig, "One tier at a time: tiers of a tile take turns, tiles run in parallel",
                   takeaway)


def tiers_needed(spec: ModelSpec, rows: int = 512, cols: int = 512,
                 include_embedding: bool = False) -> int:
    """Tiers (rows x cols crossbar blocks) a model's weight matrices need.

    Each matrix of shape (in_features, out_features) is cut into ceil(in / rows) x ceil(out / cols)
    blocks, one per tier (DESIGN.md §4); the result is the sum over matrices. The input embedding
    is a table lookup (one row per token), not an MVM, so by default it takes no tier; the LM head
    is an MVM and is counted, also when it is tied to the embedding. Biases and norm vectors live
    in the digital units and take no tier. Example: a 600 x 600 matrix on 512 x 512 tiers needs
    ceil(600/512) x ceil(600/512) = 2 x 2 = 4 tiers.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"tiers_needed(rows={rows!r}, cols={cols!r}): tier shape must be >= 1 x 1")
    return sum(math.ceil(m.in_features / rows) * math.ceil(m.out_features / cols)
               for m in spec.matrices() if include_embedding or m.role is not Role.EMBEDDING)


def _weights_on_tiers(spec: ModelSpec) -> int:
    """Weights of the matrices :func:`tiers_needed` counts (no embedding, no biases)."""
    return sum(m.in_features * m.out_features for m in spec.matrices()
               if m.role is not Role.EMBEDDING)


DEFAULT_FIT_MODELS = ("gpt3-125m", "olmoe-1b-7b", "llama-2-7b", "qwen1.5-moe-a2.7b",
                      "gpt3-13b", "deepseek-v2-lite", "qwen3-30b-a3b", "mixtral-8x7b",
                      "llama-2-70b", "mixtral-8x22b", "gpt3-175b", "deepseek-v3")
"""Zoo models shown by :func:`model_fits` by default, from small to large."""


def model_fits(models: Iterable[str | ModelSpec] = DEFAULT_FIT_MODELS, n_tiles: int = 100,
               tier_counts: Sequence[int] = (1, 64, 1024), tier_rows: int = 512,
               tier_cols: int = 512) -> Figure:
    """Tiers each model needs (:func:`tiers_needed`) against the tiers that chips of ``n_tiles``
    tiles offer.

    One horizontal bar per model (log scale), coloured dense / MoE, with the fraction of the needed
    tiers' cells that hold a weight (padding of partly filled blocks lowers it); one vertical line
    per chip of ``n_tiles`` x T tiers for T in ``tier_counts``.
    """
    specs = [zoo.get(m) if isinstance(m, str) else m for m in models]
    if not specs:
        raise ValueError("model_fits(models=()): give at least one model")
    specs.sort(key=lambda s: tiers_needed(s, tier_rows, tier_cols))
    need = np.array([tiers_needed(s, tier_rows, tier_cols) for s in specs])
    fill = np.array([_weights_on_tiers(s) for s in specs]) / (need * tier_rows * tier_cols)
    y = np.arange(len(specs))

    fig = _figure(10.0, 0.35 * len(specs) + 2.0)
    ax = fig.subplots()
    ax.barh(y, need, color=[C_MOE if s.is_moe else C_DENSE for s in specs], height=0.65)
    for yi, n, f in zip(y, need, fill, strict=True):
        ax.text(n * 1.08, yi, f"{n:,} ({f:.0%} full)", va="center", fontsize=FONT_SIZE - 2)
    offers = sorted({int(t) for t in tier_counts})
    for t in offers:
        slots = n_tiles * t
        colour = C_3D if t > 1 else C_2D
        ax.axvline(slots, color=colour, ls="--", lw=1.2)
        ax.text(slots, -0.9, f"{n_tiles} x {t} tiers\n= {slots:,}", ha="center", va="bottom",
                fontsize=FONT_SIZE - 2, color=colour,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
    ax.set_yticks(y, [s.name for s in specs])
    ax.set_ylim(len(specs) - 0.5, -1.6)
    ax.set_xscale("log")
    ax.set_xlim(min(need.min(), n_tiles * offers[0]) / 3, max(need.max(), n_tiles * offers[-1]) * 8)
    ax.set(xlabel=f"tiers of {tier_rows}x{tier_cols} weights (count, log scale)", ylabel="model")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=C_DENSE, label="dense"), Patch(color=C_MOE, label="MoE")],
              loc="upper right", fontsize=FONT_SIZE - 2)
    biggest = n_tiles * offers[-1]
    fits = [s.name for s, n in zip(specs, need, strict=True) if n <= biggest]  # sorted by need
    takeaway = (f"{len(fits)} of {len(specs)} models fit in {n_tiles} x {offers[-1]} = {biggest:,} "
                f"tiers" + (f" (largest: {fits[-1]})" if fits else "")
                + f"; {n_tiles} x {offers[0]} = {n_tiles * offers[0]:,} tiers hold "
                f"{int(np.sum(need <= n_tiles * offers[0]))}")
    title = "How many tiers a model needs (embedding lookup excluded, LM head included)"
    return _finish(fig, title, takeaway)


# =============================================================================== chapter 2
@dataclass(frozen=True)
class ParamRow:
    """One model's parameter counts, embeddings and LM head included (Mixtral's convention)."""

    name: str
    """Zoo name."""
    family: str
    """Zoo family."""
    is_moe: bool
    """Mixture of experts?"""
    experts: str
    """'dense', or 'E top-k (+ s shared)'."""
    total: int
    """All parameters."""
    active: int
    """Parameters one token uses."""

    @property
    def ratio(self) -> float:
        """total / active (1 for dense models)."""
        return self.total / self.active


def params_table(entries: Iterable[zoo.ZooEntry] | None = None) -> tuple[ParamRow, ...]:
    """Total and active parameters of every zoo model (or of ``entries``), in zoo order."""
    entries = zoo.entries() if entries is None else tuple(entries)
    rows = []
    for e in entries:
        s = e.spec
        experts = (f"{s.n_experts} top-{s.top_k}" + (f" + {s.n_shared_experts} shared"
                                                     if s.n_shared_experts else "")
                   if s.is_moe else "dense")
        rows.append(ParamRow(s.name, e.family, s.is_moe, experts, s.total_params, s.active_params))
    return tuple(rows)


def _table(header: Sequence[str], body: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if rt else c.ljust(w)  # noqa: E731
                              for c, w, rt in zip(r, widths, right, strict=True)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


def format_params_table(rows: Sequence[ParamRow]) -> str:
    """Aligned plain-text table: model, experts, total (B), active (B), total / active."""
    body = [[r.name, r.experts, f"{r.total / 1e9:.2f}", f"{r.active / 1e9:.2f}", f"{r.ratio:.1f}"]
            for r in rows]
    return _table(["model", "experts", "total (B)", "active (B)", "total/active"], body,
                  [False, False, True, True, True])


_UNIT = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def published_table(entries: Iterable[zoo.ZooEntry] | None = None, moe_only: bool = False) -> str:
    """Aligned plain-text table: every published figure next to our count in the vendor's
    convention.

    Columns: model, quantity (total / active), the figure as printed, our count in the same
    convention and unit (2 decimals), whether our count rounds to the printed figure (otherwise its
    distance from the figure's rounding interval, :meth:`~aimoe_lib.zoo.Published.relative_error`), and the
    convention.
    """
    entries = zoo.entries() if entries is None else tuple(entries)
    body = []
    for e in entries:
        if moe_only and not e.spec.is_moe:
            continue
        for p in e.published:
            ours = e.count(p)
            err = p.relative_error(ours)
            unit = p.figure[-1]
            body.append([e.spec.name, p.quantity, p.figure, f"{ours / _UNIT[unit]:.2f}{unit}",
                         "yes" if err == 0 else f"{err:.1%} off", p.convention.label])
    return _table(["model", "quantity", "published", "ours", "rounds to it", "convention"], body,
                  [False, False, True, True, False, False])


def total_vs_active(entries: Iterable[zoo.ZooEntry] | None = None) -> Figure:
    """Total vs active parameters (billions, log scale) of every zoo model, one row per model.

    Each row joins the active count (what one token uses) to the total (what the chip must hold);
    a dense model is one dot, an MoE a bar whose length on the log axis is total / active (printed).
    Rows are sorted by total parameters; counts include embedding and LM head.
    """
    rows = sorted(params_table(entries), key=lambda r: r.total)
    if not rows:
        raise ValueError("total_vs_active(entries=()): give at least one zoo entry")
    y = np.arange(len(rows))
    tot = np.array([r.total for r in rows]) / 1e9
    act = np.array([r.active for r in rows]) / 1e9

    fig = _figure(10.0, 0.32 * len(rows) + 1.9)
    ax = fig.subplots()
    for yi, r, t, a in zip(y, rows, tot, act, strict=True):
        c = C_MOE if r.is_moe else C_DENSE
        ax.plot([a, t], [yi, yi], color=c, lw=3, alpha=0.5, solid_capstyle="round")
        ax.plot(t, yi, "o", color=c, ms=6)
        ax.plot(a, yi, "o", mfc="none", mec=C_ACTIVE, mew=2, ms=10)
        label = f"{r.experts}: {t / a:.1f}x" if r.is_moe else "dense"
        ax.text(t * 1.25, yi, label, va="center", fontsize=FONT_SIZE - 2, color=c)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xscale("log")
    ax.set_xlim(act.min() / 2, tot.max() * 20)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set(xlabel="parameters (billions, log scale)", ylabel="model (sorted by total)")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.plot([], [], "o", color=C_DENSE, label="total, dense")
    ax.plot([], [], "o", color=C_MOE, label="total, MoE")
    ax.plot([], [], "o", mfc="none", mec=C_ACTIVE, mew=2, ms=10, label="active (per token)")
    ax.legend(loc="upper right", fontsize=FONT_SIZE - 2)
    moe = [r for r in rows if r.is_moe]
    if moe:
        top = max(moe, key=lambda r: r.ratio)
        takeaway = (f"MoEs hold {min(r.ratio for r in moe):.1f}x to {top.ratio:.1f}x the "
                    f"parameters a token uses ({top.name}: {top.ratio:.1f}x); "
                    "dense models use all of theirs")
    else:
        takeaway = "dense models: every parameter is active for every token"
    return _finish(fig, "Total vs active parameters of published models", takeaway)


def moe_scaling(d_model: int = 1024, n_layers: int = 12, d_expert: int = 4096, top_k: int = 2,
                max_experts: int = 64, n_heads: int = 16, vocab_size: int = 32000,
                ffn: str = "swiglu") -> Figure:
    """Total and active parameters as the number of experts E grows at fixed top-k.

    Builds one :class:`~aimoe_lib.models.ModelSpec` per E in k, 2k, 4k, ... ``max_experts`` (every layer MoE,
    experts of width ``d_expert``), plus the dense model with one FFN of width ``d_expert`` as
    reference. Left: parameters (billions) against E; right: the fraction of the parameters one
    token uses.
    """
    if not 1 <= top_k <= max_experts:
        raise ValueError(f"moe_scaling(top_k={top_k!r}, max_experts={max_experts!r}): "
                         "need 1 <= top_k <= max_experts")
    es = []
    e = top_k
    while e < max_experts:
        es.append(e)
        e *= 2
    es.append(max_experts)
    base = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_expert,
                vocab_size=vocab_size, ffn=ffn, norm="rmsnorm")
    specs = [ModelSpec(name=f"moe-{e}x", n_experts=e, top_k=top_k, **base) for e in es]
    dense = ModelSpec(name="dense", **base)
    tot = np.array([s.total_params for s in specs]) / 1e9
    act = np.array([s.active_params for s in specs]) / 1e9
    x = np.array(es)

    fig = _figure(10.5, 3.9)
    ax_p, ax_f = fig.subplots(1, 2)
    ax_p.plot(x, tot, "o-", color=C_MOE, label="total (chip must hold)")
    ax_p.plot(x, act, "o-", mfc="white", color=C_ACTIVE, label="active (one token uses)")
    ax_p.axhline(dense.total_params / 1e9, color=C_DENSE, ls="--", label="dense, one FFN")
    ax_p.set(xscale="log", yscale="log", xlabel=f"routed experts per layer, E (top-{top_k})",
             ylabel="parameters (billions)", title="Total grows, active stays")
    ax_f.plot(x, 100 * act / tot, "o-", color=C_ACTIVE)
    ax_f.set(xscale="log", ylim=(0, 105), xlabel=f"routed experts per layer, E (top-{top_k})",
             ylabel="active / total (%)", title="Share of the weights a token uses")
    for ax in (ax_p, ax_f):
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        if len(x) == 1:
            ax.set_xlim(x[0] / 2, x[0] * 2)
    ax_p.legend(fontsize=FONT_SIZE - 2)
    takeaway = (f"E = {es[0]} -> {es[-1]}: total {tot[0]:.2f}B -> {tot[-1]:.2f}B "
                f"({tot[-1] / tot[0]:.1f}x), active {act[0]:.3f}B -> {act[-1]:.3f}B "
                f"(+{100 * (act[-1] / act[0] - 1):.2f}%, the router)")
    return _finish(fig, f"Adding experts at fixed k: d_model {d_model}, {n_layers} layers, "
                   f"experts of width {d_expert}", takeaway)


@dataclass(frozen=True)
class RouterSample:
    """A toy router's decisions for a batch of tokens."""

    probs: np.ndarray
    """Softmax router probabilities, shape (n_tokens, n_experts)."""
    chosen: np.ndarray
    """Indices of the k chosen experts per token, best first, shape (n_tokens, top_k)."""
    gates: np.ndarray
    """Weights of the chosen experts, renormalised to sum to 1 per token, (n_tokens, top_k)."""

    @property
    def load(self) -> np.ndarray:
        """Tokens each expert receives, shape (n_experts,)."""
        return np.bincount(self.chosen.ravel(), minlength=self.probs.shape[1])


def toy_router(n_tokens: int = 16, n_experts: int = 8, top_k: int = 2,
               seed: int = 0) -> RouterSample:
    """A seeded toy router: standard-normal logits -> softmax -> top-k -> gates renormalised
    over the k.

    Stands in for a trained router's linear layer (d_model -> E) so that the mechanics are visible;
    real routers are skewed (chapter on routing skew). Uses ``numpy.random.default_rng(seed)``;
    ties are broken towards the lower expert index.
    """
    for name, v in (("n_tokens", n_tokens), ("n_experts", n_experts), ("top_k", top_k)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"toy_router({name}={v!r}): must be an integer >= 1")
    if top_k > n_experts:
        raise ValueError(f"toy_router(top_k={top_k}, n_experts={n_experts}): a token picks k of E "
                         "experts, so top_k <= n_experts")
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_tokens, n_experts))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    chosen = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    picked = np.take_along_axis(probs, chosen, axis=1)
    return RouterSample(probs, chosen, picked / picked.sum(axis=1, keepdims=True))


def routing_example(n_tokens: int = 16, n_experts: int = 8, top_k: int = 2,
                    seed: int = 0) -> Figure:
    """The toy router (:func:`toy_router`) drawn: token x expert probabilities with the top-k
    picks marked, and the tokens each expert receives against the even share n_tokens x k / E."""
    r = toy_router(n_tokens, n_experts, top_k, seed)
    load = r.load
    mean = n_tokens * top_k / n_experts

    fig = _figure(10.5, min(6.5, max(3.6, 0.22 * n_tokens + 1.8)))
    ax_h, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1.0]})
    im = ax_h.imshow(r.probs, aspect="auto", cmap="Blues", vmin=0.0,
                     vmax=float(r.probs.max()), interpolation="nearest")
    tok = np.repeat(np.arange(n_tokens), top_k)
    size = max(8.0, 640.0 / max(n_tokens, n_experts))  # marker area, points²
    ax_h.scatter(r.chosen.ravel(), tok, marker="o", s=size, facecolors="none",
                 edgecolors="tab:red", linewidths=1.5)
    fig.colorbar(im, ax=ax_h, label="router probability (softmax, 0-1)", shrink=0.9)
    ax_h.set(xlabel="expert (index)", ylabel="token (index)",
             title=f"Each token picks {top_k} of {n_experts} experts (red circles)")
    if n_experts <= 32:
        ax_h.set_xticks(range(n_experts))
    if n_tokens <= 32:
        ax_h.set_yticks(range(n_tokens))
    ax_l.bar(np.arange(n_experts), load, color=C_MOE)
    ax_l.axhline(mean, color="k", ls="--", lw=1, label=f"even share {mean:.1f}")
    ax_l.set(xlabel="expert (index)", ylabel="tokens routed to it (count)",
             title="Load per expert")
    if n_experts <= 32:
        ax_l.set_xticks(range(n_experts))
    ax_l.legend(fontsize=FONT_SIZE - 2)
    takeaway = (f"{n_tokens} tokens x top-{top_k} = {n_tokens * top_k} expert calls; loads range "
                f"{load.min()}-{load.max()} tokens against an even {mean:.1f} (seed {seed})")
    return _finish(fig, "A toy router: softmax over random logits, then top-k", takeaway)
