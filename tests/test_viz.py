"""Figures of aimoe_lib.viz: labelled, titled, deterministic; the helpers they rest on, by hand."""

import math

import numpy as np
import pytest
from figure_checks import check_figure
from matplotlib.figure import Figure

from aimoe_lib import zoo
from aimoe_lib.hardware import AreaModel, CostModel
from aimoe_lib.models import ModelSpec
from aimoe_lib.viz import moe as vmoe
from aimoe_lib.viz import tile as vt

FIGURES = {
    "tile_capacity_area default": lambda: vt.tile_capacity_area(),
    "tile_capacity_area one tier": lambda: vt.tile_capacity_area(n_tiles=1, n_tiers_max=1),
    "tile_capacity_area odd tiers": lambda: vt.tile_capacity_area(
        n_tiles=7, n_tiers_max=100, tier_rows=128, tier_cols=1024,
        area=AreaModel(tier_overhead_fraction=0.0)),
    "one_tier_at_a_time default": lambda: vt.one_tier_at_a_time(),
    "one_tier_at_a_time single": lambda: vt.one_tier_at_a_time(n_mvms=1, n_tiers=1),
    "one_tier_at_a_time many": lambda: vt.one_tier_at_a_time(n_mvms=20, n_tiers=64,
                                                               mvm_latency_ns=133.0),
    "model_fits default": lambda: vt.model_fits(),
    "model_fits one model": lambda: vt.model_fits(["gpt3-125m"], n_tiles=1, tier_counts=(1,)),
    "total_vs_active default": lambda: vmoe.total_vs_active(),
    "total_vs_active dense only": lambda: vmoe.total_vs_active([zoo.entry("llama-2-7b")]),
    "moe_scaling default": lambda: vmoe.moe_scaling(),
    "moe_scaling k = E": lambda: vmoe.moe_scaling(top_k=4, max_experts=4),
    "moe_scaling odd": lambda: vmoe.moe_scaling(d_model=256, n_layers=1, d_expert=300, top_k=3,
                                               max_experts=10, n_heads=4, vocab_size=10,
                                               ffn="gelu"),
    "routing_example default": lambda: vmoe.routing_example(),
    "routing_example k = E": lambda: vmoe.routing_example(n_tokens=1, n_experts=1, top_k=1),
    "routing_example large": lambda: vmoe.routing_example(n_tokens=64, n_experts=64, top_k=8,
                                                         seed=3),
}


@pytest.mark.parametrize("make", FIGURES.values(), ids=FIGURES.keys())
def test_figure_has_title_takeaway_and_labelled_axes(make):
    check_figure(make())


def test_invalid_parameters_raise_with_the_field_name():
    with pytest.raises(ValueError, match="n_tiers_max"):
        vt.tile_capacity_area(n_tiers_max=0)
    with pytest.raises(ValueError, match="n_mvms"):
        vt.one_tier_at_a_time(n_mvms=5, n_tiers=4)
    with pytest.raises(ValueError, match="top_k"):
        vmoe.moe_scaling(top_k=8, max_experts=4)
    with pytest.raises(ValueError, match="top_k"):
        vmoe.toy_router(n_experts=2, top_k=3)


# ------------------------------------------------------------------------ chapter 1 helpers
def test_capacity_area_takeaway_matches_the_chip_model():
    fig = vt.tile_capacity_area(n_tiles=100, n_tiers_max=1024)
    # paper chip: 100 x 1024 tiers x 512 x 512 = 26 843.5 M weights in
    # 100 x (0.75 + 0.25 x (1 + 0.001 x 1023)) + 10 = 135.6 mm²; 2D: 102 400 x 1 + 10 = 102 410 mm².
    assert "26,844 M weights" in fig.get_supxlabel()
    assert "136 mm²" in fig.get_supxlabel() and "102,410 mm²" in fig.get_supxlabel()
    assert f"{102_410 / (100 * (0.75 + 0.25 * 2.023) + 10):.1f}x" in fig.get_supxlabel()  # 755.4x


def test_mvm_makespan_closed_form():
    assert vt.mvm_makespan_ns(4, 1, 100.0) == 400.0  # one tile: k x latency
    assert vt.mvm_makespan_ns(4, 4, 100.0) == 100.0  # k tiles: one latency
    assert vt.mvm_makespan_ns(5, 2, 100.0) == 300.0  # busiest tile holds ceil(5/2) = 3
    assert vt.mvm_makespan_ns(3, 8, 10.0) == 10.0  # more tiles than MVMs
    with pytest.raises(ValueError):
        vt.mvm_makespan_ns(0, 1, 100.0)


def test_one_tier_at_a_time_uses_the_cost_model():
    fig = vt.one_tier_at_a_time(n_mvms=3, n_tiers=4, cost=CostModel(mvm_latency_ns=50.0,
                                                                      mvm_energy_pj=2000.0))
    assert fig.get_supxlabel() == ("3 MVMs of 50 ns: 150 ns on one tile vs 50 ns on 3 tiles; "
                                   "energy 6.0 nJ either way")


def _tiny(**kw) -> ModelSpec:
    return ModelSpec(d_model=600, n_layers=1, n_heads=6, d_ff=1000, vocab_size=700, ffn="gelu",
                     **kw)


def test_tiers_needed_tiny_dense_model_by_hand():
    spec = _tiny()
    # 512 x 512 tiers: ceil(600/512) = 2, ceil(1000/512) = 2, ceil(700/512) = 2.
    attention = 4 * (2 * 2)  # q, k, v, o: 600 x 600 each -> 2 x 2 blocks
    ffn = 2 * 2 + 2 * 2  # up 600 x 1000, down 1000 x 600
    head = 2 * 2  # LM head 600 x 700 (the 700 x 600 embedding lookup takes no tier)
    assert vt.tiers_needed(spec) == attention + ffn + head == 28
    assert vt.tiers_needed(spec, include_embedding=True) == 28 + 2 * 2
    # 1024 x 1024 tiers: every matrix is one block; q, k, v, o, up, down, head = 7.
    assert vt.tiers_needed(spec, 1024, 1024) == 7
    # 100 x 100 tiers: 6x6 for each 600 x 600, 6x10 + 10x6 for the FFN, 6x7 for the head.
    assert vt.tiers_needed(spec, 100, 100) == 4 * 36 + 60 + 60 + 42


def test_tiers_needed_tiny_moe_model_by_hand():
    spec = _tiny(n_experts=4, top_k=1)
    attention = 4 * (2 * 2)
    router = 2 * 1  # 600 x 4 -> ceil(600/512) x ceil(4/512)
    experts = 4 * (2 * 2 + 2 * 2)
    head = 2 * 2
    assert vt.tiers_needed(spec) == attention + router + experts + head == 54


def test_tiers_needed_counts_tied_lm_head():
    # GPT-3 ties embedding and head: the head is still an MVM and takes tiers.
    spec = zoo.get("gpt3-125m")
    head = math.ceil(768 / 512) * math.ceil(50257 / 512)
    untied = spec.replace(tied_embeddings=False)
    assert vt.tiers_needed(spec) == vt.tiers_needed(untied)
    assert vt.tiers_needed(spec) > head


def test_tiers_needed_at_least_the_weights_over_the_tier_size():
    for name in ("mixtral-8x7b", "qwen3-30b-a3b", "olmoe-1b-7b"):
        spec = zoo.get(name)
        weights = sum(m.in_features * m.out_features for m in spec.matrices()
                      if m.role.value != "embedding")
        assert vt.tiers_needed(spec) >= weights / (512 * 512)


# ------------------------------------------------------------------------ chapter 2 helpers
def test_params_table_matches_model_counts():
    rows = vmoe.params_table()
    assert [r.name for r in rows] == list(zoo.names())
    for r in rows:
        spec = zoo.get(r.name)
        assert (r.total, r.active, r.is_moe) == (spec.total_params, spec.active_params, spec.is_moe)
        assert r.ratio >= 1.0
    text = vmoe.format_params_table(rows)
    assert len(text.splitlines()) == len(rows) + 2
    assert "46.70" in text and "12.88" in text  # Mixtral-8x7B total / active


def test_published_table_lists_every_published_figure():
    text = vmoe.published_table()
    n_figures = sum(len(e.published) for e in zoo.entries())
    assert len(text.splitlines()) == n_figures + 2
    assert "224.08M" in text  # Switch-Base-128 active, in the unit of its published '220M'
    moe = vmoe.published_table(moe_only=True)
    assert "gpt3" not in moe and "deepseek-v3" in moe


def test_toy_router_is_deterministic_for_a_seed():
    a = vmoe.toy_router(n_tokens=32, n_experts=16, top_k=4, seed=7)
    b = vmoe.toy_router(n_tokens=32, n_experts=16, top_k=4, seed=7)
    c = vmoe.toy_router(n_tokens=32, n_experts=16, top_k=4, seed=8)
    np.testing.assert_array_equal(a.chosen, b.chosen)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, c.probs)
    fa = vmoe.routing_example(32, 16, 4, seed=7).get_supxlabel()
    assert fa == vmoe.routing_example(32, 16, 4, seed=7).get_supxlabel()


@pytest.mark.parametrize("n_tokens,n_experts,top_k",
                         [(16, 8, 2), (5, 3, 3), (40, 64, 8), (1, 1, 1)])
def test_toy_router_picks_k_distinct_best_experts(n_tokens, n_experts, top_k):
    r = vmoe.toy_router(n_tokens, n_experts, top_k, seed=0)
    assert r.chosen.shape == (n_tokens, top_k)
    for token in range(n_tokens):
        picked = r.chosen[token]
        assert len(set(picked.tolist())) == top_k  # k distinct experts
        # they are the k most probable ones
        others = np.delete(r.probs[token], picked)
        assert others.size == 0 or r.probs[token, picked].min() >= others.max()
    np.testing.assert_allclose(r.probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(r.gates.sum(axis=1), 1.0)
    assert r.load.sum() == n_tokens * top_k
    assert r.load.shape == (n_experts,)


def test_moe_scaling_active_stays_flat():
    fig = vmoe.moe_scaling(d_model=1024, n_layers=12, d_expert=4096, top_k=2, max_experts=64)
    # E = 2 -> 64: total x23.4; active grows by the router only (+0.18%)
    assert "(23.4x)" in fig.get_supxlabel() and "+0.18%" in fig.get_supxlabel()


# ------------------------------------------------------------------------ widgets
def test_widget_panels_build():
    from aimoe_lib.widgets.moe import moe_panel
    from aimoe_lib.widgets.tile import tile_panel
    for panel in (tile_panel(), moe_panel()):
        assert panel.children  # sliders + output
        assert isinstance(panel.result, Figure)


def test_showing_errors_shows_the_message_instead_of_a_traceback():
    from IPython.display import Markdown

    from aimoe_lib.widgets.controls import error_message, showing_errors

    def draw(n_tiers):
        """A stand-in figure function."""
        if n_tiers < 1:
            raise ValueError(f"n_tiers={n_tiers}: must be >= 1; pick at least one tier")
        if n_tiers > 99:
            raise KeyError("not a listed error")
        return n_tiers * 2

    shown = showing_errors(draw)
    assert shown(4) == 8 and shown.__name__ == "draw"  # valid settings pass straight through
    out = shown(0)
    assert isinstance(out, Markdown)
    assert out.data == "**ValueError**: n_tiers=0: must be >= 1; pick at least one tier"
    with pytest.raises(KeyError):  # errors not listed still raise
        shown(100)
    assert showing_errors(draw, (KeyError,))(100).data == "**KeyError**: 'not a listed error'"
    assert error_message(TypeError("x")).data == "**TypeError**: x"
