"""The 3D analog in-memory computing chip: its structure (:class:`ChipConfig`), the cost of every
operation (:class:`CostModel`) and its silicon area (:class:`AreaModel`), with named presets.

Every constant carries its source next to it. Values that no public source gives are *named
assumptions*; they are listed in the book's appendix (book/appendix_assumptions.md) and can all be
overridden (``dataclasses.replace`` / ``ChipConfig.replace``).

Sources used below:

* [3DSIM] IBM/3D-CiM-LLM-Inference-Simulator, public code defaults (the companion simulator of
  Büchel et al., Nat. Comput. Sci. 5, 13-26, 2025).
* [MOEPIM] superstarghy/MoEwithPIM, src/threedsim/accelerator.py: per-operation table labelled as
  taken from the 3D-CiM paper, for vector lengths d = 256, 512, 768, 1024 (table values; the fork's
  code deviates in places, we follow its table).
* [BUCHEL-AREA] see AreaModel.
* [HERMES] Le Gallo et al., "A 64-core mixed-signal in-memory compute chip based on phase-change
  memory for deep neural network inference", Nature Electronics 6, 680-693 (2023): 14 nm, 64 cores
  of 256x256 PCM unit cells, 63.1 TOPS peak at 9.76 TOPS/W.
* [UCIE] Das Sharma et al., "Universal Chiplet Interconnect Express (UCIe): an open industry
  standard for innovations with chiplets at package level", IEEE Trans. Compon. Packag. Manuf.
  Technol. 12, 1423-1431 (2022), and the UCIe 1.0 specification: advanced (2.5D) package
  0.25 pJ/bit at up to 16 GT/s, a x64 module per link, about 2 ns die-to-die latency.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import numpy as np

from . import checks

__all__ = [
    "OpKind",
    "OpCost",
    "CostModel",
    "AreaModel",
    "UnitAssignment",
    "KVPlacement",
    "AttentionSync",
    "PartialSums",
    "Dataflow",
    "ChipConfig",
    "preset",
    "preset_names",
    "hermes_mvm_cost",
    "threedsim_cost",
    "THREEDSIM_DATAFLOW",
    "hermes_split_cost",
    "MVM_ENERGY_SHARES",
    "physical_cost",
    "RETICLE_MM2",
]


# --------------------------------------------------------------------------- validation helpers
MAX_CONSTANT = 1e18
"""Largest value a cost, area or power constant may take: far beyond any physical value, small
enough that costs summed over a model and a run stay finite floats."""


def _validate_fields(obj, *, integer_fields: tuple[str, ...] = (),
                     positive_fields: tuple[str, ...] = ()) -> None:
    """Check every numeric field and store it normalised (numpy scalars as int/float): integers
    in 1..INT32_MAX, positive reals > 0, other numbers (``float``, ``int`` or ``float | None``
    fields) finite and >= 0 (None allowed where the type says so)."""
    cls = type(obj).__name__
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in integer_fields:
            v = checks.integer(cls, f.name, v, minimum=1, maximum=checks.INT32_MAX,
                               fix=f"pass a positive integer {f.name}")
        elif f.name in positive_fields:
            v = checks.real(cls, f.name, v, minimum=0, strict=True, maximum=MAX_CONSTANT,
                            fix=f"pass a positive {f.name} (at most {MAX_CONSTANT:g})")
        elif f.type in ("float", "int") or (f.type == "float | None" and v is not None):
            v = checks.real(cls, f.name, v, minimum=0, maximum=MAX_CONSTANT,
                            fix=f"pass a non-negative {f.name} (at most {MAX_CONSTANT:g})")
        else:
            continue
        object.__setattr__(obj, f.name, v)


# --------------------------------------------------------------------------- costs
class OpKind(str, Enum):
    """Operations the chip performs; the simulator builds its graphs from these."""

    MVM = "mvm"  # one tier MVM on a tile
    LAYERNORM = "layernorm"
    RELU = "relu"
    GELU = "gelu"
    SILU = "silu"
    ADD = "add"  # residual add, partial-sum accumulation
    MUL = "mul"  # element-wise multiply (gated FFN, expert weighting)
    SOFTMAX = "softmax"  # router scores
    TOPK = "topk"  # router top-k selection
    COMM = "comm"  # one vector over the on-chip network
    MHA = "mha"  # attention of n_queries queries over n_keys keys on an attention unit


class OpCost(NamedTuple):
    """Latency and energy of one operation."""

    latency_ns: float
    energy_pj: float


@dataclass(frozen=True)
class CostModel:
    """Latency (ns) and energy (pJ) of each operation, as functions of vector length and sequence length.

    Defaults are the "paper" costs: [3DSIM] defaults and the [MOEPIM] table.
    Table rows given only at d = 256..1024 are extended to any d by the per-chunk rule stated on
    each field (assumption A-COST-EXTRAP in the appendix).
    """

    mvm_latency_ns: float = 100.0
    """One tier MVM (any rows x cols up to the tier shape). [3DSIM] default; [MOEPIM] table: 100 ns."""
    mvm_energy_pj: float = 10_000.0
    """One tier MVM: its fixed part (control, sequencing), pJ. [3DSIM] default 10 nJ; [MOEPIM]
    table: 10 000 pJ, whatever part of the tier is used (the per-row, per-column and per-cell
    terms below are 0 in the 'paper' preset)."""
    mvm_energy_pj_per_row: float = 0.0
    """MVM energy per used input row (DAC and input driver), pJ; see :meth:`mvm`."""
    mvm_energy_pj_per_column: float = 0.0
    """MVM energy per used output column (ADC and readout), pJ; see :meth:`mvm`."""
    mvm_energy_pj_per_cell: float = 0.0
    """MVM energy per used cell (array read current), pJ; see :meth:`mvm`."""
    tier_switch_latency_ns: float = 0.0
    """Extra latency when a tile computes with a different tier than its previous MVM (selecting
    and settling another stacked array), ns. 0 in every preset: this project's crossbar tiers are
    selected by decoders within an MVM cycle; 3D NAND-based compute-in-memory senses in µs (Shim &
    Yu, IEEE EDL 42, 160, 2021), the scale to try for stacked NAND-like tiers."""
    tier_switch_energy_pj: float = 0.0
    """Extra energy of a tier switch, pJ (counted with the MVM energy). 0 in every preset."""
    mvm_input_phases: int = 1
    """Input phases per MVM: 1 for one-phase 8-bit pulse-width inputs, 4 for [HERMES]'s
    four-phase high-precision mode; latency and energy scale with the phases."""

    layernorm_latency_ns_per_512: float = 50.0
    """LayerNorm latency per started chunk of 512 elements. [MOEPIM] 50, 50, 100, 100 ns at
    d = 256, 512, 768, 1024 = 50 ns x ceil(d / 512); [3DSIM] default 50 ns."""
    layernorm_energy_pj_per_512: float = 20.96
    """LayerNorm energy per started chunk of 512 elements. [MOEPIM] 20.96, 20.96, 41.92, 41.92 pJ."""

    relu_latency_ns: float = 1.0
    """ReLU latency, independent of d. [MOEPIM] 1 ns at every d."""
    relu_energy_pj_per_element: float = 6.12e-5
    """ReLU energy per element: least-squares line through the origin of [MOEPIM]'s 0.02, 0.03,
    0.05, 0.06 pJ at d = 256, 512, 768, 1024 (120.32 / 1 966 080 pJ per element)."""

    gelu_latency_ns_per_256: float = 16.0
    """GeLU latency slope. [MOEPIM] 16 * d / 256 + 6 ns."""
    gelu_latency_ns_fixed: float = 6.0
    """GeLU latency intercept. [MOEPIM] 16 * d / 256 + 6 ns."""
    gelu_energy_pj_per_256: float = 9.63
    """GeLU energy per 256 elements. [MOEPIM] 9.63 pJ per 256 elements."""
    silu_relative_cost: float = 1.0
    """SiLU cost relative to GeLU. Assumption A-SILU: both are one transcendental element-wise
    function evaluated by the same DPU datapath; no public table gives SiLU."""

    add_latency_ns_per_256: float = 8.0
    """Element-wise add latency slope. [MOEPIM] 8 * d / 256 + 4 ns."""
    add_latency_ns_fixed: float = 4.0
    """Element-wise add latency intercept. [MOEPIM] 8 * d / 256 + 4 ns."""
    add_energy_pj_per_256: float = 9.43
    """Element-wise add energy per 256 elements. [MOEPIM] 9.43 pJ per 256 elements."""
    mul_relative_cost: float = 1.0
    """Element-wise multiply cost relative to add. Assumption A-MUL: one multiply per element on
    the same vector datapath; no public table gives it."""

    comm_latency_ns_per_512: float = 24.0
    """On-chip network latency per started chunk of 512 elements. [MOEPIM] 24, 24, 48, 48 ns at
    d = 256..1024 = 24 ns x ceil(d / 512)."""
    comm_energy_pj_per_256: float = 12.93
    """On-chip network energy per 256 elements. [MOEPIM] 12.93 pJ per 256 elements."""

    mha_latency_ns_per_pair_d: float = 1.064e-4
    """Attention latency per (query, key) pair, coefficient of d. [MOEPIM] whole sequence of n
    tokens: n^2 (1.064e-4 d + 1.521e-5 d^2) ns; assumption A-MHA-PAIRS: cost scales with the
    number of (query, key) pairs, so n^2 -> n_queries * n_keys."""
    mha_latency_ns_per_pair_d2: float = 1.521e-5
    """Attention latency per (query, key) pair, coefficient of d^2. [MOEPIM], see above."""
    mha_energy_pj_per_pair_d: float = 0.022289
    """Attention energy per (query, key) pair and element of d. [MOEPIM] 0.022289 d n^2 pJ (the
    fork's code multiplies this by 25; we follow its table)."""

    mha_latency_ns_per_op: float = 0.0
    """Fixed latency of one attention operation on top of its per-pair terms, ns. 0 for the
    [MOEPIM] fit; [3DSIM]'s public stubs charge 1 ns (DRAM) + 1 ns (compute) per operation,
    whatever the sequence length."""
    mha_energy_pj_per_op: float = 0.0
    """Fixed energy of one attention operation, pJ. 0 for the [MOEPIM] fit; [3DSIM] stubs:
    1 nJ + 1 nJ per operation."""
    digital_op_energy_pj: float = 0.0
    """Fixed energy of every element-wise digital step (layer norm, activation, add, multiply,
    softmax, top-k) on top of its per-element energy, pJ. 0 for the [MOEPIM] table; [3DSIM]
    charges 10 nJ for every digital operation whatever its length."""
    sampling_latency_ns: float | None = None
    """Latency of sampling the next token, ns; None costs it as a softmax and a top-1 pass over
    the vocabulary (assumptions A-SOFTMAX, A-TOPK). [3DSIM]: 10 ns."""
    sampling_energy_pj: float | None = None
    """Energy of sampling the next token, pJ; None as for the latency. [3DSIM]: 0."""

    softmax_relative_cost: float = 1.0
    """Router softmax over E scores costed as one GeLU-like transcendental pass over E elements,
    times this factor. Assumption A-SOFTMAX."""
    topk_passes_per_k: float = 1.0
    """Router top-k costed as k comparison passes (add-like) over E elements, times this factor.
    Assumption A-TOPK."""

    digital_mvm_macs_per_ns: float = 256.0
    """Throughput of a matrix-vector product run on a DPU instead of a tile (router, attention or
    LM head made digital), multiply-accumulates per ns. Assumption A-DIGITAL-MVM: a 256-lane INT8
    SIMD datapath at 1 GHz."""
    digital_mvm_energy_pj_per_mac: float = 1.0
    """Energy of one digital multiply-accumulate including its weight read from on-chip SRAM, pJ.
    Assumption A-DIGITAL-MVM."""

    dram_bandwidth_gb_s: float = 5.332
    """DRAM bandwidth for KV-cache traffic, GB/s. [3DSIM] default."""
    dram_active_power_w: float = 0.2467
    """DRAM power while transferring, W. [3DSIM] default."""
    dram_idle_power_w: float = 0.1297
    """DRAM power while idle, W. [3DSIM] default."""
    dram_energy_pj_per_bit: float = 0.0
    """Energy per bit moved to or from off-chip memory, pJ; 0 charges ``dram_active_power_w`` for
    the transfer time instead ([3DSIM]'s model)."""
    d2d_latency_ns: float = 0.0
    """Latency of one die-to-die crossing on top of its serialisation, ns; only used when a chip
    spans several dies (:attr:`ChipConfig.reticle_mm2`). [UCIE]: about 2 ns."""
    d2d_bandwidth_gb_s: float = 128.0
    """Bandwidth of the die-to-die link one transfer uses, GB/s. [UCIE]: one advanced-package x64
    module at 16 GT/s = 64 x 16 Gb/s / 8 = 128 GB/s."""
    d2d_energy_pj_per_bit: float = 0.0
    """Energy per bit crossing a die boundary, pJ. [UCIE]: 0.25 pJ/bit (advanced package, up to
    16 GT/s)."""
    activation_bits: int = 8
    """Bits per activation element moved between tiles, units and dies. [3DSIM]: transfers of
    8-bit vectors."""
    kv_bytes_per_element: float = 2.0
    """Bytes per cached key/value element. Assumption A-KV-BYTES: 16-bit activations in the KV cache."""

    unit_passive_power_w: float = 1.0
    """Static power of each DPU and each attention unit, W. [3DSIM] default 1 W per unit."""
    tile_passive_power_w: float = 0.0
    """Static power of each analog tile, W. Assumption A-TILE-STATIC: [3DSIM] charges none
    (non-volatile arrays hold weights without power; periphery power-gated when idle)."""
    idle_power_fraction: float = 1.0
    """Fraction of its static power a DPU, attention unit or tile draws while idle: 1 = no power
    gating (every preset's default), 0 = perfect gating. The DRAM's idle power is not gated."""
    mha_cost_model: str = "pairs_fit"
    """How attention is costed: 'pairs_fit' ([MOEPIM]'s fit per (query, key) pair, with its d²
    term) or 'macs' (2 d multiply-accumulates per pair, for scores and values, at
    ``mha_macs_per_ns`` and ``mha_energy_pj_per_mac``: linear in d)."""
    mha_macs_per_ns: float = 256.0
    """Attention unit throughput for ``mha_cost_model='macs'``, MACs per ns. Assumption
    A-MHA-MACS: the 256-lane 8-bit SIMD datapath at 1 GHz of A-DIGITAL-MVM."""
    mha_energy_pj_per_mac: float = 1.0
    """Attention energy per MAC for ``mha_cost_model='macs'``, including reading K/V from SRAM,
    pJ. Assumption A-MHA-MACS (as A-DIGITAL-MVM)."""

    def __post_init__(self) -> None:
        _validate_fields(self, integer_fields=("mvm_input_phases", "activation_bits"),
                         positive_fields=("mvm_latency_ns", "dram_bandwidth_gb_s",
                                          "d2d_bandwidth_gb_s",
                                          "digital_mvm_macs_per_ns", "mha_macs_per_ns"))
        if self.idle_power_fraction > 1:
            raise ValueError(f"CostModel.idle_power_fraction={self.idle_power_fraction!r}: must be "
                             "in [0, 1] (1 = no power gating, 0 = idle units draw nothing)")
        checks.choice("CostModel", "mha_cost_model", self.mha_cost_model, ("pairs_fit", "macs"),
                      fix="use 'pairs_fit' (MoEwithPIM's fit) or 'macs' (2 d MACs per query-key "
                          "pair)")

    # -- tier MVMs -------------------------------------------------------------------------
    @property
    def tier_mvm_latency_ns(self) -> float:
        """Latency of one tier MVM whatever its shape: integration time x input phases (the ADCs
        convert every column in parallel; first-order model, assumption A-HERMES-SCALE)."""
        return self.mvm_latency_ns * self.mvm_input_phases

    def mvm(self, rows_used: int, cols_used: int) -> OpCost:
        """One tier MVM using ``rows_used`` inputs and ``cols_used`` outputs of the tier: latency
        :attr:`tier_mvm_latency_ns`; energy = phases x (fixed + per row x rows + per column x
        cols + per cell x rows x cols). The 'paper' preset charges its fixed 10 nJ whatever the
        shape."""
        rows_used = checks.integer("CostModel.mvm()", "rows_used", rows_used, minimum=1)
        cols_used = checks.integer("CostModel.mvm()", "cols_used", cols_used, minimum=1)
        e = (self.mvm_energy_pj + self.mvm_energy_pj_per_row * rows_used
             + self.mvm_energy_pj_per_column * cols_used
             + self.mvm_energy_pj_per_cell * rows_used * cols_used)
        return OpCost(self.tier_mvm_latency_ns, e * self.mvm_input_phases)

    # -- per-operation costs ---------------------------------------------------------------
    def cost(self, op: OpKind | str, length: int, n_queries: int = 1, n_keys: int = 1) -> OpCost:
        """Cost of one operation on a vector of ``length`` elements.

        For ``OpKind.MVM`` it is :meth:`mvm` of ``length`` rows and columns (the 'paper' preset
        charges the same whatever part of the tier is used). For ``OpKind.MHA`` ``length`` is d_model and the cost covers ``n_queries``
        queries attending over ``n_keys`` keys. For SOFTMAX and TOPK ``length`` is the number of
        experts E and ``n_queries`` carries k for TOPK.
        """
        op = checks.enum("CostModel.cost()", "op", op, OpKind)
        d = checks.integer("CostModel.cost()", "length", length, minimum=1,
                           fix="the vector length must be an integer >= 1")
        chunks512 = math.ceil(d / 512)
        if op is OpKind.MVM:  # a square MVM of ``length`` inputs and outputs
            return self.mvm(d, d)
        fixed = self.digital_op_energy_pj
        if op is OpKind.LAYERNORM:
            return OpCost(self.layernorm_latency_ns_per_512 * chunks512,
                          self.layernorm_energy_pj_per_512 * chunks512 + fixed)
        if op is OpKind.RELU:
            return OpCost(self.relu_latency_ns, self.relu_energy_pj_per_element * d + fixed)
        if op in (OpKind.GELU, OpKind.SILU, OpKind.SOFTMAX):
            scale = {OpKind.GELU: 1.0, OpKind.SILU: self.silu_relative_cost,
                     OpKind.SOFTMAX: self.softmax_relative_cost}[op]
            return OpCost(scale * (self.gelu_latency_ns_per_256 * d / 256 + self.gelu_latency_ns_fixed),
                          scale * self.gelu_energy_pj_per_256 * d / 256 + fixed)
        if op is OpKind.TOPK:
            n_queries = checks.integer("CostModel.cost(op='topk')", "n_queries", n_queries,
                                       minimum=1, fix="k must be an integer >= 1")
        if op in (OpKind.ADD, OpKind.MUL, OpKind.TOPK):
            scale = {OpKind.ADD: 1.0, OpKind.MUL: self.mul_relative_cost,
                     OpKind.TOPK: self.topk_passes_per_k * n_queries}[op]
            return OpCost(scale * (self.add_latency_ns_per_256 * d / 256 + self.add_latency_ns_fixed),
                          scale * self.add_energy_pj_per_256 * d / 256 + fixed)
        if op is OpKind.COMM:
            return OpCost(self.comm_latency_ns_per_512 * chunks512,
                          self.comm_energy_pj_per_256 * d / 256)
        # MHA
        n_queries = checks.integer("CostModel.cost(op='mha')", "n_queries", n_queries, minimum=1)
        n_keys = checks.integer("CostModel.cost(op='mha')", "n_keys", n_keys, minimum=1)
        pairs = n_queries * n_keys
        if self.mha_cost_model == "macs":  # scores q.k and the weighted sum of values: 2 d MACs
            macs = pairs * 2 * d
            return OpCost(macs / self.mha_macs_per_ns, macs * self.mha_energy_pj_per_mac)
        return OpCost(pairs * (self.mha_latency_ns_per_pair_d * d + self.mha_latency_ns_per_pair_d2 * d * d),
                      pairs * self.mha_energy_pj_per_pair_d * d)

    def sampling(self, vocab_size: int) -> OpCost:
        """Sampling the next token from ``vocab_size`` logits: the fixed sampling cost where one is
        set, else a softmax and a top-1 pass over the vocabulary."""
        if self.sampling_latency_ns is not None and self.sampling_energy_pj is not None:
            return OpCost(self.sampling_latency_ns, self.sampling_energy_pj)
        soft, top = self.cost(OpKind.SOFTMAX, vocab_size), self.cost(OpKind.TOPK, vocab_size, 1)
        lat = soft.latency_ns + top.latency_ns if self.sampling_latency_ns is None \
            else self.sampling_latency_ns
        en = soft.energy_pj + top.energy_pj if self.sampling_energy_pj is None \
            else self.sampling_energy_pj
        return OpCost(lat, en)

    def digital_mvm(self, in_features: int, out_features: int) -> OpCost:
        """A whole in x out matrix-vector product on a DPU (A-DIGITAL-MVM)."""
        macs = in_features * out_features
        return OpCost(macs / self.digital_mvm_macs_per_ns, macs * self.digital_mvm_energy_pj_per_mac)

    def dram_transfer(self, n_bytes: float) -> OpCost:
        """Moving ``n_bytes`` between DRAM and the attention unit: time at full bandwidth, active power."""
        n_bytes = checks.real("CostModel.dram_transfer()", "n_bytes", n_bytes, minimum=0)
        t_ns = n_bytes / self.dram_bandwidth_gb_s  # 1 GB/s = 1 byte/ns
        return OpCost(t_ns, self.dram_active_power_w * t_ns * 1e3)  # W * ns = nJ = 1e3 pJ


def hermes_mvm_cost(rows: int = 256, cols: int = 256) -> OpCost:
    """Latency and energy of one rows x cols MVM derived from [HERMES]'s peak figures.

    63.1 TOPS over 64 cores is 0.986 TOPS per core; a 256x256 MVM is 2 x 256 x 256 = 131 072
    operations, so it takes 131 072 / 0.986e12 s = 132.9 ns; at 9.76 TOPS/W it costs
    131 072 / 9.76e12 J = 13.43 nJ. Other shapes scale the energy with the number of weights
    (assumption A-HERMES-SCALE); the latency stays that of one MVM.
    """
    ops = 2 * 256 * 256
    per_core_ops_s = HERMES_PEAK_TOPS * 1e12 / HERMES_CORES
    latency_ns = ops / per_core_ops_s * 1e9
    energy_pj = ops / (HERMES_TOPS_PER_W * 1e12) * 1e12 * (rows * cols) / (256 * 256)
    return OpCost(latency_ns, energy_pj)


HERMES_PEAK_TOPS = 63.1
"""[HERMES] peak throughput of the chip, TOPS (8-bit-equivalent inputs)."""
HERMES_TOPS_PER_W = 9.76
"""[HERMES] peak energy efficiency, TOPS/W."""
HERMES_CORES = 64
"""[HERMES] number of 256x256 cores."""
HERMES_FOUR_PHASE_TOPS = 16.1
"""[HERMES] peak throughput in the four-phase (high-precision input) mode, TOPS."""
HERMES_FOUR_PHASE_TOPS_PER_W = 2.48
"""[HERMES] energy efficiency in the four-phase mode, TOPS/W."""

MVM_ENERGY_SHARES = {"fixed": 0.10, "row": 0.25, "column": 0.50, "cell": 0.15}
"""How one [HERMES] 256x256 one-phase MVM's 13.43 nJ splits: fixed control and sequencing,
per input row (DAC, driver), per output column (ADC, readout), per cell (array read). Assumption
A-MVM-SPLIT: ADC-dominated, as reported for AIMC cores; no published per-component split of
HERMES is used here, and a per-component model such as CiMLoop (Andrulis, Emer, Sze, ISPASS 2024)
would refine it."""


def hermes_split_cost(phases: int = 1) -> CostModel:
    """The MVM part of a CostModel calibrated to [HERMES]: 132.9 ns per one-phase MVM
    (:func:`hermes_mvm_cost`), its 13.43 nJ split by :data:`MVM_ENERGY_SHARES` into a fixed part
    and per-row, per-column and per-cell terms of a 256 x 256 core, so that
    ``mvm(256, 256)`` gives back 13.43 nJ and smaller MVMs cost less. ``phases`` = 4 is the
    four-phase mode (4 x latency and energy: 531.6 ns and 53.7 nJ against HERMES' 16.1 TOPS and
    2.48 TOPS/W, i.e. 521.0 ns and 52.9 nJ per core MVM, +2.1 % and +1.6 %)."""
    ref = hermes_mvm_cost()
    e, n = ref.energy_pj, 256
    return CostModel(mvm_latency_ns=ref.latency_ns,
                     mvm_energy_pj=MVM_ENERGY_SHARES["fixed"] * e,
                     mvm_energy_pj_per_row=MVM_ENERGY_SHARES["row"] * e / n,
                     mvm_energy_pj_per_column=MVM_ENERGY_SHARES["column"] * e / n,
                     mvm_energy_pj_per_cell=MVM_ENERGY_SHARES["cell"] * e / (n * n),
                     mvm_input_phases=phases)


# --------------------------------------------------------------------------- area
@dataclass(frozen=True)
class AreaModel:
    """Silicon area (mm²) of tiles, tiers and digital units.

    A 3D tile's footprint is its periphery (ADCs, DACs, drivers, local control) plus one tier's
    array; each added tier adds ``tier_overhead_fraction`` of an array footprint (staircase
    contacts, vertical interconnect) and nothing else. All numbers default from [HERMES]'s core
    tile area with the split stated on each field.

    [BUCHEL-AREA]: 1 mm² per 512x512 tile, 1.25 mm² per DPU, 5 mm² per attention unit, as reported
    for Büchel et al. 2025 by a secondary literature summary (second-hand, hence assumption
    A-BUCHEL-AREA).
    """

    array_area_mm2_per_weight: float = 0.25 * 1.0 / (512 * 512)
    """Array footprint per stored weight (device pair), mm². Derived from [BUCHEL-AREA] 1 mm² per
    512x512 tile with assumption A-ARRAY-SHARE: the array is 25% of a tile's footprint
    (0.25 mm² / 262 144 = 9.5e-7 mm², i.e. 0.95 µm² per weight)."""
    periphery_area_mm2_per_column: float = 0.75 * 1.0 / 512
    """Periphery per output column (ADC, drivers, accumulation), mm². The other 75% of
    [BUCHEL-AREA]'s 1 mm² tile spread over its 512 columns (A-ARRAY-SHARE). Cross-check: this
    model gives a 256x256 tile 0.44 mm², against [HERMES]'s 0.635 mm² per core (63.1 TOPS /
    1.55 TOPS/mm² / 64 cores)."""
    periphery_area_mm2_per_row: float = 0.0
    """Periphery per input row (DACs), mm². Folded into the per-column figure; kept as a knob."""
    tier_overhead_fraction: float = 0.001
    """Extra footprint per additional tier, as a fraction of one tier's array area. Assumption
    A-TIER-OVERHEAD: 0.1% per tier (staircase contacts and vertical vias of 3D NAND-like stacking),
    so 1024 tiers double the array's footprint; no public number. The paper's area model, as
    reported, charges nothing per tier: set 0 to match it."""
    dpu_area_mm2: float = 1.25
    """Area of one digital processing unit, mm². [BUCHEL-AREA]."""
    mha_unit_area_mm2: float = 5.0
    """Area of one attention unit with its scratchpad SRAM, mm². [BUCHEL-AREA]."""

    def __post_init__(self) -> None:
        _validate_fields(self)

    def tier_array_mm2(self, rows: int, cols: int) -> float:
        """Footprint of one rows x cols crossbar array."""
        return rows * cols * self.array_area_mm2_per_weight

    def tile_mm2(self, rows: int, cols: int, n_tiers: int) -> float:
        """Footprint of one tile: periphery + one array + per-tier overhead for the extra tiers."""
        array = self.tier_array_mm2(rows, cols)
        periphery = cols * self.periphery_area_mm2_per_column + rows * self.periphery_area_mm2_per_row
        return periphery + array * (1.0 + self.tier_overhead_fraction * (n_tiers - 1))


# --------------------------------------------------------------------------- the chip
DPUS_PER_LAYER = 24
"""[3DSIM] functional_bert_tvlsi.py: 288 DPUs for BERT-base's 12 layers."""
MHA_UNITS_PER_LAYER = 8
"""[3DSIM] functional_bert_tvlsi.py: 96 MHA units for BERT-base's 12 layers."""

class UnitAssignment(str, Enum):
    """How digital and attention units are shared: one pool for the whole chip, or units locked
    to layers (unit = layer mod count, as 3D-SiM's lock_*_unit_to_layer)."""

    POOL = "pool"
    PER_LAYER = "per_layer"


class KVPlacement(str, Enum):
    """Where the KV cache lives: on-chip SRAM next to the attention units, or off-chip DRAM."""

    SRAM = "sram"
    DRAM = "dram"


def _coerce(enum_cls, cls: str, name: str, value):
    """``value`` as a member of ``enum_cls`` (a member or its value as a string)."""
    return checks.enum(cls, name, value, enum_cls)


class AttentionSync(str, Enum):
    """When a token's attention may start in a prefill (or a pass without KV cache)."""

    CAUSAL = "causal"
    """Token i attends once the keys/values of tokens 0..i exist (a layer-pipelined dataflow)."""
    PASS = "pass"
    """One attention operation per layer and pass, once every token's Q/K/V of the pass exists
    (a barrier; [3DSIM]'s traced graph)."""


class PartialSums(str, Enum):
    """How the partial outputs of a matrix spanning several input row blocks are summed."""

    ONE_ADD = "one_add"
    """One element-wise add over out x (row blocks - 1) elements (assumption A-ACC-DPU)."""
    CHAIN = "chain"
    """(row blocks - 1) adds of ``out`` elements, one after another ([3DSIM])."""
    TREE = "tree"
    """A binary tree of adds of ``out`` elements over the layer's DPUs: ceil(log2(row blocks))
    adds deep, (row blocks - 1) adds of energy (assumption A-ACC-TREE)."""
    PERIPHERY = "periphery"
    """In the tiles' periphery as the partial outputs are read out: no DPU time, the adds'
    energy (assumption A-ACC-PERIPHERY)."""


_BOOL_FIELDS = ("norm_before_first_layer", "final_norm_every_token", "transfer_into_attention",
                "kv_traffic")


@dataclass(frozen=True)
class Dataflow:
    """What a token's operation graph contains and how its steps synchronise: the modelling
    choices on which simulators of this line of work differ. The defaults are this project's
    (physical for a layer-pipelined dataflow); :func:`preset` ``'3dsim'`` selects [3DSIM]'s."""

    attention_sync: AttentionSync | str = AttentionSync.CAUSAL
    """'causal' (token i needs keys 0..i) or 'pass' (one attention per layer and pass after all
    tokens' Q/K/V: [3DSIM])."""
    norm_before_first_layer: bool = True
    """Layer norm before layer 0's Q/K/V (pre-norm models); [3DSIM]'s post-norm README model has
    none."""
    final_norm_every_token: bool = True
    """The last layer's closing norm runs for every token (True) or, as the final norm before the
    LM head, for the last token of a pass only ([3DSIM])."""
    partial_sums: PartialSums | str = PartialSums.ONE_ADD
    """'one_add' (A-ACC-DPU) or 'chain' ([3DSIM]: one add per extra row block)."""
    transfer_into_attention: bool = True
    """A network transfer of the query into the attention unit (True), or none ([3DSIM]: the
    Q/K/V MVMs' output transfer feeds attention directly)."""
    kv_traffic: bool = True
    """With the KV cache in DRAM, model its traffic by bandwidth and power (True), or charge
    nothing but the DRAM's idle power ([3DSIM]'s public code computes the DRAM time but never
    uses it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention_sync",
                           _coerce(AttentionSync, "Dataflow", "attention_sync", self.attention_sync))
        object.__setattr__(self, "partial_sums",
                           _coerce(PartialSums, "Dataflow", "partial_sums", self.partial_sums))
        for name in _BOOL_FIELDS:
            object.__setattr__(self, name, checks.boolean("Dataflow", name, getattr(self, name)))


@dataclass(frozen=True)
class ChipConfig:
    """An abstract 3D AIMC chip: tiles of stacked crossbar tiers plus digital and attention units.

    A tile computes with one tier at a time; 2D AIMC is ``n_tiers=1``.
    """

    n_tiles: int
    """Analog tiles; each runs at most one tier MVM at a time."""
    n_tiers: int
    """Stacked crossbar tiers per tile (1 = a 2D chip)."""
    tier_rows: int = 512
    """Input rows of one tier's crossbar (max MVM input length). The study's default 512."""
    tier_cols: int = 512
    """Output columns of one tier's crossbar (max MVM output length). The study's default 512."""
    n_dpus: int = 4
    """Digital processing units (norms, activations, adds, router top-k). [3DSIM] default 4."""
    n_mha_units: int = 1
    """Attention units. [3DSIM] default 1."""
    unit_assignment: UnitAssignment | str = UnitAssignment.POOL
    """'pool' (any unit serves any layer; [3DSIM] default) or 'per_layer' (unit = layer mod count)."""
    kv_placement: KVPlacement | str = KVPlacement.SRAM
    """KV cache in on-chip 'sram' (no DRAM traffic) or off-chip 'dram' (costed by bandwidth/power)."""
    kv_sram_mb_per_mha_unit: float | None = None
    """On-chip KV capacity next to each attention unit, MB (10^6 bytes); None = unbounded. With
    'sram' placement, the part of a run's KV cache beyond n_mha_units x this spills to off-chip
    memory: each attention then reads that fraction of its keys from DRAM (bandwidth and energy
    from the CostModel)."""
    reticle_mm2: float | None = None
    """Largest die, mm²: a chip of larger area is split into :attr:`n_dies` dies (tiles in index
    order, equal shares) and every transfer between dies is costed by the CostModel's ``d2d_*``
    fields. None: one die whatever the area (the 'paper' preset, as the study's chips are
    reported). :data:`RETICLE_MM2` is the lithographic limit."""
    weight_bits: int = 8
    """Precision of a stored weight, bits (8-bit-equivalent, one weight per device pair)."""
    cost: CostModel = field(default_factory=CostModel)
    """Latency and energy of every operation."""
    dataflow: Dataflow = field(default_factory=Dataflow)
    """What a token's operation graph contains and how its steps synchronise."""
    area: AreaModel = field(default_factory=AreaModel)
    """Area of tiles and units."""
    name: str = "custom"
    """Preset name or a label."""

    def __post_init__(self) -> None:
        _validate_fields(self, integer_fields=("n_tiles", "n_tiers", "tier_rows", "tier_cols",
                                               "n_dpus", "n_mha_units", "weight_bits"))
        object.__setattr__(self, "unit_assignment",
                           _coerce(UnitAssignment, "ChipConfig", "unit_assignment", self.unit_assignment))
        object.__setattr__(self, "kv_placement",
                           _coerce(KVPlacement, "ChipConfig", "kv_placement", self.kv_placement))
        if not isinstance(self.cost, CostModel):
            raise ValueError(f"ChipConfig.cost={self.cost!r}: must be a CostModel")
        if not isinstance(self.dataflow, Dataflow):
            raise ValueError(f"ChipConfig.dataflow={self.dataflow!r}: must be a Dataflow")
        if not isinstance(self.area, AreaModel):
            raise ValueError(f"ChipConfig.area={self.area!r}: must be an AreaModel")
        if not isinstance(self.name, str):
            raise ValueError(f"ChipConfig.name={self.name!r}: must be a string; give the chip a "
                             "label such as 'custom'")
        if self.reticle_mm2 is not None:
            if self.reticle_mm2 <= 0:
                raise ValueError(f"ChipConfig.reticle_mm2={self.reticle_mm2!r}: must be > 0 mm² "
                                 f"(or None for one die); the lithographic limit is {RETICLE_MM2}")
            if self.tile_area_mm2 > self.reticle_mm2:
                raise ValueError(
                    f"ChipConfig.reticle_mm2={self.reticle_mm2!r}: one tile alone is "
                    f"{self.tile_area_mm2:.3g} mm², larger than a die; use fewer tiers per tile, "
                    "smaller tiers, or a larger reticle_mm2")

    # -- capacity ---------------------------------------------------------------------------
    @property
    def is_3d(self) -> bool:
        """True when tiles stack more than one tier."""
        return self.n_tiers > 1

    @property
    def weights_per_tier(self) -> int:
        """Weights one tier holds (rows x cols)."""
        return self.tier_rows * self.tier_cols

    @property
    def n_tier_slots(self) -> int:
        """Tiers on the chip (tiles x tiers per tile): the number of blocks it can hold."""
        return self.n_tiles * self.n_tiers

    @property
    def capacity_weights(self) -> int:
        """Weights the chip holds when every tier is full."""
        return self.n_tier_slots * self.weights_per_tier

    @property
    def capacity_bytes(self) -> int:
        """Weight storage in bytes at ``weight_bits``."""
        return self.capacity_weights * self.weight_bits // 8

    # -- area -------------------------------------------------------------------------------
    @property
    def tile_area_mm2(self) -> float:
        """Footprint of one tile, mm²."""
        return self.area.tile_mm2(self.tier_rows, self.tier_cols, self.n_tiers)

    @property
    def tiles_area_mm2(self) -> float:
        """Footprint of all tiles, mm²."""
        return self.n_tiles * self.tile_area_mm2

    @property
    def digital_area_mm2(self) -> float:
        """Footprint of all DPUs and attention units, mm²."""
        return self.n_dpus * self.area.dpu_area_mm2 + self.n_mha_units * self.area.mha_unit_area_mm2

    @property
    def area_mm2(self) -> float:
        """Chip area: tiles + digital and attention units, mm²."""
        return self.tiles_area_mm2 + self.digital_area_mm2

    @property
    def n_dies(self) -> int:
        """Dies the chip is split into: ceil(area / reticle_mm2), 1 without a reticle limit."""
        if self.reticle_mm2 is None:
            return 1
        return max(1, math.ceil(self.area_mm2 / self.reticle_mm2 - 1e-9))

    def die_of_tile(self, tile):
        """Die of each tile (int or integer array): tiles in index order, n_tiles / n_dies per die
        (tile t on die floor(t x n_dies / n_tiles))."""
        return np.asarray(tile, dtype=np.int64) * self.n_dies // self.n_tiles

    @property
    def passive_power_w(self) -> float:
        """Static power charged for the whole run time, W."""
        c = self.cost
        dram = c.dram_idle_power_w if self.kv_placement is KVPlacement.DRAM else 0.0  # [3DSIM]
        return ((self.n_dpus + self.n_mha_units) * c.unit_passive_power_w
                + self.n_tiles * c.tile_passive_power_w + dram)

    def replace(self, **changes) -> ChipConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def provisioned(self, n_layers: int, dpus_per_layer: int = DPUS_PER_LAYER,
                    mha_units_per_layer: int = MHA_UNITS_PER_LAYER) -> ChipConfig:
        """This chip with digital units built for an ``n_layers`` model and locked to layers.

        Defaults follow [3DSIM]'s BERT-base check (functional_bert_tvlsi.py): 288 DPUs and 96 MHA
        units for 12 layers, i.e. 24 and 8 per layer (assumption A-UNITS-PER-LAYER).
        """
        owner = "ChipConfig.provisioned()"
        per = (checks.integer(owner, "dpus_per_layer", dpus_per_layer, minimum=1),
               checks.integer(owner, "mha_units_per_layer", mha_units_per_layer, minimum=1))
        n_layers = checks.integer(owner, "n_layers", n_layers, minimum=1,
                                  maximum=checks.INT32_MAX // max(per),
                                  fix="pass the model's number of layers (a positive integer; "
                                      "units per layer x layers must stay <= 2**31 - 1)")
        dpus_per_layer, mha_units_per_layer = per
        return self.replace(n_dpus=n_layers * dpus_per_layer,
                            n_mha_units=n_layers * mha_units_per_layer,
                            unit_assignment=UnitAssignment.PER_LAYER)

    def as_2d(self) -> ChipConfig:
        """The 2D chip of equal capacity: one tier per tile, tiles x tiers tiles."""
        return self.replace(n_tiles=self.n_tier_slots, n_tiers=1, name=f"{self.name}-2d")

    def describe(self) -> str:
        """One line: shape, capacity and area."""
        return (f"{self.name}: {self.n_tiles} tiles x {self.n_tiers} tiers of "
                f"{self.tier_rows}x{self.tier_cols}, {self.capacity_weights / 1e6:.1f} M weights, "
                f"{self.n_dpus} DPUs, {self.n_mha_units} MHA units, {self.area_mm2:.1f} mm²"
                + (f" on {self.n_dies} dies" if self.n_dies > 1 else ""))


# --------------------------------------------------------------------------- presets
def _paper(n_tiles: int = 100, n_tiers: int = 1024, **kw) -> ChipConfig:
    """[3DSIM]/[MOEPIM] costs on 3D-SiM's README chip: 100 tiles x 1024 tiers of 512x512."""
    return ChipConfig(n_tiles=n_tiles, n_tiers=n_tiers, name=kw.pop("name", "paper"), **kw)


def _paper_2d(**kw) -> ChipConfig:
    """The 'paper' chip flattened to 2D at equal capacity (102 400 tiles of one tier); overrides
    apply to the flattened chip."""
    return _paper().as_2d().replace(**{"name": "paper-2d", **kw})


def _hermes(n_tiles: int = HERMES_CORES, n_tiers: int = 1, tier_rows: int = 256, tier_cols: int = 256, **kw) -> ChipConfig:
    """[HERMES]-derived costs: 256x256 tiers, 132.9 ns and 13.43 nJ per MVM; 64 cores, 2D."""
    mvm = hermes_mvm_cost()
    cost = CostModel(mvm_latency_ns=mvm.latency_ns, mvm_energy_pj=mvm.energy_pj)
    return ChipConfig(n_tiles=n_tiles, n_tiers=n_tiers, tier_rows=tier_rows, tier_cols=tier_cols,
                      cost=kw.pop("cost", cost), name=kw.pop("name", "hermes"), **kw)


HBM3_BANDWIDTH_GB_S = 819.2
"""One HBM3 stack: 6.4 Gb/s per pin x 1024 pins = 819.2 GB/s (JEDEC JESD238, HBM3 standard)."""
HBM_ENERGY_PJ_PER_BIT = 4.0
"""Energy per bit moved between an HBM stack and the chip, pJ. Assumption A-HBM-ENERGY: the
order of magnitude reported for HBM2/HBM3 interfaces, not a datasheet value."""
KV_SRAM_MB_PER_MHA_UNIT = 2.0
"""On-chip KV capacity beside each attention unit, MB. Assumption A-KV-SRAM: no public figure
for the study's attention units; a few MB of scratchpad SRAM per unit."""

RETICLE_MM2 = 26.0 * 33.0
"""The largest die a lithography scanner exposes in one field: 26 mm x 33 mm = 858 mm² (the
exposure field of current 193 nm immersion and EUV scanners; NVIDIA's H100 die is 814 mm²)."""
UCIE_LATENCY_NS = 2.0
"""[UCIE] die-to-die latency, ns."""
UCIE_PJ_PER_BIT = 0.25
"""[UCIE] advanced-package energy per bit at up to 16 GT/s, pJ."""

MOEPIM_STATIC_POWER_W = 0.02412
"""[MOEPIM] (src/threedsim/accelerator.py): static power of 5 DPUs and 4 attention units, W."""
MOEPIM_STATIC_UNITS = 9
"""The units that figure covers: 5 DPUs + 4 attention units."""


def physical_cost(phases: int = 1) -> CostModel:
    """The 'physical' preset's costs, the book's headline constants: MVMs from [HERMES]
    (:func:`hermes_split_cost`), static power of [MOEPIM]'s 0.02412 W per 5 DPUs + 4 attention
    units (2.68 mW per unit instead of [3DSIM]'s 1 W), attention as 2 d MACs per query-key pair
    (linear in d, A-MHA-MACS), off-chip memory one HBM3 stack (819.2 GB/s, A-HBM-ENERGY); the
    element-wise digital costs stay the [MOEPIM] table's."""
    mvm = hermes_split_cost(phases)
    return dataclasses.replace(mvm, unit_passive_power_w=MOEPIM_STATIC_POWER_W / MOEPIM_STATIC_UNITS,
                               mha_cost_model="macs", dram_bandwidth_gb_s=HBM3_BANDWIDTH_GB_S,
                               dram_energy_pj_per_bit=HBM_ENERGY_PJ_PER_BIT,
                               d2d_latency_ns=UCIE_LATENCY_NS, d2d_energy_pj_per_bit=UCIE_PJ_PER_BIT)


def _physical(n_tiles: int = 100, n_tiers: int = 1024, **kw) -> ChipConfig:
    """The book's preset for its headline figures, on the 'paper' chip's 100 tiles x
    1024 tiers of 512x512: :func:`physical_cost` (HERMES MVMs, MoEwithPIM static power, attention
    linear in d, KV beyond 2 MB per attention unit spilled to HBM3), partial sums as a tree over
    the layer's DPUs, split into reticle-sized dies (:data:`RETICLE_MM2`) joined by [UCIE] links."""
    kw.setdefault("kv_sram_mb_per_mha_unit", KV_SRAM_MB_PER_MHA_UNIT)
    kw.setdefault("reticle_mm2", RETICLE_MM2)
    return ChipConfig(n_tiles=n_tiles, n_tiers=n_tiers, cost=kw.pop("cost", physical_cost()),
                      dataflow=kw.pop("dataflow", Dataflow(partial_sums="tree")),
                      name=kw.pop("name", "physical"), **kw)


def threedsim_cost() -> CostModel:
    """[3DSIM]'s public cost functions (src/threedsim/accelerator.py at commit 0bef55f): MVM
    100 ns / 10 nJ; layer norm 50 ns, add 10 ns, ReLU 1 ns, GeLU 10 ns, each 10 nJ whatever its
    length; a transfer 10 ns and 1e-5 nJ per bit of a 512-element 8-bit vector (40.96 pJ);
    attention 1 + 1 ns and 1 + 1 nJ per operation whatever the sequence length (its stubs);
    sampling 10 ns, 0 nJ; 1 W static power per DPU and attention unit."""
    return CostModel(
        layernorm_energy_pj_per_512=0.0, relu_energy_pj_per_element=0.0,
        gelu_latency_ns_per_256=0.0, gelu_latency_ns_fixed=10.0, gelu_energy_pj_per_256=0.0,
        add_latency_ns_per_256=0.0, add_latency_ns_fixed=10.0, add_energy_pj_per_256=0.0,
        comm_latency_ns_per_512=10.0, comm_energy_pj_per_256=1e-5 * 8 * 256 * 1e3,
        mha_latency_ns_per_pair_d=0.0, mha_latency_ns_per_pair_d2=0.0, mha_energy_pj_per_pair_d=0.0,
        mha_latency_ns_per_op=2.0, mha_energy_pj_per_op=2000.0, digital_op_energy_pj=10_000.0,
        sampling_latency_ns=10.0, sampling_energy_pj=0.0)


THREEDSIM_DATAFLOW = Dataflow(attention_sync="pass", norm_before_first_layer=False,
                              final_norm_every_token=False, partial_sums="chain",
                              transfer_into_attention=False, kv_traffic=False)
"""[3DSIM]'s traced graph: one attention per layer and pass after all tokens' Q/K/V, no norm
before layer 0 (post-norm README model), the final norm for the last token only, partial sums as
a chain of adds, no transfer into the attention unit, KV-cache DRAM traffic not charged."""


def _threedsim(n_tiles: int = 100, n_tiers: int = 1024, **kw) -> ChipConfig:
    """[3DSIM]'s README accelerator with its public code defaults and semantics: 100 tiles x 1024
    tiers of 512x512, 4 pooled DPUs and 1 attention unit, :func:`threedsim_cost`,
    :data:`THREEDSIM_DATAFLOW`. For side-by-side validation only: its costs are placeholders."""
    return ChipConfig(n_tiles=n_tiles, n_tiers=n_tiers, cost=kw.pop("cost", threedsim_cost()),
                      dataflow=kw.pop("dataflow", THREEDSIM_DATAFLOW),
                      name=kw.pop("name", "3dsim"), **kw)


_PRESETS = {"paper": _paper, "paper-2d": _paper_2d, "hermes": _hermes, "3dsim": _threedsim,
            "physical": _physical}


def preset_names() -> tuple[str, ...]:
    """Names accepted by :func:`preset`."""
    return tuple(_PRESETS)


def preset(name: str, /, **overrides) -> ChipConfig:
    """A named chip; keyword arguments override any ChipConfig field (e.g. ``n_tiles=2000``)."""
    key = str(name).lower()
    if key not in _PRESETS:
        raise ValueError(f"preset(name={name!r}): unknown chip preset; choose one of "
                         f"{', '.join(preset_names())}")
    return _PRESETS[key](**overrides)
