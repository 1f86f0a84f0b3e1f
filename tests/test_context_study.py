"""The context-length study (aimoe_lib.context_study) and the KV-cache costs it reads: closed forms
from the published model configuration, the JEDEC HBM3 figure and hand-worked tiny runs."""

import math

import numpy as np
import pytest

from aimoe_lib import context_study as cs
from aimoe_lib import mapping, zoo
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import (
    RES_NAMES,
    Workload,
    kv_cache_bytes,
    kv_spill_fraction,
    simulate,
)
from aimoe_lib.simulator.engine import MAX_STATE_BYTES, engine_state_bytes

HBM3_BYTES_PER_NS = 6.4 * 1024 / 8
"""One HBM3 stack (JEDEC JESD238): 1024 pins at 6.4 Gb/s = 819.2 GB/s = 819.2 bytes per ns."""
HBM_PJ_PER_BYTE = 4.0 * 8
"""4 pJ per bit (the 'physical' preset's A-HBM-ENERGY) = 32 pJ per byte."""
MIXTRAL_KV_BYTES_PER_POSITION = 2 * 8 * 128 * 32 * 2
"""Mixtral-8x7B (config.json: 32 layers, 8 KV heads, head_dim 4096 / 32 = 128): keys and values
of 8 heads of 128 in each of 32 layers, 2 bytes each (A-KV-BYTES) = 131 072 bytes = 128 KiB."""


@pytest.fixture(scope="module")
def mixtral_chip():
    spec = zoo.get("mixtral-8x7b")
    return spec, cs.context_chip(spec)


# ------------------------------------------------------------------ KV cache and spill
def test_mixtral_kv_cache_is_128_kib_per_position(mixtral_chip):
    spec, chip = mixtral_chip
    assert MIXTRAL_KV_BYTES_PER_POSITION == 128 * 1024
    w = Workload(batch=3, prompt_len=100, gen_len=5)  # positions 100 + 5 - 1 = 104
    assert kv_cache_bytes(spec, chip, w) == 3 * 104 * MIXTRAL_KV_BYTES_PER_POSITION
    assert kv_cache_bytes(spec, chip, Workload(batch=3, prompt_len=100, gen_len=5,
                                                kv_cache=False)) == 0


def test_spill_is_the_part_beyond_2_mb_per_attention_unit(mixtral_chip):
    spec, chip = mixtral_chip
    assert chip.n_mha_units == 8 * 32  # 8 attention units per layer, 32 layers
    capacity = 256 * 2e6  # bytes
    assert cs.kv_capacity_bytes(chip) == capacity
    # 2,051 positions of one sequence (269 MB) fit; 8,195 (1.07 GB) do not
    assert kv_spill_fraction(spec, chip, Workload(prompt_len=2048, gen_len=4)) == 0
    long = Workload(prompt_len=8192, gen_len=4)
    assert math.isclose(kv_spill_fraction(spec, chip, long),
                        1 - capacity / (8195 * MIXTRAL_KV_BYTES_PER_POSITION), rel_tol=1e-12)
    assert math.isclose(kv_spill_fraction(spec, chip, long), 0.5233, abs_tol=1e-4)
    batch8 = Workload(batch=8, prompt_len=2048, gen_len=4)
    assert math.isclose(kv_spill_fraction(spec, chip, batch8),
                        1 - capacity / (8 * 2051 * MIXTRAL_KV_BYTES_PER_POSITION), rel_tol=1e-12)


def _tiny():
    """Two layers of d 16 with 2 heads of 8: 2 x 2 x 8 = 32 KV elements per layer and position,
    64 bytes; a physical-preset chip with one attention unit holding 200 bytes of KV cache."""
    spec = ModelSpec(name="tiny", d_model=16, n_layers=2, n_heads=2, d_ff=16, vocab_size=8,
                     ffn="relu")
    chip = mapping.fitting_chip(spec, n_tiers=4, preset="physical",
                                kv_sram_mb_per_mha_unit=200e-6)
    return spec, chip, mapping.map_model(spec, chip)


def test_a_spilled_kv_read_takes_its_bytes_over_819_gb_s():
    """Each layer of each token reads the keys and values of the positions up to its own (pos + 1
    of them) and writes its own: (pos + 2) x 64 bytes, of which the spilled fraction crosses the
    HBM3 link at 819.2 bytes per ns and 32 pJ per byte."""
    spec, chip, m = _tiny()
    w = Workload(batch=1, prompt_len=3, gen_len=3, record_events=True)  # positions 0..4
    spill = 1 - 200 / (5 * 2 * 64)  # 640 bytes of KV, 200 on chip
    assert math.isclose(kv_spill_fraction(spec, chip, w), spill, rel_tol=1e-12)
    r = simulate(spec, chip, m, w)
    ev = r.events[r.events["resource"] == RES_NAMES.index("dram")]
    positions = [0, 1, 2, 3, 4]  # prefill 0..2, then one decoded token at 3 and at 4
    expect = sorted(spill * 64 * (p + 2) / HBM3_BYTES_PER_NS for p in positions for _ in range(2))
    assert np.allclose(sorted(ev["end_ns"] - ev["start_ns"]), expect, rtol=1e-12, atol=0)
    total_bytes = 2 * sum(spill * 64 * (p + 2) for p in positions)
    assert math.isclose(r.energy_breakdown_pj["dram"], total_bytes * HBM_PJ_PER_BYTE, rel_tol=1e-12)
    assert math.isclose(r.unit_busy_ns["dram"].sum(), total_bytes / HBM3_BYTES_PER_NS,
                        rel_tol=1e-12)


# ------------------------------------------------------------------ the decode passes alone
def test_the_reference_run_spills_the_same_fraction():
    spec, chip, _ = _tiny()
    w, ref = Workload(prompt_len=6, gen_len=4), Workload(prompt_len=6, gen_len=1)
    rc = cs.reference_chip(chip, w, ref)
    assert math.isclose(kv_spill_fraction(spec, rc, ref), kv_spill_fraction(spec, chip, w),
                        rel_tol=1e-12)
    assert kv_spill_fraction(spec, chip, ref) < kv_spill_fraction(spec, chip, w)
    unbounded = chip.replace(kv_sram_mb_per_mha_unit=None)
    assert cs.reference_chip(unbounded, w, ref) is unbounded
    assert cs.kv_capacity_bytes(unbounded) == math.inf


@pytest.mark.parametrize("batch", [1, 2])
def test_a_decoded_token_costs_its_attention_and_kv_traffic(batch):
    """Decoded tokens sit at positions prompt .. prompt + gen - 2; each layer's attention is
    2 d MACs per cached key (pos + 1 keys) at 256 MACs per ns and 1 pJ per MAC (A-MHA-MACS), its
    spilled KV traffic (pos + 2) x 64 bytes x spill at 819.2 bytes per ns and 32 pJ per byte."""
    spec, chip, m = _tiny()
    prompt, gen = 5, 4
    row = cs.context_point(spec, chip, m, prompt, batch=batch, gen_len=gen)
    positions = batch * (prompt + gen - 1)
    spill = 1 - 200 / (positions * 2 * 64)
    assert math.isclose(row.spill_fraction, spill, rel_tol=1e-12)
    assert row.kv_bytes == positions * 2 * 64 and row.kv_capacity_bytes == 200
    dec = range(prompt, prompt + gen - 1)
    macs = [2 * 16 * (p + 1) for p in dec]
    kv = [spill * 64 * (p + 2) for p in dec]
    assert math.isclose(row.attention_ns, 2 * np.mean(macs) / 256, rel_tol=1e-9)
    assert math.isclose(row.decode_energy_pj["attention"], 2 * np.mean(macs) * 1.0, rel_tol=1e-9)
    assert math.isclose(row.dram_ns, 2 * np.mean(kv) / HBM3_BYTES_PER_NS, rel_tol=1e-9)
    assert math.isclose(row.decode_energy_pj["dram"], 2 * np.mean(kv) * HBM_PJ_PER_BYTE,
                        rel_tol=1e-9)
    # a decoded token runs every MVM of the model once, LM head included: one token alone
    one = simulate(spec, chip, m, Workload(prompt_len=1, gen_len=1))
    assert math.isclose(row.decode_energy_pj["mvm"], one.energy_breakdown_pj["mvm"], rel_tol=1e-9)
    assert math.isclose(row.decode_energy_pj["passive"],
                        chip.passive_power_w * row.decode_ns * 1e3 / (batch * (gen - 1)),
                        rel_tol=1e-9)
    assert math.isclose(row.decode_total_pj, row.decode_dynamic_pj
                        + row.decode_energy_pj["passive"], rel_tol=1e-12)
    assert row.decode_tokens_per_s == pytest.approx(batch / row.tpot_ns * 1e9)
    assert 0 < row.attention_time_share < 1 and 0 < row.dram_time_share < 1


def test_a_decoded_token_needs_a_decode_pass():
    spec, chip, m = _tiny()
    with pytest.raises(ValueError, match="gen_len"):
        cs.context_point(spec, chip, m, 4, gen_len=1)


def test_a_longer_prompt_adds_attention_time_linearly():
    """Batch 1, no spill: attention per decoded token grows by 2 d / 256 ns per layer and cached
    key (the time per output token grows too, by about as much: its waits for tiles depend on
    which experts the tokens at those positions picked)."""
    from aimoe_lib import teaching

    spec = teaching.simulation_moe()
    rows = cs.context_sweep(spec, prompts=(8, 40), gen_len=3, n_tiers=16)
    assert all(r.spill_fraction == 0 and r.dram_ns == 0 for r in rows)
    per_key = spec.n_layers * 2 * spec.d_model / 256  # ns per cached key, all layers
    assert math.isclose(rows[1].attention_ns - rows[0].attention_ns, 32 * per_key, rel_tol=1e-9)
    assert rows[1].tpot_ns > rows[0].tpot_ns
    assert rows[0].model == spec.name and [r.prompt_len for r in rows] == [8, 40]


# ------------------------------------------------------------------ feasibility
def test_the_engine_state_of_a_long_prompt_grows_per_pass(mixtral_chip):
    """With a KV cache a prompt is one pass of prompt_len token instances, so the engine's state
    (engine_state_bytes, what simulate's guard checks) grows linearly with the prompt, and the
    study's longest run stays far below the default limit; without one, each of the gen_len
    passes re-runs the whole prefix, and every token instance keeps its 16 B join slot: 16 B x
    gen_len x the longer prompt at least."""
    spec, chip = mixtral_chip
    est = [engine_state_bytes(spec, chip, Workload(batch=cs.BATCH, prompt_len=p,
                                                   gen_len=cs.GEN_LEN))
           for p in (2048, 4096, 6144, 8192)]
    steps = np.diff(est)
    assert np.all(steps == steps[0]) and steps[0] > 0
    assert max(est) < MAX_STATE_BYTES / 50
    no_cache = [engine_state_bytes(spec, chip, Workload(prompt_len=p, gen_len=cs.GEN_LEN,
                                                        kv_cache=False))
                for p in (2048, 8192)]
    assert no_cache[1] - no_cache[0] >= 16 * cs.GEN_LEN * (8192 - 2048)
