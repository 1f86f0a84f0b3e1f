"""Mapping: invariants on random models and chips, closed forms, hand-worked placements, errors."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimoe_lib import hardware, mapping, teaching, zoo
from aimoe_lib.mapping import MappingError, map_model
from aimoe_lib.models import ModelSpec, Role


# ------------------------------------------------------------------------------ strategies
@st.composite
def small_models(draw, moe=None):
    heads = draw(st.sampled_from([1, 2, 4]))
    d = heads * draw(st.sampled_from([8, 24, 40, 64]))
    is_moe = draw(st.booleans()) if moe is None else moe
    kw = {}
    if is_moe:
        e = draw(st.integers(2, 6))
        kw = dict(n_experts=e, top_k=draw(st.integers(1, e)),
                  d_expert=draw(st.sampled_from([16, 40, 72])),
                  n_shared_experts=draw(st.integers(0, 1)),
                  moe_every=draw(st.integers(1, 2)))
    return ModelSpec(d_model=d, n_layers=draw(st.integers(2, 3)), n_heads=heads,
                     d_ff=draw(st.sampled_from([16, 48, 100])), vocab_size=draw(st.integers(5, 90)),
                     ffn=draw(st.sampled_from(["gelu", "swiglu"])), **kw)


def _chip_for(model, rows, cols, n_tiles, slack):
    blocks = sum(mapping.blocks_of(m.in_features, m.out_features, rows, cols)
                 for m in model.matrices() if m.role is not Role.EMBEDDING)
    tiers = max(1, math.ceil(blocks / n_tiles)) + slack
    return hardware.ChipConfig(n_tiles=n_tiles, n_tiers=tiers, tier_rows=rows, tier_cols=cols)


def _check_invariants(m):
    chip = m.chip
    # every block in range, no two blocks share a (tile, tier)
    assert np.all((m.tile >= 0) & (m.tile < chip.n_tiles))
    assert np.all((m.tier >= 0) & (m.tier < chip.n_tiers))
    slots = m.tile.astype(np.int64) * chip.n_tiers + m.tier
    assert np.unique(slots).size == m.n_blocks
    assert m.tiers_used.max() <= chip.n_tiers
    # every weight element covered exactly once: the blocks of each matrix tile its grid exactly
    for w in m.matrices:
        b = m.blocks(w.name)
        nr = math.ceil(w.in_features / chip.tier_rows)
        nc = math.ceil(w.out_features / chip.tier_cols)
        cells = set(zip(b["row_block"].tolist(), b["col_block"].tolist(), strict=True))
        assert len(cells) == b["tile"].size == nr * nc
        assert cells == {(r, c) for r in range(nr) for c in range(nc)}
        for r, c, ru, cu in zip(b["row_block"], b["col_block"], b["rows"], b["cols"], strict=True):
            assert ru == min(chip.tier_rows, w.in_features - r * chip.tier_rows)
            assert cu == min(chip.tier_cols, w.out_features - c * chip.tier_cols)
    assert m.weights_mapped == sum(w.in_features * w.out_features for w in m.matrices)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(model=small_models(), rows=st.sampled_from([8, 16, 32]), cols=st.sampled_from([8, 16, 32]),
       n_tiles=st.integers(1, 12), slack=st.integers(0, 2),
       strategy=st.sampled_from(["in_order", "balanced", "random"]), seed=st.integers(0, 5))
def test_invariants_hold_for_every_strategy(model, rows, cols, n_tiles, slack, strategy, seed):
    chip = _chip_for(model, rows, cols, n_tiles, slack)
    _check_invariants(map_model(model, chip, strategy, seed=seed))


@SETTINGS
@given(model=small_models(moe=True), rows=st.sampled_from([8, 16, 32]),
       n_tiles=st.integers(2, 40), slack=st.integers(0, 3))
def test_moe_stacked_puts_a_layers_experts_on_one_tile_set_in_distinct_tiers(model, rows, n_tiles,
                                                                             slack):
    chip = _chip_for(model, rows, rows, n_tiles, 0)
    # a slab needs n_experts free tiers on each of its tiles: give every tile room for the whole
    # model
    chip = chip.replace(n_tiers=2 * chip.n_tiers * n_tiles + slack)
    m = map_model(model, chip, "moe_stacked")
    _check_invariants(m)
    for layer in model.moe_layers:
        tile_sets, tiers_per_tile = [], {}
        for w in m.matrices:
            if w.is_routed_expert and w.layer == layer:
                b = m.blocks(w.name)
                tile_sets.append((w.expert, frozenset(b["tile"].tolist())))
                for t, lv in zip(b["tile"], b["tier"], strict=True):
                    tiers_per_tile.setdefault(int(t), []).append((w.expert, int(lv)))
        per_expert = {}
        for e, s in tile_sets:
            per_expert[e] = per_expert.get(e, frozenset()) | s
        assert len(set(per_expert.values())) == 1, "experts of a layer on different tile sets"
        for pairs in tiers_per_tile.values():
            tiers = [lv for _, lv in pairs]
            assert len(tiers) == len(set(tiers))
            # one expert's tiers never interleave another's: expert e sits above expert e-1
            by_e = {}
            for e, lv in pairs:
                by_e.setdefault(e, []).append(lv)
            spans = sorted((min(v), max(v), e) for e, v in by_e.items())
            assert [e for _, _, e in spans] == sorted(by_e)
            assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


# ------------------------------------------------------------------------------ closed forms
def test_block_counts_are_ceil_products():
    # 1000 x 1500 on 512 x 512: ceil(1000/512)=2 row blocks, ceil(1500/512)=3 column blocks
    assert mapping.blocks_of(1000, 1500, 512, 512) == 6
    assert mapping.blocks_of(512, 512, 512, 512) == 1
    assert mapping.blocks_of(513, 1, 512, 512) == 2


def test_mixtral_block_total_by_hand():
    # per layer: q 4096x4096 -> 8*8=64, k,v 4096x1024 -> 8*2=16 each, o 64; router 4096x8 -> 8*1=8;
    # each expert: gate, up 4096x14336 -> 8*28=224 each, down 14336x4096 -> 28*8=224
    per_layer = 64 + 16 + 16 + 64 + 8 + 8 * 3 * 224
    head = 8 * math.ceil(32000 / 512)  # 4096 x 32000 -> 8 * 63
    chip = hardware.ChipConfig(n_tiles=1000, n_tiers=200)
    m = map_model(zoo.get("mixtral-8x7b"), chip)
    assert m.n_blocks == 32 * per_layer + head
    assert m.tiers_used.sum() == m.n_blocks


def test_in_order_on_a_fresh_chip_is_round_robin():
    """Fewest used tiers, lowest index on ties: block b goes to tile b mod T, tier b div T."""
    spec = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=40, vocab_size=30)
    chip = hardware.ChipConfig(n_tiles=3, n_tiers=30, tier_rows=8, tier_cols=8)
    m = map_model(spec, chip)
    b = np.arange(m.n_blocks)
    assert np.array_equal(m.tile, b % 3) and np.array_equal(m.tier, b // 3)


def test_in_order_after_a_slab_fills_lowest_tiers_first():
    """Hand-worked: MoE slab first, then the rest on the tiles with the fewest used tiers."""
    # d=8, 1 layer, experts 2 (relu, d_expert 8): each expert = up 8x8 + down 8x8 = 2 blocks of 8x8
    spec = ModelSpec(d_model=8, n_layers=1, n_heads=1, d_ff=8, vocab_size=8, ffn="relu",
                     n_experts=2, top_k=1)
    chip = hardware.ChipConfig(n_tiles=3, n_tiers=4, tier_rows=8, tier_cols=8)
    m = map_model(spec, chip, "moe_stacked")
    # slab: 2 tiles (0, 1) with 2 tiers each: expert0 up->(0,0), down->(1,0); expert1 up->(0,1),
    # down->(1,1)
    assert m.blocks("decoder.0.expert0.ffn_up")["tile"].tolist() == [0]
    assert m.blocks("decoder.0.expert1.ffn_down")["tier"].tolist() == [1]
    # then q, k, v, o, router, lm_head (6 blocks): tile 2 has 0 used -> q at (2,0), then level 1:
    # tile 2 (k at (2,1)); level 2: tiles 0,1,2 -> v (0,2), o (1,2), router (2,2); level 3:
    # lm_head (0,3)
    got = [(int(m.blocks(n)["tile"][0]), int(m.blocks(n)["tier"][0]))
           for n in ("decoder.0.attn.q", "decoder.0.attn.k", "decoder.0.attn.v",
                     "decoder.0.attn.o", "decoder.0.router", "lm_head")]
    assert got == [(2, 0), (2, 1), (0, 2), (1, 2), (2, 2), (0, 3)]


def test_model_of_exactly_n_blocks_fills_an_n_tier_chip():
    spec = ModelSpec(d_model=16, n_layers=1, n_heads=2, d_ff=16, vocab_size=16, ffn="relu")
    # q,k,v,o,up,down,lm_head all 16x16 -> 4 blocks of 8x8 each: 28 blocks
    chip = hardware.ChipConfig(n_tiles=7, n_tiers=4, tier_rows=8, tier_cols=8)
    m = map_model(spec, chip)
    assert m.n_blocks == 28 and np.all(m.tiers_used == 4)
    assert m.utilisation == 1.0 and m.tier_fill == 1.0
    with pytest.raises(MappingError):
        map_model(spec, chip.replace(n_tiers=3))


def test_mvm_depth_counts_serial_tier_mvms_on_the_busiest_tile():
    spec = ModelSpec(d_model=16, n_layers=1, n_heads=2, d_ff=16, vocab_size=16, ffn="relu")
    one_tile = hardware.ChipConfig(n_tiles=1, n_tiers=28, tier_rows=8, tier_cols=8)
    assert map_model(spec, one_tile).mvm_depth("decoder.0.attn.q") == 4  # 4 blocks, 1 tile
    many = one_tile.replace(n_tiles=28, n_tiers=1)
    m = map_model(spec, many)
    assert m.mvm_depth("decoder.0.attn.q") == 1
    assert m.matrix_mvm_depth.tolist() == [1] * len(m.matrices)


def test_balanced_never_stacks_one_matrix_while_tiles_are_free():
    spec = zoo.get("olmoe-1b-7b")
    chip = hardware.ChipConfig(n_tiles=1200, n_tiers=64)
    m = map_model(spec, chip, "balanced")
    for i, w in enumerate(m.matrices[:40]):
        n_blocks = m.matrix_offsets[i + 1] - m.matrix_offsets[i]
        assert m.mvm_depth(w.name) == math.ceil(n_blocks / 1200)


def test_random_is_seeded():
    spec = zoo.get("olmoe-1b-7b")
    chip = hardware.ChipConfig(n_tiles=1200, n_tiers=64)
    a, b = map_model(spec, chip, "random", seed=1), map_model(spec, chip, "random", seed=1)
    c = map_model(spec, chip, "random", seed=2)
    assert np.array_equal(a.tile, b.tile) and np.array_equal(a.tier, b.tier)
    assert not np.array_equal(a.tile, c.tile)


def test_coactivation_keeps_experts_picked_together_apart():
    # 4 experts, each = up + down of one 8x8 block; experts 0&1 always together, 2&3 always together
    spec = ModelSpec(d_model=8, n_layers=1, n_heads=1, d_ff=8, vocab_size=8, ffn="relu",
                     n_experts=4, top_k=2)
    dens = np.zeros((4, 4))
    dens[0, 1] = dens[1, 0] = dens[2, 3] = dens[3, 2] = 0.25
    chip = hardware.ChipConfig(n_tiles=4, n_tiers=8, tier_rows=8, tier_cols=8)
    m = map_model(spec, chip, "coactivation", coactivation=dens)
    tiles = {e: set() for e in range(4)}
    for w in m.matrices:
        if w.is_routed_expert:
            tiles[w.expert] |= set(m.blocks(w.name)["tile"].tolist())
    assert not tiles[0] & tiles[1] and not tiles[2] & tiles[3]
    # routing exactly those pairs then causes no conflicts at all
    conf = mapping.expected_conflicts(m, expert_probs=[0.5, 0.5, 0.0, 0.0], n_tokens=50)
    assert conf.tolist() == [0.0]


# ------------------------------------------------------------------------------ conflicts
def test_stacked_experts_conflict_k_minus_1_times_per_block():
    """moe_stacked: the k selected experts share every slab tile, so each of the (k-1) extra experts
    waits once per block: conflicts = (k - 1) x blocks per expert, whatever the routing."""
    spec = zoo.get("mixtral-8x7b")
    m = map_model(spec, hardware.ChipConfig(n_tiles=2000, n_tiers=128), "moe_stacked")
    blocks_per_expert = 3 * 224
    conf = mapping.expected_conflicts(m, n_tokens=100)
    assert np.all(conf == (2 - 1) * blocks_per_expert)


def test_no_conflicts_when_every_block_has_its_own_tile():
    spec = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=16, vocab_size=16, n_experts=4,
                     top_k=2, ffn="swiglu")
    chip = hardware.ChipConfig(n_tiles=400, n_tiers=1, tier_rows=8, tier_cols=8)
    assert mapping.expected_conflicts(map_model(spec, chip), n_tokens=200).tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------ digital parts
def test_digital_parts_take_no_tiers():
    spec = zoo.get("mixtral-8x7b")
    chip = hardware.ChipConfig(n_tiles=1000, n_tiers=200)
    full = map_model(spec, chip)
    dig = map_model(spec, chip, digital=("embedding", "router", "lm_head"))
    assert full.n_blocks - dig.n_blocks == 32 * 8 + 8 * 63  # routers 4096x8, head 4096x32000
    assert {w.role for w in dig.digital} == {Role.EMBEDDING, Role.ROUTER, Role.LM_HEAD}
    with pytest.raises(KeyError, match="digital"):
        dig.blocks("lm_head")
    att = map_model(spec, chip, digital=["embedding", "attention"])
    assert not any(w.role.is_attention for w in att.matrices)


# ------------------------------------------------------------------------------ errors
def test_not_fitting_says_what_it_needs():
    spec = zoo.get("mixtral-8x7b")
    blocks = map_model(spec, hardware.ChipConfig(n_tiles=1000, n_tiers=200)).n_blocks
    chip = hardware.ChipConfig(n_tiles=100, n_tiers=100)
    with pytest.raises(MappingError) as e:
        map_model(spec, chip)
    msg = str(e.value)
    assert f"{blocks:,} tiers" in msg
    assert f"n_tiles={math.ceil(blocks / 100):,} at n_tiers=100" in msg
    assert f"n_tiers={math.ceil(blocks / 100):,} at n_tiles=100" in msg


def test_stacked_not_fitting_names_the_slab_and_a_chip_that_fits():
    spec = ModelSpec(d_model=8, n_layers=1, n_heads=1, d_ff=8, vocab_size=8, ffn="relu",
                     n_experts=4, top_k=1)
    chip = hardware.ChipConfig(n_tiles=8, n_tiers=2, tier_rows=8, tier_cols=8)  # 16 >= 14 blocks
    assert map_model(spec, chip).n_blocks == 14
    with pytest.raises(MappingError, match=r"slab of 2 tiles with 4 free tiers") as e:
        map_model(spec, chip, "moe_stacked")
    n_tiers = int(str(e.value).split("n_tiers=")[1].split(" ")[0].rstrip(","))
    assert n_tiers == 4
    map_model(spec, chip.replace(n_tiers=n_tiers), "moe_stacked")


@pytest.mark.parametrize("kwargs, match", [
    (dict(strategy="greedy"), "unknown mapping strategy"),
    (dict(strategy="coactivation"), "needs coactivation="),
    (dict(strategy="coactivation", coactivation=np.full((3, 3), 1 / 9)), r"shape \(3, 3\)"),
    (dict(strategy="coactivation", coactivation=np.full((8, 8), 1.0)), "sum to 1"),
    (dict(strategy="coactivation", coactivation=-np.full((8, 8), 1 / 64)), "non-negative"),
    (dict(strategy="coactivation", coactivation=np.triu(np.full((8, 8), 1 / 36))), "symmetric"),
    (dict(strategy="in_order", coactivation=np.full((8, 8), 1 / 64)), "only used by"),
    (dict(strategy="coactivation", coactivation=np.full((8, 8), 1 / 64)), "zero diagonal"),
    (dict(digital=("embedding", "ffn")), "unknown part"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    chip = hardware.ChipConfig(n_tiles=1000, n_tiers=200)
    with pytest.raises(ValueError, match=match):
        map_model(zoo.get("mixtral-8x7b"), chip, **kwargs)


def test_expert_strategies_refuse_dense_models():
    with pytest.raises(ValueError, match="dense"):
        map_model(zoo.get("llama-2-7b"), hardware.ChipConfig(n_tiles=1000, n_tiers=200),
                  "moe_stacked")


def test_expected_conflicts_validates_probabilities():
    m = map_model(zoo.get("olmoe-1b-7b"), hardware.ChipConfig(n_tiles=1200, n_tiers=64))
    with pytest.raises(ValueError, match="length 64"):
        mapping.expected_conflicts(m, expert_probs=[1.0])
    p = np.zeros(64)
    p[:3] = 1 / 3
    with pytest.raises(ValueError, match="fewer than top_k=8"):
        mapping.expected_conflicts(m, expert_probs=p)


# ------------------------------------------------------------------------------ fitting_chip
def _tiny(**kw) -> ModelSpec:
    """28 blocks on 512 x 512 tiers, by hand: ceil(600/512) = ceil(1000/512) = ceil(700/512) = 2,
    so q, k, v, o (600 x 600), FFN up (600 x 1000), down (1000 x 600) and the LM head (600 x 700)
    are 2 x 2 blocks each: 7 x 4 = 28 (the embedding lookup stays digital)."""
    return ModelSpec(d_model=600, n_layers=1, n_heads=6, d_ff=1000, vocab_size=700, ffn="gelu",
                     **kw)


def test_fitting_chip_with_n_tiers_gives_ceil_blocks_over_tiers_tiles():
    chip = mapping.fitting_chip(_tiny(), n_tiers=5)
    assert (chip.n_tiles, chip.n_tiers, chip.tier_rows, chip.tier_cols) == (6, 5, 512, 512)  # 28/5
    assert mapping.fitting_chip(_tiny(), n_tiers=28).n_tiles == 1
    assert mapping.fitting_chip(_tiny(), n_tiers=1000).n_tiles == 1  # never fewer than 1 tile
    # 1024 x 1024 tiers: every matrix is one block, 7 blocks -> ceil(7 / 2) = 4 tiles
    assert mapping.fitting_chip(_tiny(), n_tiers=2, tier_rows=1024, tier_cols=1024).n_tiles == 4
    # LM head digital: 28 - 4 = 24 blocks -> ceil(24 / 5) = 5 tiles
    assert mapping.fitting_chip(_tiny(), n_tiers=5, digital=("embedding", "lm_head")).n_tiles == 5


def test_fitting_chip_with_n_tiles_gives_ceil_blocks_over_tiles_tiers():
    chip = mapping.fitting_chip(_tiny(), n_tiles=3)
    assert (chip.n_tiles, chip.n_tiers) == (3, 10)  # ceil(28 / 3)
    assert mapping.fitting_chip(_tiny(), n_tiles=28).n_tiers == 1
    assert mapping.fitting_chip(_tiny(), n_tiles=100).n_tiers == 1  # never fewer than 1 tier


def test_fitting_chip_slack_adds_spare_blocks_before_sizing():
    # 50 % slack: ceil(28 x 1.5) = 42 blocks -> ceil(42 / 5) = 9 tiles; 10 %: ceil(30.8) = 31 -> 7
    assert mapping.fitting_chip(_tiny(), n_tiers=5, slack=0.5).n_tiles == 9
    assert mapping.fitting_chip(_tiny(), n_tiers=5, slack=0.1).n_tiles == 7
    assert mapping.fitting_chip(_tiny(), n_tiles=3, slack=0.5).n_tiers == 14  # ceil(42 / 3)


def test_fitting_chip_for_moe_stacked_raises_the_tiers_to_two_per_expert():
    # 4 experts: 16 attention + 2 router + 4 x 8 expert + 4 head = 54 blocks
    moe = _tiny(n_experts=4, top_k=1)
    assert mapping.blocks_needed(moe) == 54
    assert mapping.fitting_chip(moe, n_tiles=27).n_tiers == 2  # ceil(54 / 27)
    assert mapping.fitting_chip(moe, n_tiles=27, strategy="moe_stacked").n_tiers == 8  # 2 x 4
    assert mapping.fitting_chip(moe, n_tiles=2, strategy="moe_stacked").n_tiers == 27  # above 8
    chip = mapping.fitting_chip(moe, n_tiers=3, strategy="moe_stacked")
    assert (chip.n_tiles, chip.n_tiers) == (18, 8)  # tiles from ceil(54 / 3), then tiers raised
    assert mapping.fitting_chip(_tiny(), n_tiers=1, strategy="moe_stacked").n_tiers == 1  # dense
    assert mapping.fitting_chip(moe, n_tiers=3, strategy="in_order").n_tiers == 3


def test_fitting_chip_per_layer_units_are_the_provisioned_chip():
    spec = _tiny().replace(n_layers=3)  # 3 x 24 + 4 = 76 blocks
    pool = mapping.fitting_chip(spec, n_tiers=4)
    per_layer = mapping.fitting_chip(spec, n_tiers=4, units="per_layer")
    assert pool.n_tiles == per_layer.n_tiles == 19  # ceil(76 / 4)
    assert per_layer == pool.provisioned(3)
    # A-UNITS-PER-LAYER: 24 DPUs and 8 attention units per layer, locked to their layer
    assert (per_layer.n_dpus, per_layer.n_mha_units) == (72, 24)
    assert per_layer.unit_assignment is hardware.UnitAssignment.PER_LAYER
    assert pool.unit_assignment is hardware.preset("paper").unit_assignment


def test_fitting_chip_is_the_preset_with_the_fitted_shape():
    chip = mapping.fitting_chip(_tiny(), n_tiers=5, name="fitted")
    assert chip == hardware.preset("paper", n_tiles=6, n_tiers=5, name="fitted")
    # the paper preset has the defaults of ChipConfig, so this is also the plain ChipConfig
    assert chip == hardware.ChipConfig(n_tiles=6, n_tiers=5, tier_rows=512, tier_cols=512,
                                       name="fitted")
    assert mapping.fitting_chip(_tiny(), n_tiers=5).name == hardware.preset("paper").name
    assert mapping.fitting_chip(_tiny(), n_tiers=5, n_dpus=7).n_dpus == 7  # ChipConfig fields


@pytest.mark.parametrize("kwargs, match", [
    (dict(), r"n_tiles=None, n_tiers=None.*exactly one"),
    (dict(n_tiles=2, n_tiers=3), r"n_tiles=2, n_tiers=3.*exactly one"),
    (dict(n_tiers=0), r"n_tiers=0.*integer >= 1"),
    (dict(n_tiles=2.5), r"n_tiles=2.5.*integer >= 1"),
    (dict(n_tiers=True), r"n_tiers=True"),
    (dict(n_tiers=4, units="shared"), r"units='shared'"),
    (dict(n_tiers=4, slack=-0.1), r"slack=-0.1"),
    (dict(n_tiers=4, strategy="greedy"), r"strategy='greedy'"),
    (dict(n_tiers=4, preset="tpu"), r"preset\(name='tpu'\)"),
])
def test_fitting_chip_rejects_bad_arguments_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mapping.fitting_chip(_tiny(), **kwargs)


def test_every_fitted_chip_holds_the_model_in_order():
    for spec in (_tiny(), _tiny(n_experts=4, top_k=2), teaching.mapping_moe()):
        for n in (1, 3, 16):
            for chip in (mapping.fitting_chip(spec, n_tiers=n),
                         mapping.fitting_chip(spec, n_tiles=n)):
                assert map_model(spec, chip, "in_order").n_blocks == mapping.blocks_needed(spec)


# ------------------------------------------------------------------------------ teaching models
def test_teaching_models_have_their_documented_block_counts():
    # mapping_moe, per layer on 512 x 512: q, k, v, o 1024 x 1024 = 4 x (2 x 2) = 16; router
    # 1024 x 8 = 2; an expert gate and up 1024 x 2048 = 2 x 4 each, down 2048 x 1024 = 4 x 2:
    # 24, times 8 experts = 192; 210 per layer, 4 layers = 840, LM head 1024 x 8192 = 2 x 16 = 32
    small = teaching.mapping_moe()
    assert small.name == "small-moe" and (small.n_experts, small.top_k) == (8, 2)
    assert mapping.blocks_needed(small) == 4 * (16 + 2 + 8 * 24) + 32 == 872
    # simulation_moe: attention 4 x 1, router 512 x 8 = 1, an expert 2 + 2 + 2 = 6 (x 8 = 48):
    # 53 per layer, 4 layers = 212, LM head 512 x 1024 = 2
    sim = teaching.simulation_moe()
    assert sim.name == "sim-moe"
    assert mapping.blocks_needed(sim) == 4 * (4 + 1 + 8 * 6) + 2 == 214
    # routing_moe: attention 4, router 512 x 16 = 1, a GELU expert up 2 + down 2 (x 16 = 64):
    # 69 per layer, 4 layers = 276, LM head 2
    rt = teaching.routing_moe()
    assert rt.name == "moe-16e-top2" and (rt.n_experts, rt.top_k) == (16, 2)
    assert mapping.blocks_needed(rt) == 4 * (4 + 1 + 16 * 4) + 2 == 278


def test_teaching_models_take_overrides():
    assert mapping.blocks_needed(teaching.mapping_moe(n_layers=2)) == 2 * 210 + 32
    assert teaching.simulation_moe(top_k=1).top_k == 1
    assert teaching.routing_moe(name="other").name == "other"
