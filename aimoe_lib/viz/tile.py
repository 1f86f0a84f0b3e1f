"""Figures of chapter 1 (the 3D AIMC tile): what tiers buy in capacity and area, the
one-tier-at-a-time rule, and how many tiers published models need.

Figures: :func:`tile_capacity_area`, :func:`one_tier_at_a_time`, :func:`model_fits`; the numbers
they show: :func:`mvm_makespan_ns` (closed form) and :func:`tiers_needed` (the tier count of
:func:`~aimoe_lib.mapping.blocks_needed`). Every figure is drawn in the house style of
:mod:`aimoe_lib.viz.style`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .. import zoo
from ..hardware import AreaModel, ChipConfig, CostModel
from ..mapping import blocks_needed
from ..models import ModelSpec, Role
from .style import C_2D, C_3D, C_DENSE, C_MOE, FONT_SIZE, figure, finish

__all__ = ["tile_capacity_area", "mvm_makespan_ns", "one_tier_at_a_time", "tiers_needed",
           "DEFAULT_FIT_MODELS", "model_fits"]


def _tier_grid(n_tiers_max: int) -> list[int]:
    """1, 2, 4, ... up to n_tiers_max, with n_tiers_max itself as the last point."""
    if not isinstance(n_tiers_max, int) or n_tiers_max < 1:
        raise ValueError(f"n_tiers_max={n_tiers_max!r}: must be an integer >= 1")
    grid = [2**i for i in range(int(math.log2(n_tiers_max)) + 1)]
    if grid[-1] != n_tiers_max:
        grid.append(n_tiers_max)
    return grid


def tile_capacity_area(n_tiles: int = 100, n_tiers_max: int = 1024, tier_rows: int = 512,
                       tier_cols: int = 512, area: AreaModel | None = None, n_dpus: int = 4,
                       n_mha_units: int = 1) -> Figure:
    """Capacity and area of a 3D chip as its tiles grow tiers, against the 2D chip of equal
    capacity.

    The 3D chip has ``n_tiles`` tiles of 1, 2, 4, ... ``n_tiers_max`` tiers; the 2D chip is
    :meth:`~aimoe_lib.hardware.ChipConfig.as_2d` of it (tiles x tiers tiles of one tier). Areas
    are :attr:`~aimoe_lib.hardware.ChipConfig.area_mm2` (tiles + DPUs + attention units) from
    ``area`` (default :class:`~aimoe_lib.hardware.AreaModel`, whose constants carry their
    sources). Three panels: capacity (M weights), chip area (mm²) and area per million weights
    (mm² / M weights), all against tiers per tile.
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

    fig = figure(11.0, 3.9)
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
    return finish(fig, f"3D AIMC chip: {n_tiles} tiles of {tier_rows}x{tier_cols} tiers", takeaway)


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
    energy per tier MVM default to ``cost`` (default :class:`~aimoe_lib.hardware.CostModel`:
    100 ns and 10 nJ, from 3D-SiM's defaults and the MoEwithPIM table); the energy is the same in
    both placements. Times are the closed form :func:`mvm_makespan_ns`, not a simulation.
    """
    cost = cost if cost is not None else CostModel()
    full = cost.mvm(512, 512)  # one full 512 x 512 tier
    lat = full.latency_ns if mvm_latency_ns is None else float(mvm_latency_ns)
    e_pj = full.energy_pj if mvm_energy_pj is None else float(mvm_energy_pj)
    if not isinstance(n_mvms, int) or not 1 <= n_mvms <= n_tiers:
        raise ValueError(f"one_tier_at_a_time(n_mvms={n_mvms!r}): must be an integer in "
                         f"1..n_tiers={n_tiers} (the MVMs must fit in the tiers of one tile)")
    serial = mvm_makespan_ns(n_mvms, 1, lat)
    parallel = mvm_makespan_ns(n_mvms, n_mvms, lat)

    fig = figure(11.0, 3.9)
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
    return finish(fig, "One tier at a time: tiers of a tile take turns, tiles run in parallel",
                  takeaway)


def tiers_needed(spec: ModelSpec, rows: int = 512, cols: int = 512,
                 include_embedding: bool = False) -> int:
    """Tiers (rows x cols crossbar blocks) a model's weight matrices need.

    Each matrix of shape (in_features, out_features) is cut into ceil(in / rows) x ceil(out / cols)
    blocks, one per tier; the result is the sum over matrices. The input embedding
    is a table lookup (one row per token), not an MVM, so by default it takes no tier; the LM head
    is an MVM and is counted, also when it is tied to the embedding. Biases and norm vectors live
    in the digital units and take no tier. Example: a 600 x 600 matrix on 512 x 512 tiers needs
    ceil(600/512) x ceil(600/512) = 2 x 2 = 4 tiers.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"tiers_needed(rows={rows!r}, cols={cols!r}): tier shape must be >= 1 x 1")
    return blocks_needed(spec, rows, cols, digital=() if include_embedding else ("embedding",))


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

    fig = figure(10.0, 0.35 * len(specs) + 2.0)
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
    return finish(fig, title, takeaway)
