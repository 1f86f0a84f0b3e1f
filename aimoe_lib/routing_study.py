"""The routing study of chapter 6 (skew, co-activation, mapping strategies and tier conflicts):
every number the chapter's figures draw, computed here and returned as plain dicts.

The chapter's model is :func:`~aimoe_lib.teaching.routing_moe` (16 GELU experts of width 1024,
top-2; on 512 x 512 tiers an expert is 4 blocks). Its chips (:func:`routing_chip`) are sized by
:func:`~aimoe_lib.mapping.fitting_chip`: the ``paper`` preset with digital units provisioned per
layer, as many tiles as the dense twin of the model has blocks (34) times a multiplier, and as many
tiers as the MoE then needs (at least :func:`~aimoe_lib.mapping.moe_stacked_min_tiers` for
``moe_stacked``), as in :func:`~aimoe_lib.experiments.condition_points`.

* Skew: :func:`load_imbalance`, :func:`layer_load`; co-activation: :func:`block_coactivation`,
  :func:`block_share`, :func:`measured_coactivation`.
* Simulated live: :func:`strategy_rows`, :func:`conflict_checks`, :func:`batch_rows`,
  :func:`dashboard_numbers`, :func:`stacked_under_skew`, :func:`trace_round_trip`.
* The 64-expert model of the shipped ``data/conditions.json`` with analytic ceilings:
  :func:`condition_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import conflicts as cf
from . import experiments, routing
from .hardware import ChipConfig
from .mapping import STRATEGIES, Mapping, expected_conflicts, fitting_chip, map_model
from .models import ModelSpec
from .routing import RoutingSpec
from .simulator import SimResult, Workload, simulate
from .teaching import routing_moe

__all__ = ["ZIPF_VALUES", "WORKLOAD", "PLAN_SEED_OFFSET", "PLAN_TOKENS", "DEFAULT_CONFIGS",
           "DEFAULT_BATCH_CONFIGS", "zipf", "config_label", "routing_chip", "mapped",
           "block_coactivation", "block_share", "analytic_routing", "load_imbalance",
           "layer_load", "measured_coactivation", "strategy_rows", "conflict_checks",
           "batch_rows", "condition_rows", "dashboard_numbers", "stacked_under_skew",
           "trace_round_trip"]

ZIPF_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0)
"""Zipf exponents of the skew sweeps (those of :func:`~aimoe_lib.experiments.condition_points`)."""

WORKLOAD = Workload(batch=64, prompt_len=4, gen_len=4)
"""Default workload of the live simulations: 64 sequences of 4 prompt + 4 generated tokens."""

PLAN_SEED_OFFSET = 1
"""The ``coactivation`` strategy plans from tokens routed with ``seed + PLAN_SEED_OFFSET``, so
it never sees the very tokens it is then simulated with."""

PLAN_TOKENS = 4096
"""Tokens routed to measure the co-activation density the ``coactivation`` strategy plans with."""

DEFAULT_CONFIGS = (("in_order", 1.0), ("balanced", 1.0), ("coactivation", 1.0),
                   ("moe_stacked", 1.0), ("in_order", 2.0), ("in_order", 4.0))
"""(strategy, tiles multiplier) pairs compared by :func:`strategy_rows`: the mapping strategies on
the base chip, and in_order on chips with 2 and 4 times the tiles (experts spread wider)."""

DEFAULT_BATCH_CONFIGS = (("in_order", 0.0), ("balanced", 0.0), ("balanced", 2.0),
                         ("moe_stacked", 2.0))
"""(strategy, Zipf exponent) pairs of :func:`batch_rows`."""


# ============================================================================ models, chips
def zipf(s: float) -> RoutingSpec:
    """Zipf routing of exponent ``s`` (0 = uniform)."""
    return RoutingSpec(kind="zipf", zipf_s=float(s))


def config_label(strategy: str, tiles_multiplier: float) -> str:
    """How a (strategy, tiles multiplier) config is named in rows and legends."""
    return strategy if tiles_multiplier == 1 else f"{strategy} x{tiles_multiplier:g} tiles"


def routing_chip(model: ModelSpec | None = None, strategy: str = "in_order",
                 tiles_multiplier: float = 1.0) -> ChipConfig:
    """The chip a ``strategy`` runs ``model`` (default :func:`~aimoe_lib.teaching.routing_moe`)
    on: :func:`~aimoe_lib.mapping.fitting_chip` with tiles = blocks of the model's dense twin x
    ``tiles_multiplier``, tiers as needed, digital units per layer."""
    model = routing_moe() if model is None else model
    if not (isinstance(tiles_multiplier, int | float) and tiles_multiplier > 0):
        raise ValueError(f"tiles_multiplier={tiles_multiplier!r}: must be a number > 0 "
                         "(1 = as many tiles as the dense base model has blocks)")
    dense = model.replace(name=f"{model.name}-dense", n_experts=0, top_k=0)
    n_tiles = max(1, int(round(experiments.blocks_needed(dense) * tiles_multiplier)))
    return fitting_chip(model, n_tiles=n_tiles, units="per_layer", strategy=strategy)


def _plan_density(model: ModelSpec, spec, seed: int) -> np.ndarray:
    ch = routing.route(model, PLAN_TOKENS, spec, seed=seed + PLAN_SEED_OFFSET)
    return routing.coactivation_density(ch, model.n_experts)


def mapped(model: ModelSpec, strategy: str, tiles_multiplier: float, spec,
           seed: int = 0) -> tuple[ChipConfig, Mapping]:
    """(:func:`routing_chip`, its mapping with ``strategy``); ``coactivation`` plans with the
    density measured from :data:`PLAN_TOKENS` tokens routed with ``spec`` and another seed."""
    chip = routing_chip(model, strategy, tiles_multiplier)
    coact = _plan_density(model, spec, seed) if strategy == "coactivation" else None
    return chip, map_model(model, chip, strategy, coactivation=coact)


def _run(model, chip, m, spec, workload: Workload) -> SimResult:
    w = Workload(batch=workload.batch, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                 kv_cache=workload.kv_cache, routing=spec, seed=workload.seed)
    return simulate(model, chip, m, w)


# ============================================================================ densities
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


def measured_coactivation(model: ModelSpec, spec, n_tokens: int = 8192,
                          seed: int = 0) -> np.ndarray:
    """The (n_moe_layers, E, E) pair density of ``n_tokens`` tokens routed with ``spec``
    (:func:`~aimoe_lib.routing.coactivation_density`)."""
    return routing.coactivation_density(routing.route(model, n_tokens, spec, seed=seed),
                                        model.n_experts)


# ============================================================================ skew
def _inclusion(model: ModelSpec, probs) -> np.ndarray:
    """Inclusion probability of every expert of each MoE layer ((n_moe_layers, E))."""
    return np.stack([cf.inclusion_probs(cf.set_distribution(model.n_experts, model.top_k, p))
                     for p in probs])


def layer_load(model: ModelSpec, s: float, n_tokens: int = 8192, seed: int = 0,
               layer: int = 0) -> dict:
    """Load of every expert of MoE layer ``layer`` under Zipf routing of exponent ``s``:
    ``measured`` (fraction of ``n_tokens`` routed tokens per expert, summing to k) and
    ``expected`` (inclusion probabilities, :func:`~aimoe_lib.conflicts.inclusion_probs`)."""
    e, k = model.n_experts, model.top_k
    load = routing.expert_load(routing.route(model, n_tokens, zipf(s), seed=seed), e)[layer]
    probs = cf.layer_probs(model, zipf(s), seed)
    pi = np.full(e, k / e) if probs is None else _inclusion(model, probs[layer:layer + 1])[0]
    return {"measured": load, "expected": pi}


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
            spec = zipf(s)
            load = routing.expert_load(routing.route(model, n_tokens, spec, seed=seed), e)
            probs = cf.layer_probs(model, spec, seed)
            pis = np.full((load.shape[0], e), k / e) if probs is None else _inclusion(model, probs)
            rows.append({"model": model.name, "n_experts": e, "top_k": k, "zipf_s": float(s),
                         "measured": float(np.mean(load.max(axis=1) * e / k)),
                         "expected": float(np.mean(pis.max(axis=1) * e / k)),
                         "top_share": float(np.mean(pis.max(axis=1) / k))})
    return rows


# ============================================================================ strategies
def strategy_rows(model: ModelSpec | None = None, routings: dict | None = None,
                  configs=DEFAULT_CONFIGS, workload: Workload = WORKLOAD) -> list[dict]:
    """Live simulations of ``model`` under every routing (name -> RoutingSpec) and mapping config.

    Row keys: routing, strategy, tiles_multiplier, batch, label, n_tiles, n_tiers, area_mm2;
    ``intra_token`` (closed-form waiting tier MVMs per token and MoE layer,
    :func:`~aimoe_lib.conflicts.expected_intra_token_conflicts`); the simulated
    ``tokens_per_s``, ``conflicts_per_token`` and ``stall_ns_per_token`` (per generated token,
    every kind of tile conflict), ``busiest_tile`` (busy fraction); ``ceiling`` (tokens/s,
    :func:`~aimoe_lib.conflicts.throughput_ceiling`) and ``of_ceiling`` (simulated / ceiling).
    ``coactivation`` plans with the density measured from :data:`PLAN_TOKENS` tokens of the same
    routing (another seed).
    """
    model = routing_moe() if model is None else model
    if routings is None:
        routings = {"uniform": RoutingSpec(), "zipf s=1.5": zipf(1.5),
                    "co-activation blocks": RoutingSpec(
                        kind="coactivation", coactivation=block_coactivation(model.n_experts))}
    rows = []
    for rname, spec in routings.items():
        ana = analytic_routing(model, spec, workload.seed)
        for strategy, mult in configs:
            chip, m = mapped(model, strategy, mult, spec, workload.seed)
            r = _run(model, chip, m, spec, workload)
            w = Workload(batch=workload.batch, prompt_len=workload.prompt_len,
                         gen_len=workload.gen_len, kv_cache=workload.kv_cache, routing=spec)
            ceil = cf.throughput_ceiling(m, w, **ana)
            n = r.generated_tokens
            rows.append({
                "routing": rname, "strategy": strategy, "tiles_multiplier": float(mult),
                "batch": workload.batch,
                "label": config_label(strategy, mult), "n_tiles": chip.n_tiles,
                "n_tiers": chip.n_tiers, "area_mm2": chip.area_mm2,
                "intra_token": float(cf.expected_intra_token_conflicts(m, **ana).mean()),
                "tokens_per_s": r.tokens_per_s, "conflicts_per_token": r.tile_conflicts / n,
                "stall_ns_per_token": r.stall_ns / n,
                "busiest_tile": r.busy_fraction()["tiles_max"], "ceiling": ceil,
                "of_ceiling": r.tokens_per_s / ceil})
    return rows


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
    model = routing_moe() if model is None else model
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
            chip, m = mapped(model, strategy, mult, spec, 0)
            closed = float(cf.expected_intra_token_conflicts(m, **ana).mean())
            mc = se = math.nan
            if "pair_density" not in ana:
                runs = np.array([_mc(m, ana.get("expert_probs"), n_tokens, s)
                                 for s in range(n_seeds)])
                mc, se = float(runs.mean()), float(runs.std(ddof=1) / math.sqrt(n_seeds))
            iso = Workload(batch=1, prompt_len=1, gen_len=n_isolated)
            r = _run(model, chip, m, spec, iso)
            rows.append({
                "routing": rname, "label": config_label(strategy, mult), "closed": closed,
                "mc": mc, "mc_se": se,
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


# ============================================================================ batch
def batch_rows(model: ModelSpec | None = None, configs=DEFAULT_BATCH_CONFIGS,
               batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), prompt_len: int = 4,
               gen_len: int = 16) -> list[dict]:
    """Simulated throughput and time per output token against batch for each (strategy, Zipf s)
    config on the base chip, with their asymptotes. The default generates 16 tokens per sequence
    (not the 4 of :data:`WORKLOAD`) so that the decode steps, not the prefill, set the mean time
    per output token. Row keys: strategy, zipf_s, label, batch,
    tokens_per_s, ceiling (:func:`~aimoe_lib.conflicts.throughput_ceiling`), latency_bound (batch
    x the tokens/s of batch 1: no sequence finishes faster than alone), tpot_ns (simulated mean),
    tpot_asymptote_ns (:func:`~aimoe_lib.conflicts.tpot_asymptote_ns` from the batch-1 tpot),
    stall_ns_per_token and conflicts_per_token (per generated token)."""
    model = routing_moe() if model is None else model
    rows = []
    for strategy, s in configs:
        spec = zipf(s)
        ana = analytic_routing(model, spec)
        chip, m = mapped(model, strategy, 1.0, spec, 0)
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


# ============================================================================ shipped data
def condition_rows(rows: Sequence[dict] | None = None) -> list[dict]:
    """The 64-expert MoE's rows of the shipped ``data/conditions.json``
    (:func:`~aimoe_lib.experiments.condition_points`: Zipf skew, mapping strategy and tile-count
    rows at batch 8 and 256), each with its analytic tile-load ceiling recomputed from the model,
    chip, mapping and routing of the point the row came from. Row keys: kind ('zipf',
    'strategy', 'tiles'), value, batch, strategy, n_tiles, n_tiers, area_mm2, tokens_per_s,
    ceiling, of_ceiling, conflicts_per_token, stall_ns_per_token, busiest_tile."""
    rows = experiments.load("conditions") if rows is None else rows
    points = {p.label: p for p in experiments.condition_points()}
    maps: dict = {}
    out = []
    for r in rows:
        parts = r["label"].split("|")
        if parts[0] != "moe" or parts[1] not in ("zipf", "strategy", "tiles") or r["error"]:
            continue
        if r["label"] not in points:
            raise ValueError(f"condition_rows: row label {r['label']!r} is not a point of "
                             "experiments.condition_points(); regenerate data/conditions.json "
                             "with python -m aimoe_lib.experiments conditions")
        p = points[r["label"]]
        kind, value, batch = parts[1], parts[2], int(parts[3])
        key = (p.strategy, p.chip.n_tiles, p.chip.n_tiers)
        if key not in maps:
            maps[key] = map_model(p.model, p.chip, p.strategy)
        spec = zipf(float(value)) if kind == "zipf" else RoutingSpec()
        w = Workload(batch=batch, prompt_len=r["prompt_len"], gen_len=r["gen_len"],
                     kv_cache=r["kv_cache"], routing=spec, seed=r["seed"])
        ceil = cf.throughput_ceiling(maps[key], w, **analytic_routing(p.model, spec, r["seed"]))
        n = r["batch"] * r["gen_len"]
        out.append({"kind": kind, "value": value, "batch": batch, "strategy": r["strategy"],
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


# ============================================================================ dashboard
def dashboard_numbers(zipf_s: float = 1.0, strategy: str = "in_order",
                      tiles_multiplier: float = 1.0, batch: int = 64, seed: int = 0,
                      model: ModelSpec | None = None) -> dict:
    """Everything :func:`~aimoe_lib.viz.routing.routing_dashboard` draws, for one setting: the
    chip and mapping, the routed load of MoE layer 0 (``load``, fraction of tokens per expert)
    and its expectation (``pi``), simulated and expected per-tile busy fractions, the simulated
    result at ``batch`` and at batch 1, the ceiling and the closed-form intra-token conflicts."""
    model = routing_moe() if model is None else model
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: choose one of {', '.join(STRATEGIES)}")
    spec = zipf(zipf_s)
    chip, m = mapped(model, strategy, tiles_multiplier, spec, seed)
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


def stacked_under_skew(s_values=(0.0, 2.0), batch: int = 256) -> dict:
    """Simulated tokens/s of the 64-expert MoE mapped ``moe_stacked`` on the chip of the shipped
    strategy rows (:func:`~aimoe_lib.experiments.condition_points`), under Zipf routing of each
    exponent in ``s_values``: {s: tokens/s}. The shipped sweep has this strategy at s = 0 only."""
    label = f"moe|strategy|moe_stacked|{batch}"
    pts = [p for p in experiments.condition_points() if p.label == label]
    if not pts:
        raise ValueError(f"batch={batch!r}: the shipped strategy rows have batch 8 and 256")
    p = pts[0]
    m = map_model(p.model, p.chip, "moe_stacked")
    return {float(s): _run(p.model, p.chip, m, zipf(s), p.workload).tokens_per_s
            for s in s_values}


def trace_round_trip(directory, model: ModelSpec | None = None, spec=None,
                     n_tokens: int = 4096, seed: int = 0, strategy: str = "balanced",
                     workload: Workload = WORKLOAD) -> dict:
    """A *synthetic* trace through the trace machinery: route ``n_tokens`` tokens with ``spec``
    (default: the block co-activation of :func:`block_coactivation`), write them with
    :func:`~aimoe_lib.routing.save_trace` into ``directory``, read them back with
    :func:`~aimoe_lib.routing.load_trace`, and simulate ``workload`` once with ``spec`` and once
    replaying the trace (``RoutingSpec(kind="trace")``). Returns the path, the routed ``choices``,
    whether the replay equals them (``identical``), and both results (``routed``, ``replayed``)."""
    model = routing_moe() if model is None else model
    if spec is None:
        spec = RoutingSpec(kind="coactivation", coactivation=block_coactivation(model.n_experts))
    choices = routing.route(model, n_tokens, spec, seed=seed)
    path = routing.save_trace(Path(directory) / f"synthetic_trace_{model.name}", choices, model)
    replay = RoutingSpec(kind="trace", trace=routing.load_trace(path, model).choices)
    chip, m = mapped(model, strategy, 1.0, spec, seed)
    w = Workload(batch=workload.batch, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                 kv_cache=workload.kv_cache, seed=seed)
    return {"path": path, "choices": choices,
            "identical": bool(np.array_equal(routing.route(model, n_tokens, replay), choices)),
            "routed": _run(model, chip, m, spec, w), "replayed": _run(model, chip, m, replay, w)}
