"""Figures of simulated inference (chapter 4): matplotlib only; they draw what the simulator and
its trace analyses computed (:mod:`aimoe_lib.simulator.trace`), in the house style of
:mod:`aimoe_lib.viz.style`.

Every figure function returns a ``matplotlib.figure.Figure`` (not registered with pyplot) with a
title (``fig.get_suptitle()``), axis labels with units and a one-line takeaway computed from the
numbers it plots (``fig.get_supxlabel()``).

Figures: :func:`gantt` (what ran where and when, from the event log), :func:`token_timeline` (when
each generated token came out), :func:`energy_breakdown` (energy by kind),
:func:`latency_breakdown` (busy fraction of every resource class and the critical path of one
token), :func:`conflicts_picture` (what a tile conflict is, and its causes counted),
:func:`sweep_batch` (throughput and time per token against the batch), :func:`overview` (Gantt,
energy and busy fractions in one figure, for the widget panel) and :func:`context_costs` (time
and energy of a decoded token against the prompt length). The runs behind :func:`conflicts_picture`
and :func:`sweep_batch` come from :mod:`aimoe_lib.experiments`; :func:`context_costs` draws the rows
of ``aimoe_lib.context_study.context_sweep``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .. import experiments
from ..context_study import ContextRow
from ..hardware import ChipConfig
from ..mapping import Mapping
from ..models import ModelSpec
from ..simulator import RES_NAMES, SimResult
from ..simulator.trace import (
    CONFLICT_CAUSES,
    PATH_KINDS,
    RES_LABELS,
    CriticalPath,
    GanttData,
    conflict_causes,
    critical_path,
    gantt_data,
    op_kinds,
)
from .static import StaticSlider, static_slider
from .style import (
    FONT_SIZE,
    figure,
    finish,
    format_number,
    format_rate,
    format_time,
    table,
    time_scale,
)

__all__ = [
    "gantt",
    "token_timeline",
    "energy_breakdown",
    "latency_breakdown",
    "conflicts_picture",
    "sweep_batch",
    "overview",
    "overview_slider",
    "SLIDER_BATCHES",
    "SLIDER_TIERS",
    "context_costs",
    "format_context_table",
    "ENERGY_KINDS",
]

ENERGY_KINDS = ("mvm", "digital", "attention", "dram", "communication", "passive")
"""Keys of :attr:`~aimoe_lib.simulator.result.SimResult.energy_breakdown_pj`, in the order drawn."""

BINNED_ALPHA_FLOOR = 0.3
"""Opacity of a binned Gantt cell that was busy for an instant; a fully busy cell is opaque, so
rarely busy rows stay visible."""

_RES_PLURAL = {"tiles": "tiles", "dpu": "DPUs", "mha": "MHA units", "dram": "DRAM"}
_ENERGY_COLOURS = {"mvm": "tab:blue", "digital": "tab:green", "attention": "tab:red",
                   "dram": "tab:brown", "communication": "tab:olive", "passive": "0.55"}
_PATH_COLOURS = dict(zip(PATH_KINDS, ("tab:blue", "tab:green", "tab:red", "tab:brown",
                                      "tab:olive", "tab:orange", "tab:pink", "tab:purple"),
                         strict=True))
_CAUSE_COLOURS = dict(zip(CONFLICT_CAUSES, ("tab:cyan", "tab:purple", "tab:orange"),
                          strict=True))
_SEQ_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _palette(n: int) -> list:
    """Colours of Gantt classes in program order: tab10 / tab20, then viridis (the colour bar of
    a many-layer chart)."""
    import matplotlib

    if n <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(matplotlib.colormaps["tab20"].colors[:n])
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _classes(data: GanttData, result: SimResult, color_by: str):
    """Colour class of every kept event, with class labels and colours."""
    if color_by == "layer":
        n_layers = result.program.n_layers
        cls = np.minimum(data.layer, n_layers)
        labels = [f"layer {i}" for i in range(n_layers)] + ["LM head"]
        colours = _palette(n_layers) + ["0.15"]
        return cls, labels, colours
    if color_by == "op":
        kind_of_op, kinds = op_kinds(result.program)
        return kind_of_op[data.op], list(kinds), _palette(len(kinds))
    raise ValueError(f"gantt(color_by={color_by!r}): use 'layer' or 'op'")


def _binned_busy(data: GanttData, cls: np.ndarray, n_classes: int, t_end: float,
                 n_bins: int) -> np.ndarray:
    """Busy time (rows, classes, bins) in ns: each event's time split exactly over the bins of
    width t_end / n_bins it overlaps."""
    n_rows = len(data.labels)
    w = t_end / n_bins
    s, e = data.start_ns, data.end_ns
    b0 = np.minimum((s / w).astype(np.int64), n_bins - 1)
    b1 = np.minimum((e / w).astype(np.int64), n_bins - 1)
    acc = np.zeros((n_rows, n_classes, n_bins + 1))
    same = b0 == b1
    np.add.at(acc, (data.row[same], cls[same], b0[same]), (e - s)[same])
    d = ~same
    np.add.at(acc, (data.row[d], cls[d], b0[d]), ((b0[d] + 1) * w - s[d]))
    np.add.at(acc, (data.row[d], cls[d], b1[d]), (e[d] - b1[d] * w))
    full = np.zeros_like(acc)
    np.add.at(full, (data.row[d], cls[d], b0[d] + 1), w)
    np.add.at(full, (data.row[d], cls[d], b1[d]), -w)
    return (acc + np.cumsum(full, axis=2))[:, :, :n_bins]


def _binned_image(data: GanttData, cls: np.ndarray, colours, n_classes: int, t_end: float,
                  n_bins: int) -> np.ndarray:
    """RGBA image (rows, bins): colour of the class busiest in each bin, opacity rising with the
    busy fraction of the bin (from ``BINNED_ALPHA_FLOOR``)."""
    acc = _binned_busy(data, cls, n_classes, t_end, n_bins)
    w = t_end / n_bins
    busy = acc.sum(axis=1)
    dom = acc.argmax(axis=1)
    rgba = np.array([to_rgba(c) for c in colours])[dom]
    rgba[..., 3] = BINNED_ALPHA_FLOOR + (1.0 - BINNED_ALPHA_FLOOR) * np.clip(busy / w, 0.0, 1.0)
    rgba[busy <= 1e-9 * w] = (1.0, 1.0, 1.0, 0.0)  # empty (up to rounding of the split)
    return rgba


def _draw_gantt(ax, fig, result: SimResult, data: GanttData, color_by: str, max_bars: int,
                n_bins: int, legend: bool = True) -> bool:
    """Draw on ``ax``; returns True when time was binned."""
    cls, labels, colours = _classes(data, result, color_by)
    t_end = max(result.makespan_ns, float(data.end_ns.max()) if data.end_ns.size else 1.0)
    f, unit = time_scale(t_end)
    n_rows = len(data.labels)
    binned = data.row.size > max_bars
    if binned:
        img = _binned_image(data, cls, colours, len(labels), t_end, n_bins)
        ax.imshow(img, aspect="auto", interpolation="nearest",
                  extent=(0.0, t_end * f, n_rows - 0.5, -0.5))
    else:
        for c in np.unique(cls):
            m = cls == c
            x0, x1, y = data.start_ns[m] * f, data.end_ns[m] * f, data.row[m]
            verts = np.stack([np.stack([x0, y - 0.4], 1), np.stack([x0, y + 0.4], 1),
                              np.stack([x1, y + 0.4], 1), np.stack([x1, y - 0.4], 1)], axis=1)
            coll = PolyCollection(verts, facecolors=[colours[c]], edgecolors="none",
                                  gid=f"gantt:{labels[c]}")
            ax.add_collection(coll)
    # separators between resource classes
    for r in range(1, n_rows):
        if data.resource[r] != data.resource[r - 1]:
            ax.axhline(r - 0.5, color="0.3", lw=0.8)
    step = max(1, math.ceil(n_rows / 40))
    ax.set_yticks(range(0, n_rows, step), [data.labels[i] for i in range(0, n_rows, step)],
                  fontsize=FONT_SIZE - 3 if n_rows > 20 else FONT_SIZE - 1)
    ax.set_xlim(0.0, t_end * f * 1.005)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set(xlabel=f"time ({unit})", ylabel="tile or unit")
    ax.grid(True, axis="x", alpha=0.3)
    if legend:
        present = np.unique(cls)
        if len(labels) > 12 and color_by == "layer":
            import matplotlib
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            sm = ScalarMappable(norm=Normalize(0, len(labels) - 2),
                                cmap=matplotlib.colormaps["viridis"])
            cb = fig.colorbar(sm, ax=ax, pad=0.01, fraction=0.03)
            cb.set_label("layer (black: LM head)", fontsize=FONT_SIZE - 1)
        else:
            handles = [Patch(facecolor=colours[c], label=labels[c]) for c in present]
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0),
                      fontsize=FONT_SIZE - 2, frameon=False,
                      ncol=1 if len(handles) <= 16 else 2)
    return binned


def _workload_words(result: SimResult) -> str:
    b, g = result.token_times_ns.shape
    return f"{b} sequence{'s' if b > 1 else ''} x {g} generated token{'s' if g > 1 else ''}"


def gantt(result: SimResult, max_rows: int = 40,
          resources: Sequence[str] = ("tiles", "dpu", "mha", "dram"), *,
          color_by: str = "layer", max_bars: int = 6000, n_bins: int = 400) -> Figure:
    """Gantt chart of a run: one row per tile or unit that ran an operation, one bar per operation
    (per tile for MVMs), coloured by ``color_by`` ('layer' or 'op', the operation kind of
    :class:`~aimoe_lib.simulator.program.Step` of each operation).

    Needs ``Workload(record_events=True)``. Large runs are aggregated, and the title says how:
    beyond ``max_rows`` rows only the busiest are shown
    (:func:`~aimoe_lib.simulator.trace.gantt_data`); beyond ``max_bars`` bars, time is cut into
    ``n_bins`` bins, each cell coloured by the class busiest in it and shaded by the fraction of the
    bin it was busy.
    """
    data = gantt_data(result, max_rows, resources)
    height = min(9.0, 2.0 + 0.16 * len(data.labels))
    fig = figure(11.0, height)
    ax = fig.add_subplot()
    binned = _draw_gantt(ax, fig, result, data, color_by, max_bars, n_bins)
    notes = []
    if data.truncated:
        shown = ", ".join(f"{int(np.sum(data.resource == RES_NAMES.index(k)))} of {v} "
                          f"{_RES_PLURAL[k] if v > 1 else RES_LABELS[k]}"
                          for k, v in data.n_used.items() if v)
        notes.append(f"busiest rows: {shown}")
    if binned:
        notes.append(f"time in {n_bins} bins, darker = busier")
    title = f"Gantt chart: {_workload_words(result)}"
    if notes:
        title += "\n(" + "; ".join(notes) + ")"
    b = result.busy_fraction()
    takeaway = (f"makespan {format_time(result.makespan_ns)}; tiles busy {b['tiles']:.1%} on "
                f"average (busiest {b['tiles_max']:.1%}), {result.tile_conflicts:,} tile "
                f"conflicts; bottleneck: {result.bottleneck()}")
    return finish(fig, title, takeaway)


# =============================================================================== token timeline
def token_timeline(result: SimResult, seq: int = 0) -> Figure:
    """When each generated token of sequence ``seq`` came out of sampling
    (:attr:`~aimoe_lib.simulator.result.SimResult.token_times_ns`), the other sequences in grey;
    the time to first token (TTFT) and the time per output token (TPOT) marked."""
    tt = result.token_times_ns
    b, g = tt.shape
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < b:
        raise ValueError(f"token_timeline(seq={seq!r}): the run has sequences 0..{b - 1}")
    f, unit = time_scale(float(tt.max()))
    fig = figure(9.0, 3.8)
    ax = fig.add_subplot()
    k = np.arange(1, g + 1)
    for s in range(b):
        if s != seq:
            ax.plot(tt[s] * f, k, color="0.75", lw=0.8, marker=".", ms=3, zorder=1)
    ax.plot(tt[seq] * f, k, color="tab:blue", lw=1.5, marker="o", ms=5, zorder=3,
            label=f"sequence {seq}")
    if b > 1:
        ax.plot([], [], color="0.75", marker=".", label="other sequences")
    ttft = float(tt[seq, 0])
    ax.annotate("", xy=(ttft * f, 1), xytext=(0, 1),
                arrowprops=dict(arrowstyle="<->", color="tab:red", lw=1.2))
    ax.text(ttft * f / 2, 1 + 0.04 * max(g, 2), f"TTFT {format_time(ttft)}", ha="center",
            va="bottom", color="tab:red", fontsize=FONT_SIZE - 1)
    st = result.tpot_stats_ns()
    if g > 1:
        gaps = np.diff(tt[seq])
        i = int(np.argmax(gaps)) if g > 2 else 0
        ax.annotate("", xy=(tt[seq, i + 1] * f, i + 2), xytext=(tt[seq, i] * f, i + 2),
                    arrowprops=dict(arrowstyle="<->", color="tab:green", lw=1.2))
        ax.text(tt[seq, i] * f, i + 2 + 0.04 * g, f"longest gap {format_time(float(gaps[i]))}",
                ha="right", va="bottom", color="tab:green", fontsize=FONT_SIZE - 1)
        tpot = (f"then one every {format_time(float(gaps.mean()))} on average; TPOT over all "
                f"sequences {format_time(st['mean'])} mean, {format_time(st['p99'])} p99")
    else:
        tpot = "one generated token, so no time per output token"
    ax.set(xlabel=f"time ({unit})", ylabel="generated token", xlim=(0, float(tt.max()) * f * 1.05),
           ylim=(0.5, g + 0.5 + 0.1 * g))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=FONT_SIZE - 2)
    takeaway = f"sequence {seq}: first token after {format_time(ttft)}, {tpot}"
    return finish(fig, f"When the tokens come out: {_workload_words(result)}", takeaway)


# =============================================================================== energy
def _draw_energy(ax, result: SimResult) -> None:
    e = result.energy_breakdown_pj
    kinds = [k for k in ENERGY_KINDS if k in e] + [k for k in e if k not in ENERGY_KINDS]
    heights = [e[k] / 1e6 for k in kinds]
    total = result.energy_pj
    bars = ax.bar(kinds, heights, color=[_ENERGY_COLOURS.get(k, "0.4") for k in kinds])
    for bar, k in zip(bars, kinds, strict=True):
        bar.set_gid(f"energy:{k}")
    pos = [h for h in heights if h > 0]
    log = bool(pos) and max(pos) / min(pos) > 100
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(pos) / 3, max(pos) * 8)
    else:
        ax.set_ylim(0, max(pos + [1e-12]) * 1.25)
    for bar, k, h in zip(bars, kinds, heights, strict=True):
        y = h if h > 0 else (ax.get_ylim()[0] if log else 0.0)
        text = f"{format_number(h)}\n{e[k] / total:.1%}" if total else "0"
        ax.text(bar.get_x() + bar.get_width() / 2, y, text, ha="center", va="bottom",
                fontsize=FONT_SIZE - 2)
    ax.set(xlabel="kind of energy",
           ylabel="energy (µJ" + (", log scale)" if log else ")"),
           title=f"Energy by kind, {total / 1e6:,.4g} µJ in all "
                 f"({result.dynamic_energy_pj / 1e6:,.4g} µJ dynamic)")
    ax.tick_params(axis="x", labelrotation=20)


def energy_breakdown(result: SimResult) -> Figure:
    """Energy of a run by kind
    (:attr:`~aimoe_lib.simulator.result.SimResult.energy_breakdown_pj`): one bar per kind, its
    height the energy in µJ, labelled with its share of the total; the takeaway gives the energy
    per generated token in total and dynamic (static energy left out). The scale is logarithmic
    when the kinds differ by more than 100x (as passive and MVM energy do under the 'paper'
    preset's 1 W per unit)."""
    fig = figure(8.0, 4.0)
    ax = fig.add_subplot()
    _draw_energy(ax, result)
    e = result.energy_breakdown_pj
    total = result.energy_pj
    top = max(e, key=e.get)
    dyn = result.dynamic_energy_pj / result.generated_tokens
    takeaway = (f"{total / 1e6:,.4g} µJ = {result.energy_per_token_pj / 1e6:,.4g} µJ per generated "
                f"token ({dyn / 1e6:,.4g} µJ dynamic); {top} {e[top] / total:.1%}")
    if top == "passive":
        takeaway += (f" ({result.passive_power_w:,.4g} W static power over "
                     f"{format_time(result.makespan_ns)})")
    elif e.get("passive", 0.0) > 0:
        takeaway += f", static {e['passive'] / total:.1%}"
    return finish(fig, f"Where the energy goes: {_workload_words(result)}", takeaway)


# =============================================================================== busy fractions
def _busy_table(result: SimResult) -> list[tuple[str, float, float]]:
    """(class, mean busy fraction, busy fraction of its most loaded unit set) per resource class
    (:meth:`~aimoe_lib.simulator.result.SimResult.busy_fraction`)."""
    b = result.busy_fraction()
    return [(k, b.get(k, 0.0), b.get(f"{k}_max", 0.0)) for k in ("tiles", "dpu", "mha", "dram")]


_MOST_LOADED = {"tiles": "busiest tile", "dpu": "most loaded DPUs (a layer's, or the pool)",
                "mha": "most loaded attention units (a layer's, or the pool)",
                "dram": "DRAM channel"}


def _bottleneck_words(result: SimResult) -> str:
    """The bottleneck in words, with the busy fraction behind it."""
    rows = {r[0]: r for r in _busy_table(result)}
    bn = result.bottleneck()
    if bn != "latency":
        return (f"bottleneck {bn}: {_MOST_LOADED[bn]} {rows[bn][2]:.1%} busy, "
                f"class mean {rows[bn][1]:.1%}")
    top = max(rows.values(), key=lambda r: r[2])
    return (f"bound by latency: no resource busy half the time (most loaded: "
            f"{_MOST_LOADED[top[0]]}, {top[2]:.1%})")


def _draw_busy(ax, result: SimResult) -> None:
    rows = _busy_table(result)
    bn = result.bottleneck()
    x = np.arange(len(rows))
    w = 0.38
    mean = [r[1] * 100 for r in rows]
    peak = [r[2] * 100 for r in rows]
    ax.bar(x - w / 2, mean, w, color="tab:blue", label="mean of the class")
    ax.bar(x + w / 2, peak, w, color="tab:orange", label="most loaded tile or layer's units")
    for i, r in enumerate(rows):
        if r[0] == bn:
            ax.add_patch(Rectangle((i - 0.48, 0), 0.96, max(mean[i], peak[i]) * 1.02 + 1e-9,
                                   fill=False, ec="k", lw=1.5))
            ax.text(i, max(mean[i], peak[i]) * 1.02, "bottleneck", ha="center", va="bottom",
                    fontsize=FONT_SIZE - 2)
    ax.set_xticks(x, ["tiles (used)", "DPUs", "MHA units", "DRAM"])
    title = "How busy each resource class is"
    if bn == "latency":
        title += "\n(none busy half the time: bound by latency)"
    ax.set(xlabel="resource class", ylabel="busy fraction of the run (%)", title=title,
           ylim=(0, max(peak + [1e-9]) * 1.25))
    ax.legend(fontsize=FONT_SIZE - 2, loc="best")


# =============================================================================== critical path
def _draw_path(ax, cp: CriticalPath, label: str) -> None:
    kinds = [k for k in PATH_KINDS]
    vals = np.array([cp.by_kind_ns[k] for k in kinds])
    f, unit = time_scale(cp.total_ns)
    y = np.arange(len(kinds))
    ax.barh(y, vals * f, color=[_PATH_COLOURS[k] for k in kinds])
    for yi, v in zip(y, vals, strict=True):
        ax.text(v * f, yi, f" {v * f:,.3g} ({v / cp.total_ns:.0%})" if cp.total_ns else "",
                va="center", fontsize=FONT_SIZE - 2)
    ax.set_yticks(y, kinds)
    ax.set_ylim(len(kinds) - 0.5, -0.5)
    ax.set_xlim(0, max(vals.max() * f * 1.35, 1e-9))
    ax.set(xlabel=f"time on the critical path ({unit})", ylabel="part",
           title=f"{label}:\n{format_time(cp.total_ns)} along a chain of {len(cp.steps)} "
                 "operations")


def latency_breakdown(result: SimResult, seq: int = 0, pass_: int | None = None, *,
                      with_path: bool | None = None) -> Figure:
    """Where the time goes. Left: the busy fraction of each resource class (mean and most loaded
    tile or unit set) with :meth:`~aimoe_lib.simulator.result.SimResult.bottleneck` marked.
    Right, when ``result`` has its event log (or ``with_path=True``): the critical path of one token
    (:func:`~aimoe_lib.simulator.trace.critical_path`; pass ``pass_``, default the last) split
    into compute, network and waiting."""
    if with_path is None:
        with_path = result.events is not None
    fig = figure(12.0 if with_path else 6.5, 4.0)
    axes = fig.subplots(1, 2 if with_path else 1, squeeze=False)[0]
    _draw_busy(axes[0], result)
    takeaway = _bottleneck_words(result)
    if with_path:
        g = result.token_times_ns.shape[1]
        p = g - 1 if pass_ is None else pass_
        cp = critical_path(result, seq, p)
        label = "time to first token" if p == 0 else f"token {p + 1} after token {p}"
        _draw_path(axes[1], cp, f"Critical path, {label}")
        top = max(cp.by_kind_ns, key=cp.by_kind_ns.get)
        takeaway += (f"; one token's {format_time(cp.total_ns)}: {top} "
                     f"{cp.by_kind_ns[top] / cp.total_ns:.0%}")
    return finish(fig, f"Where the time goes: {_workload_words(result)}", takeaway)


# =============================================================================== conflicts
def _pick_example(ev: np.ndarray, examples: tuple):
    """The conflict that shows the 3D effect best: another token's MVM of a different layer on the
    same tile, the waiting MVM spread over several tiles, the longest wait (first in log order)."""
    if not examples:
        return None

    def n_tiles(i: int) -> int:
        same = ((ev["seq"] == ev["seq"][i]) & (ev["pass_"] == ev["pass_"][i])
                & (ev["token"] == ev["token"][i]) & (ev["op"] == ev["op"][i]))
        return int(np.sum(same))

    def score(e) -> tuple:
        me, blk, cause, ready = e
        return (cause == "shared tile", bool(ev["layer"][me] != ev["layer"][blk]),
                n_tiles(me) > 1, float(ev["start_ns"][me]) - ready)

    return max(examples, key=score)


def conflicts_picture(model: ModelSpec | None = None, n_tiers: int = 16, batch: int = 4,
                      gen_len: int = 2, seed: int = 0) -> Figure:
    """What a tile conflict is, on one example, and its causes counted on three chips.

    ``model`` (default :func:`~aimoe_lib.teaching.simulation_moe`) runs ``batch`` sequences of one
    prompt token and ``gen_len`` generated tokens on (a) :func:`~aimoe_lib.mapping.fitting_chip`
    with ``n_tiers`` tiers, mapped ``in_order``; (b) the same chip mapped ``moe_stacked``; (c) a
    chip with one tier per tile (every block on a tile of its own), mapped ``in_order``. Left: the
    first conflict on (a) caused by another token's different matrix on the same tile, drawn on the
    tiles of the waiting MVM with its wait hatched. Right: the conflicts of each chip by cause
    (:func:`~aimoe_lib.simulator.trace.conflict_causes`).
    """
    setups = experiments.conflict_runs(model, n_tiers, batch, gen_len, seed)
    runs = [(m, r, r.program, conflict_causes(r)) for m, r in setups]
    model = runs[0][0].model

    fig = figure(12.5, 4.6)
    ax, axc = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.7, 1.0]))
    m0, r0, p0, c0 = runs[0]
    ev = r0.events
    ex = _pick_example(ev, c0.examples)
    if ex is None:
        ax.text(0.5, 0.5, "no conflict in this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set(xlabel="time (ns)", ylabel="tile")
        example_words = "no conflict"
    else:
        i_me, i_blk, cause, ready = ex
        key = lambda i: (ev["seq"][i], ev["pass_"][i], ev["token"][i], ev["op"][i])  # noqa: E731
        same_me = np.flatnonzero((ev["seq"] == ev["seq"][i_me]) & (ev["pass_"] == ev["pass_"][i_me])
                                 & (ev["token"] == ev["token"][i_me]) & (ev["op"] == ev["op"][i_me])
                                 & (ev["resource"] == 0))
        tiles = sorted(set(ev["unit"][same_me].tolist()))[:8]
        t0 = min(float(ev["start_ns"][i_blk]), ready) - 250.0
        t1 = float(ev["end_ns"][same_me].max()) + 250.0
        inwin = np.flatnonzero((ev["resource"] == 0) & np.isin(ev["unit"], tiles)
                               & (ev["end_ns"] > t0) & (ev["start_ns"] < t1))
        rowof = {t: k for k, t in enumerate(tiles)}
        for i in inwin:
            y = rowof[int(ev["unit"][i])]
            s0, s1 = max(float(ev["start_ns"][i]), t0), min(float(ev["end_ns"][i]), t1)
            col = _SEQ_COLOURS[int(ev["seq"][i]) % len(_SEQ_COLOURS)]
            edge = "k" if key(i) in (key(i_me), key(i_blk)) else "none"
            ax.add_patch(Rectangle((s0, y - 0.2), s1 - s0, 0.55, facecolor=col, edgecolor=edge,
                                   lw=1.2, alpha=1.0 if edge == "k" else 0.35))
            text = f"seq {int(ev['seq'][i])}\n{p0.names[int(ev['op'][i])]}"
            ax.text((s0 + s1) / 2, y + 0.075, text, ha="center", va="center",
                    fontsize=FONT_SIZE - 3, clip_on=True)
        for i in same_me:
            if int(ev["unit"][i]) in rowof and ev["start_ns"][i] > ready:
                y = rowof[int(ev["unit"][i])]
                ax.add_patch(Rectangle((ready, y - 0.42), float(ev["start_ns"][i]) - ready, 0.17,
                                       facecolor="none", edgecolor="tab:red", hatch="////", lw=1.0))
                ax.text(float(ev["start_ns"][i]), y - 0.335,
                        f" waits {float(ev['start_ns'][i]) - ready:.0f} ns", color="tab:red",
                        va="center", ha="left", fontsize=FONT_SIZE - 2)
        ax.axvline(ready, color="tab:red", ls=":", lw=1)
        ax.text(ready, -0.6, " ready", color="tab:red", fontsize=FONT_SIZE - 2, va="bottom")
        wait = float(ev["start_ns"][i_me]) - ready
        me_name, blk_name = p0.names[int(ev["op"][i_me])], p0.names[int(ev["op"][i_blk])]
        ax.set_yticks(range(len(tiles)), [f"tile {t}" for t in tiles])
        ax.set_xlim(t0, t1)
        ax.set_ylim(len(tiles) - 0.5, -0.9)
        ax.set(xlabel="time (ns)", ylabel="tiles of the waiting MVM",
               title=f"(a) {me_name} of sequence {int(ev['seq'][i_me])} waits {wait:.0f} ns for "
                     f"{blk_name} of sequence {int(ev['seq'][i_blk])}")
        example_words = f"{me_name} waits {wait:.0f} ns for another token's {blk_name}"
    # right: causes per setup
    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    for c in CONFLICT_CAUSES:
        v = np.array([run[3].stall_ns[c] / 1e3 for run in runs])
        ax_bars = axc.bar(x, v, bottom=bottom, color=_CAUSE_COLOURS[c], label=c)
        for bar in ax_bars:
            bar.set_gid(f"stall:{c}")
        bottom += v
    for xi, run in zip(x, runs, strict=True):
        axc.text(xi, bottom[xi], f"{run[1].tile_conflicts:,} conflicts\n"
                 f"{run[1].makespan_ns / 1e3:.2f} µs run", ha="center", va="bottom",
                 fontsize=FONT_SIZE - 2)
    labels = ["in_order", "moe_stacked", "in_order"]
    axc.set_xticks(x, [f"{lb}\n{run[0].chip.n_tiles} tiles x {run[0].chip.n_tiers}"
                       for lb, run in zip(labels, runs, strict=True)])
    axc.set_ylim(0, max(bottom.max(), 1e-9) * 1.35)
    axc.set(xlabel="mapping and chip (tiles x tiers)", ylabel="stall time (µs, summed)",
            title="Stall by cause")
    axc.legend(fontsize=FONT_SIZE - 2, loc="upper right")
    takeaway = (f"{example_words}; conflicts {runs[0][1].tile_conflicts} (in_order), "
                f"{runs[1][1].tile_conflicts} (moe_stacked), {runs[2][1].tile_conflicts} "
                f"(one tier per tile)")
    return finish(fig, f"Tile conflicts: {batch} sequences x {gen_len} tokens on {model.name}",
                   takeaway)


# =============================================================================== batch sweep
def sweep_batch(model: ModelSpec, chip: ChipConfig, mapping: Mapping,
                batches: Sequence[int] = (1, 2, 4, 8, 16, 32), prompt_len: int = 1,
                gen_len: int = 8, routing="uniform", seed: int = 0) -> Figure:
    """Throughput and time per output token against the number of sequences in flight
    (:func:`~aimoe_lib.experiments.batch_sweep`): more sequences fill the pipeline until a resource
    saturates."""
    rows = experiments.batch_sweep(model, chip, mapping, batches, prompt_len, gen_len, routing,
                                   seed)
    b = np.array([r["batch"] for r in rows])
    tps = np.array([r["tokens_per_s"] for r in rows])
    fig = figure(11.0, 4.0)
    ax, ax2 = fig.subplots(1, 2)
    ax.plot(b, tps, "o-", color="tab:blue", label="simulated")
    ax.plot(b, tps[0] * b / b[0], ":", color="0.4", label="perfect pipelining (x batch)")
    for r in rows:
        ax.annotate(f"{r['tiles_max']:.0%}", (r["batch"], r["tokens_per_s"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=FONT_SIZE - 3)
    ax.set(xscale="log", yscale="log", xlabel="sequences in flight (batch)",
           ylabel="throughput (tokens/s)", title="Throughput (labels: busiest tile's busy share)")
    ax.set_xticks(b, [str(x) for x in b])
    ax.legend(fontsize=FONT_SIZE - 2)
    ax.grid(True, which="both", alpha=0.3)
    tp = np.array([r["tpot_mean_ns"] for r in rows]) / 1e3
    p99 = np.array([r["tpot_p99_ns"] for r in rows]) / 1e3
    ttft = np.array([r["ttft_mean_ns"] for r in rows]) / 1e3
    ax2.plot(b, tp, "o-", color="tab:green", label="TPOT mean")
    ax2.plot(b, p99, "s--", color="tab:green", alpha=0.6, label="TPOT p99")
    ax2.plot(b, ttft, "^-", color="tab:red", label="TTFT mean")
    ax2.set(xscale="log", xlabel="sequences in flight (batch)", ylabel="time (µs)",
            title="Latency per token", ylim=(0, max(p99.max(), ttft.max(), tp.max()) * 1.15))
    ax2.set_xticks(b, [str(x) for x in b])
    ax2.legend(fontsize=FONT_SIZE - 2)
    ax2.grid(True, alpha=0.3)
    speed = tps[-1] / tps[0]
    takeaway = (f"batch {b[0]} -> {b[-1]}: throughput x{speed:.1f} ({format_rate(tps[0])} -> "
                f"{format_rate(tps[-1])} tokens/s), mean TPOT {tp[0]:.2f} -> {tp[-1]:.2f} µs; "
                f"bottleneck at batch {b[-1]}: {rows[-1]['bottleneck']}")
    return finish(fig, f"Filling the pipeline: {model.name}, {prompt_len} prompt + {gen_len} "
                        f"generated tokens per sequence", takeaway)


# =============================================================================== overview
def overview(result: SimResult, max_rows: int = 30, color_by: str = "layer") -> Figure:
    """Gantt chart (top), energy by kind and busy fractions (bottom) of one run, for the widget
    panel; needs the event log."""
    data = gantt_data(result, max_rows)
    fig = figure(12.0, 7.5)
    gs = fig.add_gridspec(2, 2, height_ratios=[1.5, 1.0])
    axg = fig.add_subplot(gs[0, :])
    binned = _draw_gantt(axg, fig, result, data, color_by, 6000, 400)
    axg.set_title("Gantt chart" + (" (busiest rows)" if data.truncated else "")
                  + (" (time binned)" if binned else ""))
    _draw_energy(fig.add_subplot(gs[1, 0]), result)
    _draw_busy(fig.add_subplot(gs[1, 1]), result)
    e = result.energy_breakdown_pj
    t = result.tpot_stats_ns()
    tpot = f", TPOT {format_time(t['mean'])}" if not math.isnan(t["mean"]) else ""
    ttft = format_time(float(result.ttft_ns.mean()))
    takeaway = (f"{format_rate(result.tokens_per_s)} tokens/s, TTFT {ttft}{tpot}; "
                f"{result.energy_per_token_pj / 1e6:,.4g} µJ per token "
                f"({result.dynamic_energy_pj / result.generated_tokens / 1e6:,.4g} dynamic, "
                f"passive {e.get('passive', 0.0) / result.energy_pj:.0%}); "
                f"{result.tile_conflicts:,} tile conflicts; bottleneck {result.bottleneck()}")
    return finish(fig, f"Simulated inference: {_workload_words(result)}", takeaway)


# =============================================================================== context length
_CONTEXT_TIME = (("attention", "tab:red"), ("KV from off-chip memory", "tab:brown"),
                 ("rest of the token (MVMs, DPUs, network, waits)", "0.7"))
_CONTEXT_ENERGY = (("mvm", "analog MVMs", "tab:blue"), ("attention", "attention", "tab:red"),
                   ("dram", "KV from off-chip memory", "tab:brown"),
                   ("other", "digital + network", "tab:olive"),
                   ("passive", "static power", "0.55"))


def _gb(v: float) -> str:
    return f"{v / 1e9:.2f} GB" if v >= 1e9 else f"{v / 1e6:,.0f} MB"


def context_costs(rows: Sequence[ContextRow]) -> Figure:
    """Where a decoded token's time and energy go as the prompt grows, from the rows of
    ``context_study.context_sweep`` (one bar per prompt length). Left: the time per
    output token split into attention-unit time, off-chip KV traffic and the rest, with the KV
    cache size and its spilled fraction under each bar. Right: the energy of one decoded token by
    kind (static power hatched on top), labelled with its dynamic and total energy."""
    rows = list(rows)
    if not rows:
        raise ValueError("context_costs(rows=[]): give the rows of context_study.context_sweep")
    x = np.arange(len(rows))
    fig = figure(12.0, 4.6)
    ax, axe = fig.subplots(1, 2)
    tp = np.array([r.tpot_ns for r in rows]) / 1e6
    parts = {"attention": np.array([r.attention_ns for r in rows]) / 1e6,
             "KV from off-chip memory": np.array([r.dram_ns for r in rows]) / 1e6}
    parts["rest of the token (MVMs, DPUs, network, waits)"] = (
        tp - parts["attention"] - parts["KV from off-chip memory"])
    bottom = np.zeros(len(rows))
    for name, colour in _CONTEXT_TIME:
        bars = ax.bar(x, parts[name], bottom=bottom, color=colour, label=name)
        for bar in bars:
            bar.set_gid(f"time:{name}")
        bottom += parts[name]
    for xi, r in zip(x, rows, strict=True):
        ax.text(xi, tp[xi], f"{format_time(r.tpot_ns)}\nattention {r.attention_time_share:.0%}",
                ha="center", va="bottom", fontsize=FONT_SIZE - 2)
    ticks = [f"{r.prompt_len:,}\nKV {_gb(r.kv_bytes)}\n{r.spill_fraction:.0%} off chip"
             for r in rows]
    ax.set_xticks(x, ticks)
    ax.set_ylim(0, tp.max() * 1.3)
    ax.set(xlabel="prompt tokens (KV cache at the end; part read from off-chip memory)",
           ylabel="time per output token (ms)", title="Time of a decoded token")
    ax.legend(fontsize=FONT_SIZE - 2, loc="upper left")
    energy = {k: np.array([r.decode_energy_pj.get(k, 0.0) for r in rows]) / 1e9
              for k in ("mvm", "attention", "dram", "passive")}
    energy["other"] = np.array([r.decode_energy_pj.get("digital", 0.0)
                                + r.decode_energy_pj.get("communication", 0.0) for r in rows]) / 1e9
    bottom = np.zeros(len(rows))
    for key, name, colour in _CONTEXT_ENERGY:
        bars = axe.bar(x, energy[key], bottom=bottom, color=colour, label=name,
                       hatch="//" if key == "passive" else None,
                       edgecolor="white" if key == "passive" else None)
        for bar in bars:
            bar.set_gid(f"energy:{key}")
        bottom += energy[key]
    for xi, r in zip(x, rows, strict=True):
        axe.text(xi, bottom[xi], f"{r.decode_dynamic_pj / 1e9:.3g} mJ dynamic\n"
                 f"{r.decode_total_pj / 1e9:.3g} mJ total", ha="center", va="bottom",
                 fontsize=FONT_SIZE - 2)
    axe.set_xticks(x, [f"{r.prompt_len:,}" for r in rows])
    axe.set_ylim(0, bottom.max() * 1.3)
    axe.set(xlabel="prompt tokens", ylabel="energy per decoded token (mJ)",
            title="Energy of a decoded token")
    axe.legend(fontsize=FONT_SIZE - 2, loc="upper left")
    first, last = rows[0], rows[-1]
    dyn = {k: v for k, v in last.decode_energy_pj.items() if k != "passive"}
    top = max(dyn, key=dyn.get)
    top_words = {"mvm": "analog MVMs", "dram": "off-chip KV"}.get(top, top)
    takeaway = (f"{first.prompt_len:,} -> {last.prompt_len:,} prompt tokens: "
                f"{format_time(first.tpot_ns)} -> {format_time(last.tpot_ns)} per token "
                f"({last.attention_time_share:.0%} attention), "
                f"{first.decode_total_pj / 1e9:.3g} -> {last.decode_total_pj / 1e9:.3g} mJ "
                f"({top_words} {last.energy_share(top, dynamic=True):.0%} of the dynamic)")
    seqs = f"{first.batch} sequence{'s' if first.batch > 1 else ''}"
    return finish(fig, f"{first.model}: one decoded token against the prompt length ({seqs}, "
                       f"{first.gen_len - 1} decoded tokens each)", takeaway)


def format_context_table(rows: Sequence[ContextRow]) -> str:
    """The rows of ``context_study.context_sweep`` as an aligned text table: per
    prompt length the KV cache and its part off chip, the time to first token, the time per output
    token with the shares of attention and off-chip (HBM) traffic in it, the tokens per second
    while decoding, and the energy of one decoded token (MVM, attention, HBM, dynamic, total, mJ);
    under it the energy of the whole run at the longest prompt, prefill included."""
    rows = list(rows)
    if not rows:
        raise ValueError("format_context_table(rows=[]): give the rows of "
                         "context_study.context_sweep")

    def mj(v: float) -> str:
        return f"{v / 1e9:.2f}"

    body = [[f"{r.prompt_len:,}", f"{r.kv_bytes / 1e6:,.0f} MB", f"{r.spill_fraction:.1%}",
             format_time(r.ttft_ns), format_time(r.tpot_ns), f"{r.attention_time_share:.0%}",
             f"{r.dram_time_share:.1%}", f"{r.decode_tokens_per_s:,.0f}",
             mj(r.decode_energy_pj["mvm"]), mj(r.decode_energy_pj["attention"]),
             mj(r.decode_energy_pj["dram"]), mj(r.decode_dynamic_pj), mj(r.decode_total_pj)]
            for r in rows]
    head = ["prompt", "KV cache", "off chip", "TTFT", "TPOT", "attention", "HBM", "decode tok/s",
            "MVM mJ", "attention mJ", "HBM mJ", "dynamic mJ", "total mJ"]
    last = rows[-1]
    run = last.run_energy_total_pj
    seqs = f"{last.batch} sequence{'s' if last.batch > 1 else ''}"
    foot = (f"whole run at {last.prompt_len:,} prompt tokens ({seqs}, prefill and "
            f"{last.gen_len - 1} decoded token{'s' if last.gen_len > 2 else ''} each): "
            f"{run / 1e12:,.3g} J, HBM traffic "
            f"{last.run_energy_pj.get('dram', 0.0) / run:.0%} of it")
    return table(head, body, [True] * len(head)) + "\n" + foot


SLIDER_BATCHES = (1, 2, 4, 8, 16, 32)
"""Sequences on chapter 4's static slider: from one token's chain (latency-bound) to a chip whose
busiest tiles are busy most of the time."""
SLIDER_TIERS = (4, 16, 64)
"""Tiers per tile on chapter 4's static slider: the same small MoE on more tiles of fewer tiers,
the chapter's 16-tier chip, and fewer tiles of more tiers."""


def overview_slider(batches: Sequence[int] = SLIDER_BATCHES, tiers: Sequence[int] = SLIDER_TIERS,
                    prompt_len: int = 4, gen_len: int = 4, default: tuple[int, int] = (4, 16)
                    ) -> StaticSlider:
    """:func:`overview` of :func:`~aimoe_lib.experiments.small_run` (the small MoE of chapter 4 on
    the book's preset, ``prompt_len`` + ``gen_len`` tokens per sequence) precomputed for the
    static book (:func:`~aimoe_lib.viz.static.static_slider`): one slider for the sequences
    (``batches``), one for the tiers per tile (``tiers``); starts at ``default`` (sequences,
    tiers), the live panel's defaults. One simulation per frame."""
    def draw(batch: int, n_tiers: int) -> Figure:
        return overview(experiments.small_run(None, batch, prompt_len, gen_len, n_tiers))

    return static_slider(draw, {"batch": tuple(batches), "n_tiers": tuple(tiers)},
                         default={"batch": default[0], "n_tiers": default[1]},
                         labels={"batch": "sequences (batch)", "n_tiers": "tiers per tile"})
