"""The bounded-state engine: exact against the reference on long sequences and against the
previous engine on published models, its O(1) repeated additions bit for bit, tile runs and join
slots by hand, and a state that does not grow with tokens x operations."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimoe_lib import hardware, mapping, zoo
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import Workload, build_program, engine_input, run_engine, simulate
from aimoe_lib.simulator.engine import _repeat_add_py, engine_state_bytes, state_bytes_estimate
from aimoe_lib.simulator.engine_v1 import run_engine_v1
from aimoe_lib.simulator.reference import simulate_reference


def _fit_chip(spec, rows, n_tiles, extra_tiers=0, **kw):
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, rows, rows)
                 for m in spec.matrices() if m.role.value != "embedding")
    return hardware.ChipConfig(n_tiles=n_tiles, n_tiers=-(-blocks // n_tiles) + extra_tiers,
                               tier_rows=rows, tier_cols=rows, **kw)


# ------------------------------------------------------------------ long sequences vs reference
@st.composite
def long_cases(draw):
    """Small models, long prompts and many generated tokens (tens of passes), with and without a
    KV cache, causal or pass-synchronised attention, MoE or dense, any unit assignment."""
    moe = draw(st.booleans())
    n_layers = draw(st.integers(1, 2))
    kw = {}
    if moe:
        e = draw(st.integers(2, 4))
        kw = dict(n_experts=e, top_k=draw(st.integers(1, e)), d_expert=8,
                  n_shared_experts=draw(st.integers(0, 1)))
    spec = ModelSpec(d_model=16, n_layers=n_layers, n_heads=2, d_ff=16, vocab_size=8,
                     ffn=draw(st.sampled_from(["gelu", "swiglu"])), **kw)
    sync = draw(st.sampled_from(["causal", "pass"]))
    switch = draw(st.sampled_from([0.0, 0.0, 35.0]))
    mvm = draw(st.sampled_from([100.0, 132.94148969889065, 0.1]))  # paper, physical, odd
    chip = _fit_chip(spec, 8, draw(st.integers(1, 8)), extra_tiers=draw(st.integers(0, 2)),
                     cost=hardware.CostModel(mvm_latency_ns=mvm,
                                             tier_switch_latency_ns=switch,
                                             tier_switch_energy_pj=switch * 10),
                     n_dpus=draw(st.integers(1, 3)), n_mha_units=draw(st.integers(1, 2)),
                     unit_assignment=draw(st.sampled_from(["pool", "per_layer"])),
                     kv_placement="sram", dataflow=hardware.Dataflow(attention_sync=sync))
    m = mapping.map_model(spec, chip, draw(st.sampled_from(["in_order", "balanced", "random"])),
                          seed=draw(st.integers(0, 9)))
    kv = draw(st.booleans())
    w = Workload(batch=draw(st.integers(1, 3)), prompt_len=draw(st.integers(1, 48 if kv else 8)),
                 gen_len=draw(st.integers(2, 40 if kv else 8)), kv_cache=kv,
                 seed=draw(st.integers(0, 99)))
    return spec, chip, m, w


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=long_cases())
def test_engine_equals_reference_on_long_sequences(case):
    """Up to 48 prompt and 40 generated tokens (8 and 8 without a KV cache; every pass reuses
    the sequence's release state and the join slots): the engine and the reference agree
    exactly."""
    spec, chip, m, w = case
    a, b = simulate(spec, chip, m, w), simulate_reference(spec, chip, m, w)
    assert a.makespan_ns == b.makespan_ns
    assert np.array_equal(a.token_times_ns, b.token_times_ns)
    assert a.tile_conflicts == b.tile_conflicts and a.n_events == b.n_events
    assert a.tier_mvms == b.tier_mvms and np.array_equal(a.tile_busy_ns, b.tile_busy_ns)
    assert math.isclose(a.stall_ns, b.stall_ns, rel_tol=1e-12, abs_tol=1e-9)
    for k in a.energy_breakdown_pj:
        assert math.isclose(a.energy_breakdown_pj[k], b.energy_breakdown_pj[k], rel_tol=1e-12,
                            abs_tol=1e-9), k


# ------------------------------------------------------------------ published models vs v1
@pytest.mark.parametrize("model, preset, batch, prompt, gen, kv", [
    ("mixtral-8x7b", "paper", 4, 24, 16, True),
    ("mixtral-8x7b", "physical", 3, 16, 8, True),
    ("mixtral-8x7b", "3dsim", 2, 8, 4, True),
    ("olmoe-1b-7b", "physical", 2, 6, 4, False),
])
def test_engine_equals_the_previous_engine_field_by_field(model, preset, batch, prompt, gen, kv):
    """On published models, the physical preset's non-integer MVM latency (so repeated
    additions round) and 3D-SiM's pass-synchronised attention, every output of the previous
    engine, floats bit for bit (same additions in the same order)."""
    spec = zoo.get(model)
    chip = mapping.fitting_chip(spec, n_tiers=64, preset=preset)
    m = mapping.map_model(spec, chip, "in_order")
    w = Workload(batch=batch, prompt_len=prompt, gen_len=gen, kv_cache=kv)
    inp = engine_input(build_program(spec, chip, m, w))
    new, old = run_engine(inp), run_engine_v1(inp)
    for name in new._fields:
        assert np.array_equal(getattr(new, name), getattr(old, name)), name


# ------------------------------------------------------------------ repeated additions
def _loop(v, step, n):
    for _ in range(n):
        v = v + step
    return v


@settings(max_examples=400, deadline=None)
@given(v=st.one_of(st.floats(0, 1e15), st.sampled_from([0.0, 2.0**33 - 1e-6, 2.0**52, 4.5e15])),
       step=st.one_of(st.floats(0, 1e4), st.sampled_from([100.0, 132.94148969889065, 0.5, 1e-9])),
       n=st.integers(0, 3000))
def test_repeated_addition_is_the_loop_bit_for_bit(v, step, n):
    """``v += step`` n times, done per binade: the same float as the loop (ties, sums that cross
    powers of two, steps below half a unit)."""
    assert _repeat_add_py(v, step, n) == _loop(v, step, n)


def test_repeated_addition_by_hand():
    """2**53 + 1 rounds back to 2**53 (ties to even); 0.1 added ten times is not 1.0."""
    assert _repeat_add_py(2.0**53, 1.0, 1000) == 2.0**53
    assert _repeat_add_py(0.0, 0.1, 10) == _loop(0.0, 0.1, 10) != 1.0
    assert _repeat_add_py(1.0, 2.0**-53, 100) == 1.0  # below half a unit: no change
    assert _repeat_add_py(5.0, 100.0, 10**6) == 5.0 + 100.0 * 10**6  # exact integers


# ------------------------------------------------------------------ tile runs and join slots
def test_tile_runs_by_hand():
    """A 16-wide layer on 16 x 16 tiers, one tier per tile, in order: q, k, v, o, up, down and
    the LM head are one block each on tiles 0..6. The Q/K/V MVM is one group over tiles 0-2
    (one block each): those three always move together and form one run; o, up, down and the
    head are a run of one tile each. The event log still has one bar per tile."""
    spec = ModelSpec(d_model=16, n_layers=1, n_heads=1, d_ff=16, vocab_size=16, ffn="relu")
    chip = hardware.ChipConfig(n_tiles=7, n_tiers=1, tier_rows=16, tier_cols=16)
    prog = build_program(spec, chip, mapping.map_model(spec, chip), Workload())
    assert prog.run_len.tolist() == [3, 1, 1, 1, 1]  # qkv | o | up | down | head
    assert prog.tile_run.tolist() == [0, 0, 0, 1, 2, 3, 4]
    assert prog.run_tile0.tolist() == [0, 3, 4, 5, 6]
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload(record_events=True))
    qkv = r.events[r.events["op"] == r.op_names.index("L0.qkv")]
    assert qkv["unit"].tolist() == [0, 1, 2] and np.all(qkv["end_ns"] - qkv["start_ns"] == 100.0)
    assert r.tile_busy_ns.tolist() == [100.0] * 7


def test_join_slots_by_hand():
    """A MoE layer's combination waits for top_k + shared experts: the only join, one slot per
    token instance; a dense model has none."""
    moe = ModelSpec(d_model=16, n_layers=2, n_heads=1, d_ff=16, vocab_size=16, ffn="relu",
                    n_experts=4, top_k=2, d_expert=8, n_shared_experts=1)
    chip = _fit_chip(moe, 16, 4)
    prog = build_program(moe, chip, mapping.map_model(moe, chip), Workload())
    joins = np.flatnonzero(prog.join_slot >= 0)
    assert [prog.names[o] for o in joins] == ["L0.combine+add+ln", "L1.combine+add+ln"]
    assert prog.npreds[joins].tolist() == [3, 3] and prog.n_join_slots == 1
    dense = ModelSpec(d_model=16, n_layers=2, n_heads=1, d_ff=16, vocab_size=16, ffn="relu")
    chip = _fit_chip(dense, 16, 4)
    assert build_program(dense, chip, mapping.map_model(dense, chip), Workload()).n_join_slots == 0


# ------------------------------------------------------------------ bounded state
def test_state_does_not_grow_with_tokens_times_operations():
    """Mixtral-8x7B, 256 x (2048 + 512): the previous engine's tables alone are 16 B x 256 x 2559
    instances x 451 operations = 4.7 GB; this engine needs under 0.5 GB, and each further
    generated token of a sequence adds 8 B (its time) + 16 B (its join slot) + 32 x 2 x 4 B
    (its routed experts, twice while transposed) = 280 B, not 16 B x 451 operations."""
    spec = zoo.get("mixtral-8x7b")
    chip = mapping.fitting_chip(spec, n_tiers=64, preset="paper")
    w = Workload(batch=256, prompt_len=2048, gen_len=512)
    assert state_bytes_estimate(spec, chip, w) > 16 * 256 * 2559 * 451
    assert engine_state_bytes(spec, chip, w) < 0.5e9
    one = [engine_state_bytes(spec, chip, Workload(batch=1, prompt_len=128, gen_len=g))
           for g in (256, 512)]
    assert (one[1] - one[0]) / 256 == 8 + 16 + 32 * 2 * 4


@pytest.mark.parametrize("batch, prompt, gen, kv", [(8, 64, 64, True), (3, 20, 7, False),
                                                   (10**4, 1, 1, True), (1, 4096, 4, True)])
def test_the_guard_bounds_the_engines_state(batch, prompt, gen, kv):
    """This engine's state (what simulate's guard checks) stays below the previous engine's
    tables (state_bytes_estimate) once a run has more than a handful of tokens (below that, the
    per-tile run tables of this engine, 40 B a tile, and its queue's margin of 1024 events are
    not in the previous engine's 16 B a tile)."""
    spec = zoo.get("mixtral-8x7b")
    chip = mapping.fitting_chip(spec, n_tiers=64, preset="paper")
    w = Workload(batch=batch, prompt_len=prompt, gen_len=gen, kv_cache=kv)
    assert engine_state_bytes(spec, chip, w) <= state_bytes_estimate(spec, chip, w)


def test_a_queue_too_small_is_run_again_with_the_same_result(monkeypatch):
    """The queue holds queue_capacity events; a run that needs more stops and runs again with
    four times as many: with a capacity of 1 (so 1, 4, 16, ... events) every output is the
    same as with the default, floats bit for bit."""
    from aimoe_lib.simulator import engine

    spec = zoo.get("mixtral-8x7b")
    chip = mapping.fitting_chip(spec, n_tiers=64, preset="physical")
    m = mapping.map_model(spec, chip, "in_order")
    inp = engine_input(build_program(spec, chip, m, Workload(batch=3, prompt_len=12, gen_len=5)))
    assert engine.queue_capacity(inp) == 3 * 12 * int(np.max(np.diff(inp.succ_ptr))) + 1024
    full = run_engine(inp)
    calls = []
    real = engine._engine

    def counted(i, cap):
        calls.append(cap)
        return real(i, cap)

    monkeypatch.setattr(engine, "queue_capacity", lambda i: 1)
    monkeypatch.setattr(engine, "_engine", counted)
    small = run_engine(inp)
    assert calls[:3] == [1, 4, 16] and len(calls) >= 3
    for name in full._fields:
        assert np.array_equal(getattr(full, name), getattr(small, name)), name


@pytest.mark.parametrize("mvm", [1e-300, 1e-9])
@pytest.mark.parametrize("sync", ["causal", "pass"])
def test_events_at_equal_times_run_in_key_order(mvm, sync):
    """MVMs of 1e-300 ns add nothing to a time of about 1 ns (every tile operation ends when it
    starts) and of 1e-9 ns next to nothing: many events share a time, and the queue (a radix
    heap over the times' bits, ties by key) must hand them out in the order of their keys, as
    the reference's heap does: every output agrees, and with the previous engine bit for bit."""
    spec = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=16, vocab_size=8, ffn="swiglu",
                     n_experts=4, top_k=2, d_expert=8, n_shared_experts=1)
    chip = _fit_chip(spec, 8, 4, cost=hardware.CostModel(mvm_latency_ns=mvm),
                     kv_placement="sram", dataflow=hardware.Dataflow(attention_sync=sync))
    m = mapping.map_model(spec, chip, "in_order")
    w = Workload(batch=3, prompt_len=20, gen_len=6)
    a, b = simulate(spec, chip, m, w), simulate_reference(spec, chip, m, w)
    assert a.makespan_ns == b.makespan_ns and a.n_events == b.n_events
    assert np.array_equal(a.token_times_ns, b.token_times_ns)
    assert a.tile_conflicts == b.tile_conflicts and a.stall_ns == b.stall_ns
    assert np.array_equal(a.tile_busy_ns, b.tile_busy_ns)
    inp = engine_input(build_program(spec, chip, m, w))
    new, old = run_engine(inp), run_engine_v1(inp)
    for name in new._fields:
        assert np.array_equal(getattr(new, name), getattr(old, name)), name
