"""Chapter 6 (routing skew and tier conflicts): the numbers and figures.

Every figure function returns a ``matplotlib.figure.Figure`` (not registered with pyplot) with a
title (``fig.get_suptitle()``), axis labels with units and a one-line takeaway computed from the
numbers it plots (``fig.get_supxlabel()``), like :mod:`aimoe_lib.viz`. Each figure has a *rows*
function returning the numbers it draws (plain dicts), so that the book prints and checks them.

* Skew: :func:`~aimoe_lib.viz_routing.load_imbalance` /
  :func:`~aimoe_lib.viz_routing.expert_load_skew`.
* Co-activation: :func:`~aimoe_lib.viz_routing.block_coactivation`,
  :func:`~aimoe_lib.viz_routing.block_share`, :func:`~aimoe_lib.viz_routing.coactivation_maps`.
* Strategies on the small MoE, simulated live: :func:`~aimoe_lib.viz_routing.strategy_rows` /
  :func:`~aimoe_lib.viz_routing.strategy_effects`.
* Closed form vs Monte Carlo vs event simulation: :func:`~aimoe_lib.viz_routing.conflict_checks` /
  :func:`~aimoe_lib.viz_routing.analytic_vs_simulated`.
* Throughput and stall against batch: :func:`~aimoe_lib.viz_routing.batch_rows` /
  :func:`~aimoe_lib.viz_routing.batch_curves`.
* The 64-expert model of the shipped ``data/conditions.json``:
  :func:`~aimoe_lib.viz_routing.condition_rows` /
  :func:`~aimoe_lib.viz_routing.conditions_overview`.
* One panel over skew, strategy, tiles and batch: :func:`~aimoe_lib.viz_routing.routing_dashboard`.
* The 64-expert MoE stacked, under skew (simulated live):
  :func:`~aimoe_lib.viz_routing.stacked_under_skew`.
* A synthetic routing trace written, read back and replayed:
  :func:`~aimoe_lib.viz_routing.trace_round_trip`.

The small MoE (:func:`~aimoe_lib.viz_routing.small_moe`) has d_model 512, 4 layers and 16 GELU
experts of width 1024 (top-2); on 512 x 512 tiers an expert is 4 blocks. Its chips
(:func:`~aimoe_lib.viz_routing.small_chip`) follow :func:`~aimoe_lib.experiments.chip_for`: the
``paper`` preset with digital units provisioned per layer, as many tiles as the dense base model has
blocks (34) times a multiplier, and as many tiers as the MoE then needs; ``moe_stacked`` gets at
least 2 E tiers, as in :func:`~aimoe_lib.experiments.condition_points`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .. import conflicts as cf
from .. import experiments, routing
from ..hardware import ChipConfig
from ..mapping import STRATEGIES, Mapping, expected_conflicts, map_model
from ..models import ModelSpec
from ..routing import RoutingSpec
from ..simulator import SimResult, Workload, simulate
from .chapters123 import C_ACTIVE, C_DENSE, C_MOE, FONT_SIZE, _figure, _finish, _table

__all__ = [
    "small_moe",
    "small_chip",
    "block_coactivation",
    "block_share",
    "analytic_routing",
    "load_imbalance",
    "expert_load_skew",
    "coactivation_maps",
    "DEFAULT_CONFIGS",
    "strategy_rows",
    "format_strategy_rows",
    "strategy_effects",
    "conflict_checks",
    "format_conflict_checks",
    "analytic_vs_simulated",
    "DEFAULT_BATCH_CONFIGS",
    "batch_rows",
    "batch_curves",
    "condition_rows",
    "format_condition_rows",
    "condition_summary",
    "conditions_overview",
    "dashboard_numbers",
    "routing_dashboard",
    "stacked_under_skew",
    "trace_round_trip",
]

ZIPF_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0)
"""Zipf exponents of the skew sweeps (those of :func:`~aimoe_lib.experiments.condition_points`)."""

WORKLOAD = Workload(batch=64, prompt_len=4, gen_len=4)
"""Default workload of the live simulations: 64 sequences of 4 prompt + 4 generated tokens."""

PLAN_SEED_OFFSET = 1
"""The ``coactivation`` strategy plans from tokens routed with ``seed + PLAN_SEED_OFFSET``, so
it never sees the very tokens it is then simulated with."""

PLAN_TOKENS = 4096
"""Tokens routed to measure the co-activation density the ``coactivation`` strategy plans with."""

C_STRATEGY = {"in_order": "tab:blue", "balanced": "tab:orange", "random": "tab:olive",
              "coactivation": "tab:green", "moe_stacked": "tab:purple"}
"""Colour of each mapping strategy (spread-out chips reuse their strategy's colour, lighter)."""


# ============================================================================ models, chips
def small_moe(**overrides) -> ModelSpec:
    """The chapter's small MoE: d_model 512, 4 layers, 8 heads, 16 GELU experts of width 1024,
    top-2, vocabulary 1024 (278 blocks of 512 x 512)."""
    base = dict(name="moe-16e-top2", d_model=512, n_layers=4, n_heads=8, d_ff=1024,
                vocab_size=1024, ffn="gelu", norm="layernorm", n_experts=16, top_k=2)
    return ModelSpec(**{**base, **overrides})


def _dense_base_blocks(model: ModelSpec) -> int:
    dense = model.replace(name=f"{model.name}-dense", n_experts=0, top_k=0)
    return experiments.blocks_needed(dense)


def small_chip(model: ModelSpec | None = None, strategy: str = "in_order",
               tiles_multiplier: float = 1.0) -> ChipConfig:
    """The chip a ``strategy`` runs ``model`` on (module docstring): tiles = blocks of the dense
    base model x ``tiles_multiplier``, tiers as needed (at least 2 E for ``moe_stacked``)."""
    model = small_moe() if model is None else model
    if not (isinstance(tiles_multiplier, int | float) and tiles_multiplier > 0):
        raise ValueError(f"tiles_multiplier={tiles_multiplier!r}: must be a number > 0 "
                         "(1 = as many tiles as the dense base model has blocks)")
    n_tiles = max(1, int(round(_dense_base_blocks(model) * tiles_multiplier)))
    chip = experiments.chip_for(model, n_tiles=n_tiles)
    if strategy == "moe_stacked":
        chip = chip.replace(n_tiers=max(chip.n_tiers, 2 * model.n_experts))
    return chip


def block_coactivation(n_experts: int = 16, n_groups: int = 4, within: float = 0.9) -> np.ndarray:
    """A pair density with block structure: the experts form ``n_groups`` groups of consecutive
    indices; pairs inside a group share ``within`` of the probability evenly, pairs across groups
    the rest. Symmetric, zero diagonal, sums to 1: a ``coactivation`` RoutingSpec's input."""
    if not isinstance(n_groups, int) or n_groups < 1 or n_experts % n_groups \
            or n_experts // n_groups < 2:
        raise ValueError(f"n_groups={n_groups!r}: must divide n_experts={n_experts} into groups "
                         "of at least 2 experts")
    if not 0.0 <= within <= 1.0 or (n_groups == 1 and within < 1.0):
        raise ValueError(f"within={within!r}: must be in [0, 1] (1 with a single group)")
    grp = np.arange(n_experts) // (n_experts // n_groups)
    same = (grp[:, None] == grp[None, :]) & ~np.eye(n_experts, dtype=bool)
    diff = grp[:, None] != grp[None, :]
    c = np.where(same, within / same.sum(), 0.0)
    if diff.any():
        c += np.where(diff, (1.0 - within) / diff.sum(), 0.0)
    return c / c.sum()


def block_share(density, n_groups: int) -> float:
    """Share of the pair probability of an (E, E) density (or the mean over layers of an
    (L, E, E) one) that falls inside the ``n_groups`` diagonal blocks."""
    d = np.asarray(density, dtype=float)
    d = d[None] if d.ndim == 2 else d
    e = d.shape[-1]
    grp = np.arange(e) // (e // n_groups)
    same = grp[:, None] == grp[None, :]
    return float(np.mean((d * same).sum(axis=(1, 2)) / d.sum(axis=(1, 2))))


def analytic_routing(model: ModelSpec, spec="uniform", seed: int = 0) -> dict:
    """Keyword arguments describing ``spec`` for the closed forms of :mod:`aimoe_lib.conflicts`:
    ``{}`` (uniform), ``{"expert_probs": ...}`` (zipf, trace) or ``{"pair_density": ...}``
    (coactivation)."""
    rs = spec if isinstance(spec, RoutingSpec) else RoutingSpec(kind=spec)
    if rs.kind == "coactivation":
        return {"pair_density": rs.coactivation}
    p = cf.layer_probs(model, rs, seed)
    return {} if p is None else {"expert_probs": p}


def _plan_density(model: ModelSpec, spec, seed: int) -> np.ndarray:
    ch = routing.route(model, PLAN_TOKENS, spec, seed=seed + PLAN_SEED_OFFSET)
    return routing.coactivation_density(ch, model.n_experts)


def _map(model: ModelSpec, strategy: str, tiles_multiplier: float, spec, seed: int):
    chip = small_chip(model, strategy, tiles_multiplier)
    coact = _plan_density(model, spec, seed) if strategy == "coactivation" else None
    return chip, map_model(model, chip, strategy, coactivation=coact)


def _zipf(s: float) -> RoutingSpec:
    return RoutingSpec(kind="zipf", zipf_s=float(s))


def _label(strategy: str, tiles_multiplier: float) -> str:
    return strategy if tiles_multiplier == 1 else f"{strategy} x{tiles_multiplier:g} tiles"


# ============================================================================ skew
def load_imbalance(models: Sequence[ModelSpec], s_values=ZIPF_VALUES, n_tokens: int = 8192,
                   seed: int = 0) -> list[dict]:
    """Max/mean expert load per model and Zipf exponent: measured over ``n_tokens`` routed tokens
    (:func:`~aimoe_lib.routing.expert_load`, mean over MoE layers of each layer's busiest expert
    over the even share k/E) and expected (the same from the inclusion probabilities of
    :func:`~aimoe_lib.conflicts.inclusion_probs`). Rows: model, n_experts, top_k, zipf_s,
    measured, expected, top_share (expected share of all expert calls that go to the busiest
    expert of a layer)."""
    rows = []
    for model in models:
        e, k = model.n_experts, model.top_k
        for s in s_values:
            spec = _zipf(s)
            load = routing.expert_load(routing.route(model, n_tokens, spec, seed=seed), e)
            probs = cf.layer_probs(model, spec, seed)
            if probs is None:
                pis = np.full((load.shape[0], e), k / e)
            else:
                pis = np.stack([cf.inclusion_probs(cf.set_distribution(e, k, p)) for p in probs])
            rows.append({"model": model.name, "n_experts": e, "top_k": k, "zipf_s": float(s),
                         "measured": float(np.mean(load.max(axis=1) * e / k)),
                         "expected": float(np.mean(pis.max(axis=1) * e / k)),
                         "top_share": float(np.mean(pis.max(axis=1) / k))})
    return rows


def expert_load_skew(models: Sequence[ModelSpec] | None = None, s_values=ZIPF_VALUES,
                     n_tokens: int = 8192, seed: int = 0) -> Figure:
    """Expert load under Zipf routing: the load of every expert of the first model's first MoE
    layer by popularity rank (measured bars, expected line), and max/mean load against the Zipf
    exponent for every model (expected line, measured markers)."""
    if models is None:
        models = (small_moe(), experiments.moe_variant(experiments.BASE, 64))
    rows = load_imbalance(models, s_values, n_tokens, seed)
    m0 = models[0]
    e, k = m0.n_experts, m0.top_k
    fig = _figure(11.5, 4.2)
    ax_r, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})
    shown = [s for s in s_values if s in (0.0, 1.0, 2.0)] or list(s_values)[:3]
    width = 0.8 / len(shown)
    cmap = [C_ACTIVE, "tab:orange", "tab:red", C_MOE, C_DENSE]
    for i, s in enumerate(shown):
        load = routing.expert_load(routing.route(m0, n_tokens, _zipf(s), seed=seed), e)[0]
        probs = cf.layer_probs(m0, _zipf(s), seed)
        pi = (np.full(e, k / e) if probs is None
              else cf.inclusion_probs(cf.set_distribution(e, k, probs[0])))
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
    return _finish(fig, "Zipf-skewed routing: how unevenly experts are loaded", takeaway)


# ============================================================================ co-activation
def coactivation_maps(model: ModelSpec | None = None, density=None, n_groups: int = 4,
                      n_tokens: int = 8192, seed: int = 0, zipf_s: float = 1.5) -> Figure:
    """Pair densities as heatmaps: the prescribed block density, the one measured from tokens
    routed with it (:func:`~aimoe_lib.routing.coactivation_density`, MoE layer 0), and the one
    measured under Zipf routing (s = ``zipf_s``) for contrast."""
    model = small_moe() if model is None else model
    density = block_coactivation(model.n_experts, n_groups) if density is None else density
    spec = RoutingSpec(kind="coactivation", coactivation=density)
    measured = routing.coactivation_density(routing.route(model, n_tokens, spec, seed=seed),
                                            model.n_experts)
    zipf = routing.coactivation_density(routing.route(model, n_tokens, _zipf(zipf_s), seed=seed),
                                        model.n_experts)
    mats = [np.asarray(density), measured[0], zipf[0]]
    titles = ["prescribed (block structure)", f"measured, {n_tokens:,} tokens (layer 0)",
              f"measured under Zipf s = {zipf_s:g} (layer 0)"]
    vmax = max(float(m.max()) for m in mats)
    fig = _figure(12.5, 4.2)
    axes = fig.subplots(1, 3)
    for ax, mat, title in zip(axes, mats, titles, strict=True):
        im = ax.imshow(mat, cmap="Purples", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set(xlabel="expert j (index)", ylabel="expert i (index)", title=title)
    fig.colorbar(im, ax=list(axes), label="pair density C[i, j] (probability)", shrink=0.85)
    share_p, share_m = block_share(density, n_groups), block_share(measured, n_groups)
    share_z = block_share(zipf, n_groups)
    takeaway = (f"Pairs inside the {n_groups} groups: {share_p:.1%} prescribed, {share_m:.1%} "
                f"measured over all {measured.shape[0]} MoE layers; Zipf routing gives "
                f"{share_z:.1%}, set by popularity, not by pairing")
    return _finish(fig, f"Co-activation: which experts a token picks together ({model.name})",
                   takeaway)


# ============================================================================ strategies
DEFAULT_CONFIGS = (("in_order", 1.0), ("balanced", 1.0), ("coactivation", 1.0),
                   ("moe_stacked", 1.0), ("in_order", 2.0), ("in_order", 4.0))
"""(strategy, tiles multiplier) pairs compared by :func:`~aimoe_lib.viz_routing.strategy_rows`: the
mapping strategies on the base chip, and in_order on chips with 2 and 4 times the tiles (experts
spread wider)."""


def _run(model, chip, m, spec, workload: Workload) -> SimResult:
    w = Workload(batch=workload.batch, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                 kv_cache=workload.kv_cache, routing=spec, seed=workload.seed)
    return simulate(model, chip, m, w)


def strategy_rows(model: ModelSpec | None = None, routings: dict | None = None,
                  configs=DEFAULT_CONFIGS, workload: Workload = WORKLOAD) -> list[dict]:
    """Live simulations of ``model`` under every routing (name -> RoutingSpec) and mapping config.

    Row keys: routing, strategy, tiles_multiplier, batch, label, n_tiles, n_tiers, area_mm2;
    ``intra_token`` (closed-form waiting tier MVMs per token and MoE layer,
    :func:`~aimoe_lib.conflicts.expected_intra_token_conflicts`); the simulated
    ``tokens_per_s``, ``conflicts_per_token`` and ``stall_ns_per_token`` (per generated token,
    every kind of tile conflict), ``busiest_tile`` (busy fraction); ``ceiling`` (tokens/s,
    :func:`~aimoe_lib.conflicts.throughput_ceiling`) and ``of_ceiling`` (simulated / ceiling).
    ``coactivation`` plans with the density measured from ``PLAN_TOKENS`` tokens of the same
    routing (another seed).
    """
    model = small_moe() if model is None else model
    if routings is None:
        routings = {"uniform": RoutingSpec(), "zipf s=1.5": _zipf(1.5),
                    "co-activation blocks": RoutingSpec(
                        kind="coactivation", coactivation=block_coactivation(model.n_experts))}
    rows = []
    for rname, spec in routings.items():
        ana = analytic_routing(model, spec, workload.seed)
        for strategy, mult in configs:
            chip, m = _map(model, strategy, mult, spec, workload.seed)
            r = _run(model, chip, m, spec, workload)
            w = Workload(batch=workload.batch, prompt_len=workload.prompt_len,
                         gen_len=workload.gen_len, kv_cache=workload.kv_cache, routing=spec)
            ceil = cf.throughput_ceiling(m, w, **ana)
            n = r.generated_tokens
            rows.append({
                "routing": rname, "strategy": strategy, "tiles_multiplier": float(mult),
                "batch": workload.batch,
                "label": _label(strategy, mult), "n_tiles": chip.n_tiles,
                "n_tiers": chip.n_tiers, "area_mm2": chip.area_mm2,
                "intra_token": float(cf.expected_intra_token_conflicts(m, **ana).mean()),
                "tokens_per_s": r.tokens_per_s, "conflicts_per_token": r.tile_conflicts / n,
                "stall_ns_per_token": r.stall_ns / n,
                "busiest_tile": r.busy_fraction()["tiles_max"], "ceiling": ceil,
                "of_ceiling": r.tokens_per_s / ceil})
    return rows


def format_strategy_rows(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.viz_routing.strategy_rows` (M tokens/s to 2
    decimals)."""
    body = [[r["routing"], r["label"], f"{r['n_tiles']}x{r['n_tiers']}", f"{r['area_mm2']:.0f}",
             f"{r['intra_token']:.2f}", f"{r['tokens_per_s'] / 1e6:.2f}",
             f"{r['ceiling'] / 1e6:.2f}", f"{r['of_ceiling']:.0%}",
             f"{r['stall_ns_per_token'] / 1e3:.0f}"] for r in rows]
    return _table(["routing", "mapping", "tiles x tiers", "mm²", "intra-token", "M tok/s",
                   "ceiling", "of ceiling", "stall µs/token"], body,
                  [False, False, True, True, True, True, True, True, True])


def strategy_effects(rows: Sequence[dict] | None = None) -> Figure:
    """Grouped bars over :func:`~aimoe_lib.viz_routing.strategy_rows`: closed-form intra-token
    conflicts, simulated throughput (with the tile-load ceiling as a black tick) and stall per
    generated token, for every mapping under every routing."""
    rows = strategy_rows() if rows is None else list(rows)
    routings = list(dict.fromkeys(r["routing"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    x = np.arange(len(routings))
    w = 0.8 / len(labels)
    fig = _figure(13.0, 4.4)
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
    return _finish(fig, f"Mapping strategies under {len(routings)} routings: small MoE, batch "
                   f"{rows[0]['batch']} (simulated live)", takeaway)


# ============================================================================ checks
def conflict_checks(model: ModelSpec | None = None, routings: dict | None = None,
                    configs=DEFAULT_CONFIGS[:4], n_tokens: int = 2000, n_seeds: int = 8,
                    n_isolated: int = 2000) -> list[dict]:
    """Closed form against sampling and simulation, per routing and mapping config.

    Row keys: routing, label; ``closed`` (waiting tier MVMs per token and MoE layer,
    ``count="blocks"``), ``mc`` and ``mc_se`` (mean and standard error over ``n_seeds`` runs of
    :func:`~aimoe_lib.mapping.expected_conflicts` with ``n_tokens`` tokens each; NaN for a
    co-activation routing, which that function cannot sample); ``up_starts`` and ``all_starts``
    (closed-form waiting starts per token and MoE layer, gate/up stage only and both stages);
    ``simulated`` (tile conflicts per token and MoE layer of ``n_isolated`` tokens simulated one
    at a time: batch 1, one-token prompt, so no other token competes).
    """
    model = small_moe() if model is None else model
    if routings is None:
        routings = {"uniform": RoutingSpec(),
                    "zipf s=1.5, same ranks": RoutingSpec(kind="zipf", zipf_s=1.5, permute=False),
                    "co-activation blocks": RoutingSpec(
                        kind="coactivation", coactivation=block_coactivation(model.n_experts))}
    n_moe = len(routing.moe_layer_keys(model))
    rows = []
    for rname, spec in routings.items():
        ana = analytic_routing(model, spec, 0)
        for strategy, mult in configs:
            chip, m = _map(model, strategy, mult, spec, 0)
            closed = float(cf.expected_intra_token_conflicts(m, **ana).mean())
            mc = se = math.nan
            if "pair_density" not in ana:
                runs = np.array([_mc(m, ana.get("expert_probs"), n_tokens, s)
                                 for s in range(n_seeds)])
                mc, se = float(runs.mean()), float(runs.std(ddof=1) / math.sqrt(n_seeds))
            iso = Workload(batch=1, prompt_len=1, gen_len=n_isolated)
            r = _run(model, chip, m, spec, iso)
            rows.append({
                "routing": rname, "label": _label(strategy, mult), "closed": closed, "mc": mc,
                "mc_se": se,
                "up_starts": float(cf.expected_intra_token_conflicts(
                    m, **ana, count="starts", stages=("up",)).mean()),
                "all_starts": float(cf.expected_intra_token_conflicts(
                    m, **ana, count="starts").mean()),
                "simulated": r.tile_conflicts / (n_isolated * n_moe)})
    return rows


def _mc(m: Mapping, probs, n_tokens: int, seed: int) -> float:
    """Mean over MoE layers of :func:`~aimoe_lib.mapping.expected_conflicts`, one call per
    distinct row of per-layer probabilities (that function takes one vector for all layers)."""
    if probs is None:
        return float(expected_conflicts(m, None, n_tokens, seed).mean())
    uniq, inv = np.unique(probs, axis=0, return_inverse=True)
    per = [expected_conflicts(m, u, n_tokens, seed) for u in uniq]
    return float(np.mean([per[j][i] for i, j in enumerate(inv.ravel())]))


def format_conflict_checks(rows: Sequence[dict]) -> str:
    """Aligned text table of :func:`~aimoe_lib.viz_routing.conflict_checks` (3 decimals)."""
    def f(v):
        return "-" if not np.isfinite(v) else f"{v:.3f}"
    body = [[r["routing"], r["label"], f(r["closed"]), f(r["mc"]), f(r["mc_se"]),
             f(r["up_starts"]), f(r["simulated"]), f(r["all_starts"])] for r in rows]
    return _table(["routing", "mapping", "closed form", "Monte Carlo", "± s.e.",
                   "starts, up", "simulated", "starts, both"], body,
                  [False, False, True, True, True, True, True, True])


def analytic_vs_simulated(rows: Sequence[dict] | None = None) -> Figure:
    """Two panels over :func:`~aimoe_lib.viz_routing.conflict_checks`: closed form against Monte
    Carlo (error bars: 2 standard errors), and the simulated conflicts of isolated tokens against
    the closed-form starts of the gate/up stage (filled) and of both stages (open)."""
    rows = conflict_checks() if rows is None else list(rows)
    fig = _figure(11.5, 4.6)
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
    return _finish(fig, "Analytic expectation of conflicts vs sampling and simulation", takeaway)


# ============================================================================ batch
DEFAULT_BATCH_CONFIGS = (("in_order", 0.0), ("balanced", 0.0), ("balanced", 2.0),
                         ("moe_stacked", 2.0))
"""(strategy, Zipf exponent) pairs drawn by :func:`~aimoe_lib.viz_routing.batch_curves`."""


def batch_rows(model: ModelSpec | None = None, configs=DEFAULT_BATCH_CONFIGS,
               batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), prompt_len: int = 4,
               gen_len: int = 16) -> list[dict]:
    """Simulated throughput and time per output token against batch for each (strategy, Zipf s)
    config on the base chip, with their asymptotes. The default generates 16 tokens per sequence
    (not the 4 of ``WORKLOAD``) so that the decode steps, not the prefill, set the mean time
    per output token. Row keys: strategy, zipf_s, label, batch,
    tokens_per_s, ceiling (:func:`~aimoe_lib.conflicts.throughput_ceiling`), latency_bound (batch
    x the tokens/s of batch 1: no sequence finishes faster than alone), tpot_ns (simulated mean),
    tpot_asymptote_ns (:func:`~aimoe_lib.conflicts.tpot_asymptote_ns` from the batch-1 tpot),
    stall_ns_per_token and conflicts_per_token (per generated token)."""
    model = small_moe() if model is None else model
    rows = []
    for strategy, s in configs:
        spec = _zipf(s)
        ana = analytic_routing(model, spec)
        chip, m = _map(model, strategy, 1.0, spec, 0)
        alone = simulate(model, chip, m, Workload(batch=1, prompt_len=prompt_len, gen_len=gen_len,
                                                  routing=spec))
        tpot1 = alone.tpot_stats_ns()["mean"]
        for b in batches:
            w = Workload(batch=b, prompt_len=prompt_len, gen_len=gen_len, routing=spec)
            r = alone if b == 1 else simulate(model, chip, m, w)
            rows.append({"strategy": strategy, "zipf_s": float(s),
                         "label": f"{strategy}, s = {s:g}", "batch": b,
                         "tokens_per_s": r.tokens_per_s,
                         "ceiling": cf.throughput_ceiling(m, w, **ana),
                         "latency_bound": b * alone.tokens_per_s,
                         "tpot_ns": r.tpot_stats_ns()["mean"],
                         "tpot_asymptote_ns": cf.tpot_asymptote_ns(m, b, tpot1, **ana),
                         "stall_ns_per_token": r.stall_ns / r.generated_tokens,
                         "conflicts_per_token": r.tile_conflicts / r.generated_tokens})
    return rows


def batch_curves(rows: Sequence[dict] | None = None) -> Figure:
    """Throughput and time per output token against batch (log-log), each config's asymptotes
    dotted: min(batch x alone, tile-load ceiling) and max(alone, batch x busiest-tile demand)."""
    rows = batch_rows() if rows is None else list(rows)
    fig = _figure(11.5, 4.3)
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
    return _finish(fig, "Throughput and time per output token against batch (small MoE)",
                   takeaway)


# ============================================================================ shipped data
def condition_rows(rows: Sequence[dict] | None = None) -> list[dict]:
    """The 64-expert MoE's rows of the shipped ``data/conditions.json``
    (:func:`~aimoe_lib.experiments.condition_points`: Zipf skew, mapping strategy and tile-count
    rows at batch 8 and 256), each with its analytic tile-load ceiling recomputed from the same
    model, chip, mapping and routing. Row keys: kind ('zipf', 'strategy', 'tiles'), value, batch,
    n_tiles, n_tiers, area_mm2, tokens_per_s, ceiling, of_ceiling, conflicts_per_token,
    stall_ns_per_token, busiest_tile."""
    rows = experiments.load("conditions") if rows is None else rows
    moe = experiments.moe_variant(experiments.BASE, 64)
    maps: dict = {}
    out = []
    for r in rows:
        parts = r["label"].split("|")
        if parts[0] != "moe" or parts[1] not in ("zipf", "strategy", "tiles") or r["error"]:
            continue
        kind, value, batch = parts[1], parts[2], int(parts[3])
        strategy = r["strategy"]
        key = (strategy, r["n_tiles"], r["n_tiers"])
        if key not in maps:
            chip = experiments.chip_for(moe, n_tiles=r["n_tiles"])
            if chip.n_tiers != r["n_tiers"]:
                chip = chip.replace(n_tiers=r["n_tiers"])
            maps[key] = map_model(moe, chip, strategy)
        spec = _zipf(float(value)) if kind == "zipf" else RoutingSpec()
        w = Workload(batch=batch, prompt_len=r["prompt_len"], gen_len=r["gen_len"],
                     kv_cache=r["kv_cache"], routing=spec, seed=r["seed"])
        ceil = cf.throughput_ceiling(maps[key], w, **analytic_routing(moe, spec, r["seed"]))
        n = r["batch"] * r["gen_len"]
        out.append({"kind": kind, "value": value, "batch": batch, "strategy": strategy,
                    "n_tiles": r["n_tiles"], "n_tiers": r["n_tiers"], "area_mm2": r["area_mm2"],
                    "tokens_per_s": r["tokens_per_s"], "ceiling": ceil,
                    "of_ceiling": r["tokens_per_s"] / ceil,
                    "conflicts_per_token": r["tile_conflicts"] / n,
                    "stall_ns_per_token": r["stall_ns"] / n, "busiest_tile": r["busy_tiles_max"]})
    kinds = ("zipf", "strategy", "tiles")
    strategies = list(STRATEGIES)
    out.sort(key=lambda r: (kinds.index(r["kind"]), r["batch"],
                            strategies.index(r["value"]) if r["kind"] == "strategy"
                            else float(r["value"])))
    return out


def condition_summary(rows: Sequence[dict], stacked: dict | None = None) -> str:
    """The chapter's key numbers from :func:`~aimoe_lib.viz_routing.condition_rows` (and,
    optionally, the live :func:`~aimoe_lib.viz_routing.stacked_under_skew` result), a few lines of
    text."""
    batches = sorted({r["batch"] for r in rows})
    lo, hi = batches[0], batches[-1]
    lines = []
    for b in batches:
        z0, z2 = _pick(rows, "zipf", "0.0", b), _pick(rows, "zipf", "2.0", b)
        lines.append(f"batch {b}: Zipf s = 0 -> 2 changes throughput by "
                     f"{z2['tokens_per_s'] / z0['tokens_per_s'] - 1:+.1%} (tile ceiling "
                     f"{z2['ceiling'] / z0['ceiling'] - 1:+.1%}); busiest tile "
                     f"{z0['busiest_tile']:.0%} -> {z2['busiest_tile']:.0%} busy")
    io, st = _pick(rows, "strategy", "in_order", hi), _pick(rows, "strategy", "moe_stacked", hi)
    x4 = _pick(rows, "tiles", "4", hi)
    lines.append(f"batch {hi}: moe_stacked {st['tokens_per_s'] / 1e6:.3f} M tokens/s, "
                 f"{st['tokens_per_s'] / io['tokens_per_s'] - 1:+.1%} over in_order at "
                 f"{st['area_mm2'] / io['area_mm2'] - 1:+.1%} chip area")
    lines.append(f"batch {hi}: in_order on 4x the tiles {x4['tokens_per_s'] / 1e6:.3f} M tokens/s, "
                 f"{x4['tokens_per_s'] / io['tokens_per_s'] - 1:+.1%} at "
                 f"{x4['area_mm2'] / io['area_mm2']:.2f}x the chip area")
    if stacked:
        vals = ", ".join(f"s = {s:g}: {v / 1e6:.3f} M" for s, v in stacked.items())
        same = len({round(v, 6) for v in stacked.values()}) == 1
        lines.append(f"batch {hi}: moe_stacked under Zipf routing (simulated live): {vals}; "
                     f"{'identical' if same else 'different'}")
    return "\n".join(lines)


def format_condition_rows(rows: Sequence[dict], kind: str | None = None) -> str:
    """Aligned text table of :func:`~aimoe_lib.viz_routing.condition_rows` (optionally one kind)."""
    body = [[r["kind"], r["value"], str(r["batch"]), f"{r['n_tiles']}x{r['n_tiers']}",
             f"{r['area_mm2']:,.0f}", f"{r['tokens_per_s'] / 1e6:.3f}", f"{r['ceiling'] / 1e6:.2f}",
             f"{r['of_ceiling']:.0%}", f"{r['busiest_tile']:.0%}",
             f"{r['stall_ns_per_token'] / 1e3:.0f}"]
            for r in rows if kind is None or r["kind"] == kind]
    return _table(["varied", "value", "batch", "tiles x tiers", "mm²", "M tok/s", "ceiling",
                   "of ceiling", "busiest tile", "stall µs/token"], body,
                  [False, False, True, True, True, True, True, True, True, True])


def _pick(rows, kind, value, batch):
    return next(r for r in rows if r["kind"] == kind and r["value"] == value
                and r["batch"] == batch)


def conditions_overview(rows: Sequence[dict] | None = None) -> Figure:
    """The chapter's headline: the 64-expert MoE of ``data/conditions.json``. Left, throughput
    against the Zipf exponent at batch 8 and 256 with the analytic tile-load ceiling; right,
    throughput of each mapping strategy and tile count at both batches (chip area on the bars)."""
    rows = condition_rows() if rows is None else list(rows)
    fig = _figure(13.0, 4.6)
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
    takeaway = (f"s = 0 -> 2 changes throughput by {d_lo:+.1%}"
                f" at batch {lo} but {z2h['tokens_per_s'] / z0h['tokens_per_s'] - 1:+.1%} at batch "
                f"{hi}; at batch {hi} moe_stacked gives "
                f"{st['tokens_per_s'] / io['tokens_per_s'] - 1:+.0%} over in_order "
                f"({st['area_mm2'] / io['area_mm2'] - 1:+.0%} area)")
    return _finish(fig, "Routing skew and mapping on a 3D chip: MoE-64 (top-1), shipped sweep",
                   takeaway)


# ============================================================================ dashboard
def dashboard_numbers(zipf_s: float = 1.0, strategy: str = "in_order",
                      tiles_multiplier: float = 1.0, batch: int = 64, seed: int = 0,
                      model: ModelSpec | None = None) -> dict:
    """Everything :func:`~aimoe_lib.viz_routing.routing_dashboard` draws, for one setting: the chip
    and mapping, the routed load of MoE layer 0 (``load``, fraction of tokens per expert) and its
    expectation (``pi``), simulated and expected per-tile busy fractions, the simulated result at
    ``batch`` and at batch 1, the ceiling and the closed-form intra-token conflicts."""
    model = small_moe() if model is None else model
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: choose one of {', '.join(STRATEGIES)}")
    spec = _zipf(zipf_s)
    chip, m = _map(model, strategy, tiles_multiplier, spec, seed)
    w = Workload(batch=batch, prompt_len=WORKLOAD.prompt_len, gen_len=WORKLOAD.gen_len,
                 routing=spec, seed=seed)
    r = simulate(model, chip, m, w)
    r1 = simulate(model, chip, m, Workload(batch=1, prompt_len=w.prompt_len, gen_len=w.gen_len,
                                           routing=spec, seed=seed))
    ana = analytic_routing(model, spec, seed)
    n_pos = w.prompt_len + w.gen_len - 1
    load = routing.expert_load(routing.route(model, n_pos * batch, spec, seed=seed),
                               model.n_experts)[0]
    law = cf.set_distribution(model.n_experts, model.top_k,
                              None if "expert_probs" not in ana else ana["expert_probs"][0])
    tl = cf.expected_tile_busy_ns(m, **ana)
    n_tok = sum(w.tokens_in_pass(p) for p in range(w.n_passes))
    expected_busy = batch * (n_tok * tl.per_token_ns + w.gen_len * tl.per_head_ns)
    return {"model": model, "chip": chip, "mapping": m, "workload": w, "result": r,
            "alone_tokens_per_s": r1.tokens_per_s, "load": load,
            "pi": cf.inclusion_probs(law), "busy": r.tile_busy_ns / r.makespan_ns,
            "expected_busy": expected_busy / r.makespan_ns,
            "ceiling": cf.throughput_ceiling(m, w, **ana),
            "intra_token": float(cf.expected_intra_token_conflicts(m, **ana).mean())}


def routing_dashboard(zipf_s: float = 1.0, strategy: str = "in_order",
                      tiles_multiplier: float = 1.0, batch: int = 64, seed: int = 0,
                      model: ModelSpec | None = None) -> Figure:
    """One setting of the small MoE simulated live
    (:func:`~aimoe_lib.viz_routing.dashboard_numbers`): the load of every expert of MoE layer 0,
    every tile's busy fraction (simulated bars, expected markers), and the throughput against its
    two bounds."""
    d = dashboard_numbers(zipf_s, strategy, tiles_multiplier, batch, seed, model)
    model, chip, r = d["model"], d["chip"], d["result"]
    e, k = model.n_experts, model.top_k
    fig = _figure(13.0, 4.2)
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
    return _finish(fig, f"Skew, mapping and batch: {model.name}", takeaway)


def stacked_under_skew(s_values=(0.0, 2.0), batch: int = 256) -> dict:
    """Simulated tokens/s of the 64-expert MoE mapped ``moe_stacked`` on the chip of the shipped
    strategy rows (:func:`~aimoe_lib.experiments.condition_points`), under Zipf routing of each
    exponent in ``s_values``: {s: tokens/s}. The shipped sweep has this strategy at s = 0 only."""
    moe = experiments.moe_variant(experiments.BASE, 64)
    label = f"moe|strategy|moe_stacked|{batch}"
    pts = [p for p in experiments.condition_points() if p.label == label]
    if not pts:
        raise ValueError(f"batch={batch!r}: the shipped strategy rows have batch 8 and 256")
    p = pts[0]
    m = map_model(moe, p.chip, "moe_stacked")
    return {float(s): _run(moe, p.chip, m, _zipf(s), p.workload).tokens_per_s for s in s_values}


def trace_round_trip(directory, model: ModelSpec | None = None, spec=None,
                     n_tokens: int = 4096, seed: int = 0, strategy: str = "balanced",
                     workload: Workload = WORKLOAD) -> dict:
    """A *synthetic* trace through the trace machinery: route ``n_tokens`` tokens with ``spec``
    (default: the block co-activation of :func:`~aimoe_lib.viz_routing.block_coactivation`), write
    them with :func:`~aimoe_lib.routing.save_trace` into ``directory``, read them back with
    :func:`~aimoe_lib.routing.load_trace`, and simulate ``workload`` once with ``spec`` and once
    replaying the trace (``RoutingSpec(kind="trace")``). Returns the path, the routed ``choices``,
    whether the replay equals them (``identical``), and both results (``routed``, ``replayed``)."""
    from pathlib import Path

    model = small_moe() if model is None else model
    if spec is None:
        spec = RoutingSpec(kind="coactivation", coactivation=block_coactivation(model.n_experts))
    choices = routing.route(model, n_tokens, spec, seed=seed)
    path = routing.save_trace(Path(directory) / f"synthetic_trace_{model.name}", choices, model)
    replay = RoutingSpec(kind="trace", trace=routing.load_trace(path, model).choices)
    chip, m = _map(model, strategy, 1.0, spec, seed)
    w = Workload(batch=workload.batch, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                 kv_cache=workload.kv_cache, seed=seed)
    return {"path": path, "choices": choices,
            "identical": bool(np.array_equal(routing.route(model, n_tokens, replay), choices)),
            "routed": _run(model, chip, m, spec, w), "replayed": _run(model, chip, m, replay, w)}
