"""Simulator: agreement with the reference scheduler, closed forms, energy bookkeeping, errors."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimoe_lib import hardware, mapping, zoo
from aimoe_lib.hardware import OpKind
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import Workload, simulate
from aimoe_lib.simulator.program import build_program
from aimoe_lib.simulator.reference import simulate_reference


def _fit_chip(spec, rows, n_tiles, extra_tiers=0, embedding=False, **kw):
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, rows, rows)
                 for m in spec.matrices() if embedding or m.role.value != "embedding")
    return hardware.ChipConfig(n_tiles=n_tiles, n_tiers=-(-blocks // n_tiles) + extra_tiers,
                               tier_rows=rows, tier_cols=rows, **kw)


# ------------------------------------------------------------------------- reference agreement
@st.composite
def dataflows(draw):
    """This project's dataflow half the time, else any combination of the knobs (a 'pass'
    attention with DRAM traffic is refused, so it comes without traffic)."""
    if draw(st.booleans()):
        return hardware.Dataflow()
    sync = draw(st.sampled_from(["causal", "pass"]))
    return hardware.Dataflow(
        attention_sync=sync, norm_before_first_layer=draw(st.booleans()),
        final_norm_every_token=draw(st.booleans()),
        partial_sums=draw(st.sampled_from(["one_add", "chain"])),
        transfer_into_attention=draw(st.booleans()),
        kv_traffic=draw(st.booleans()) if sync == "causal" else False)


@st.composite
def cases(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    d = heads * draw(st.sampled_from([8, 16]))
    moe = draw(st.booleans())
    n_layers = draw(st.integers(1, 3))
    kw = {}
    if moe:
        e = draw(st.integers(2, 5))
        kw = dict(n_experts=e, top_k=draw(st.integers(1, e)), d_expert=draw(st.sampled_from([8, 24])),
                  n_shared_experts=draw(st.integers(0, 1)),
                  first_dense=draw(st.integers(0, n_layers - 1)))
    spec = ModelSpec(d_model=d, n_layers=n_layers, n_heads=heads,
                     d_ff=draw(st.sampled_from([8, 40])), vocab_size=draw(st.integers(4, 30)),
                     ffn=draw(st.sampled_from(["gelu", "swiglu", "relu"])), **kw)
    rows = draw(st.sampled_from([8, 16]))
    strategies = ["in_order", "balanced", "random"] + (["moe_stacked"] if moe else [])
    strategy = draw(st.sampled_from(strategies))
    digital = draw(st.sampled_from([("embedding",), ()]))
    switch = draw(st.sampled_from([0.0, 0.0, 35.0]))
    chip = _fit_chip(spec, rows, draw(st.integers(1, 10)), embedding=not digital,
                     cost=hardware.CostModel(tier_switch_latency_ns=switch,
                                             tier_switch_energy_pj=switch * 10),
                     extra_tiers=draw(st.integers(0, 2)) + (200 if strategy == "moe_stacked" else 0),
                     n_dpus=draw(st.integers(1, 4)), n_mha_units=draw(st.integers(1, 3)),
                     unit_assignment=draw(st.sampled_from(["pool", "per_layer"])),
                     kv_placement=draw(st.sampled_from(["sram", "dram"])),
                     dataflow=(df := draw(dataflows())),
                     kv_sram_mb_per_mha_unit=(None if df.attention_sync.value == "pass"
                                              else draw(st.sampled_from([None, None, 2e-4]))))
    m = mapping.map_model(spec, chip, strategy, seed=draw(st.integers(0, 9)), digital=digital)
    w = Workload(batch=draw(st.integers(1, 3)), prompt_len=draw(st.integers(1, 4)),
                 gen_len=draw(st.integers(1, 3)), kv_cache=draw(st.booleans()),
                 routing=draw(st.sampled_from(["uniform", "zipf"])), seed=draw(st.integers(0, 99)))
    return spec, chip, m, w


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_fast_engine_equals_reference_scheduler(case):
    """The compiled claim-at-ready engine and the queue-based, one-event-per-tier-MVM reference
    agree exactly: same makespan, token times, conflicts, events; energies to rounding."""
    spec, chip, m, w = case
    a, b = simulate(spec, chip, m, w), simulate_reference(spec, chip, m, w)
    assert a.makespan_ns == b.makespan_ns
    assert np.array_equal(a.token_times_ns, b.token_times_ns)
    assert a.tile_conflicts == b.tile_conflicts
    assert a.n_events == b.n_events and a.tier_mvms == b.tier_mvms
    assert np.array_equal(a.tile_busy_ns, b.tile_busy_ns)
    assert math.isclose(a.stall_ns, b.stall_ns, rel_tol=1e-12, abs_tol=1e-9)
    for k in a.energy_breakdown_pj:
        assert math.isclose(a.energy_breakdown_pj[k], b.energy_breakdown_pj[k], rel_tol=1e-12,
                            abs_tol=1e-9), k


# ------------------------------------------------------------------------- closed forms
def _one_layer(d=16, d_ff=16, vocab=8, **kw):
    return ModelSpec(d_model=d, n_layers=1, n_heads=2, d_ff=d_ff, vocab_size=vocab, ffn="relu", **kw)


def _op_spans(r, name):
    """(start, end) per tile of the op called ``name`` in the event log."""
    op = r.op_names.index(name)
    ev = r.events[r.events["op"] == op]
    return ev["start_ns"], ev["end_ns"]


def test_b_blocks_on_one_tile_take_b_mvm_latencies():
    spec = _one_layer(d=32)  # q, k, v: 32 x 32 on 8 x 8 tiers -> 16 blocks each, 48 for the group
    chip = _fit_chip(spec, 8, 1)
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload(record_events=True))
    start, end = _op_spans(r, "L0.qkv")
    assert len(start) == 1 and end[0] - start[0] == 48 * 100.0


def test_the_same_blocks_on_b_tiles_take_one_mvm_latency_plus_accumulation():
    spec = _one_layer(d=32)
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, 8, 8)
                 for m in spec.matrices() if m.role.value != "embedding")
    chip = hardware.ChipConfig(n_tiles=blocks, n_tiers=1, tier_rows=8, tier_cols=8)
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload(record_events=True))
    start, end = _op_spans(r, "L0.qkv")
    assert len(start) == 48 and np.all(start == start[0]) and np.all(end - start == 100.0)
    # partial sums: q, k, v each have 4 input blocks of 8 -> 3 extra partial vectors of 32 to add
    acc = 3 * hardware.CostModel().cost(OpKind.ADD, 32 * 3).latency_ns
    a0, a1 = _op_spans(r, "L0.acc_qkv")
    assert a1[0] - a0[0] == pytest.approx(acc)
    assert a0[0] >= end.max()


def test_one_token_latency_is_the_sum_of_its_chain():
    """batch 1, one prompt token, one generated token, everything on its own tile: nothing waits,
    so the makespan is the sum of the chain worked out from the cost model by hand."""
    d, ff, vocab = 8, 8, 8
    spec = ModelSpec(d_model=d, n_layers=1, n_heads=1, d_ff=ff, vocab_size=vocab, ffn="relu")
    chip = hardware.ChipConfig(n_tiles=7, n_tiers=1, tier_rows=8, tier_cols=8)  # q k v o up down head
    c = chip.cost
    lat = lambda op, n, *a: c.cost(op, n, *a).latency_ns  # noqa: E731
    comm = lambda n: lat(OpKind.COMM, n)  # noqa: E731
    mvm = c.mvm_latency_ns
    chain = [
        comm(d) + lat(OpKind.LAYERNORM, d),                      # embedding in, ln1
        comm(d) + mvm + comm(3 * d),                             # q, k, v in parallel on 3 tiles
        comm(d) + lat(OpKind.MHA, d, 1, 1),                      # attention over 1 key
        comm(d) + mvm + comm(d),                                 # o
        lat(OpKind.ADD, d) + lat(OpKind.LAYERNORM, d),           # residual, ln2
        comm(d) + mvm + comm(ff),                                # up
        lat(OpKind.RELU, ff),                                    # activation
        comm(ff) + mvm + comm(d),                                # down
        lat(OpKind.ADD, d) + lat(OpKind.LAYERNORM, d),           # residual, final norm
        comm(d) + mvm + comm(vocab),                             # lm head
        lat(OpKind.SOFTMAX, vocab) + lat(OpKind.TOPK, vocab, 1),  # sampling
    ]
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload())
    assert r.makespan_ns == pytest.approx(sum(chain), rel=1e-12)
    assert r.tile_conflicts == 0


def test_steady_state_decode_throughput_is_set_by_the_bottleneck_tile():
    """Everything on one tile with plenty of digital units: each generated token costs the tile
    (blocks per token) x 100 ns, so throughput -> 1e9 / (blocks x 100) tokens/s (within 2%)."""
    spec = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_ff=64, vocab_size=32, ffn="gelu")
    chip = _fit_chip(spec, 16, 1, n_dpus=64, n_mha_units=64)
    m = mapping.map_model(spec, chip)
    blocks_per_token = m.n_blocks  # a decode pass uses every analog block once, the head included
    bound = 1e9 / (blocks_per_token * chip.cost.mvm_latency_ns)
    r = simulate(spec, chip, m, Workload(batch=16, prompt_len=1, gen_len=200))
    assert r.tokens_per_s == pytest.approx(bound, rel=0.02)
    assert r.tokens_per_s <= bound * (1 + 1e-12)  # never beats the bound
    assert r.bottleneck() == "tiles"


def test_a_saturated_lm_head_dpu_is_the_bottleneck_even_when_the_class_mean_is_low():
    """Units locked to layers, 2 DPUs per layer for 8 layers: 16 DPUs over 9 slots (8 layers and
    the LM head), so the head's slot owns one DPU (unit 8) and it samples every generated token
    (softmax and top-1 over a 4,096-word vocabulary). With 32 sequences that DPU never rests:
    its busy time is tokens x (softmax + top-k) by hand, throughput approaches one token per
    sampling time, and it is the bottleneck, though the DPUs' mean and the busiest tile are
    under half busy. Pooling the same 16 DPUs makes them interchangeable: then the class's most
    loaded set is the whole pool, its mean."""
    d, vocab, n_layers = 16, 4096, 8
    spec = ModelSpec(d_model=d, n_layers=n_layers, n_heads=1, d_ff=16, vocab_size=vocab,
                     ffn="relu")
    locked = _fit_chip(spec, 16, 1).provisioned(n_layers, 2, 1)
    blocks = locked.n_tiers
    locked = locked.replace(n_tiles=blocks, n_tiers=1)  # one block per tile
    w = Workload(batch=32, prompt_len=1, gen_len=32)
    r = simulate(spec, locked, mapping.map_model(spec, locked), w)
    c = locked.cost
    sample_ns = c.cost(OpKind.SOFTMAX, vocab).latency_ns + c.cost(OpKind.TOPK, vocab, 1).latency_ns
    b = r.busy_fraction()
    assert r.unit_busy_ns["dpu"][n_layers] == pytest.approx(32 * 32 * sample_ns, rel=1e-12)
    assert b["dpu_max"] == pytest.approx(32 * 32 * sample_ns / r.makespan_ns, rel=1e-12)
    assert b["dpu_max"] > 0.95
    assert 0.95 * 1e9 / sample_ns <= r.tokens_per_s <= 1e9 / sample_ns * (1 + 1e-12)
    assert b["dpu"] < 0.5 and b["tiles_max"] < 0.5  # the class mean would hide it
    assert r.bottleneck() == "dpu"
    assert f"(most loaded {32 * 32 * sample_ns / r.makespan_ns:.1%})" in r.summary()
    pooled = locked.replace(unit_assignment="pool")
    rp = simulate(spec, pooled, mapping.map_model(spec, pooled), w)
    bp = rp.busy_fraction()
    assert bp["dpu_max"] == pytest.approx(rp.unit_busy_ns["dpu"].sum() / 16 / rp.makespan_ns)
    assert bp["dpu_max"] == bp["dpu"] and bp["mha_max"] == bp["mha"]
    with pytest.raises(ValueError, match="kind='tiles'"):
        r.slot_busy_fraction("tiles")


def test_energy_is_operations_plus_passive_power_times_makespan():
    spec = zoo.get("olmoe-1b-7b").replace(n_layers=2)
    chip = _fit_chip(spec, 512, 400, n_dpus=8, n_mha_units=2, kv_placement="dram")
    m = mapping.map_model(spec, chip)
    r = simulate(spec, chip, m, Workload(batch=2, prompt_len=3, gen_len=3, record_events=True))
    e = r.energy_breakdown_pj
    assert r.energy_pj == sum(e.values())
    # passive: (DPUs + MHA units) x 1 W + DRAM idle 0.1297 W (KV in DRAM), W x ns = 1e3 pJ
    assert e["passive"] == pytest.approx((8 + 2 + 0.1297) * r.makespan_ns * 1e3, rel=1e-12)
    # MVM energy = tier MVMs executed x 10 nJ; each tile record spans (blocks x 100 ns)
    tiles = r.events[r.events["resource"] == 0]
    n_mvm = np.round((tiles["end_ns"] - tiles["start_ns"]) / 100.0).sum()
    assert e["mvm"] == pytest.approx(n_mvm * 10_000.0, rel=1e-12)
    # DRAM: each attention writes its own KV and reads all keys so far: (position + 2) tokens of
    # kv_cache_elements_per_token x 2 bytes, at 5.332 GB/s and 0.2467 W
    per_token = spec.kv_cache_elements_per_token * 2.0
    positions = [0, 1, 2] + [3, 4]  # prefill of 3 tokens, then 2 decode passes
    nbytes = 2 * spec.n_layers * sum((p + 2) * per_token for p in positions)
    assert r.unit_busy_ns["dram"][0] == pytest.approx(nbytes / 5.332, rel=1e-12)
    assert e["dram"] == pytest.approx(0.2467 * nbytes / 5.332 * 1e3, rel=1e-12)


def test_attention_waits_for_the_keys_of_all_earlier_prompt_tokens():
    spec = _one_layer(d=16)
    chip = _fit_chip(spec, 8, 1)  # one tile: prompt tokens' QKV run one after another
    r = simulate(spec, chip, mapping.map_model(spec, chip),
                 Workload(prompt_len=4, gen_len=1, record_events=True))
    ev = r.events
    qkv, att = r.op_names.index("L0.acc_qkv"), r.op_names.index("L0.attention")
    kv_done = {int(x["token"]): x["end_ns"] for x in ev[ev["op"] == qkv]}
    for x in ev[ev["op"] == att]:
        assert x["start_ns"] >= max(kv_done[j] for j in range(int(x["token"]) + 1))


def test_without_kv_cache_every_pass_reruns_the_prefix():
    spec = _one_layer(d=16)
    chip = _fit_chip(spec, 8, 4)
    m = mapping.map_model(spec, chip)
    with_cache = simulate(spec, chip, m, Workload(prompt_len=3, gen_len=4))
    without = simulate(spec, chip, m, Workload(prompt_len=3, gen_len=4, kv_cache=False))
    n_ops_body = len(with_cache.op_names) - 2  # all but head and sampling
    # with a cache: 3 + 1 + 1 + 1 token passes; without: 3 + 4 + 5 + 6; each pass adds head + sample
    assert with_cache.n_events == 6 * n_ops_body + 4 * 2
    assert without.n_events == 18 * n_ops_body + 4 * 2
    assert without.makespan_ns > with_cache.makespan_ns


def test_moe_tokens_use_their_routed_experts_tiles():
    spec = ModelSpec(d_model=8, n_layers=1, n_heads=1, d_ff=8, vocab_size=8, ffn="relu",
                     n_experts=4, top_k=1)
    chip = hardware.ChipConfig(n_tiles=20, n_tiers=1, tier_rows=8, tier_cols=8)
    m = mapping.map_model(spec, chip)
    w = Workload(prompt_len=5, gen_len=1, record_events=True, seed=3)
    r = simulate(spec, chip, m, w)
    from aimoe_lib import routing
    choices = routing.route(spec, 5, "uniform", seed=3).reshape(5, 1, 1, 1).transpose(1, 0, 2, 3)
    up = r.op_names.index("L0.expert_up[0]")
    for x in r.events[r.events["op"] == up]:
        e = choices[0, int(x["token"]), 0, 0]
        assert int(x["unit"]) in m.blocks(f"decoder.0.expert{e}.ffn_up")["tile"]


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw, match", [
    (dict(batch=0), "batch=0"), (dict(prompt_len=0), "prompt_len=0"), (dict(gen_len=0), "gen_len=0"),
    (dict(batch=1.5), "batch=1.5"), (dict(kv_cache="yes"), "kv_cache"), (dict(seed=None), "seed"),
    (dict(seed=-1), "seed=-1"),
])
def test_bad_workloads_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        Workload(**kw)


def test_a_mapping_for_another_model_or_chip_is_refused():
    a, b = _one_layer(d=16), _one_layer(d=32)
    chip = _fit_chip(b, 8, 4)
    m = mapping.map_model(a, chip)
    with pytest.raises(ValueError, match="made for model"):
        simulate(b, chip, m, Workload())
    with pytest.raises(ValueError, match=r"made for chip .* another shape \(n_tiles=4 vs 5\)"):
        simulate(a, chip.replace(n_tiles=5), m, Workload())


def test_a_mapping_serves_a_chip_of_the_same_shape_with_other_costs():
    """A placement depends on the tiles and tiers only: a cost sweep reuses one mapping, and the
    costs come from the chip passed to simulate (twice the MVM energy, twice the MVM energy)."""
    spec = _one_layer(d=16)
    chip = _fit_chip(spec, 8, 4)
    m = mapping.map_model(spec, chip)
    dearer = chip.replace(cost=hardware.CostModel(mvm_energy_pj=20_000.0), n_dpus=2)
    a, b = simulate(spec, chip, m, Workload()), simulate(spec, dearer, m, Workload())
    assert b.energy_breakdown_pj["mvm"] == pytest.approx(2 * a.energy_breakdown_pj["mvm"])


def test_encoder_decoder_models_are_refused_with_the_reason():
    spec = zoo.get("switch-base-128").replace(n_layers=2, n_encoder_layers=2, n_experts=4)
    chip = _fit_chip(spec, 512, 100)
    with pytest.raises(ValueError, match="encoder-decoder"):
        simulate(spec, chip, mapping.map_model(spec, chip), Workload())


def test_a_trace_that_does_not_fit_the_model_is_refused():
    from aimoe_lib import routing
    spec = ModelSpec(d_model=8, n_layers=2, n_heads=1, d_ff=8, vocab_size=8, n_experts=4, top_k=2)
    chip = _fit_chip(spec, 8, 10)
    trace = np.tile(np.array([0, 1]), (5, 3, 1))  # 5 tokens x 3 MoE layers x k=2, distinct experts
    bad = routing.RoutingSpec(kind="trace", trace=trace)  # the model has 2 MoE layers
    with pytest.raises(ValueError, match="trace"):
        simulate(spec, chip, mapping.map_model(spec, chip), Workload(routing=bad))


def test_event_log_cap_is_enforced():
    spec = _one_layer(d=16)
    chip = _fit_chip(spec, 8, 4)
    with pytest.raises(ValueError, match="max_events_logged"):
        simulate(spec, chip, mapping.map_model(spec, chip), Workload(record_events=True),
                 max_events_logged=3)


# ------------------------------------------------------------------------- passes and structures
def test_pass_layout_with_a_kv_cache_by_hand():
    """Prompt 5, 3 generated: the prefill holds tokens 0..4, then one token per pass at positions
    5 and 6 (the last generated token is sampled, never processed)."""
    from aimoe_lib.simulator import pass_layout

    lay = pass_layout(Workload(prompt_len=5, gen_len=3))
    assert lay.ntok.tolist() == [5, 1, 1] and lay.pass_base.tolist() == [0, 5, 6, 7]
    assert lay.per_seq == 7
    assert lay.inst_pass.tolist() == [0, 0, 0, 0, 0, 1, 2]
    assert lay.inst_tok.tolist() == [0, 1, 2, 3, 4, 0, 0]
    assert lay.inst_pos.tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_pass_layout_without_a_kv_cache_reruns_the_prefix_by_hand():
    from aimoe_lib.simulator import pass_layout

    w = Workload(prompt_len=2, gen_len=3, kv_cache=False)
    lay = pass_layout(w)
    assert lay.ntok.tolist() == [2, 3, 4] and lay.per_seq == 9
    assert lay.inst_pos.tolist() == [0, 1, 0, 1, 2, 0, 1, 2, 3]
    assert [w.tokens_in_pass(p) for p in range(3)] == [2, 3, 4]
    assert w.position(2, 3) == 3 and Workload(prompt_len=2, gen_len=3).position(2, 0) == 3
    with pytest.raises(ValueError, match="passes 0..2"):
        w.tokens_in_pass(3)
    with pytest.raises(ValueError, match="tokens 0..1"):
        w.position(0, 2)


def _small_case():
    spec = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_ff=64, vocab_size=16, ffn="swiglu",
                     n_experts=4, top_k=2)
    chip = _fit_chip(spec, 16, 6, extra_tiers=1, n_dpus=2, n_mha_units=2)
    m = mapping.map_model(spec, chip, "in_order")
    return spec, chip, m, Workload(batch=2, prompt_len=3, gen_len=3, record_events=True)


def test_the_engine_takes_and_returns_named_structures():
    """engine_input names every array the loop reads; the compiled and the plain-Python loop give
    the same EngineOutput field by field."""
    from aimoe_lib.simulator import (
        EngineInput,
        EngineOutput,
        build_program,
        engine_input,
        run_engine,
    )

    spec, chip, m, w = _small_case()
    prog = build_program(spec, chip, m, w)
    inp = engine_input(prog, log_capacity=10_000)
    assert isinstance(inp, EngineInput) and inp.res is prog.res and inp.batch == 2
    assert inp.inst_pos is w.layout.inst_pos
    fast, slow = run_engine(inp), run_engine(inp, compiled=False)
    assert isinstance(fast, EngineOutput) and isinstance(slow, EngineOutput)
    for name in EngineOutput._fields:
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.n_logged == len(fast.log_f) == simulate(spec, chip, m, w).events.size


def test_a_result_keeps_the_workload_and_program_it_ran():
    from aimoe_lib.simulator import Program, Step

    spec, chip, m, w = _small_case()
    r = simulate(spec, chip, m, w)
    assert r.workload is w and isinstance(r.program, Program) and r.program.workload is w
    assert r.op_names == r.program.names and r.program.n_tiles == chip.n_tiles
    kinds = [Step(k) for k in r.program.kind]
    assert kinds[0] is Step.EMBED_NORM and kinds[-1] is Step.SAMPLE
    assert kinds.count(Step.EXPERT_UP) == spec.n_layers * spec.top_k
    # every name is its step's label, with the layer prefix and the branch index
    for name, k in zip(r.program.names, kinds, strict=True):
        assert k.label in name


def test_tile_groups_of_routed_experts_follow_the_routing():
    """Program.tile_group maps an expert op instance to the tiles of the expert its token chose."""
    from aimoe_lib.simulator import R_TILES, Step

    spec, chip, m, w = _small_case()
    r = simulate(spec, chip, m, w)
    prog, ev = r.program, r.events
    sel = np.flatnonzero((ev["resource"] == R_TILES)
                         & (prog.kind[ev["op"]] == int(Step.EXPERT_UP)))
    g = prog.tile_group(ev["op"][sel], ev["seq"][sel], ev["pass_"][sel], ev["token"][sel])
    for i, gi in zip(sel, g, strict=True):
        tiles = prog.grp_tile[prog.grp_ptr[gi]:prog.grp_ptr[gi + 1]]
        assert ev["unit"][i] in tiles


def test_throughput_per_area_and_tokens_per_joule_by_definition():
    spec, chip, m, w = _small_case()
    r = simulate(spec, chip, m, w)
    assert r.tokens_per_s_per_mm2 == pytest.approx(
        r.generated_tokens / (r.makespan_ns * 1e-9) / chip.area_mm2)
    assert r.tokens_per_joule == pytest.approx(r.generated_tokens / (r.energy_pj * 1e-12))


def test_tier_switches_by_hand():
    """A one-layer model on a single tile: every block sits on its own tier, so every MVM after
    the tile's very first changes tier. ffn_up (16 x 64: 4 blocks) follows the output projection
    on that tile: 4 switches of 40 ns and 4 MVMs of 100 ns; the whole run pays one switch per
    tier MVM but the first, in time and in energy."""
    spec = _one_layer(d=16, d_ff=64)  # ffn_up 16 x 64: 4 blocks of 16 x 16
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, 16, 16)
                 for m in spec.matrices() if m.role.value != "embedding")
    cost = hardware.CostModel(tier_switch_latency_ns=40.0, tier_switch_energy_pj=7.0)
    chip = hardware.ChipConfig(n_tiles=1, n_tiers=blocks, tier_rows=16, tier_cols=16, cost=cost)
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload(record_events=True))
    start, end = _op_spans(r, "L0.ffn_up")
    assert end[0] - start[0] == pytest.approx(4 * 100.0 + 4 * 40.0)
    ref = simulate_reference(spec, chip, mapping.map_model(spec, chip), Workload())
    assert ref.makespan_ns == r.makespan_ns
    plain = hardware.ChipConfig(n_tiles=1, n_tiers=blocks, tier_rows=16, tier_cols=16)
    r0 = simulate(spec, plain, mapping.map_model(spec, plain), Workload())
    switches = r.tier_mvms - 1  # every MVM after the first changes tier on the single tile
    assert r.makespan_ns == pytest.approx(r0.makespan_ns + 40.0 * switches)
    assert r.energy_breakdown_pj["mvm"] - r0.energy_breakdown_pj["mvm"] == pytest.approx(7.0 * switches)


def test_kv_cache_beyond_the_on_chip_capacity_spills_to_dram_by_hand():
    """d = 32, one layer, one sequence of 1 prompt + 3 generated tokens: positions 0, 1, 2 keep
    K and V (2 x 32 elements, 2 bytes each: 128 bytes per token); the run's cache is 384 bytes.
    With 96 bytes on chip, 75 % spills: the attention at position p reads 0.75 x 128 x (p + 2)
    bytes (its own KV written, all keys read) at 2 GB/s = 2 bytes/ns: 96, 144, 192 ns, and at
    4 pJ/bit 32 pJ per byte: 864 bytes, 27,648 pJ."""
    from aimoe_lib.simulator import kv_spill_fraction

    spec = _one_layer(d=32, d_ff=32)
    cost = hardware.CostModel(dram_bandwidth_gb_s=2.0, dram_energy_pj_per_bit=4.0)
    chip = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=32, tier_cols=32, cost=cost,
                               kv_sram_mb_per_mha_unit=96e-6)
    w = Workload(prompt_len=1, gen_len=3, record_events=True)
    assert kv_spill_fraction(spec, chip, w) == pytest.approx(0.75)
    r = simulate(spec, chip, mapping.map_model(spec, chip), w)
    start, end = _op_spans(r, "L0.kv_dram")
    assert np.allclose(end - start, [96.0, 144.0, 192.0])
    assert r.energy_breakdown_pj["dram"] == pytest.approx(864 * 32.0)
    assert r.peak_scratchpad_bytes == 32 * 2 + 96  # one activation vector + the full capacity
    roomy = chip.replace(kv_sram_mb_per_mha_unit=384e-6)
    assert kv_spill_fraction(spec, roomy, w) == 0.0
    r2 = simulate(spec, roomy, mapping.map_model(spec, roomy), w)
    assert "L0.kv_dram" not in r2.op_names and r2.energy_breakdown_pj["dram"] == 0.0


def test_an_oversized_run_is_refused_before_any_work(monkeypatch):
    """A million Mixtral sequences would need over 8 GB of engine state (their routed experts
    alone: 4 B x 10^6 x 31 positions x 32 MoE layers x 2 picks = 7.9 GB): simulate refuses with
    the estimate before building anything (no routing, no program); a run whose estimate
    (engine_state_bytes, this engine's state) equals the limit goes ahead, one byte less is
    refused."""
    from aimoe_lib.simulator import engine
    from aimoe_lib.simulator.engine import engine_state_bytes

    spec = zoo.get("mixtral-8x7b")
    chip = mapping.fitting_chip(spec, n_tiers=128, units="per_layer")
    m = mapping.map_model(spec, chip)
    huge = Workload(batch=10**6, prompt_len=16, gen_len=16)
    monkeypatch.setattr(engine, "build_program", lambda *a: pytest.fail("built a program"))
    with pytest.raises(ValueError, match=r"GB of engine state.*max_state_bytes"):
        simulate(spec, chip, m, huge)
    monkeypatch.undo()
    small_spec = _one_layer()
    small_chip = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=16, tier_cols=16)
    sm = mapping.map_model(small_spec, small_chip)
    w = Workload(batch=2, prompt_len=3, gen_len=2)
    need = engine_state_bytes(small_spec, small_chip, w)
    assert simulate(small_spec, small_chip, sm, w, max_state_bytes=need).makespan_ns > 0
    with pytest.raises(ValueError, match="max_state_bytes"):
        simulate(small_spec, small_chip, sm, w, max_state_bytes=need - 1)


# ----------------------------------------------------------------------------- multi-die
def _two_die_case():
    """Two 16-wide layers of six 16x16 matrices and an LM head: 13 blocks on 13 one-tier tiles,
    in order (layer 0 on tiles 0-5, layer 1 on 6-11, the head on 12). A reticle of 2/3 of the
    chip's area splits it into ceil(1.5) = 2 dies: tiles 0-6 (t x 2 // 13 = 0) and 7-12."""
    spec = ModelSpec(d_model=16, n_layers=2, n_heads=1, d_ff=16, vocab_size=16, ffn="gelu",
                     name="two-layer")
    chip = hardware.preset("physical", n_tiles=13, n_tiers=1, tier_rows=16, tier_cols=16)
    return spec, chip.replace(reticle_mm2=chip.area_mm2 / 1.5)


def test_die_crossings_are_costed_by_hand():
    """Layer 0's blocks are all on die 0 (home 0); layer 1 has tile 6 on die 0 and tiles 7-11 on
    die 1 (home 1). So (UCIe: 2 ns, 128 GB/s, 0.25 pJ/bit; 8-bit activations):
    * L1's Q/K/V MVM (tiles 6, 7, 8): 1/3 of its blocks away from home -> each way the link
      latency 2 ns + 16 elements x 8 bit / (8 x 128 GB/s) = 2.125 ns, and energy
      1/3 x 48 elements x 8 bit x 0.25 pJ = 32 pJ (in and out: 64 pJ);
    * the residual stream leaving layer 0 for layer 1's die: 2.125 ns, 16 x 8 x 0.25 = 32 pJ;
    * nothing else crosses (layer 1 -> head: both on die 1)."""
    spec, chip = _two_die_case()
    assert chip.n_dies == 2
    assert list(chip.die_of_tile(np.arange(13))) == [0] * 7 + [1] * 6
    m = mapping.map_model(spec, chip)
    mono = chip.replace(reticle_mm2=None)
    w = Workload(batch=1, prompt_len=1, gen_len=1)
    p = build_program(spec, chip, m, w)
    q = build_program(spec, mono, mapping.map_model(spec, mono), w)
    names = list(p.names)
    dl, de = p.comm_in - q.comm_in, p.comm_energy - q.comm_energy
    do = p.comm_out - q.comm_out
    i = names.index("L1.qkv")
    assert dl[i] == pytest.approx(2.125) and do[i] == pytest.approx(2.125)
    assert de[i] == pytest.approx(64.0)
    j = names.index("L0.add+ln")
    assert do[j] == pytest.approx(2.125) and de[j] == pytest.approx(32.0) and dl[j] == 0
    others = [k for k in range(len(names)) if k not in (i, j)]
    assert not np.any(dl[others]) and not np.any(do[others]) and not np.any(de[others])


def test_one_die_chips_cost_no_crossing():
    """The 'paper' preset has no reticle limit: one die whatever its area, so its programs are
    those of a chip with d2d costs set to anything."""
    spec, chip = _two_die_case()
    paper = hardware.preset("paper", n_tiles=13, n_tiers=1, tier_rows=16, tier_cols=16)
    assert paper.reticle_mm2 is None and paper.n_dies == 1
    w = Workload(batch=1, prompt_len=1, gen_len=1)
    m = mapping.map_model(spec, paper)
    a = build_program(spec, paper, m, w)
    pricey = paper.replace(cost=dataclasses.replace(paper.cost, d2d_latency_ns=1e3,
                                                    d2d_energy_pj_per_bit=1e3))
    b = build_program(spec, pricey, mapping.map_model(spec, pricey), w)
    assert np.array_equal(a.comm_in, b.comm_in) and np.array_equal(a.comm_energy, b.comm_energy)
