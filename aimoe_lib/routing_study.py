"""The routing study of chapter 6 (skew, co-activation, mapping strategies and tier conflicts):
every number the chapter's figures draw, computed here and returned as plain dicts.

The chapter's model is :func:`~aimoe_lib.teaching.routing_moe` (16 GELU experts of width 1024,
top-2; on 512 x 512 tiers an expert is 4 blocks). Its chips (:func:`routing_chip`) are sized by
:func:`~aimoe_lib.mapping.fitting_chip`: the book's preset (:data:`~aimoe_lib.experiments.PRESET`,
``physical``) with digital units provisioned per layer, as many tiles as the dense twin of the
model has blocks (34) times a multiplier, and as many tiers as the MoE then needs (at least
:func:`~aimoe_lib.mapping.moe_stacked_min_tiers` for ``moe_stacked``), as in
:func:`~aimoe_lib.experiments.condition_points`.

* Skew: :func:`load_imbalance`, :func:`layer_load`; co-activation: :func:`block_coactivation`,
  :func:`block_share`, :func:`measured_coactivation`.
* Simulated live: :func:`strategy_rows`, :func:`conflict_checks`, :func:`batch_rows`,
  :func:`dashboard_numbers`, :func:`stacked_under_skew`, :func:`trace_round_trip`.
* The 64-expert model of the shipped ``data/conditions.json`` with analytic ceilings:
  :func:`condition_rows`; why its strategies rank as they do on the sweep's chips:
  :func:`equal_capacity_rows`.
* Trained-router traces (chapter 8's MoEs, :mod:`aimoe_lib.analog.traces`, loaded without torch):
  :func:`trace_case` splits a trace into planning and replay windows; :func:`expert_popularity`,
  :func:`fit_zipf`, :func:`coactivation_summary` and :func:`trace_summary` measure it;
  :func:`trace_strategy_rows` simulates the traced model on its chips under the trace, uniform,
  the fitted Zipf law and the trace's pair law (:func:`replay_windows` makes every simulated
  sequence replay one recorded window). The chips come from :func:`routing_chip` with a ``preset``
  argument (default :data:`~aimoe_lib.experiments.PRESET`, the book's ``physical``).

Every function that sizes a chip takes ``preset=`` (default :data:`~aimoe_lib.experiments.PRESET`,
so the live simulations and the shipped ``data/conditions.json`` use the same costs); pass
``preset="paper"`` to reproduce the earlier line of work's constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import conflicts as cf
from . import experiments, routing
from .analog import traces
from .analog.config import model_config
from .experiments import PRESET
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
           "EQUAL_CAPACITY_CONFIGS", "equal_capacity_rows", "trace_round_trip", "TRACE_MODELS",
           "TRACE_PLAN_SHARE", "TRACE_WORKLOAD",
           "TRACE_REPEATS", "TRACE_STRATEGIES", "TRACE_ROUTINGS", "ZIPF_FIT_MAX_S",
           "ZIPF_FIT_STEP", "GROUPING_RESTARTS", "TOP_PAIR_FRACTION", "TraceCase", "trace_case",
           "expert_popularity", "zipf_shares", "fit_zipf", "default_groups",
           "within_group_share", "best_grouping", "top_pair_share", "coactivation_summary",
           "trace_summary", "replay_windows", "trace_routings", "trace_strategy_rows"]

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
                 tiles_multiplier: float = 1.0, preset: str = PRESET) -> ChipConfig:
    """The chip a ``strategy`` runs ``model`` (default :func:`~aimoe_lib.teaching.routing_moe`)
    on: :func:`~aimoe_lib.mapping.fitting_chip` of the chip ``preset`` (a name of
    :func:`~aimoe_lib.hardware.preset`; default the book's :data:`~aimoe_lib.experiments.PRESET`)
    with tiles = blocks of the model's dense twin x ``tiles_multiplier``, tiers as needed, digital
    units per layer."""
    model = routing_moe() if model is None else model
    if not (isinstance(tiles_multiplier, int | float) and tiles_multiplier > 0):
        raise ValueError(f"tiles_multiplier={tiles_multiplier!r}: must be a number > 0 "
                         "(1 = as many tiles as the dense base model has blocks)")
    dense = model.replace(name=f"{model.name}-dense", n_experts=0, top_k=0)
    n_tiles = max(1, int(round(experiments.blocks_needed(dense) * tiles_multiplier)))
    return fitting_chip(model, n_tiles=n_tiles, units="per_layer", strategy=strategy,
                        preset=preset)


def _plan_density(model: ModelSpec, spec, seed: int) -> np.ndarray:
    ch = routing.route(model, PLAN_TOKENS, spec, seed=seed + PLAN_SEED_OFFSET)
    return routing.coactivation_density(ch, model.n_experts)


def mapped(model: ModelSpec, strategy: str, tiles_multiplier: float, spec,
           seed: int = 0, preset: str = PRESET) -> tuple[ChipConfig, Mapping]:
    """(:func:`routing_chip` of ``preset``, its mapping with ``strategy``); ``coactivation`` plans
    with the density measured from :data:`PLAN_TOKENS` tokens routed with ``spec`` and another
    seed."""
    chip = routing_chip(model, strategy, tiles_multiplier, preset)
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
                  configs=DEFAULT_CONFIGS, workload: Workload = WORKLOAD,
                  preset: str = PRESET) -> list[dict]:
    """Live simulations of ``model`` under every routing (name -> RoutingSpec) and mapping config,
    on the chips of :func:`routing_chip` of ``preset``.

    Row keys: preset, routing, strategy, tiles_multiplier, batch, label, n_tiles, n_tiers, area_mm2;
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
            chip, m = mapped(model, strategy, mult, spec, workload.seed, preset)
            r = _run(model, chip, m, spec, workload)
            w = Workload(batch=workload.batch, prompt_len=workload.prompt_len,
                         gen_len=workload.gen_len, kv_cache=workload.kv_cache, routing=spec)
            ceil = cf.throughput_ceiling(m, w, **ana)
            n = r.generated_tokens
            rows.append({
                "preset": preset, "routing": rname, "strategy": strategy,
                "tiles_multiplier": float(mult),
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
                    n_isolated: int = 2000, preset: str = PRESET) -> list[dict]:
    """Closed form against sampling and simulation, per routing and mapping config (chips of
    :func:`routing_chip` of ``preset``).

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
            chip, m = mapped(model, strategy, mult, spec, 0, preset)
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
               gen_len: int = 16, preset: str = PRESET) -> list[dict]:
    """Simulated throughput and time per output token against batch for each (strategy, Zipf s)
    config on the base chip of ``preset``, with their asymptotes. The default generates 16 tokens
    per sequence (not the 4 of :data:`WORKLOAD`) so that the decode steps, not the prefill, set the
    mean time per output token. Row keys: strategy, zipf_s, label, batch, tokens_per_s, ceiling
    (:func:`~aimoe_lib.conflicts.throughput_ceiling`), latency_bound (batch x the tokens/s of
    batch 1: no sequence finishes faster than alone), tpot_ns (simulated mean), tpot_asymptote_ns
    (:func:`~aimoe_lib.conflicts.tpot_asymptote_ns` from the batch-1 tpot), stall_ns_per_token
    and conflicts_per_token (per generated token)."""
    model = routing_moe() if model is None else model
    rows = []
    for strategy, s in configs:
        spec = zipf(s)
        ana = analytic_routing(model, spec)
        chip, m = mapped(model, strategy, 1.0, spec, 0, preset)
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
                      model: ModelSpec | None = None, preset: str = PRESET) -> dict:
    """Everything :func:`~aimoe_lib.viz.routing.routing_dashboard` draws, for one setting: the
    chip (of ``preset``) and mapping, the routed load of MoE layer 0 (``load``, fraction of tokens
    per expert) and its expectation (``pi``), simulated and expected per-tile busy fractions, the
    simulated result at ``batch`` and at batch 1, the ceiling and the closed-form intra-token
    conflicts."""
    model = routing_moe() if model is None else model
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: choose one of {', '.join(STRATEGIES)}")
    spec = zipf(zipf_s)
    chip, m = mapped(model, strategy, tiles_multiplier, spec, seed, preset)
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


EQUAL_CAPACITY_CONFIGS = (("moe|tiles|1", "in_order"), ("moe|tiles|1", "balanced"),
                          ("moe|strategy|in_order", "in_order"),
                          ("moe|strategy|balanced", "balanced"),
                          ("moe|strategy|moe_stacked", "moe_stacked"),
                          ("moe|tiles|4", "in_order"))
"""(label of a point of :func:`~aimoe_lib.experiments.condition_points` without its batch, the
strategy to map its chip with) pairs of :func:`equal_capacity_rows`: the smallest chip of the sweep
(702 tiles x 36 tiers) with in_order and balanced, the one equal-capacity chip of the strategy rows
(the 128 tiers ``moe_stacked`` needs) with all three strategies, and in_order on 4x the tiles."""


def _group(m) -> str:
    if m.is_routed_expert:
        return "expert"
    if m.role.is_attention:
        return "attention"
    return m.role.value.replace("_", "-")


def equal_capacity_rows(batch: int = 256, configs=EQUAL_CAPACITY_CONFIGS,
                        simulate_configs=(("moe|tiles|1", "balanced"), ("moe|tiles|4", "in_order")),
                        preset: str = PRESET) -> list[dict]:
    """Why the 64-expert MoE's mapping strategies rank as they do on the chips of
    :func:`~aimoe_lib.experiments.condition_points` (uniform routing, ``batch``).

    Per (point label, strategy) of ``configs``: ``fill`` (blocks / tiers of the chip),
    ``max_always_active`` (the most blocks of always-active matrices, i.e. not routed experts, on
    one tile), ``busiest_mvms`` (expected tier MVMs per generated token of the busiest tile,
    :func:`~aimoe_lib.conflicts.expected_tile_busy_ns`, LM head included), ``busiest_holds`` (its
    blocks by kind: attention, router, lm-head, expert) and ``ceiling``
    (:func:`~aimoe_lib.conflicts.throughput_ceiling`). The pairs in ``simulate_configs`` are also
    simulated on the point's workload: ``tokens_per_s``, ``tiles_max``, ``dpu_max`` and
    ``mha_max`` (busy fraction of the busiest tile and of the most loaded layer's DPUs and
    attention units, :meth:`~aimoe_lib.simulator.result.SimResult.busy_fraction`); NaN for the
    others (their runs are shipped in ``data/conditions.json``)."""
    points = {p.label: p for p in experiments.condition_points(preset=preset)}
    rows = []
    for label, strategy in configs:
        key = f"{label}|{batch}"
        if key not in points:
            raise ValueError(f"{key!r} is not a point of experiments.condition_points(); batch "
                             "must be one of the sweep's (8 or 256)")
        p = points[key]
        chip, model = p.chip, p.model
        w = Workload(batch=p.workload.batch, prompt_len=p.workload.prompt_len,
                     gen_len=p.workload.gen_len, kv_cache=p.workload.kv_cache, seed=p.workload.seed)
        m = map_model(model, chip, strategy)
        load = cf.expected_tile_busy_ns(m)
        n_tok = sum(w.tokens_in_pass(q) for q in range(w.n_passes))
        busy = n_tok * load.per_token_ns + w.gen_len * load.per_head_ns
        top = int(np.argmax(busy))
        always = np.array([not mat.is_routed_expert for mat in m.matrices])[m.block_matrix]
        held: dict = {}
        for b in np.flatnonzero(m.tile == top):
            g = _group(m.matrices[m.block_matrix[b]])
            held[g] = held.get(g, 0) + 1
        row = {"label": label, "strategy": strategy, "n_tiles": chip.n_tiles,
               "n_tiers": chip.n_tiers, "area_mm2": chip.area_mm2,
               "fill": len(m.tile) / (chip.n_tiles * chip.n_tiers),
               "max_always_active": int(np.bincount(m.tile, weights=always,
                                                    minlength=chip.n_tiles).max()),
               "busiest_mvms": float(busy[top] / chip.cost.tier_mvm_latency_ns / w.gen_len),
               "busiest_holds": held, "ceiling": cf.throughput_ceiling(m, w),
               "tokens_per_s": math.nan, "tiles_max": math.nan, "dpu_max": math.nan,
               "mha_max": math.nan}
        if (label, strategy) in simulate_configs:
            r = simulate(model, chip, m, w)
            b = r.busy_fraction()
            row.update(tokens_per_s=r.tokens_per_s, tiles_max=b["tiles_max"],
                       dpu_max=b["dpu_max"], mha_max=b["mha_max"])
        rows.append(row)
    return rows


def stacked_under_skew(s_values=(0.0, 2.0), batch: int = 256, preset: str = PRESET) -> dict:
    """Simulated tokens/s of the 64-expert MoE mapped ``moe_stacked`` on the chip of the shipped
    strategy rows (:func:`~aimoe_lib.experiments.condition_points`), under Zipf routing of each
    exponent in ``s_values``: {s: tokens/s}. The shipped sweep has this strategy at s = 0 only."""
    label = f"moe|strategy|moe_stacked|{batch}"
    pts = [p for p in experiments.condition_points(preset=preset) if p.label == label]
    if not pts:
        raise ValueError(f"batch={batch!r}: the shipped strategy rows have batch 8 and 256")
    p = pts[0]
    m = map_model(p.model, p.chip, "moe_stacked")
    return {float(s): _run(p.model, p.chip, m, zipf(s), p.workload).tokens_per_s
            for s in s_values}


def trace_round_trip(directory, model: ModelSpec | None = None, spec=None,
                     n_tokens: int = 4096, seed: int = 0, strategy: str = "balanced",
                     workload: Workload = WORKLOAD, preset: str = PRESET) -> dict:
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
    chip, m = mapped(model, strategy, 1.0, spec, seed, preset)
    w = Workload(batch=workload.batch, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                 kv_cache=workload.kv_cache, seed=seed)
    return {"path": path, "choices": choices,
            "identical": bool(np.array_equal(routing.route(model, n_tokens, replay), choices)),
            "routed": _run(model, chip, m, spec, w), "replayed": _run(model, chip, m, replay, w)}


# ============================================================================ trained-router traces
TRACE_MODELS = ("moe-16", "moe-4")
"""The MoE presets of chapter 8 whose trained floating-point routers ship a routing trace
(:func:`aimoe_lib.analog.traces.load`): 4 MoE layers of 16 or 4 experts, top-2."""

TRACE_PLAN_SHARE = 0.5
"""Share of a trace's recorded windows, the first ones, that planning may see: the pair density
the ``coactivation`` mapping is planned with, the fitted Zipf exponent, the pair-law routing and
the expert grouping all come from them. Simulations replay only the other windows, so (as with
:data:`PLAN_SEED_OFFSET`) no plan is made on the tokens it is then run with."""

TRACE_WORKLOAD = Workload(batch=64, prompt_len=16, gen_len=16)
"""Workload of the trace simulations: 64 sequences, each one recorded window whose first 16
tokens are the prompt and next 15 the generated tokens that are fed back (31 of the window's 64
recorded tokens; the last generated token is sampled, never run)."""

TRACE_REPEATS = 4
"""Runs per (strategy, routing): the trace replays disjoint groups of :data:`TRACE_WORKLOAD`
batch windows of its replay part (4 x 64 = the 256 replay windows of a shipped trace); the
synthetic routings run with seeds 0 .. 3. Rows report the mean and the range."""

TRACE_STRATEGIES = ("in_order", "balanced", "coactivation", "moe_stacked")
"""Mapping strategies of :func:`trace_strategy_rows`."""

TRACE_ROUTINGS = ("trace", "uniform", "zipf", "pairs")
"""Routings of :func:`trace_strategy_rows`: the recorded trace, uniform top-k, Zipf with the
exponent fitted to the planning windows (:func:`fit_zipf`), and the pair law of the planning
windows (a ``coactivation`` RoutingSpec: every pair as often as the trained router picked it, but
tokens and layers drawn independently)."""

ZIPF_FIT_MAX_S = 4.0
"""Largest Zipf exponent :func:`fit_zipf` searches (at s = 4 the favourite of 16 experts gets 92 %
of the draw weight: far beyond any trace here; a fit at this bound is flagged)."""

ZIPF_FIT_STEP = 0.01
"""Grid step of :func:`fit_zipf` before its golden-section refinement."""

GROUPING_RESTARTS = 16
"""Seeded random starting partitions of :func:`best_grouping`'s local search (besides the one of
consecutive indices)."""

TOP_PAIR_FRACTION = 0.1
""":func:`coactivation_summary` reports the share of pair probability carried by this fraction
of the expert pairs, the most frequent ones (uniform routing: the same fraction)."""


@dataclass(frozen=True, eq=False)
class TraceCase:
    """A recorded routing trace cut into its windows and split into planning and replay parts.

    ``choices`` (n_windows x window, n_moe_layers, k) holds the windows one after another, as
    :func:`aimoe_lib.analog.traces.load` returns them; the first ``n_plan`` windows are the
    planning part, the rest the replay part."""

    name: str
    """Label of the trace (the model preset it was recorded with)."""
    model: ModelSpec
    """The model the trace routes (checked: MoE layers, top_k, expert ids)."""
    choices: np.ndarray
    """Recorded expert ids, (tokens, MoE layers, k), window after window."""
    window: int
    """Tokens per recorded window (the model's context)."""
    n_plan: int
    """Windows of the planning part (the first ones)."""

    def __post_init__(self) -> None:
        ch = RoutingSpec(kind="trace", trace=self.choices).validate(self.model).trace
        object.__setattr__(self, "choices", ch)
        if isinstance(self.window, bool) or not isinstance(self.window, int | np.integer) \
                or self.window < 1 or ch.shape[0] % self.window:
            raise ValueError(f"TraceCase.window={self.window!r}: must be an integer >= 1 that "
                             f"divides the trace's {ch.shape[0]} tokens (tokens per recorded "
                             "window)")
        n_w = ch.shape[0] // int(self.window)
        if isinstance(self.n_plan, bool) or not isinstance(self.n_plan, int | np.integer) \
                or not 1 <= self.n_plan < n_w:
            raise ValueError(f"TraceCase.n_plan={self.n_plan!r}: must be an integer in 1 .. "
                             f"{n_w - 1} so that both the planning and the replay part of the "
                             f"{n_w} windows are non-empty")

    @property
    def n_windows(self) -> int:
        """Recorded windows."""
        return self.choices.shape[0] // self.window

    @property
    def windows(self) -> np.ndarray:
        """The trace as (windows, window, MoE layers, k)."""
        return self.choices.reshape(self.n_windows, self.window, *self.choices.shape[1:])

    @property
    def plan_windows(self) -> np.ndarray:
        """The planning part, (n_plan, window, MoE layers, k)."""
        return self.windows[:self.n_plan]

    @property
    def replay_windows(self) -> np.ndarray:
        """The replay part, (n_windows - n_plan, window, MoE layers, k)."""
        return self.windows[self.n_plan:]

    @property
    def plan_tokens(self) -> np.ndarray:
        """The planning part's tokens, (n_plan x window, MoE layers, k)."""
        return self.choices[:self.n_plan * self.window]

    @property
    def replay_tokens(self) -> np.ndarray:
        """The replay part's tokens, ((n_windows - n_plan) x window, MoE layers, k)."""
        return self.choices[self.n_plan * self.window:]


def trace_case(name: str = "moe-16", plan_share: float = TRACE_PLAN_SHARE) -> TraceCase:
    """The shipped trace of chapter 8's MoE preset ``name`` (:data:`TRACE_MODELS`) as a
    :class:`TraceCase`: windows of the model's context, the first ``plan_share`` of them planning.
    Loads the trace without torch."""
    if not isinstance(plan_share, int | float) or isinstance(plan_share, bool) \
            or not 0 < plan_share < 1:
        raise ValueError(f"plan_share={plan_share!r}: must be a number strictly between 0 and 1 "
                         "(the share of the windows planning sees)")
    model, trace = traces.load(name)
    window = model_config(name).context
    n_w = trace.choices.shape[0] // window
    return TraceCase(name, model, trace.choices, window,
                     min(n_w - 1, max(1, int(round(n_w * plan_share)))))


def _case(case) -> TraceCase:
    if isinstance(case, TraceCase):
        return case
    if isinstance(case, str):
        return trace_case(case)
    raise TypeError(f"case must be a TraceCase or a preset name such as 'moe-16', got "
                    f"{type(case).__name__}")


# ---------------------------------------------------------------------------- skew of a trace
def expert_popularity(choices, n_experts: int) -> dict:
    """Per-layer expert load of a routing array (tokens, MoE layers, k).

    Keys: ``load`` (L, E), the fraction of tokens that use each expert (rows sum to k,
    :func:`~aimoe_lib.routing.expert_load`); ``share`` = load / k, each expert's share of the expert
    calls (rows sum to 1); ``sorted_share``, the same by popularity rank (most popular first);
    ``imbalance`` (L,), max/mean load = busiest expert over its even share k/E; ``mean_imbalance``,
    its mean over the layers; ``n_tokens``."""
    load = routing.expert_load(choices, n_experts)
    k = np.asarray(choices).shape[2]
    share = load / k
    imb = load.max(axis=1) * n_experts / k
    return {"load": load, "share": share, "sorted_share": -np.sort(-share, axis=1),
            "imbalance": imb, "mean_imbalance": float(imb.mean()),
            "n_tokens": int(np.asarray(choices).shape[0])}


def zipf_shares(n_experts: int, top_k: int, s: float) -> np.ndarray:
    """Expected share of the expert calls of each popularity rank (most popular first, summing
    to 1) under Zipf routing of exponent ``s`` as :func:`~aimoe_lib.routing.route` draws it: the
    inclusion probabilities of the top-k sets drawn without replacement from the Zipf weights
    (:func:`~aimoe_lib.conflicts.inclusion_probs`), divided by k. For k = 1 these are the Zipf
    weights themselves; for k > 1 they are flatter."""
    law = cf.set_distribution(n_experts, top_k, routing.zipf_probs(n_experts, float(s)))
    return -np.sort(-cf.inclusion_probs(law)) / top_k


def _golden_min(f, lo: float, hi: float, iters: int = 40) -> float:
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (a + b) / 2.0


def fit_zipf(choices, n_experts: int, s_max: float = ZIPF_FIT_MAX_S) -> dict:
    """The Zipf exponent whose routing best reproduces the sorted expert popularity of a routing
    array (tokens, MoE layers, k).

    Method: least squares on log-popularity by rank. The measured share of each rank,
    ``expert_popularity(...)["sorted_share"]`` (an expert never picked counts as half a call, so
    its logarithm stays finite), is compared with :func:`zipf_shares`, the share the simulator's
    Zipf routing gives that rank *after* top-k sampling without replacement (fitting the raw
    weights 1/(r + 1)^s instead would underestimate s for k > 1, since drawing k distinct experts
    flattens the load). The objective is the mean squared difference of the logarithms over all
    ranks; ``s`` minimises it over all layers together (one exponent, as a ``zipf`` RoutingSpec
    has), ``s_per_layer`` layer by layer: a grid of step :data:`ZIPF_FIT_STEP` on [0, ``s_max``],
    then golden-section search around the best grid point.

    Keys: ``s``, ``s_per_layer`` (L,), ``rms_log`` (root-mean-square log error at ``s``; 0.1 means
    shares off by about 10 %), ``rms_log_uniform`` (the same for s = 0, uniform routing),
    ``at_bound`` (the fit hit ``s_max``), ``model_share`` (:func:`zipf_shares` at ``s``).
    """
    if not isinstance(s_max, int | float) or isinstance(s_max, bool) or not s_max > 0:
        raise ValueError(f"s_max={s_max!r}: must be a number > 0 (the largest exponent searched)")
    a = np.asarray(choices)
    pop = expert_popularity(a, n_experts)
    n, k = a.shape[0], a.shape[2]
    logq = np.log(np.maximum(pop["sorted_share"], 0.5 / (n * k)))

    def err(s: float, rows=slice(None)) -> float:
        return float(np.mean((logq[rows] - np.log(zipf_shares(n_experts, k, s))) ** 2))

    grid = np.arange(0.0, float(s_max) + ZIPF_FIT_STEP / 2, ZIPF_FIT_STEP)
    curves = np.log(np.stack([zipf_shares(n_experts, k, s) for s in grid]))  # (G, E)
    per = np.mean((logq[None, :, :] - curves[:, None, :]) ** 2, axis=2)    # (G, L)

    def refine(col, rows) -> float:
        i = int(np.argmin(col))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        return grid[i] if lo == hi else _golden_min(lambda s: err(s, rows), lo, hi)

    s = refine(per.mean(axis=1), slice(None))
    s_layer = np.array([refine(per[:, j], j) for j in range(per.shape[1])])
    return {"s": float(s), "s_per_layer": s_layer, "rms_log": math.sqrt(err(s)),
            "rms_log_uniform": math.sqrt(err(0.0)),
            "at_bound": bool(s >= s_max - ZIPF_FIT_STEP / 2),
            "model_share": zipf_shares(n_experts, k, s)}


# ---------------------------------------------------------------------------- pairs of a trace
def default_groups(n_experts: int) -> int:
    """Groups of :func:`coactivation_summary`: 4 (as :func:`block_coactivation`'s default) when
    the experts form groups of at least 2, else ``n_experts // 2`` (2 groups of 2 for 4 experts)."""
    return 4 if n_experts >= 8 and n_experts % 4 == 0 else max(1, n_experts // 2)


def within_group_share(density, groups) -> np.ndarray:
    """Share of the pair probability that falls on pairs inside a group: ``density`` (E, E) or
    (L, E, E), ``groups`` the group of every expert, (E,) or (L, E). Returns (L,) (a float for
    a single (E, E) density)."""
    d = np.asarray(density, dtype=float)
    single = d.ndim == 2
    d = d[None] if single else d
    g = np.asarray(groups)
    g = np.broadcast_to(g if g.ndim == 2 else g[None], (d.shape[0], d.shape[-1]))
    same = g[:, :, None] == g[:, None, :]
    out = (d * same).sum(axis=(1, 2)) / d.sum(axis=(1, 2))
    return float(out[0]) if single else out


def _local_search(c: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Swap two experts of different groups while that raises the within-group pair
    probability (best swap first)."""
    labels = labels.copy()
    e = len(labels)
    for _ in range(e * e):
        s = c @ np.eye(n_groups)[labels]                   # (E, G): density to each group
        own = s[np.arange(e), labels]
        to = s[:, labels]                                    # to[i, j] = S[i, group of j]
        gain = to + to.T - own[:, None] - own[None, :] - 2.0 * c
        gain[labels[:, None] == labels[None, :]] = -np.inf
        i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if gain[i, j] <= 1e-15:
            break
        labels[i], labels[j] = labels[j], labels[i]
    return labels


def best_grouping(density, n_groups: int, restarts: int = GROUPING_RESTARTS,
                  seed: int = 0) -> np.ndarray:
    """Partition of the E experts into ``n_groups`` equal groups that puts as much of the pair
    probability of ``density`` ((E, E), or (L, E, E) for one partition per layer) inside groups
    as a local search finds: best-improving swaps from the partition of consecutive indices and
    from ``restarts`` seeded random partitions, the best result kept (a heuristic: the exact
    optimum would need all 2.6 million partitions of 16 experts into 4 groups of 4). Groups are
    numbered by their smallest expert. Returns the group of every expert, (E,) or (L, E)."""
    d = np.asarray(density, dtype=float)
    single = d.ndim == 2
    d = d[None] if single else d
    e = d.shape[-1]
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 1 \
            or e % n_groups:
        raise ValueError(f"n_groups={n_groups!r}: must be an integer that divides the "
                         f"{e} experts into equal groups")
    rng = np.random.default_rng(seed)
    base = np.arange(e) // (e // n_groups)
    starts = [base] + [rng.permutation(base) for _ in range(int(restarts))]
    out = []
    for c in d:
        c = (c + c.T) / 2.0
        best, best_v = base, -1.0
        for st in starts:
            lab = _local_search(c, st, n_groups)
            v = float((c * (lab[:, None] == lab[None, :])).sum())
            if v > best_v + 1e-15:
                best, best_v = lab, v
        _, first = np.unique(best, return_index=True)
        rank = np.argsort(np.argsort(first))
        out.append(rank[best])
    out = np.stack(out)
    return out[0] if single else out


def top_pair_share(density, fraction: float = TOP_PAIR_FRACTION) -> np.ndarray:
    """Share of the pair probability carried by the ``fraction`` most frequent expert pairs
    (ceil(fraction x E(E-1)/2) pairs), per layer of an (L, E, E) density (float for (E, E))."""
    d = np.asarray(density, dtype=float)
    single = d.ndim == 2
    d = d[None] if single else d
    e = d.shape[-1]
    i, j = np.triu_indices(e, 1)
    pairs = d[:, i, j] + d[:, j, i]
    n_top = max(1, math.ceil(fraction * len(i)))
    out = -np.sort(-pairs, axis=1)[:, :n_top].sum(axis=1) / pairs.sum(axis=1)
    return float(out[0]) if single else out


def coactivation_summary(case="moe-16", n_groups: int | None = None) -> dict:
    """Which experts the trained router picks *together*, against the synthetic assumptions.

    The expert grouping (:func:`best_grouping`, ``n_groups`` default :func:`default_groups`) is
    found on the planning windows and its within-group share measured on the replay windows
    (``within``; on the planning windows: ``within_plan``), next to three references: uniform
    routing (``within_uniform`` = n_groups x C(E/n_groups, 2) / C(E, 2)), independent picks with
    the replay's measured popularity (``within_independent``, from
    :func:`~aimoe_lib.routing.coactivation_from_probs`) and :func:`block_coactivation` (0.9).
    ``top_pairs``: share of the replay's pair probability on the :data:`TOP_PAIR_FRACTION` most
    frequent pairs (uniform: ``top_pairs_uniform``, the block density: ``top_pairs_block``);
    ``never``: pairs the replay windows never pick together, per layer; ``lift_max``: the largest
    ratio of a pair's frequency to its frequency under independent picks. Also returns the
    ``density`` of the replay windows and the ``groups``."""
    case = _case(case)
    e = case.model.n_experts
    g = default_groups(e) if n_groups is None else n_groups
    plan_d = routing.coactivation_density(case.plan_tokens, e)
    rep_d = routing.coactivation_density(case.replay_tokens, e)
    groups = best_grouping(plan_d, g)
    share = expert_popularity(case.replay_tokens, e)["share"]
    indep = np.stack([routing.coactivation_from_probs(p) for p in share])
    i, j = np.triu_indices(e, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(indep > 0, rep_d / indep, 0.0)
    block = block_coactivation(e, g, 0.9) if e // g >= 2 else None
    return {"name": case.name, "n_experts": e, "n_groups": g, "density": rep_d, "groups": groups,
            "within": within_group_share(rep_d, groups),
            "within_plan": within_group_share(plan_d, groups),
            "within_uniform": g * math.comb(e // g, 2) / math.comb(e, 2),
            "within_independent": within_group_share(indep, groups),
            "within_block": 0.9 if block is not None else math.nan,
            "top_pairs": top_pair_share(rep_d),
            "top_pairs_uniform": max(1, math.ceil(TOP_PAIR_FRACTION * len(i))) / len(i),
            "top_pairs_block": top_pair_share(block) if block is not None else math.nan,
            "never": (rep_d[:, i, j] == 0).sum(axis=1),
            "lift_max": lift[:, i, j].max(axis=1)}


def trace_summary(names=TRACE_MODELS, plan_share: float = TRACE_PLAN_SHARE) -> list[dict]:
    """One row per shipped trace: the measured skew against the Zipf fit, and the pairs.

    Keys: name, n_experts, top_k, n_tokens, n_plan and n_replay (windows), window;
    ``imbalance`` (L,) and ``mean_imbalance`` over the whole trace (:func:`expert_popularity`),
    ``sorted_share`` (L, E) of the replay windows; ``zipf_s``, ``zipf_s_per_layer``,
    ``zipf_rms_log``, ``uniform_rms_log``, ``zipf_at_bound``, ``zipf_share`` from
    :func:`fit_zipf` on the planning windows; ``zipf_s_replay``, the same fit on the replay
    windows (how stable the exponent is); ``zipf_s_noise``, the same fit to as many tokens routed
    uniformly (seed 0): the exponent sampling noise alone produces; ``zipf_imbalance``, the
    busiest expert's load over its even share under the fitted Zipf law; and every key of
    :func:`coactivation_summary`."""
    rows = []
    for name in names:
        case = trace_case(name, plan_share)
        m = case.model
        e, k = m.n_experts, m.top_k
        pop = expert_popularity(case.choices, e)
        fit = fit_zipf(case.plan_tokens, e)
        rows.append({"name": name, "n_experts": e, "top_k": k,
                     "n_tokens": int(case.choices.shape[0]), "window": case.window,
                     "n_plan": case.n_plan, "n_replay": case.n_windows - case.n_plan,
                     "imbalance": pop["imbalance"], "mean_imbalance": pop["mean_imbalance"],
                     "sorted_share": expert_popularity(case.replay_tokens, e)["sorted_share"],
                     "zipf_s": fit["s"], "zipf_s_per_layer": fit["s_per_layer"],
                     "zipf_rms_log": fit["rms_log"], "uniform_rms_log": fit["rms_log_uniform"],
                     "zipf_at_bound": fit["at_bound"], "zipf_share": fit["model_share"],
                     "zipf_imbalance": float(fit["model_share"][0] * e),
                     "zipf_s_replay": fit_zipf(case.replay_tokens, e)["s"],
                     "zipf_s_noise": fit_zipf(routing.route(m, len(case.plan_tokens), "uniform",
                                                            seed=0), e)["s"],
                     **coactivation_summary(case)})
    return rows


# ---------------------------------------------------------------------------- replaying a trace
def replay_windows(windows, batch: int, positions: int) -> np.ndarray:
    """Routing rows that make simulated sequence b replay recorded window b.

    ``windows`` is (windows, window, MoE layers, k). The simulator asks
    :func:`~aimoe_lib.routing.route` for positions x batch rows and gives sequence b at position p
    row p x batch + b (position-major), and a ``trace`` RoutingSpec hands out its rows in order,
    wrapping around silently when a run needs more rows than the trace has. Replaying the
    recorded windows as they are would therefore spread one window over the batch of one decoding
    step, and a long run would repeat tokens. This returns exactly positions x batch rows with row
    p x batch + b = token p of window b; a workload that needs more windows or more positions than
    ``windows`` holds raises ValueError."""
    w = np.asarray(windows)
    if w.ndim != 4:
        raise ValueError(f"windows has shape {w.shape}: expected (windows, window, MoE layers, "
                         "k); use TraceCase.replay_windows")
    for name, v, have, what in (("batch", batch, w.shape[0], "recorded windows"),
                                ("positions", positions, w.shape[1], "tokens per window")):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= have:
            raise ValueError(f"{name}={v!r}: must be an integer in 1 .. {have} (the {have} "
                             f"{what} available); use a smaller workload or more windows")
    return np.ascontiguousarray(w[:batch, :positions].transpose(1, 0, 2, 3)).reshape(
        positions * batch, *w.shape[2:])


def _set_law(model: ModelSpec, choices) -> dict:
    """Keyword arguments of the closed forms of :mod:`aimoe_lib.conflicts` for the law of the
    expert sets in ``choices``: exact for k <= 2 (k = 1: the measured load; k = 2: the measured
    pair density, which for two experts per token is the whole set law), the per-expert
    approximation of :func:`~aimoe_lib.conflicts.layer_probs` otherwise."""
    e, k = model.n_experts, model.top_k
    if k == 1:
        return {"expert_probs": routing.expert_load(choices, e)}
    if k == 2:
        return {"pair_density": routing.coactivation_density(choices, e)}
    return {"expert_probs": cf.layer_probs(model, RoutingSpec(kind="trace", trace=choices))}


def trace_routings(case="moe-16", workload: Workload = TRACE_WORKLOAD,
                   n_repeats: int = TRACE_REPEATS, routings=TRACE_ROUTINGS) -> dict:
    """The routing of every run of :func:`trace_strategy_rows`: {routing name: [(label,
    RoutingSpec, seed, closed-form kwargs) per repeat]}, with the planning results under the key
    ``"plan"`` (``density``: pair density of the planning windows, ``zipf_s``: the fitted
    exponent). Raises ValueError when the replay windows cannot feed ``n_repeats`` disjoint
    batches of ``workload`` (see :func:`replay_windows`)."""
    case = _case(case)
    model, e = case.model, case.model.n_experts
    unknown = set(routings) - set(TRACE_ROUTINGS)
    if unknown:
        raise ValueError(f"routings={tuple(routings)!r}: unknown {sorted(unknown)}; choose from "
                         f"{', '.join(TRACE_ROUTINGS)}")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise ValueError(f"n_repeats={n_repeats!r}: must be an integer >= 1")
    b, pos = workload.batch, workload.positions
    n_rep = case.n_windows - case.n_plan
    if pos > case.window:
        raise ValueError(f"workload runs {pos} positions per sequence (prompt_len + gen_len - 1) "
                         f"but a recorded window of {case.name!r} has {case.window} tokens; "
                         "shorten prompt_len or gen_len")
    if "trace" in routings and b * n_repeats > n_rep:
        raise ValueError(f"workload batch {b} x n_repeats {n_repeats} = {b * n_repeats} windows, "
                         f"but the replay part of {case.name!r} has {n_rep}; lower the batch or "
                         "n_repeats (the trace is never replayed twice in one comparison)")
    plan_d = routing.coactivation_density(case.plan_tokens, e) if model.top_k >= 2 else None
    s_fit = fit_zipf(case.plan_tokens, e)["s"]
    out: dict = {"plan": {"density": plan_d, "zipf_s": s_fit}}
    for name in routings:
        runs = []
        for r in range(n_repeats):
            if name == "trace":
                ch = replay_windows(case.replay_windows[r * b:(r + 1) * b], b, pos)
                spec, law, label = RoutingSpec(kind="trace", trace=ch), _set_law(model, ch), \
                    "trained router (trace)"
            elif name == "uniform":
                spec, law, label = RoutingSpec(), {}, "uniform"
            elif name == "zipf":
                spec = zipf(s_fit)
                law, label = analytic_routing(model, spec, r), f"Zipf s = {s_fit:.2f} (fitted)"
            else:
                if plan_d is None:
                    raise ValueError(f"routing 'pairs' needs top_k >= 2; {model.name!r} has "
                                     f"top_k={model.top_k}")
                spec = RoutingSpec(kind="coactivation", coactivation=plan_d)
                law, label = _set_law(model, case.plan_tokens), "pair law (planning windows)"
            runs.append((label, spec, r, law))
        out[name] = runs
    return out


def trace_strategy_rows(case="moe-16", preset: str = PRESET,
                        workload: Workload = TRACE_WORKLOAD, strategies=TRACE_STRATEGIES,
                        routings=TRACE_ROUTINGS, n_repeats: int = TRACE_REPEATS) -> list[dict]:
    """The trained-router model simulated on its chips under the trace and synthetic routings.

    ``case`` is a :class:`TraceCase` or a preset name of :data:`TRACE_MODELS`. Each strategy runs
    on :func:`routing_chip` (of ``preset``, tiles = the dense twin's blocks) with one mapping for
    all routings; ``coactivation`` is planned with the pair density of the planning windows.
    Every routing of :func:`trace_routings` runs ``n_repeats`` times (the trace: disjoint groups
    of replay windows; the synthetic ones: seeds 0 .. n_repeats - 1).

    Row keys: case, model, preset, strategy, routing (name), routing_label, zipf_s (the fitted
    exponent), n_tiles, n_tiers, area_mm2, tiles_used, batch, prompt_len, gen_len, n_repeats; the
    means over the repeats of ``tokens_per_s``, ``conflicts_per_token`` (tile conflicts per
    generated token), ``energy_per_token_pj`` (total, static included), ``dynamic_pj_per_token``
    (operations only), ``energy_by_kind_pj`` (per generated token: {kind: pJ} of
    :attr:`~aimoe_lib.simulator.result.SimResult.energy_breakdown_pj`, ``passive`` being the static
    power), ``tier_mvms_per_token`` (tier MVMs per generated token), ``busiest_tile`` (busy
    fraction) and ``ceiling`` (tokens/s,
    :func:`~aimoe_lib.conflicts.throughput_ceiling` from the set law of the replayed tokens for the
    trace, the routing's law otherwise); ``tokens_per_s_min`` / ``_max`` over the repeats;
    ``of_ceiling``."""
    case = _case(case)
    model = case.model
    plans = trace_routings(case, workload, n_repeats, routings)
    plan_d = plans["plan"]["density"]
    rows = []
    for strategy in strategies:
        chip = routing_chip(model, strategy, 1.0, preset)
        m = map_model(model, chip, strategy,
                      coactivation=plan_d if strategy == "coactivation" else None)
        for name in routings:
            res, ceil = [], []
            for _label, spec, seed, law in plans[name]:
                w = Workload(batch=workload.batch, prompt_len=workload.prompt_len,
                             gen_len=workload.gen_len, kv_cache=workload.kv_cache, seed=seed)
                res.append(_run(model, chip, m, spec, w))
                ceil.append(cf.throughput_ceiling(m, w, **law))
            n = res[0].generated_tokens
            tps = np.array([r.tokens_per_s for r in res])
            row = {"case": case.name, "model": model.name, "preset": preset,
                   "strategy": strategy, "routing": name, "routing_label": plans[name][0][0],
                   "zipf_s": plans["plan"]["zipf_s"], "n_tiles": chip.n_tiles,
                   "n_tiers": chip.n_tiers, "area_mm2": chip.area_mm2,
                   "tiles_used": m.tiles_used, "batch": workload.batch,
                   "prompt_len": workload.prompt_len, "gen_len": workload.gen_len,
                   "n_repeats": len(res), "tokens_per_s": float(tps.mean()),
                   "tokens_per_s_min": float(tps.min()), "tokens_per_s_max": float(tps.max()),
                   "conflicts_per_token": float(np.mean([r.tile_conflicts / n for r in res])),
                   "energy_per_token_pj": float(np.mean([r.energy_per_token_pj for r in res])),
                   "dynamic_pj_per_token": float(np.mean([r.dynamic_energy_pj / n
                                                          for r in res])),
                   "energy_by_kind_pj": {k: float(np.mean([r.energy_breakdown_pj[k] / n
                                                           for r in res]))
                                         for k in res[0].energy_breakdown_pj},
                   "tier_mvms_per_token": float(np.mean([r.tier_mvms / n for r in res])),
                   "busiest_tile": float(np.mean([r.busy_fraction()["tiles_max"] for r in res])),
                   "ceiling": float(np.mean(ceil))}
            row["of_ceiling"] = row["tokens_per_s"] / row["ceiling"]
            rows.append(row)
    return rows
