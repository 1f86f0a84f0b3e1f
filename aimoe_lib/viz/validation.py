"""Figures and tables of the validation appendix: aimoe against every external reference it can
be checked against. Everything here only formats and draws rows computed by
:mod:`aimoe_lib.validation` (and :func:`~aimoe_lib.gpu.validation_table`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .style import figure, finish, palette, plain_log_axes, table

__all__ = ["format_error", "format_value", "format_threedsim", "format_energy_by_kind",
           "format_timing", "format_dataflow_effects", "format_hermes", "format_param_checks",
           "format_summary", "format_worst", "LINTHRESH_PCT", "overview"]


def format_error(e: float) -> str:
    """A relative error in per cent, three decimals (``'+0.022%'``); exactly 0 prints ``'0'``."""
    return "0" if e == 0 else f"{e:+.3%}"


def format_value(v: float, unit: str) -> str:
    """A value in the natural format of its unit: ns and counts as integers, nJ with one decimal,
    seconds as ms, parameters in M or B, TOPS and TOPS/W with two decimals."""
    if unit == "s":
        return f"{v * 1e3:,.2f} ms"
    if unit == "parameters":
        return f"{v / 1e6:,.1f} M" if v < 1e9 else f"{v / 1e9:,.3f} B"
    if unit == "nJ":
        return f"{v:,.1f} nJ"
    if unit in ("TOPS", "TOPS/W"):
        return f"{v:.2f} {unit}"
    if unit == "ns":
        return f"{v:,.0f} ns"
    return f"{v:,.0f}"


def _case(name: str) -> str:
    """'(iv) 12 layers x 24 tokens x 2 seqs, no KV cache' -> '(iv) 12L x 24 tok x 2, no KV'."""
    parts = name.replace(" layers", "L").replace(" tokens", " tok").replace(" seqs", "") \
        .replace(" seq", "").replace("no KV cache", "no KV").replace("KV cache", "KV")
    return parts


def format_threedsim(rows) -> str:
    """3D-SiM next to aimoe for each stored README workload
    (:func:`~aimoe_lib.validation.threedsim_comparison`): makespan, tier MVMs, total energy, each
    with its error, and both tile-conflict counts (which count different things)."""
    head = ["case", "3D-SiM ns", "aimoe ns", "error", "MVMs 3D-SiM", "aimoe", "energy 3D-SiM nJ",
            "aimoe nJ", "error", "conflicts 3D-SiM", "aimoe"]
    body = [[_case(r.name), f"{r.makespan_3dsim_ns:,.0f}", f"{r.makespan_aimoe_ns:,.0f}",
             format_error(r.makespan_error), f"{r.mvm_3dsim:,}", f"{r.mvm_aimoe:,}",
             f"{r.energy_3dsim_nj:,.1f}", f"{r.energy_aimoe_nj:,.1f}",
             format_error(r.energy_error), f"{r.conflicts_3dsim:,}", f"{r.conflicts_aimoe:,}"]
            for r in rows]
    return table(head, body, [False] + [True] * 10)


def format_energy_by_kind(rows) -> str:
    """Energy by kind, 3D-SiM next to aimoe, per case
    (:func:`~aimoe_lib.validation.threedsim_energy_by_kind`)."""
    head = ["case", "kind", "3D-SiM nJ", "aimoe nJ", "aimoe - 3D-SiM nJ", "error"]
    body = [[_case(r.name), r.kind, f"{r.threedsim_nj:,.2f}", f"{r.aimoe_nj:,.2f}",
             f"{r.difference_nj:+,.2f}", format_error(r.error)] for r in rows]
    return table(head, body, [False, False, True, True, True, True])


def format_timing(rows) -> str:
    """How long each simulator takes per case (:func:`~aimoe_lib.validation.threedsim_timing`):
    3D-SiM's stored process time, its tracing and scheduling parts and peak memory, aimoe's
    measured time and the ratios. Not deterministic."""
    head = ["case", "3D-SiM s", "trace s", "schedule s", "peak MB", "aimoe ms", "whole / aimoe",
            "schedule / aimoe"]
    body = [[_case(r.name), f"{r.wall_3dsim_s:.1f}", f"{r.trace_3dsim_s:.2f}",
             f"{r.schedule_3dsim_s:.2f}", f"{r.peak_rss_3dsim_mb:,.0f}", f"{r.aimoe_s * 1e3:.1f}",
             f"{r.wall_3dsim_s / r.aimoe_s:,.0f}x", f"{r.schedule_3dsim_s / r.aimoe_s:,.0f}x"]
            for r in rows]
    return table(head, body, [False] + [True] * 7)


def format_dataflow_effects(rows) -> str:
    """Makespan and energy with each of 3D-SiM's dataflow choices switched to aimoe's default
    (:func:`~aimoe_lib.validation.threedsim_dataflow_effects`)."""
    head = ["case", "aimoe default switched on", "value", "makespan ns", "vs 3D-SiM", "energy nJ"]
    label = {"none": "none (3D-SiM's dataflow)", "all": "all (aimoe's dataflow)"}
    body = [[_case(r.name), label.get(r.knob, r.knob), r.value, f"{r.makespan_ns:,.0f}",
             format_error(r.makespan_error), f"{r.energy_nj:,.1f}"] for r in rows]
    return table(head, body, [False, False, False, True, True, True])


def format_hermes(check, paper_tops_per_w: float | None = None) -> str:
    """HERMES' published peak figures against the same figures recomputed from the ``'hermes'``
    preset's MVM cost (:func:`~aimoe_lib.validation.hermes_check`); with ``paper_tops_per_w``
    also the efficiency the ``'paper'`` preset's MVM cost implies."""
    c = check
    lines = [f"hermes preset: {c.n_cores} cores of {c.rows}x{c.cols}, one MVM "
             f"{c.mvm_latency_ns:.1f} ns and {c.mvm_energy_pj / 1e3:.2f} nJ",
             table(["quantity", "published", "from the preset", "error"],
                   [["peak throughput", f"{c.published_tops:.2f} TOPS", f"{c.peak_tops:.2f} TOPS",
                     format_error(c.tops_error)],
                    ["efficiency", f"{c.published_tops_per_w:.2f} TOPS/W",
                     f"{c.tops_per_w:.2f} TOPS/W", format_error(c.tops_per_w_error)]],
                   [False, True, True, True])]
    if paper_tops_per_w is not None:
        lines.append(f"paper preset, one 512x512 MVM: {paper_tops_per_w:.1f} TOPS/W, "
                     f"{paper_tops_per_w / c.published_tops_per_w:.1f}x HERMES' "
                     f"{c.published_tops_per_w:.2f}")
    return "\n".join(lines)


def format_param_checks(rows) -> str:
    """Published parameter counts against ours (:func:`~aimoe_lib.validation.param_checks`): the
    figure as printed, ours, the plain ratio error and the error beyond the figure's rounding."""
    head = ["model", "quantity", "published", "convention", "ours", "ours/published-1",
            "beyond rounding"]
    body = [[r.model, r.quantity, r.figure, r.convention.split(" (")[0],
             format_value(r.ours, "parameters"), f"{r.ratio_error:+.2%}", format_error(r.error)]
            for r in rows]
    return table(head, body, [False, False, True, False, True, True, True])


def format_summary(rows) -> str:
    """Every check as one table (:func:`~aimoe_lib.validation.summary_rows`): reference, item,
    quantity, the reference's value, aimoe's value and the error."""
    head = ["reference", "item", "quantity", "reference value", "aimoe value", "error"]
    body = [[r.reference, r.item, r.quantity, format_value(r.reference_value, r.unit),
             format_value(r.aimoe_value, r.unit), format_error(r.error)] for r in rows]
    return table(head, body, [False, False, False, True, True, True])


def format_worst(worst) -> str:
    """The largest error per reference and quantity (:func:`~aimoe_lib.validation.worst_errors`)."""
    head = ["reference", "quantity", "checks", "largest error", "where"]
    body = [[w.reference, w.quantity, str(w.n_checks), format_error(w.worst.error),
             w.worst.item if w.worst.error else "all exact"]
            for w in worst]
    return table(head, body, [False, False, True, True, False])


LINTHRESH_PCT = 1e-3
"""Errors below this many per cent are drawn on the linear part of the symlog axis."""


def overview(rows, threedsim_rows) -> Figure:
    """Left: the signed error of every check (per cent, symlog), grouped by reference and coloured
    by quantity. Right: 3D-SiM's makespan against aimoe's for each stored README workload."""
    fig = figure(11.5, 4.8)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    refs = list(dict.fromkeys(r.reference for r in rows))
    quantities = list(dict.fromkeys(r.quantity.split(" (")[0] for r in rows))
    colors = dict(zip(quantities, palette(len(quantities)), strict=True))
    seen = set()
    for i, ref in enumerate(refs):
        group = [r for r in rows if r.reference == ref]
        offsets = np.linspace(-0.3, 0.3, len(group)) if len(group) > 1 else [0.0]
        for x, r in zip(offsets, group, strict=True):
            q = r.quantity.split(" (")[0]
            ax.scatter(i + x, r.error * 100, s=28, color=colors[q], edgecolor="black",
                       linewidth=0.4, zorder=3, label=q if q not in seen else None)
            seen.add(q)
    ax.axhline(0, color="0.4", linewidth=0.8)
    ax.set_yscale("symlog", linthresh=LINTHRESH_PCT)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:+g}" if v else "0"))
    top = max(abs(r.error) for r in rows) * 100
    lim = 10 ** np.ceil(np.log10(max(top, LINTHRESH_PCT) * 1.5))
    ax.set_ylim(-lim, lim)
    ax.set_xticks(range(len(refs)), refs)
    ax.set_xlim(-0.6, len(refs) - 0.4)
    ax.set_xlabel("external reference")
    ax.set_ylabel("aimoe / reference - 1 (%, symlog)")
    ax.set_title("every check, signed error")
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    ax.grid(axis="y", alpha=0.3)

    ref_us = np.array([r.makespan_3dsim_ns for r in threedsim_rows]) / 1e3
    our_us = np.array([r.makespan_aimoe_ns for r in threedsim_rows]) / 1e3
    lo, hi = ref_us.min() / 1.6, ref_us.max() * 1.6
    ax2.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.8, linestyle="--", label="equal")
    ax2.scatter(ref_us, our_us, s=36, color="tab:blue", edgecolor="black", linewidth=0.4,
                zorder=3, label="README workload")
    for r, x, y in zip(threedsim_rows, ref_us, our_us, strict=True):
        ax2.annotate(r.name.split(" ")[0], (x, y), xytext=(5, -10), textcoords="offset points",
                     fontsize=8)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(lo, hi)
    ax2.set_ylim(lo, hi)
    ax2.set_xlabel("3D-SiM makespan (µs)")
    ax2.set_ylabel("aimoe makespan (µs)")
    ax2.set_title("3D-SiM's README workloads")
    ax2.legend(fontsize=8, loc="upper left")
    plain_log_axes(fig)

    by_ref = {ref: max(abs(r.error) for r in rows if r.reference == ref) for ref in refs}
    parts = [f"{ref} exact" if e == 0 else f"{ref} {100 * e:.2g} %" for ref, e in by_ref.items()]
    return finish(fig, "How far to trust each number: aimoe against outside references",
                  "Largest |error|: " + "; ".join(parts))
