"""The context-length study of chapter 4: what a longer prompt does to the KV cache and to the time
and energy of each generated token, on a chip of the book's preset.

Every decoded token attends over all cached keys and values. Its attention costs grow linearly
with the context (``CostModel.cost('mha', d, 1, n)``), and once the KV cache outgrows the on-chip
capacity (``n_mha_units x kv_sram_mb_per_mha_unit``) the spilled part of every read comes from
off-chip memory (:func:`~aimoe_lib.simulator.program.kv_spill_fraction`; the ``physical`` preset's
one HBM3 stack: 819.2 GB/s, 4 pJ per bit).

The prefill of a long prompt costs far more than the few tokens generated after it (every prompt
token reads the spilled cache of all tokens before it), so the study separates the two:
:func:`context_point` runs the workload and a *reference* run that stops after the prefill (one
generated token), and reports the difference, divided by the decoded tokens, as the cost of a
decoded token. The reference chip keeps the main run's spilled fraction (its on-chip capacity is
scaled by the ratio of the two runs' positions), so both prefills are the same operations with the
same costs and the difference holds the decode passes alone. numpy core: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import zoo
from .experiments import PRESET
from .hardware import ChipConfig
from .mapping import Mapping, fitting_chip, map_model
from .models import ModelSpec
from .simulator import SimResult, Workload, kv_cache_bytes, kv_spill_fraction, simulate
from .simulator.engine import engine_state_bytes

__all__ = ["MODEL", "PROMPTS", "BATCH", "GEN_LEN", "N_TIERS", "ContextRow", "context_chip",
           "reference_chip", "kv_capacity_bytes", "context_point", "context_sweep"]

MODEL = "mixtral-8x7b"
"""The study's model (:func:`~aimoe_lib.zoo.get`): 32 layers, 8 KV heads of 128, so
2 x 8 x 128 x 32 x 2 bytes = 128 KiB of KV cache per token (16-bit, A-KV-BYTES)."""
PROMPTS = (128, 512, 2048, 8192)
"""Prompt lengths of the sweep, tokens."""
BATCH = 1
"""Sequences per run: one, so each decoded token is a chain through the layers and its time splits
into the costs along it (and the runs stay within seconds at 8k prompt tokens)."""
GEN_LEN = 4
"""Tokens generated per sequence: the first comes out of the prefill, the other three are
decoded."""
N_TIERS = 64
"""Tiers per tile of the study's chip (tiles follow from the model, as in chapter 7)."""


@dataclass(frozen=True)
class ContextRow:
    """One prompt length of :func:`context_sweep`. Per-token costs are those of a *decoded* token
    (the decode passes alone, see the module docstring); run totals include the prefill."""

    model: str
    """Model name."""
    prompt_len: int
    """Prompt tokens per sequence."""
    batch: int
    """Sequences run together."""
    gen_len: int
    """Tokens generated per sequence (gen_len - 1 of them decoded after the prefill)."""
    kv_bytes: float
    """KV cache at the end of the run, bytes
    (:func:`~aimoe_lib.simulator.program.kv_cache_bytes`)."""
    kv_capacity_bytes: float
    """On-chip KV capacity, bytes: n_mha_units x kv_sram_mb_per_mha_unit x 1e6 (inf when
    unbounded)."""
    spill_fraction: float
    """Part of every KV read and write served by off-chip memory
    (:func:`~aimoe_lib.simulator.program.kv_spill_fraction`)."""
    state_bytes: int
    """Engine state the run needs, bytes: what :func:`~aimoe_lib.simulator.engine.simulate`'s
    guard checks (:func:`~aimoe_lib.simulator.engine.engine_state_bytes`)."""
    ttft_ns: float
    """Time to first token (the prefill), mean over sequences, ns."""
    tpot_ns: float
    """Time per output token of the decode passes, mean, ns."""
    tokens_per_s: float
    """Generated tokens per second over the whole run, prefill included."""
    decode_ns: float
    """Time the decode passes add to the run (makespan minus the reference's), ns."""
    attention_ns: float
    """Attention-unit time per decoded token, ns: on its chain, summed over the layers."""
    dram_ns: float
    """Off-chip KV traffic time per decoded token, ns: on its chain, summed over the layers."""
    decode_energy_pj: dict = field(default_factory=dict)
    """Energy per decoded token by kind (keys of
    :attr:`~aimoe_lib.simulator.result.SimResult.energy_breakdown_pj`), pJ."""
    run_energy_pj: dict = field(default_factory=dict)
    """Energy of the whole run by kind, prefill included, pJ."""

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second while decoding: batch / time per output token."""
        return self.batch / (self.tpot_ns * 1e-9)

    @property
    def decode_dynamic_pj(self) -> float:
        """Energy of the operations of one decoded token, pJ (static energy left out)."""
        return sum(v for k, v in self.decode_energy_pj.items() if k != "passive")

    @property
    def decode_total_pj(self) -> float:
        """Energy of one decoded token with its share of static power, pJ."""
        return sum(self.decode_energy_pj.values())

    @property
    def attention_time_share(self) -> float:
        """Attention's share of the time per output token."""
        return self.attention_ns / self.tpot_ns

    @property
    def dram_time_share(self) -> float:
        """Off-chip KV traffic's share of the time per output token (its transfers only; at a
        batch above 1 the sequences also queue for the one channel)."""
        return self.dram_ns / self.tpot_ns

    def energy_share(self, kind: str, dynamic: bool = False) -> float:
        """Share of ``kind`` in a decoded token's total (or, ``dynamic=True``, dynamic) energy."""
        return self.decode_energy_pj[kind] / (self.decode_dynamic_pj if dynamic
                                              else self.decode_total_pj)

    @property
    def run_energy_total_pj(self) -> float:
        """Energy of the whole run, pJ."""
        return sum(self.run_energy_pj.values())


def context_chip(model: ModelSpec, n_tiers: int = N_TIERS, preset: str = PRESET) -> ChipConfig:
    """The fewest tiles of ``n_tiers`` tiers of ``preset`` that hold ``model``, with digital and
    attention units provisioned per layer (:func:`~aimoe_lib.mapping.fitting_chip`)."""
    return fitting_chip(model, n_tiers=n_tiers, units="per_layer", name="fitted", preset=preset)


def kv_capacity_bytes(chip: ChipConfig) -> float:
    """On-chip KV capacity, bytes: n_mha_units x kv_sram_mb_per_mha_unit x 1e6 (inf when the
    preset sets no bound)."""
    mb = chip.kv_sram_mb_per_mha_unit
    return math.inf if mb is None else chip.n_mha_units * mb * 1e6


def reference_chip(chip: ChipConfig, workload: Workload, reference: Workload) -> ChipConfig:
    """``chip`` with its on-chip KV capacity scaled by reference.positions / workload.positions, so
    that ``reference`` (the same batch, fewer positions) spills the same fraction of its KV cache
    as ``workload`` and its prefill costs exactly what the workload's does."""
    mb = chip.kv_sram_mb_per_mha_unit
    if mb is None:
        return chip
    return chip.replace(kv_sram_mb_per_mha_unit=mb * reference.positions / workload.positions)


def _unit_time(r: SimResult, kind: str) -> float:
    return float(r.unit_busy_ns[kind].sum())


def context_point(model: ModelSpec, chip: ChipConfig, mapped: Mapping, prompt_len: int,
                  batch: int = BATCH, gen_len: int = GEN_LEN, seed: int = 0) -> ContextRow:
    """Simulate ``batch`` sequences of ``prompt_len`` prompt and ``gen_len`` generated tokens (KV
    cache on) and the prefill-only reference (``gen_len=1``, on :func:`reference_chip`), and
    return the run's KV cache, spill, latencies and the cost of one decoded token (the
    difference of the two runs over the batch x (gen_len - 1) decoded tokens)."""
    if gen_len < 2:
        raise ValueError(f"context_point(gen_len={gen_len!r}): needs at least 2 generated tokens, "
                         "one from the prefill and one decoded")
    w = Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len, seed=seed)
    w_ref = Workload(batch=batch, prompt_len=prompt_len, gen_len=1, seed=seed)
    run = simulate(model, chip, mapped, w)
    ref = simulate(model, reference_chip(chip, w, w_ref), mapped, w_ref)
    n_dec = batch * (gen_len - 1)
    e, e_ref = run.energy_breakdown_pj, ref.energy_breakdown_pj
    return ContextRow(
        model=model.name, prompt_len=prompt_len, batch=batch, gen_len=gen_len,
        kv_bytes=kv_cache_bytes(model, chip, w), kv_capacity_bytes=kv_capacity_bytes(chip),
        spill_fraction=kv_spill_fraction(model, chip, w),
        state_bytes=engine_state_bytes(model, chip, w),
        ttft_ns=float(run.ttft_ns.mean()), tpot_ns=run.tpot_stats_ns()["mean"],
        tokens_per_s=run.tokens_per_s, decode_ns=run.makespan_ns - ref.makespan_ns,
        attention_ns=(_unit_time(run, "mha") - _unit_time(ref, "mha")) / n_dec,
        dram_ns=(_unit_time(run, "dram") - _unit_time(ref, "dram")) / n_dec,
        decode_energy_pj={k: (e[k] - e_ref[k]) / n_dec for k in e},
        run_energy_pj=dict(e))


def context_sweep(model: str | ModelSpec = MODEL, prompts: Sequence[int] = PROMPTS,
                  batch: int = BATCH, gen_len: int = GEN_LEN, n_tiers: int = N_TIERS,
                  preset: str = PRESET, seed: int = 0) -> list[ContextRow]:
    """:func:`context_point` at each prompt length, for ``model`` (a zoo name or a ModelSpec) on
    :func:`context_chip` mapped ``in_order``."""
    spec = zoo.get(model) if isinstance(model, str) else model
    chip = context_chip(spec, n_tiers, preset)
    mapped = map_model(spec, chip, "in_order")
    return [context_point(spec, chip, mapped, int(p), batch, gen_len, seed) for p in prompts]
