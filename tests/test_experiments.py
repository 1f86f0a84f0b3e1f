"""The scaling families and chip sizing behind chapters 5 and 6, and the shipped results."""

import math

import pytest
from row_checks import assert_same_row

from aimoe_lib import experiments as ex
from aimoe_lib import mapping, sweep


def test_moe_family_keeps_active_params_and_dense_matches_total():
    for fam, e, spec in ex.scaling_family():
        moe = ex.moe_variant(ex.BASE, e)
        if fam == "moe":
            # top-1 experts as wide as the base FFN: active = base + the routers (d_model x E each)
            router = ex.BASE.n_layers * ex.BASE.d_model * e if e > 1 else 0
            assert spec.active_params == ex.BASE.total_params + router
        else:
            assert not spec.is_moe
            assert abs(spec.total_params / moe.total_params - 1) < 0.03  # nearest layer count / width


def test_base_block_count_by_hand():
    # d 1024 on 512x512: q,k,v,o 2x2=4 blocks each; up 1024x4096 2x8=16, down 8x2=16;
    # 12 layers x 48 + lm head 1024 x 32000 -> 2 x 63 = 126
    assert ex.blocks_needed(ex.BASE) == 12 * (16 + 32) + 126 == 702


@pytest.mark.parametrize("e", [1, 8, 64])
def test_scaling_chips_are_just_large_enough(e):
    spec = ex.moe_variant(ex.BASE, e)
    label = f"moe|{e}|3d|8"
    chip = next(p.chip for p in ex.scaling_points() if p.label == label)
    assert chip == mapping.fitting_chip(spec, n_tiles=702, units="per_layer", preset="physical")
    assert chip.name == ex.PRESET == "physical"
    need = ex.blocks_needed(spec)
    assert chip.n_tiers == math.ceil(need / 702)
    mapping.map_model(spec, chip)
    with pytest.raises(mapping.MappingError):
        mapping.map_model(spec, chip.replace(n_tiers=chip.n_tiers - 1) if chip.n_tiers > 1
                          else chip.replace(n_tiles=need - 1))
    assert chip.n_dpus == 24 * spec.n_layers and chip.n_mha_units == 8 * spec.n_layers


def test_moe_stacked_points_get_their_minimum_tiers():
    pts = [p for p in ex.condition_points() if p.strategy == "moe_stacked"]
    assert pts
    for p in pts:
        assert p.chip.n_tiers == mapping.moe_stacked_min_tiers(p.model) == 128
        mapping.map_model(p.model, p.chip, "moe_stacked")


@pytest.mark.parametrize("name", ["scaling", "conditions", "zoo"])
def test_shipped_results_cover_their_points(name):
    rows = ex.load(name)
    points = {"scaling": ex.scaling_points, "conditions": ex.condition_points, "zoo": ex.zoo_points}[name]()
    assert [r["label"] for r in rows] == [p.label for p in points]
    assert all(not r["error"] for r in rows)


def test_shipped_scaling_rows_are_what_the_code_computes():
    """Two batch-256 points re-simulated, every column compared: the shipped numbers, busy
    fractions and bottleneck labels are current (sweep cache format 2)."""
    rows = {r["label"]: r for r in ex.load("scaling")}
    pts = {p.label: p for p in ex.scaling_points()}
    for label in ("dense-wider|2|2d|256", "moe|8|3d|256"):
        assert_same_row(sweep.run_point(pts[label]), rows[label], label)


def test_missing_results_say_how_to_regenerate(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "data_path", lambda *parts: tmp_path.joinpath(*parts))
    with pytest.raises(FileNotFoundError, match="python -m aimoe_lib.experiments scaling"):
        ex.load("scaling")


def test_fitted_mapping_sizes_the_chip_for_the_model():
    """Chapter 3's small MoE is 872 blocks of 512 x 512: 16 tiers per tile need ceil(872 / 16) =
    55 tiles; coactivation plans with a density and still places every block once."""
    m = ex.fitted_mapping("small-moe", "in_order", n_tiers=16)
    assert m.chip.n_tiles == math.ceil(872 / 16) and m.chip.n_tiers == 16
    assert m.chip.name == "fitted" and m.tile.size == 872
    co = ex.fitted_mapping("small-moe", "coactivation", n_tiers=16, zipf_s=1.2)
    assert co.tile.size == 872 and co.strategy == "coactivation"
    small = ex.fitted_mapping("small-moe", "in_order", n_tiers=4, tier_size=256)
    assert small.chip.tier_rows == small.chip.tier_cols == 256
