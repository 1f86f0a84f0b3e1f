"""GPU baseline: datasheet presets (:class:`~aimoe_lib.gpu.GPUSpec`) and a roofline model of LLM
inference (:func:`~aimoe_lib.gpu.roofline`) for any zoo model, dense or mixture-of-experts.

The roofline charges every phase of inference the larger of two times, plus the time of the
tensor-parallel all-reduces:

* **memory**: bytes moved from HBM (weights read once per step, KV cache read and written) over
  the *achievable* HBM bandwidth, datasheet x ``bw_efficiency``;
* **compute**: FLOPs (2 per multiply-accumulate of every weight a token uses, plus attention over
  the cached keys) over the achievable tensor-core rate, datasheet x ``flop_efficiency``.

A decode step of an MoE reads the dense parts (attention, routers, shared experts, LM head) once
and, in every MoE layer, each *distinct* expert the batch touches once: under uniform routing
E·(1 - (1 - k/E)^B) experts for B tokens (:func:`aimoe_lib.routing.distinct_experts_expected`),
or the expectation under measured per-expert loads (a routing trace or a skewed router, see
:func:`~aimoe_lib.gpu.weight_traffic`). This is the reuse fragmentation that Adhinarayanan &
Jayasena (2026, arXiv:2603.08960) call the first half of MoE's "double penalty" at inference.

Every number below is either a datasheet figure, a published measurement (both with their source
next to them), or a named assumption (an ID such as A-GPU-BW-EFF, listed in the book's appendix).
Sources:

* [A100-DS] NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web),
  A100 80GB SXM column, as tabulated at glennklockwood.com/garden/processors/A100: BF16 312 TFLOP/s
  dense (624 with sparsity), INT8 624 TOPS dense, 80 GB HBM2e at 2,039 GB/s, 400 W, NVLink
  600 GB/s.
* [H100-DS] NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column (as tabulated at
  glennklockwood.com/garden/processors/h100): BF16 989.4, FP8 1,978.9, INT8 1,978.9 TFLOP/s dense
  (the datasheet headlines the 2:4-sparse figures, twice these), 80 GB HBM3 at 3.35 TB/s,
  700 W, NVLink 900 GB/s.
* [H200-DS] NVIDIA H200 datasheet (as reported by the secondary pages cited on
  :func:`~aimoe_lib.gpu.h200`):
  same GH100 compute as H100 SXM, 141 GB HBM3e at 4.8 TB/s, up to 700 W, NVLink 900 GB/s.
* [DIE] NVIDIA Hopper architecture whitepaper as reported by TechPowerUp/screenhacker.com:
  GH100 814 mm², TSMC 4N, 80 billion transistors; GA100 826 mm², TSMC N7.
* [AZURE] Azure/AI-benchmarking-guide (github.com/Azure/AI-benchmarking-guide), measured results
  files ``Azure_Results/ND_A100_v4_results.md`` (commit 3bb66cac), ``Azure Results/ND_H100_v5_
  results.md`` (commit f350e7e6) and ``Azure_Results/ND_H200_v5_results.md`` (commit 7f20e5fa):
  STREAM-like HBM Triad 1.70 / 2.97 / 4.15 TB/s; cuBLASLt GEMM 8192³ 253.7 TFLOP/s (A100, FP16),
  1290.1 and 1300.6 TFLOP/s (H100, H200, FP8); NCCL all-reduce (8 GPUs) bus bandwidth at 16 KB
  0.67 / 0.95 / 0.93 GB/s and at 8 GB 231.58 / 478.87 / 479.98 GB/s.
* [GPTFAST] pytorch-labs/gpt-fast README (commit 0f925b5d): on A100-80GB power-limited to 330 W,
  "Empirically, seems like peak bandwidth is about 1700 GB/s" (agrees with [AZURE]'s 1.70 TB/s).
* [DGX] NVIDIA DGX BasePOD reference architecture, core components (docs.nvidia.com/dgx-basepod):
  DGX H100/H200 "eight single-port NVIDIA ConnectX-7 VPI ... up to 400 Gb/s"; DGX A100: 200 Gb/s
  per GPU (secondary report, chippub.substack.com).
* [VLLM] vLLM's default ``gpu_memory_utilization=0.9`` (fraction of GPU memory it plans to use).
* [H200-RUN] ``data/gpu_h200.csv``, ``data/gpu_h200_stream.csv`` and ``data/gpu_h200_gemm.csv``:
  decode, weight-streaming and matrix-product measurements of this project's harness (:mod:`aimoe_lib.gpu_measure`, ``tools/measure_gpu.sh``)
  on one H200 SXM, 2026-11-28; compared with the model by :func:`measured_validation`.
* [PUBLISHED] ``data/gpu_published.json``: published decode and energy measurements (gpt-fast,
  TensorRT-LLM, NVIDIA NIM, vLLM nightly benchmarks, ML.ENERGY, the Alice benchmark), each with its
  title, authors, year, URL and the table or sentence it comes from. :data:`CALIBRATION` and
  :data:`POWER_MODEL` are fitted to its ``fit`` rows; its ``heldout`` rows measure the fit's error.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import checks, shipped, zoo
from . import routing as routing_mod
from .models import AttentionKind, ModelSpec, Role

__all__ = [
    "GPUSpec",
    "COMPUTE_KINDS",
    "a100",
    "h100",
    "h200",
    "names",
    "get",
    "WeightTraffic",
    "weight_traffic",
    "RooflineResult",
    "roofline",
    "sweep_batches",
    "fewest_gpus",
    "active_dense_equivalent",
    "Measurement",
    "MEASUREMENTS",
    "ValidationRow",
    "validation_table",
    "format_validation_table",
    "NOT_USED",
    "MeasuredRow",
    "load_measured",
    "MEASURED_FILE",
    "STREAM_FILE",
    "MeasuredCheck",
    "harness_calibration",
    "decode_power_w",
    "measured_validation",
    "format_measured_validation",
    "load_weight_stream",
    "GEMM_FILE",
    "load_gemm_rates",
    "format_gemm_rates",
    "PRECISIONS",
    "SERVING_KINDS",
    "precision_formats",
    "Calibration",
    "CALIBRATION",
    "PowerModel",
    "POWER_MODEL",
    "PublishedPoint",
    "published_points",
    "PublishedRow",
    "published_validation",
    "format_published_validation",
    "fit_calibration",
    "fit_power_model",
    "POWER_FIT_GRID",
    "published_sources",
    "effective_bits",
    "HBM_STACK_AREA_MM2",
    "FRAMEWORKS",
    "KV_READS_PER_QUERY_HEAD",
    "WEIGHT_ONLY_INT8",
    "GATHERED_EXPERTS",
    "VLLM_053_GPU_BUSY",
    "METRICS",
    "ROLES",
    "PUBLISHED_FILE",
]

COMPUTE_KINDS = ("bf16", "fp8", "int8")
"""Tensor-core precisions the roofline knows (``compute=``)."""

PRECISIONS: dict[str, tuple[float, str]] = {
    "bf16": (2.0, "bf16"),
    "fp8": (1.0, "fp8"),
    "int8": (1.0, "int8"),
    "int4": (0.5, "bf16"),
}
"""Weight formats of ``roofline(..., precision=...)``: (bytes per stored weight, tensor-core
precision of the matrix products). bf16: 2 bytes, BF16 tensor cores. fp8: 1 byte (E4M3), FP8
tensor cores (H100/H200 only; [H100-DS] 1,978.9 TFLOP/s dense). int8: 1 byte, INT8 tensor cores
(W8A8; [A100-DS] 624 TOPS, [H100-DS] 1,978.9 TOPS dense). int4: 0.5 byte, weight-only (W4A16: the
weights are unpacked to BF16 before the product, as AWQ/GPTQ/Marlin kernels do; Hopper has no
INT4 tensor cores), so BF16 rates."""

SERVING_KINDS = ("static", "continuous")
"""How a batch is served: ``'static'`` (all sequences start together, prefill then decode, as in
offline benchmarks) or ``'continuous'`` (in-flight batching at a fixed number of sequences: every
finished sequence is replaced by a new one whose prefill runs between decode steps)."""


def precision_formats() -> tuple[str, ...]:
    """Names accepted by ``roofline(..., precision=...)``."""
    return tuple(PRECISIONS)


def effective_bits(relative_noise: float) -> float:
    """Bits of a uniform quantiser over [-w_max, w_max] whose rounding error (step / sqrt(12))
    equals Gaussian weight noise of standard deviation ``relative_noise`` x w_max:
    log2(2 / (relative_noise x sqrt(12))). E.g. 5 % noise: 3.5 bits."""
    r = checks.real("effective_bits()", "relative_noise", relative_noise, minimum=0, strict=True,
                    maximum=1, fix="pass the noise standard deviation as a fraction of max |W|, "
                    "e.g. 0.05")
    return math.log2(2.0 / (r * math.sqrt(12.0)))

MEMORY_FRACTION = 0.9
"""Fraction of GPU memory that weights and KV cache may fill. Assumption A-GPU-MEM-USABLE: vLLM's
default ``gpu_memory_utilization=0.9`` ([VLLM]); the rest holds activations, workspace and the CUDA
context."""

POWER_FRACTION = 1.0
"""Average board power during inference as a fraction of TDP. Assumption A-GPU-POWER-TDP: every
GPU draws its full TDP for the whole run (an upper bound on board power; host CPUs, NICs and
cooling are not counted, so a lower bound on system power). A measured fraction (the harness
:mod:`aimoe_lib.gpu_measure` records average NVML power) can replace it."""

ACT_BYTES = 2
"""Bytes per activation element in the tensor-parallel all-reduces (16-bit activations)."""

GPUS_PER_NODE = 8
"""GPUs joined by NVLink in one node (DGX/HGX A100, H100, H200 boards); beyond it the all-reduce
runs at the inter-node bandwidth (assumption A-GPU-INTERNODE)."""

MAX_GPUS = 1024
"""Largest GPU count :func:`~aimoe_lib.gpu.fewest_gpus` tries."""

HBM_STACK_AREA_MM2 = 110.0
"""Footprint of one HBM stack, mm². Assumption A-GPU-HBM-AREA: about 11 mm x 10 mm per stack (the
order of the JEDEC HBM2e/HBM3 package outline); A100 80GB and H100 SXM carry 5 active stacks of
16 GB, H200 6 of 24 GB. Interposer and substrate are not counted."""


# =================================================================================== GPU presets
@dataclass(frozen=True)
class GPUSpec:
    """One GPU model: datasheet peaks, measured achievable fractions and interconnect.

    Peak rates are dense (no 2:4 sparsity). ``bw_efficiency`` and ``flop_efficiency`` turn peaks
    into achievable rates; both default from published measurements (assumptions A-GPU-BW-EFF and
    A-GPU-FLOP-EFF) and can be overridden per call of :func:`~aimoe_lib.gpu.roofline`.
    """

    name: str
    """Preset name (lower case), e.g. ``'h100'``."""
    label: str
    """Readable name, e.g. ``'H100 SXM 80GB'``."""
    hbm_bandwidth_gb_s: float
    """Datasheet HBM bandwidth, GB/s (1 GB = 1e9 bytes)."""
    bf16_tflops: float
    """Dense BF16 tensor-core peak, TFLOP/s."""
    fp8_tflops: float
    """Dense FP8 tensor-core peak, TFLOP/s; 0 where the GPU has no FP8 (A100)."""
    int8_tops: float
    """Dense INT8 tensor-core peak, TOP/s."""
    memory_gb: float
    """HBM capacity, GB."""
    tdp_w: float
    """Maximum board power (TDP), W."""
    nvlink_gb_s: float
    """Datasheet NVLink bandwidth per GPU, both directions together, GB/s (for reference; the
    roofline uses the measured all-reduce bus bandwidth below)."""
    allreduce_bus_gb_s: float
    """Measured NCCL all-reduce bus bandwidth for large messages (8 GB, 8 GPUs), GB/s ([AZURE])."""
    allreduce_latency_us: float
    """Time of one small all-reduce, µs: a 16 KB NCCL all-reduce over 8 GPUs measured by [AZURE]
    (t = size x 2(n-1)/n / bus bandwidth). Assumption A-GPU-ALLREDUCE: every all-reduce costs this
    latency plus its bytes over ``allreduce_bus_gb_s``, for any number of GPUs."""
    internode_gb_s: float
    """Network bandwidth per GPU between nodes, GB/s ([DGX]); used beyond 8 GPUs
    (A-GPU-INTERNODE)."""
    die_area_mm2: float
    """Area of the GPU die, mm² ([DIE]); HBM stacks and interposer not included."""
    process: str
    """Manufacturing process ([DIE])."""
    bw_efficiency: float
    """Achievable fraction of the HBM bandwidth: STREAM Triad measured by [AZURE] / datasheet
    (assumption A-GPU-BW-EFF)."""
    flop_efficiency: float
    """Achievable fraction of the tensor-core peak: cuBLASLt 8192³ GEMM measured by [AZURE] /
    datasheet, applied to every precision (assumption A-GPU-FLOP-EFF)."""
    source: str = ""
    """Where the numbers come from."""
    hbm_stacks: int = 0
    """HBM stacks on the package (memory_gb / GB per stack; [A100-DS], [H100-DS], [H200-DS])."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        set_("hbm_stacks", checks.integer("GPUSpec", "hbm_stacks", self.hbm_stacks, minimum=0,
                                          maximum=64))
        for f in ("name", "label"):
            set_(f, checks.string("GPUSpec", f, getattr(self, f), empty=False))
        for f in ("process", "source"):
            set_(f, checks.string("GPUSpec", f, getattr(self, f)))
        for f in ("hbm_bandwidth_gb_s", "bf16_tflops", "int8_tops", "memory_gb", "tdp_w",
                  "nvlink_gb_s", "allreduce_bus_gb_s", "allreduce_latency_us", "internode_gb_s",
                  "die_area_mm2"):
            set_(f, _check_positive(f"GPUSpec.{f}", getattr(self, f)))
        set_("fp8_tflops", _check_nonneg("GPUSpec.fp8_tflops", self.fp8_tflops))
        for f in ("bw_efficiency", "flop_efficiency"):
            set_(f, _check_fraction(f"GPUSpec.{f}", getattr(self, f)))

    def peak_tflops(self, compute: str = "bf16") -> float:
        """Dense tensor-core peak for ``compute`` ('bf16', 'fp8' or 'int8'), TFLOP/s (TOP/s)."""
        compute = _check_compute(compute)
        if compute == "fp8":
            if not self.fp8_tflops:
                raise ValueError(f"compute='fp8': the {self.label} has no FP8 tensor cores; use "
                                 "compute='bf16' or 'int8'")
            return self.fp8_tflops
        return self.bf16_tflops if compute == "bf16" else self.int8_tops

    @property
    def achievable_bandwidth_gb_s(self) -> float:
        """HBM bandwidth the roofline uses by default, GB/s."""
        return self.hbm_bandwidth_gb_s * self.bw_efficiency

    def describe(self) -> str:
        """One line: bandwidth, BF16 peak, memory, power, die."""
        return (f"{self.label}: {self.hbm_bandwidth_gb_s:,.0f} GB/s HBM "
                f"({self.achievable_bandwidth_gb_s:,.0f} achievable), {self.bf16_tflops:,.0f} BF16 "
                f"TFLOP/s dense, {self.memory_gb:g} GB, {self.tdp_w:g} W, "
                f"{self.die_area_mm2:g} mm² "
                f"{self.process}")


def _allreduce_latency_us(bus_gb_s_at_16k: float, n: int = 8, size: int = 16384) -> float:
    """Time of one all-reduce from an nccl-tests bus bandwidth: size x 2(n-1)/n / busbw."""
    return size * 2 * (n - 1) / n / (bus_gb_s_at_16k * 1e9) * 1e6


A100_HBM_TRIAD_TB_S = 1.70
"""[AZURE] ND A100 v4 (A100-SXM4-80GB): HBM Triad 1.70 TB/s."""
H100_HBM_TRIAD_TB_S = 2.97
"""[AZURE] ND H100 v5 (H100 80GB HBM3): HBM Triad 2.97 TB/s."""
H200_HBM_TRIAD_TB_S = 4.15
"""[AZURE] ND H200 v5 (H200 141GB): HBM Triad 4.15 TB/s."""
A100_GEMM_TFLOPS = 253.7
"""[AZURE] ND A100 v4: cuBLASLt FP16 GEMM m = n = k = 8192, 253.7 TFLOP/s."""
H100_GEMM_TFLOPS = 1290.1
"""[AZURE] ND H100 v5: cuBLASLt FP8 GEMM m = n = k = 8192, 1290.1 TFLOP/s."""
H200_GEMM_TFLOPS = 1300.6
"""[AZURE] ND H200 v5: cuBLASLt FP8 GEMM m = n = k = 8192, 1300.6 TFLOP/s."""


def a100() -> GPUSpec:
    """NVIDIA A100 SXM 80GB ([A100-DS], [DIE], [AZURE], [DGX])."""
    return GPUSpec(
        name="a100", label="A100 SXM 80GB", hbm_bandwidth_gb_s=2039.0, bf16_tflops=312.0,
        fp8_tflops=0.0, int8_tops=624.0, memory_gb=80.0, tdp_w=400.0, nvlink_gb_s=600.0,
        allreduce_bus_gb_s=231.58, allreduce_latency_us=_allreduce_latency_us(0.67),
        internode_gb_s=25.0, die_area_mm2=826.0, process="TSMC N7 (7 nm)",
        bw_efficiency=A100_HBM_TRIAD_TB_S * 1e3 / 2039.0,
        flop_efficiency=A100_GEMM_TFLOPS / 312.0,
        source="[A100-DS] datasheet; [DIE] GA100 826 mm²; [AZURE] ND A100 v4 measurements; "
               "[DGX] 200 Gb/s per GPU (secondary)", hbm_stacks=5)


def h100() -> GPUSpec:
    """NVIDIA H100 SXM 80GB ([H100-DS], [DIE], [AZURE], [DGX])."""
    return GPUSpec(
        name="h100", label="H100 SXM 80GB", hbm_bandwidth_gb_s=3350.0, bf16_tflops=989.4,
        fp8_tflops=1978.9, int8_tops=1978.9, memory_gb=80.0, tdp_w=700.0, nvlink_gb_s=900.0,
        allreduce_bus_gb_s=478.87, allreduce_latency_us=_allreduce_latency_us(0.95),
        internode_gb_s=50.0, die_area_mm2=814.0, process="TSMC 4N",
        bw_efficiency=H100_HBM_TRIAD_TB_S * 1e3 / 3350.0,
        flop_efficiency=H100_GEMM_TFLOPS / 1978.9,
        source="[H100-DS] datasheet (dense = half the sparse headline); [DIE] GH100 814 mm²; "
               "[AZURE] ND H100 v5 measurements; [DGX] 400 Gb/s ConnectX-7 per GPU", hbm_stacks=5)


def h200() -> GPUSpec:
    """NVIDIA H200 SXM 141GB: the H100's GH100 die with HBM3e ([H200-DS] as reported by
    aiwiki.ai/wiki/nvidia_h200 and lzwjava.github.io (141 GB, 4.8 TB/s, 700 W, NVLink 900 GB/s,
    GH100 814 mm²); [AZURE] ND H200 v5 measurements)."""
    return GPUSpec(
        name="h200", label="H200 SXM 141GB", hbm_bandwidth_gb_s=4800.0, bf16_tflops=989.4,
        fp8_tflops=1978.9, int8_tops=1978.9, memory_gb=141.0, tdp_w=700.0, nvlink_gb_s=900.0,
        allreduce_bus_gb_s=479.98, allreduce_latency_us=_allreduce_latency_us(0.93),
        internode_gb_s=50.0, die_area_mm2=814.0, process="TSMC 4N",
        bw_efficiency=H200_HBM_TRIAD_TB_S * 1e3 / 4800.0,
        flop_efficiency=H200_GEMM_TFLOPS / 1978.9,
        source="[H200-DS] as reported by secondary pages; [DIE] same GH100 die as H100; "
               "[AZURE] ND H200 v5 measurements; [DGX] 400 Gb/s ConnectX-7 per GPU", hbm_stacks=6)


_PRESETS: dict[str, Callable[[], GPUSpec]] = {"a100": a100, "h100": h100, "h200": h200}


def names() -> tuple[str, ...]:
    """GPU preset names accepted by :func:`~aimoe_lib.gpu.get` and
    :func:`~aimoe_lib.gpu.roofline`."""
    return tuple(_PRESETS)


def get(name) -> GPUSpec:
    """The GPU preset ``name`` (case-insensitive); a :class:`~aimoe_lib.gpu.GPUSpec` is returned
    unchanged."""
    if isinstance(name, GPUSpec):
        return name
    key = str(name).lower().replace(" ", "")
    aliases = {"a100sxm80gb": "a100", "h100sxm80gb": "h100", "h200sxm141gb": "h200"}
    key = aliases.get(key, key)
    if key not in _PRESETS:
        raise ValueError(f"gpu={name!r}: unknown GPU preset; choose one of {', '.join(names())} "
                         "or pass a GPUSpec")
    return _PRESETS[key]()


# =================================================================================== validation
def _check_positive(what: str, v) -> float:
    return checks.real("", what, v, minimum=0, strict=True)


def _check_nonneg(what: str, v) -> float:
    return checks.real("", what, v, minimum=0)


def _check_fraction(what: str, v) -> float:
    return checks.real("", what, v, minimum=0, strict=True, maximum=1,
                fix="pass a fraction in (0, 1]; 1 means the datasheet peak")


def _check_int(what: str, v, lo: int, hi: int | None = checks.INT32_MAX) -> int:
    return checks.integer("", what, v, minimum=lo, maximum=hi)


def _check_compute(compute) -> str:
    return checks.choice("", "compute", compute, COMPUTE_KINDS, what="precision",
                         fix=f"choose one of {', '.join(COMPUTE_KINDS)}")


def _check_routing(routing):
    """``routing`` as given when it is a kind name of :data:`aimoe_lib.routing.KINDS` or a
    RoutingSpec (a name is checked by building its RoutingSpec); ValueError otherwise."""
    if isinstance(routing, routing_mod.RoutingSpec):
        return routing
    if not isinstance(routing, str):
        raise ValueError(f"routing={routing!r}: must be a routing kind name "
                         f"({', '.join(routing_mod.KINDS)}) or a routing.RoutingSpec (got "
                         f"{type(routing).__name__}); e.g. routing='zipf'")
    return checks.choice("", "routing", routing, routing_mod.KINDS, what="routing kind",
                         fix=f"use one of {', '.join(routing_mod.KINDS)} or a routing.RoutingSpec")


def _as_model(spec) -> ModelSpec:
    if isinstance(spec, str):
        spec = zoo._lookup(spec, f"spec={spec!r}").spec
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec or a zoo name, got {type(spec).__name__}")
    if spec.is_encoder_decoder:
        raise ValueError(f"spec={spec.name!r} is encoder-decoder (n_encoder_layers="
                         f"{spec.n_encoder_layers}); the roofline models decoder-only models")
    return spec


# =================================================================================== weight traffic
@dataclass(frozen=True)
class WeightTraffic:
    """Parameters a step reads from HBM when ``tokens`` tokens pass the model together."""

    tokens: float
    """Tokens processed in the step (the batch in decode; batch x prompt in prefill)."""
    dense_params: int
    """Parameters read once per step whatever the batch: every matrix except the routed experts
    and the input embedding, plus norms; the LM head included (with tied embeddings the embedding
    matrix read as LM head)."""
    expert_params: int
    """Parameters of one routed expert (all experts of a model are equal); 0 for dense models."""
    n_moe_layers: int
    """MoE layers."""
    distinct_experts: float
    """Expected distinct routed experts the step's tokens touch per MoE layer (0 for dense)."""
    embedding_rows_params: int
    """Input-embedding parameters looked up: one row of d_model per token (capped at the table)."""
    active_params_per_token: int
    """Weight parameters one token multiplies with (dense part + top_k experts per MoE layer),
    the input embedding excluded: FLOPs per token = 2 x this (+ attention)."""

    @property
    def params_read(self) -> float:
        """All parameters read in the step."""
        return (self.dense_params + self.n_moe_layers * self.distinct_experts * self.expert_params
                + self.embedding_rows_params)

    @property
    def expert_reuse(self) -> float:
        """Tokens served per expert read: tokens x k / distinct experts (nan for dense models)."""
        if not self.distinct_experts:
            return math.nan
        k = (self.active_params_per_token - self.dense_params) / max(
            self.n_moe_layers * self.expert_params, 1)
        return self.tokens * k / self.distinct_experts


@lru_cache(maxsize=256)
def _param_split(spec: ModelSpec) -> tuple[int, int, int, int]:
    """(dense params read per step, params per routed expert, MoE layers, embedding table)."""
    routed = sum(m.params for m in spec.matrices() if m.is_routed_expert)
    emb = next(m.params for m in spec.matrices() if m.role is Role.EMBEDDING)
    table = emb + spec.learned_positions * spec.d_model
    dense = spec.total_params - routed - table
    if spec.tied_embeddings:  # the LM head reads the (shared) embedding matrix
        dense += spec.d_model * spec.vocab_size
    n_moe = len(spec.moe_layers)
    per_expert = routed // (n_moe * spec.n_experts) if n_moe else 0
    return dense, per_expert, n_moe, table


def _inclusion_probs(spec: ModelSpec, routing, seed: int, n_sample: int) -> np.ndarray:
    """Per MoE layer and expert, the probability that one token uses the expert, (n_moe, E)."""
    rs = routing if isinstance(routing, routing_mod.RoutingSpec) else routing_mod.RoutingSpec(
        kind=routing)
    n = rs.trace.shape[0] if rs.kind == "trace" else n_sample
    choices = routing_mod.route(spec, n, rs, seed=seed)
    return routing_mod.expert_load(choices, spec.n_experts)


def weight_traffic(spec, tokens: float, routing="uniform", seed: int = 0,
                   n_sample: int = 4096) -> WeightTraffic:
    """Parameters read by one step of ``tokens`` tokens of ``spec`` (a ModelSpec or zoo name).

    Routed experts: each MoE layer reads every *distinct* expert its tokens use, once. Under
    ``routing='uniform'`` the expected count is E·(1 - (1 - k/E)^tokens)
    (:func:`aimoe_lib.routing.distinct_experts_expected`). For any other routing (``'zipf'``, a
    :class:`aimoe_lib.routing.RoutingSpec`, e.g. a recorded trace) the per-expert inclusion
    probabilities p_e are measured from ``n_sample`` routed tokens (the whole trace for a trace)
    and the expectation is Σ_e 1 - (1 - p_e)^tokens, averaged over the MoE layers; this treats
    tokens as independent (assumption A-GPU-TOKEN-INDEP), which for uniform p_e = k/E gives the
    closed form again.
    """
    spec = _as_model(spec)
    routing = _check_routing(routing)
    tokens = checks.real("", "tokens", tokens, minimum=0, maximum=1e18,
                         fix="pass the tokens of one step (a finite number >= 0)")
    seed = checks.seed("", "seed", seed)
    n_sample = checks.integer("", "n_sample", n_sample, minimum=1, maximum=10**7)
    dense, per_expert, n_moe, table = _param_split(spec)
    if n_moe:
        if isinstance(routing, str) and routing == "uniform":
            d = routing_mod.distinct_experts_expected(spec.n_experts, spec.top_k, tokens)
        else:
            p = _inclusion_probs(spec, routing, seed, n_sample)
            d = float(np.mean(np.sum(1.0 - np.power(1.0 - p, tokens), axis=1)))
    else:
        d = 0.0
    rows = int(min(math.ceil(tokens), spec.vocab_size)) * spec.d_model
    return WeightTraffic(tokens=float(tokens), dense_params=dense, expert_params=per_expert,
                         n_moe_layers=n_moe, distinct_experts=float(d),
                         embedding_rows_params=rows,
                         active_params_per_token=dense + n_moe * spec.top_k * per_expert)


def _attention_flops_per_key(spec: ModelSpec) -> int:
    """FLOPs per (query token, cached key) pair in one layer: 2 x (q·k width + value width)."""
    if spec.attention is AttentionKind.MLA:
        return 2 * (spec.q_dim + spec.n_heads * spec.v_head_dim)
    return 2 * 2 * spec.q_dim


def active_dense_equivalent(spec) -> ModelSpec:
    """A dense model with the attention of ``spec`` and, in every layer, one FFN as wide as the
    experts a token uses (top_k x d_expert + shared experts): the same active parameters (router
    aside) without routing. For an MoE this is the dense model whose decode costs what the MoE's
    would cost if routing never fragmented a batch."""
    spec = _as_model(spec)
    if not spec.is_moe:
        return spec
    width = spec.top_k * spec.d_expert + spec.n_shared_experts * spec.d_shared_expert
    return spec.replace(name=f"{spec.name}-dense-equivalent", d_ff=width, n_experts=0, top_k=0,
                        d_expert=None, n_shared_experts=0, d_shared_expert=None,
                        shared_expert_gate=False, router_bias=False, moe_every=1, first_dense=0,
                        source=f"dense equivalent of {spec.name} (aimoe_lib.gpu)")


# =================================================================================== roofline
@dataclass(frozen=True)
class RooflineResult:
    """What :func:`~aimoe_lib.gpu.roofline` predicts. Times in s, energies in J, bytes and FLOPs
    summed over all GPUs."""

    model: str
    """Model name."""
    gpu: str
    """GPU preset label."""
    n_gpus: int
    """GPUs (tensor parallel)."""
    batch: int
    """Sequences decoded together."""
    prompt_len: int
    """Prompt tokens per sequence."""
    gen_len: int
    """Generated tokens per sequence (the first comes out of the prefill)."""
    bytes_per_param: float
    """Bytes per stored weight."""
    kv_bytes: float
    """Bytes per cached key/value element."""
    compute: str
    """Tensor-core precision."""
    bw_efficiency: float
    """Achievable fraction of HBM bandwidth used."""
    flop_efficiency: float
    """Achievable fraction of the tensor-core peak used."""
    weight_bytes_stored: float
    """All weights in memory."""
    kv_bytes_max: float
    """KV cache at the end of the run."""
    memory_available_bytes: float
    """n_gpus x memory x usable fraction."""
    distinct_experts: float
    """Distinct routed experts per MoE layer and decode step (0 for dense)."""
    prefill_bytes: float
    """HBM bytes of the prefill pass."""
    prefill_flops: float
    """FLOPs of the prefill pass."""
    prefill_comm_s: float
    """All-reduce time of the prefill pass."""
    prefill_bound: str
    """'memory' or 'compute': which limit sets the prefill time."""
    decode_weight_bytes: float
    """Weight bytes read per decode step."""
    decode_kv_bytes: float
    """KV-cache bytes read and written per decode step (mean over the steps)."""
    decode_flops: float
    """FLOPs per decode step (mean over the steps)."""
    decode_comm_s: float
    """All-reduce time per decode step."""
    decode_bound: str
    """'memory' or 'compute': which limit sets most decode steps."""
    ttft_s: float
    """Time to first token: the prefill pass."""
    time_per_output_token_s: float
    """Mean time of a decode step (with gen_len = 1: the step that would come next)."""
    decode_time_s: float
    """All decode steps (gen_len - 1 of them)."""
    power_w: float
    """Average power of all GPUs."""
    silicon_area_mm2: float
    """n_gpus x die area."""
    precision: str = ""
    """Weight format (a key of :data:`~aimoe_lib.gpu.PRECISIONS`), or '' when set by
    ``bytes_per_param``/``compute``."""
    serving: str = "static"
    """'static' or 'continuous' (:data:`~aimoe_lib.gpu.SERVING_KINDS`)."""
    calibrated: bool = False
    """True when the published calibration (:data:`~aimoe_lib.gpu.CALIBRATION`) is applied."""
    overhead_s: float = 0.0
    """Fixed time added to every forward pass (calibration; with a time per layer, the sum over
    the layers), s."""
    power_model: str = "tdp"
    """'tdp' (every GPU at ``power_fraction`` x TDP) or 'fitted' (:class:`PowerModel`)."""
    hbm_area_mm2: float = 0.0
    """n_gpus x HBM stacks x assumed stack footprint (A-GPU-HBM-AREA), mm²."""
    hbm_utilisation: float = 0.0
    """HBM bytes moved over the whole run / (n_gpus x datasheet bandwidth x run time): the u_mem
    of :class:`PowerModel`."""
    tensor_utilisation: float = 0.0
    """FLOPs over the whole run / (n_gpus x datasheet peak of the compute format x run time):
    the u_comp of :class:`PowerModel`."""

    @property
    def package_area_mm2(self) -> float:
        """GPU dies plus HBM stacks, mm² (interposer and substrate not counted)."""
        return self.silicon_area_mm2 + self.hbm_area_mm2

    @property
    def total_time_s(self) -> float:
        """Prefill plus all decode steps."""
        return self.ttft_s + self.decode_time_s

    @property
    def generated_tokens(self) -> int:
        """batch x gen_len."""
        return self.batch * self.gen_len

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second over the whole run (as
        :class:`~aimoe_lib.simulator.result.SimResult`)."""
        return self.generated_tokens / self.total_time_s

    @property
    def decode_tokens_per_s(self) -> float:
        """Steady decode throughput: batch / time per output token."""
        return self.batch / self.time_per_output_token_s

    @property
    def energy_j(self) -> float:
        """power x total time."""
        return self.power_w * self.total_time_s

    @property
    def energy_per_token_j(self) -> float:
        """Energy per generated token."""
        return self.energy_j / self.generated_tokens

    @property
    def decode_bytes(self) -> float:
        """HBM bytes per decode step (weights + KV)."""
        return self.decode_weight_bytes + self.decode_kv_bytes

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per HBM byte of a decode step."""
        return self.decode_flops / self.decode_bytes

    def summary(self) -> str:
        """A readable table of the key numbers."""
        e = (f"{self.distinct_experts:.2f} distinct experts per MoE layer, "
             if self.distinct_experts else "")
        need = (self.weight_bytes_stored + self.kv_bytes_max) / 1e9
        return "\n".join([
            f"{self.model} on {self.n_gpus} x {self.gpu}, batch {self.batch}, "
            f"{self.prompt_len} + {self.gen_len} tokens, {self.bytes_per_param:g} B/weight, "
            f"{self.compute}",
            f"time to first token    {self.ttft_s * 1e3:10.2f} ms ({self.prefill_bound}-bound)",
            f"time per output token  {self.time_per_output_token_s * 1e3:10.3f} ms "
            f"({self.decode_bound}-bound, all-reduce {self.decode_comm_s * 1e3:.3f} ms)",
            f"throughput             {self.tokens_per_s:10.1f} tokens/s "
            f"({self.decode_tokens_per_s:.1f} in decode)",
            f"energy                 {self.energy_per_token_j:10.4f} J per token at "
            f"{self.power_w:,.0f} W",
            f"decode step            {self.decode_weight_bytes / 1e9:.2f} GB weights, "
            f"{self.decode_kv_bytes / 1e9:.3f} GB KV, {e}{self.decode_flops / 1e12:.3f} TFLOP",
            f"memory                 {need:.1f} GB of {self.memory_available_bytes / 1e9:.1f} GB "
            f"usable; silicon {self.silicon_area_mm2:,.0f} mm²",
        ])


def _allreduce_s(g: GPUSpec, n: int, nbytes: float, latency_scale: float = 1.0) -> float:
    """One all-reduce of ``nbytes`` over ``n`` GPUs (A-GPU-ALLREDUCE, A-GPU-INTERNODE), its
    small-message latency scaled by ``latency_scale`` (:attr:`Calibration.allreduce_scale`)."""
    if n <= 1:
        return 0.0
    bw = g.allreduce_bus_gb_s if n <= GPUS_PER_NODE else g.internode_gb_s
    return (latency_scale * g.allreduce_latency_us * 1e-6
            + 2 * (n - 1) / n * nbytes / (bw * 1e9))


def _memory_needed(spec: ModelSpec, batch: int, prompt_len: int, gen_len: int,
                   bytes_per_param: float, kv_bytes: float) -> tuple[float, float]:
    weights = spec.total_params * bytes_per_param
    kv = (batch * (prompt_len + gen_len - 1) * spec.n_layers * spec.kv_cache_elements_per_token
          * kv_bytes)
    return weights, kv


def fewest_gpus(spec, gpu="h100", batch: int = 1, prompt_len: int = 128, gen_len: int = 128,
                bytes_per_param: float = 2, kv_bytes: float = 2,
                memory_fraction: float = MEMORY_FRACTION) -> int:
    """The fewest GPUs (1, 2, 4, 8, ... up to 1024) whose usable memory (``memory_fraction`` of
    each, A-GPU-MEM-USABLE) holds all weights and the KV cache of the run."""
    spec, g = _as_model(spec), get(gpu)
    batch = _check_int("batch", batch, 1)
    prompt_len = _check_int("prompt_len", prompt_len, 1)
    gen_len = _check_int("gen_len", gen_len, 1)
    bytes_per_param = _check_positive("bytes_per_param", bytes_per_param)
    kv_bytes = _check_positive("kv_bytes", kv_bytes)
    memory_fraction = _check_fraction("memory_fraction", memory_fraction)
    w, kv = _memory_needed(spec, batch, prompt_len, gen_len, bytes_per_param, kv_bytes)
    n = 1
    while n <= MAX_GPUS:
        if w + kv <= n * g.memory_gb * 1e9 * memory_fraction:
            return n
        n *= 2
    raise ValueError(f"{spec.name} needs {(w + kv) / 1e9:,.0f} GB (weights + KV cache), more than "
                     f"{MAX_GPUS} x {g.label}; lower batch, prompt_len or bytes_per_param")


def _kernels_time(kernels, comm_s: float, bw: float, fl: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Kernels that run one after the other, each at its own roofline: sum over ``kernels``
    ((bytes, FLOPs) pairs) of max(bytes / bw, FLOPs / fl), plus ``comm_s``. Also whether the
    FLOP term exceeds the byte term summed over the kernels (compute-bound). One kernel is the
    plain roofline of a whole pass."""
    with np.errstate(over="ignore"):  # absurd GPUSpec rates: refused by roofline as not finite
        t = [(np.asarray(b / bw), np.asarray(f / fl)) for b, f in kernels]
    total = sum(np.maximum(m, c) for m, c in t) + comm_s
    return total, sum(c for _, c in t) > sum(m for m, _ in t)


MAX_GEN_LEN = 10**7
"""Most generated tokens :func:`roofline` models (it keeps one value per decode step)."""


def roofline(spec, gpu="h100", batch: int = 1, prompt_len: int = 128, gen_len: int = 128,
             n_gpus: int | None = None, bytes_per_param: float | None = None,
             kv_bytes: float = 2, *,
             compute: str | None = None, routing="uniform", seed: int = 0,
             bw_efficiency: float | None = None, flop_efficiency: float | None = None,
             power_fraction: float = POWER_FRACTION,
             memory_fraction: float = MEMORY_FRACTION,
             check_memory: bool = True, precision: str | None = None,
             calibrated: bool = False, serving: str = "static",
             power_model: str = "tdp", gpu_busy_fraction: float = 1.0) -> RooflineResult:
    """Roofline of ``batch`` sequences of ``prompt_len`` prompt tokens and ``gen_len`` generated
    tokens of ``spec`` (a ModelSpec or zoo name) on ``n_gpus`` GPUs of preset ``gpu``.

    **Prefill** (one pass over batch x prompt_len tokens, producing the first token): reads the
    dense weights and the distinct experts of batch x prompt_len tokens, writes the KV cache;
    FLOPs 2 x active weights per token (the LM head only for the last token of each sequence) plus
    causal attention. **Decode** step g = 1 .. gen_len - 1 (context prompt_len + g keys): reads the
    dense weights, the distinct experts of ``batch`` tokens
    (:func:`~aimoe_lib.gpu.weight_traffic`), the KV cache
    of every sequence and writes one new entry per sequence; FLOPs 2 x active weights + attention
    per token. Each phase takes max(bytes / (n x bandwidth x bw_efficiency), FLOPs / (n x peak x
    flop_efficiency)) plus 2 all-reduces of the activations per layer (tensor parallelism,
    assumption A-GPU-TP: weights, KV and FLOPs split evenly over the GPUs, no overlap of
    communication with computation).

    ``n_gpus=None`` picks the fewest GPUs that hold weights and KV cache
    (:func:`~aimoe_lib.gpu.fewest_gpus`).
    Energy = n_gpus x TDP x ``power_fraction`` x total time (A-GPU-POWER-TDP). ``bw_efficiency``
    and ``flop_efficiency`` default to the GPU preset's measured fractions. ``check_memory=False``
    skips the check that an explicit ``n_gpus`` holds the model (for comparing with measurements
    of a few layers scaled to the whole model, :class:`~aimoe_lib.gpu.MeasuredRow`).

    ``precision`` (a key of :data:`~aimoe_lib.gpu.PRECISIONS`: 'bf16', 'fp8', 'int8', 'int4') sets
    the bytes per weight and the tensor-core precision together; it cannot be combined with
    ``bytes_per_param`` or ``compute`` (without it they default to 2 bytes and BF16).
    ``calibrated=True`` applies :data:`~aimoe_lib.gpu.CALIBRATION`, fitted to published
    measurements: a fixed time per layer and forward pass (A-GPU-OVERHEAD), a tensor-core
    efficiency that falls for passes of few tokens, the weight GEMMs and the attention of a pass
    as separate kernels whose times add (A-GPU-KERNELS), KV reads per query head where the
    framework's attention kernel does so (A-GPU-GQA-READS), int8 and gathered-expert weight reads
    at fitted fractions of the bandwidth where the framework's kernels do so
    (A-GPU-INT8-KERNELS, A-GPU-EXPERT-GATHER) and a fitted all-reduce latency.
    ``serving='continuous'`` models in-flight batching at ``batch``
    sequences: the time to first token is one sequence's prefill, and every decode step also
    carries batch / gen_len prefills of joining sequences. ``power_model='fitted'`` replaces TDP
    by :data:`~aimoe_lib.gpu.POWER_MODEL` (idle power plus memory and tensor-core utilisation,
    TDP as the upper bound; ``power_fraction`` then scales that bound).
    ``gpu_busy_fraction`` < 1 models a serving engine whose host side (API server, scheduler)
    keeps the GPUs waiting: every pass takes its GPU time / ``gpu_busy_fraction`` of wall time,
    and under the fitted power model the GPUs draw their idle power while they wait
    (vLLM 0.5.3 serving Llama-3-8B on one H100 kept the GPU busy 38 % of the time,
    :data:`VLLM_053_GPU_BUSY`).
    """
    spec, g = _as_model(spec), get(gpu)
    if precision is not None:
        precision = checks.choice("", "precision", precision, tuple(PRECISIONS),
                                  what="weight format",
                                  fix=f"choose one of {', '.join(PRECISIONS)}")
        for name, v in (("bytes_per_param", bytes_per_param), ("compute", compute)):
            if v is not None:
                raise ValueError(f"precision={precision!r} and {name}={v!r}: precision sets the "
                                 f"bytes per weight and the tensor-core precision; pass one or "
                                 f"the other")
        bytes_per_param, compute = PRECISIONS[precision]
        if compute == "fp8" and not g.fp8_tflops:
            raise ValueError(f"precision='fp8': the {g.label} has no FP8 tensor cores; use "
                             "precision='bf16', 'int8' or 'int4'")
    bytes_per_param = 2 if bytes_per_param is None else bytes_per_param
    compute = "bf16" if compute is None else compute
    if isinstance(calibrated, Calibration):
        cal = calibrated
    else:
        cal = CALIBRATION if checks.boolean("", "calibrated", calibrated,
                                            fix="pass True, False or a gpu.Calibration") else None
    serving = checks.choice("", "serving", serving, SERVING_KINDS, what="serving mode",
                            fix="use 'static' or 'continuous'")
    if isinstance(power_model, PowerModel):
        pm, power_model = power_model, "fitted"
    else:
        power_model = checks.choice("", "power_model", power_model, ("tdp", "fitted"),
                                    what="power model",
                                    fix="use 'tdp', 'fitted' or a gpu.PowerModel")
        pm = POWER_MODEL
    routing = _check_routing(routing)
    batch = _check_int("batch", batch, 1)
    prompt_len = _check_int("prompt_len", prompt_len, 1)
    gen_len = _check_int("gen_len", gen_len, 1, MAX_GEN_LEN)
    seed = checks.seed("", "seed", seed)
    check_memory = checks.boolean("", "check_memory", check_memory)
    bytes_per_param = _check_positive("bytes_per_param", bytes_per_param)
    kv_bytes = _check_positive("kv_bytes", kv_bytes)
    power_fraction = _check_fraction("power_fraction", power_fraction)
    busy = checks.real("", "gpu_busy_fraction", gpu_busy_fraction, minimum=0, strict=True,
                       maximum=1.0, fix="pass the share of wall time the GPUs compute, in (0, 1]")
    memory_fraction = _check_fraction("memory_fraction", memory_fraction)
    peak = g.peak_tflops(compute)
    eb = g.bw_efficiency if bw_efficiency is None else bw_efficiency
    ef = g.flop_efficiency if flop_efficiency is None else flop_efficiency
    eb = _check_fraction("bw_efficiency", eb)
    ef = _check_fraction("flop_efficiency", ef)

    w_stored, kv_max = _memory_needed(spec, batch, prompt_len, gen_len, bytes_per_param, kv_bytes)
    if n_gpus is None:
        n = fewest_gpus(spec, g, batch, prompt_len, gen_len, bytes_per_param, kv_bytes,
                        memory_fraction)
    else:
        n = _check_int("n_gpus", n_gpus, 1)
        have = n * g.memory_gb * 1e9 * memory_fraction
        if check_memory and w_stored + kv_max > have:
            need = fewest_gpus(spec, g, batch, prompt_len, gen_len, bytes_per_param, kv_bytes,
                               memory_fraction)
            raise ValueError(f"n_gpus={n}: {spec.name} needs {(w_stored + kv_max) / 1e9:,.1f} GB "
                             f"(weights + KV cache) but {n} x {g.label} offer {have / 1e9:,.1f} GB "
                             f"usable; use n_gpus >= {need} or n_gpus=None")
    bw = n * g.hbm_bandwidth_gb_s * 1e9 * eb
    fl = n * peak * 1e12 * ef
    if not (0 < bw < math.inf and 0 < fl < math.inf):
        raise ValueError(f"gpu={g.name!r}: {n} GPUs of {g.hbm_bandwidth_gb_s:g} GB/s x "
                         f"{eb:g} and {peak:g} TFLOP/s x {ef:g} give a rate of {bw:g} B/s and "
                         f"{fl:g} FLOP/s, not finite positive numbers; give the GPUSpec "
                         "realistic bandwidth and peak figures")
    L, d = spec.n_layers, spec.d_model
    kv_tok = L * spec.kv_cache_elements_per_token * kv_bytes  # bytes per token, all layers
    att = _attention_flops_per_key(spec) * L                  # FLOPs per (query, key) pair
    oh = cal.pass_overhead_s(spec.n_layers) if cal else 0.0

    def _fl(tokens: float) -> float:  # achievable FLOP/s of a pass of `tokens` tokens
        return fl * (cal.flop_scale(tokens) if cal else 1.0)

    int8 = bytes_per_param == 1 and compute == "int8"

    def _w_time_bytes(wt: WeightTraffic) -> float:  # calibrated: bytes weighted by read speed
        expert = wt.n_moe_layers * wt.distinct_experts * wt.expert_params
        return bytes_per_param * ((wt.params_read - expert) * cal.weight_read_factor(False, int8)
                                  + expert * cal.weight_read_factor(True, int8))

    # prefill (continuous serving: one sequence joins at a time)
    pre_seqs = 1 if serving == "continuous" else batch
    n_pre = pre_seqs * prompt_len
    wp = weight_traffic(spec, n_pre, routing, seed)
    head = spec.d_model * spec.vocab_size
    ar_scale = cal.allreduce_scale if cal else 1.0
    pre_w_bytes, pre_kv_bytes = wp.params_read * bytes_per_param, 2 * n_pre * kv_tok
    pre_bytes = pre_w_bytes + pre_kv_bytes
    pre_lin_flops = 2 * (n_pre * (wp.active_params_per_token - head) + pre_seqs * head)
    pre_att_flops = att * pre_seqs * prompt_len * (prompt_len + 1) / 2
    pre_flops = pre_lin_flops + pre_att_flops
    pre_comm = 2 * L * _allreduce_s(g, n, n_pre * d * ACT_BYTES, ar_scale) + oh
    # calibrated: weight GEMMs, then attention, two kernels each at its own roofline
    # (A-GPU-KERNELS); plain: one roofline over the whole pass
    t_pre, pre_cb = _kernels_time(((_w_time_bytes(wp), pre_lin_flops),
                                   (pre_kv_bytes, pre_att_flops))
                                  if cal else ((pre_bytes, pre_flops),), pre_comm, bw, _fl(n_pre))

    # decode steps g = 1 .. gen_len - 1 (context = prompt_len + g keys); gen_len = 1: the next step
    wd = weight_traffic(spec, batch, routing, seed)
    if serving == "continuous":  # sequences at every stage: mean context over a lifetime
        ctx = np.full(max(gen_len - 1, 1), prompt_len + gen_len / 2.0)
    else:
        ctx = prompt_len + np.arange(1, max(gen_len, 2), dtype=float)
    dec_w = wd.params_read * bytes_per_param
    # read the context, write the new entry; a framework that reads a grouped-query model's
    # KV heads once per query head (A-GPU-GQA-READS) reads the context n_heads / n_kv_heads times
    group = (spec.n_heads / spec.n_kv_heads
             if cal and cal.kv_reads_per_query_head and spec.attention is AttentionKind.MHA
             else 1.0)
    dec_kv = batch * kv_tok * (ctx * group + 1)
    dec_lin_flops = batch * 2 * wd.active_params_per_token
    dec_flops = dec_lin_flops + batch * att * ctx
    dec_comm = (2 * L * _allreduce_s(g, n, batch * d * ACT_BYTES, ar_scale) + oh
                + (cal.per_seq_s * batch if cal else 0.0))
    t_dec, dec_cb = _kernels_time(((_w_time_bytes(wd), dec_lin_flops),
                                   (dec_kv / cal.kv_efficiency, batch * att * ctx))
                                  if cal else ((dec_w + dec_kv, dec_flops),),
                                  dec_comm, bw, _fl(batch))
    t_pre, t_dec = t_pre / busy, t_dec / busy  # host-bound engines: the GPUs wait the rest
    if serving == "continuous":  # batch / gen_len joining prefills per decode step
        t_dec = t_dec + batch / gen_len * float(t_pre)
    decode_time = float(t_dec.sum()) if gen_len > 1 else 0.0
    if not all(0 < t < math.inf for t in (float(t_pre), float(t_dec.mean()))) \
            or not math.isfinite(decode_time):
        raise ValueError(f"gpu={g.name!r}: the roofline times ({float(t_pre):g} s to first token, "
                         f"{float(t_dec.mean()):g} s per output token) are not finite positive "
                         "numbers; give the GPUSpec realistic bandwidth and peak figures")

    # time-weighted utilisation of HBM and tensor cores against datasheet peaks
    t_all = float(t_pre) + decode_time
    n_steps = max(gen_len - 1, 0)
    n_pre_runs = 1.0 + (batch * n_steps / gen_len if serving == "continuous" else 0.0)
    bytes_all = pre_bytes * n_pre_runs + float((dec_w + dec_kv).sum()) * (n_steps > 0)
    flops_all = pre_flops * n_pre_runs + float(dec_flops.sum()) * (n_steps > 0)
    if n_steps == 0:
        t_all, bytes_all, flops_all = float(t_pre), pre_bytes, pre_flops
    u_mem = bytes_all / (n * g.hbm_bandwidth_gb_s * 1e9 * t_all)
    u_comp = flops_all / (n * peak * 1e12 * t_all)
    if power_model == "tdp":
        power = n * g.tdp_w * power_fraction
    else:
        power = n * pm.power_w(g, u_mem, u_comp) * power_fraction

    return RooflineResult(
        model=spec.name, gpu=g.label, n_gpus=n, batch=batch, prompt_len=prompt_len,
        gen_len=gen_len, bytes_per_param=float(bytes_per_param), kv_bytes=float(kv_bytes),
        compute=compute, bw_efficiency=float(eb), flop_efficiency=float(ef),
        weight_bytes_stored=float(w_stored), kv_bytes_max=float(kv_max),
        memory_available_bytes=n * g.memory_gb * 1e9 * memory_fraction,
        distinct_experts=wd.distinct_experts, prefill_bytes=float(pre_bytes),
        prefill_flops=float(pre_flops), prefill_comm_s=float(pre_comm),
        prefill_bound="compute" if bool(pre_cb) else "memory",
        decode_weight_bytes=float(dec_w), decode_kv_bytes=float(dec_kv.mean()),
        decode_flops=float(dec_flops.mean()), decode_comm_s=float(dec_comm),
        decode_bound="compute" if dec_cb.mean() > 0.5 else "memory",
        ttft_s=float(t_pre), time_per_output_token_s=float(t_dec.mean()),
        decode_time_s=decode_time, power_w=float(power),
        silicon_area_mm2=n * g.die_area_mm2, precision=precision or "", serving=serving,
        calibrated=cal is not None, overhead_s=oh, power_model=power_model,
        hbm_area_mm2=n * g.hbm_stacks * HBM_STACK_AREA_MM2,
        hbm_utilisation=float(u_mem), tensor_utilisation=float(u_comp))


def sweep_batches(spec, gpu="h100", batches=(1, 2, 4, 8, 16, 32, 64), **kwargs
                  ) -> tuple[RooflineResult, ...]:
    """:func:`~aimoe_lib.gpu.roofline` at each batch size (other arguments as for
    :func:`~aimoe_lib.gpu.roofline`). Every batch size is checked before the first roofline."""
    fix = "give at least one batch size, e.g. batches=(1, 2, 4)"
    if isinstance(batches, str) or not isinstance(batches, Iterable):
        raise ValueError(f"sweep_batches(batches={batches!r}): must be a sequence of batch sizes; "
                         f"{fix}")
    bs = checks.items("sweep_batches()", "batches", batches, fix=fix)
    bs = tuple(checks.integer("sweep_batches()", "batches", b, minimum=1,
                              maximum=checks.INT32_MAX, fix=f"each entry is a batch size; {fix}")
               for b in bs)
    if "batch" in kwargs:
        raise ValueError(f"sweep_batches(batch={kwargs['batch']!r}): the batch sizes come from "
                         "batches=; pass batches=(...) instead of batch=")
    return tuple(roofline(spec, gpu, batch=b, **kwargs) for b in bs)


# =================================================================================== published data
_GPTFAST = ("github.com/pytorch-labs/gpt-fast README.md (commit 0f925b5d): 'Benchmarks run on an "
            "8xA100-80GB, power limited to 330W ... batch size=1 ... prompt length (just 5 "
            "tokens)'")
_GPTFAST_MOE = ("github.com/pytorch-labs/gpt-fast mixtral-moe/README.md (commit 056f8fb4), same "
                "setup: 8xA100-80GB power limited to 330 W, batch size 1, 5-token prompt")
_NIM = ("docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance: Llama-3.3-70b-instruct, NIM "
        "1.8.0, '2 x H100 80G', 'fp8 TP2'")
_LLAMA33_CONFIG = ("Llama-3.3-70B: the Llama-2-70B shapes with vocabulary 128,256 (oumi "
                   "configs/recipes/llama3_3/README.md: vocab 128,256, hidden 8192, MLP 28,672, "
                   "80 layers, 64 heads, 8 KV heads, untied)")


@dataclass(frozen=True)
class Measurement:
    """A published measured number the roofline is checked against, with its setup and source."""

    label: str
    """Short name of the data point."""
    model: str
    """Zoo model name, or 'llama-3.3-70b' (built from Llama-2-70B, see
    :meth:`~aimoe_lib.gpu.Measurement.spec`)."""
    gpu: str
    """GPU preset."""
    n_gpus: int
    """GPUs used (tensor parallel)."""
    batch: int
    """Concurrent sequences."""
    prompt_len: int
    """Prompt tokens."""
    gen_len: int
    """Generated tokens (for the context of the decode steps)."""
    bytes_per_param: float
    """Weight precision, bytes."""
    compute: str
    """Tensor-core precision."""
    metric: str
    """'tpot_s' (time per output token) or 'ttft_s' (time to first token)."""
    value: float
    """The measured value in s, derived from the published figure as stated in ``figure``."""
    figure: str
    """The figure as published."""
    source: str
    """Where it is published."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        for f in ("label", "figure", "source"):
            set_(f, checks.string("Measurement", f, getattr(self, f)))
        set_("model", checks.string("Measurement", "model", self.model, empty=False))
        if self.model != "llama-3.3-70b" and self.model.lower() not in zoo._REGISTRY:
            zoo._lookup(self.model, f"Measurement.model={self.model!r}")  # names the choices
        set_("gpu", checks.string("Measurement", "gpu", self.gpu, empty=False))
        if self.gpu not in _PRESETS:
            try:
                get(self.gpu)  # an unknown preset is refused here, not at predict()
            except ValueError as e:
                raise ValueError(f"Measurement.{e}") from None
        for f in ("n_gpus", "batch", "prompt_len"):
            set_(f, checks.integer("Measurement", f, getattr(self, f), minimum=1,
                                   maximum=checks.INT32_MAX))
        set_("gen_len", checks.integer("Measurement", "gen_len", self.gen_len, minimum=1,
                                       maximum=MAX_GEN_LEN))
        set_("bytes_per_param", checks.real("Measurement", "bytes_per_param",
                                            self.bytes_per_param, minimum=0, strict=True))
        checks.choice("Measurement", "compute", self.compute, COMPUTE_KINDS, what="precision")
        checks.choice("Measurement", "metric", self.metric, ("tpot_s", "ttft_s"), what="metric",
                      fix="use 'tpot_s' (time per output token) or 'ttft_s' (time to first "
                          "token)")
        set_("value", checks.real("Measurement", "value", self.value, minimum=0, strict=True,
                                  fix="pass the measured time in s (> 0)"))

    def spec(self) -> ModelSpec:
        """The ModelSpec of the measured model."""
        if self.model == "llama-3.3-70b":
            return zoo.get("llama-2-70b").replace(name="llama-3.3-70b", vocab_size=128256,
                                                  source=_LLAMA33_CONFIG)
        return zoo.get(self.model)

    def predict(self, **overrides) -> float:
        """The roofline's value of ``metric`` for this setup; ``overrides`` are further
        arguments of :func:`~aimoe_lib.gpu.roofline` (not those the measurement fixes)."""
        fixed = {"spec", "gpu", "batch", "prompt_len", "gen_len", "n_gpus", "bytes_per_param",
                 "compute"}
        for k, v in overrides.items():
            if k in fixed:
                raise ValueError(f"Measurement.predict({k}={v!r}): {k} is fixed by the "
                                 "measurement; override only other roofline arguments (e.g. "
                                 "bw_efficiency, kv_bytes, routing)")
        r = roofline(self.spec(), self.gpu, batch=self.batch, prompt_len=self.prompt_len,
                     gen_len=self.gen_len, n_gpus=self.n_gpus,
                     bytes_per_param=self.bytes_per_param, compute=self.compute, **overrides)
        return r.time_per_output_token_s if self.metric == "tpot_s" else r.ttft_s


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("gpt-fast Llama-2-7B, 1xA100", "llama-2-7b", "a100", 1, 1, 5, 200, 2, "bf16",
                "tpot_s", 1 / 104.9, "104.9 tokens/s ('Llama-2-7B | Base | 104.9 | 1397.31')",
                _GPTFAST),
    Measurement("gpt-fast Llama-2-70B, 2xA100", "llama-2-70b", "a100", 2, 1, 5, 200, 2, "bf16",
                "tpot_s", 1 / 21.32, "21.32 tokens/s (Tensor Parallelism table, 2 GPUs)", _GPTFAST),
    Measurement("gpt-fast Llama-2-70B, 8xA100", "llama-2-70b", "a100", 8, 1, 5, 200, 2, "bf16",
                "tpot_s", 1 / 62.50, "62.50 tokens/s (Tensor Parallelism table, 8 GPUs)", _GPTFAST),
    Measurement("gpt-fast Mixtral-8x7B, 2xA100", "mixtral-8x7b", "a100", 2, 1, 5, 200, 2, "bf16",
                "tpot_s", 1 / 78.75, "78.75 tokens/s (baseline(bfloat16), 2 GPU)", _GPTFAST_MOE),
    Measurement("gpt-fast Mixtral-8x7B, 8xA100", "mixtral-8x7b", "a100", 8, 1, 5, 200, 2, "bf16",
                "tpot_s", 1 / 203.69, "203.69 tokens/s (baseline(bfloat16), 8 GPU)", _GPTFAST_MOE),
    Measurement("NIM Llama-3.3-70B FP8, 2xH100, ITL", "llama-3.3-70b", "h100", 2, 1, 5000, 500, 1,
                "fp8", "tpot_s", 18.58e-3,
                "ITL 18.58 ms at concurrency 1, 5000 input / 500 output tokens", _NIM),
    Measurement("NIM Llama-3.3-70B FP8, 2xH100, TTFT", "llama-3.3-70b", "h100", 2, 1, 5000, 500, 1,
                "fp8", "ttft_s", 406.77e-3,
                "TTFT 406.77 ms at concurrency 1, 5000 input / 500 output tokens", _NIM),
    Measurement("gpt-fast Mixtral-8x7B int8, 1xA100", "mixtral-8x7b", "a100", 1, 1, 5, 200, 1,
                "bf16", "tpot_s", 1 / 56.04,
                "56.04 tokens/s (int8 weight-only, 1 GPU; a known miss, see the chapter)",
                _GPTFAST_MOE),
)
"""Published measurements of decode and prefill. gpt-fast's tokens/s (generate.py: tokens
generated / wall time of the whole ``generate()`` call, default ``--max_new_tokens 200``, batch 1,
5-token prompt) are taken as 1 / time per output token; the 5-token prefill inside that wall time
is about one decode step in 200 (0.5 %). The last row, int8 weight-only Mixtral, is listed to
show where the roofline fails: its kernels do not reach the HBM bandwidth (gpt-fast's own
bandwidth column shows int8 reaching 1069 GB/s where bf16 reaches 1397 GB/s on Llama-2-7B)."""


@dataclass(frozen=True)
class ValidationRow:
    """One measurement next to the roofline's prediction."""

    measurement: Measurement
    """The published data point."""
    predicted: float
    """Roofline value of the metric, s."""

    def __post_init__(self) -> None:
        checks.instance("ValidationRow", "measurement", self.measurement, Measurement)
        object.__setattr__(self, "predicted", checks.real(
            "ValidationRow", "predicted", self.predicted, minimum=0, strict=True,
            fix="pass the roofline's time in s (Measurement.predict())"))

    @property
    def error(self) -> float:
        """(predicted - measured) / measured: negative when the roofline is faster than measured."""
        return self.predicted / self.measurement.value - 1.0


def validation_table(measurements=MEASUREMENTS, **overrides) -> tuple[ValidationRow, ...]:
    """The roofline against each published measurement (``overrides`` go to
    :func:`~aimoe_lib.gpu.roofline`)."""
    ms = checks.items("validation_table()", "measurements", measurements, nonempty=False,
                      fix="pass a list of gpu.Measurement (default gpu.MEASUREMENTS)")
    for m in ms:
        checks.instance("validation_table()", "measurements", m, Measurement,
                        fix="pass a list of gpu.Measurement (default gpu.MEASUREMENTS)")
    return tuple(ValidationRow(m, m.predict(**overrides)) for m in ms)


def format_validation_table(rows=None) -> str:
    """A plain-text table of :func:`~aimoe_lib.gpu.validation_table`: setup, metric, measured,
    roofline, error."""
    if rows is None:
        rows = validation_table()
    else:
        fix = "pass the rows of gpu.validation_table() (or None for the default table)"
        rows = checks.items("format_validation_table()", "rows", rows, nonempty=False, fix=fix)
        for r in rows:
            checks.instance("format_validation_table()", "rows", r, ValidationRow, fix=fix)
    head = f"{'data point':38} {'metric':6} {'measured':>10} {'roofline':>10} {'error':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        m = r.measurement
        lines.append(f"{m.label:38} {m.metric[:4]:6} {m.value * 1e3:8.2f}ms "
                     f"{r.predicted * 1e3:8.2f}ms {r.error:+7.1%}")
    return "\n".join(lines)


NOT_USED: tuple[str, ...] = (
    "NeMo Framework docs (docs.nvidia.com/nemo-framework/user-guide/latest/performance/"
    "llama.html): Llama-2-7B batch 1, 128 in / 20 out, average latency 234.0 ms (A100) and "
    "153.8 ms (H100), precision not stated; not used (a NeMo GitHub discussion, NVIDIA/NeMo#8455, "
    "reports inconsistencies in that table).",
    "Baseten blog (baseten.co/blog/faster-mixtral-inference-with-tensorrt-llm-and-"
    "quantization): Mixtral int8 on one A100, 127 ms TTFT and '81 perceived tokens per "
    "second' (512 in / 128 out); not used ('perceived' is not defined).",
)
"""Published numbers read but not used for validation, and why."""


# =================================================================================== measured CSV
@dataclass(frozen=True)
class MeasuredRow:
    """One row of a CSV written by :mod:`aimoe_lib.gpu_measure` (one batch size)."""

    gpu_name: str
    """GPU as torch names it ('cpu' for a dry run)."""
    model: str
    """Model name (a '-tiny' suffix for a dry run)."""
    batch: int
    """Sequences."""
    prompt_len: int
    """Prompt tokens per sequence."""
    decode_steps: int
    """Decode steps timed."""
    layers_run: int
    """Decoder layers built and timed."""
    layers_model: int
    """Decoder layers of the model (times are scaled to these)."""
    prefill_s_model: float
    """Prefill time of the whole model (scaled), s."""
    decode_step_s_model: float
    """Time of one decode step of the whole model (scaled), s."""
    distinct_experts_per_layer: float
    """Distinct experts observed per MoE layer and decode step (nan for dense models)."""
    avg_power_w: float
    """Average board power while timing, W (nan without NVML)."""
    dry_run: bool
    """True for the CPU dry run (numbers meaningless)."""
    mode: str = ""
    """'eager', 'cuda-graph' (one decode step replayed from a CUDA graph), 'fixed-step-cpu' (its
    CPU dry run), or '' for a CSV from before the column existed."""
    dtype: str = ""
    """Weight and activation dtype as torch names it ('bfloat16', ...); '' if not recorded."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        set_("gpu_name", checks.string("MeasuredRow", "gpu_name", self.gpu_name, empty=False))
        set_("mode", checks.string("MeasuredRow", "mode", self.mode))
        set_("dtype", checks.string("MeasuredRow", "dtype", self.dtype))
        set_("model", checks.string("MeasuredRow", "model", self.model, empty=False))
        for f in ("batch", "prompt_len", "decode_steps", "layers_run", "layers_model"):
            set_(f, checks.integer("MeasuredRow", f, getattr(self, f), minimum=1,
                                   maximum=checks.INT32_MAX))
        if self.layers_run > self.layers_model:
            raise ValueError(f"MeasuredRow.layers_run={self.layers_run}: more than "
                             f"layers_model={self.layers_model}; the harness times at most the "
                             "model's layers")
        for f in ("prefill_s_model", "decode_step_s_model"):
            set_(f, float(checks.real("MeasuredRow", f, getattr(self, f), minimum=0,
                                      strict=True, fix="pass the measured time in s (> 0)")))
        for f in ("distinct_experts_per_layer", "avg_power_w"):  # nan: not measured
            v = getattr(self, f)
            if not (isinstance(v, float | np.floating) and math.isnan(v)):
                v = checks.real("MeasuredRow", f, v, minimum=0,
                                fix="pass a number >= 0, or nan when it was not measured")
            set_(f, float(v))
        set_("dry_run", checks.boolean("MeasuredRow", "dry_run", self.dry_run))

    def roofline(self, gpu="h100", **kwargs) -> RooflineResult:
        """The roofline of the same workload (the decode steps at this row's contexts) on one GPU
        of preset ``gpu`` whether or not the model fits it (the harness times a few layers on one
        GPU and scales them); compare its ``time_per_output_token_s`` with
        ``decode_step_s_model``."""
        return roofline(self.model, gpu, batch=self.batch, prompt_len=self.prompt_len,
                        gen_len=self.decode_steps + 1, n_gpus=kwargs.pop("n_gpus", 1),
                        check_memory=kwargs.pop("check_memory", False), **kwargs)


def _float(v: str) -> float:
    return float(v) if v not in ("", None) else math.nan


def _bool(v: str) -> bool:
    if v not in ("True", "False"):
        raise ValueError(f"{v!r} is not True or False")
    return v == "True"


def load_measured(path) -> tuple[MeasuredRow, ...]:
    """Read a CSV written by ``python -m aimoe_lib.gpu_measure`` (see its ``COLUMNS``). A folder,
    a missing file or a file that is not such a CSV (a bad cell is named by its line and column)
    raises ValueError naming the path."""
    fix = "pass the CSV written by python -m aimoe_lib.gpu_measure --out PATH"
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise ValueError(f"load_measured(path={path!r}): must be a path (got "
                         f"{type(path).__name__}); {fix}")
    path = Path(path)
    if not path.is_file():
        why = "is a folder" if path.is_dir() else "does not exist"
        err = ValueError if path.is_dir() else checks.MissingPathError
        raise err(f"load_measured(path={str(path)!r}): {why}; {fix}")
    parse = {"gpu_name": str, "model": str, "batch": int, "prompt_len": int,
             "decode_steps": int, "layers_run": int, "layers_model": int,
             "prefill_s_model": _float, "decode_step_s_model": _float,
             "distinct_experts_per_layer": _float, "avg_power_w": _float, "dry_run": _bool}
    optional = ("mode", "dtype")  # text columns absent from CSVs of older harness versions
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(parse) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"path={str(path)!r}: not a gpu_measure CSV (missing "
                                 f"{', '.join(sorted(missing))}); write it with "
                                 "python -m aimoe_lib.gpu_measure")
            for r in reader:
                kw = {k: r[k] for k in optional if r.get(k) is not None}
                for col, conv in parse.items():
                    try:
                        kw[col] = conv(r[col])
                    except (ValueError, TypeError):
                        raise ValueError(f"load_measured(path={str(path)!r}): line "
                                         f"{reader.line_num}, column {col} holds {r[col]!r}, not "
                                         f"{'a number' if conv is not _bool else 'True/False'}"
                                         f"; {fix}") from None
                try:
                    rows.append(MeasuredRow(**kw))
                except ValueError as e:
                    raise ValueError(f"load_measured(path={str(path)!r}): line "
                                     f"{reader.line_num}: {e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"load_measured(path={str(path)!r}): not a text CSV ({e}); "
                         f"{fix}") from None
    return tuple(rows)


# =================================================================================== measured here
MEASURED_FILE = "gpu_h200.csv"
"""Shipped decode measurements of the harness on one H200 (``data/gpu_h200.csv``, written by
``bash tools/measure_gpu.sh``: Mixtral-8x7B, Llama-3-8B and Llama-2-70B layers, batch 1, 8, 64
and 256, bfloat16, eager and CUDA-graph decode, board power over a 3 s steady-state window)."""

STREAM_FILE = "gpu_h200_stream.csv"
"""Shipped weight-streaming bandwidth of one H200 (``data/gpu_h200_stream.csv``, the same run):
one (batch x 8192) @ (8192 x 28672) bfloat16 product per batch size, replayed from a CUDA graph."""


GEMM_FILE = "gpu_h200_gemm.csv"
"""Shipped matrix-product rates of one H200 (``data/gpu_h200_gemm.csv``, ``python -m
aimoe_lib.gpu_measure --gemm-rates``): bfloat16 and FP8 (e4m3, cuBLASLt through
``torch._scaled_mm``) products of Mixtral's expert shape for 16 to 16,384 tokens and of
8192-cubed, replayed from a CUDA graph."""


def harness_calibration() -> Calibration:
    """The calibration that predicts the harness's CUDA-graph decode: :data:`CALIBRATION` with
    gpt-fast's overhead (PyTorch kernels replayed from a CUDA graph, as gpt-fast runs them) and
    decode attention that reads each KV head once for its query group (the harness passes the
    query heads of a group as rows of one attention call,
    ``aimoe_lib.gpu_measure._attention``). Nothing is fitted to the harness's measurements."""
    return replace(CALIBRATION.for_framework("gpt-fast"), kv_reads_once=True)


def decode_power_w(result: RooflineResult, time_s: float | None = None,
                   power_model: PowerModel | None = None) -> float:
    """Board power of all GPUs during the decode steps of ``result``, W: :data:`POWER_MODEL` (or
    ``power_model``) at the HBM and tensor-core utilisation of one decode step's bytes and FLOPs
    over ``time_s`` (default the predicted time per output token), against the datasheet peaks.
    With the measured step time it predicts the power of a measured run from its traffic alone."""
    checks.instance("decode_power_w()", "result", result, RooflineResult,
                    fix="pass a gpu.roofline(...) result")
    pm = POWER_MODEL if power_model is None else checks.instance(
        "decode_power_w()", "power_model", power_model, PowerModel, fix="pass a gpu.PowerModel")
    t = result.time_per_output_token_s if time_s is None else checks.real(
        "decode_power_w()", "time_s", time_s, minimum=0, strict=True,
        fix="pass the time of one decode step in s (> 0)")
    g, n = get(result.gpu), result.n_gpus
    u_mem = result.decode_bytes / (n * g.hbm_bandwidth_gb_s * 1e9 * t)
    u_comp = result.decode_flops / (n * g.peak_tflops(result.compute) * 1e12 * t)
    return n * pm.power_w(g, u_mem, u_comp)


@dataclass(frozen=True)
class MeasuredCheck:
    """One measured harness row against the model: the calibrated roofline
    (:func:`harness_calibration`, fitted power model) and the bare one (no calibration)."""

    row: MeasuredRow
    """The measurement."""
    predicted: RooflineResult
    """Calibrated roofline of the same workload."""
    physics: RooflineResult
    """Roofline without calibration (weights, KV and FLOPs at the GPU's measured efficiencies)."""

    @property
    def measured_tpot_s(self) -> float:
        """Measured time of one decode step of the whole model, s."""
        return self.row.decode_step_s_model

    @property
    def tpot_error(self) -> float:
        """Calibrated prediction / measurement - 1."""
        return self.predicted.time_per_output_token_s / self.measured_tpot_s - 1

    @property
    def physics_error(self) -> float:
        """Bare roofline / measurement - 1."""
        return self.physics.time_per_output_token_s / self.measured_tpot_s - 1

    @property
    def power_at_measured_time_w(self) -> float:
        """The power model at the utilisation of the measured step time, W."""
        return decode_power_w(self.predicted, self.measured_tpot_s)

    @property
    def power_error(self) -> float:
        """Power model at the measured time / measured board power - 1."""
        return self.power_error_under()

    def power_error_under(self, power_model: PowerModel | None = None) -> float:
        """:attr:`power_error` with ``power_model`` (default :data:`POWER_MODEL`) in place of
        the book's power model."""
        return (decode_power_w(self.predicted, self.measured_tpot_s, power_model)
                / self.row.avg_power_w - 1)

    @property
    def measured_j_per_token(self) -> float:
        """Measured board power x step time / batch, J."""
        return self.row.avg_power_w * self.measured_tpot_s / self.row.batch

    @property
    def predicted_j_per_token(self) -> float:
        """Predicted decode power x predicted step time / batch, J."""
        p = self.predicted
        return decode_power_w(p) * p.time_per_output_token_s / p.batch

    @property
    def energy_error(self) -> float:
        """Predicted / measured energy per token - 1."""
        return self.predicted_j_per_token / self.measured_j_per_token - 1


def _precision_of(dtype: str) -> str:
    if dtype in ("bfloat16", "float16", ""):
        return "bf16"  # 2-byte weights on the 16-bit tensor cores (same rate for fp16)
    raise ValueError(f"MeasuredRow.dtype={dtype!r}: no weight format of the roofline matches; "
                     "measure in bfloat16 or float16")


def measured_validation(rows=None, gpu: str = "h200", modes=("cuda-graph",)
                        ) -> tuple[MeasuredCheck, ...]:
    """Each row of ``rows`` (default: the shipped :data:`MEASURED_FILE`) whose mode is in
    ``modes``, with its calibrated and bare rooflines on one GPU of preset ``gpu``. Rows of a CPU
    dry run are refused (their numbers are meaningless)."""
    if rows is None:
        rows = load_measured(shipped.data_path(MEASURED_FILE))
    rows = checks.items("measured_validation()", "rows", rows,
                        fix="pass gpu.load_measured(path) rows")
    modes = checks.items("measured_validation()", "modes", modes,
                         fix="pass a tuple of modes, e.g. ('cuda-graph',)")
    cal = harness_calibration()
    out = []
    for r in rows:
        checks.instance("measured_validation()", "rows", r, MeasuredRow,
                        fix="pass gpu.load_measured(path) rows")
        if r.dry_run:
            raise ValueError(f"measured_validation(): the row of {r.model} at batch {r.batch} is "
                             "a CPU dry run, whose numbers are meaningless; pass a GPU "
                             "measurement")
        if r.mode not in modes:
            continue
        prec = _precision_of(r.dtype)
        out.append(MeasuredCheck(r, r.roofline(gpu, precision=prec, calibrated=cal),
                                 r.roofline(gpu, precision=prec)))
    return tuple(out)


def format_measured_validation(checks_=None) -> str:
    """A table of :func:`measured_validation` (default: the shipped CUDA-graph rows): measured
    and predicted time per output token, the bare roofline, power and energy per token."""
    checks_ = measured_validation() if checks_ is None else checks_
    head = (f"{'model':13s} {'batch':>5s} {'TPOT ms':>8s} {'model':>7s} {'err':>6s} "
            f"{'bare':>6s} {'err':>6s} | {'power W':>7s} {'model':>5s} {'err':>6s} | "
            f"{'mJ/token':>8s} {'model':>8s} {'err':>6s}")
    lines = [head, "-" * len(head)]
    for c in checks_:
        r = c.row
        lines.append(
            f"{r.model:13s} {r.batch:5d} {c.measured_tpot_s * 1e3:8.2f} "
            f"{c.predicted.time_per_output_token_s * 1e3:7.2f} {c.tpot_error:+6.0%} "
            f"{c.physics.time_per_output_token_s * 1e3:6.2f} {c.physics_error:+6.0%} | "
            f"{r.avg_power_w:7.0f} {c.power_at_measured_time_w:5.0f} {c.power_error:+6.0%} | "
            f"{c.measured_j_per_token * 1e3:8.1f} {c.predicted_j_per_token * 1e3:8.1f} "
            f"{c.energy_error:+6.0%}")
    return "\n".join(lines)


def _load_rate_csv(fn: str, path, ints, floats, strs, what: str) -> tuple[dict, ...]:
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise ValueError(f"{fn}(path={path!r}): must be a path to the CSV of {what}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{fn}(path={str(path)!r}): not a file; pass the CSV of {what}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(ints + floats + strs) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{fn}(path={str(path)!r}): not a CSV of {what} (missing "
                             f"{', '.join(sorted(missing))})")
        try:
            return tuple({**{k: r[k] for k in strs}, **{k: int(r[k]) for k in ints},
                          **{k: float(r[k]) for k in floats}} for r in reader)
        except ValueError as e:
            raise ValueError(f"{fn}(path={str(path)!r}): line {reader.line_num}: {e}") from None


def load_gemm_rates(path=None) -> tuple[dict, ...]:
    """Rows of a ``--gemm-rates`` CSV (default: the shipped :data:`GEMM_FILE`) as dicts with
    ``format`` and ``gpu_name`` (str), ``m``, ``k``, ``n`` (int), ``time_s``, ``tflop_per_s``
    and ``tb_per_s`` (float). A file without those columns raises ValueError naming it."""
    return _load_rate_csv("load_gemm_rates", shipped.data_path(GEMM_FILE) if path is None
                          else path, ("m", "k", "n"), ("time_s", "tflop_per_s", "tb_per_s"),
                          ("gpu_name", "format"),
                          "python -m aimoe_lib.gpu_measure --gemm-rates")


def format_gemm_rates(rows=None, gpu: str = "h200") -> str:
    """A table of :func:`load_gemm_rates` rows (default the shipped run): each product's FLOP
    rate against the tensor-core peak of its format and the rate the model assumes for it
    (peak x the preset's ``flop_efficiency``), and its bytes per second against the model's
    bandwidth (datasheet x ``bw_efficiency``)."""
    rows = load_gemm_rates() if rows is None else rows
    g = get(gpu)
    head = (f"{'format':13s} {'m':>6s} {'k':>5s} {'n':>6s} {'TFLOP/s':>8s} {'of peak':>7s} "
            f"{'of model':>8s} {'TB/s':>5s} {'of model':>8s}")
    lines = [head, "-" * len(head)]
    bw = g.hbm_bandwidth_gb_s * g.bw_efficiency / 1e3
    for r in rows:
        peak = g.peak_tflops("fp8" if r["format"].startswith("float8") else "bf16")
        lines.append(f"{r['format']:13s} {r['m']:6d} {r['k']:5d} {r['n']:6d} "
                     f"{r['tflop_per_s']:8.0f} {r['tflop_per_s'] / peak:7.0%} "
                     f"{r['tflop_per_s'] / (peak * g.flop_efficiency):8.0%} "
                     f"{r['tb_per_s']:5.2f} {r['tb_per_s'] / bw:8.0%}")
    return "\n".join(lines)


def load_weight_stream(path=None) -> tuple[dict, ...]:
    """Rows of a ``--weight-stream`` CSV (default: the shipped :data:`STREAM_FILE`) as dicts
    with ``batch``, ``d_in``, ``d_out`` (int), ``time_s``, ``tb_per_s``, ``tflop_per_s``
    (float) and ``gpu_name``. A file without those columns raises ValueError naming it."""
    return _load_rate_csv("load_weight_stream", shipped.data_path(STREAM_FILE) if path is None
                          else path, ("batch", "d_in", "d_out"),
                          ("time_s", "tb_per_s", "tflop_per_s"), ("gpu_name",),
                          "python -m aimoe_lib.gpu_measure --weight-stream")


# =================================================================================== calibration
@dataclass(frozen=True)
class Calibration:
    """Corrections of the roofline fitted to published measurements
    (:func:`~aimoe_lib.gpu.fit_calibration` on the ``fit`` rows of ``data/gpu_published.json``).

    A forward pass takes, for its weight GEMMs and its attention one after the other
    (A-GPU-KERNELS), max(bytes / bandwidth, FLOPs / (peak x flop_efficiency x s(T))), plus
    all-reduces (latency x ``allreduce_scale``) + :meth:`pass_overhead_s` (+ ``per_seq_s`` per
    sequence in a decode step), where s(T) = T / (T + ``flop_half_tokens``) for a pass of T tokens:
    matrix products of few rows use the tensor cores poorly, and every pass pays kernel launches,
    sampling and scheduling that the roofline does not see. KV-cache reads run at
    ``kv_efficiency`` of the bandwidth and, for a grouped-query model in a framework of
    :data:`KV_READS_PER_QUERY_HEAD`, read each KV head once per query head. Weight reads run at
    ``int8_weight_efficiency`` of the bandwidth for int8 weights in a framework of
    :data:`WEIGHT_ONLY_INT8`, and routed-expert reads at ``gathered_expert_efficiency`` in a
    framework of :data:`GATHERED_EXPERTS` (both for gathered int8 experts).
    """

    overheads_s: dict
    """Fixed time of every forward pass (decode step or prefill) per serving framework
    (:data:`FRAMEWORKS`), s; per layer of the model if :attr:`overhead_per_layer`."""
    flop_half_tokens: float
    """Tokens per pass at which the tensor cores reach half their GEMM efficiency."""
    per_seq_s: float = 0.0
    """Time per sequence in a decode step beyond the roofline (sampling, KV-page bookkeeping), s;
    fitted for all frameworks together."""
    kv_efficiency: float = 1.0
    """Achieved bandwidth of KV-cache reads relative to weight reads (paged, gathered attention
    reads reach less of the HBM bandwidth than streaming weights)."""
    framework: str = "nim"
    """Framework whose overhead :attr:`overhead_s` returns (default NVIDIA NIM: TensorRT-LLM
    engines with in-flight batching, FP8, as Mixtral and Llama are served in production)."""
    allreduce_scale: float = 1.0
    """Small-message all-reduce latency relative to the nccl-tests figure of the GPU preset
    (:attr:`GPUSpec.allreduce_latency_us`): inside a captured CUDA graph or a fused engine an
    all-reduce does not pay the host launch that nccl-tests times."""
    overhead_per_layer: bool = False
    """If True, :attr:`overheads_s` are times per *layer* and a pass pays them once per layer of
    the model (kernel launches and their tails grow with the layers); if False, once per pass."""
    int8_weight_efficiency: float = 1.0
    """Achieved bandwidth of int8 weight reads relative to BF16 weight reads in a framework that
    converts int8 weights to BF16 inside its matrix-vector kernels (:data:`WEIGHT_ONLY_INT8`)."""
    gathered_expert_efficiency: float = 1.0
    """Achieved bandwidth of routed-expert weight reads relative to dense weight reads in a
    framework that indexes the selected experts' weights out of a stacked tensor before its
    products (:data:`GATHERED_EXPERTS`)."""
    kv_reads_once: bool | None = None
    """Override of :data:`KV_READS_PER_QUERY_HEAD` for a run whose attention kernel is known:
    True if decode attention reads each KV head once for its whole query group (XQA-style
    kernels), False if once per query head, None (default) for the framework's usual kernel."""

    def __post_init__(self) -> None:
        ov = self.overheads_s
        if not isinstance(ov, dict) or set(ov) != set(FRAMEWORKS):
            raise ValueError(f"Calibration.overheads_s={ov!r}: must map every framework of "
                             f"{FRAMEWORKS} to a time in s")
        object.__setattr__(self, "overheads_s", {k: checks.real(
            "Calibration", f"overheads_s[{k!r}]", v, minimum=0, maximum=1.0,
            fix="pass a time per forward pass (or per layer) in s, e.g. 0.002 or 5e-5")
            for k, v in ov.items()})
        object.__setattr__(self, "per_seq_s", checks.real(
            "Calibration", "per_seq_s", self.per_seq_s, minimum=0, maximum=0.01,
            fix="pass a time per sequence and step in s, e.g. 2e-5"))
        object.__setattr__(self, "kv_efficiency", checks.real(
            "Calibration", "kv_efficiency", self.kv_efficiency, minimum=0, strict=True,
            maximum=1.0, fix="pass a fraction in (0, 1]"))
        checks.choice("Calibration", "framework", self.framework, FRAMEWORKS, what="framework")
        object.__setattr__(self, "flop_half_tokens", checks.real(
            "Calibration", "flop_half_tokens", self.flop_half_tokens, minimum=0, maximum=1e9,
            fix="pass a token count >= 0 (0: no small-pass penalty)"))
        object.__setattr__(self, "allreduce_scale", checks.real(
            "Calibration", "allreduce_scale", self.allreduce_scale, minimum=0, maximum=10,
            fix="pass a factor >= 0 on the measured all-reduce latency, e.g. 0.5"))
        object.__setattr__(self, "overhead_per_layer", checks.boolean(
            "Calibration", "overhead_per_layer", self.overhead_per_layer))
        for f in ("int8_weight_efficiency", "gathered_expert_efficiency"):
            object.__setattr__(self, f, checks.real(
                "Calibration", f, getattr(self, f), minimum=0, strict=True, maximum=1.0,
                fix="pass a fraction in (0, 1] (1: no penalty)"))
        if self.kv_reads_once is not None:
            object.__setattr__(self, "kv_reads_once", checks.boolean(
                "Calibration", "kv_reads_once", self.kv_reads_once))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.overheads_s.items())), self.flop_half_tokens,
                     self.per_seq_s, self.kv_efficiency, self.framework, self.allreduce_scale,
                     self.overhead_per_layer, self.int8_weight_efficiency,
                     self.gathered_expert_efficiency, self.kv_reads_once))

    @property
    def overhead_s(self) -> float:
        """Overhead of :attr:`framework`, s (per layer if :attr:`overhead_per_layer`)."""
        return self.overheads_s[self.framework]

    def pass_overhead_s(self, n_layers: int) -> float:
        """Overhead of one forward pass of a model of ``n_layers`` layers, s."""
        return self.overhead_s * (n_layers if self.overhead_per_layer else 1)

    def for_framework(self, framework: str) -> Calibration:
        """The same calibration with the overhead of ``framework``."""
        framework = checks.choice("Calibration.for_framework()", "framework", framework,
                                  FRAMEWORKS, what="framework",
                                  fix=f"choose one of {', '.join(FRAMEWORKS)}")
        return replace(self, framework=framework)

    @property
    def kv_reads_per_query_head(self) -> bool:
        """Whether :attr:`framework`'s decode attention reads a grouped-query model's keys and
        values once per *query* head (:data:`KV_READS_PER_QUERY_HEAD`, unless
        :attr:`kv_reads_once` says otherwise)."""
        if self.kv_reads_once is not None:
            return not self.kv_reads_once
        return KV_READS_PER_QUERY_HEAD[self.framework]

    def weight_read_factor(self, expert: bool, int8: bool) -> float:
        """Time of a weight read relative to its bytes at the achieved bandwidth: 1 /
        (:attr:`int8_weight_efficiency` if ``int8`` weights in a :data:`WEIGHT_ONLY_INT8`
        framework) / (:attr:`gathered_expert_efficiency` if ``expert`` weights in a
        :data:`GATHERED_EXPERTS` framework)."""
        f = 1.0
        if int8 and WEIGHT_ONLY_INT8[self.framework]:
            f /= self.int8_weight_efficiency
        if expert and GATHERED_EXPERTS[self.framework]:
            f /= self.gathered_expert_efficiency
        return f

    def flop_scale(self, tokens: float) -> float:
        """s(T): the fraction of the GEMM efficiency a pass of ``tokens`` tokens reaches."""
        return tokens / (tokens + self.flop_half_tokens) if tokens > 0 else 1.0


@dataclass(frozen=True)
class PowerModel:
    """Board power of one GPU: ``idle_w`` + TDP x (``mem_fraction`` x u_mem + ``comp_fraction``
    x u_comp), at most TDP, where u_mem and u_comp are the run's HBM traffic and tensor-core work
    over the datasheet peaks times the run time. Fitted by :func:`~aimoe_lib.gpu.fit_power_model`
    to published energy measurements; ``idle_w`` is a published idle reading."""

    idle_w: float
    """Power of an idle GPU, W."""
    mem_fraction: float
    """Share of TDP drawn at full datasheet HBM bandwidth (beyond idle)."""
    comp_fraction: float
    """Share of TDP drawn at the full datasheet tensor-core rate (beyond idle)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "idle_w", checks.real(
            "PowerModel", "idle_w", self.idle_w, minimum=0, maximum=2000,
            fix="pass the idle board power in W"))
        for f in ("mem_fraction", "comp_fraction"):
            object.__setattr__(self, f, checks.real(
                "PowerModel", f, getattr(self, f), minimum=0, maximum=10,
                fix="pass a share of TDP >= 0"))

    def power_w(self, g: GPUSpec, u_mem: float, u_comp: float) -> float:
        """Average power of one GPU of preset ``g`` at utilisations ``u_mem``, ``u_comp``, W
        (capped at its TDP)."""
        return min(g.tdp_w, self.idle_w + g.tdp_w * (self.mem_fraction * u_mem
                                                       + self.comp_fraction * u_comp))


FRAMEWORKS = ("gpt-fast", "tensorrt-llm", "nim", "vllm")
"""Serving frameworks of the published measurements; each gets its own fitted overhead.
'tensorrt-llm' is the v0.6.1 release of the published tables; 'nim' the later TensorRT-LLM
engines inside NVIDIA NIM 1.8."""

KV_READS_PER_QUERY_HEAD = {
    # gpt-fast model.py (commit 056f8fb4, Attention.forward): k.repeat_interleave(n_head //
    # n_local_heads, dim=1) copies each key/value head once per query head before attention.
    "gpt-fast": True,
    # TensorRT-LLM v0.6.1 decodes with the masked multi-head attention kernel, one thread block
    # per (sequence, query head), each loading its group's keys and values; the XQA kernels that
    # share one load among a group's query heads came later (release notes of v0.10.0,
    # github.com/NVIDIA/TensorRT-LLM/releases/tag/v0.10.0: "Integrated the new NVIDIA Hopper XQA
    # kernels for LLaMA 2 70B model").
    "tensorrt-llm": True,
    # NIM 1.8 (TensorRT-LLM with XQA) and vLLM's paged attention read each KV head once.
    "nim": False,
    "vllm": False,
}
"""Frameworks whose decode attention reads a grouped-query model's KV cache once per query head
(n_heads / n_kv_heads times its size; assumption A-GPU-GQA-READS)."""

WEIGHT_ONLY_INT8 = {
    # gpt-fast quantize.py (commit c9f683e, WeightOnlyInt8Linear.forward): F.linear(input,
    # self.weight.to(dtype=input.dtype)) * self.scales -- int8 weights converted to BF16 in the
    # compiled matrix-vector kernel; mixtral-moe/quantize.py (056f8fb4,
    # ConditionalFeedForwardBit8) does the same for the gathered experts. Its README publishes
    # the achieved bandwidth: Llama-2-7B 1,397 GB/s in BF16, 1,069 GB/s in int8.
    "gpt-fast": True,
    # No int8 measurements of the other frameworks in data/gpu_published.json: their int8 is
    # modelled as W8A8 on the INT8 tensor cores at the full weight bandwidth.
    "tensorrt-llm": False,
    "nim": False,
    "vllm": False,
}
"""Frameworks whose int8 weights are converted to BF16 inside the matrix-vector kernels and read
at :attr:`Calibration.int8_weight_efficiency` of the BF16 bandwidth (A-GPU-INT8-KERNELS)."""

GATHERED_EXPERTS = {
    # gpt-fast mixtral-moe/model.py (commit 056f8fb4, ConditionalFeedForward.forward):
    # w1_weights = self.w1[expert_indices] ... torch.einsum('ti,taio -> tao', x, w1_weights):
    # the selected experts are indexed out of one stacked tensor per matrix, then multiplied.
    "gpt-fast": True,
    # vLLM (fused_moe Triton kernel) and TensorRT-LLM / NIM (MoE plugin) read each selected
    # expert's weights in place inside one fused kernel.
    "tensorrt-llm": False,
    "nim": False,
    "vllm": False,
}
"""Frameworks that gather the selected experts' weights before their products; their expert
reads run at :attr:`Calibration.gathered_expert_efficiency` of the dense bandwidth
(A-GPU-EXPERT-GATHER)."""

VLLM_053_GPU_BUSY = 0.38
"""Share of wall time the GPU computes in vLLM 0.5.3 serving Llama-3-8B on one H100: "Only 38% of
the total execution time was spent on the actual GPU execution" (the HTTP API server 33 %,
scheduling 29 %); vLLM blog, "vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction",
2024-09-05, blog.vllm.ai/2024/09/05/perf-update.html. Used for published rows run on vLLM 0.5
(``gpu_busy_fraction`` of a :class:`PublishedPoint`)."""

PUBLISHED_FILE = "gpu_published.json"
"""Shipped file of published measurements (``data/gpu_published.json``)."""
METRICS = ("tpot_s", "tokens_per_s", "latency_s", "j_per_token")
"""Metrics of a :class:`PublishedPoint`."""
ROLES = ("fit", "heldout", "excluded")
"""Roles of a :class:`PublishedPoint`."""

_MISTRAL7B = ("Mistral-7B: the Llama-2-7B shapes with 8 KV heads, FFN width 14,336 "
              "(mistralai/Mistral-7B-v0.1 config.json: num_key_value_heads 8, intermediate_size "
              "14336, vocab 32000, 32 layers, hidden 4096)")

_QWEN3_235B = ("Qwen3-235B-A22B: the Qwen3-30B-A3B layer with hidden size 4,096, 94 layers, 64 "
               "query and 4 KV heads of 128, 128 experts of 1,536, top-8 (Qwen/Qwen3-235B-A22B "
               "config.json; model card: '235B in total and 22B activated', 234B non-embedding)")


@lru_cache(maxsize=None)
def _published_model(name: str) -> ModelSpec:  # cached: one spec (and its matrices) per name
    if name == "llama-3.3-70b":
        return zoo.get("llama-2-70b").replace(name="llama-3.3-70b", vocab_size=128256,
                                              source=_LLAMA33_CONFIG)
    if name == "qwen3-235b-a22b":
        return zoo.get("qwen3-30b-a3b").replace(name="qwen3-235b-a22b", d_model=4096,
                                                n_layers=94, n_heads=64, n_kv_heads=4,
                                                d_ff=12288, d_expert=1536, source=_QWEN3_235B)
    if name == "mistral-7b":
        return zoo.get("llama-2-7b").replace(name="mistral-7b", n_kv_heads=8, d_ff=14336,
                                             source=_MISTRAL7B)
    return zoo.get(name)


@dataclass(frozen=True)
class PublishedPoint:
    """One row of ``data/gpu_published.json``: a published decode or energy measurement with its
    setup."""

    id: str
    """Short unique name."""
    source: dict
    """title, authors, year, url, setup of the publication."""
    where: str
    """Table/figure/sentence the number is read from."""
    model: str
    """Zoo model name, or 'llama-3.3-70b' / 'mistral-7b' (built from zoo shapes)."""
    gpu: str
    """GPU preset."""
    n_gpus: int
    """GPUs (tensor parallel)."""
    precision: str
    """Weight format (:data:`PRECISIONS`)."""
    kv_bytes: float
    """Bytes per cached key/value element."""
    batch: int
    """Sequences served together (concurrency for continuous serving)."""
    prompt_len: int
    """Prompt tokens per sequence."""
    gen_len: int
    """Generated tokens per sequence."""
    serving: str
    """'static' or 'continuous'."""
    framework: str
    """Serving framework (:data:`FRAMEWORKS`)."""
    metric: str
    """'tpot_s', 'tokens_per_s', 'latency_s' (prefill + all decode steps) or 'j_per_token'."""
    published: str
    """The number as published."""
    value: float
    """The number in SI units (s, tokens/s or J)."""
    role: str
    """'fit', 'heldout' or 'excluded'."""
    note: str = ""
    """Assumptions of the row, or why it is excluded."""
    round: int = 1
    """Validation round the row was added in (rows of later rounds were added as held-out before
    the revised model was run on them)."""
    gpu_busy_fraction: float = 1.0
    """Share of wall time the GPUs compute (< 1 for a host-bound serving engine, with its source
    in ``note``); :func:`roofline`'s ``gpu_busy_fraction``."""
    kv_reads_once: bool | None = None
    """:attr:`Calibration.kv_reads_once` for this run, where the source states its attention
    kernel (with the statement in ``note``); None: the framework's usual kernel."""
    source_key: str = ""
    """Key of :attr:`source` in the data file's ``sources`` table."""

    def spec(self) -> ModelSpec:
        """The measured model."""
        return _published_model(self.model)

    def roofline(self, calibrated=True, power_model="fitted") -> RooflineResult:
        """The roofline of this setup with the overhead of its framework (memory not checked:
        the published run fitted)."""
        if calibrated is True:
            calibrated = CALIBRATION
        if isinstance(calibrated, Calibration):
            calibrated = calibrated.for_framework(self.framework)
            if self.kv_reads_once is not None:
                calibrated = replace(calibrated, kv_reads_once=self.kv_reads_once)
        return roofline(self.spec(), self.gpu, batch=self.batch, prompt_len=self.prompt_len,
                        gen_len=self.gen_len, n_gpus=self.n_gpus, kv_bytes=self.kv_bytes,
                        precision=self.precision, serving=self.serving, calibrated=calibrated,
                        power_model=power_model, check_memory=False,
                        gpu_busy_fraction=self.gpu_busy_fraction)

    def predict(self, calibrated=True, power_model="fitted") -> float:
        """The model's value of ``metric``."""
        r = self.roofline(calibrated, power_model)
        return {"tpot_s": r.time_per_output_token_s, "tokens_per_s": r.tokens_per_s,
                "latency_s": r.total_time_s, "j_per_token": r.energy_per_token_j}[self.metric]


def published_sources() -> dict:
    """The ``sources`` table of ``data/gpu_published.json`` (key -> title, authors, year, url,
    setup)."""
    return _load_published()["sources"]


@lru_cache(maxsize=1)
def _load_published() -> dict:
    import json

    from . import shipped
    return json.loads(shipped.data_path(PUBLISHED_FILE).read_text(encoding="utf-8"))


def published_points(kind: str = "decode", roles=ROLES) -> tuple[PublishedPoint, ...]:
    """Rows of ``data/gpu_published.json`` of ``kind`` ('decode' or 'energy') whose role is in
    ``roles``."""
    kind = checks.choice("published_points()", "kind", kind, ("decode", "energy"),
                         what="kind", fix="use 'decode' or 'energy'")
    roles = checks.items("published_points()", "roles", roles, fix=f"pass roles of {ROLES}")
    for r in roles:
        checks.choice("published_points()", "roles", r, ROLES, what="role")
    data = _load_published()
    out = []
    for row in data[kind]:
        if row["role"] not in roles:
            continue
        kw = {k: row[k] for k in ("id", "where", "model", "gpu", "n_gpus", "precision",
                                  "kv_bytes", "batch", "prompt_len", "gen_len", "serving",
                                  "framework", "metric", "published", "value", "role")}
        out.append(PublishedPoint(source=data["sources"][row["source"]],
                                  source_key=row["source"],
                                  note=row.get("note", ""),
                                  gpu_busy_fraction=row.get("gpu_busy_fraction", 1.0),
                                  kv_reads_once=row.get("kv_reads_once"),
                                  round=row.get("round", 1), **kw))
    return tuple(out)


@dataclass(frozen=True)
class PublishedRow:
    """A published point next to the model's prediction."""

    point: PublishedPoint
    """The measurement."""
    predicted: float
    """The model's value of the metric (SI units)."""

    @property
    def error(self) -> float:
        """Error of the modelled *time or energy* relative to the measured one: for
        ``tokens_per_s`` measured / predicted - 1, otherwise predicted / measured - 1 (negative:
        the model is faster or more frugal than measured)."""
        if self.point.metric == "tokens_per_s":
            return self.point.value / self.predicted - 1.0
        return self.predicted / self.point.value - 1.0


def published_validation(kind: str = "decode", calibrated=True, power_model="fitted",
                         roles=ROLES) -> tuple[PublishedRow, ...]:
    """Every published point of ``kind`` next to the model's prediction."""
    return tuple(PublishedRow(p, p.predict(calibrated, power_model))
                 for p in published_points(kind, roles))


def _fmt_value(metric: str, v: float) -> str:
    if metric in ("tpot_s", "latency_s"):
        return f"{v * 1e3:,.2f} ms"
    if metric == "tokens_per_s":
        return f"{v:,.0f} tok/s"
    return f"{v:.3g} J"


def format_published_validation(rows) -> str:
    """A plain-text table: setup, metric, role, validation round, measured, model, error."""
    rows = checks.items("format_published_validation()", "rows", rows,
                        fix="pass the rows of gpu.published_validation()")
    w = max([len("measurement")] + [len(r.point.id) for r in rows
                                     if isinstance(r, PublishedRow)])
    head = (f"{'measurement':{w}} {'GPU':>8} {'prec':>4} {'batch':>5} {'metric':>12} {'role':>8} "
            f"{'rnd':>3} "
            f"{'measured':>13} {'model':>13} {'error':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        checks.instance("format_published_validation()", "rows", r, PublishedRow)
        p = r.point
        lines.append(f"{p.id:{w}} {str(p.n_gpus) + 'x' + p.gpu:>8} {p.precision:>4} "
                     f"{p.batch:5d} {p.metric:>12} {p.role:>8} {p.round:3d} "
                     f"{_fmt_value(p.metric, p.value):>13} "
                     f"{_fmt_value(p.metric, r.predicted):>13} {r.error:+7.1%}")
    return "\n".join(lines)


def _time_like(p: PublishedPoint, cal: Calibration) -> float:
    """The prediction of ``p`` as a time (1 / tokens/s for throughput rows)."""
    v = p.predict(cal, "tdp")
    return 1.0 / v if p.metric == "tokens_per_s" else v


def _relevant(p: PublishedPoint, cal: Calibration) -> tuple:
    """The constants of ``cal`` that ``p``'s prediction depends on: all-reduces only on more than
    one GPU, the int8 and gathered-expert efficiencies only for int8 weights or routed experts in
    a framework that reads them so, the overhead of ``p``'s framework only."""
    fw = p.framework
    moe = _param_split(p.spec())[2] > 0
    return (cal.overheads_s[fw], cal.flop_half_tokens, cal.per_seq_s, cal.kv_efficiency,
            cal.overhead_per_layer, cal.allreduce_scale if p.n_gpus > 1 else None,
            cal.int8_weight_efficiency if p.precision == "int8" and WEIGHT_ONLY_INT8[fw]
            else None,
            cal.gathered_expert_efficiency if moe and GATHERED_EXPERTS[fw] else None)


def _fw_overhead_fit(fp, cal: Calibration, ohs: np.ndarray, delta: float, memo: dict
                     ) -> tuple[float, float]:
    """(best loss, best overhead) of framework rows ``fp`` under ``cal`` over the overhead grid
    ``ohs``: a row's time is affine in its framework's overhead (added outside every max() of the
    roofline), so two evaluations per row give every grid point exactly. ``memo`` keeps each
    row's prediction per :func:`_relevant` constants, so a grid step that changes none of them
    costs nothing."""
    def time_like(p, oh):
        c = replace(cal, overheads_s={f: oh for f in FRAMEWORKS})
        key = (id(p), _relevant(p, c))  # the object: points passed in may share an id string
        if key not in memo:
            memo[key] = _time_like(p, c)
        return memo[key]

    q0 = np.array([time_like(p, 0.0) for p in fp])
    q1 = np.array([time_like(p, delta) for p in fp])
    qv = np.array([1.0 / p.value if p.metric == "tokens_per_s" else p.value for p in fp])
    q = q0[None, :] + (q1 - q0)[None, :] / delta * ohs[:, None]
    losses = (np.log(q / qv[None, :]) ** 2).sum(axis=1)
    k = int(np.argmin(losses))
    return float(losses[k]), float(ohs[k])


def fit_calibration(kv_efficiencies=None, half_tokens=None, per_seq_s=None,
                    overheads_s=None, allreduce_scales=None,
                    overhead_per_layer: bool = True, int8_efficiencies=None,
                    expert_efficiencies=None, points=None) -> Calibration:
    """The :class:`Calibration` minimising the squared log error of the time predictions over
    ``points`` (default: the ``fit`` rows of ``data/gpu_published.json``).

    Grids: ``kv_efficiencies`` (default 0.6 to 1 in steps of 0.1) x ``half_tokens`` (0, 128) x
    ``per_seq_s`` (0, 5, 10, 15, 20, 30 µs) x ``allreduce_scales`` (0, 0.1, 0.25, 0.5, 0.75, 1)
    x, per framework independently, ``overheads_s`` (with ``overhead_per_layer``, the default,
    0 to 200 µs in 2 µs steps per layer; otherwise 0 to 10 ms in 0.2 ms steps per pass);
    ``int8_efficiencies`` and ``expert_efficiencies`` (0.3 to 1 in steps of 0.05) for the
    frameworks of :data:`WEIGHT_ONLY_INT8` and :data:`GATHERED_EXPERTS`.

    A row's predicted time is affine in its framework's overhead, so the overhead grid is
    searched in closed form (equal to an exhaustive search). The two kernel efficiencies concern
    few rows, so the search alternates: the shared grid at fixed efficiencies, then the
    efficiencies (with their frameworks' overheads) at fixed shared constants, starting from
    1.0 and until neither step changes the result (at most 10 rounds). A row is predicted again
    only when a constant it depends on changes (``_relevant``): 16 s for the shipped fit.
    """
    pts = published_points("decode", ("fit",)) if points is None else tuple(points)
    kvs = (0.6, 0.7, 0.8, 0.9, 1.0) if kv_efficiencies is None else kv_efficiencies
    hts = (0.0, 128.0) if half_tokens is None else half_tokens
    pss = (0.0, 5e-6, 10e-6, 15e-6, 20e-6, 30e-6) if per_seq_s is None else per_seq_s
    ars = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0) if allreduce_scales is None else allreduce_scales
    effs = tuple(np.round(np.arange(0.3, 1.001, 0.05), 2))
    i8s = effs if int8_efficiencies is None else int8_efficiencies
    ges = effs if expert_efficiencies is None else expert_efficiencies
    per_layer = checks.boolean("fit_calibration()", "overhead_per_layer", overhead_per_layer)
    if overheads_s is None:
        overheads_s = (np.round(np.arange(0, 200.01e-6, 2e-6), 9) if per_layer
                       else np.round(np.arange(0, 10.01e-3, 2e-4), 6))
    ohs = np.asarray(overheads_s, dtype=float)
    delta = float(ohs.max()) if ohs.max() > 0 else 1e-3
    by_fw = {fw: [p for p in pts if p.framework == fw] for fw in FRAMEWORKS}
    uses_eff = {fw for fw in FRAMEWORKS if WEIGHT_ONLY_INT8[fw] or GATHERED_EXPERTS[fw]}
    memo: dict = {}

    def search(cal0: Calibration, grid, fws) -> tuple[float, Calibration]:
        """Best (loss over the rows of ``fws``, calibration) over ``grid`` (dicts of fields),
        each framework's overhead in closed form."""
        best = None
        for fields in grid:
            cal = replace(cal0, **fields)
            total, chosen = 0.0, dict(cal0.overheads_s)
            for fw in fws:
                if by_fw[fw]:
                    loss, chosen[fw] = _fw_overhead_fit(by_fw[fw], replace(cal, framework=fw),
                                                        ohs, delta, memo)
                    total += loss
            if best is None or total < best[0] - 1e-12:
                best = (total, replace(cal, overheads_s=chosen))
        return best

    shared = [dict(kv_efficiency=float(kv), flop_half_tokens=float(ht), per_seq_s=float(ps),
                   allreduce_scale=float(ar))
              for kv in kvs for ht in hts for ps in pss for ar in ars]
    eff_grid = [dict(int8_weight_efficiency=float(i), gathered_expert_efficiency=float(g))
                for i in i8s for g in ges]
    cal = Calibration({f: 0.0 for f in FRAMEWORKS}, 0.0, overhead_per_layer=per_layer)
    for _ in range(10):
        _, new = search(cal, shared, FRAMEWORKS)
        _, new = search(new, eff_grid, sorted(uses_eff))
        if new == cal:
            break
        cal = new
    return replace(cal, framework="nim")


POWER_FIT_GRID = {"mem_fraction": (0.0, 1.5, 0.02), "comp_fraction": (0.0, 3.0, 0.02)}
"""(lowest, highest, step) of each share on :func:`fit_power_model`'s default grid; a fitted
share at either end says the data want a value beyond it (assumption A-GPU-POWER)."""


def fit_power_model(mem_fractions=None, comp_fractions=None,
                    idle_w: float | None = None, points=None) -> PowerModel:
    """The :class:`PowerModel` minimising the squared log error of energy per token over the
    ``fit`` rows of the energy table (with :data:`CALIBRATION` times), on a grid of
    ``mem_fractions`` (default 0 to 1.5) x ``comp_fractions`` (default 0 to 3), both in steps of
    0.02; ``idle_w`` defaults to the published idle reading of the file. Power is affine in the
    two shares below the TDP cap, so each row's roofline is run once (its
    :attr:`~RooflineResult.hbm_utilisation` and :attr:`~RooflineResult.tensor_utilisation`) and
    the grid is evaluated in closed form. ``points`` replaces the fit rows (energy rows of
    :func:`published_points`, e.g. with another reading of an unpublished setup)."""
    if points is None:
        pts = published_points("energy", ("fit",))
    else:
        pts = checks.items("fit_power_model()", "points", points,
                           fix="pass energy rows of gpu.published_points('energy')")
        for q in pts:
            checks.instance("fit_power_model()", "points", q, PublishedPoint)
            if q.metric != "j_per_token":
                raise ValueError(f"fit_power_model(): points holds {q.id!r}, a "
                                 f"{q.metric!r} row; the power model fits energy rows only "
                                 "(metric 'j_per_token')")
    if idle_w is None:
        idle_w = _load_published()["idle_power"][0]["value_w"]
    grid = {k: np.round(np.arange(lo, hi + step / 2, step), 2)
            for k, (lo, hi, step) in POWER_FIT_GRID.items()}
    fm = grid["mem_fraction"] if mem_fractions is None else mem_fractions
    fc = grid["comp_fraction"] if comp_fractions is None else comp_fractions
    a = np.asarray(fm, dtype=float)[:, None]
    b = np.asarray(fc, dtype=float)[None, :]
    loss = np.zeros((a.size, b.size))
    for p in pts:
        r = p.roofline(True, "tdp")  # the utilisations do not depend on the power model
        tdp = get(p.gpu).tdp_w
        power = np.minimum(tdp, idle_w + tdp * (a * r.hbm_utilisation + b * r.tensor_utilisation))
        loss += np.log(p.n_gpus * power * r.total_time_s / r.generated_tokens / p.value) ** 2
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return PowerModel(float(idle_w), float(a[i, 0]), float(b[0, j]))


CALIBRATION = Calibration({"gpt-fast": 5.6e-05, "tensorrt-llm": 2.6e-05, "nim": 7.4e-05,
                           "vllm": 9.2e-05}, flop_half_tokens=0.0, per_seq_s=1.5e-05,
                          kv_efficiency=1.0, allreduce_scale=0.1, overhead_per_layer=True,
                          int8_weight_efficiency=0.8, gathered_expert_efficiency=0.55)
"""The calibration the book uses: the result of :func:`~aimoe_lib.gpu.fit_calibration` on the
``fit`` rows of ``data/gpu_published.json`` (a test re-runs the fit and checks these values)."""

POWER_MODEL = PowerModel(idle_w=80.3, mem_fraction=0.88, comp_fraction=1.44)
"""The power model the book uses: the result of :func:`~aimoe_lib.gpu.fit_power_model`;
``idle_w`` is the published H200 idle reading (80.3 W, Serial Alice), used for every preset
(assumption A-GPU-IDLE)."""
