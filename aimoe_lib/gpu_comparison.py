"""The simulated side of chapter 7, "Against GPUs": zoo models on the smallest 3D AIMC chip that
holds them, simulated, next to the GPU roofline of :mod:`aimoe_lib.gpu`.

The AIMC chip of a model (:func:`aimc_chip`) is :func:`~aimoe_lib.mapping.fitting_chip` with
``n_tiers`` tiers of 512 x 512 per tile and ``ceil(blocks / n_tiers)`` tiles (every matrix but the
input embedding analog), mapped ``in_order``, with digital units provisioned per layer
(:meth:`~aimoe_lib.hardware.ChipConfig.provisioned`: 24 DPUs and 8 attention units per layer).
Simulated results (:func:`aimc_point`) are memoised per (model, tiers, batch, prompt, generation,
seed) in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import gpu as gpu_mod
from . import routing, zoo
from .hardware import ChipConfig
from .experiments import PRESET
from .mapping import fitting_chip, map_model
from .models import ModelSpec
from .simulator import Workload, simulate

__all__ = ["CHIP_TIERS", "DEFAULT_BATCHES", "model_spec", "aimc_chip", "AimcPoint", "aimc_point",
           "aimc_sweep", "Comparison", "compare", "distinct_experts"]

CHIP_TIERS = {"3d-64": 64, "3d-256": 256, "3d-1024": 1024, "2d": 1}
"""Chip presets of the chapter: tiers per tile of the smallest chip that holds the model."""
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
"""Batch sizes of the default sweeps."""


def model_spec(model) -> ModelSpec:
    """``model`` itself, or the zoo model of that name."""
    return zoo.get(model) if isinstance(model, str) else model


def aimc_chip(model, n_tiers: int = 64, preset: str = PRESET) -> ChipConfig:
    """The smallest chip of ``preset`` (default the book's, :data:`~aimoe_lib.experiments.PRESET`)
    with ``n_tiers`` tiers per tile that holds ``model`` (a zoo name or ModelSpec; every matrix
    but the input embedding on 512 x 512 tiers), digital units provisioned per layer, named
    ``fitted-<n_tiers>t``."""
    return fitting_chip(model_spec(model), n_tiers=n_tiers, units="per_layer", preset=preset,
                        name=f"fitted-{n_tiers}t")


@dataclass(frozen=True)
class AimcPoint:
    """Simulated 3D AIMC numbers of one workload."""

    model: str
    """Model name."""
    n_tiers: int
    """Tiers per tile."""
    n_tiles: int
    """Tiles of the chip."""
    batch: int
    """Sequences."""
    prompt_len: int
    """Prompt tokens per sequence."""
    gen_len: int
    """Generated tokens per sequence."""
    tokens_per_s: float
    """Generated tokens per second over the run."""
    tpot_s: float
    """Mean time per output token, s."""
    ttft_s: float
    """Mean time to first token, s."""
    energy_per_token_j: float
    """Energy per generated token, J."""
    passive_fraction: float
    """Share of the energy that is passive (static) power."""
    area_mm2: float
    """Chip area, mm²."""
    passive_power_w: float
    """Static power of the chip, W."""
    bottleneck: str
    """Busiest resource class (:meth:`aimoe_lib.simulator.result.SimResult.bottleneck`)."""
    tile_conflicts: int
    """Tile conflicts of the run."""


@lru_cache(maxsize=512)
def _aimc_cached(model, n_tiers, batch, prompt_len, gen_len, seed, preset) -> AimcPoint:
    spec = model_spec(model)
    chip = aimc_chip(spec, n_tiers, preset)
    m = map_model(spec, chip, "in_order")
    r = simulate(spec, chip, m, Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len,
                                         seed=seed))
    tpot = r.tpot_stats_ns()["mean"]
    return AimcPoint(model=spec.name, n_tiers=n_tiers, n_tiles=chip.n_tiles, batch=batch,
                     prompt_len=prompt_len, gen_len=gen_len, tokens_per_s=r.tokens_per_s,
                     tpot_s=tpot * 1e-9, ttft_s=float(r.ttft_ns.mean()) * 1e-9,
                     energy_per_token_j=r.energy_per_token_pj * 1e-12,
                     passive_fraction=r.energy_breakdown_pj["passive"] / r.energy_pj,
                     area_mm2=chip.area_mm2, passive_power_w=chip.passive_power_w,
                     bottleneck=r.bottleneck(), tile_conflicts=r.tile_conflicts)


def aimc_point(model, n_tiers: int = 64, batch: int = 8, prompt_len: int = 16,
               gen_len: int = 16, seed: int = 0, preset: str = PRESET) -> AimcPoint:
    """Simulate ``batch`` sequences of ``prompt_len`` + ``gen_len`` tokens of ``model`` (a zoo
    name or ModelSpec) on :func:`aimc_chip` of ``preset`` (memoised)."""
    return _aimc_cached(model, int(n_tiers), int(batch), int(prompt_len), int(gen_len), int(seed),
                        str(preset))


def aimc_sweep(model, n_tiers: int = 64, batches=DEFAULT_BATCHES, prompt_len: int = 16,
               gen_len: int = 16, preset: str = PRESET) -> tuple[AimcPoint, ...]:
    """:func:`aimc_point` at each batch size."""
    return tuple(aimc_point(model, n_tiers, b, prompt_len, gen_len, preset=preset)
                 for b in batches)


@dataclass(frozen=True)
class Comparison:
    """One workload on the AIMC chip and on a GPU."""

    aimc: AimcPoint
    """Simulated chip."""
    gpu: gpu_mod.RooflineResult
    """GPU roofline."""

    @property
    def speedup(self) -> float:
        """AIMC tokens/s over GPU tokens/s."""
        return self.aimc.tokens_per_s / self.gpu.tokens_per_s

    @property
    def tpot_ratio(self) -> float:
        """GPU time per output token over AIMC time per output token."""
        return self.gpu.time_per_output_token_s / self.aimc.tpot_s

    @property
    def energy_ratio(self) -> float:
        """GPU energy per token over AIMC energy per token."""
        return self.gpu.energy_per_token_j / self.aimc.energy_per_token_j

    @property
    def area_ratio(self) -> float:
        """AIMC chip area over GPU silicon (dies only)."""
        return self.aimc.area_mm2 / self.gpu.silicon_area_mm2


def compare(model, gpu="h100", batch: int = 8, n_tiers: int = 64, prompt_len: int = 16,
            gen_len: int = 16, preset: str = PRESET, **roofline_kw) -> Comparison:
    """The same workload simulated on :func:`aimc_chip` of ``preset`` and modelled on the GPU
    (:func:`~aimoe_lib.gpu.roofline`)."""
    a = aimc_point(model, n_tiers, batch, prompt_len, gen_len, preset=preset)
    g = gpu_mod.roofline(model_spec(model), gpu, batch=batch, prompt_len=prompt_len,
                         gen_len=gen_len, **roofline_kw)
    return Comparison(a, g)


def distinct_experts(model, batches, mc_tokens: int = 4096, seed: int = 0) -> dict:
    """Distinct experts an MoE layer reads for a batch of B tokens, uniform routing, at each B
    of ``batches``: ``closed`` (E (1 - (1 - k/E)^B),
    :func:`~aimoe_lib.routing.distinct_experts_expected`) and ``mc`` (the mean over
    ``mc_tokens`` tokens routed by :func:`~aimoe_lib.routing.route`)."""
    spec = model_spec(model)
    e, k = spec.n_experts, spec.top_k
    choices = routing.route(spec, mc_tokens, "uniform", seed=seed)
    return {"closed": routing.distinct_experts_expected(e, k, np.array(list(batches), dtype=float)),
            "mc": [routing.distinct_experts(choices, b, e).mean() for b in batches]}
