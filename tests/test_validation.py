"""Validation against IBM's 3D-SiM: its README mapping reproduced block by block, its stored
makespans, MVM counts and energies replayed, a KV-cache pass worked by hand, knobs checked."""

import json

import numpy as np
import pytest

from aimoe_lib import hardware, mapping, validation
from aimoe_lib.hardware import Dataflow
from aimoe_lib.models import ModelSpec
from aimoe_lib.shipped import data_path
from aimoe_lib.simulator import Workload, simulate

REF = json.loads(data_path("threedsim.json").read_text())


def _threedsim_name(key: str) -> str | None:
    """3D-SiM's module name -> aimoe's matrix name (None: the never-run position embedding)."""
    parts = key.split(".")
    if key == "lm_head":
        return "lm_head"
    layer, mod = int(parts[2]), parts[3]
    if mod == "token_embedding":
        return "embedding"
    if mod == "pos_embedding":
        return None
    if mod.endswith("_proj_in"):
        return f"decoder.0.attn.{mod[0]}"
    if mod.endswith("_proj_out"):  # the next layer's Q/K/V
        return f"decoder.{layer + 1}.attn.{mod[0]}"
    return {"out_proj": f"decoder.{layer}.attn.o", "ffn1": f"decoder.{layer}.ffn.ffn_up",
            "ffn2": f"decoder.{layer}.ffn.ffn_down"}[mod]


@pytest.mark.parametrize("n_layers", [3, 12])
def test_the_mapping_is_3dsims_block_by_block(n_layers):
    stored = REF["mappings"][f"{n_layers}_layers"]
    model = validation.threedsim_model(n_layers, 12)
    m = validation.threedsim_mapping(model, hardware.preset("3dsim"))
    seen = set()
    for key, blocks in stored.items():
        if key == "note":
            continue
        name = _threedsim_name(key)
        expect = [tuple(tt) for row in blocks for tt in row]  # row-major, as ours
        if name is None:
            assert expect == [(1, 0)]  # the position embedding's tier, never run
            continue
        b = m.blocks(name)
        assert list(zip(b["tile"].tolist(), b["tier"].tolist(), strict=True)) == expect, key
        seen.add(name)
    assert seen == {x.name for x in m.matrices}


@pytest.mark.parametrize("case", REF["cases"], ids=lambda c: c["id"])
def test_3dsim_readme_workloads_are_reproduced(case):
    """Within 2 % of 3D-SiM's makespan, 1 % of its MVM count and 5 % of its total energy."""
    (row,) = validation.threedsim_comparison([case])
    assert abs(row.makespan_error) <= 0.02, (row.makespan_3dsim_ns, row.makespan_aimoe_ns)
    assert abs(row.mvm_error) <= 0.01, (row.mvm_3dsim, row.mvm_aimoe)
    assert abs(row.energy_error) <= 0.05, (row.energy_3dsim_nj, row.energy_aimoe_nj)


def test_a_kv_cache_pass_of_the_readme_model_by_hand():
    """With the KV cache every pass is one token's chain. From 3D-SiM's cost table: embedding MVM
    100 + transfer 10 + add 10 = 120; a layer = transfer 10 + Q/K/V 100 + 10 + attention 2 + 10 +
    out 100 + 10 + add 10 + norm 50 + 10 + ffn1 100 + 10 + ReLU 1 + 10 + ffn2 100 + 10 + three
    partial-sum adds 30 + residual add 10 + norm 50 = 633 (583 for the last layer, whose norm is
    the final one); final norm 50 + 10 + LM head 100 + 10 + sampling 10 = 180. Three layers:
    120 + 633 + 633 + 583 + 180 = 2149 ns per pass, as 3D-SiM reports; passes are joined by a
    10 ns transfer, and aimoe also transfers the first pass's input in (10 ns)."""
    r = validation.threedsim_readme(3, 12, 1, kv_cache=True)
    assert r.makespan_ns == pytest.approx(11 * 2149 + 11 * 10)
    assert r.tier_mvms == 11 * (12 * 3 + 1 + 2)


def test_digital_embedding_none_runs_the_embedding_on_tiles():
    """map_model(..., digital=()) puts the embedding on tiers, and the simulator runs it: one
    one-hot MVM per token on its first row of blocks (here 1 block of 2)."""
    spec = ModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=32, vocab_size=64, ffn="relu")
    chip = hardware.ChipConfig(n_tiles=16, n_tiers=4, tier_rows=32, tier_cols=32)
    w = Workload(batch=2, prompt_len=3, gen_len=2)
    on = simulate(spec, chip, mapping.map_model(spec, chip, digital=()), w)
    off = simulate(spec, chip, mapping.map_model(spec, chip), w)
    token_instances = 2 * (3 + 1)
    assert on.tier_mvms - off.tier_mvms == token_instances
    assert on.program.names[0] == "embed" and off.program.names[0] == "embed+ln1"


def test_pass_synchronised_attention_waits_for_the_whole_pass():
    """With attention_sync='pass' the first token's attention starts only after the last
    token's Q/K/V, and there is one attention operation per layer and pass."""
    spec = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_ff=32, vocab_size=16, ffn="relu")
    base = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=32, tier_cols=32)
    w = Workload(batch=1, prompt_len=4, gen_len=1, record_events=True)
    runs = {}
    for sync in ("causal", "pass"):
        chip = base.replace(dataflow=Dataflow(attention_sync=sync))
        runs[sync] = simulate(spec, chip, mapping.map_model(spec, chip), w)
    att = runs["pass"].program.names.index("L0.attention")
    qkv = runs["pass"].program.names.index("L0.qkv")
    ev = runs["pass"].events
    att_ev = ev[(ev["op"] == att)]
    assert att_ev.size == 1 and att_ev["token"][0] == 3
    assert att_ev["start_ns"][0] >= ev[ev["op"] == qkv]["end_ns"].max()
    assert runs["pass"].makespan_ns >= runs["causal"].makespan_ns


def test_partial_sums_as_a_chain_cost_one_add_per_extra_row_block():
    """ffn_down of 64 inputs on 32-row tiers has 2 row blocks: one add of 32 either way; with 4
    row blocks the chain is 3 adds of 32 against one add of 96."""
    spec = ModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=16, ffn="relu")
    cost = hardware.CostModel()
    add = lambda n: cost.cost("add", n)  # noqa: E731
    for ps, expect in (("one_add", add(96)), ("chain", add(32))):
        chip = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=32, tier_cols=32,
                                   dataflow=Dataflow(partial_sums=ps))
        r = simulate(spec, chip, mapping.map_model(spec, chip), Workload())
        i = r.program.names.index("L0.add+ln")
        residual = cost.cost("add", 32).latency_ns + cost.cost("layernorm", 32).latency_ns
        reps = 3 if ps == "chain" else 1
        assert r.program.lat[i] == pytest.approx(reps * expect.latency_ns + residual)


@pytest.mark.parametrize("kw, match", [
    (dict(attention_sync="barrier"), "attention_sync"),
    (dict(partial_sums="pyramid"), "partial_sums"),
    (dict(norm_before_first_layer="no"), "norm_before_first_layer"),
    (dict(kv_traffic=1), "kv_traffic"),
])
def test_bad_dataflow_values_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        Dataflow(**kw)


def test_pass_attention_with_modelled_dram_traffic_is_refused():
    spec = ModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=32, vocab_size=16, ffn="relu")
    chip = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=32, tier_cols=32,
                               kv_placement="dram", dataflow=Dataflow(attention_sync="pass"))
    with pytest.raises(ValueError, match="kv_traffic"):
        simulate(spec, chip, mapping.map_model(spec, chip), Workload(prompt_len=2))
    with pytest.raises(ValueError, match="target_len"):
        validation.threedsim_readme(3, 1)
    with pytest.raises(ValueError, match="n_layers"):
        validation.threedsim_readme(0, 12)


def test_the_3dsim_preset_is_its_public_defaults():
    c = hardware.preset("3dsim")
    assert (c.n_tiles, c.n_tiers, c.tier_rows, c.n_dpus, c.n_mha_units) == (100, 1024, 512, 4, 1)
    assert c.passive_power_w == 5.0
    assert c.cost.cost("add", 4096) == (10.0, 10_000.0)
    assert c.cost.cost("comm", 512) == pytest.approx((10.0, 40.96))
    assert c.cost.sampling(1024) == (10.0, 0.0)
    assert np.isclose(c.cost.cost("layernorm", 512).energy_pj, 10_000.0)
