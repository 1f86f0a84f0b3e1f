"""The study's experiments as functions: model families for the scaling chapter, the sweeps whose
results ship in data/ (chips sized by :func:`~aimoe_lib.mapping.fitting_chip`), and the live
comparison of one family member against its dense equals.

Regenerate the shipped results (about a minute on 2 cores)::

    python -m aimoe_lib.experiments scaling      # -> data/scaling.json
    python -m aimoe_lib.experiments conditions   # -> data/conditions.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import hardware, mapping, sweep, teaching, zoo
from .mapping import STRATEGIES, MappingError, expected_conflicts, fitting_chip
from .models import ModelSpec
from .routing import RoutingSpec, coactivation_from_probs, zipf_probs
from .shipped import data_path
from .simulator import Workload, simulate

__all__ = ["BASE", "FAMILIES", "moe_variant", "dense_deeper", "dense_wider", "scaling_family",
           "PRESET", "blocks_needed", "scaling_points", "zoo_pairs", "condition_points", "zoo_points",
           "family_points", "family_rows", "run", "load", "DATA_DIR", "ZIPF_S", "strategy_table", "fitted_mapping", "small_run",
           "batch_sweep", "conflict_runs"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""The repository's data/ folder, where :func:`run` writes regenerated results (a source checkout
only); shipped results are read with :func:`~aimoe_lib.shipped.data_path`."""

BASE = ModelSpec(name="base-dense", d_model=1024, n_layers=12, n_heads=16, d_ff=4096,
                 vocab_size=32000, ffn="gelu", norm="layernorm")
"""Paper-like base model: a GPT-2-medium-sized decoder (d_model 1024, 12 layers, GELU FFN of 4096).
Büchel et al. start from GPT-2/Switch-style models of this size; exact sizes are ours."""

EXPERTS = (1, 2, 4, 8, 16, 32, 64)
"""Expert counts of the scaling families."""

WORKLOAD = Workload(batch=8, prompt_len=4, gen_len=8)
"""Default workload of the scaling sweeps: 8 sequences of 4 prompt + 8 generated tokens."""

BATCHES = (8, 256)
"""Batch sizes of the scaling sweep: a latency-bound one and one that loads the tiles."""

FAMILIES = ("moe", "dense-deeper", "dense-wider")

PRESET = "physical"
"""Chip preset of the book's experiments (:func:`~aimoe_lib.hardware.preset`): the 'physical'
costs (HERMES-derived MVMs, sourced static power, attention linear in d, multi-die). Pass
``preset='paper'`` to any function here to reproduce the earlier line of work's constants."""
"""Model families of the scaling sweep (:func:`scaling_family`)."""


def moe_variant(base: ModelSpec, n_experts: int, top_k: int = 1) -> ModelSpec:
    """``base`` with every FFN replaced by ``n_experts`` experts of the same width, top-k routed:
    active parameters stay those of ``base`` (plus the router) for k = 1."""
    if n_experts == 1:
        return base.replace(name=f"{base.name}")
    return base.replace(name=f"moe-{n_experts}e-top{top_k}", n_experts=n_experts, top_k=top_k,
                        d_expert=base.d_ff)


def dense_deeper(base: ModelSpec, total_params: int) -> ModelSpec:
    """``base`` with as many layers as make its total parameters closest to ``total_params``."""
    per_layer = base.replace(n_layers=2).total_params - base.replace(n_layers=1).total_params
    fixed = base.replace(n_layers=1).total_params - per_layer
    n = max(1, round((total_params - fixed) / per_layer))
    return base.replace(name=f"dense-deeper-{n}L", n_layers=n)


def dense_wider(base: ModelSpec, total_params: int, multiple: int = 64) -> ModelSpec:
    """``base`` with d_model (a multiple of ``multiple``; d_ff = 4 d_model, heads of 64) whose total
    parameters are closest to ``total_params``."""
    def make(d):
        return base.replace(name=f"dense-wider-d{d}", d_model=d, d_ff=4 * d, n_heads=d // 64)
    lo, hi = multiple, multiple
    while make(hi).total_params < total_params:
        lo, hi = hi, hi * 2
    cands = [make(d) for d in range(lo, hi + multiple, multiple)]
    return min(cands, key=lambda s: abs(s.total_params - total_params))


def scaling_family(base: ModelSpec = BASE, experts=EXPERTS, top_k: int = 1) -> list[tuple[str, int, ModelSpec]]:
    """(family, E, model) for: MoE with E experts; dense deeper and dense wider with the same total
    parameters as that MoE."""
    out = []
    for e in experts:
        moe = moe_variant(base, e, top_k)
        out.append(("moe", e, moe))
        if e > 1:
            out.append(("dense-deeper", e, dense_deeper(base, moe.total_params)))
            out.append(("dense-wider", e, dense_wider(base, moe.total_params)))
    return out


blocks_needed = mapping.blocks_needed
"""Tiers a model's analog matrices need (:func:`~aimoe_lib.mapping.blocks_needed`)."""


def scaling_points(base: ModelSpec = BASE, experts=EXPERTS, workload: Workload = WORKLOAD,
                   batches=BATCHES, strategy: str = "in_order", preset: str = PRESET
                   ) -> list[sweep.Point]:
    """Every model of the scaling family on (a) a 3D chip with as many tiles as the base model has
    blocks (so the base fits one tier per tile) and as many tiers as the model needs, and (b) a 2D
    chip of equal capacity (one tier per tile), at each batch size; every chip is
    :func:`~aimoe_lib.mapping.fitting_chip` with digital units per layer. Labels:
    family|E|3d-or-2d|batch."""
    n_tiles = blocks_needed(base)
    pts = []
    for fam, e, spec in scaling_family(base, experts):
        c3 = fitting_chip(spec, n_tiles=n_tiles, units="per_layer", preset=preset)
        c2 = c3.as_2d().provisioned(spec.n_layers)
        for b in batches:
            w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                         kv_cache=workload.kv_cache, routing=workload.routing, seed=workload.seed)
            pts.append(sweep.Point(spec, c3, strategy, w, label=f"{fam}|{e}|3d|{b}"))
            pts.append(sweep.Point(spec, c2, strategy, w, label=f"{fam}|{e}|2d|{b}"))
    return pts


def zoo_pairs() -> list[tuple[str, str]]:
    """Real MoE / dense pairs of about the same total parameters."""
    return [("olmoe-1b-7b", "llama-2-7b"), ("mixtral-8x7b", "llama-2-70b")]


@functools.lru_cache(maxsize=16)
def _loaded_chip(spec: ModelSpec, chip: hardware.ChipConfig, batch: int, prompt_len: int,
                 gen_len: int) -> hardware.ChipConfig:
    """``chip`` with its units provisioned to the load of ``batch`` sequences of ``prompt_len`` +
    ``gen_len`` tokens, uniform routing (:func:`~aimoe_lib.provisioning.provision_to_load`,
    several simulations); deterministic, so kept for the next :func:`condition_points` call of
    the same session (a Workload compares by identity, hence its fields as the key)."""
    from .provisioning import provision_to_load
    w = Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len)
    return provision_to_load(spec, chip, mapping.map_model(spec, chip), w).chip


def condition_points(workload: Workload = WORKLOAD, preset: str = PRESET) -> list[sweep.Point]:
    """Where the MoE advantage shrinks: MoE-64 vs dense-deeper of equal total parameters, varying
    batch size, routing skew (Zipf s), tiers per tile, mapping strategy and the provisioning of
    digital units, one at a time. The mapping strategies share one chip (equal capacity: the
    tiers ``moe_stacked`` needs, for every strategy); ``units|to_load`` replaces the 24 + 8 units
    per layer by the fewest that stay at most half busy at that batch
    (:func:`~aimoe_lib.provisioning.provision_to_load`)."""
    moe = moe_variant(BASE, 64)
    dense = dense_deeper(BASE, moe.total_params)
    n_tiles = blocks_needed(BASE)
    pts = []
    for spec in (moe, dense):
        fam = "moe" if spec.is_moe else "dense-deeper"
        chip = fitting_chip(spec, n_tiles=n_tiles, units="per_layer", preset=preset)
        for b in (1, 4, 16, 64, 256, 1024):
            w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
            pts.append(sweep.Point(spec, chip, "in_order", w, label=f"{fam}|batch|{b}"))
        for b in (workload.batch, 256):
            wb = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
            for mult in (0.5, 1, 2, 4):  # fewer tiles with more tiers each, or more tiles
                c = fitting_chip(spec, n_tiles=max(1, int(n_tiles * mult)), units="per_layer",
                                 preset=preset)
                pts.append(sweep.Point(spec, c, "in_order", wb, label=f"{fam}|tiles|{mult}|{b}"))
            loaded = _loaded_chip(spec, chip, b, workload.prompt_len, workload.gen_len)
            pts.append(sweep.Point(spec, loaded, "in_order", wb, label=f"{fam}|units|to_load|{b}"))
            if not spec.is_moe:
                continue
            for s in (0.0, 0.5, 1.0, 1.5, 2.0):
                w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                             routing=RoutingSpec(kind="zipf", zipf_s=s))
                pts.append(sweep.Point(spec, chip, "in_order", w, label=f"{fam}|zipf|{s}|{b}"))
        if spec.is_moe:
            # one chip for every strategy: a slab of moe_stacked needs 2E tiers on its tiles
            stacked = fitting_chip(spec, n_tiles=n_tiles, units="per_layer", strategy="moe_stacked",
                                   preset=preset)
            for strat in ("in_order", "balanced", "moe_stacked"):
                for b in (workload.batch, 256):
                    w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
                    pts.append(sweep.Point(spec, stacked, strat, w,
                                           label=f"{fam}|strategy|{strat}|{b}"))
    return pts


def zoo_points(workload: Workload = Workload(batch=8, prompt_len=8, gen_len=8),
               n_tiers: int = 128, preset: str = PRESET) -> list[sweep.Point]:
    """The zoo pairs on 3D chips of ``n_tiers`` tiers (tiles follow) and on 2D chips of equal
    capacity."""
    pts = []
    for pair in zoo_pairs():
        for name in pair:
            spec = zoo.get(name)
            c = fitting_chip(spec, n_tiers=n_tiers, units="per_layer", preset=preset)
            pts.append(sweep.Point(spec, c, "in_order", workload, label=f"{name}|3d"))
            pts.append(sweep.Point(spec, c.as_2d().provisioned(spec.n_layers), "in_order", workload,
                                   label=f"{name}|2d"))
    return pts


def family_points(n_experts: int = 64, batch: int = 8, gen_len: int = 8, chip: str = "3d",
                  tiles_factor: float = 1.0, strategy: str = "in_order",
                  families: Sequence[str] = FAMILIES, preset: str = PRESET) -> list[sweep.Point]:
    """The scaling comparison at one E: MoE with ``n_experts`` experts and the dense deeper and
    wider models of its total, each on the 3D chip of :func:`scaling_points` with
    ``tiles_factor`` x 702 tiles (tiers follow) or its 2D flattening (``chip='2d'``), 4 prompt
    tokens. ``strategy`` maps the MoE (dense models stay ``in_order``); ``moe_stacked`` gets at
    least :func:`~aimoe_lib.mapping.moe_stacked_min_tiers` tiers per tile, as in the conditions
    sweep. Labels as in the scaling sweep."""
    if chip not in ("3d", "2d"):
        raise ValueError(f"family_points(chip={chip!r}): use '3d' or '2d'")
    n_tiles = max(1, int(blocks_needed(BASE) * tiles_factor))
    w = Workload(batch=batch, prompt_len=WORKLOAD.prompt_len, gen_len=gen_len)
    pts = []
    for fam, e, spec in scaling_family(BASE, (n_experts,)):
        if fam not in families:
            continue
        strat = strategy if spec.is_moe else "in_order"
        c = fitting_chip(spec, n_tiles=n_tiles, units="per_layer", strategy=strat, preset=preset)
        if chip == "2d":
            c = c.as_2d().provisioned(spec.n_layers)
        pts.append(sweep.Point(spec, c, strat, w, label=f"{fam}|{e}|{chip}|{batch}"))
    return pts


def family_rows(**kw) -> list[dict]:
    """:func:`~aimoe_lib.sweep.run_point` of each :func:`family_points` point (serial, no
    cache); keyword arguments are those of :func:`family_points`."""
    return [sweep.run_point(p) for p in family_points(**kw)]


_EXPERIMENTS = {"scaling": scaling_points, "conditions": condition_points, "zoo": zoo_points}


def run(name: str, out: Path | None = None, cache_dir: Path | None = None,
        preset: str = PRESET) -> Path:
    """Run experiment ``name`` on chips of ``preset`` and write its rows to data/<name>.json (or
    ``out``)."""
    pts = _EXPERIMENTS[name](preset=preset)
    rows = sweep.sweep(pts, cache_dir=cache_dir)
    out = out or DATA_DIR / f"{name}.json"
    cmd = f"python -m aimoe_lib.experiments {name}" + (f" --preset {preset}" if preset != PRESET
                                                         else "")
    out.write_text(json.dumps({"experiment": name, "command": cmd, "preset": preset,
                               "rows": rows}, indent=0))
    return out


def load(name: str) -> list[dict]:
    """Rows of a shipped experiment (data/<name>.json, :func:`~aimoe_lib.shipped.data_path`)."""
    path = data_path(f"{name}.json")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: regenerate it with "
                                f"python -m aimoe_lib.experiments {name}")
    return json.loads(path.read_text())["rows"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aimoe_lib.experiments",
                                 description="Regenerate the shipped sweeps (data/<name>.json).")
    ap.add_argument("names", nargs="*", default=list(_EXPERIMENTS), choices=list(_EXPERIMENTS))
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--preset", default=PRESET, choices=hardware.preset_names(),
                    help=f"chip preset (default {PRESET})")
    ap.add_argument("--out-dir", type=Path, default=None,
                    help="write <name>.json here instead of the repository's data/")
    args = ap.parse_args(argv)
    if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
        ap.error(f"--out-dir {str(args.out_dir)!r} is a file; give a folder")
    for n in args.names:
        out = None
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            out = args.out_dir / f"{n}.json"
        print(run(n, out=out, cache_dir=args.cache_dir, preset=args.preset))
    return 0


# ------------------------------------------------------------------ chapter 3: mappings
ZIPF_S = 1.2
"""Zipf exponent of chapter 3's skewed routing (:func:`strategy_table`, :func:`fitted_mapping`):
expert e is picked with probability proportional to 1 / (e + 1)^s. An illustrative choice (expert
0 then takes 43 % of the probability among 8 experts), not a measured router; chapter 6 looks at
real skew."""


def strategy_table(model: ModelSpec, chip: hardware.ChipConfig, strategies: Sequence[str] = STRATEGIES,
                   expert_probs=None, seed: int = 0, zipf_s: float = ZIPF_S,
                   n_tokens: int = 2000, digital=("embedding",)) -> list[dict]:
    """The numbers behind :func:`~aimoe_lib.viz.mapping.strategy_comparison`, one dict per strategy.

    Keys: ``strategy``; ``status`` (``"ok"``, ``"does not fit"`` when
    :func:`~aimoe_lib.mapping.map_model` raises :class:`~aimoe_lib.mapping.MappingError`, or
    ``"not applicable"`` for an expert strategy on a dense model) with the message in ``error``;
    ``tiles_used`` and ``max_tiers_per_tile`` (:attr:`~aimoe_lib.mapping.Mapping.tiers_used`);
    ``layer_sharing``, the mean of :meth:`~aimoe_lib.mapping.Mapping.consecutive_layer_sharing`;
    ``conflicts_uniform`` and ``conflicts_skewed``, the mean over MoE layers of
    :func:`~aimoe_lib.mapping.expected_conflicts` (waiting tier MVMs per token) under uniform
    routing and under ``expert_probs`` (default :func:`~aimoe_lib.routing.zipf_probs` with
    ``zipf_s``), both over ``n_tokens`` tokens seeded by ``seed`` (NaN for a dense model). Numbers
    are None where the status is not ``"ok"``. The strategy ``coactivation`` plans with
    :func:`~aimoe_lib.routing.coactivation_from_probs` of the skewed probabilities; ``random`` uses ``seed``.
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
            m = mapping.map_model(model, chip, s, digital=digital, seed=seed,
                                  coactivation=coact)
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


def fitted_mapping(model: str | ModelSpec = "small-moe", strategy: str = "in_order",
                   n_tiers: int = 16, tier_size: int = 512, zipf_s: float = ZIPF_S,
                   preset: str = PRESET) -> mapping.Mapping:
    """``model`` (a zoo name, ``'small-moe'`` for :func:`~aimoe_lib.teaching.mapping_moe`, or a
    ModelSpec) mapped with ``strategy`` on the chip of ``n_tiers`` tiers of ``tier_size`` x
    ``tier_size`` just large enough for it (:func:`~aimoe_lib.mapping.fitting_chip`, named
    'fitted'). ``coactivation`` plans with the co-activation density of Zipf-skewed routing of
    exponent ``zipf_s`` (:func:`~aimoe_lib.routing.coactivation_from_probs` of
    :func:`~aimoe_lib.routing.zipf_probs`). Raises :class:`~aimoe_lib.mapping.MappingError` when
    the strategy cannot place the model."""
    if isinstance(model, str):
        spec = teaching.mapping_moe() if model == "small-moe" else zoo.get(model)
    else:
        spec = model
    chip = fitting_chip(spec, n_tiers=n_tiers, tier_rows=tier_size, tier_cols=tier_size,
                        name="fitted", preset=preset)
    coact = (coactivation_from_probs(zipf_probs(spec.n_experts, zipf_s))
             if strategy == "coactivation" and spec.is_moe else None)
    return mapping.map_model(spec, chip, strategy, coactivation=coact)


# ------------------------------------------------------------------ chapter 4: runs of one chip
def small_run(model: ModelSpec | None = None, batch: int = 4, prompt_len: int = 4,
              gen_len: int = 4, n_tiers: int = 16, strategy: str = "in_order",
              zipf_s: float = 0.0, kv_placement: str = "sram", units: str = "per_layer",
              seed: int = 0, preset: str = PRESET):
    """Map ``model`` (default :func:`~aimoe_lib.teaching.simulation_moe`) with ``strategy`` on
    the chip of ``n_tiers`` tiers just large enough for it (:func:`~aimoe_lib.mapping.fitting_chip`,
    named 'fitted') and simulate ``batch`` sequences of ``prompt_len`` + ``gen_len`` tokens with
    the event log; routing is Zipf-skewed with exponent ``zipf_s`` (0 = uniform). Returns the
    :class:`~aimoe_lib.simulator.result.SimResult`; raises
    :class:`~aimoe_lib.mapping.MappingError` when the strategy cannot place the model."""
    model = teaching.simulation_moe() if model is None else model
    chip = fitting_chip(model, n_tiers=n_tiers, units=units, name="fitted", preset=preset,
                        kv_placement=kv_placement)
    m = mapping.map_model(model, chip, strategy)
    routing = "uniform" if zipf_s == 0 else RoutingSpec(kind="zipf", zipf_s=float(zipf_s))
    wl = Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len, routing=routing,
                  seed=seed, record_events=True)
    return simulate(model, chip, m, wl)


def batch_sweep(model: ModelSpec, chip: hardware.ChipConfig, mapped: mapping.Mapping,
                batches=(1, 2, 4, 8, 16, 32), prompt_len: int = 1, gen_len: int = 8,
                routing="uniform", seed: int = 0) -> list[dict]:
    """Simulate the same workload at each batch size; one dict per batch with ``batch``,
    ``tokens_per_s``, ``tpot_mean_ns``, ``tpot_p99_ns``, ``ttft_mean_ns``, ``makespan_ns``,
    ``energy_per_token_pj``, ``tile_conflicts``, ``bottleneck`` and ``tiles_max`` (the busiest
    tile's busy fraction)."""
    out = []
    for b in batches:
        r = simulate(model, chip, mapped, Workload(batch=int(b), prompt_len=prompt_len,
                                                   gen_len=gen_len, routing=routing, seed=seed))
        t = r.tpot_stats_ns()
        out.append(dict(batch=int(b), tokens_per_s=r.tokens_per_s, tpot_mean_ns=t["mean"],
                        tpot_p99_ns=t["p99"], ttft_mean_ns=float(r.ttft_ns.mean()),
                        makespan_ns=r.makespan_ns, energy_per_token_pj=r.energy_per_token_pj,
                        tile_conflicts=r.tile_conflicts, bottleneck=r.bottleneck(),
                        tiles_max=r.busy_fraction()["tiles_max"]))
    return out


def conflict_runs(model: ModelSpec | None = None, n_tiers: int = 16, batch: int = 4,
                  gen_len: int = 2, seed: int = 0, preset: str = PRESET) -> list:
    """The three runs of chapter 4's conflict study, each a (Mapping, SimResult with event log):
    ``model`` (default :func:`~aimoe_lib.teaching.simulation_moe`) runs ``batch`` sequences of one
    prompt token and ``gen_len`` generated tokens on (a) the chip of ``n_tiers`` tiers just large
    enough for it, mapped ``in_order``; (b) the same chip mapped ``moe_stacked``; (c) a chip with
    one tier per tile, mapped ``in_order``. Digital units are provisioned per layer."""
    from . import teaching
    model = teaching.simulation_moe() if model is None else model
    w = Workload(batch=batch, prompt_len=1, gen_len=gen_len, seed=seed, record_events=True)
    chip = fitting_chip(model, n_tiers=n_tiers, units="per_layer", name="fitted", preset=preset)
    flat = fitting_chip(model, n_tiers=1, units="per_layer", name="fitted", preset=preset)
    setups = [mapping.map_model(model, chip, "in_order"), mapping.map_model(model, chip, "moe_stacked"),
              mapping.map_model(model, flat, "in_order")]
    return [(m, simulate(model, m.chip, m, w)) for m in setups]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
