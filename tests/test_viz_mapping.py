"""Chapter 3 figures and helpers of aimoe_lib.viz (mapping): labelled figures for small and large
(aggregated) mappings, the aggregation by hand, strategy numbers against the mapping module."""

import math

import numpy as np
import pytest
from figure_checks import check_figure
from matplotlib.figure import Figure

from aimoe_lib import experiments, mapping, routing, teaching, zoo
from aimoe_lib.hardware import ChipConfig
from aimoe_lib.models import ModelSpec
from aimoe_lib.viz import mapping as vmap


@pytest.fixture(scope="module")
def small():
    """Chapter 3's small MoE on the 55 x 16 chip that just holds its 872 blocks."""
    spec = teaching.mapping_moe()
    return spec, mapping.fitting_chip(spec, n_tiers=16)


@pytest.fixture(scope="module")
def tiny_mapping():
    """18 one-tier blocks of the tiny dense model on 6 tiles x 3 tiers of 8x8, in order.

    Per layer: q, k, v, o (1 block each), ffn_up 8x16 and ffn_down 16x8 (2 blocks each) = 8;
    LM head 8x10 = 2. in_order fills tier 0 of tiles 0..5, then tier 1, then tier 2, so the
    layers (0, 1; 2 = LM head) by tier are
      tier 0: 0 0 0 0 0 0
      tier 1: 0 0 1 1 1 1
      tier 2: 1 1 1 1 2 2
    """
    spec = ModelSpec(name="tiny", d_model=8, n_layers=2, n_heads=2, d_ff=16, vocab_size=10)
    chip = ChipConfig(n_tiles=6, n_tiers=3, tier_rows=8, tier_cols=8)
    return mapping.map_model(spec, chip, "in_order")


TINY_LAYERS = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 2, 2]])  # tier x tile




def _image(fig):
    """The occupancy image of a one-panel occupancy_map as (tiers, tiles) category codes."""
    (im,) = [im for ax in fig.axes for im in ax.images]
    return np.asarray(im.get_array())


# ----------------------------------------------------------------------------- figures
@pytest.mark.parametrize("color_by", vmap.OCCUPANCY_COLOR_BY)
def test_occupancy_map_small_is_labelled_and_not_binned(small, color_by):
    spec, chip = small
    m = mapping.map_model(spec, chip, "moe_stacked")
    fig = vmap.occupancy_map(m, color_by)
    check_figure(fig)
    assert "binned" not in fig.get_suptitle()
    assert _image(fig).shape == (chip.n_tiers, chip.n_tiles)


@pytest.mark.parametrize("color_by", vmap.OCCUPANCY_COLOR_BY)
def test_occupancy_map_large_is_binned_and_says_so(small, color_by):
    spec, _ = small
    m = mapping.map_model(spec, ChipConfig(n_tiles=3000, n_tiers=2), "in_order")
    fig = vmap.occupancy_map(m, color_by, max_tiles=256)
    check_figure(fig)
    assert "binned" in fig.get_suptitle() and "12 tiles" in fig.get_suptitle()
    assert _image(fig).shape == (2, math.ceil(3000 / 12))


def test_occupancy_map_bins_tiers_too(small):
    spec, _ = small
    m = mapping.map_model(spec, ChipConfig(n_tiles=2, n_tiers=600), "in_order")
    fig = vmap.occupancy_map(m, "layer")
    check_figure(fig)
    assert _image(fig).shape == (math.ceil(600 / 3), 2)  # 600 tiers > 256: 3 tiers per pixel
    assert "3 tiers" in fig.get_suptitle()


def test_occupancy_maps_one_panel_per_mapping(small):
    spec, chip = small
    ms = [mapping.map_model(spec, chip, s) for s in ("in_order", "moe_stacked")]
    for color_by in vmap.OCCUPANCY_COLOR_BY:
        fig = vmap.occupancy_maps(ms, color_by)
        check_figure(fig)
        assert sum(len(ax.images) for ax in fig.axes) == 2
    with pytest.raises(ValueError, match="same model"):
        llama = zoo.get("llama-2-7b")
        other = mapping.map_model(llama, mapping.fitting_chip(llama, n_tiers=64))
        vmap.occupancy_maps([ms[0], other])


def test_figures_of_one_matrix_and_of_strategies(small):
    spec, chip = small
    m = mapping.map_model(spec, chip, "in_order")
    for fig in (vmap.matrix_placement(m, "decoder.0.expert0.ffn_up"),
                vmap.matrix_placement(m, "lm_head"),
                vmap.tiling_example(), vmap.tiling_example(4096, 8), vmap.tiling_example(100, 100),
                vmap.strategy_comparison(spec, chip),
                vmap.strategy_comparison(spec, chip.replace(n_tiles=14, n_tiers=64)),
                vmap.strategy_comparison(zoo.get("llama-2-7b"),
                                        mapping.fitting_chip(zoo.get("llama-2-7b"), n_tiers=256))):
        check_figure(fig)


def test_matrix_placement_reports_the_mvm_depth():
    mx = zoo.get("mixtral-8x7b")
    m = mapping.map_model(mx, mapping.fitting_chip(mx, n_tiers=1024), "in_order")
    fig = vmap.matrix_placement(m, "lm_head")  # 8 x 63 = 504 blocks on 174 tiles
    assert m.mvm_depth("lm_head") == 3
    assert "504 blocks on 174 tiles" in fig.get_supxlabel()
    assert "3 x 100 ns = 300 ns" in fig.get_supxlabel()
    # the same mapping on the physical preset's chip: HERMES's 131,072 ops / (63.1 TOPS / 64)
    # = 132.94 ns per tier MVM, 3 x 132.94 = 398.8 ns
    chip = mapping.fitting_chip(mx, n_tiers=1024, preset="physical")
    fig = vmap.matrix_placement(mapping.map_model(mx, chip, "in_order"), "lm_head")
    assert "3 x 132.9 ns = 399 ns instead of 132.9 ns" in fig.get_supxlabel()


def test_invalid_arguments_name_the_field(small):
    spec, chip = small
    m = mapping.map_model(spec, chip, "in_order")
    with pytest.raises(ValueError, match="color_by"):
        vmap.occupancy_map(m, "colour")
    with pytest.raises(ValueError, match="max_tiles"):
        vmap.occupancy_map(m, max_tiles=0)
    with pytest.raises(ValueError, match="strategies"):
        experiments.strategy_table(spec, chip, strategies=("fastest",))
    with pytest.raises(ValueError, match="rows"):
        vmap.tiling_stats(10, 10, 0, 10)
    with pytest.raises(ValueError, match="n_tiers"):
        mapping.fitting_chip(spec, n_tiers=0)


# ----------------------------------------------------------------------------- aggregation
def test_occupancy_codes_of_the_tiny_mapping_by_hand(tiny_mapping):
    m = tiny_mapping
    assert m.n_blocks == 18 and m.chip.n_tier_slots == 18
    np.testing.assert_array_equal(_image(vmap.occupancy_map(m, "layer")), TINY_LAYERS)


@pytest.mark.parametrize("max_tiles, expected", [
    # bins of 2 tiles: {0,1} {2,3} {4,5}
    (3, [[0, 0, 0], [0, 1, 1], [1, 1, 2]]),
    # bins of 3 tiles: tier 1 {0,0,1} -> 0, {1,1,1} -> 1; tier 2 {1,1,1} -> 1, {1,2,2} -> 2
    (2, [[0, 0], [0, 1], [1, 2]]),
    # one bin: tier 1 has four 1s and two 0s; tier 2 four 1s
    (1, [[0], [1], [1]]),
])
def test_binned_occupancy_keeps_the_dominant_layer(tiny_mapping, max_tiles, expected):
    fig = vmap.occupancy_map(tiny_mapping, "layer", max_tiles=max_tiles)
    np.testing.assert_array_equal(_image(fig), expected)
    assert "binned" in fig.get_suptitle()


def test_bin_dominant_by_hand():
    codes = np.array([[0, 3, 3, 1],
                      [2, 3, 1, 1],
                      [2, 2, 0, 1]])  # 3 tiles x 4 tiers
    np.testing.assert_array_equal(vmap.bin_dominant(codes, 1, 1), codes)
    # tiers in pairs: (0,3)->0 tie to smaller, (3,1)->1 tie, (2,3)->2, (1,1)->1, (2,2)->2, (0,1)->0
    np.testing.assert_array_equal(vmap.bin_dominant(codes, 1, 2), [[0, 1], [2, 1], [2, 0]])
    # tiles in pairs (last bin partial): tiles 0+1 per tier: (0,2)->0 (3,3)->3 (3,1)->1 (1,1)->1
    np.testing.assert_array_equal(vmap.bin_dominant(codes, 2, 1), [[0, 3, 1, 1], [2, 2, 0, 1]])
    # everything in one bin: 1 appears 4 times, 3 three times, 2 three times, 0 twice
    np.testing.assert_array_equal(vmap.bin_dominant(codes, 3, 4), [[1]])
    with pytest.raises(ValueError):
        vmap.bin_dominant(codes, 0, 1)


# ----------------------------------------------------------------------------- strategies
def test_strategy_table_agrees_with_the_mapping_module(small):
    spec, chip = small
    rows = experiments.strategy_table(spec, chip, seed=3, n_tokens=500)
    assert [r["strategy"] for r in rows] == list(mapping.STRATEGIES)
    skew = routing.zipf_probs(spec.n_experts, experiments.ZIPF_S)
    for r in rows:
        co = routing.coactivation_from_probs(skew) if r["strategy"] == "coactivation" else None
        m = mapping.map_model(spec, chip, r["strategy"], seed=3, coactivation=co)
        assert r["status"] == "ok" and r["error"] is None
        assert r["tiles_used"] == m.tiles_used
        assert r["max_tiers_per_tile"] == m.tiers_used.max()
        assert r["layer_sharing"] == pytest.approx(m.consecutive_layer_sharing().mean())
        assert r["conflicts_uniform"] == pytest.approx(
            mapping.expected_conflicts(m, None, 500, 3).mean())
        assert r["conflicts_skewed"] == pytest.approx(
            mapping.expected_conflicts(m, skew, 500, 3).mean())


def test_moe_stacked_conflicts_are_k_minus_1_times_blocks_per_expert(small):
    """The k chosen experts share every tile of their layer's slab: (k - 1) waits per slab tile.
    An expert of the small MoE is 24 blocks (gate 8, up 8, down 8), each on its own slab tile."""
    spec, chip = small
    (r,) = experiments.strategy_table(spec, chip, strategies=("moe_stacked",))
    expected = (spec.top_k - 1) * 24
    assert r["conflicts_uniform"] == expected and r["conflicts_skewed"] == expected


def test_strategy_table_marks_what_does_not_fit(small):
    spec, chip = small
    tight = chip.replace(n_tiles=14, n_tiers=64)  # 896 tiers for 872 blocks: no room for slabs
    (r,) = experiments.strategy_table(spec, tight, strategies=("moe_stacked",))
    assert r["status"] == "does not fit" and "n_tiers=" in r["error"]
    assert r["conflicts_uniform"] is None
    with pytest.raises(mapping.MappingError, match=r["error"][:40]):
        mapping.map_model(spec, tight, "moe_stacked")
    llama = zoo.get("llama-2-7b")
    rows = experiments.strategy_table(llama, mapping.fitting_chip(llama, n_tiers=256))
    status = {r["strategy"]: r["status"] for r in rows}
    assert status["coactivation"] == status["moe_stacked"] == "not applicable"
    assert status["in_order"] == "ok"
    assert all(math.isnan(r["conflicts_uniform"]) for r in rows if r["status"] == "ok")
    text = vmap.format_strategy_table(rows)
    assert "not applicable" in text and "in_order" in text


# ----------------------------------------------------------------------------- helpers
def test_coactivation_from_probs_by_hand():
    c = routing.coactivation_from_probs([0.5, 0.3, 0.2])
    # ordered pairs i != j: 2 x (0.5*0.3 + 0.5*0.2 + 0.3*0.2) = 2 x 0.31 = 0.62
    expected = np.array([[0.0, 0.15, 0.10],
                         [0.15, 0.0, 0.06],
                         [0.10, 0.06, 0.0]]) / 0.62
    np.testing.assert_allclose(c, expected)
    np.testing.assert_allclose(c, c.T)
    assert np.all(np.diag(c) == 0) and c.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("p", [routing.zipf_probs(8, experiments.ZIPF_S), routing.zipf_probs(64, 2.0),
                               np.full(5, 0.2)])
def test_coactivation_from_probs_is_a_valid_density(p):
    c = routing.coactivation_from_probs(p)
    np.testing.assert_allclose(c, c.T)
    assert np.all(np.diag(c) == 0) and np.all(c >= 0)
    assert c.sum() == pytest.approx(1.0)


def test_coactivation_from_probs_rejects_bad_input():
    for p in ([1.0], [0.5, 0.6], [1.0, 0.0, 0.0], [[0.5, 0.5]], [-0.5, 1.5]):
        with pytest.raises(ValueError):
            routing.coactivation_from_probs(p)


@pytest.mark.parametrize("shape", [(2048, 768, 512, 512), (1000, 300, 256, 128),
                                   (4096, 8, 512, 512), (512, 512, 512, 512), (1, 1, 512, 512)])
def test_tiling_fill_fraction_by_hand(shape):
    n_in, n_out, rows, cols = shape
    st = vmap.tiling_stats(n_in, n_out, rows, cols)
    blocks = math.ceil(n_in / rows) * math.ceil(n_out / cols)
    assert st.blocks == blocks == mapping.blocks_of(n_in, n_out, rows, cols)
    assert st.fill == pytest.approx(n_in * n_out / (blocks * rows * cols))
    assert f"fill {n_in * n_out / (blocks * rows * cols):.1%}" in \
        vmap.tiling_example(n_in, n_out, rows, cols).get_supxlabel()


def test_tiling_partial_blocks_by_hand():
    st = vmap.tiling_stats(1000, 300, 256, 128)  # 4 x 3 blocks; full: 3 x 2 = 6
    assert (st.row_blocks, st.col_blocks, st.full_blocks, st.partial_blocks) == (4, 3, 6, 6)
    assert st.fill == pytest.approx(300_000 / (12 * 256 * 128))
    assert vmap.tiling_stats(2048, 768).partial_blocks == 4
    assert vmap.tiling_stats(2048, 768).fill == 0.75


def test_small_moe_chip_holds_its_blocks(small):
    spec, chip = small
    assert mapping.blocks_needed(spec) == 872
    assert (chip.n_tiles, chip.n_tiers) == (55, 16)  # ceil(872 / 16)
    m = mapping.map_model(spec, chip, "in_order")
    assert m.n_blocks == 872
    # router (1024 x 8: 2 blocks) in 4 layers and LM head (1024 x 8192: 2 x 16) move to digital
    assert mapping.blocks_needed(spec, digital=("embedding", "router", "lm_head")) == 872 - 8 - 32
    mx = zoo.get("mixtral-8x7b")
    assert mapping.blocks_needed(mx) == 177_912
    assert mapping.fitting_chip(mx, n_tiers=1024).n_tiles == 174  # ceil(177 912 / 1024)


# ----------------------------------------------------------------------------- widget
def test_mapping_panel_builds_and_shows_errors_as_text():
    from aimoe_lib.widgets.mapping import mapping_panel
    panel = mapping_panel()
    assert panel.children
    assert isinstance(panel.result, Figure)
    panel = mapping_panel(model="small-moe", strategy="moe_stacked", n_tiers=1)
    assert not isinstance(panel.result, Figure)
    assert "MappingError" in panel.result.data and "n_tiers=" in panel.result.data
    panel = mapping_panel(model="llama-2-7b", strategy="moe_stacked")
    assert "dense" in panel.result.data
