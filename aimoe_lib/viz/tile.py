"""Figures of chapter 1 (the 3D AIMC tile): what tiers buy in capacity and area, the
one-tier-at-a-time rule, and how many tiers published models need.

Figures: :func:`tile_capacity_area` (and :func:`tile_capacity_area_slider`, the same figure
precomputed over a grid for the static book), :func:`one_tier_at_a_time`, :func:`mvm_cost_by_shape`,
:func:`tier_switch_timeline`, :func:`model_fits`; the numbers they show: :func:`mvm_makespan_ns`
and :func:`alternating_tiers_ns` (closed forms), :func:`mvm_energy_split` and
:func:`mvm_efficiency` (one tier MVM of a given shape, with :func:`format_mvm_table`) and
:func:`tiers_needed` (the tier count of :func:`~aimoe_lib.mapping.blocks_needed`). Every figure is
drawn in the house style of :mod:`aimoe_lib.viz.style`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .. import zoo
from ..hardware import (
    HERMES_FOUR_PHASE_TOPS_PER_W,
    HERMES_TOPS_PER_W,
    RETICLE_MM2,
    AreaModel,
    ChipConfig,
    CostModel,
    physical_cost,
)
from ..mapping import blocks_needed
from ..models import ModelSpec, Role
from .static import StaticSlider, static_slider
from .style import C_2D, C_3D, C_DENSE, C_MOE, FONT_SIZE, figure, finish, format_time, table

__all__ = ["tile_capacity_area", "OVERHEAD_GRID", "TIER_SHAPE_GRID", "tile_capacity_area_slider",
           "mvm_makespan_ns", "one_tier_at_a_time", "MVM_SHAPES",
           "mvm_energy_split", "mvm_efficiency", "format_mvm_table", "mvm_cost_by_shape",
           "alternating_tiers_ns", "tier_switch_timeline", "tiers_needed", "DEFAULT_FIT_MODELS",
           "model_fits"]


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
                       n_mha_units: int = 1, reticle_mm2: float | None = RETICLE_MM2) -> Figure:
    """Capacity and area of a 3D chip as its tiles grow tiers, against the 2D chip of equal
    capacity.

    The 3D chip has ``n_tiles`` tiles of 1, 2, 4, ... ``n_tiers_max`` tiers; the 2D chip is
    :meth:`~aimoe_lib.hardware.ChipConfig.as_2d` of it (tiles x tiers tiles of one tier). Areas
    are :attr:`~aimoe_lib.hardware.ChipConfig.area_mm2` (tiles + DPUs + attention units) from
    ``area`` (default :class:`~aimoe_lib.hardware.AreaModel`, whose constants carry their
    sources). Three panels: capacity (M weights), chip area (mm²) and area per million weights
    (mm² / M weights), all against tiers per tile. ``reticle_mm2`` (default
    :data:`~aimoe_lib.hardware.RETICLE_MM2`, 858 mm²; None: not drawn) marks the largest die on the
    area panel; the takeaway counts the reticle-sized dies of the largest 2D chip, as
    :attr:`~aimoe_lib.hardware.ChipConfig.n_dies` splits it.
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
    if reticle_mm2 is not None:
        ax_area.axhline(reticle_mm2, color="0.4", ls=":", lw=1.2,
                        label=f"one reticle ({reticle_mm2:,.0f} mm²)")
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
    if reticle_mm2 is not None:
        dies = [flats[-1].replace(reticle_mm2=reticle_mm2).n_dies,
                chips[-1].replace(reticle_mm2=reticle_mm2).n_dies]
        takeaway += f"; {dies[1]:,} vs {dies[0]:,} dies of <= {reticle_mm2:,.0f} mm²"
    return finish(fig, f"3D AIMC chip: {n_tiles} tiles of {tier_rows}x{tier_cols} tiers", takeaway)


OVERHEAD_GRID = (0.0, 0.001, 0.005, 0.01, 0.05, 0.2)
"""Values of the area each extra tier adds (x one tier's array) on the static slider: zero, the
default of :class:`~aimoe_lib.hardware.AreaModel` (0.1 %, assumption A-TIER-OVERHEAD) and up to
the 5 % and 20 % the chapter discusses."""
TIER_SHAPE_GRID = (128, 256, 512, 1024)
"""Tier shapes (rows = columns) on the static slider."""


def tile_capacity_area_slider(n_tiles: int = 100, n_tiers_max: int = 1024,
                              overheads: Sequence[float] = OVERHEAD_GRID,
                              shapes: Sequence[int] = TIER_SHAPE_GRID) -> StaticSlider:
    """:func:`tile_capacity_area` precomputed for the static book
    (:func:`~aimoe_lib.viz.static.static_slider`): one slider for the area per extra tier
    (``overheads``, x one array; starts at :class:`~aimoe_lib.hardware.AreaModel`'s default),
    one for the square tier shape (``shapes``, starts at 512)."""
    default_overhead = AreaModel().tier_overhead_fraction

    def draw(tier_overhead_fraction: float, tier_shape: int) -> Figure:
        return tile_capacity_area(n_tiles, n_tiers_max, tier_shape, tier_shape,
                                  area=AreaModel(tier_overhead_fraction=tier_overhead_fraction))

    return static_slider(draw, {"tier_overhead_fraction": overheads, "tier_shape": shapes},
                         default={"tier_overhead_fraction": default_overhead, "tier_shape": 512},
                         labels={"tier_overhead_fraction": "area per extra tier (x one array)",
                                 "tier_shape": "tier rows = columns"},
                         formats={"tier_overhead_fraction": "{:.1%}"})


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
    energy per tier MVM are those of a full tier_rows x tier_cols MVM (512 x 512) under ``cost``
    (default :func:`~aimoe_lib.hardware.physical_cost`, the book's preset: 132.9 ns and 29.5 nJ;
    ``CostModel()`` gives the 'paper' preset's 100 ns and 10 nJ); the energy is the same in both
    placements. Times are the closed form :func:`mvm_makespan_ns`, not a simulation.
    """
    cost = cost if cost is not None else physical_cost()
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
    takeaway = (f"{n_mvms} MVMs of {lat:.4g} ns: {serial:,.0f} ns on one tile vs "
                f"{parallel:,.0f} ns on {n_mvms} tiles; energy {n_mvms * e_pj / 1e3:,.1f} nJ "
                "either way")
    return finish(fig, "One tier at a time: tiers of a tile take turns, tiles run in parallel",
                  takeaway)


# -- the cost of one tier MVM ------------------------------------------------------------------
MVM_SHAPES = (("full tier", 512, 512), ("edge block", 512, 256), ("HERMES core", 256, 256),
              ("router", 512, 8))
"""(label, rows used, columns used) of the tier MVMs :func:`mvm_cost_by_shape` and
:func:`format_mvm_table` show by default: a full 512 x 512 tier; a half-width edge block (the
second column block of a 768-wide matrix, as Qwen3-30B-A3B's experts); a block the size of one
HERMES core (256 x 256); a 512 x 8 block of an 8-expert router."""

_PARTS = ("fixed", "row", "column", "cell")
_PART_COLOURS = {"fixed": "0.55", "row": "tab:green", "column": "tab:red", "cell": "tab:cyan"}


def mvm_energy_split(cost: CostModel, rows: int, cols: int) -> dict[str, float]:
    """Energy of one tier MVM using ``rows`` inputs and ``cols`` outputs, by part, pJ: ``fixed``
    (control), ``row`` (per input row: DACs and drivers), ``column`` (per output column: ADCs and
    readout) and ``cell`` (per used cell: array read), each times the input phases. The parts sum
    to ``cost.mvm(rows, cols).energy_pj``; the 'paper' costs have only the fixed part."""
    cost.mvm(rows, cols)  # validates the shape
    ph = cost.mvm_input_phases
    return {"fixed": ph * cost.mvm_energy_pj,
            "row": ph * cost.mvm_energy_pj_per_row * rows,
            "column": ph * cost.mvm_energy_pj_per_column * cols,
            "cell": ph * cost.mvm_energy_pj_per_cell * rows * cols}


def mvm_efficiency(cost: CostModel, rows: int, cols: int) -> tuple[float, float]:
    """(TOPS of one tile, TOPS/W) of a ``rows`` x ``cols`` tier MVM: 2 x rows x cols operations (a
    multiply and an add per weight) over its latency and over its energy (1 operation per pJ =
    1 TOPS/W)."""
    c = cost.mvm(rows, cols)
    ops = 2.0 * rows * cols
    return ops / c.latency_ns / 1e3, ops / c.energy_pj


def format_mvm_table(costs: dict[str, CostModel],
                     shapes: Sequence[tuple[str, int, int]] = MVM_SHAPES) -> str:
    """Plain-text table, one row per cost model and MVM shape: latency (ns), energy (nJ) and its
    parts (:func:`mvm_energy_split`), TOPS per tile and TOPS/W (:func:`mvm_efficiency`)."""
    body = []
    for name, cost in costs.items():
        for label, r, c in shapes:
            mvm = cost.mvm(r, c)
            parts = mvm_energy_split(cost, r, c)
            tops, tops_w = mvm_efficiency(cost, r, c)
            body.append([name, label, f"{r}x{c}", f"{mvm.latency_ns:.1f}",
                         f"{mvm.energy_pj / 1e3:.2f}", *(f"{parts[p] / 1e3:.2f}" for p in _PARTS),
                         f"{tops:.3g}", f"{tops_w:.3g}"])
    header = ["costs", "block", "shape", "ns", "nJ", "fixed", "rows", "columns", "cells",
              "TOPS/tile", "TOPS/W"]
    return table(header, body, [False, False, False] + [True] * 8)


def _default_costs() -> dict[str, CostModel]:
    return {"paper": CostModel(), "physical": physical_cost(),
            "physical, 4-phase": physical_cost(4)}


def mvm_cost_by_shape(costs: dict[str, CostModel] | None = None,
                      shapes: Sequence[tuple[str, int, int]] = MVM_SHAPES) -> Figure:
    """Energy and efficiency of one tier MVM by the part of the tier it uses.

    ``costs`` maps a label to a :class:`~aimoe_lib.hardware.CostModel` (default: 'paper', the
    book's 'physical' and 'physical' in HERMES' four-phase input mode); ``shapes`` are
    (label, rows, columns) (default :data:`MVM_SHAPES`). Left: energy per MVM (nJ), each bar split
    into its fixed, per-row, per-column and per-cell parts (:func:`mvm_energy_split`). Right:
    TOPS/W (:func:`mvm_efficiency`, log scale) with [HERMES]' published 9.76 TOPS/W (one-phase) and
    2.48 TOPS/W (four-phase), both for full 256 x 256 cores.
    """
    costs = _default_costs() if costs is None else dict(costs)
    if not costs or not shapes:
        raise ValueError("mvm_cost_by_shape(costs, shapes): give at least one cost model and one "
                         "shape")
    names, n_c = list(costs), len(costs)
    hatches = ["", "//", "..", "xx", "\\\\"]
    width = 0.8 / n_c
    x = np.arange(len(shapes))
    energy = {n: [costs[n].mvm(r, c).energy_pj / 1e3 for _, r, c in shapes] for n in names}
    eff = {n: [mvm_efficiency(costs[n], r, c)[1] for _, r, c in shapes] for n in names}

    fig = figure(11.0, 4.2)
    ax_e, ax_w = fig.subplots(1, 2)
    for j, n in enumerate(names):
        xj = x - 0.4 + width * (j + 0.5)
        bottom = np.zeros(len(shapes))
        for p in _PARTS:
            v = np.array([mvm_energy_split(costs[n], r, c)[p] / 1e3 for _, r, c in shapes])
            if np.any(v > 0):
                ax_e.bar(xj, v, width * 0.92, bottom=bottom, color=_PART_COLOURS[p],
                         hatch=hatches[j % len(hatches)], edgecolor="k", lw=0.5)
            bottom += v
        for xi, e in zip(xj, energy[n], strict=True):
            ax_e.text(xi, e, f"{e:.1f}", ha="center", va="bottom", fontsize=FONT_SIZE - 3)
        ax_w.bar(xj, eff[n], width * 0.92, color="0.85", hatch=hatches[j % len(hatches)],
                 edgecolor="k", lw=0.5, label=n)
    ax_w.axhline(HERMES_TOPS_PER_W, color="tab:purple", ls="--", lw=1,
                 label=f"HERMES, one-phase ({HERMES_TOPS_PER_W} TOPS/W)")
    ax_w.axhline(HERMES_FOUR_PHASE_TOPS_PER_W, color="tab:purple", ls=":", lw=1,
                 label=f"HERMES, four-phase ({HERMES_FOUR_PHASE_TOPS_PER_W} TOPS/W)")
    labels = [f"{lab}\n{r}x{c}" for lab, r, c in shapes]
    handles = [Patch(facecolor=_PART_COLOURS[p], edgecolor="k", label=f"per {p}" if p != "fixed"
                     else "fixed") for p in _PARTS]
    handles += [Patch(facecolor="white", edgecolor="k", hatch=hatches[j % len(hatches)], label=n)
                for j, n in enumerate(names)]
    ax_e.legend(handles=handles, fontsize=FONT_SIZE - 3, loc="upper right", ncol=2)
    ax_e.set_xticks(x, labels)
    ax_e.set_ylim(0, max(max(v) for v in energy.values()) * 1.45)
    ax_e.set(xlabel="block (rows used x columns used of a 512 x 512 tier)",
             ylabel="energy per tier MVM (nJ)", title="Energy of one MVM, by part")
    ax_w.set_xticks(x, labels)
    ax_w.set_yscale("log")
    ax_w.set(xlabel="block (rows used x columns used)",
             ylabel="TOPS/W (2 x rows x cols ops / energy)", title="Energy efficiency")
    ax_w.legend(fontsize=FONT_SIZE - 3, loc="upper right")
    for ax in (ax_e, ax_w):
        ax.grid(True, axis="y", alpha=0.3)

    cells = [r * c for _, r, c in shapes]
    big = int(np.argmax(cells))
    varies = [n for n in names if max(energy[n]) > min(energy[n]) * (1 + 1e-9)]
    flat = [n for n in names if n not in varies]
    parts = []
    if varies:
        n = varies[0]
        small = int(np.argmin(energy[n]))
        parts.append(f"{n}: a {shapes[small][1]}x{shapes[small][2]} MVM costs "
                     f"{energy[n][small]:.1f} nJ, {energy[n][small] / energy[n][big]:.0%} of a "
                     f"{shapes[big][1]}x{shapes[big][2]} one ({energy[n][big]:.1f} nJ, "
                     f"{eff[n][big]:.1f} TOPS/W)")
    for n in flat[:1]:
        parts.append(f"{n}: {energy[n][big]:.1f} nJ whatever the shape ({eff[n][big]:.1f} TOPS/W "
                     f"at {shapes[big][1]}x{shapes[big][2]})")
    return finish(fig, "What one tier MVM costs: the parts of the tier it uses", "; ".join(parts))


# -- tier switches -------------------------------------------------------------------------------
def alternating_tiers_ns(n_mvms: int, mvm_latency_ns: float, switch_latency_ns: float) -> float:
    """Closed form: ``n_mvms`` MVMs back to back on one tile, each on a different tier than the
    one before. The tile's first MVM pays no switch (as in the simulator), every later one pays
    ``switch_latency_ns`` first: n x MVM + (n - 1) x switch, i.e. MVM + switch per MVM in a long
    run."""
    if not isinstance(n_mvms, int) or n_mvms < 1:
        raise ValueError(f"alternating_tiers_ns(n_mvms={n_mvms!r}): must be an integer >= 1")
    if mvm_latency_ns <= 0 or switch_latency_ns < 0:
        raise ValueError(f"alternating_tiers_ns(mvm_latency_ns={mvm_latency_ns!r}, "
                         f"switch_latency_ns={switch_latency_ns!r}): the MVM latency must be > 0 "
                         "and the switch latency >= 0")
    return n_mvms * mvm_latency_ns + (n_mvms - 1) * switch_latency_ns


def tier_switch_timeline(switch_latencies_ns: Sequence[float] = (0.0, 100.0, 1000.0),
                         n_mvms: int = 6, cost: CostModel | None = None) -> Figure:
    """What a tier-switch latency does to a tile whose consecutive MVMs use different tiers.

    One tile runs ``n_mvms`` MVMs alternating between tiers 0 and 1, once for every switch latency
    in ``switch_latencies_ns`` (the :attr:`~aimoe_lib.hardware.CostModel.tier_switch_latency_ns`
    knob); the MVM latency is ``cost``'s (default :func:`~aimoe_lib.hardware.physical_cost`,
    132.9 ns). Left: the timelines (MVMs coloured by tier, switches grey). Right: the time per MVM,
    MVM + switch (:func:`alternating_tiers_ns` over ``n_mvms``, and its long-run limit). Closed
    form, not a simulation.
    """
    cost = cost if cost is not None else physical_cost()
    lat = cost.tier_mvm_latency_ns
    sw = [float(s) for s in switch_latencies_ns]
    if not sw or min(sw) < 0:
        raise ValueError(f"tier_switch_timeline(switch_latencies_ns={switch_latencies_ns!r}): give "
                         "at least one latency, each >= 0 ns")
    total = [alternating_tiers_ns(n_mvms, lat, s) for s in sw]

    fig = figure(11.0, 1.2 + 0.55 * len(sw) + 1.6)
    ax_t, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1.0]})
    tier_colours = (C_3D, C_MOE)
    for row, s in enumerate(sw):
        t = 0.0
        for i in range(n_mvms):
            if i > 0 and s > 0:
                ax_t.broken_barh([(t, s)], (row - 0.35, 0.7), facecolors="0.85", edgecolor="0.5",
                                 hatch="//", lw=0.5)
                t += s
            ax_t.broken_barh([(t, lat)], (row - 0.35, 0.7), facecolors=tier_colours[i % 2],
                             edgecolor="k", lw=0.5)
            t += lat
        ax_t.text(t, row, f"  {format_time(t)}", va="center", fontsize=FONT_SIZE - 2)
    ax_t.set_yticks(range(len(sw)), [f"switch {format_time(s)}" for s in sw])
    ax_t.set_ylim(len(sw) - 0.5, -0.5)
    ax_t.set_xlim(0, max(total) * 1.18)
    ax_t.set(xlabel="time (ns)", ylabel="tier-switch latency",
             title=f"One tile, {n_mvms} MVMs alternating tiers 0 and 1")
    ax_t.legend(handles=[Patch(color=tier_colours[0], label="MVM on tier 0"),
                         Patch(color=tier_colours[1], label="MVM on tier 1"),
                         Patch(facecolor="0.85", edgecolor="0.5", hatch="//", label="tier switch")],
                fontsize=FONT_SIZE - 3, loc="upper right")
    ax_t.grid(True, axis="x", alpha=0.3)
    y = np.arange(len(sw))
    per = np.array(total) / n_mvms
    ax_b.barh(y, per, color="0.7", edgecolor="k", lw=0.5, label=f"mean over {n_mvms} MVMs")
    ax_b.plot([lat + s for s in sw], y, "kd", label="long run: MVM + switch")
    ax_b.axvline(lat, color=C_3D, ls="--", lw=1, label=f"no switch: {lat:.1f} ns")
    ax_b.set_yticks(y, [format_time(s) for s in sw])
    ax_b.set_ylim(len(sw) - 0.5, -0.5)
    ax_b.set_xlim(0, (lat + max(sw)) * 1.15)
    ax_b.set(xlabel="time per MVM (ns)", ylabel="tier-switch latency", title="Time per MVM")
    ax_b.legend(fontsize=FONT_SIZE - 3, loc="upper right")
    ax_b.grid(True, axis="x", alpha=0.3)
    steps = ", ".join(f"{format_time(x)} at a {format_time(s)} switch"
                      for s, x in zip(sw, total, strict=True))
    takeaway = (f"{n_mvms} MVMs of {lat:.1f} ns alternating tiers: {steps} "
                f"(long run {(lat + sw[-1]) / lat:.1f}x the MVM alone)")
    return finish(fig, "Tier switches: a cost only when consecutive MVMs of a tile change tier",
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
