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
from .experiments import PRESET
from .hardware import ChipConfig
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


# =========================================================================== operating points
PARETO_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Batch sizes of the GPU throughput-vs-TPOT curves (1 ... 512)."""
AIMC_PARETO_BATCHES = (1, 4, 16, 64, 256)
"""Batch sizes simulated for the AIMC curves (each a full event-driven simulation)."""
TPOT_TARGETS_S = (0.020, 0.050)
"""Time-per-output-token targets of the equal-TPOT comparison, s (20 ms and 50 ms)."""

__all__ += ["PARETO_BATCHES", "AIMC_PARETO_BATCHES", "TPOT_TARGETS_S", "GpuOperatingPoint",
            "gpu_curve", "aimc_curve", "pareto_front", "best_within", "OperatingComparison",
            "compare_operating_points"]


@dataclass(frozen=True)
class GpuOperatingPoint:
    """The GPU side of a comparison: everything that sets its numbers."""

    gpu: str = "h100"
    """GPU preset."""
    precision: str = "fp8"
    """Weight format (:data:`aimoe_lib.gpu.PRECISIONS`)."""
    n_gpus: int | None = None
    """GPUs (None: the fewest that hold weights and KV cache at the largest batch tried)."""
    calibrated: bool = True
    """Apply the published calibration (:data:`aimoe_lib.gpu.CALIBRATION`, with NVIDIA NIM's
    fixed time per layer and forward pass)."""
    power_model: str = "fitted"
    """'fitted' (:data:`aimoe_lib.gpu.POWER_MODEL`) or 'tdp'."""

    def __post_init__(self) -> None:
        gpu_mod.get(self.gpu)
        if self.precision not in gpu_mod.PRECISIONS:
            raise ValueError(f"GpuOperatingPoint.precision={self.precision!r}: unknown weight "
                             f"format; choose one of {', '.join(gpu_mod.PRECISIONS)}")
        if self.n_gpus is not None and (isinstance(self.n_gpus, bool)
                                        or not isinstance(self.n_gpus, int | np.integer)
                                        or not 1 <= self.n_gpus <= gpu_mod.MAX_GPUS):
            raise ValueError(f"GpuOperatingPoint.n_gpus={self.n_gpus!r}: must be a whole number "
                             f"of GPUs from 1 to {gpu_mod.MAX_GPUS}, or None for the fewest "
                             "that hold the model")
        if self.power_model not in ("fitted", "tdp"):
            raise ValueError(f"GpuOperatingPoint.power_model={self.power_model!r}: use 'fitted' "
                             "or 'tdp'")

    def describe(self) -> str:
        """One line, e.g. 'H100 SXM 80GB x 1, fp8, calibrated roofline, fitted power model'."""
        n = ("the fewest that hold the largest batch" if self.n_gpus is None
             else str(self.n_gpus))
        return (f"{gpu_mod.get(self.gpu).label} x {n}, {self.precision}, "
                f"{'calibrated' if self.calibrated else 'datasheet'} roofline, "
                f"{'fitted power model' if self.power_model == 'fitted' else 'TDP power'}")


def _check_batches(batches, what: str) -> tuple[int, ...]:
    if isinstance(batches, str) or not hasattr(batches, "__iter__"):
        raise ValueError(f"{what}(batches={batches!r}): pass a sequence of batch sizes, e.g. "
                         "(1, 8, 64)")
    out = []
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or not 1 <= b <= 4096:
            raise ValueError(f"{what}(batches=...): batch {b!r} is not a whole number from 1 to "
                             "4096")
        out.append(int(b))
    if not out:
        raise ValueError(f"{what}(batches=()): give at least one batch size")
    return tuple(out)


def gpu_curve(model, op: GpuOperatingPoint = GpuOperatingPoint(), batches=PARETO_BATCHES,
              prompt_len: int = 16, gen_len: int = 16) -> tuple[gpu_mod.RooflineResult, ...]:
    """The GPU roofline of ``model`` at each batch size on operating point ``op``. With
    ``op.n_gpus=None`` the GPU count is the fewest that hold the largest batch, fixed along the
    curve; with a fixed count, batches whose weights and KV cache do not fit are left out."""
    batches = _check_batches(batches, "gpu_curve")
    spec = model_spec(model)
    bpp = gpu_mod.PRECISIONS[op.precision][0]
    n = op.n_gpus or gpu_mod.fewest_gpus(spec, op.gpu, max(batches), prompt_len, gen_len, bpp)
    out = []
    for b in batches:
        try:
            out.append(gpu_mod.roofline(spec, op.gpu, batch=b, prompt_len=prompt_len,
                                        gen_len=gen_len, n_gpus=n, precision=op.precision,
                                        calibrated=op.calibrated, power_model=op.power_model))
        except ValueError as e:
            if "needs" not in str(e):
                raise
    return tuple(out)


def aimc_curve(model, n_tiers: int = 64, preset: str = PRESET, batches=AIMC_PARETO_BATCHES,
               prompt_len: int = 16, gen_len: int = 16) -> tuple[AimcPoint, ...]:
    """:func:`aimc_point` at each batch size (the AIMC throughput-vs-TPOT curve)."""
    batches = _check_batches(batches, "aimc_curve")
    return tuple(aimc_point(model, n_tiers, b, prompt_len, gen_len, preset=preset)
                 for b in batches)


def _tpot(p) -> float:
    return p.tpot_s if isinstance(p, AimcPoint) else p.time_per_output_token_s


def pareto_front(points) -> tuple:
    """The points of a curve (AimcPoint or RooflineResult) that no other point beats on both
    time per output token (lower) and tokens/s (higher), by rising TPOT."""
    pts = sorted(points, key=lambda p: (_tpot(p), -p.tokens_per_s))
    front, best = [], -1.0
    for p in pts:
        if p.tokens_per_s > best:
            front.append(p)
            best = p.tokens_per_s
    return tuple(front)


def best_within(points, tpot_s: float):
    """The point with the most tokens/s whose time per output token is at most ``tpot_s``, or
    None."""
    ok = [p for p in points if _tpot(p) <= tpot_s]
    return max(ok, key=lambda p: p.tokens_per_s) if ok else None


@dataclass(frozen=True)
class OperatingComparison:
    """AIMC and GPU, each at its best batch under a TPOT target."""

    tpot_target_s: float
    """TPOT target, s."""
    preset: str
    """AIMC cost preset."""
    op: GpuOperatingPoint
    """GPU operating point."""
    aimc: AimcPoint | None
    """Best AIMC point within the target (None if none meets it)."""
    gpu: gpu_mod.RooflineResult | None
    """Best GPU point within the target (None if none meets it)."""

    @property
    def throughput_ratio(self) -> float:
        """AIMC tokens/s over GPU tokens/s (equal TPOT target)."""
        return self.aimc.tokens_per_s / self.gpu.tokens_per_s

    @property
    def per_area_ratio(self) -> float:
        """AIMC tokens/s per mm² of chip over GPU tokens/s per mm² of dies plus HBM stacks."""
        return ((self.aimc.tokens_per_s / self.aimc.area_mm2)
                / (self.gpu.tokens_per_s / self.gpu.package_area_mm2))

    @property
    def per_power_ratio(self) -> float:
        """AIMC tokens/s per W over GPU tokens/s per W, i.e. GPU energy per token over AIMC
        total energy per token."""
        return self.gpu.energy_per_token_j / self.aimc.energy_per_token_j

    @property
    def per_power_dynamic_ratio(self) -> float:
        """GPU energy per token over the AIMC chip's dynamic energy per token."""
        return self.gpu.energy_per_token_j / (self.aimc.energy_per_token_j
                                              * (1 - self.aimc.passive_fraction))


def compare_operating_points(model="mixtral-8x7b", op: GpuOperatingPoint = GpuOperatingPoint(),
                             n_tiers: int = 64, preset: str = PRESET,
                             tpot_targets=TPOT_TARGETS_S, gpu_batches=PARETO_BATCHES,
                             aimc_batches=AIMC_PARETO_BATCHES, prompt_len: int = 16,
                             gen_len: int = 16) -> tuple[OperatingComparison, ...]:
    """At each TPOT target, the AIMC chip of ``preset`` and the GPU of ``op`` each at the batch
    with the most tokens/s that meets the target; ratios per chip, per mm² (GPU dies plus HBM
    stacks) and per W."""
    if isinstance(tpot_targets, str) or not hasattr(tpot_targets, "__iter__"):
        raise ValueError(f"compare_operating_points(tpot_targets={tpot_targets!r}): pass a "
                         "sequence of targets in s, e.g. (0.02, 0.05)")
    targets = []
    for t in tpot_targets:
        if isinstance(t, bool) or not isinstance(t, int | float | np.floating) or not 0 < t < 10:
            raise ValueError(f"compare_operating_points(tpot_targets=...): {t!r} is not a time "
                             "per output token in s between 0 and 10")
        targets.append(float(t))
    g = gpu_curve(model, op, gpu_batches, prompt_len, gen_len)
    a = aimc_curve(model, n_tiers, preset, aimc_batches, prompt_len, gen_len)
    return tuple(OperatingComparison(t, preset, op, best_within(a, t), best_within(g, t))
                 for t in targets)
