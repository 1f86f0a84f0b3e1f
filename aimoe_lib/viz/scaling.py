"""Figures and small tables of chapters 5 (dense vs MoE scaling) and 9 (design space).

Like :mod:`aimoe_lib.viz`, every figure function builds and returns a
``matplotlib.figure.Figure`` (not registered with pyplot) with a title, labelled axes with units
and a one-line takeaway computed from the numbers it plots (``fig.get_supxlabel()``).

Chapter 5 reads the shipped rows of :func:`~aimoe_lib.experiments.load` (``'scaling'``,
``'conditions'``, ``'zoo'``): :func:`scaling_throughput`, :func:`scaling_latency`,
:func:`scaling_energy`, ``scaling_efficiency``, :func:`scaling_area_conflicts`,
``provisioning_figure`` (with ``provisioning_rows``), :func:`zoo_comparison`,
:func:`conditions_figure` (with :func:`condition_ratios`), :func:`family_comparison` (and
:func:`live_comparison` over :func:`~aimoe_lib.experiments.family_rows`, which simulates one
configuration live) and the helpers :func:`series`, :func:`row`, :func:`scaling_table`. Rows
returned by :func:`row` and :func:`series` carry the efficiency columns of ``efficiency``
(tokens/s per mm², tokens per joule of total and of dynamic energy).
Chapter 9 reads the rows of :func:`~aimoe_lib.design_space.load`: :func:`pareto_figure` and
:func:`pareto_table`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

from .. import checks, experiments, hardware
from ..design_space import with_derived
from ..experiments import FAMILIES
from .static import StaticSlider, static_slider
from .style import figure, finish, table

__all__ = [
    "FAMILIES",
    "FAMILY_LABELS",
    "FAMILY_COLORS",
    "parse_label",
    "family_slider",
    "efficiency",
    "row",
    "series",
    "scaling_table",
    "scaling_throughput",
    "scaling_latency",
    "scaling_energy",
    "scaling_efficiency",
    "scaling_area_conflicts",
    "provisioning_rows",
    "provisioning_figure",
    "zoo_comparison",
    "condition_ratios",
    "conditions_figure",
    "live_comparison",
    "family_comparison",
    "pareto_figure",
    "pareto_table",
]

FAMILY_LABELS = {"moe": "MoE (E experts, top-1)", "dense-deeper": "dense, deeper",
                 "dense-wider": "dense, wider"}
"""Legend text of each family."""
FAMILY_COLORS = {"moe": "tab:purple", "dense-deeper": "tab:red", "dense-wider": "tab:cyan"}
"""Colour of each family in every chapter 5 figure."""
_CHIP_STYLE = {"3d": dict(ls="-", marker="o"), "2d": dict(ls="--", marker="s", alpha=0.7)}
_CHIP_LABEL = {"3d": "3D chip (702 tiles, tiers as needed)", "2d": "2D chip of equal capacity"}


# ============================================================================ rows
def parse_label(label: str) -> tuple[str, int, str, int]:
    """(family, E, '3d' or '2d', batch) of a scaling row label 'family|E|3d|batch'."""
    parts = label.split("|")
    if len(parts) != 4 or parts[0] not in FAMILIES or parts[2] not in ("3d", "2d"):
        raise ValueError(f"parse_label({label!r}): not a scaling label 'family|E|3d-or-2d|batch' "
                         f"with family in {FAMILIES}")
    return parts[0], int(parts[1]), parts[2], int(parts[3])


def efficiency(rows: Sequence[dict]) -> list[dict]:
    """Copies of ``rows`` with the derived columns of :func:`~aimoe_lib.design_space.with_derived`
    and the figures of merit of :class:`~aimoe_lib.simulator.result.SimResult`:
    ``tokens_per_s_per_mm2`` (throughput over chip area), ``tokens_per_joule`` (generated tokens
    per joule of total energy) and ``tokens_per_joule_dynamic`` (per joule of dynamic energy, the
    operations alone). Rows that did not map are copied unchanged."""
    out = []
    for r in with_derived(list(rows)):
        if not r.get("error"):
            r["tokens_per_s_per_mm2"] = r["tokens_per_s"] / r["area_mm2"]
            r["tokens_per_joule"] = 1e12 / r["energy_per_token_pj"]
            r["tokens_per_joule_dynamic"] = 1e12 / r["energy_dynamic_per_token_pj"]
        out.append(r)
    return out


def row(rows: Sequence[dict], label: str) -> dict:
    """The row with this label, with the derived and efficiency columns of ``efficiency``."""
    for r in rows:
        if r["label"] == label:
            return efficiency([r])[0]
    labels = [r["label"] for r in rows]
    example = f"; labels look like {labels[0]!r}" if labels else "; the rows are empty"
    raise checks.UnknownKeyError(f"row(label={label!r}): no row has this label"
                                 f"{checks._suggest(label, labels)}{example}")


def series(rows: Sequence[dict], family: str, chip: str = "3d", batch: int = 8) -> list[dict]:
    """The scaling rows of one family on one chip kind at one batch size, by growing E (with the
    derived and efficiency columns of ``efficiency``). Dense families start from the base
    model (E = 1), which all three share."""
    if family not in FAMILIES:
        raise ValueError(f"series(family={family!r}): use one of {FAMILIES}")
    out = {}
    for r in rows:
        fam, e, c, b = parse_label(r["label"])
        if c == chip and b == batch and (fam == family or (fam == "moe" and e == 1)):
            out[e] = r
    if not out:
        raise ValueError(f"series: no rows for {family} on {chip} at batch {batch}")
    return efficiency([out[e] for e in sorted(out)])


def _xy(rows, family, chip, batch, column, scale=1.0):
    s = series(rows, family, chip, batch)
    return (np.array([r["total_params"] for r in s]) / 1e9,
            np.array([r[column] for r in s], float) * scale)


def _plot_families(ax, rows, chip, batch, column, scale=1.0, label_chip=False, **kw):
    for fam in FAMILIES:
        x, y = _xy(rows, fam, chip, batch, column, scale)
        lab = f"{FAMILY_LABELS[fam]}, {chip.upper()}" if label_chip else FAMILY_LABELS[fam]
        ax.plot(x, y, color=FAMILY_COLORS[fam], label=lab, ms=5, **{**_CHIP_STYLE[chip], **kw})


def _legend(ax, chips=("3d", "2d"), loc="best"):
    handles = [Line2D([], [], color=FAMILY_COLORS[f], lw=2, label=FAMILY_LABELS[f])
               for f in FAMILIES]
    handles += [Line2D([], [], color="0.3", ms=5, label=_CHIP_LABEL[c], **_CHIP_STYLE[c])
                for c in chips]
    ax.legend(handles=handles, fontsize=8, loc=loc)


def _ticks(ax, values, axis: str = "x") -> None:
    """Fixed, plainly labelled ticks on a log axis (no minor labels)."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(list(values)))
    a.set_major_formatter(FixedFormatter([f"{v:g}" for v in values]))
    a.set_minor_formatter(NullFormatter())


def _tidy_log_y(ax) -> None:
    """No minor tick labels on a log y axis spanning two decades or more."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log" and hi / lo >= 100:
        ax.yaxis.set_minor_formatter(NullFormatter())


PARAM_TICKS = (0.2, 0.5, 1, 2, 5)
"""Ticks of the total-parameter axes (billions)."""


def _params_axis(ax, ylabel, title, ylog=True):
    ax.set(xscale="log", xlabel="total parameters (billions)", ylabel=ylabel, title=title)
    _ticks(ax, PARAM_TICKS)
    if ylog:
        ax.set_yscale("log")
        _tidy_log_y(ax)
    ax.grid(True, which="major", alpha=0.3)


def scaling_table(rows: Sequence[dict], batch: int = 256, chip: str = "3d") -> str:
    """A text table of the scaling rows at one batch size on one chip kind."""
    body = []
    for fam in FAMILIES:
        for r in series(rows, fam, chip, batch):
            if fam != "moe" and r["n_experts"] == 0 and r["model"] == experiments.BASE.name:
                continue  # the shared base model is listed once, under moe
            body.append([r["model"], f"{r['total_params'] / 1e9:.3f}", f"{r['n_tiers']}",
                         f"{r['tokens_per_s'] / 1e6:.3f}", f"{r['tpot_mean_ns'] / 1e3:.1f}",
                         f"{r['energy_dynamic_per_token_pj'] / 1e6:.1f}",
                         f"{r['energy_per_token_pj'] / 1e6:.1f}", f"{r['area_mm2']:,.0f}",
                         f"{r['conflicts_per_token']:,.0f}", r["bottleneck"]])
    return table(["model", "total (B)", "tiers", "M tok/s", "TPOT µs", "dyn µJ/tok",
                   "all µJ/tok", "area mm²", "confl/tok", "bound by"], body,
                  [False] + [True] * 8 + [False])


# ============================================================================ chapter 5 figures
def scaling_throughput(rows: Sequence[dict], batches: Sequence[int] = (8, 256)) -> Figure:
    """Throughput (generated tokens/s) against total parameters for the three families on the 3D
    chip (solid) and the 2D chip of equal capacity (dashed), one panel per batch size."""
    fig = figure(5.2 * len(batches), 4.3)
    axes = np.atleast_1d(fig.subplots(1, len(batches)))
    for ax, b in zip(axes, batches, strict=True):
        for chip in ("3d", "2d"):
            _plot_families(ax, rows, chip, b, "tokens_per_s")
        _params_axis(ax, "throughput (tokens/s)", f"batch {b}")
    _legend(axes[0])
    lo, hi = batches[0], batches[-1]
    m_lo = series(rows, "moe", "3d", lo)
    d_lo = series(rows, "dense-deeper", "3d", lo)
    m_hi, d_hi = series(rows, "moe", "3d", hi)[-1], series(rows, "dense-deeper", "3d", hi)[-1]
    spread = max(r["tokens_per_s"] for r in m_lo) / min(r["tokens_per_s"] for r in m_lo)
    takeaway = (f"3D, batch {lo}: MoE stays within {spread:.2f}x of "
                f"{m_lo[-1]['tokens_per_s'] / 1e6:.2f} M tokens/s from E = 1 to "
                f"{m_lo[-1]['n_experts']}, dense deeper falls to "
                f"{d_lo[-1]['tokens_per_s'] / 1e6:.4f} M; batch {hi}: "
                f"{m_hi['tokens_per_s'] / 1e6:.2f} M vs {d_hi['tokens_per_s'] / 1e6:.3f} M "
                f"({m_hi['tokens_per_s'] / d_hi['tokens_per_s']:.0f}x)")
    return finish(fig, "Throughput as models grow: MoE by experts, dense by depth or width",
                   takeaway)


def scaling_latency(rows: Sequence[dict], batches: Sequence[int] = (8, 256)) -> Figure:
    """Why the batch matters: time per output token (µs) and the mean busy fraction of the tiles
    holding weights, against total parameters, on the 3D chip (batch ``batches[0]`` solid,
    ``batches[-1]`` dotted)."""
    lo, hi = batches[0], batches[-1]
    fig = figure(10.5, 4.2)
    ax_t, ax_b = fig.subplots(1, 2)
    for b, ls in ((lo, "-"), (hi, ":")):
        _plot_families(ax_t, rows, "3d", b, "tpot_mean_ns", 1e-3, ls=ls)
        _plot_families(ax_b, rows, "3d", b, "busy_tiles", 100.0, ls=ls)
    _params_axis(ax_t, "time per output token (µs)", "Each token's chain of steps")
    _params_axis(ax_b, "tiles busy (% of run time, mean)", "How loaded the tiles are", ylog=False)
    ax_b.set_ylim(0, 100)
    handles = [Line2D([], [], color=FAMILY_COLORS[f], lw=2, label=FAMILY_LABELS[f])
               for f in FAMILIES]
    handles += [Line2D([], [], color="0.3", ls=ls, label=f"batch {b}")
                for b, ls in ((lo, "-"), (hi, ":"))]
    ax_t.legend(handles=handles, fontsize=8, loc="upper left")
    busy_lo = [r["busy_tiles"] for f in FAMILIES for r in series(rows, f, "3d", lo)]
    busy_hi = [r["busy_tiles"] for f in FAMILIES for r in series(rows, f, "3d", hi)]
    takeaway = (f"Batch {lo}: tiles busy {min(busy_lo):.1%}-{max(busy_lo):.1%} of the time, "
                f"so the chain of each token sets the pace; batch {hi}: "
                f"{min(busy_hi):.0%}-{max(busy_hi):.0%}, and the tiles start to queue")
    return finish(fig, "Latency-bound at small batch, tile-bound at large batch (3D chip)",
                   takeaway)


def scaling_energy(rows: Sequence[dict], batch: int = 256) -> Figure:
    """Energy per generated token split into its dynamic part (operations: MVMs, digital ops,
    attention, communication) and its passive part (static power x run time), against total
    parameters, on the 3D (solid) and 2D (dashed) chips at ``batch``; third panel: the passive
    share of the energy at batch 8 and ``batch`` (3D)."""
    fig = figure(14.0, 4.3)
    ax_d, ax_p, ax_s = fig.subplots(1, 3)
    for chip in ("3d", "2d"):
        _plot_families(ax_d, rows, chip, batch, "energy_dynamic_per_token_pj", 1e-6)
        _plot_families(ax_p, rows, chip, batch, "energy_per_token_pj", 1e-6)
    for fam in FAMILIES:
        for b, ls in ((8, ":"), (batch, "-")):
            xs, tot = _xy(rows, fam, "3d", b, "energy_per_token_pj")
            _, dy = _xy(rows, fam, "3d", b, "energy_dynamic_per_token_pj")
            ax_s.plot(xs, 100 * (tot - dy) / tot, color=FAMILY_COLORS[fam], ls=ls, marker="o", ms=4)
    _params_axis(ax_d, "dynamic energy per token (µJ)", f"Dynamic (operations), batch {batch}")
    _params_axis(ax_p, "total energy per token (µJ)", f"Dynamic + passive, batch {batch}")
    _params_axis(ax_s, "passive share of energy (%)", "Passive share, 3D chip", ylog=False)
    ax_s.set_ylim(0, 100)
    _legend(ax_d, loc="upper left")
    ax_s.legend(handles=[Line2D([], [], color="0.3", ls=":", label="batch 8"),
                         Line2D([], [], color="0.3", ls="-", label=f"batch {batch}")],
                fontsize=8, loc="upper left")
    m, d = series(rows, "moe", "3d", batch), series(rows, "dense-deeper", "3d", batch)
    dyn_m = [r["energy_dynamic_per_token_pj"] / 1e6 for r in m]
    share = lambda r: 1 - r["energy_dynamic_per_token_pj"] / r["energy_per_token_pj"]  # noqa: E731
    takeaway = (f"Batch {batch}: MoE {min(dyn_m):.1f}-{max(dyn_m):.1f} µJ/token dynamic up to "
                f"E = {m[-1]['n_experts']}, dense deeper "
                f"{d[-1]['energy_dynamic_per_token_pj'] / 1e6:,.0f} µJ dynamic and "
                f"{d[-1]['energy_per_token_pj'] / 1e6:,.0f} µJ total; passive share "
                f"{share(m[-1]):.1%} (MoE), {share(d[-1]):.0%} (dense deeper)")
    return finish(fig, "Energy per generated token: dynamic and passive", takeaway)


def scaling_efficiency(rows: Sequence[dict], batch: int = 256) -> Figure:
    """The figures of merit of stacking tiers, against total parameters, on the 3D (solid) and 2D
    (dashed) chips at ``batch``: throughput per chip area (tokens/s per mm²) and generated tokens
    per joule of total energy (``efficiency``)."""
    fig = figure(10.5, 4.3)
    ax_a, ax_j = fig.subplots(1, 2)
    for chip in ("3d", "2d"):
        _plot_families(ax_a, rows, chip, batch, "tokens_per_s_per_mm2")
        _plot_families(ax_j, rows, chip, batch, "tokens_per_joule")
    _params_axis(ax_a, "throughput per area (tokens/s per mm²)",
                 f"Throughput per mm², batch {batch}")
    _params_axis(ax_j, "tokens per joule (total energy)", f"Tokens per joule, batch {batch}")
    _legend(ax_a, loc="lower left")
    m3, m2 = series(rows, "moe", "3d", batch)[-1], series(rows, "moe", "2d", batch)[-1]
    d3 = series(rows, "dense-deeper", "3d", batch)[-1]
    takeaway = (f"MoE-{m3['n_experts']}, batch {batch}: {m3['tokens_per_s_per_mm2']:,.0f} tokens/s "
                f"per mm² on 3D vs {m2['tokens_per_s_per_mm2']:,.0f} on 2D "
                f"({m3['tokens_per_s_per_mm2'] / m2['tokens_per_s_per_mm2']:.1f}x); "
                f"{m3['tokens_per_joule']:,.0f} tokens/J on 3D vs {m2['tokens_per_joule']:,.0f} on "
                f"2D, and {m3['tokens_per_joule'] / d3['tokens_per_joule']:.0f}x dense deeper's "
                f"{d3['tokens_per_joule']:,.0f}")
    return finish(fig, "Throughput per area and tokens per joule as models grow", takeaway)


def scaling_area_conflicts(rows: Sequence[dict], batch: int = 256) -> Figure:
    """Chip area (mm²: tiles + digital units) and tile conflicts per generated token at
    ``batch``, against total parameters, on the 3D (solid) and 2D (dashed) chips."""
    fig = figure(10.5, 4.3)
    ax_a, ax_c = fig.subplots(1, 2)
    for chip in ("3d", "2d"):
        _plot_families(ax_a, rows, chip, batch, "area_mm2")
        _plot_families(ax_c, rows, chip, batch, "conflicts_per_token")
    _params_axis(ax_a, "chip area (mm²)", "Chip area (tiles + digital units)")
    _params_axis(ax_c, "tile conflicts per generated token", f"Tile conflicts, batch {batch}")
    _legend(ax_a, loc="upper left")
    m3, m2 = series(rows, "moe", "3d", batch), series(rows, "moe", "2d", batch)
    d3 = series(rows, "dense-deeper", "3d", batch)
    takeaway = (f"3D chip of the MoE: {m3[0]['area_mm2']:,.0f} -> {m3[-1]['area_mm2']:,.0f} mm² "
                f"from E = 1 to {m3[-1]['n_experts']} (2D: {m2[-1]['area_mm2']:,.0f} mm²); "
                f"dense deeper: {d3[-1]['area_mm2']:,.0f} mm², mostly the digital units of its "
                f"{d3[-1]['n_layers']} layers")
    return finish(fig, "Area and tile conflicts as models grow", takeaway)


PROVISIONING = {"per_layer": "24 DPUs + 8 MHA units per layer",
                "to_load": "units sized to the load"}
"""The two ways of provisioning digital units compared by ``provisioning_rows``."""


PROVISIONED_FAMILIES = ("moe", "dense-deeper")
"""The families the conditions sweep provisions both ways."""


def provisioning_rows(conditions: Sequence[dict],
                      families: Sequence[str] = PROVISIONED_FAMILIES,
                      batches: Sequence[int] = (8, 256)) -> list[dict]:
    """Pairs of rows of the shipped 'conditions' sweep on the same 3D chip (702 tiles, E = 64 or
    its dense twin): units provisioned per layer (``family|tiles|1|batch``, 24 DPUs and 8
    attention units per layer) and sized to the load (``family|units|to_load|batch``). Each
    returned row has the efficiency columns and ``provisioning`` ('per_layer' or 'to_load'),
    ``family``, ``dpus_per_layer``, ``mha_per_layer`` and ``digital_area_mm2`` (units times
    their areas in the book's preset, :data:`aimoe_lib.experiments.PRESET`)."""
    by = {r["label"]: r for r in conditions}
    area = hardware.preset(experiments.PRESET).area
    out = []
    for fam in families:
        for b in batches:
            for kind, label in (("per_layer", f"{fam}|tiles|1|{b}"),
                                ("to_load", f"{fam}|units|to_load|{b}")):
                if label not in by:
                    raise KeyError(f"provisioning_rows: no conditions row {label!r}; regenerate "
                                   "with python -m aimoe_lib.experiments conditions")
                r = efficiency([by[label]])[0]
                n = r["n_layers"]
                r.update(provisioning=kind, family=fam, dpus_per_layer=r["n_dpus"] // n,
                         mha_per_layer=r["n_mha_units"] // n,
                         digital_area_mm2=r["n_dpus"] * area.dpu_area_mm2
                         + r["n_mha_units"] * area.mha_unit_area_mm2)
                out.append(r)
    return out


def provisioning_figure(conditions: Sequence[dict],
                        families: Sequence[str] = PROVISIONED_FAMILIES,
                        batches: Sequence[int] = (8, 256)) -> Figure:
    """How much of the 3D area comparison is the provisioning of digital units: chip area
    (labelled with the digital units' share), throughput per mm² and energy per token (dynamic,
    with the passive part stacked on it, hatched) of MoE-64 and its dense-deeper twin, units per
    layer against units sized to the load (``provisioning_rows``), at each batch size."""
    rs = provisioning_rows(conditions, families, batches)
    groups = [(f, b) for f in families for b in batches]
    pick = {(r["family"], r["batch"], r["provisioning"]): r for r in rs}
    x = np.arange(len(groups))
    fig = figure(14.0, 4.3)
    ax_a, ax_t, ax_e = fig.subplots(1, 3)
    shades = {"per_layer": (-0.5, 1.0), "to_load": (0.5, 0.45)}
    for kind, (off, alpha) in shades.items():
        xs = x + off * 0.38
        sel = [pick[(f, b, kind)] for f, b in groups]
        cols = [FAMILY_COLORS[f] for f, _ in groups]
        tot = np.array([r["area_mm2"] for r in sel])
        ax_a.bar(xs, tot, 0.38, color=cols, alpha=alpha, edgecolor="k")
        for xi, r in zip(xs, sel, strict=True):
            ax_a.annotate(f"{r['digital_area_mm2'] / r['area_mm2']:.0%}", (xi, r["area_mm2"]),
                          ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                          textcoords="offset points")
        ax_t.bar(xs, [r["tokens_per_s_per_mm2"] for r in sel], 0.38, color=cols, alpha=alpha,
                 edgecolor="k")
        dyn = np.array([r["energy_dynamic_per_token_pj"] for r in sel]) / 1e6
        etot = np.array([r["energy_per_token_pj"] for r in sel]) / 1e6
        ax_e.bar(xs, dyn, 0.38, color=cols, alpha=alpha, edgecolor="k")
        ax_e.bar(xs, etot - dyn, 0.38, bottom=dyn, color="none", edgecolor="k", hatch="//")
    names = [f"{'MoE-64' if f == 'moe' else FAMILY_LABELS[f]}\nbatch {b}" for f, b in groups]
    panels = ((ax_a, "chip area (mm²)", "Chip area (label: digital units' share)"),
              (ax_t, "tokens/s per mm²", "Throughput per mm²"),
              (ax_e, "energy per token (µJ)", "Energy: dynamic + passive (hatched)"))
    for ax, ylabel, title in panels:
        ax.set_xticks(x, names, fontsize=8)
        ax.set(yscale="log", ylabel=ylabel, xlabel="model and batch", title=title)
        _tidy_log_y(ax)
        ax.grid(True, axis="y", which="major", alpha=0.3)
    ax_a.set_ylim(top=3 * ax_a.get_ylim()[1])
    ax_a.legend(handles=[Line2D([], [], color="0.3", lw=6, alpha=a, label=PROVISIONING[k])
                         for k, (_, a) in shades.items()], fontsize=8, loc="upper left")
    b = batches[-1]
    m0, m1 = pick[("moe", b, "per_layer")], pick[("moe", b, "to_load")]
    d0, d1 = pick[("dense-deeper", b, "per_layer")], pick[("dense-deeper", b, "to_load")]
    takeaway = (f"Batch {b}, units sized to the load: dense deeper {d0['area_mm2']:,.0f} -> "
                f"{d1['area_mm2']:,.0f} mm², MoE {m0['area_mm2']:,.0f} -> {m1['area_mm2']:,.0f} "
                f"mm²; the MoE's lead in tokens/s per mm² falls from "
                f"{m0['tokens_per_s_per_mm2'] / d0['tokens_per_s_per_mm2']:.0f}x to "
                f"{m1['tokens_per_s_per_mm2'] / d1['tokens_per_s_per_mm2']:.0f}x")
    return finish(fig, "Digital units per layer or sized to the load (3D chip, 6.56B parameters)",
                  takeaway)


def _zoo_row(rows, name, chip):
    return row(rows, f"{name}|{chip}")


def zoo_comparison(rows: Sequence[dict], pairs=None) -> Figure:
    """Published MoE / dense pairs of about the same total parameters
    (:func:`~aimoe_lib.experiments.zoo_pairs`) on 3D (128 tiers) and 2D chips: throughput,
    dynamic energy per token and chip area, grouped bars on log axes."""
    pairs = list(pairs or experiments.zoo_pairs())
    names = [n for p in pairs for n in p]
    metrics = [("tokens_per_s", 1e-6, "throughput (M tokens/s)", "Throughput"),
               ("energy_dynamic_per_token_pj", 1e-6, "dynamic energy per token (µJ)",
                "Dynamic energy"),
               ("area_mm2", 1.0, "chip area (mm²)", "Chip area")]
    fig = figure(13.5, 4.3)
    axes = fig.subplots(1, 3)
    x = np.arange(len(names))
    for ax, (col, scale, ylabel, title) in zip(axes, metrics, strict=True):
        for k, (chip, colr) in enumerate((("3d", "tab:blue"), ("2d", "tab:orange"))):
            vals = [_zoo_row(rows, n, chip)[col] * scale for n in names]
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, color=colr, label=chip.upper())
        ax.set_xticks(x, [n.replace("-", "-\n", 1) for n in names], fontsize=8)
        ax.set(yscale="log", ylabel=ylabel, xlabel="model (MoE, then dense of similar size)",
               title=title)
        ax.grid(True, axis="y", which="major", alpha=0.3)
        for i in range(1, len(pairs)):
            ax.axvline(2 * i - 0.5, color="0.5", lw=0.8)
    axes[0].legend(fontsize=8)
    moe, dense = pairs[0]
    a, b = _zoo_row(rows, moe, "3d"), _zoo_row(rows, dense, "3d")
    takeaway = (f"3D, batch {a['batch']}: {moe} vs {dense}: "
                f"{a['tokens_per_s'] / b['tokens_per_s']:.1f}x the throughput, "
                f"{b['energy_dynamic_per_token_pj'] / a['energy_dynamic_per_token_pj']:.1f}x less "
                f"dynamic energy per token, {b['area_mm2'] / a['area_mm2']:.1f}x less area")
    return finish(fig, "Published models: MoE vs dense of similar total parameters", takeaway)


def condition_ratios(rows: Sequence[dict]) -> dict[str, dict]:
    """The MoE-64 / dense-deeper throughput ratio under each condition of the shipped
    'conditions' sweep: {'batch': {b: ratio}, 'tiles': {(mult, b): ratio}, 'zipf': {(s, b):
    ratio}, 'strategy': {(name, b): ratio}}. Dense rows exist for batch and tiles only; zipf and
    strategy ratios divide by the dense model's in_order row at the same batch on 702 tiles."""
    by = {r["label"]: r for r in rows}
    tps = lambda label: by[label]["tokens_per_s"]  # noqa: E731
    out: dict[str, dict] = {"batch": {}, "tiles": {}, "zipf": {}, "strategy": {}}
    for label in by:
        parts = label.split("|")
        if parts[0] != "moe":
            continue
        kind = parts[1]
        if kind == "batch":
            out["batch"][int(parts[2])] = tps(label) / tps(f"dense-deeper|batch|{parts[2]}")
        elif kind == "tiles":
            out["tiles"][(float(parts[2]), int(parts[3]))] = tps(label) / tps(
                f"dense-deeper|tiles|{parts[2]}|{parts[3]}")
        elif kind == "zipf":
            out["zipf"][(float(parts[2]), int(parts[3]))] = tps(label) / tps(
                f"dense-deeper|tiles|1|{parts[3]}")
        elif kind == "strategy":
            out["strategy"][(parts[2], int(parts[3]))] = tps(label) / tps(
                f"dense-deeper|tiles|1|{parts[3]}")
    return out


def conditions_figure(rows: Sequence[dict]) -> Figure:
    """Small multiples of where the MoE advantage shrinks: MoE-64 / dense-deeper throughput ratio
    (equal total parameters, 3D chips) against batch size, tiles (and so tiers per tile), Zipf
    routing skew and mapping strategy (every strategy on one equal-capacity chip with the tiers
    ``moe_stacked`` needs); one line (or bar) per batch size."""
    r = condition_ratios(rows)
    by = {x["label"]: x for x in rows}
    fig = figure(14.0, 4.0)
    ax_b, ax_t, ax_z, ax_s = fig.subplots(1, 4, sharey=True)
    bs = sorted(r["batch"])
    ax_b.plot(bs, [r["batch"][b] for b in bs], "o-", color="k")
    ax_b.set(xscale="log", xlabel="batch (sequences)", ylabel="MoE / dense throughput (x)",
             title="Batch size")
    styles = {8: dict(color="tab:green", marker="o"), 256: dict(color="tab:blue", marker="s")}
    for b, st in styles.items():
        mults = sorted(m for m, bb in r["tiles"] if bb == b)
        tiers = [by[f"moe|tiles|{m:g}|{b}"]["n_tiers"] for m in mults]
        ax_t.plot(tiers, [r["tiles"][(m, b)] for m in mults], label=f"batch {b}", **st)
        ss = sorted(s for s, bb in r["zipf"] if bb == b)
        ax_z.plot(ss, [r["zipf"][(s, b)] for s in ss], label=f"batch {b}", **st)
    ax_t.set(xscale="log", xlabel="tiers per tile of the MoE chip (more tiles ->)",
             ylabel="MoE / dense throughput (x)", title="Tiles x tiers (same capacity)")
    _ticks(ax_t, sorted({by[f"moe|tiles|{m:g}|256"]["n_tiers"] for m, _ in r["tiles"]}))
    ax_t.invert_xaxis()
    ax_z.set(xlabel="Zipf exponent s of expert popularity", ylabel="MoE / dense throughput (x)",
             title="Routing skew")
    names = ["in_order", "balanced", "moe_stacked"]
    xs = np.arange(len(names))
    for k, b in enumerate(styles):
        ax_s.bar(xs + (k - 0.5) * 0.38, [r["strategy"][(n, b)] for n in names], 0.38,
                 color=styles[b]["color"], label=f"batch {b}")
    ax_s.set_xticks(xs, names)
    ax_s.set(xlabel="mapping of the MoE", ylabel="MoE / dense throughput (x)",
             title=f"Mapping (one chip, {by['moe|strategy|in_order|256']['n_tiers']} tiers)")
    top = 1.25 * max(v for d in r.values() for v in d.values())
    for ax in (ax_b, ax_t, ax_z, ax_s):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, top)
    ax_t.legend(fontsize=8, loc="lower left")
    ax_s.legend(fontsize=8, loc="upper right", ncols=2)
    zmax = max(s for s, _ in r["zipf"])
    b_min = min(bs, key=lambda b: r["batch"][b])
    after = (f", back to {r['batch'][bs[-1]]:.0f}x at batch {bs[-1]}" if b_min != bs[-1] else "")
    takeaway = (f"The MoE-64 lead shrinks from {r['batch'][bs[0]]:.0f}x (batch {bs[0]}) to "
                f"{r['batch'][b_min]:.0f}x (batch {b_min}){after}; at batch 256 Zipf s = "
                f"{zmax:g} cuts it to {r['zipf'][(zmax, 256)]:.0f}x, moe_stacked on the same chip "
                f"lifts it to {r['strategy'][('moe_stacked', 256)]:.0f}x")
    return finish(fig, "Where the MoE advantage shrinks (MoE-64 vs dense deeper, 3D chips)",
                   takeaway)


# ============================================================================ live comparison
def live_comparison(**kw) -> Figure:
    """:func:`family_comparison` of :func:`~aimoe_lib.experiments.family_rows` (simulated now;
    keyword arguments are those of :func:`~aimoe_lib.experiments.family_points`). Raises
    ValueError, with the reason, when a model does not map."""
    return family_comparison(experiments.family_rows(**kw))


def _short_name(r: dict) -> str:
    fam = parse_label(r["label"])[0]
    if fam == "moe":
        return f"MoE\nE={r['n_experts']}" if r["n_experts"] else "base\ndense"
    if fam == "dense-deeper":
        return f"deeper\n{r['n_layers']}L"
    return f"wider\nd={r['d_model']}"


def family_comparison(rows: Sequence[dict], title: str | None = None) -> Figure:
    """Bars of one scaling comparison (one bar per family): throughput, time per output token,
    energy per token (dynamic and passive stacked), chip area and tile conflicts per token."""
    rs = with_derived(list(rows))
    bad = [r for r in rs if r.get("error")]
    if bad:
        raise ValueError(f"family_comparison: {bad[0]['label']} did not map: {bad[0]['error']}")
    fams = [parse_label(r["label"])[0] for r in rs]
    names = [_short_name(r) for r in rs]
    colors = [FAMILY_COLORS[f] for f in fams]
    x = np.arange(len(rs))
    fig = figure(14.0, 3.9)
    axes = fig.subplots(1, 5)
    panels = [("tokens_per_s", 1e-6, "throughput (M tokens/s)", "Throughput"),
              ("tpot_mean_ns", 1e-3, "time per output token (µs)", "Time per token"),
              (None, 1e-6, "energy per token (µJ)", "Energy per token"),
              ("area_mm2", 1.0, "chip area (mm²)", "Area"),
              ("conflicts_per_token", 1.0, "tile conflicts per token", "Tile conflicts")]
    for ax, (col, scale, ylabel, t) in zip(axes, panels, strict=True):
        if col is None:
            dyn = np.array([r["energy_dynamic_per_token_pj"] for r in rs]) * scale
            tot = np.array([r["energy_per_token_pj"] for r in rs]) * scale
            ax.bar(x, dyn, color=colors, edgecolor="k", label="dynamic")
            ax.bar(x, tot - dyn, bottom=dyn, color=colors, alpha=0.35, edgecolor="k",
                   hatch="//", label="passive")
            ax.set_ylim(bottom=0.5 * dyn.min())
            ax.legend(fontsize=7)
        else:
            ax.bar(x, [max(r[col] * scale, 1e-9) for r in rs], color=colors, edgecolor="k")
        ax.set_xticks(x, names, fontsize=8)
        ax.set(yscale="log", ylabel=ylabel, xlabel="model", title=t)
        _tidy_log_y(ax)
        ax.grid(True, axis="y", which="major", alpha=0.3)
    r0 = rs[0]
    chip = parse_label(r0["label"])[2]
    title = title or (f"MoE with E = {max(r['n_experts'] for r in rs)} vs dense of equal total "
                      f"({r0['total_params'] / 1e9:.2f}B; {chip.upper()}, batch {r0['batch']}, "
                      f"{r0['gen_len']} generated tokens)")
    best = max(rs, key=lambda r: r["tokens_per_s"])
    worst = min(rs, key=lambda r: r["tokens_per_s"])
    takeaway = (f"{best['model']}: {best['tokens_per_s'] / worst['tokens_per_s']:.1f}x the "
                f"throughput of {worst['model']}; bound by "
                + ", ".join(f"{r['model']} {r['bottleneck']}" for r in rs))
    return finish(fig, title, takeaway)


# ============================================================================ chapter 9
_TIER_MARKERS = {1: "s", 8: "o", 64: "^"}
_OBJ_NAMES = {"energy_per_token_pj": "energy/token", "tokens_per_s": "throughput",
              "area_mm2": "area", "total_params": "total parameters",
              "energy_dynamic_per_token_pj": "dynamic energy/token"}


def _marker(n_tiers: int) -> str:
    return _TIER_MARKERS.get(n_tiers, "D")


def pareto_figure(rows: Sequence[dict], front: Sequence[dict], highlight: dict | None = None,
                  title: str | None = None, objectives=None) -> Figure:
    """The design space seen two ways: energy per token (µJ) and chip area (mm²) against
    throughput (tokens/s), log axes. Colour: model; marker: tiers per tile (square 1 = 2D, circle
    8, triangle 64, diamond other); filled: 512 x 512 tiers, open: smaller. Points of ``front``
    are ringed in black; ``highlight`` (a row) is drawn as a star. ``objectives`` (the columns
    the front was computed over) only names them in the takeaway."""
    rs = [r for r in with_derived(list(rows)) if not r.get("error")]
    if not rs:
        raise ValueError("pareto_figure: no rows without errors to plot")
    models = list(dict.fromkeys(r["model"] for r in rs))
    cmap = {m: f"C{i % 10}" for i, m in enumerate(models)}
    on_front = {id(r) for r in front}
    front_labels = {r["label"] for r in front}
    fig = figure(12.0, 4.8)
    ax_e, ax_a = fig.subplots(1, 2)
    for ax, col, scale in ((ax_e, "energy_per_token_pj", 1e-6), (ax_a, "area_mm2", 1.0)):
        for r in rs:
            filled = r["tier_rows"] >= 512
            c = cmap[r["model"]]
            ax.plot(r["tokens_per_s"], r[col] * scale, _marker(r["n_tiers"]), ms=7,
                    mfc=c if filled else "none", mec=c, alpha=0.8)
        for r in rs:
            if r["label"] in front_labels or id(r) in on_front:
                ax.plot(r["tokens_per_s"], r[col] * scale, "o", ms=13, mfc="none", mec="k",
                        mew=1.3)
        if highlight is not None and not highlight.get("error"):
            h = with_derived([highlight])[0]
            ax.plot(h["tokens_per_s"], h[col] * scale, "*", ms=18, color="gold", mec="k",
                    zorder=5)
        ax.set(xscale="log", yscale="log", xlabel="throughput (tokens/s)")
        ax.grid(True, which="major", alpha=0.3)
    ax_e.set(ylabel="energy per generated token (µJ)", title="Energy vs throughput")
    ax_a.set(ylabel="chip area (mm²)", title="Area vs throughput")
    handles = [Line2D([], [], ls="", marker="o", color=cmap[m], label=m) for m in models]
    handles += [Line2D([], [], ls="", marker=_marker(t), color="0.3", mfc="none",
                       label=f"{t} tier{'s' if t > 1 else ''}/tile")
                for t in sorted({r["n_tiers"] for r in rs})]
    handles += [Line2D([], [], ls="", marker="o", color="0.3", label="filled: 512x512 tiers"),
                Line2D([], [], ls="", marker="o", color="0.3", mfc="none",
                       label="open: smaller tiers")]
    handles += [Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="k", label="Pareto front")]
    if highlight is not None and not highlight.get("error"):
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="gold", mec="k",
                              label="your configuration"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fr_models = sorted({r["model"] for r in front})
    over = f" in {', '.join(_OBJ_NAMES.get(k, k) for k in objectives)}" if objectives else ""
    takeaway = (f"{len(front)} of {len(rs)} configurations are Pareto-optimal{over}; they use "
                f"{len(fr_models)} model(s): {', '.join(fr_models)}")
    return finish(fig, title or "Design space: energy, throughput and area", takeaway)


def pareto_table(front: Sequence[dict]) -> str:
    """The Pareto-optimal rows as text, by falling throughput."""
    body = []
    for r in sorted(with_derived(list(front)), key=lambda r: -r["tokens_per_s"]):
        body.append([r["model"], f"{r['total_params'] / 1e9:.2f}", f"{r['n_tiles']:,}",
                     f"{r['n_tiers']}", f"{r['tier_rows']}", r["strategy"], f"{r['batch']}",
                     f"{r['tokens_per_s'] / 1e6:.3f}", f"{r['energy_per_token_pj'] / 1e6:,.1f}",
                     f"{r['area_mm2']:,.0f}", r["bottleneck"]])
    return table(["model", "total (B)", "tiles", "tiers", "tier", "strategy", "batch",
                   "M tok/s", "µJ/token", "area mm²", "bound by"], body,
                  [False, True, True, True, True, False, True, True, True, True, False])



def family_slider(rows: Sequence[dict], experts: Sequence[int] = experiments.EXPERTS[1:],
                  chips: Sequence[str] = ("3d", "2d"), batches: Sequence[int] = experiments.BATCHES,
                  default: tuple = (64, "3d", 8)) -> StaticSlider:
    """:func:`family_comparison` of the shipped scaling rows (``rows``, labels
    ``family|E|chip|batch``) precomputed for the static book
    (:func:`~aimoe_lib.viz.static.static_slider`): sliders for E (the MoE's experts and the dense
    models of its total; E = 1 is the shared base model, so the grid starts at 2), the chip
    (3D or its 2D flattening) and the batch; starts at ``default`` (E, chip, batch). Draws from
    the rows only, no simulation."""
    def draw(n_experts: int, chip: str, batch: int) -> Figure:
        return family_comparison([row(rows, f"{fam}|{n_experts}|{chip}|{batch}")
                                  for fam in FAMILIES])

    return static_slider(draw, {"n_experts": tuple(experts), "chip": tuple(chips),
                                "batch": tuple(batches)},
                         default=dict(zip(("n_experts", "chip", "batch"), default, strict=True)),
                         labels={"n_experts": "experts E (dense: the same total)",
                                 "chip": "chip", "batch": "sequences (batch)"})
