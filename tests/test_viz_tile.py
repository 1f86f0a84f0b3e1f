"""Chapter 1's MVM-cost and tier-switch figures and the numbers behind them, against HERMES's
published figures and closed forms worked by hand."""

import math

import pytest
from figure_checks import check_figure

from aimoe_lib import hardware
from aimoe_lib.hardware import CostModel, physical_cost
from aimoe_lib.viz import tile as vt

# HERMES (Le Gallo et al., Nature Electronics 2023): 63.1 TOPS over 64 cores of 256x256 at
# 9.76 TOPS/W (one-phase); 16.1 TOPS at 2.48 TOPS/W (four-phase). One 256x256 MVM is 131,072 ops.
OPS_CORE = 2 * 256 * 256
E_CORE_PJ = OPS_CORE / 9.76e12 * 1e12  # 13,429.5 pJ
T_CORE_NS = OPS_CORE / (63.1e12 / 64) * 1e9  # 132.94 ns

FIGURES = {
    "mvm_cost_by_shape default": lambda: vt.mvm_cost_by_shape(),
    "mvm_cost_by_shape one cost, one shape": lambda: vt.mvm_cost_by_shape(
        {"paper": CostModel()}, [("tier", 512, 512)]),
    "tier_switch_timeline default": lambda: vt.tier_switch_timeline(),
    "tier_switch_timeline single": lambda: vt.tier_switch_timeline((0.0,), n_mvms=1),
    "tier_switch_timeline many": lambda: vt.tier_switch_timeline((0, 10, 50, 200, 5000), n_mvms=12,
                                                                 cost=CostModel()),
}


@pytest.mark.parametrize("make", FIGURES.values(), ids=FIGURES.keys())
def test_figure_has_title_takeaway_and_labelled_axes(make):
    check_figure(make())


def test_energy_split_of_a_full_tier_by_hand():
    """A 512x512 tier under the physical costs: fixed 10 % of E, rows 25 % x 2, columns
    50 % x 2, cells 15 % x 4, with E = HERMES's 13.43 nJ per 256x256 MVM: 2.2 E = 29.55 nJ."""
    split = vt.mvm_energy_split(physical_cost(), 512, 512)
    assert split["fixed"] == pytest.approx(0.10 * E_CORE_PJ)
    assert split["row"] == pytest.approx(0.25 * E_CORE_PJ * 2)
    assert split["column"] == pytest.approx(0.50 * E_CORE_PJ * 2)
    assert split["cell"] == pytest.approx(0.15 * E_CORE_PJ * 4)
    assert sum(split.values()) == pytest.approx(2.2 * E_CORE_PJ)
    assert sum(split.values()) == pytest.approx(physical_cost().mvm(512, 512).energy_pj)


def test_router_block_costs_five_eighths_of_a_hermes_core_mvm():
    """512 x 8: fixed 0.1 E + rows 0.25 E x 2 + columns 0.5 E x 8/256 + cells 0.15 E x 4096/65536
    = (0.1 + 0.5 + 0.015625 + 0.009375) E = 0.625 E = 8.39 nJ, 0.625 / 2.2 = 28 % of a full tier."""
    split = vt.mvm_energy_split(physical_cost(), 512, 8)
    assert sum(split.values()) == pytest.approx(0.625 * E_CORE_PJ)
    tops, tops_w = vt.mvm_efficiency(physical_cost(), 512, 8)
    assert tops_w == pytest.approx(2 * 512 * 8 / (0.625 * E_CORE_PJ))
    assert tops == pytest.approx(2 * 512 * 8 / T_CORE_NS / 1e3)


def test_efficiency_reproduces_hermes_and_paper():
    # one 256x256 core MVM gives back HERMES's published 9.76 TOPS/W and 63.1 / 64 TOPS per core
    tops, tops_w = vt.mvm_efficiency(physical_cost(), 256, 256)
    assert tops_w == pytest.approx(9.76)
    assert tops == pytest.approx(63.1 / 64)
    # a full physical tier: 4x the operations for 2.2x the energy
    assert vt.mvm_efficiency(physical_cost(), 512, 512)[1] == pytest.approx(9.76 * 4 / 2.2)
    # paper: 100 ns and 10 nJ for 524,288 operations -> 5.24 TOPS per tile, 52.4 TOPS/W
    tops, tops_w = vt.mvm_efficiency(CostModel(), 512, 512)
    assert (tops, tops_w) == pytest.approx((524_288 / 100 / 1e3, 524_288 / 10_000))
    assert vt.mvm_energy_split(CostModel(), 512, 8) == {"fixed": 10_000.0, "row": 0.0,
                                                         "column": 0.0, "cell": 0.0}


def test_four_phase_mode_against_hermes_published_figures():
    """Four phases of the one-phase MVM: HERMES's four-phase 16.1 TOPS / 2.48 TOPS/W give
    521.0 ns and 52.85 nJ per core MVM; the model is 4 x 132.9 ns and 4 x 13.43 nJ."""
    four = physical_cost(4)
    split = vt.mvm_energy_split(four, 256, 256)
    assert sum(split.values()) == pytest.approx(4 * E_CORE_PJ)
    tops, tops_w = vt.mvm_efficiency(four, 256, 256)
    assert tops_w == pytest.approx(2.48, rel=0.02)
    assert tops * 64 == pytest.approx(16.1, rel=0.025)


def test_mvm_table_has_one_row_per_cost_and_shape():
    text = vt.format_mvm_table({"paper": CostModel(), "physical": physical_cost()})
    lines = text.splitlines()
    assert len(lines) == 2 + 2 * len(vt.MVM_SHAPES)
    assert "52.4" in text and "17.7" in text and "9.76" in text and "29.54" in text


def test_mvm_cost_takeaway_by_hand():
    fig = vt.mvm_cost_by_shape({"paper": CostModel(), "physical": physical_cost()})
    # physical: 0.625 E = 8.4 nJ, 28 % of 2.2 E = 29.5 nJ at 17.7 TOPS/W; paper 10 nJ, 52.4 TOPS/W
    assert fig.get_supxlabel() == (
        "physical: a 512x8 MVM costs 8.4 nJ, 28% of a 512x512 one (29.5 nJ, 17.7 TOPS/W); "
        "paper: 10.0 nJ whatever the shape (52.4 TOPS/W at 512x512)")


def test_alternating_tiers_closed_form():
    assert vt.alternating_tiers_ns(1, 100.0, 1000.0) == 100.0  # the tile's first MVM: no switch
    assert vt.alternating_tiers_ns(6, 100.0, 0.0) == 600.0
    assert vt.alternating_tiers_ns(6, 100.0, 1000.0) == 600.0 + 5 * 1000.0
    assert vt.alternating_tiers_ns(3, 132.9, 100.0) == pytest.approx(3 * 132.9 + 2 * 100.0)
    with pytest.raises(ValueError, match="n_mvms"):
        vt.alternating_tiers_ns(0, 100.0, 0.0)
    with pytest.raises(ValueError, match="switch_latency_ns"):
        vt.alternating_tiers_ns(2, 100.0, -1.0)


def test_tier_switch_takeaway_by_hand():
    fig = vt.tier_switch_timeline((0, 100, 1000), n_mvms=6, cost=CostModel(mvm_latency_ns=100.0))
    # 6 x 100 = 600 ns; + 5 x 100 = 1,100 ns; + 5 x 1000 = 5,600 ns; long run (100 + 1000) / 100
    assert fig.get_supxlabel() == (
        "6 MVMs of 100.0 ns alternating tiers: 600 ns at a 0 ns switch, 1,100 ns at a 100 ns "
        "switch, 5.6 µs at a 1,000 ns switch (long run 11.0x the MVM alone)")
    with pytest.raises(ValueError, match="switch_latencies_ns"):
        vt.tier_switch_timeline((-5.0,))


def test_capacity_area_counts_reticle_dies():
    """The 2D chip of the paper chip's capacity: 102,410 mm² / 858 mm² = 119.4 -> 120 dies; the 3D
    chip (135.6 mm²) is one."""
    fig = vt.tile_capacity_area(n_tiles=100, n_tiers_max=1024)
    assert math.ceil(102_410 / (26 * 33)) == 120
    assert fig.get_supxlabel().endswith("; 1 vs 120 dies of <= 858 mm²")
    assert "dies" not in vt.tile_capacity_area(reticle_mm2=None).get_supxlabel()
    assert hardware.RETICLE_MM2 == 858.0


def test_one_tier_at_a_time_defaults_to_the_physical_cost():
    # 4 full tiers: 4 x 132.9 ns on one tile, 4 x 2.2 E = 118.2 nJ
    label = vt.one_tier_at_a_time().get_supxlabel()
    assert label == (f"4 MVMs of {T_CORE_NS:.4g} ns: {4 * T_CORE_NS:,.0f} ns on one tile vs "
                     f"{T_CORE_NS:,.0f} ns on 4 tiles; energy {4 * 2.2 * E_CORE_PJ / 1e3:,.1f} nJ "
                     "either way")
