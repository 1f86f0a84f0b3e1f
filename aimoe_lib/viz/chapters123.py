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
Chapter 3 (mapping): :func:`tiling_example` (with :func:`tiling_stats`), :func:`occupancy_map`,
:func:`occupancy_maps`, :func:`matrix_placement`, :func:`strategy_comparison` (with
:func:`strategy_table`), and the helpers :func:`example_moe`, :func:`fitting_chip`,
:func:`zipf_probs`, :func:`coactivation_from_probs`, :func:`bin_dominant`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .. import zoo
from ..hardware import AreaModel, ChipConfig, CostModel
from ..mapping import (
    STRATEGIES,
    Mapping,
    MappingError,
    blocks_needed,
    expected_conflicts,
    map_model,
)
from ..models import ModelSpec, Role

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
    "example_moe",
    "analog_blocks",
    "fitting_chip",
    "zipf_probs",
    "coactivation_from_probs",
    "bin_dominant",
    "occupancy_map",
    "occupancy_maps",
    "TilingStats",
    "tiling_stats",
    "tiling_example",
    "matrix_placement",
    "strategy_table",
    "format_strategy_table",
    "strategy_comparison",
]

from .style import (  # noqa: E402,F401
    C_2D, C_3D, C_ACTIVE, C_DENSE, C_MOE, DPI, FONT_SIZE,
)
from .style import figure as _figure  # noqa: E402
from .style import finish as _finish  # noqa: E402
from .style import palette as _palette  # noqa: E402
from .style import table as _table  # noqa: E402


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


# =============================================================================== chapter 3
ZIPF_S = 1.2
"""Default Zipf exponent of the skewed routing in :func:`strategy_comparison`: expert e is picked
with probability proportional to 1 / (e + 1)^s. An illustrative choice (expert 0 then takes 43 % of
the probability among 8 experts), not a measured router; chapter 6 looks at real skew."""

OCCUPANCY_COLOR_BY = ("layer", "expert", "role")
"""What :func:`occupancy_map` can colour the tiers by."""

MAX_TIERS_SHOWN = 256
"""Above this many tiers per tile, :func:`occupancy_map` bins consecutive tiers (dominant
category per bin)."""

C_EMPTY = "white"
C_OTHER = "0.35"  # LM head / matrices that are not routed experts


def example_moe(**overrides) -> ModelSpec:
    """The small MoE of chapter 3, small enough that every tier of its occupancy map is visible.

    d_model 1024, 4 layers of 16 heads, every FFN an MoE of 8 SwiGLU experts of width 2048 with
    top-2 routing, RMSNorm, a vocabulary of 8192. On 512x512 tiers an expert is 24 blocks (gate,
    up and down, 8 each) and the model 872 blocks (the input embedding stays digital). Keyword
    arguments override any :class:`~aimoe_lib.models.ModelSpec` field.
    """
    base = dict(name="small-moe", d_model=1024, n_layers=4, n_heads=16, d_ff=2048,
                vocab_size=8192, ffn="swiglu", norm="rmsnorm", n_experts=8, top_k=2)
    return ModelSpec(**{**base, **overrides})


def analog_blocks(model: ModelSpec, tier_rows: int = 512, tier_cols: int = 512,
                  digital=("embedding",)) -> int:
    """Blocks (= tiers) the analog matrices of ``model`` need; see
    :func:`~aimoe_lib.mapping.blocks_needed`."""
    return blocks_needed(model, tier_rows, tier_cols, digital)


def fitting_chip(model: ModelSpec, n_tiers: int, tier_rows: int = 512, tier_cols: int = 512,
                 digital=("embedding",), **chip_fields) -> ChipConfig:
    """The chip with the fewest tiles of ``n_tiers`` tiers that holds ``model``'s analog blocks:
    n_tiles = ceil(:func:`analog_blocks` / n_tiers). Every strategy but ``moe_stacked`` fits it
    exactly; ``moe_stacked`` keeps whole slabs of tiers free for each MoE layer and may need more
    (:class:`~aimoe_lib.mapping.MappingError` says how much). Other keyword arguments are
    :class:`~aimoe_lib.hardware.ChipConfig` fields."""
    if isinstance(n_tiers, bool) or not isinstance(n_tiers, int) or n_tiers < 1:
        raise ValueError(f"fitting_chip(n_tiers={n_tiers!r}): must be an integer >= 1")
    need = analog_blocks(model, tier_rows, tier_cols, digital)
    name = chip_fields.pop("name", "fitted")
    return ChipConfig(n_tiles=max(1, -(-need // n_tiers)), n_tiers=n_tiers, tier_rows=tier_rows,
                      tier_cols=tier_cols, name=name, **chip_fields)


def zipf_probs(n_experts: int, s: float = ZIPF_S) -> np.ndarray:
    """Skewed routing probabilities: p_e proportional to 1 / (e + 1)^s for e = 0 .. n_experts - 1,
    normalised to sum to 1 (s = 0 is uniform routing)."""
    if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) or n_experts < 1:
        raise ValueError(f"zipf_probs(n_experts={n_experts!r}): must be an integer >= 1")
    if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
        raise ValueError(f"zipf_probs(s={s!r}): the Zipf exponent must be a finite number >= 0")
    w = (np.arange(n_experts) + 1.0) ** -float(s)
    return w / w.sum()


def coactivation_from_probs(p) -> np.ndarray:
    """Co-activation density of the experts from their routing probabilities ``p`` (length E).

    C[i, j] = p_i p_j / Z for i != j, C[i, i] = 0, with Z making the matrix sum to 1: the chance
    that a token picks experts i and j together, as the :func:`~aimoe_lib.mapping.map_model`
    strategy ``coactivation`` expects. This is an approximation: it treats the k picks of a token
    as independent draws from ``p``, while top-k picks k distinct experts (without replacement),
    which shifts pair probabilities slightly away from the most popular experts. A recorded routing
    trace gives the exact density.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or p.size < 2 or not np.all(np.isfinite(p)) or np.any(p < 0) \
            or not np.isclose(p.sum(), 1.0):
        raise ValueError("coactivation_from_probs(p): p must be a probability vector over at "
                         "least 2 experts (non-negative, summing to 1)")
    c = np.outer(p, p)
    np.fill_diagonal(c, 0.0)
    total = c.sum()
    if total <= 0:
        raise ValueError("coactivation_from_probs(p): p puts all probability on one expert, so "
                         "no two experts are ever picked together")
    return c / total


# -- occupancy -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Categories:
    """Colour classes of an occupancy map: the class of every analog matrix, then labels and
    colours of every class; the last class is 'empty'."""

    of_matrix: np.ndarray
    labels: tuple[str, ...]
    colors: tuple

    @property
    def empty(self) -> int:
        return len(self.labels) - 1


def _categories(mapping: Mapping, color_by: str) -> _Categories:
    model = mapping.model
    if color_by == "layer":
        n = model.n_layers + model.n_encoder_layers
        lay = mapping.matrix_layer
        of = np.where(lay >= 0, lay, n)
        labels = [f"layer {i}" for i in range(n)] + ["LM head"]
        colors = _palette(n) + [C_OTHER]
    elif color_by == "expert":
        e = model.n_experts
        ex = mapping.matrix_expert
        of = np.where(ex >= 0, ex, e)
        labels = [f"expert {i}" for i in range(e)] + ["not a routed expert"]
        colors = _palette(e) + [C_OTHER]
    elif color_by == "role":
        present = [r for r in Role if any(m.role is r for m in mapping.matrices)]
        idx = {r: i for i, r in enumerate(present)}
        of = np.array([idx[m.role] for m in mapping.matrices], dtype=np.int64)
        labels = [r.value for r in present]
        colors = _palette(len(present))
    else:
        raise ValueError(f"color_by={color_by!r}: choose one of {', '.join(OCCUPANCY_COLOR_BY)}")
    return _Categories(np.asarray(of, dtype=np.int64), tuple(labels) + ("empty",),
                       tuple(colors) + (C_EMPTY,))


def bin_dominant(codes, tiles_per_bin: int = 1, tiers_per_bin: int = 1) -> np.ndarray:
    """Aggregate an (n_tiles, n_tiers) grid of non-negative category codes into bins of
    ``tiles_per_bin`` x ``tiers_per_bin`` cells, keeping the most frequent code of each bin (ties go
    to the smaller code). The last bin along an axis may be partial. Returns an array of shape
    (ceil(n_tiles / tiles_per_bin), ceil(n_tiers / tiers_per_bin))."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size == 0 or codes.min() < 0:
        raise ValueError("bin_dominant(codes): need a non-empty 2-D grid of codes >= 0")
    for name, v in (("tiles_per_bin", tiles_per_bin), ("tiers_per_bin", tiers_per_bin)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bin_dominant({name}={v!r}): must be an integer >= 1")
    if tiles_per_bin == 1 and tiers_per_bin == 1:
        return codes.copy()
    n_t, n_l = codes.shape
    nb_t, nb_l = -(-n_t // tiles_per_bin), -(-n_l // tiers_per_bin)
    n_codes = int(codes.max()) + 1
    bins = ((np.arange(n_t)[:, None] // tiles_per_bin) * nb_l
            + np.arange(n_l)[None, :] // tiers_per_bin)
    key = bins.astype(np.int64).ravel() * n_codes + codes.ravel()
    uniq, count = np.unique(key, return_counts=True)
    b, c = uniq // n_codes, uniq % n_codes
    order = np.lexsort((c, -count, b))  # per bin: highest count first, then smallest code
    first = order[np.r_[True, b[order][1:] != b[order][:-1]]]
    out = np.empty(nb_t * nb_l, dtype=codes.dtype)
    out[b[first]] = c[first]
    return out.reshape(nb_t, nb_l)


def _occupancy_codes(mapping: Mapping, cats: _Categories) -> np.ndarray:
    occ = mapping.occupancy()
    return np.where(occ >= 0, cats.of_matrix[np.maximum(occ, 0)], cats.empty)


def _bin_sizes(n_tiles: int, n_tiers: int, max_tiles: int, max_tiers: int) -> tuple[int, int]:
    for name, v in (("max_tiles", max_tiles), ("max_tiers", max_tiers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"occupancy_map({name}={v!r}): must be an integer >= 1")
    return (-(-n_tiles // max_tiles) if n_tiles > max_tiles else 1,
            -(-n_tiers // max_tiers) if n_tiers > max_tiers else 1)


def _draw_occupancy(ax, mapping: Mapping, cats: _Categories, max_tiles: int, max_tiers: int):
    """Occupancy image on ``ax``; returns (image, tiles per bin, tiers per bin)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n_t, n_l = mapping.chip.n_tiles, mapping.chip.n_tiers
    bt, bl = _bin_sizes(n_t, n_l, max_tiles, max_tiers)
    grid = bin_dominant(_occupancy_codes(mapping, cats), bt, bl)
    n_c = len(cats.labels)
    im = ax.imshow(grid.T, origin="lower", aspect="auto", interpolation="nearest",
                   cmap=ListedColormap(list(cats.colors)),
                   norm=BoundaryNorm(np.arange(n_c + 1) - 0.5, n_c),
                   extent=(-0.5, grid.shape[0] * bt - 0.5, -0.5, grid.shape[1] * bl - 0.5))
    ax.set_xlim(-0.5, n_t - 0.5)
    ax.set_ylim(-0.5, n_l - 0.5)
    if grid.shape[0] <= 128 and grid.shape[1] <= 64:  # thin cell borders where cells are visible
        ax.set_xticks(np.arange(grid.shape[0] + 1) * bt - 0.5, minor=True)
        ax.set_yticks(np.arange(grid.shape[1] + 1) * bl - 0.5, minor=True)
        ax.grid(True, which="minor", color="0.85", lw=0.4)
        ax.tick_params(which="minor", length=0)
    xl = "tile (index)" + (f"; a pixel is {bt} tiles" if bt > 1 else "")
    yl = "tier (index)" + (f"; a pixel is {bl} tiers" if bl > 1 else "")
    ax.set(xlabel=xl, ylabel=yl)
    return im, bt, bl


def _category_colorbar(fig: Figure, im, cats: _Categories, axes, label: str) -> None:
    """Colour bar of the categories; with many of them, thinned tick labels and a small legend
    for the two special classes (dark grey 'other' and white 'empty'), whose slivers are thin."""
    n_c = len(cats.labels)
    cb = fig.colorbar(im, ax=axes, pad=0.01, fraction=0.04, aspect=30)
    if n_c > 20:
        step = math.ceil((n_c - 2) / 12)
        ticks = list(range(0, n_c - 2, step))
        cb.ax.legend(handles=[Patch(facecolor=cats.colors[i], edgecolor="k", lw=0.5,
                                    label=cats.labels[i]) for i in (n_c - 2, n_c - 1)],
                     loc="lower left", bbox_to_anchor=(0.0, 1.005), fontsize=FONT_SIZE - 3,
                     frameon=False, borderaxespad=0.0, handlelength=1.0)
    else:
        ticks = list(range(n_c))
    cb.set_ticks(ticks, labels=[cats.labels[t] for t in ticks])
    cb.ax.tick_params(labelsize=FONT_SIZE - 2, length=0)
    cb.set_label(label, fontsize=FONT_SIZE - 1)


def _distinct_per_tile(tile: np.ndarray, key: np.ndarray, n_tiles: int) -> np.ndarray:
    """Number of distinct ``key`` values among the blocks of each tile (length n_tiles)."""
    if tile.size == 0:
        return np.zeros(n_tiles, dtype=np.int64)
    k = key.astype(np.int64) - int(key.min())
    span = int(k.max()) + 1
    uniq = np.unique(tile.astype(np.int64) * span + k)
    return np.bincount(uniq // span, minlength=n_tiles)


def _layers_per_tile(mapping: Mapping) -> np.ndarray:
    """Distinct layers (the LM head counts as one) with a block on each tile."""
    return _distinct_per_tile(mapping.tile, mapping.matrix_layer[mapping.block_matrix],
                              mapping.chip.n_tiles)


def _experts_per_tile_layer(mapping: Mapping) -> np.ndarray:
    """For every (tile, MoE layer) pair holding routed experts: how many distinct experts of that
    layer sit on the tile."""
    ex = mapping.matrix_expert[mapping.block_matrix]
    sel = ex >= 0
    if not np.any(sel):
        return np.zeros(0, dtype=np.int64)
    n_e = mapping.model.n_experts
    n_layers = mapping.model.n_layers + mapping.model.n_encoder_layers
    lay = mapping.matrix_layer[mapping.block_matrix][sel].astype(np.int64)
    pair = mapping.tile[sel].astype(np.int64) * n_layers + lay
    uniq = np.unique(pair * n_e + ex[sel])
    return np.bincount(uniq // n_e)[np.unique(pair)]


def _occupancy_takeaway(mapping: Mapping, color_by: str) -> str:
    if color_by == "layer":
        per_tile = _layers_per_tile(mapping)
        used = per_tile[per_tile > 0]
        tu = mapping.tiers_used[mapping.tiers_used > 0]
        return (f"{mapping.n_blocks:,} blocks on {used.size:,} tiles ({tu.min()}-{tu.max()} tiers "
                f"each); {int(np.sum(used >= 2)):,} tiles hold 2 or more layers (up to "
                f"{used.max()}), whose MVMs take turns on them")
    if color_by == "expert":
        if not mapping.model.is_moe:
            return f"{mapping.model.name} is dense: no routed experts"
        per = _experts_per_tile_layer(mapping)
        return (f"up to {per.max()} experts of one MoE layer share a tile (mean {per.mean():.1f} "
                f"where experts sit): a token that picks two of them on one tile waits")
    roles = np.array([m.is_routed_expert for m in mapping.matrices])[mapping.block_matrix]
    attn = np.array([m.role.is_attention for m in mapping.matrices])[mapping.block_matrix]
    n = max(mapping.n_blocks, 1)
    return (f"routed experts fill {roles.sum() / n:.0%} of the {mapping.n_blocks:,} occupied "
            f"tiers, attention {attn.sum() / n:.0%}, the rest (router, dense FFN, LM head) "
            f"{1 - (roles.sum() + attn.sum()) / n:.0%}")


def occupancy_map(mapping: Mapping, color_by: str = "layer", max_tiles: int = 256,
                  max_tiers: int = MAX_TIERS_SHOWN) -> Figure:
    """Tiles (x) by tiers (y) of a :class:`~aimoe_lib.mapping.Mapping`, each tier coloured by the
    layer, the routed expert or the role of the block it holds; empty tiers are white.

    ``color_by``: ``"layer"`` (global layer, encoder first; the LM head in dark grey), ``"expert"``
    (routed expert index within its layer; everything else dark grey) or ``"role"``
    (:class:`~aimoe_lib.models.Role`). With more than ``max_tiles`` tiles (or ``max_tiers`` tiers)
    consecutive tiles (tiers) are grouped into bins and each pixel shows the most frequent category
    of its bin, empty counted as a category (:func:`bin_dominant`); the title says so.
    """
    cats = _categories(mapping, color_by)
    chip = mapping.chip
    fig = _figure(10.5, 3.9 if chip.n_tiers > 8 else 3.0)
    ax = fig.subplots()
    im, bt, bl = _draw_occupancy(ax, mapping, cats, max_tiles, max_tiers)
    _category_colorbar(fig, im, cats, ax, color_by)
    ax.set_title(f"strategy {mapping.strategy}: {mapping.n_blocks:,} blocks on "
                 f"{chip.tier_rows}x{chip.tier_cols} tiers, {mapping.tiles_used:,} tiles used, "
                 f"utilisation {mapping.utilisation:.0%}")
    title = (f"{mapping.model.name} on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers, by "
             f"{color_by}" + _binned_note(bt, bl))
    return _finish(fig, title, _occupancy_takeaway(mapping, color_by))


def _binned_note(bt: int, bl: int) -> str:
    if bt == 1 and bl == 1:
        return ""
    return (f" (binned: dominant of {bt} tile{'s' if bt > 1 else ''} x {bl} "
            f"tier{'s' if bl > 1 else ''})")


def occupancy_maps(mappings: Sequence[Mapping], color_by: str = "layer", max_tiles: int = 256,
                   max_tiers: int = MAX_TIERS_SHOWN) -> Figure:
    """:func:`occupancy_map` of several mappings of the same model (e.g. one per strategy), one
    panel each, stacked, with one shared colour scale."""
    mappings = list(mappings)
    if not mappings:
        raise ValueError("occupancy_maps(mappings=[]): give at least one Mapping")
    model = mappings[0].model
    if any(m.model != model for m in mappings):
        raise ValueError("occupancy_maps: all mappings must be of the same model "
                         "(one colour scale)")
    cats = _categories(mappings[0], color_by)
    per_panel = 1.1 + (1.3 if max(m.chip.n_tiers for m in mappings) > 8 else 0.6)
    fig = _figure(10.5, 1.0 + per_panel * len(mappings))
    axes = np.atleast_1d(fig.subplots(len(mappings), 1))
    stats, bins = [], (1, 1)
    for ax, m in zip(axes, mappings, strict=True):
        im, bt, bl = _draw_occupancy(ax, m, cats, max_tiles, max_tiers)
        bins = max(bins, (bt, bl))
        if color_by == "expert" and model.is_moe:
            v = int(_experts_per_tile_layer(m).max())
            stat = f"up to {v} experts of a layer per tile"
        elif color_by == "role":
            v = m.tiles_used
            stat = f"{v:,} tiles used"
        else:
            sharing = m.consecutive_layer_sharing()
            v = float(sharing.mean()) if sharing.size else 0.0
            per_tile = _layers_per_tile(m)
            stat = (f"consecutive layers share {v:.0%} of their tiles; "
                    f"{per_tile[per_tile > 0].mean():.1f} layers per tile")
        stats.append((m.strategy, v))
        ax.set_title(f"{m.strategy}: {stat}", loc="left")
    _category_colorbar(fig, im, cats, list(axes), color_by)
    if color_by == "layer":
        takeaway = ("share of layer l+1's tiles that also hold layer l: "
                    + ", ".join(f"{s} {v:.2f}" for s, v in stats))
    else:
        what = {"expert": "most experts of one layer on a tile", "role": "tiles used"}[color_by]
        takeaway = f"{what}: " + ", ".join(f"{s} {v:,}" for s, v in stats)
    chip = mappings[0].chip
    title = (f"Where {model.name}'s blocks land on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers,"
             f" by {color_by}" + _binned_note(*bins))
    return _finish(fig, title, takeaway)


# -- one matrix ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TilingStats:
    """How one (in_features x out_features) matrix is cut into blocks of at most rows x cols."""

    row_blocks: int
    """ceil(in_features / rows): blocks along the input."""
    col_blocks: int
    """ceil(out_features / cols): blocks along the output."""
    full_blocks: int
    """Blocks that fill their whole tier."""
    weights: int
    """in_features x out_features."""
    cells: int
    """Crossbar cells of the occupied tiers: blocks x rows x cols."""

    @property
    def blocks(self) -> int:
        """Tiers occupied (= :func:`~aimoe_lib.mapping.blocks_of`)."""
        return self.row_blocks * self.col_blocks

    @property
    def partial_blocks(self) -> int:
        """Edge blocks that leave part of their tier empty."""
        return self.blocks - self.full_blocks

    @property
    def fill(self) -> float:
        """Fraction of the occupied tiers' cells holding a weight:
        in x out / (blocks x rows x cols)."""
        return self.weights / self.cells


def tiling_stats(in_features: int, out_features: int, rows: int = 512,
                 cols: int = 512) -> TilingStats:
    """Block counts and fill of one matrix on rows x cols tiers (DESIGN.md §4)."""
    for name, v in (("in_features", in_features), ("out_features", out_features), ("rows", rows),
                    ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"tiling_stats({name}={v!r}): must be an integer >= 1")
    nr, nc = -(-in_features // rows), -(-out_features // cols)
    full = (in_features // rows) * (out_features // cols)
    return TilingStats(nr, nc, full, in_features * out_features, nr * nc * rows * cols)


def tiling_example(in_features: int = 2048, out_features: int = 768, rows: int = 512,
                   cols: int = 512) -> Figure:
    """One matrix cut into blocks of at most rows x cols, each block one tier.

    Drawn to scale: weights in blue, each tier's outline in black, the unused cells of partial edge
    blocks hatched red. The takeaway gives the fill fraction
    in x out / (blocks x rows x cols) (:func:`tiling_stats`).
    """
    st = tiling_stats(in_features, out_features, rows, cols)
    w_in, w_out = st.row_blocks * rows, st.col_blocks * cols
    ratio = w_in / w_out  # height / width of the drawing
    ax_h = float(np.clip(4.6 * min(ratio, 1.0), 2.0, 4.6))  # axes size in inches, to scale
    ax_w = float(np.clip(ax_h / ratio, 0.6, 7.5))
    fig = _figure(max(8.5, ax_w + 3.4), ax_h + 1.7)
    ax = fig.subplots()
    ax.add_patch(Rectangle((0, 0), out_features, in_features, facecolor="tab:blue", alpha=0.45,
                           edgecolor="none"))
    label = st.blocks <= 64
    for i in range(st.row_blocks):
        for j in range(st.col_blocks):
            r = min(rows, in_features - i * rows)
            c = min(cols, out_features - j * cols)
            partial = r < rows or c < cols
            if partial:  # unused cells of this tier
                if c < cols:
                    ax.add_patch(Rectangle((j * cols + c, i * rows), cols - c, rows, fill=False,
                                           hatch="///", edgecolor="tab:red", lw=0))
                if r < rows:
                    ax.add_patch(Rectangle((j * cols, i * rows + r), c, rows - r, fill=False,
                                           hatch="///", edgecolor="tab:red", lw=0))
            ax.add_patch(Rectangle((j * cols, i * rows), cols, rows, fill=False,
                                   edgecolor="tab:red" if partial else "k",
                                   lw=1.6 if partial else 1.0))
            if label:
                ax.text(j * cols + cols / 2, i * rows + rows / 2,
                        f"block {i * st.col_blocks + j}\n{r}x{c}", ha="center", va="center",
                        fontsize=FONT_SIZE - 3)
    ax.set_xlim(0, w_out)
    ax.set_ylim(w_in, 0)
    to_scale = 0.25 <= ratio <= 8.0
    ax.set_aspect("equal" if to_scale else "auto")
    ax.set(xlabel=f"output feature (index; {cols} per tier)",
           ylabel=f"input feature (index; {rows} per tier)",
           title=f"{st.row_blocks} x {st.col_blocks} blocks, {st.partial_blocks} of them partial"
                 + ("" if to_scale else " (not to scale)"))
    ax.legend(handles=[Patch(facecolor="tab:blue", alpha=0.45, label="weights"),
                       Patch(facecolor="white", edgecolor="tab:red", hatch="///",
                             label="unused cells of a partial tier")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT_SIZE - 2)
    takeaway = (f"{in_features:,} x {out_features:,} weights on {rows}x{cols} tiers: "
                f"{st.blocks} blocks ({st.partial_blocks} partial), {st.weights:,} weights in "
                f"{st.cells:,} cells: fill {st.fill:.1%}")
    return _finish(fig, f"Cutting a {in_features:,} x {out_features:,} matrix into "
                   f"{rows}x{cols} tiers", takeaway)


def matrix_placement(mapping: Mapping, name: str) -> Figure:
    """Where the blocks of one matrix landed: its block grid (row blocks x column blocks), each
    block coloured by its tile and annotated with (tile, tier), next to the number of its blocks on
    each tile. The busiest tile's count is the matrix's MVM depth
    (:meth:`~aimoe_lib.mapping.Mapping.mvm_depth`): blocks on one tile run one after another."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    b = mapping.blocks(name)
    m = mapping.matrices[mapping.matrix_index(name)]
    nr, nc = int(b["row_block"].max()) + 1, int(b["col_block"].max()) + 1
    tile_grid = np.empty((nr, nc), dtype=np.int64)
    tier_grid = np.empty((nr, nc), dtype=np.int64)
    tile_grid[b["row_block"], b["col_block"]] = b["tile"]
    tier_grid[b["row_block"], b["col_block"]] = b["tier"]
    tiles, per_tile = np.unique(b["tile"], return_counts=True)
    rank = np.searchsorted(tiles, tile_grid)
    depth = int(per_tile.max())
    lat = mapping.chip.cost.mvm_latency_ns

    fig = _figure(11.0, float(np.clip(1.8 + 0.45 * nr, 3.4, 6.5)))
    ax_g, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1.0]})
    colors = _palette(len(tiles))
    im = ax_g.imshow(rank, cmap=ListedColormap(colors), aspect="auto", interpolation="nearest",
                     norm=BoundaryNorm(np.arange(len(tiles) + 1) - 0.5, len(tiles)))
    if nr * nc <= 96:
        for i in range(nr):
            for j in range(nc):
                ax_g.text(j, i, f"{tile_grid[i, j]},{tier_grid[i, j]}", ha="center",
                          va="center", fontsize=FONT_SIZE - 3 if nr * nc <= 48 else FONT_SIZE - 4)
    cb = fig.colorbar(im, ax=ax_g, pad=0.01)
    step = math.ceil(len(tiles) / 16)
    cb.set_ticks(range(0, len(tiles), step), labels=[str(t) for t in tiles[::step]])
    cb.set_label("tile (index)", fontsize=FONT_SIZE - 1)
    cb.ax.tick_params(labelsize=FONT_SIZE - 2)
    ax_g.set(xlabel=f"column block (outputs, {mapping.chip.tier_cols} per block)",
             ylabel=f"row block (inputs, {mapping.chip.tier_rows} per block)",
             title=f"{m.in_features:,} x {m.out_features:,} in {nr} x {nc} blocks; "
                   "text: tile,tier" if nr * nc <= 96 else
                   f"{m.in_features:,} x {m.out_features:,} in {nr} x {nc} blocks")
    if nc <= 32:
        ax_g.set_xticks(range(nc))
    if nr <= 32:
        ax_g.set_yticks(range(nr))
    x = np.arange(tiles.size)
    ax_b.bar(x, per_tile, color=colors)
    ax_b.axhline(depth, color="k", ls=":", lw=1)
    step = math.ceil(tiles.size / 16)
    ax_b.set_xticks(x[::step], [str(t) for t in tiles[::step]],
                    rotation=90 if tiles.size > 8 else 0)
    ax_b.set(xlabel="tile (index, only tiles holding this matrix)",
             ylabel="blocks on the tile (serial tier MVMs)",
             title=f"MVM depth {depth}: busiest tile")
    takeaway = (f"{name}: {per_tile.sum()} blocks on {tiles.size} tiles; the busiest holds "
                f"{depth}, so one MVM of this matrix takes {depth} x {lat:g} ns = "
                f"{depth * lat:,.0f} ns instead of {lat:g} ns on {per_tile.sum()} tiles")
    return _finish(fig, f"Placement of one matrix ({mapping.strategy}, {mapping.model.name})",
                   takeaway)


# -- strategies ------------------------------------------------------------------------------
def strategy_table(model: ModelSpec, chip: ChipConfig, strategies: Sequence[str] = STRATEGIES,
                   expert_probs=None, seed: int = 0, zipf_s: float = ZIPF_S,
                   n_tokens: int = 2000, digital=("embedding",)) -> list[dict]:
    """The numbers behind :func:`strategy_comparison`, one dict per strategy.

    Keys: ``strategy``; ``status`` (``"ok"``, ``"does not fit"`` when
    :func:`~aimoe_lib.mapping.map_model` raises :class:`~aimoe_lib.mapping.MappingError`, or
    ``"not applicable"`` for an expert strategy on a dense model) with the message in ``error``;
    ``tiles_used`` and ``max_tiers_per_tile`` (:attr:`~aimoe_lib.mapping.Mapping.tiers_used`);
    ``layer_sharing``, the mean of :meth:`~aimoe_lib.mapping.Mapping.consecutive_layer_sharing`;
    ``conflicts_uniform`` and ``conflicts_skewed``, the mean over MoE layers of
    :func:`~aimoe_lib.mapping.expected_conflicts` (waiting tier MVMs per token) under uniform
    routing and under ``expert_probs`` (default :func:`zipf_probs` with ``zipf_s``), both over
    ``n_tokens`` tokens seeded by ``seed`` (NaN for a dense model). Numbers are None where the
    status is not ``"ok"``. The strategy ``coactivation`` plans with
    :func:`coactivation_from_probs` of the skewed probabilities; ``random`` uses ``seed``.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"strategies={unknown!r}: unknown; choose from {', '.join(STRATEGIES)}")
    skew = None
    if model.is_moe:
        skew = (zipf_probs(model.n_experts, zipf_s) if expert_probs is None
                else np.asarray(expert_probs, dtype=float))
    rows = []
    for s in strategies:
        row = {"strategy": s, "status": "ok", "error": None, "tiles_used": None,
               "max_tiers_per_tile": None, "layer_sharing": None, "conflicts_uniform": None,
               "conflicts_skewed": None}
        rows.append(row)
        if s in ("coactivation", "moe_stacked") and not model.is_moe:
            row.update(status="not applicable",
                       error=f"{s} places experts, but {model.name} is dense")
            continue
        coact = coactivation_from_probs(skew) if s == "coactivation" else None
        try:
            m = map_model(model, chip, s, digital=digital, seed=seed, coactivation=coact)
        except MappingError as err:
            row.update(status="does not fit", error=str(err))
            continue
        sharing = m.consecutive_layer_sharing()
        row.update(tiles_used=m.tiles_used, max_tiers_per_tile=int(m.tiers_used.max()),
                   layer_sharing=float(sharing.mean()) if sharing.size else 0.0)
        if model.is_moe:
            row["conflicts_uniform"] = float(expected_conflicts(m, None, n_tokens, seed).mean())
            row["conflicts_skewed"] = float(expected_conflicts(m, skew, n_tokens, seed).mean())
        else:
            row["conflicts_uniform"] = row["conflicts_skewed"] = float("nan")
    return rows


def format_strategy_table(rows: Sequence[dict]) -> str:
    """Aligned plain-text table of :func:`strategy_table` rows (conflicts to 1 decimal)."""
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append([r["strategy"], "-", "-", "-", "-", "-", r["status"]])
            continue
        body.append([r["strategy"], f"{r['tiles_used']:,}", f"{r['max_tiers_per_tile']:,}",
                     f"{r['layer_sharing']:.2f}", f"{r['conflicts_uniform']:.1f}",
                     f"{r['conflicts_skewed']:.1f}", ""])
    return _table(["strategy", "tiles", "max tiers", "layer sharing", "conflicts uniform",
                   "conflicts skewed", "note"], body,
                  [False, True, True, True, True, True, False])


def strategy_comparison(model: ModelSpec, chip: ChipConfig, strategies: Sequence[str] = STRATEGIES,
                        expert_probs=None, seed: int = 0, zipf_s: float = ZIPF_S,
                        n_tokens: int = 2000, digital=("embedding",)) -> Figure:
    """Mapping strategies side by side, as grouped bars over :func:`strategy_table`.

    Three panels: how much of the chip a strategy uses (tiles holding blocks, and tiers on the
    fullest tile, both in % of the chip, absolute numbers on the bars); the tile sharing between
    consecutive layers; and the expected tier conflicts per token per MoE layer under uniform and
    skewed routing. A strategy that cannot map the model is marked 'does not fit' (or 'not
    applicable' for an expert strategy on a dense model).
    """
    rows = strategy_table(model, chip, strategies, expert_probs, seed, zipf_s, n_tokens, digital)
    names = [r["strategy"] for r in rows]
    ok = [r for r in rows if r["status"] == "ok"]
    x = np.arange(len(rows))
    w = 0.38

    def values(key: str) -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)

    def grouped(ax, series, fmt) -> None:
        """series: (offset, values, colour, label, values printed on the bars)."""
        for off, vals, color, label, shown in series:
            ax.bar(x + off, np.nan_to_num(vals), width=w if len(series) > 1 else 0.6,
                   color=color, label=label)
            for xi, v, t in zip(x, vals, shown, strict=True):
                if np.isfinite(v):
                    ax.text(xi + off, v, fmt(t), ha="center", va="bottom",
                            fontsize=FONT_SIZE - 3)
        for xi, r in zip(x, rows, strict=True):
            if r["status"] != "ok":
                ax.text(xi, 0.02, r["status"], ha="center", va="bottom", rotation=90,
                        fontsize=FONT_SIZE - 2, transform=ax.get_xaxis_transform())

    fig = _figure(12.0, 4.3)
    ax_u, ax_s, ax_c = fig.subplots(1, 3)
    tiles, tiers = values("tiles_used"), values("max_tiers_per_tile")
    grouped(ax_u, [(-w / 2, 100 * tiles / chip.n_tiles, C_3D, f"tiles used (of {chip.n_tiles:,})",
                    tiles),
                   (w / 2, 100 * tiers / chip.n_tiers, C_2D,
                    f"tiers on the fullest tile (of {chip.n_tiers:,})", tiers)],
            lambda v: f"{v:,.0f}")
    ax_u.set(ylim=(0, 135), ylabel="share of the chip (%)", title="How much of the chip is used")
    ax_u.legend(fontsize=FONT_SIZE - 3, loc="upper left")
    share = values("layer_sharing")
    grouped(ax_s, [(0.0, share, C_DENSE, None, share)], lambda v: f"{v:.2f}")
    ax_s.set(ylim=(0, 1.2), ylabel="tiles of layer l+1 also holding layer l (fraction)",
             title="Consecutive layers sharing tiles")
    cu, cs = values("conflicts_uniform"), values("conflicts_skewed")
    skew_label = f"Zipf s = {zipf_s:g}" if expert_probs is None else "given expert_probs"
    grouped(ax_c, [(-w / 2, cu, C_ACTIVE, "uniform routing", cu),
                   (w / 2, cs, C_MOE, skew_label, cs)], lambda v: f"{v:.1f}")
    finite = np.r_[cu, cs][np.isfinite(np.r_[cu, cs])]
    ax_c.set(ylim=(0, 1.3 * (finite.max() if finite.size and finite.max() > 0 else 1.0)),
             ylabel="waiting tier MVMs per token per MoE layer",
             title="Tier conflicts within one token")
    ax_c.legend(fontsize=FONT_SIZE - 3, loc="upper left")
    if not model.is_moe:
        ax_c.text(0.5, 0.5, "dense model: no experts, no routing", transform=ax_c.transAxes,
                  ha="center")
    for ax in (ax_u, ax_s, ax_c):
        ax.set_xticks(x, names, rotation=25, ha="right", rotation_mode="anchor")
        ax.set_xlabel("mapping strategy")
        ax.grid(True, axis="y", alpha=0.3)
    parts = []
    if ok and model.is_moe:
        bu = min(ok, key=lambda r: r["conflicts_uniform"])
        bs = min(ok, key=lambda r: r["conflicts_skewed"])
        parts.append(f"fewest conflicts: {bu['strategy']} ({bu['conflicts_uniform']:.1f} uniform)"
                     f", {bs['strategy']} ({bs['conflicts_skewed']:.1f} skewed)")
    if ok:
        ls = min(ok, key=lambda r: r["layer_sharing"])
        parts.append(f"least layer sharing: {ls['strategy']} ({ls['layer_sharing']:.2f})")
    failed = [r["strategy"] for r in rows if r["status"] == "does not fit"]
    if failed:
        parts.append(f"{', '.join(failed)}: does not fit")
    title = (f"Mapping strategies: {model.name} on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers "
             f"of {chip.tier_rows}x{chip.tier_cols}")
    return _finish(fig, title, "; ".join(parts))
