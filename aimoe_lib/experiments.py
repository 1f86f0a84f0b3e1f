"""The study's experiments as functions: model families for the scaling chapter, chips sized to a
model, and the sweeps whose results ship in data/.

Regenerate the shipped results (about a minute on 2 cores)::

    python -m aimoe_lib.experiments scaling      # -> data/scaling.json
    python -m aimoe_lib.experiments conditions   # -> data/conditions.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import hardware, mapping, sweep, zoo
from .models import ModelSpec
from .simulator import Workload

__all__ = ["BASE", "moe_variant", "dense_deeper", "dense_wider", "scaling_family", "blocks_needed",
           "chip_for", "scaling_points", "zoo_pairs", "condition_points", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

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


def chip_for(spec: ModelSpec, *, n_tiles: int | None = None, n_tiers: int | None = None,
             rows: int = 512, cols: int = 512, preset: str = "paper", provision: bool = True,
             slack: float = 0.0, **overrides) -> hardware.ChipConfig:
    """The smallest chip of ``preset`` that holds ``spec``: give ``n_tiles`` (tiers follow) or
    ``n_tiers`` (tiles follow); ``slack`` adds a fraction of spare tiers. With ``provision`` the
    digital units are built for the model's layers (ChipConfig.provisioned: 24 DPUs and 8 MHA
    units per layer, 3D-SiM's BERT provisioning)."""
    if (n_tiles is None) == (n_tiers is None):
        raise ValueError("chip_for: give exactly one of n_tiles= or n_tiers=")
    need = math.ceil(blocks_needed(spec, rows, cols) * (1 + slack))
    if n_tiles is not None:
        n_tiers = max(1, math.ceil(need / n_tiles))
    else:
        n_tiles = max(1, math.ceil(need / n_tiers))
    chip = hardware.preset(preset, n_tiles=n_tiles, n_tiers=n_tiers, tier_rows=rows,
                           tier_cols=cols, **overrides)
    return chip.provisioned(spec.n_layers) if provision else chip


def scaling_points(base: ModelSpec = BASE, experts=EXPERTS, workload: Workload = WORKLOAD,
                   batches=BATCHES, strategy: str = "in_order") -> list[sweep.Point]:
    """Every model of the scaling family on (a) a 3D chip with as many tiles as the base model has
    blocks (so the base fits one tier per tile) and as many tiers as the model needs, and (b) a 2D
    chip of equal capacity (one tier per tile), at each batch size. Labels: family|E|3d-or-2d|batch."""
    n_tiles = blocks_needed(base)
    pts = []
    for fam, e, spec in scaling_family(base, experts):
        c3 = chip_for(spec, n_tiles=n_tiles)
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


def condition_points(workload: Workload = WORKLOAD) -> list[sweep.Point]:
    """Where the MoE advantage shrinks: MoE-64 vs dense-deeper of equal total parameters, varying
    batch size, routing skew (Zipf s), tiers per tile and mapping strategy, one at a time."""
    from .routing import RoutingSpec

    moe = moe_variant(BASE, 64)
    dense = dense_deeper(BASE, moe.total_params)
    n_tiles = blocks_needed(BASE)
    pts = []
    for spec in (moe, dense):
        fam = "moe" if spec.is_moe else "dense-deeper"
        chip = chip_for(spec, n_tiles=n_tiles)
        for b in (1, 4, 16, 64, 256, 1024):
            w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
            pts.append(sweep.Point(spec, chip, "in_order", w, label=f"{fam}|batch|{b}"))
        for b in (workload.batch, 256):
            wb = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
            for mult in (0.5, 1, 2, 4):  # fewer tiles with more tiers each, or more tiles
                c = chip_for(spec, n_tiles=max(1, int(n_tiles * mult)))
                pts.append(sweep.Point(spec, c, "in_order", wb, label=f"{fam}|tiles|{mult}|{b}"))
            if not spec.is_moe:
                continue
            for s in (0.0, 0.5, 1.0, 1.5, 2.0):
                w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len,
                             routing=RoutingSpec(kind="zipf", zipf_s=s))
                pts.append(sweep.Point(spec, chip, "in_order", w, label=f"{fam}|zipf|{s}|{b}"))
        if spec.is_moe:
            for strat in ("in_order", "balanced", "moe_stacked"):
                for b in (workload.batch, 256):
                    c = chip
                    if strat == "moe_stacked":  # a slab needs E free tiers on each of its tiles
                        c = chip_for(spec, n_tiles=n_tiles)
                        c = c.replace(n_tiers=max(c.n_tiers, 2 * spec.n_experts))
                    w = Workload(batch=b, prompt_len=workload.prompt_len, gen_len=workload.gen_len)
                    pts.append(sweep.Point(spec, c, strat, w, label=f"{fam}|strategy|{strat}|{b}"))
    return pts


def zoo_points(workload: Workload = Workload(batch=8, prompt_len=8, gen_len=8),
               n_tiers: int = 128) -> list[sweep.Point]:
    """The zoo pairs on 3D chips of ``n_tiers`` tiers (tiles follow) and on 2D chips."""
    pts = []
    for pair in zoo_pairs():
        for name in pair:
            spec = zoo.get(name)
            c = chip_for(spec, n_tiers=n_tiers)
            pts.append(sweep.Point(spec, c, "in_order", workload, label=f"{name}|3d"))
            pts.append(sweep.Point(spec, c.as_2d().provisioned(spec.n_layers), "in_order", workload,
                                   label=f"{name}|2d"))
    return pts


_EXPERIMENTS = {"scaling": scaling_points, "conditions": condition_points, "zoo": zoo_points}


def run(name: str, out: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Run experiment ``name`` and write its rows to data/<name>.json."""
    pts = _EXPERIMENTS[name]()
    rows = sweep.sweep(pts, cache_dir=cache_dir)
    out = out or DATA_DIR / f"{name}.json"
    out.write_text(json.dumps({"experiment": name, "command": f"python -m aimoe_lib.experiments {name}",
                               "rows": rows}, indent=0))
    return out


def load(name: str) -> list[dict]:
    """Rows of a shipped experiment (data/<name>.json)."""
    path = DATA_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: regenerate it with "
                                f"python -m aimoe_lib.experiments {name}")
    return json.loads(path.read_text())["rows"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aimoe_lib.experiments")
    ap.add_argument("names", nargs="*", default=list(_EXPERIMENTS), choices=list(_EXPERIMENTS))
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    for n in args.names:
        print(run(n, cache_dir=args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

