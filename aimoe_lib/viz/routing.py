"""Chapter 6 (routing skew and tier conflicts): the figures and text tables.

Every figure function returns a ``matplotlib.figure.Figure`` in the house style of
:mod:`aimoe_lib.viz.style` with a title, axis labels with units and a one-line takeaway computed
from the numbers it plots (``fig.get_supxlabel()``). Figures only draw: the numbers come from the
row functions of :mod:`aimoe_lib.routing_study`, which map and simulate, and each figure takes
those rows (or computes the default ones) so that the book prints and checks them.

* Skew: :func:`~aimoe_lib.viz.routing.expert_load_skew` over
  :func:`~aimoe_lib.routing_study.load_imbalance`.
* Co-activation: :func:`~aimoe_lib.viz.routing.coactivation_maps`.
* Strategies on the small MoE: :func:`~aimoe_lib.viz.routing.strategy_effects` and
  :func:`~aimoe_lib.viz.routing.format_strategy_rows` over
  :func:`~aimoe_lib.routing_study.strategy_rows`.
* Closed form vs Monte Carlo vs event simulation:
  :func:`~aimoe_lib.viz.routing.analytic_vs_simulated` and
  :func:`~aimoe_lib.viz.routing.format_conflict_checks` over
  :func:`~aimoe_lib.routing_study.conflict_checks`.
* Throughput and stall against batch: :func:`~aimoe_lib.viz.routing.batch_curves` over
  :func:`~aimoe_lib.routing_study.batch_rows`.
* The 64-expert model of the shipped ``data/conditions.json``:
  :func:`~aimoe_lib.viz.routing.conditions_overview`,
  :func:`~aimoe_lib.viz.routing.format_condition_rows` and
  :func:`~aimoe_lib.viz.routing.condition_summary` over
  :func:`~aimoe_lib.routing_study.condition_rows`.
* One panel over skew, strategy, tiles and batch: :func:`~aimoe_lib.viz.routing.routing_dashboard`
  over :func:`~aimoe_lib.routing_study.dashboard_numbers`.
* Trained-router traces: :func:`~aimoe_lib.viz.routing.trace_routing_overview` and
  :func:`~aimoe_lib.viz.routing.format_trace_summary` over
  :func:`~aimoe_lib.routing_study.trace_summary`;
  :func:`~aimoe_lib.viz.routing.trace_strategy_effects` and
  :func:`~aimoe_lib.viz.routing.format_trace_rows` over
  :func:`~aimoe_lib.routing_study.trace_strategy_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .. import experiments
from .. import routing_study as study
from ..models import ModelSpec
from ..routing import RoutingSpec
from ..teaching import routing_moe
from .style import C_ACTIVE, C_DENSE, C_MOE, FONT_SIZE, figure, finish, table

__all__ = [
    "C_STRATEGY",
    "expert_load_skew",
    "coactivation_maps",
    "format_strategy_rows",
    "strategy_effects",
    "format_conflict_checks",
    "analytic_vs_simulated",
    "batch_curves",
    "format_condition_rows",
    "format_equal_capacity_rows",
    "condition_summary",
    "conditions_overview",
    "routing_dashboard",
    "C_ROUTING",
    "format_trace_summary",
    "trace_routing_overview",
    "format_trace_rows",
    "format_trace_energy",
    "trace_strategy_effects",
]

C_STRATEGY = {"in_order": "tab:blue", "balanced": "tab:orange", "random": "tab:olive",
              "coactivation": "tab:green", "moe_stacked": "tab:purple"}
"""Colour of each mapping strategy (spread-out chips reuse their strategy's colour, lighter)."""


def expert_load_skew(models: Sequence[ModelSpec] | None = None, s_values=study.ZIPF_VALUES,
                     n_tokens: int = 8192, seed: int = 0) -> Figure:
    """Expert load under Zipf routing: the load of every expert of the first model's first MoE
    layer by popularity rank (measured bars, expected line), and max/mean load against the Zipf
    exponent for every model (expected line, measured markers)."""
    if models is None:
        models = (routing_moe(), experiments.moe_variant(experiments.BASE, 64))
    rows = study.load_imbalance(models, s_values, n_tokens, seed)
    m0 = models[0]
    e, k = m0.n_experts, m0.top_k
    fig = figure(11.5, 4.2)
    ax_r, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})
    shown = [s for s in s_values if s in (0.0, 1.0, 2.0)] or list(s_values)[:3]
    width = 0.8 / len(shown)
    cmap = [C_ACTIVE, "tab:orange", "tab:red", C_MOE, C_DENSE]
    for i, s in enumerate(shown):
        layer = study.layer_load(m0, s, n_tokens, seed)
        load, pi = layer["measured"], layer["expected"]
        order = np.argsort(-pi, kind="stable")
        x = np.arange(e) + (i - (len(shown) - 1) / 2) * width
        ax_r.bar(x, load[order] * e / k, width=width, color=cmap[i % len(cmap)], alpha=0.55,
                 label=f"s = {s:g} measured")
        ax_r.plot(np.arange(e), pi[order] * e / k, color=cmap[i % len(cmap)], lw=1.5,
                  marker="_", label=f"s = {s:g} expected")
    ax_r.axhline(1.0, color="k", ls=":", lw=1)
    ax_r.set(xlabel="expert, by popularity rank (0 = most popular)",
             ylabel="tokens routed to it / even share (x)",
             title=f"{m0.name}: load of MoE layer 0 ({n_tokens:,} tokens)")
    ax_r.legend(fontsize=FONT_SIZE - 3, ncol=2)
    for j, model in enumerate(models):
        rr = [r for r in rows if r["model"] == model.name]
        color = [C_MOE, "tab:blue", "tab:orange"][j % 3]
        ax_m.plot([r["zipf_s"] for r in rr], [r["expected"] for r in rr], color=color,
                  label=f"{model.name}: expected")
        ax_m.plot([r["zipf_s"] for r in rr], [r["measured"] for r in rr], "o", color=color,
                  mfc="none", label="measured")
    ax_m.set_yscale("log")
    ax_m.set(xlabel="Zipf exponent s", ylabel="busiest expert / even share (x, log)",
             title="Load imbalance (mean over MoE layers)")
    ax_m.legend(fontsize=FONT_SIZE - 3)
    ax_m.grid(True, alpha=0.3)
    last = [r for r in rows if r["zipf_s"] == max(s_values)]
    parts = [f"{r['model']} (E = {r['n_experts']}, top-{r['top_k']}) {r['expected']:.1f}x"
             for r in last]
    takeaway = f"At s = {max(s_values):g} the busiest expert gets " + ", ".join(parts) + \
        " its even share of tokens"
    return finish(fig, "Zipf-skewed routing: how unevenly experts are loaded", takeaway)


def coactivation_maps(model: ModelSpec | None = None, density=None, n_groups: int = 4,
                      n_tokens: int = 8192, seed: int = 0, zipf_s: float = 1.5) -> Figure:
    """Pair densities as heatmaps: the prescribed block density, the one measured from tokens
    routed with it (:func:`~aimoe_lib.routing.coactivation_density`, MoE layer 0), and the one
    measured under Zipf routing (s = ``zipf_s``) for contrast."""
    model = routing_moe() if model is None else model
    density = study.block_coactivation(model.n_experts, n_groups) if density is None else density
    spec = RoutingSpec(kind="coactivation", coactivation=density)
    measured = study.measured_coactivation(model, spec, n_tokens, seed)
    zipf = study.measured_coactivation(model, study.zipf(zipf_s), n_tokens, seed)
    mats = [np.asarray(density), measured[0], zipf[0]]
    titles = ["prescribed (block structure)", f"measured, {n_tokens:,} tokens (layer 0)",
              f"measured under Zipf s = {zipf_s:g} (layer 0)"]
    vmax = max(float(m.max()) for m in mats)
    fig = figure(12.5, 4.2)
    axes = fig.subplots(1, 3)
    for ax, mat, title in zip(axes, mats, titles, strict=True):
        im = ax.imshow(mat, cmap="Purples", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set(xlabel="expert j (index)", ylabel="expert i (index)", title=title)
    fig.colorbar(im, ax=list(axes), label="pair density C[i, j] (probability)", shrink=0.85)
    share_p, share_m = study.block_share(density, n_groups), study.block_share(measured, n_groups)
    share_z = study.block_share(zipf, n_groups)
    takeaway = (f"Pairs inside the {n_groups} groups: {share_p:.1%} prescribed, {share_m:.1%} "
                f"measured over all {measured.shape[0]} MoE layers; Zipf routing gives "
                f"{share_z:.1%}, set by popularity, not by pairing")
    return finish(fig, f"Co-activation: which experts a token picks together ({model.name})",
                   takeaway)


def format_strategy_rows(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.routing_study.strategy_rows` (M tokens/s to 2
    decimals)."""
    body = [[r["routing"], r["label"], f"{r['n_tiles']}x{r['n_tiers']}", f"{r['area_mm2']:.0f}",
             f"{r['intra_token']:.2f}", f"{r['tokens_per_s'] / 1e6:.2f}",
             f"{r['ceiling'] / 1e6:.2f}", f"{r['of_ceiling']:.0%}",
             f"{r['stall_ns_per_token'] / 1e3:.0f}"] for r in rows]
    return table(["routing", "mapping", "tiles x tiers", "mm²", "intra-token", "M tok/s",
                   "ceiling", "of ceiling", "stall µs/token"], body,
                  [False, False, True, True, True, True, True, True, True])


def strategy_effects(rows: Sequence[dict] | None = None) -> Figure:
    """Grouped bars over :func:`~aimoe_lib.routing_study.strategy_rows`: closed-form intra-token
    conflicts, simulated throughput (with the tile-load ceiling as a black tick) and stall per
    generated token, for every mapping under every routing."""
    rows = study.strategy_rows() if rows is None else list(rows)
    routings = list(dict.fromkeys(r["routing"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    x = np.arange(len(routings))
    w = 0.8 / len(labels)
    fig = figure(13.0, 4.4)
    axes = fig.subplots(1, 3)
    keys = [("intra_token", 1.0, "waiting tier MVMs per token per MoE layer",
             "Intra-token conflicts (closed form)"),
            ("tokens_per_s", 1e-6, "generated tokens per second (M)",
             "Throughput (simulated; tick: ceiling)"),
            ("stall_ns_per_token", 1e-3, "stall per generated token (µs)",
             "Stall (simulated, all conflicts)")]
    for ax, (key, scale, ylabel, title) in zip(axes, keys, strict=True):
        for j, lab in enumerate(labels):
            rr = {r["routing"]: r for r in rows if r["label"] == lab}
            vals = np.array([rr[n][key] * scale if n in rr else np.nan for n in routings])
            strat = next(r["strategy"] for r in rows if r["label"] == lab)
            mult = next(r["tiles_multiplier"] for r in rows if r["label"] == lab)
            xs = x + (j - (len(labels) - 1) / 2) * w
            ax.bar(xs, vals, width=w, color=C_STRATEGY.get(strat, C_DENSE),
                   alpha=1.0 if mult == 1 else 0.45 if mult > 2 else 0.7, label=lab,
                   hatch="" if mult == 1 else "//", edgecolor="white", linewidth=0.3)
            if key == "tokens_per_s":
                ceil = np.array([rr[n]["ceiling"] * scale if n in rr else np.nan
                                 for n in routings])
                ax.scatter(xs, ceil, marker="_", s=120, color="k", zorder=3,
                           label="tile-load ceiling" if j == 0 else None)
        ax.set_xticks(x, routings, rotation=12)
        ax.set(xlabel="routing", ylabel=ylabel, title=title)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_ylim(0, 1.45 * max(max(r["ceiling"], r["tokens_per_s"]) for r in rows) / 1e6)
    axes[1].legend(fontsize=FONT_SIZE - 3, ncol=3, loc="upper left")
    best = max(rows, key=lambda r: r["tokens_per_s"])
    worst = min(rows, key=lambda r: r["tokens_per_s"])
    lo, hi = min(r["of_ceiling"] for r in rows), max(r["of_ceiling"] for r in rows)
    takeaway = (f"Fastest: {best['label']}, {best['routing']} ({best['tokens_per_s'] / 1e6:.2f} M "
                f"tokens/s); slowest: {worst['label']}, {worst['routing']} "
                f"({worst['tokens_per_s'] / 1e6:.2f} M); all runs reach {lo:.0%}-{hi:.0%} of their "
                "tile-load ceiling")
    return finish(fig, f"Mapping strategies under {len(routings)} routings: small MoE, batch "
                   f"{rows[0]['batch']} (simulated live)", takeaway)


def format_conflict_checks(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.routing_study.conflict_checks` (3 decimals)."""
    def f(v):
        return "-" if not np.isfinite(v) else f"{v:.3f}"
    body = [[r["routing"], r["label"], f(r["closed"]), f(r["mc"]), f(r["mc_se"]),
             f(r["up_starts"]), f(r["simulated"]), f(r["all_starts"])] for r in rows]
    return table(["routing", "mapping", "closed form", "Monte Carlo", "± s.e.",
                   "starts, up", "simulated", "starts, both"], body,
                  [False, False, True, True, True, True, True, True])


def analytic_vs_simulated(rows: Sequence[dict] | None = None) -> Figure:
    """Two panels over :func:`~aimoe_lib.routing_study.conflict_checks`: closed form against Monte
    Carlo (error bars: 2 standard errors), and the simulated conflicts of isolated tokens against
    the closed-form starts of the gate/up stage (filled) and of both stages (open)."""
    rows = study.conflict_checks() if rows is None else list(rows)
    fig = figure(11.5, 4.6)
    ax_m, ax_s = fig.subplots(1, 2)
    routings = list(dict.fromkeys(r["routing"] for r in rows))
    markers = dict(zip(routings, "osD^v", strict=False))
    mc_rows = [r for r in rows if np.isfinite(r["mc"])]
    for r in mc_rows:
        c = C_STRATEGY.get(r["label"].split()[0], C_DENSE)
        ax_m.errorbar(r["closed"], r["mc"], yerr=2 * r["mc_se"], fmt=markers[r["routing"]],
                      color=c, ms=6, capsize=3)
    for r in rows:
        c = C_STRATEGY.get(r["label"].split()[0], C_DENSE)
        ax_s.plot(r["up_starts"], r["simulated"], markers[r["routing"]], color=c, ms=6)
        ax_s.plot(r["all_starts"], r["simulated"], markers[r["routing"]], color=c, ms=6,
                  mfc="none")
    for ax in (ax_m, ax_s):
        top = 1.3 * max(max(r["closed"], r["all_starts"]) for r in rows)
        ax.plot([0, top], [0, top], color="k", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlim(-0.001, top)
        ax.set_ylim(-0.001, top)
        ax.grid(True, alpha=0.3)
    ax_m.set(xlabel="closed form (waiting tier MVMs per token per MoE layer)",
             ylabel="Monte Carlo, 2 s.e. bars (same unit)",
             title="Closed form vs mapping.expected_conflicts")
    ax_s.set(xlabel="closed form, waiting starts (filled: gate/up stage, open: both stages)",
             ylabel="simulated isolated tokens (conflicts per token per layer)",
             title="Closed form vs the event simulation, batch 1")
    handles = [Patch(color=C_STRATEGY.get(s, C_DENSE), label=s)
               for s in dict.fromkeys(r["label"].split()[0] for r in rows)]
    handles += [ax_s.plot([], [], markers[n], color="0.4", label=n)[0] for n in routings]
    ax_m.legend(handles=handles, fontsize=FONT_SIZE - 3, loc="upper left")
    z = [abs(r["mc"] - r["closed"]) / r["mc_se"] for r in mc_rows if r["mc_se"] > 0]
    exact = sum(r["mc_se"] == 0 and abs(r["mc"] - r["closed"]) < 1e-9 for r in mc_rows)
    dev = max(abs(r["simulated"] - r["up_starts"]) for r in rows)
    takeaway = (f"Closed form = Monte Carlo within {max(z, default=0.0):.1f} s.e. ({exact} of "
                f"{len(mc_rows)} exact); simulated isolated tokens match the gate/up-stage closed "
                f"form to {dev:.3f} per token and layer")
    return finish(fig, "Analytic expectation of conflicts vs sampling and simulation", takeaway)


def batch_curves(rows: Sequence[dict] | None = None) -> Figure:
    """Throughput and time per output token against batch (log-log), each config's asymptotes
    dotted: min(batch x alone, tile-load ceiling) and max(alone, batch x busiest-tile demand)."""
    rows = study.batch_rows() if rows is None else list(rows)
    fig = figure(11.5, 4.3)
    ax_t, ax_s = fig.subplots(1, 2)
    for lab in dict.fromkeys(r["label"] for r in rows):
        rr = [r for r in rows if r["label"] == lab]
        c = C_STRATEGY.get(rr[0]["strategy"], C_DENSE)
        ls = "-" if rr[0]["zipf_s"] == 0 else "-."
        b = np.array([r["batch"] for r in rr])
        ax_t.plot(b, [r["tokens_per_s"] / 1e6 for r in rr], ls, marker="o", ms=3, color=c,
                  label=lab)
        bound = np.minimum([r["latency_bound"] for r in rr], [r["ceiling"] for r in rr])
        ax_t.plot(b, bound / 1e6, ":", color=c, lw=1)
        ax_s.plot(b, [r["tpot_ns"] / 1e3 for r in rr], ls, marker="o", ms=3, color=c, label=lab)
        ax_s.plot(b, [r["tpot_asymptote_ns"] / 1e3 for r in rr], ":", color=c, lw=1)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in (ax_t, ax_s):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_xlabel("batch (sequences in flight)")
    ax_t.set(ylabel="generated tokens per second (M, log)",
             title="Throughput (dotted: min(batch x alone, tile ceiling))")
    ax_s.set(ylabel="time per output token (µs, log)",
             title="Time per output token (dotted: max(alone, batch x D_max))")
    ax_t.legend(fontsize=FONT_SIZE - 3)
    bmax = max(r["batch"] for r in rows)
    last = [r for r in rows if r["batch"] == bmax]
    lo = min(last, key=lambda r: r["tokens_per_s"] / r["ceiling"])
    hi = max(last, key=lambda r: r["tokens_per_s"] / r["ceiling"])
    dev = max(abs(r["tpot_ns"] / r["tpot_asymptote_ns"] - 1) for r in rows)
    takeaway = (f"At batch {bmax}: {lo['tokens_per_s'] / lo['ceiling']:.0%} ({lo['label']}) to "
                f"{hi['tokens_per_s'] / hi['ceiling']:.0%} ({hi['label']}) of the tile ceiling; "
                f"the time per output token stays within {dev:.0%} of its asymptote at every "
                "batch")
    return finish(fig, "Throughput and time per output token against batch (small MoE)",
                   takeaway)


def condition_summary(rows: Sequence[dict], stacked: dict | None = None) -> str:
    """The chapter's key numbers from :func:`~aimoe_lib.routing_study.condition_rows` (and,
    optionally, the live :func:`~aimoe_lib.routing_study.stacked_under_skew` result), a few lines of
    text."""
    batches = sorted({r["batch"] for r in rows})
    hi = batches[-1]
    lines = []
    for b in batches:
        z0, z2 = _pick(rows, "zipf", "0.0", b), _pick(rows, "zipf", "2.0", b)
        lines.append(f"batch {b}: Zipf s = 0 -> 2 changes throughput by "
                     f"{z2['tokens_per_s'] / z0['tokens_per_s'] - 1:+.1%} (tile ceiling "
                     f"{z2['ceiling'] / z0['ceiling'] - 1:+.1%}); busiest tile "
                     f"{z0['busiest_tile']:.0%} -> {z2['busiest_tile']:.0%} busy")
    base = _pick(rows, "tiles", "1", hi)
    io, st = _pick(rows, "strategy", "in_order", hi), _pick(rows, "strategy", "moe_stacked", hi)
    x4 = _pick(rows, "tiles", "4", hi)
    others = [r for r in rows if r["kind"] == "strategy" and r["batch"] == hi
              and r["value"] != "in_order"]
    gains = ", ".join(f"{r['value']} {r['tokens_per_s'] / 1e6:.3f} M "
                      f"({r['tokens_per_s'] / io['tokens_per_s'] - 1:+.1%})" for r in others)
    lines.append(f"batch {hi}, one {st['n_tiles']} x {st['n_tiers']} chip for every strategy "
                 f"({st['area_mm2'] / base['area_mm2'] - 1:+.1%} area over the "
                 f"{base['n_tiles']} x {base['n_tiers']} chip): in_order "
                 f"{io['tokens_per_s'] / 1e6:.3f} M tokens/s, {gains}")
    lines.append(f"batch {hi}: in_order on 4x the tiles {x4['tokens_per_s'] / 1e6:.3f} M tokens/s, "
                 f"{x4['tokens_per_s'] / base['tokens_per_s'] - 1:+.1%} at "
                 f"{x4['area_mm2'] / base['area_mm2']:.2f}x the chip area of "
                 f"{base['n_tiles']} x {base['n_tiers']}")
    if stacked:
        vals = ", ".join(f"s = {s:g}: {v / 1e6:.3f} M" for s, v in stacked.items())
        same = len({round(v, 6) for v in stacked.values()}) == 1
        lines.append(f"batch {hi}: moe_stacked under Zipf routing (simulated live): {vals}; "
                     f"{'identical' if same else 'different'}")
    return "\n".join(lines)


def format_condition_rows(rows: Sequence[dict], kind: str | None = None) -> str:
    """Aligned text table of :func:`~aimoe_lib.routing_study.condition_rows` (optionally one
    kind)."""
    body = [[r["kind"], r["value"], str(r["batch"]), f"{r['n_tiles']}x{r['n_tiers']}",
             f"{r['area_mm2']:,.0f}", f"{r['tokens_per_s'] / 1e6:.3f}", f"{r['ceiling'] / 1e6:.2f}",
             f"{r['of_ceiling']:.0%}", f"{r['busiest_tile']:.0%}",
             f"{r['stall_ns_per_token'] / 1e3:.0f}"]
            for r in rows if kind is None or r["kind"] == kind]
    return table(["varied", "value", "batch", "tiles x tiers", "mm²", "M tok/s", "ceiling",
                   "of ceiling", "busiest tile", "stall µs/token"], body,
                  [False, False, True, True, True, True, True, True, True, True])


def format_equal_capacity_rows(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.routing_study.equal_capacity_rows` ("-" where a
    row was not simulated). "layer's DPUs": busy fraction of the most loaded layer's DPUs."""
    def f(v, fmt):
        return "-" if not np.isfinite(v) else format(v, fmt)
    body = [[f"{r['n_tiles']}x{r['n_tiers']}", r["strategy"], f"{r['fill']:.1%}",
             str(r["max_always_active"]), f"{r['busiest_mvms']:.3f}",
             ", ".join(f"{n} {g}" for g, n in sorted(r["busiest_holds"].items())),
             f"{r['ceiling'] / 1e6:.3f}", f(r["tokens_per_s"] / 1e6, ".3f"),
             f(r["tiles_max"], ".0%"), f(r["dpu_max"], ".0%")] for r in rows]
    return table(["tiles x tiers", "mapping", "filled", "max always-active/tile",
                  "busiest tile MVMs/token", "busiest tile holds", "ceiling", "M tok/s",
                  "busiest tile", "layer's DPUs"], body,
                 [False, False, True, True, True, False, True, True, True, True])


def _pick(rows, kind, value, batch):
    return next(r for r in rows if r["kind"] == kind and r["value"] == value
                and r["batch"] == batch)


def conditions_overview(rows: Sequence[dict] | None = None) -> Figure:
    """The chapter's headline: the 64-expert MoE of ``data/conditions.json``. Left, throughput
    against the Zipf exponent at batch 8 and 256 with the analytic tile-load ceiling; right,
    throughput of each mapping strategy and tile count at both batches (chip area on the bars)."""
    rows = study.condition_rows() if rows is None else list(rows)
    fig = figure(13.0, 4.6)
    ax_z, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.35]})
    batches = sorted({r["batch"] for r in rows})
    colors = {batches[0]: C_ACTIVE, batches[-1]: C_DENSE}
    for b in batches:
        zr = sorted([r for r in rows if r["kind"] == "zipf" and r["batch"] == b],
                    key=lambda r: float(r["value"]))
        s = [float(r["value"]) for r in zr]
        ax_z.plot(s, [r["tokens_per_s"] / 1e6 for r in zr], "o-", color=colors.get(b, C_DENSE),
                  label=f"batch {b}: simulated")
    zr = sorted([r for r in rows if r["kind"] == "zipf" and r["batch"] == batches[-1]],
                key=lambda r: float(r["value"]))
    ax_z.plot([float(r["value"]) for r in zr], [r["ceiling"] / 1e6 for r in zr], "k--", lw=1,
              label="tile-load ceiling (any batch)")
    stacked = [r for r in rows if r["kind"] == "strategy" and r["value"] == "moe_stacked"]
    if stacked:
        top = max(stacked, key=lambda r: r["batch"])
        ax_z.axhline(top["ceiling"] / 1e6, color=C_STRATEGY["moe_stacked"], ls=":", lw=1.2,
                     label="moe_stacked ceiling (same for every s)")
        ax_z.plot([0.0], [top["tokens_per_s"] / 1e6], "*", ms=12, color=C_STRATEGY["moe_stacked"],
                  label=f"moe_stacked, batch {top['batch']}, uniform")
    ax_z.set(xlabel="Zipf exponent s of the routing", ylabel="generated tokens per second (M)",
             title=f"in_order mapping, {zr[0]['n_tiles']} tiles x {zr[0]['n_tiers']} tiers")
    ax_z.set_ylim(0, 1.3 * max(r["ceiling"] for r in rows if r["kind"] != "tiles") / 1e6)
    ax_z.legend(fontsize=FONT_SIZE - 3, ncol=2, loc="upper right")
    ax_z.grid(True, alpha=0.3)

    configs = [("strategy", "in_order"), ("strategy", "balanced"), ("strategy", "moe_stacked"),
               ("tiles", "0.5"), ("tiles", "2"), ("tiles", "4")]
    configs = [c for c in configs if any(r["kind"] == c[0] and r["value"] == c[1] for r in rows)]
    x = np.arange(len(configs))
    big, small = batches[-1], batches[0]
    vals = [_pick(rows, k, v, big) for k, v in configs]
    ax_b.bar(x, [r["tokens_per_s"] / 1e6 for r in vals], width=0.6,
             color=[C_STRATEGY.get(r["strategy"], C_DENSE) for r in vals],
             alpha=0.9, label=f"batch {big}: simulated")
    ax_b.scatter(x, [r["ceiling"] / 1e6 for r in vals], marker="_", s=400, color="k", zorder=3,
                 label="tile-load ceiling")
    for xi, r, (k, v) in zip(x, vals, configs, strict=True):
        ax_b.text(xi, 0.03, f"{r['n_tiles']:,} x {r['n_tiers']}\n{r['area_mm2']:,.0f} mm²",
                  ha="center", va="bottom", fontsize=FONT_SIZE - 3, color="white",
                  transform=ax_b.get_xaxis_transform())
        if small != big:
            rs = _pick(rows, k, v, small)
            ax_b.text(xi, r["ceiling"] / 1e6, f"batch {small}:\n{rs['tokens_per_s'] / 1e6:.3f} M",
                      ha="center", va="bottom", fontsize=FONT_SIZE - 3, color=C_ACTIVE)
    names = [v if k == "strategy" else f"in_order x{v} tiles" for k, v in configs]
    ax_b.set_xticks(x, names, rotation=15)
    ax_b.set(xlabel="mapping (uniform routing); on the bars: tiles x tiers, chip area",
             ylabel="generated tokens per second (M)",
             title=f"Strategies and spreading experts over more tiles, batch {big}")
    ax_b.set_ylim(0, 1.25 * max(r["ceiling"] for r in vals) / 1e6)
    ax_b.legend(fontsize=FONT_SIZE - 3, loc="upper left")
    ax_b.grid(True, axis="y", alpha=0.3)

    lo, hi = batches[0], batches[-1]
    z0l, z2l = _pick(rows, "zipf", "0.0", lo), _pick(rows, "zipf", "2.0", lo)
    z0h, z2h = _pick(rows, "zipf", "0.0", hi), _pick(rows, "zipf", "2.0", hi)
    io, st = _pick(rows, "strategy", "in_order", hi), _pick(rows, "strategy", "moe_stacked", hi)
    d_lo = z2l["tokens_per_s"] / z0l["tokens_per_s"] - 1
    same_chip = (st["n_tiles"], st["n_tiers"]) == (io["n_tiles"], io["n_tiers"])
    takeaway = (f"s = 0 -> 2 changes throughput by {d_lo:+.1%}"
                f" at batch {lo} but {z2h['tokens_per_s'] / z0h['tokens_per_s'] - 1:+.1%} at batch "
                f"{hi}; at batch {hi} moe_stacked gives "
                f"{st['tokens_per_s'] / io['tokens_per_s'] - 1:+.0%} over in_order "
                + ("on the same chip" if same_chip
                   else f"({st['area_mm2'] / io['area_mm2'] - 1:+.0%} area)"))
    return finish(fig, "Routing skew and mapping on a 3D chip: MoE-64 (top-1), shipped sweep",
                   takeaway)


def routing_dashboard(zipf_s: float = 1.0, strategy: str = "in_order",
                      tiles_multiplier: float = 1.0, batch: int = 64, seed: int = 0,
                      model: ModelSpec | None = None) -> Figure:
    """One setting of the small MoE simulated live
    (:func:`~aimoe_lib.routing_study.dashboard_numbers`): the load of every expert of MoE layer 0,
    every tile's busy fraction (simulated bars, expected markers), and the throughput against its
    two bounds."""
    d = study.dashboard_numbers(zipf_s, strategy, tiles_multiplier, batch, seed, model)
    model, chip, r = d["model"], d["chip"], d["result"]
    e, k = model.n_experts, model.top_k
    fig = figure(13.0, 4.2)
    ax_l, ax_t, ax_p = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.6, 0.8]})
    ax_l.bar(np.arange(e), d["load"] * e / k, color=C_MOE, alpha=0.7, label="routed")
    ax_l.plot(np.arange(e), d["pi"] * e / k, "k_", ms=10, label="expected")
    ax_l.axhline(1.0, color="k", ls=":", lw=1)
    ax_l.set(xlabel="expert of MoE layer 0 (index)", ylabel="tokens / even share (x)",
             title=f"Expert load, Zipf s = {zipf_s:g}")
    ax_l.set_xticks(range(0, e, max(1, e // 8)))
    ax_l.legend(fontsize=FONT_SIZE - 3)
    t = np.arange(chip.n_tiles)
    ax_t.bar(t, 100 * d["busy"], color=C_STRATEGY.get(strategy, C_DENSE), width=1.0,
             label="simulated")
    ax_t.plot(t, 100 * d["expected_busy"], "k.", ms=3, label="expected load / makespan")
    ax_t.set(xlabel="tile (index)", ylabel="busy time (% of the run)", ylim=(0, 105),
             title=f"{strategy} on {chip.n_tiles} tiles x {chip.n_tiers} tiers, batch {batch}")
    ax_t.legend(fontsize=FONT_SIZE - 3, loc="upper right")
    vals = [r.tokens_per_s, d["ceiling"], batch * d["alone_tokens_per_s"]]
    names = ["simulated", "tile ceiling", "batch x alone"]
    ax_p.bar(range(3), np.array(vals) / 1e6, color=[C_STRATEGY.get(strategy, C_DENSE),
                                                    "0.3", "0.65"])
    for i, v in enumerate(vals):
        ax_p.text(i, v / 1e6, f"{v / 1e6:.2f}", ha="center", va="bottom",
                  fontsize=FONT_SIZE - 3)
    ax_p.set_xticks(range(3), names, rotation=15)
    ax_p.set(xlabel="throughput and its bounds", ylabel="generated tokens per second (M)",
             title="Throughput")
    ax_p.set_ylim(0, 1.2 * max(vals) / 1e6)
    busiest = float(d["busy"].max())
    takeaway = (f"{r.tokens_per_s / 1e6:.2f} M tokens/s = {r.tokens_per_s / d['ceiling']:.0%} of "
                f"the tile ceiling; busiest tile {busiest:.0%} busy; intra-token conflicts "
                f"{d['intra_token']:.2f} per token and layer (closed form); stall "
                f"{r.stall_ns / r.generated_tokens / 1e3:.1f} µs per token")
    return finish(fig, f"Skew, mapping and batch: {model.name}", takeaway)



# ============================================================================ trained-router traces
C_ROUTING = {"trace": "tab:red", "uniform": "tab:blue", "zipf": "tab:orange",
             "pairs": "tab:cyan"}
"""Colour of each routing of :func:`~aimoe_lib.routing_study.trace_strategy_rows`."""


def format_trace_summary(rows: Sequence[dict]) -> str:
    """A few lines per trace of :func:`~aimoe_lib.routing_study.trace_summary`: measured skew, the
    fitted Zipf exponent and the pair statistics against their references."""
    def per_layer(a, fmt):
        return " ".join(fmt.format(v) for v in a)
    lines = []
    for r in rows:
        lines += [
            f"{r['name']} (E = {r['n_experts']}, top-{r['top_k']}, {r['n_tokens']:,} tokens = "
            f"{r['n_plan'] + r['n_replay']} windows of {r['window']}; {r['n_plan']} plan, "
            f"{r['n_replay']} replay)",
            f"  busiest expert / even share per layer: {per_layer(r['imbalance'], '{:.2f}')} "
            f"(mean {r['mean_imbalance']:.2f})",
            f"  Zipf fit (planning windows): s = {r['zipf_s']:.2f} (per layer "
            f"{per_layer(r['zipf_s_per_layer'], '{:.2f}')}; replay windows "
            f"{r['zipf_s_replay']:.2f}; uniform routing, as many tokens: {r['zipf_s_noise']:.2f})",
            f"  rms log error {r['zipf_rms_log']:.3f} (uniform {r['uniform_rms_log']:.3f}); "
            f"busiest expert under the fit {r['zipf_imbalance']:.2f}x",
            f"  pairs on the top {study.TOP_PAIR_FRACTION:.0%} of pairs: "
            f"{per_layer(r['top_pairs'], '{:.0%}')} (uniform {r['top_pairs_uniform']:.0%}, block "
            f"density {r['top_pairs_block']:.0%}); never together: "
            f"{per_layer(r['never'], '{:d}')} of {r['n_experts'] * (r['n_experts'] - 1) // 2}",
            f"  pairs inside the best {r['n_groups']} groups (found on planning windows): "
            f"{per_layer(r['within'], '{:.0%}')} (uniform {r['within_uniform']:.0%}, independent "
            f"picks {np.mean(r['within_independent']):.0%}, block density {r['within_block']:.0%})"]
    return "\n".join(lines)


def trace_routing_overview(rows: Sequence[dict] | None = None, layer: int | None = None) -> Figure:
    """What the trained routers do, over :func:`~aimoe_lib.routing_study.trace_summary`: expert
    popularity by rank against the fitted Zipf law (every trace); the pair density of one MoE
    layer of the first trace (replay windows, experts ordered by the groups found on the planning
    windows; default: the layer with the most pairs inside groups); and the pair concentration of
    the first trace per layer against uniform routing and the synthetic block density."""
    rows = study.trace_summary() if rows is None else list(rows)
    r0 = rows[0]
    fig = figure(13.5, 4.4)
    ax_p, ax_c, ax_s = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.0, 1.1]})
    for j, r in enumerate(rows):
        e = r["n_experts"]
        color = [C_MOE, C_ACTIVE, "tab:blue"][j % 3]
        for li, sh in enumerate(r["sorted_share"]):
            ax_p.plot(np.arange(e), sh * e, color=color, lw=0.9, alpha=0.6,
                      label=f"{r['name']}: trace, each layer" if li == 0 else None)
        ax_p.plot(np.arange(e), r["zipf_share"] * e, "--", color=color, lw=2,
                  label=f"{r['name']}: Zipf s = {r['zipf_s']:.2f} (fitted)")
    ax_p.axhline(1.0, color="k", ls=":", lw=1, label="uniform")
    ax_p.set(xlabel="expert, by popularity rank (0 = most popular)",
             ylabel="share of expert calls / even share (x)",
             title="Expert popularity (replay windows)")
    ax_p.legend(fontsize=FONT_SIZE - 3)
    ax_p.grid(True, alpha=0.3)

    e = r0["n_experts"]
    li = int(np.argmax(r0["within"])) if layer is None else int(layer)
    g = r0["groups"][li]
    order = np.argsort(g, kind="stable")
    d = r0["density"][li][np.ix_(order, order)] * e * (e - 1)
    im = ax_c.imshow(d, cmap="magma", vmin=0)
    for b in np.flatnonzero(np.diff(g[order])) + 0.5:
        ax_c.axhline(b, color="w", lw=0.8)
        ax_c.axvline(b, color="w", lw=0.8)
    ax_c.set_xticks(range(e), order, fontsize=FONT_SIZE - 4)
    ax_c.set_yticks(range(e), order, fontsize=FONT_SIZE - 4)
    ax_c.set(xlabel="expert (ordered by group)", ylabel="expert (ordered by group)",
             title=f"{r0['name']}, MoE layer {li}: pair frequency")
    fig.colorbar(im, ax=ax_c, shrink=0.85, label="pair frequency / uniform (x)")

    n_l = len(r0["within"])
    x = np.arange(n_l)
    ax_s.bar(x - 0.2, 100 * r0["top_pairs"], width=0.4, color=C_MOE,
             label=f"top {study.TOP_PAIR_FRACTION:.0%} of pairs")
    ax_s.bar(x + 0.2, 100 * r0["within"], width=0.4, color=C_ACTIVE,
             label=f"inside {r0['n_groups']} groups")
    for v, c, ls, lab in ((r0["top_pairs_block"], C_MOE, "--", "top pairs, block density"),
                          (r0["top_pairs_uniform"], C_MOE, ":", "top pairs, uniform"),
                          (r0["within_block"], C_ACTIVE, "--", "in groups, block density"),
                          (r0["within_uniform"], C_ACTIVE, ":", "in groups, uniform")):
        ax_s.axhline(100 * v, color=c, ls=ls, lw=1.2, label=lab)
    ax_s.set_xticks(x, [str(i) for i in x])
    ax_s.set(xlabel="MoE layer", ylabel="share of the pair probability (%)", ylim=(0, 115),
             title=f"{r0['name']}: concentration of pairs")
    ax_s.legend(fontsize=FONT_SIZE - 4, loc="upper left", ncol=2)
    ax_s.grid(True, axis="y", alpha=0.3)
    parts = [f"{r['name']} s = {r['zipf_s']:.2f}" for r in rows]
    takeaway = ("Nearly even load (fitted Zipf " + ", ".join(parts) + f"), but {r0['name']}'s "
                f"top {study.TOP_PAIR_FRACTION:.0%} of pairs carry {np.min(r0['top_pairs']):.0%}-"
                f"{np.max(r0['top_pairs']):.0%} of them; its best groups hold "
                f"{np.min(r0['within']):.0%}-{np.max(r0['within']):.0%}, not "
                f"{r0['within_block']:.0%}")
    return finish(fig, "What trained routers do: skew and co-activation of the recorded traces",
                  takeaway)


def format_trace_rows(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.routing_study.trace_strategy_rows` (tokens/s as the
    mean and range over the repeats, the change against uniform routing, energy per generated
    token in µJ: dynamic, i.e. the operations alone, and total, static power included)."""
    base = {(r["model"], r["strategy"]): r["tokens_per_s"] for r in rows
            if r["routing"] == "uniform"}
    body = []
    for r in rows:
        ref = base.get((r["model"], r["strategy"]))
        d = "-" if ref is None else f"{r['tokens_per_s'] / ref - 1:+.1%}"
        body.append([r["case"], r["strategy"], f"{r['n_tiles']}x{r['n_tiers']}",
                     r["routing_label"], f"{r['tokens_per_s'] / 1e6:.3f}",
                     f"{r['tokens_per_s_min'] / 1e6:.3f}-{r['tokens_per_s_max'] / 1e6:.3f}", d,
                     f"{r['of_ceiling']:.0%}", f"{r['conflicts_per_token']:.1f}",
                     f"{r['dynamic_pj_per_token'] / 1e6:.3f}",
                     f"{r['energy_per_token_pj'] / 1e6:.3f}"])
    return table(["model", "mapping", "tiles x tiers", "routing", "M tok/s", "range",
                  "vs uniform", "of ceiling", "conflicts/token", "µJ dynamic", "µJ total"], body,
                 [False, False, True, False, True, True, True, True, True, True, True])


def format_trace_energy(rows: Sequence[dict]) -> str:
    """Energy per generated token of :func:`~aimoe_lib.routing_study.trace_strategy_rows`, split:
    tier MVMs per token and their mean energy, the dynamic energy (MVMs, attention, the rest:
    digital operations, transfers, off-chip memory), the static energy and the total, in nJ, with
    the preset of each row."""
    body = []
    for r in rows:
        e = r["energy_by_kind_pj"]
        rest = r["dynamic_pj_per_token"] - e["mvm"] - e["attention"]
        body.append([r["preset"], r["case"], r["strategy"], r["routing"],
                     f"{r['tokens_per_s'] / 1e6:.3f}", f"{r['tier_mvms_per_token']:.2f}",
                     f"{e['mvm'] / r['tier_mvms_per_token'] / 1e3:.2f}",
                     f"{e['mvm'] / 1e3:,.1f}", f"{e['attention'] / 1e3:,.1f}",
                     f"{rest / 1e3:,.1f}", f"{r['dynamic_pj_per_token'] / 1e3:,.1f}",
                     f"{e['passive'] / 1e3:,.1f}", f"{r['energy_per_token_pj'] / 1e3:,.1f}",
                     f"{e['passive'] / r['energy_per_token_pj']:.0%}"])
    return table(["preset", "model", "mapping", "routing", "M tok/s", "tier MVMs", "nJ/MVM",
                  "MVM nJ", "attention nJ", "other nJ", "dynamic nJ", "static nJ", "total nJ",
                  "static share"],
                 body, [False, False, False, False] + [True] * 10)


def trace_strategy_effects(rows: Sequence[dict] | None = None) -> Figure:
    """Over :func:`~aimoe_lib.routing_study.trace_strategy_rows`, one row of panels per traced
    model, per mapping strategy and routing: throughput (black tick: tile-load ceiling), its
    change against uniform routing (whiskers: range over the repeats; grey band: the range of the
    uniform runs themselves), tile conflicts and energy per generated token (light bar: total,
    static power included; solid part: dynamic, the operations alone)."""
    rows = study.trace_strategy_rows() if rows is None else list(rows)
    cases = list(dict.fromkeys(r["case"] for r in rows))
    routings = list(dict.fromkeys(r["routing"] for r in rows))
    fig = figure(15.0, 3.5 * len(cases) + 0.7)
    axes = np.atleast_2d(fig.subplots(len(cases), 4))
    w = 0.8 / len(routings)
    uni = {(r["case"], r["strategy"]): r for r in rows if r["routing"] == "uniform"}
    for ci, case in enumerate(cases):
        rr = [r for r in rows if r["case"] == case]
        strategies = list(dict.fromkeys(r["strategy"] for r in rr))
        x = np.arange(len(strategies))
        for j, name in enumerate(routings):
            by = {r["strategy"]: r for r in rr if r["routing"] == name}
            if not by:
                continue
            xs = x + (j - (len(routings) - 1) / 2) * w
            lab = next(iter(by.values()))["routing_label"]
            color = C_ROUTING.get(name, C_DENSE)

            def get(key, scale=1.0, by=by, strategies=strategies):
                return np.array([by[st][key] * scale if st in by else np.nan
                                 for st in strategies])
            axes[ci, 0].bar(xs, get("tokens_per_s", 1e-6), width=w, color=color, label=lab)
            axes[ci, 0].scatter(xs, get("ceiling", 1e-6), marker="_", s=60, color="k",
                                zorder=3, label="tile-load ceiling" if j == 0 else None)
            ref = np.array([uni[(case, st)]["tokens_per_s"] if (case, st) in uni else np.nan
                            for st in strategies])
            rel = 100 * (get("tokens_per_s") / ref - 1)
            err = np.vstack([rel - 100 * (get("tokens_per_s_min") / ref - 1),
                             100 * (get("tokens_per_s_max") / ref - 1) - rel])
            if name == "uniform":
                for xi, lo, hi in zip(x, rel - err[0], rel + err[1], strict=True):
                    axes[ci, 1].fill_between([xi - 0.42, xi + 0.42], lo, hi, color="0.85",
                                             lw=0)
            axes[ci, 1].errorbar(xs, rel, yerr=err, fmt="o", color=color, ms=5, capsize=3,
                                 label=lab)
            axes[ci, 2].bar(xs, get("conflicts_per_token"), width=w, color=color, label=lab)
            axes[ci, 3].bar(xs, get("energy_per_token_pj", 1e-6), width=w, color=color,
                            alpha=0.35, label=lab)
            axes[ci, 3].bar(xs, get("dynamic_pj_per_token", 1e-6), width=w, color=color)
        shares = [1 - r["dynamic_pj_per_token"] / r["energy_per_token_pj"] for r in rr]
        static = f"{min(shares):.0%}" if f"{min(shares):.0%}" == f"{max(shares):.0%}" \
            else f"{min(shares):.0%}-{max(shares):.0%}"
        axes[ci, 1].axhline(0, color="k", lw=0.8)
        chip = f"{rr[0]['preset']} chips, batch {rr[0]['batch']}"
        for ax, (ylabel, title) in zip(axes[ci], (
                ("generated tokens per second (M)", f"{case}: throughput ({chip})"),
                ("throughput vs uniform routing (%)", f"{case}: change against uniform"),
                ("tile conflicts per generated token", f"{case}: tier conflicts"),
                ("energy per generated token (µJ; solid: dynamic)",
                 f"{case}: energy ({static} static)")),
                strict=True):
            ax.set_xticks(x, strategies, rotation=12)
            ax.set(xlabel="mapping strategy", ylabel=ylabel, title=title)
            ax.grid(True, axis="y", alpha=0.3)
        axes[ci, 0].set_ylim(0, 1.4 * max(r["ceiling"] for r in rr) / 1e6)
    axes[0, 0].legend(fontsize=FONT_SIZE - 3, ncol=2, loc="upper left")
    tr = [r for r in rows if r["routing"] == "trace" and (r["case"], r["strategy"]) in uni]
    if tr:
        def d(r):
            return r["tokens_per_s"] / uni[(r["case"], r["strategy"])]["tokens_per_s"] - 1
        worst = min(tr, key=d)
        dyn: dict = {}
        for r in rows:
            dyn.setdefault((r["case"], r["strategy"]), []).append(r["dynamic_pj_per_token"])
        spread = max(max(v) / min(v) - 1 for v in dyn.values())
        shares = [1 - r["dynamic_pj_per_token"] / r["energy_per_token_pj"] for r in rows]
        takeaway = (f"The trained routers' traces run within {max(abs(d(r)) for r in tr):.1%} of "
                    f"uniform routing on every mapping (largest loss: {worst['case']} "
                    f"{worst['strategy']}, {d(worst):+.1%}); dynamic energy per token differs by "
                    f"at most {spread:.2%} between routings; static power is "
                    f"{min(shares):.0%}-{max(shares):.0%} of the total")
    else:
        takeaway = "Simulated throughput, conflicts and energy per token under each routing"
    return finish(fig, "Trained-router traces on a 3D chip: trace vs synthetic routing",
                  takeaway)
