"""Which conclusions survive which assumptions: the study's headline ratios under each chip
preset, and a tornado of the constants they are most sensitive to.

Four ratios carry the book's conclusions; each is > 1 when the conclusion holds:

* ``moe_throughput``: tokens/s of MoE-64 (the scaling chapter's 64-expert top-1 model) over its
  dense-deeper twin of equal total parameters, both on the scaling sweep's 3D chip;
* ``moe_energy``: energy per token of the dense-deeper twin over that of MoE-64;
* ``density_3d``: tokens/s per mm² of MoE-64 on the 3D chip over the 2D chip of equal capacity;
* ``gpu_energy``: energy per token of Mixtral-8x7B on the fewest H100s that hold it (the roofline
  of :mod:`aimoe_lib.gpu` at the same workload, datasheet power) over that on the smallest
  64-tier 3D chip.

Every ratio is computed at :data:`WORKLOAD` (64 sequences of 4 + 8 tokens, uniform routing,
seed 0) with digital units provisioned per layer, on chips of one preset
(:func:`~aimoe_lib.hardware.preset`) sized by :func:`~aimoe_lib.mapping.fitting_chip`.

:func:`preset_table` gives the four ratios under 'paper', '3dsim' and 'physical';
:func:`tornado` scales one group of constants (:data:`KNOBS`) at a time by x0.5 and x2 under one
preset and reports every ratio's low and high. ``python -m aimoe_lib.sensitivity`` writes both to
``data/sensitivity.json`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from . import checks, gpu, zoo
from .experiments import BASE, dense_deeper, moe_variant
from .hardware import ChipConfig
from .mapping import blocks_needed, fitting_chip, map_model
from .shipped import data_path
from .simulator import Workload, simulate

__all__ = ["WORKLOAD", "RATIOS", "PRESETS", "KNOBS", "FACTORS", "ratios", "preset_table",
           "tornado", "top_knobs", "load", "main"]

WORKLOAD = Workload(batch=64, prompt_len=4, gen_len=8)
"""The workload of every ratio: 64 sequences of 4 prompt + 8 generated tokens."""

RATIOS = {
    "moe_throughput": "MoE-64 / dense-deeper tokens/s (3D)",
    "moe_energy": "dense-deeper / MoE-64 energy per token (3D)",
    "density_3d": "3D / 2D tokens/s per mm² (MoE-64)",
    "gpu_energy": "H100 / 3D AIMC energy per token (Mixtral-8x7B)",
}
"""The four conclusions' ratios (> 1: the conclusion holds) and what each compares."""

PRESETS = ("paper", "3dsim", "physical")
"""Presets of :func:`preset_table`."""

FACTORS = (0.5, 2.0)
"""Scalings of :func:`tornado`."""

GPU = "h100"
"""GPU of the ``gpu_energy`` ratio."""


def _scale_cost(*fields: str) -> Callable[[ChipConfig, float], ChipConfig]:
    def apply(chip: ChipConfig, f: float) -> ChipConfig:
        c = chip.cost
        return chip.replace(cost=dataclasses.replace(c, **{k: getattr(c, k) * f for k in fields}))
    return apply


KNOBS: dict[str, tuple[str, Callable | None]] = {
    "MVM latency": ("one tier MVM's integration time (mvm_latency_ns)",
                    _scale_cost("mvm_latency_ns")),
    "MVM energy": ("every term of a tier MVM's energy (fixed, per row, column, cell)",
                   _scale_cost("mvm_energy_pj", "mvm_energy_pj_per_row",
                               "mvm_energy_pj_per_column", "mvm_energy_pj_per_cell")),
    "static power": ("static power of every unit and tile",
                     _scale_cost("unit_passive_power_w", "tile_passive_power_w")),
    "digital latency": ("latency of every element-wise digital step (norm, activation, add)",
                        _scale_cost("layernorm_latency_ns_per_512", "relu_latency_ns",
                                    "gelu_latency_ns_per_256", "gelu_latency_ns_fixed",
                                    "add_latency_ns_per_256", "add_latency_ns_fixed")),
    "digital energy": ("energy of every element-wise digital step",
                       _scale_cost("layernorm_energy_pj_per_512", "relu_energy_pj_per_element",
                                   "gelu_energy_pj_per_256", "add_energy_pj_per_256",
                                   "digital_op_energy_pj")),
    "transfer cost": ("on-chip network latency and energy",
                      _scale_cost("comm_latency_ns_per_512", "comm_energy_pj_per_256")),
    "attention speed": ("attention latency (per pair or per MAC, and per operation)",
                        _scale_cost("mha_latency_ns_per_pair_d", "mha_latency_ns_per_pair_d2",
                                    "mha_latency_ns_per_op")),
    "attention energy": ("attention energy (per pair or per MAC, and per operation)",
                         _scale_cost("mha_energy_pj_per_pair_d", "mha_energy_pj_per_mac",
                                     "mha_energy_pj_per_op")),
    "die-to-die energy": ("energy per bit across a die boundary",
                          _scale_cost("d2d_energy_pj_per_bit")),
    "units per layer": ("DPUs and attention units provisioned per layer (24 and 8)", None),
    "GPU power": ("the GPU's power draw (roofline power_fraction, capped at the board's TDP)",
                  None),
}
"""Groups of constants :func:`tornado` scales together: name -> (what, chip transform). The
macs-based attention throughput is scaled through ``mha_macs_per_ns`` (inverse, so x2 means twice
as slow); 'units per layer' rounds 24 x f and 8 x f; 'GPU power' scales the roofline's power
fraction (x2 capped at 1)."""


def _attention_speed(chip: ChipConfig, f: float) -> ChipConfig:
    c = chip.cost
    return chip.replace(cost=dataclasses.replace(
        c, mha_latency_ns_per_pair_d=c.mha_latency_ns_per_pair_d * f,
        mha_latency_ns_per_pair_d2=c.mha_latency_ns_per_pair_d2 * f,
        mha_latency_ns_per_op=c.mha_latency_ns_per_op * f, mha_macs_per_ns=c.mha_macs_per_ns / f))


KNOBS["attention speed"] = (KNOBS["attention speed"][0], _attention_speed)


# ------------------------------------------------------------------------------ the ratios
def _models():
    moe = moe_variant(BASE, 64)
    return moe, dense_deeper(BASE, moe.total_params), zoo.get("mixtral-8x7b")


@lru_cache(maxsize=None)
def _chips(preset: str):
    """The unscaled chips of one preset: MoE-64 and its dense twin on the scaling sweep's 3D chip
    (as many tiles as the base model has blocks), MoE-64's 2D flattening, Mixtral on 64 tiers."""
    moe, dense, mix = _models()
    n_tiles = blocks_needed(BASE)
    c_moe = fitting_chip(moe, n_tiles=n_tiles, units="per_layer", preset=preset)
    c_dense = fitting_chip(dense, n_tiles=n_tiles, units="per_layer", preset=preset)
    c_2d = c_moe.as_2d().provisioned(moe.n_layers)
    c_mix = fitting_chip(mix, n_tiers=64, units="per_layer", preset=preset)
    return c_moe, c_dense, c_2d, c_mix


@lru_cache(maxsize=None)
def _mappings(preset: str):
    """One mapping per chip of :func:`_chips` (a cost or unit change keeps the chip's shape, so
    the mapping is reused)."""
    moe, dense, mix = _models()
    return tuple(map_model(spec, chip)
                 for spec, chip in zip((moe, dense, moe, mix), _chips(preset), strict=True))


def ratios(preset: str = "physical", knob: str | None = None, factor: float = 1.0,
           workload: Workload = WORKLOAD) -> dict:
    """The four ratios of :data:`RATIOS` under ``preset`` with the constants of ``knob`` (a key of
    :data:`KNOBS`, or None) scaled by ``factor``; also the raw numbers behind them."""
    checks.choice("ratios()", "preset", preset, PRESETS + ("paper-2d", "hermes"),
                  what="chip preset")
    factor = checks.real("ratios()", "factor", factor, minimum=0, strict=True)
    if knob is not None:
        checks.choice("ratios()", "knob", knob, tuple(KNOBS), what="knob")
    moe, dense, mix = _models()
    chips = list(_chips(preset))
    power = 1.0
    if knob == "units per layer":
        k = (max(1, round(24 * factor)), max(1, round(8 * factor)))
        chips = [c.provisioned(spec.n_layers, *k)
                 for c, spec in zip(chips, (moe, dense, moe, mix), strict=True)]
    elif knob == "GPU power":
        power = min(1.0 / gpu.POWER_FRACTION, factor)
    elif knob is not None:
        chips = [KNOBS[knob][1](c, factor) for c in chips]
    m_moe, m_dense, m_2d, m_mix = _mappings(preset)
    c_moe, c_dense, c_2d, c_mix = chips
    r_moe = simulate(moe, c_moe, m_moe, workload)
    r_dense = simulate(dense, c_dense, m_dense, workload)
    r_2d = simulate(moe, c_2d, m_2d, workload)
    r_mix = simulate(mix, c_mix, m_mix, workload)
    g = gpu.roofline(mix, GPU, batch=workload.batch, prompt_len=workload.prompt_len,
                     gen_len=workload.gen_len, power_fraction=power * gpu.POWER_FRACTION)
    gpu_j = g.energy_per_token_j
    return {
        "preset": preset, "knob": knob, "factor": factor,
        "moe_throughput": r_moe.tokens_per_s / r_dense.tokens_per_s,
        "moe_energy": r_dense.energy_per_token_pj / r_moe.energy_per_token_pj,
        "density_3d": r_moe.tokens_per_s_per_mm2 / r_2d.tokens_per_s_per_mm2,
        "gpu_energy": gpu_j / (r_mix.energy_per_token_pj * 1e-12),
        "moe_tokens_per_s": r_moe.tokens_per_s, "dense_tokens_per_s": r_dense.tokens_per_s,
        "moe_uj_per_token": r_moe.energy_per_token_pj * 1e-6,
        "dense_uj_per_token": r_dense.energy_per_token_pj * 1e-6,
        "moe_dynamic_uj_per_token": r_moe.dynamic_energy_pj / r_moe.generated_tokens * 1e-6,
        "moe_3d_tps_per_mm2": r_moe.tokens_per_s_per_mm2,
        "moe_2d_tps_per_mm2": r_2d.tokens_per_s_per_mm2,
        "moe_3d_mm2": c_moe.area_mm2, "moe_2d_mm2": c_2d.area_mm2,
        "mixtral_uj_per_token": r_mix.energy_per_token_pj * 1e-6,
        "mixtral_passive_fraction": r_mix.energy_breakdown_pj["passive"] / r_mix.energy_pj,
        "gpu_uj_per_token": gpu_j * 1e6, "gpu_count": g.n_gpus,
    }


def preset_table(presets: Sequence[str] = PRESETS, workload: Workload = WORKLOAD) -> list[dict]:
    """:func:`ratios` under each preset, unscaled."""
    return [ratios(p, workload=workload) for p in tqdm(presets, desc="presets", leave=False)]


def tornado(preset: str = "physical", knobs: Sequence[str] | None = None,
            factors: Sequence[float] = FACTORS, workload: Workload = WORKLOAD) -> list[dict]:
    """:func:`ratios` under ``preset`` with each knob (default every key of :data:`KNOBS`) scaled
    by each factor: one row per (knob, factor)."""
    knobs = tuple(KNOBS) if knobs is None else tuple(knobs)
    jobs = [(k, f) for k in knobs for f in factors]
    return [ratios(preset, k, f, workload) for k, f in tqdm(jobs, desc=f"tornado {preset}",
                                                            leave=False)]


def top_knobs(base: dict, rows: Sequence[dict], ratio: str, n: int = 5) -> list[dict]:
    """The ``n`` knobs that move ``ratio`` most (the largest absolute ``log10(ratio / base)`` over
    their factors), most influential first: dicts with 'knob', 'low', 'high' and 'swing', where
    ``low``/``high`` are the ratio at the smallest/largest factor and ``swing`` that largest
    absolute log10 change."""
    checks.choice("top_knobs()", "ratio", ratio, tuple(RATIOS), what="ratio")
    by_knob: dict[str, dict] = {}
    for r in rows:
        by_knob.setdefault(r["knob"], {})[r["factor"]] = r[ratio]
    out = []
    for k, vals in by_knob.items():
        fs = sorted(vals)
        swing = max(abs(math.log10(v / base[ratio])) for v in vals.values())
        out.append({"knob": k, "low": vals[fs[0]], "high": vals[fs[-1]], "swing": swing})
    return sorted(out, key=lambda d: -d["swing"])[:n]


def _row(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in d.items()}


def load(path=None) -> dict:
    """The shipped ``data/sensitivity.json``: {'workload', 'presets': [ratios rows],
    'tornado': {preset: [rows]}}."""
    path = Path(path) if path is not None else data_path("sensitivity.json")
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    """``python -m aimoe_lib.sensitivity [--out PATH] [--presets ...]``: regenerate the table and
    the tornado rows."""
    p = argparse.ArgumentParser(prog="python -m aimoe_lib.sensitivity",
                                description="Regenerate data/sensitivity.json: the headline "
                                            "ratios under each chip preset and the tornado rows.")
    p.add_argument("--out", default=None, help="output JSON (default: the repository's "
                   "data/sensitivity.json)")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    a = p.parse_args(argv)
    from .experiments import DATA_DIR
    out = Path(a.out) if a.out else DATA_DIR / "sensitivity.json"
    if out.is_dir():
        print(f"sensitivity: --out {str(out)!r} is a folder; give a .json path", file=sys.stderr)
        return 2
    w = WORKLOAD
    data = {"workload": {"batch": w.batch, "prompt_len": w.prompt_len, "gen_len": w.gen_len},
            "presets": [_row(r) for r in preset_table(a.presets)],
            "tornado": {pr: [_row(r) for r in tornado(pr)] for pr in a.presets}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out)
    print(f"sensitivity: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
