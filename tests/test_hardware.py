"""Tests of aimoe_lib.hardware: CostModel against the published table, HERMES derivation, ChipConfig
capacity / area / power, presets and validation.

The per-operation numbers are the table of superstarghy/MoEwithPIM src/threedsim/accelerator.py,
labelled there as taken from the 3D-CiM paper ([MOEPIM] in aimoe_lib/hardware.py), at vector
lengths d = 256, 512, 768, 1024.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from aimoe_lib import hardware
from aimoe_lib.hardware import (
    AreaModel,
    ChipConfig,
    CostModel,
    KVPlacement,
    OpCost,
    OpKind,
    UnitAssignment,
)

D = (256, 512, 768, 1024)


# ---------------------------------------------------------------------------- the cost table
@pytest.mark.parametrize("d", [1, 256, 1024, 5000])
def test_mvm_one_tier(cost, d):
    # [MOEPIM] table (src/threedsim/accelerator.py): MVM (one tier) 100 ns, 10 000 pJ, whatever the length
    assert cost.cost(OpKind.MVM, d) == OpCost(100.0, 10_000.0)


@pytest.mark.parametrize(("d", "ns", "pj"), list(zip(D, (50, 50, 100, 100),
                                                     (20.96, 20.96, 41.92, 41.92))))
def test_layernorm_table(cost, d, ns, pj):
    # [MOEPIM] table (src/threedsim/accelerator.py): LayerNorm 50, 50, 100, 100 ns;
    # 20.96, 20.96, 41.92, 41.92 pJ
    c = cost.cost("layernorm", d)
    assert c.latency_ns == pytest.approx(ns)
    assert c.energy_pj == pytest.approx(pj)


@pytest.mark.parametrize(("d", "pj"), list(zip(D, (0.02, 0.03, 0.05, 0.06))))
def test_relu_table(cost, d, pj):
    # [MOEPIM] table (src/threedsim/accelerator.py): ReLU 1 ns; 0.02, 0.03, 0.05, 0.06 pJ (two digits printed,
    # so a per-element line can only match each to within a few thousandths of a pJ)
    c = cost.cost("relu", d)
    assert c.latency_ns == 1.0
    assert abs(c.energy_pj - pj) <= 0.006


def test_relu_per_element_is_least_squares_fit(cost):
    # least-squares line through the origin: sum(d * e) / sum(d^2)
    fit = sum(d * e for d, e in zip(D, (0.02, 0.03, 0.05, 0.06))) / sum(d * d for d in D)
    assert fit == pytest.approx(120.32 / 1_966_080)
    assert cost.relu_energy_pj_per_element == pytest.approx(fit, rel=1e-3)


@pytest.mark.parametrize("d", D)
def test_gelu_table(cost, d):
    # [MOEPIM] table (src/threedsim/accelerator.py): GeLU 16*d/256 + 6 ns (22, 38, 54, 70), 9.63 pJ per 256
    c = cost.cost("gelu", d)
    assert c.latency_ns == pytest.approx(16 * d / 256 + 6)
    assert c.energy_pj == pytest.approx(9.63 * d / 256)
    assert cost.cost("gelu", 256).latency_ns == pytest.approx(22.0)
    assert cost.cost("gelu", 1024).latency_ns == pytest.approx(70.0)


@pytest.mark.parametrize("d", D)
def test_add_table(cost, d):
    # [MOEPIM] table (src/threedsim/accelerator.py): Add 8*d/256 + 4 ns (12, 20, 28, 36), 9.43 pJ per 256
    c = cost.cost("add", d)
    assert c.latency_ns == pytest.approx(8 * d / 256 + 4)
    assert c.energy_pj == pytest.approx(9.43 * d / 256)


@pytest.mark.parametrize(("d", "ns"), list(zip(D, (24, 24, 48, 48))))
def test_comm_table(cost, d, ns):
    # [MOEPIM] table (src/threedsim/accelerator.py): Communication 24, 24, 48, 48 ns; 12.93 pJ per 256
    c = cost.cost("comm", d)
    assert c.latency_ns == pytest.approx(ns)
    assert c.energy_pj == pytest.approx(12.93 * d / 256)


@pytest.mark.parametrize("n", [1, 7, 128])
@pytest.mark.parametrize("d", D)
def test_mha_table(cost, d, n):
    # [MOEPIM] table (src/threedsim/accelerator.py): whole sequence of n tokens (n queries over n keys)
    # n^2 (1.064e-4 d + 1.521e-5 d^2) ns and 0.022289 d n^2 pJ
    c = cost.cost("mha", d, n_queries=n, n_keys=n)
    assert c.latency_ns == pytest.approx(n * n * (1.064e-4 * d + 1.521e-5 * d * d))
    assert c.energy_pj == pytest.approx(0.022289 * d * n * n)


def test_mha_scales_with_query_key_pairs(cost):
    # assumption A-MHA-PAIRS: n^2 -> n_queries * n_keys (one decode query over 100 keys)
    one = cost.cost("mha", 512, n_queries=1, n_keys=100)
    assert one.latency_ns == pytest.approx(100 * (1.064e-4 * 512 + 1.521e-5 * 512 ** 2))
    assert one.energy_pj == pytest.approx(100 * 0.022289 * 512)


def test_chunked_rows_extend_beyond_table(cost):
    # A-COST-EXTRAP: LayerNorm and Comm latencies grow per started chunk of 512 elements
    assert cost.cost("layernorm", 1536) == pytest.approx((150.0, 3 * 20.96))
    assert cost.cost("layernorm", 100) == pytest.approx((50.0, 20.96))
    assert cost.cost("comm", 2048).latency_ns == pytest.approx(96.0)


def test_untabled_ops_follow_stated_assumptions(cost):
    # A-SILU: SiLU costs what GeLU costs; A-MUL: multiply what add costs;
    # A-SOFTMAX: softmax over E scores = GeLU over E; A-TOPK: k add-like passes over E
    assert cost.cost("silu", 768) == cost.cost("gelu", 768)
    assert cost.cost("mul", 768) == cost.cost("add", 768)
    assert cost.cost("softmax", 64) == cost.cost("gelu", 64)
    add64 = cost.cost("add", 64)
    top = cost.cost("topk", 64, n_queries=8)
    assert top == pytest.approx((8 * add64.latency_ns, 8 * add64.energy_pj))
    doubled = dataclasses.replace(cost, silu_relative_cost=2.0)
    assert doubled.cost("silu", 256).energy_pj == pytest.approx(2 * 9.63)


def test_dram_transfer(cost):
    # [3DSIM] defaults: 5.332 GB/s (= 5.332 bytes/ns) at 0.2467 W while transferring
    t = cost.dram_transfer(5332)
    assert t.latency_ns == pytest.approx(5332 / 5.332)  # 1000 ns
    assert t.energy_pj == pytest.approx(0.2467 * 1000e-9 * 1e12)  # W x s -> J -> pJ: 246 700 pJ
    assert cost.dram_transfer(0) == (0.0, 0.0)
    n_bytes = 4096 * 2 * 128
    assert cost.dram_transfer(n_bytes).energy_pj == pytest.approx(
        0.2467 * (n_bytes / 5.332e9) * 1e12)


def test_hermes_derivation():
    # Le Gallo et al. 2023: 63.1 TOPS peak over 64 cores of 256x256, 9.76 TOPS/W.
    ops = 2 * 256 * 256  # one multiply and one add per weight
    latency_ns = ops / (63.1e12 / 64) * 1e9
    energy_pj = ops / 9.76e12 * 1e12
    assert latency_ns == pytest.approx(132.9, abs=0.05)
    assert energy_pj == pytest.approx(13_430, abs=1)  # 13.43 nJ
    c = hardware.hermes_mvm_cost()
    assert c.latency_ns == pytest.approx(latency_ns)
    assert c.energy_pj == pytest.approx(energy_pj)
    half = hardware.hermes_mvm_cost(128, 256)  # A-HERMES-SCALE: energy with the weights used
    assert half.latency_ns == pytest.approx(latency_ns)
    assert half.energy_pj == pytest.approx(energy_pj / 2)


# ---------------------------------------------------------------------------- capacity
def test_capacity_is_tiles_tiers_rows_cols():
    chip = ChipConfig(n_tiles=3, n_tiers=5, tier_rows=7, tier_cols=12)
    assert chip.weights_per_tier == 7 * 12
    assert chip.n_tier_slots == 3 * 5
    assert chip.capacity_weights == 3 * 5 * 7 * 12 == 1260
    assert chip.capacity_bytes == 1260  # 8-bit weights
    assert chip.replace(weight_bits=4).capacity_bytes == 630
    assert chip.is_3d and not chip.replace(n_tiers=1).is_3d


def test_paper_capacity(paper_chip):
    assert paper_chip.capacity_weights == 100 * 1024 * 512 * 512


@pytest.mark.parametrize(("tiles", "tiers", "rows", "cols"), [
    (100, 1024, 512, 512), (3, 5, 7, 12), (1, 1, 1, 1), (64, 16, 256, 256)])
def test_as_2d_keeps_capacity(tiles, tiers, rows, cols):
    chip = ChipConfig(n_tiles=tiles, n_tiers=tiers, tier_rows=rows, tier_cols=cols, name="c")
    flat = chip.as_2d()
    assert flat.n_tiers == 1 and flat.n_tiles == tiles * tiers
    assert flat.capacity_weights == chip.capacity_weights
    assert (flat.tier_rows, flat.tier_cols) == (rows, cols)
    assert flat.name == "c-2d"


# ---------------------------------------------------------------------------- area
def test_default_tile_is_one_mm2(area):
    # [BUCHEL-AREA] 1 mm² per 512x512 tile: 75% periphery (512 columns) + 25% array
    assert area.tile_mm2(512, 512, 1) == pytest.approx(0.75 + 0.25)
    assert area.tier_array_mm2(512, 512) == pytest.approx(0.25)


@pytest.mark.parametrize("tiers", [1, 2, 8, 1024])
@pytest.mark.parametrize(("rows", "cols"), [(512, 512), (256, 256), (128, 1024)])
def test_tiers_add_only_their_overhead(area, rows, cols, tiers):
    overhead = area.tier_overhead_fraction * rows * cols * area.array_area_mm2_per_weight
    assert area.tile_mm2(rows, cols, tiers) - area.tile_mm2(rows, cols, 1) == pytest.approx(
        (tiers - 1) * overhead)


def test_paper_chip_area_by_hand(paper_chip):
    # 100 tiles of (0.75 periphery + 0.25 array x (1 + 0.001 x 1023)) + 4 DPUs x 1.25 + 1 x 5 mm²
    tile = 0.75 + 0.25 * (1 + 0.001 * 1023)
    assert paper_chip.tile_area_mm2 == pytest.approx(tile)
    assert paper_chip.tiles_area_mm2 == pytest.approx(100 * tile)
    assert paper_chip.digital_area_mm2 == pytest.approx(4 * 1.25 + 5)
    assert paper_chip.area_mm2 == pytest.approx(100 * tile + 10)  # 135.575
    assert paper_chip.as_2d().area_mm2 == pytest.approx(102_400 * 1.0 + 10)


@pytest.mark.parametrize("tiers", [2, 4, 64, 1024])
@pytest.mark.parametrize(("rows", "cols"), [(512, 512), (256, 256)])
def test_3d_smaller_than_2d_at_equal_capacity(tiers, rows, cols):
    chip = ChipConfig(n_tiles=10, n_tiers=tiers, tier_rows=rows, tier_cols=cols)
    flat = chip.as_2d()
    assert flat.capacity_weights == chip.capacity_weights
    assert chip.area_mm2 < flat.area_mm2


def test_2d_chip_is_its_own_flattening():
    chip = ChipConfig(n_tiles=10, n_tiers=1)
    assert chip.as_2d().area_mm2 == pytest.approx(chip.area_mm2)


# ---------------------------------------------------------------------------- power, provisioning
def test_passive_power():
    # [3DSIM]: 1 W per DPU and per MHA unit; 0.1297 W idle DRAM when the KV cache lives there
    chip = ChipConfig(n_tiles=10, n_tiers=4, n_dpus=10, n_mha_units=3)
    assert chip.passive_power_w == pytest.approx((10 + 3) * 1.0)
    assert chip.replace(kv_placement="dram").passive_power_w == pytest.approx(13 + 0.1297)
    assert ChipConfig(n_tiles=1, n_tiers=1).passive_power_w == pytest.approx(4 + 1)


def test_provisioned_bert_base(paper_chip):
    # 3D-SiM functional_bert_tvlsi.py: 288 DPUs and 96 MHA units for BERT-base's 12 layers
    chip = paper_chip.provisioned(12)
    assert (chip.n_dpus, chip.n_mha_units) == (288, 96)
    assert chip.unit_assignment is UnitAssignment.PER_LAYER
    assert (chip.n_tiles, chip.n_tiers) == (paper_chip.n_tiles, paper_chip.n_tiers)
    assert chip.passive_power_w == pytest.approx(288 + 96)
    assert paper_chip.provisioned(2, dpus_per_layer=3, mha_units_per_layer=1).n_dpus == 6


def test_enums_coerced():
    chip = ChipConfig(n_tiles=1, n_tiers=1, unit_assignment="PER_LAYER", kv_placement="Dram")
    assert chip.unit_assignment is UnitAssignment.PER_LAYER
    assert chip.kv_placement is KVPlacement.DRAM


def test_describe(paper_chip):
    assert paper_chip.describe().startswith("paper: 100 tiles x 1024 tiers of 512x512")


# ---------------------------------------------------------------------------- presets
def test_preset_names():
    assert hardware.preset_names() == ("paper", "paper-2d", "hermes", "3dsim", "physical")


def test_paper_preset(paper_chip):
    assert (paper_chip.n_tiles, paper_chip.n_tiers) == (100, 1024)
    assert (paper_chip.tier_rows, paper_chip.tier_cols) == (512, 512)
    assert (paper_chip.n_dpus, paper_chip.n_mha_units) == (4, 1)  # [3DSIM] pool defaults
    assert paper_chip.unit_assignment is UnitAssignment.POOL
    assert paper_chip.kv_placement is KVPlacement.SRAM
    assert paper_chip.cost == CostModel()
    assert paper_chip.name == "paper"


def test_preset_case_insensitive(paper_chip):
    assert hardware.preset("PAPER") == paper_chip
    assert hardware.preset("Hermes") == hardware.preset("hermes")


def test_paper_2d_preset(paper_chip):
    flat = hardware.preset("paper-2d")
    assert flat.n_tiers == 1 and flat.n_tiles == 100 * 1024
    assert flat.capacity_weights == paper_chip.capacity_weights
    assert flat.name == "paper-2d"


def test_hermes_preset():
    chip = hardware.preset("hermes")
    assert (chip.n_tiles, chip.n_tiers, chip.tier_rows, chip.tier_cols) == (64, 1, 256, 256)
    assert chip.cost.mvm_latency_ns == pytest.approx(2 * 256 * 256 / (63.1e12 / 64) * 1e9)
    assert chip.cost.mvm_energy_pj == pytest.approx(2 * 256 * 256 / 9.76e12 * 1e12)


def test_preset_overrides(paper_chip):
    chip = hardware.preset("paper", n_tiles=2000, n_dpus=8, kv_placement="dram")
    assert (chip.n_tiles, chip.n_tiers, chip.n_dpus) == (2000, 1024, 8)
    assert chip.kv_placement is KVPlacement.DRAM
    cheap = CostModel(mvm_energy_pj=1.0)
    assert hardware.preset("paper", cost=cheap).cost == cheap
    assert hardware.preset("hermes", n_tiers=16).n_tiers == 16
    assert hardware.preset("paper-2d", n_dpus=8).n_dpus == 8


@pytest.mark.parametrize("preset_name", ["paper", "paper-2d", "hermes"])
def test_preset_name_override(preset_name):
    """ChipConfig has a field called name; preset(..., name=...) must override it like any other."""
    assert hardware.preset(preset_name, name="mine").name == "mine"


@pytest.mark.parametrize("field", ["tier_rows", "tier_cols"])
def test_hermes_preset_tier_shape_override(field):
    """preset() promises that keyword arguments override any ChipConfig field."""
    assert getattr(hardware.preset("hermes", **{field: 512}), field) == 512


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError) as excinfo:
        hardware.preset("tpu")
    msg = str(excinfo.value)
    assert "'tpu'" in msg
    for name in ("paper", "paper-2d", "hermes"):
        assert name in msg


# ---------------------------------------------------------------------------- validation
def _assert_message(excinfo, field, value, valid):
    msg = str(excinfo.value)
    assert field in msg, msg
    assert repr(value) in msg, msg
    assert valid in msg, msg


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("n_tiles", 0, ">= 1"),
    ("n_tiers", -1, ">= 1"),
    ("tier_rows", 0, ">= 1"),
    ("tier_cols", 1.5, "positive integer"),
    ("n_dpus", 0, ">= 1"),
    ("n_mha_units", 0, ">= 1"),
    ("weight_bits", 0, ">= 1"),
    ("n_tiles", True, "positive integer"),  # a bool is not a count
    ("n_tiers", 2.0, "positive integer"),
])
def test_chip_invalid_numbers(field, value, valid):
    with pytest.raises(ValueError) as excinfo:
        ChipConfig(**{"n_tiles": 4, "n_tiers": 2, field: value})
    _assert_message(excinfo, f"ChipConfig.{field}", value, valid)


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("unit_assignment", "shared", "'pool', 'per_layer'"),
    ("kv_placement", "hbm", "'sram', 'dram'"),
])
def test_chip_unknown_enum_values(field, value, valid):
    with pytest.raises(ValueError) as excinfo:
        ChipConfig(n_tiles=4, n_tiers=2, **{field: value})
    _assert_message(excinfo, f"ChipConfig.{field}", value, valid)


@pytest.mark.parametrize(("field", "value"), [("cost", "paper"), ("area", None)])
def test_chip_cost_and_area_types(field, value):
    with pytest.raises(ValueError, match=f"ChipConfig.{field}"):
        ChipConfig(n_tiles=4, n_tiers=2, **{field: value})


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("mvm_energy_pj", -1.0, ">= 0"),
    ("layernorm_latency_ns_per_512", -50, ">= 0"),
    ("mha_energy_pj_per_pair_d", -1e-3, ">= 0"),
    ("dram_idle_power_w", -0.1, ">= 0"),
    ("mvm_latency_ns", 0, "> 0"),  # a zero-time MVM would make every schedule degenerate
    ("dram_bandwidth_gb_s", 0.0, "> 0"),
    ("gelu_energy_pj_per_256", math.nan, "non-negative"),
    ("add_latency_ns_fixed", math.inf, "non-negative"),
    ("relu_latency_ns", True, "non-negative"),  # a bool is not a latency
    ("comm_energy_pj_per_256", "12.93", "non-negative"),  # nor is a string
])
def test_cost_model_invalid_values(field, value, valid):
    with pytest.raises(ValueError) as excinfo:
        CostModel(**{field: value})
    _assert_message(excinfo, f"CostModel.{field}", value, valid)


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("dpu_area_mm2", -1.25, ">= 0"),
    ("tier_overhead_fraction", math.nan, "non-negative"),
])
def test_area_model_invalid_values(field, value, valid):
    with pytest.raises(ValueError) as excinfo:
        AreaModel(**{field: value})
    _assert_message(excinfo, f"AreaModel.{field}", value, valid)


@pytest.mark.parametrize("length", [0, -3, 2.5, True])
def test_cost_rejects_bad_length(cost, length):
    with pytest.raises(ValueError) as excinfo:
        cost.cost("gelu", length)
    _assert_message(excinfo, "length", length, ">= 1")


@pytest.mark.parametrize(("field", "value"), [
    ("n_keys", 0), ("n_queries", 0), ("n_keys", -2), ("n_keys", True)])
def test_mha_rejects_bad_counts(cost, field, value):
    with pytest.raises(ValueError) as excinfo:
        cost.cost("mha", 512, **{field: value})
    _assert_message(excinfo, field, value, ">= 1")


@pytest.mark.parametrize("k", [0, -1])
def test_topk_rejects_bad_k(cost, k):
    """Top-k with k < 1 would return a zero or negative cost."""
    with pytest.raises(ValueError) as excinfo:
        cost.cost("topk", 64, n_queries=k)
    _assert_message(excinfo, "n_queries", k, ">= 1")


def test_unknown_op_rejected(cost):
    with pytest.raises(ValueError, match="conv"):
        cost.cost("conv", 256)


def test_dram_transfer_rejects_negative_bytes(cost):
    with pytest.raises(ValueError, match="n_bytes"):
        cost.dram_transfer(-1)


@pytest.mark.parametrize(("n_layers", "valid"), [
    (0, ">= 1"), (-1, ">= 1"), (1.5, "integer"), (True, "integer")])
def test_provisioned_rejects_bad_layers(paper_chip, n_layers, valid):
    with pytest.raises(ValueError) as excinfo:
        paper_chip.provisioned(n_layers)
    _assert_message(excinfo, "n_layers", n_layers, valid)


def test_replace_validates(paper_chip):
    with pytest.raises(ValueError, match="n_tiles"):
        paper_chip.replace(n_tiles=0)


def test_op_names_are_case_insensitive_and_unknown_ops_list_the_valid_ones():
    c = hardware.CostModel()
    assert c.cost("MVM", 512) == c.cost(hardware.OpKind.MVM, 512)
    with pytest.raises(ValueError, match=r"op='conv'.*'mvm'"):
        c.cost("conv", 512)


def test_dram_transfer_refuses_nan():
    with pytest.raises(ValueError, match="n_bytes=nan"):
        hardware.CostModel().dram_transfer(float("nan"))


def test_paper_2d_overrides_apply_to_the_flat_chip():
    chip = hardware.preset("paper-2d", n_tiles=2000)
    assert (chip.n_tiles, chip.n_tiers, chip.name) == (2000, 1, "paper-2d")
    assert hardware.preset("paper-2d").n_tiles == 100 * 1024  # equal capacity to 'paper'


# ------------------------------------------------------------------ shape-dependent MVM cost
def test_physical_mvm_reproduces_hermes_one_phase():
    """HERMES: 63.1 TOPS over 64 cores and 9.76 TOPS/W; a 256x256 MVM is 2 x 256 x 256 = 131,072
    operations: 131,072 / (63.1e12 / 64) s = 132.94 ns and 131,072 / 9.76e12 J = 13.43 nJ."""
    c = hardware.preset("physical").cost.mvm(256, 256)
    assert c.latency_ns == pytest.approx(131_072 / (63.1e12 / 64) * 1e9, rel=0.05)
    assert c.energy_pj == pytest.approx(131_072 / 9.76e12 * 1e12, rel=0.05)


def test_four_phase_mode_reproduces_hermes_four_phase_figures():
    """HERMES four-phase: 16.1 TOPS and 2.48 TOPS/W, i.e. per core 131,072 / (16.1e12 / 64) s =
    521.0 ns and 131,072 / 2.48e12 J = 52.85 nJ per 256x256 MVM; four input phases give 4 x the
    one-phase 132.9 ns / 13.43 nJ."""
    c = hardware.hermes_split_cost(4).mvm(256, 256)
    assert c.latency_ns == pytest.approx(131_072 / (16.1e12 / 64) * 1e9, rel=0.05)
    assert c.energy_pj == pytest.approx(131_072 / 2.48e12 * 1e12, rel=0.05)


def test_a_narrow_mvm_costs_well_under_a_full_tier():
    """With HERMES' 13.43 nJ split 10 / 25 / 50 / 15 % into fixed, per-row (256 rows),
    per-column (256) and per-cell (65,536) parts: a 512 x 8 MVM costs
    0.10 E + 0.25 E x 512/256 + 0.50 E x 8/256 + 0.15 E x 4096/65536 = 0.625 E, a full
    512 x 512 tier 0.10 E + 0.5 E + 1.0 E + 0.6 E = 2.2 E."""
    c = hardware.preset("physical").cost
    e = 131_072 / 9.76e12 * 1e12
    assert c.mvm(512, 8).energy_pj == pytest.approx(0.625 * e, rel=1e-9)
    assert c.mvm(512, 512).energy_pj == pytest.approx(2.2 * e, rel=1e-9)
    assert c.mvm(512, 8).energy_pj < 0.3 * c.mvm(512, 512).energy_pj
    paper = hardware.preset("paper").cost
    assert paper.mvm(512, 8) == paper.mvm(512, 512) == (100.0, 10_000.0)


def test_mvm_shape_and_phases_are_checked():
    with pytest.raises(ValueError, match="rows_used"):
        hardware.CostModel().mvm(0, 8)
    with pytest.raises(ValueError, match="mvm_input_phases"):
        hardware.CostModel(mvm_input_phases=0)


def test_simulated_mvm_energy_follows_the_blocks_shapes():
    """Under 'physical' a matrix of 512 x 8 blocks costs its blocks' shape-dependent energy."""
    from aimoe_lib import mapping
    from aimoe_lib.models import ModelSpec
    from aimoe_lib.simulator import Workload, simulate

    spec = ModelSpec(d_model=512, n_layers=1, n_heads=8, d_ff=512, vocab_size=8, ffn="relu")
    for name in ("paper", "physical"):
        chip = hardware.preset(name, n_tiles=16, n_tiers=1)
        m = mapping.map_model(spec, chip)
        r = simulate(spec, chip, m, Workload())
        expect = sum(chip.cost.mvm(int(a), int(b)).energy_pj
                     for a, b in zip(m.rows_used, m.cols_used, strict=True))
        # every block runs once per token except the LM head (once per pass): one token here
        assert r.energy_breakdown_pj["mvm"] == pytest.approx(expect, rel=1e-12)


def test_attention_as_macs_is_linear_in_d_and_keys():
    """'macs': a query over n keys is 2 d n MACs (scores and values) at 256 MACs/ns, 1 pJ each:
    d = 4096, 2048 keys -> 16.78 M MACs, 65,536 ns and 16.78 µJ; twice d or keys, twice both."""
    c = hardware.CostModel(mha_cost_model="macs")
    one = c.cost("mha", 4096, 1, 2048)
    assert one.latency_ns == pytest.approx(2 * 4096 * 2048 / 256)
    assert one.energy_pj == pytest.approx(2 * 4096 * 2048 * 1.0)
    assert c.cost("mha", 8192, 1, 2048).latency_ns == pytest.approx(2 * one.latency_ns)
    assert c.cost("mha", 4096, 1, 4096).energy_pj == pytest.approx(2 * one.energy_pj)
    # the pairs fit grows faster than linearly in d (its d² term)
    fit = hardware.CostModel()
    assert fit.cost("mha", 8192, 1, 1).latency_ns > 2 * fit.cost("mha", 4096, 1, 1).latency_ns
    with pytest.raises(ValueError, match="mha_cost_model"):
        hardware.CostModel(mha_cost_model="flash")


@pytest.mark.parametrize("mode, depth, adds", [("one_add", None, None), ("chain", 3, 3),
                                               ("tree", 2, 3), ("periphery", 0, 3)])
def test_partial_sum_modes_by_hand(mode, depth, adds):
    """ffn_down of 128 inputs on 32-row tiers: 4 row blocks, 3 adds of 32 outputs; a chain is 3
    deep, a tree ceil(log2 4) = 2, the periphery 0 (its energy still 3 adds)."""
    from aimoe_lib import mapping
    from aimoe_lib.models import ModelSpec
    from aimoe_lib.simulator import Workload, simulate

    spec = ModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=16, ffn="relu")
    chip = hardware.ChipConfig(n_tiles=64, n_tiers=1, tier_rows=32, tier_cols=32,
                               dataflow=hardware.Dataflow(partial_sums=mode))
    r = simulate(spec, chip, mapping.map_model(spec, chip), Workload())
    i = r.program.names.index("L0.add+ln")
    cost = chip.cost
    close = cost.cost("add", 32).latency_ns + cost.cost("layernorm", 32).latency_ns
    close_e = cost.cost("add", 32).energy_pj + cost.cost("layernorm", 32).energy_pj
    if mode == "one_add":
        add96 = cost.cost("add", 96)
        assert r.program.lat[i] == pytest.approx(add96.latency_ns + close)
        return
    add = cost.cost("add", 32)
    assert r.program.lat[i] == pytest.approx(depth * add.latency_ns + close)
    assert r.program.energy[i] == pytest.approx(adds * add.energy_pj + close_e)


def test_power_gating_charges_idle_units_a_fraction():
    """With idle_power_fraction f, static energy = P x (f x units x makespan + (1 - f) x busy);
    f = 1 is the ungated P x units x makespan."""
    from aimoe_lib import mapping
    from aimoe_lib.models import ModelSpec
    from aimoe_lib.simulator import Workload, simulate

    spec = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_ff=64, vocab_size=16, ffn="relu")
    runs = {}
    for f in (1.0, 0.25, 0.0):
        cost = hardware.CostModel(unit_passive_power_w=0.5, tile_passive_power_w=0.01,
                                  idle_power_fraction=f)
        chip = hardware.ChipConfig(n_tiles=32, n_tiers=2, tier_rows=32, tier_cols=32, cost=cost)
        runs[f] = simulate(spec, chip, mapping.map_model(spec, chip), Workload(batch=2, gen_len=3))
    r = runs[0.25]
    mk = r.makespan_ns
    busy_units = r.unit_busy_ns["dpu"].sum() + r.unit_busy_ns["mha"].sum()
    units = r.unit_busy_ns["dpu"].size + r.unit_busy_ns["mha"].size
    expect = (0.5 * (0.25 * units * mk + 0.75 * busy_units)
              + 0.01 * (0.25 * 32 * mk + 0.75 * r.tile_busy_ns.sum())) * 1e3
    assert r.energy_breakdown_pj["passive"] == pytest.approx(expect, rel=1e-12)
    assert runs[1.0].energy_breakdown_pj["passive"] == pytest.approx(
        (0.5 * units + 0.01 * 32) * runs[1.0].makespan_ns * 1e3)
    assert runs[0.0].energy_breakdown_pj["passive"] == pytest.approx(
        (0.5 * (runs[0.0].unit_busy_ns["dpu"].sum() + runs[0.0].unit_busy_ns["mha"].sum())
         + 0.01 * runs[0.0].tile_busy_ns.sum()) * 1e3)
    assert r.dynamic_energy_pj == pytest.approx(r.energy_pj - r.energy_breakdown_pj["passive"])
    with pytest.raises(ValueError, match="idle_power_fraction"):
        hardware.CostModel(idle_power_fraction=1.5)


def test_physical_static_power_is_moewithpims_per_unit():
    """MoEwithPIM: 0.02412 W for 5 DPUs + 4 attention units = 2.68 mW per unit."""
    c = hardware.preset("physical", n_dpus=5, n_mha_units=4)
    assert c.passive_power_w == pytest.approx(0.02412)
    assert c.cost.unit_passive_power_w == pytest.approx(0.02412 / 9)


def test_a_chip_beyond_the_reticle_is_split_into_dies():
    """858 mm² = 26 x 33 mm (the scanner field). The physical preset's 100 tiles x 1024 tiers is
    one die; 6,000 physical tiles of 64 tiers are ceil(area / 858) dies, tiles shared equally."""
    from aimoe_lib.hardware import RETICLE_MM2
    assert RETICLE_MM2 == 858.0
    one = hardware.preset("physical")
    assert one.reticle_mm2 == 858.0 and one.area_mm2 < 858 and one.n_dies == 1
    big = hardware.preset("physical", n_tiles=6000, n_tiers=64)
    assert big.n_dies == math.ceil(big.area_mm2 / 858.0) and big.n_dies > 1
    d = big.die_of_tile(np.arange(6000))
    assert np.all(np.diff(d) >= 0) and set(np.bincount(d)) <= {6000 // big.n_dies,
                                                               6000 // big.n_dies + 1}
    assert f"on {big.n_dies} dies" in big.describe()
    assert hardware.preset("paper", n_tiles=6000, n_tiers=64).n_dies == 1  # no reticle limit


@pytest.mark.parametrize("kw, says", [
    (dict(reticle_mm2=0.0), "reticle_mm2=0.0: must be > 0"),
    (dict(reticle_mm2=0.5), "one tile alone is"),
    (dict(reticle_mm2=-1.0), "reticle_mm2=-1.0"),
])
def test_bad_reticles_are_refused(kw, says):
    with pytest.raises(ValueError, match=says):
        hardware.preset("physical", **kw)


def test_the_die_to_die_link_is_ucie_advanced_package():
    """UCIe 1.0 advanced package: 0.25 pJ/bit up to 16 GT/s; one x64 module at 16 GT/s is
    64 x 16 Gb/s / 8 = 128 GB/s; about 2 ns latency."""
    c = hardware.preset("physical").cost
    assert c.d2d_energy_pj_per_bit == 0.25 and c.d2d_bandwidth_gb_s == 64 * 16 / 8
    assert c.d2d_latency_ns == 2.0 and c.activation_bits == 8
    assert hardware.preset("paper").cost.d2d_energy_pj_per_bit == 0.0
