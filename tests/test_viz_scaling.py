"""Chapter 5 and 9 figures and helpers (aimoe_lib.viz.scaling) and their panels
(aimoe_lib.widgets.scaling): labelled figures over the shipped rows, the numbers the chapters quote,
and live recomputation that reproduces the shipped rows."""

import ipywidgets
import pytest
from figure_checks import check_figure

from aimoe_lib import design_space as ds
from aimoe_lib import experiments, hardware, sweep
from aimoe_lib.viz import scaling as vs
from aimoe_lib.widgets import scaling as ws


@pytest.fixture(scope="module")
def scaling():
    return experiments.load("scaling")


@pytest.fixture(scope="module")
def conditions():
    return experiments.load("conditions")


@pytest.fixture(scope="module")
def zoo_rows():
    return experiments.load("zoo")




# ----------------------------------------------------------------------------- rows
def test_parse_label():
    assert vs.parse_label("dense-wider|16|2d|256") == ("dense-wider", 16, "2d", 256)
    for bad in ("moe|8|3d", "gpu|8|3d|8", "moe|8|4d|8"):
        with pytest.raises(ValueError, match="scaling label"):
            vs.parse_label(bad)


def test_series_starts_from_the_shared_base(scaling):
    for fam in vs.FAMILIES:
        s = vs.series(scaling, fam, "3d", 8)
        assert s[0]["model"] == experiments.BASE.name
        assert len(s) == len(experiments.EXPERTS)
        assert all("energy_dynamic_per_token_pj" in r for r in s)
    moe = vs.series(scaling, "moe", "3d", 8)
    assert [r["n_experts"] for r in moe] == [0, 2, 4, 8, 16, 32, 64]
    with pytest.raises(ValueError, match="family"):
        vs.series(scaling, "gpu")


def test_row_lookup(scaling):
    r = vs.row(scaling, "moe|64|3d|256")
    assert r["n_experts"] == 64 and r["batch"] == 256
    with pytest.raises(KeyError, match="no row"):
        vs.row(scaling, "moe|3|3d|8")


def test_efficiency_columns_by_hand(scaling):
    """tokens/s per mm² and tokens per joule from a row's raw fields (SimResult's definitions:
    generated tokens over total energy, throughput over chip area)."""
    raw = next(r for r in scaling if r["label"] == "moe|64|3d|256")
    r = vs.row(scaling, "moe|64|3d|256")
    n = raw["batch"] * raw["gen_len"]
    assert r["tokens_per_s_per_mm2"] == pytest.approx(raw["tokens_per_s"] / raw["area_mm2"])
    assert r["tokens_per_joule"] == pytest.approx(n / (raw["energy_pj"] * 1e-12))
    assert r["tokens_per_joule_dynamic"] == pytest.approx(
        n / ((raw["energy_pj"] - raw["energy_passive_pj"]) * 1e-12))
    assert r["tokens_per_joule_dynamic"] >= r["tokens_per_joule"]
    assert all("tokens_per_joule" in x for x in vs.series(scaling, "dense-wider", "2d", 8))


def test_scaling_table_lists_each_model_once(scaling):
    text = vs.scaling_table(scaling, 256, "3d")
    assert text.count("base-dense") == 1
    assert "moe-64e-top1" in text and "dense-deeper-516L" in text and "dense-wider-d6528" in text


# ----------------------------------------------------------------------------- figures
def test_chapter5_figures_are_labelled(scaling, conditions, zoo_rows):
    figs = [vs.scaling_throughput(scaling), vs.scaling_latency(scaling),
            vs.scaling_energy(scaling), vs.scaling_efficiency(scaling),
            vs.scaling_area_conflicts(scaling), vs.provisioning_figure(conditions),
            vs.zoo_comparison(zoo_rows), vs.conditions_figure(conditions),
            vs.family_comparison([vs.row(scaling, f"{f}|64|3d|8") for f in vs.FAMILIES])]
    for fig in figs:
        check_figure(fig)


def test_throughput_takeaway_numbers(scaling):
    """The chapter's central numbers, from the rows: MoE flat at batch 8, dense deeper ~1/params."""
    moe = [r["tokens_per_s"] for r in vs.series(scaling, "moe", "3d", 8)]
    assert max(moe[1:]) / min(moe[1:]) < 1.05  # E = 2 .. 64: the router's step, then flat
    assert max(moe) / min(moe) < 1.25
    deep = vs.series(scaling, "dense-deeper", "3d", 8)
    # latency-bound: dense throughput falls roughly as 1 / total parameters
    ratio = (deep[0]["tokens_per_s"] / deep[-1]["tokens_per_s"]) / (
        deep[-1]["total_params"] / deep[0]["total_params"])
    assert 0.8 < ratio < 1.25
    m, d = vs.row(scaling, "moe|64|3d|256"), vs.row(scaling, "dense-deeper|64|3d|256")
    text = vs.scaling_throughput(scaling).get_supxlabel()
    assert f"({m['tokens_per_s'] / d['tokens_per_s']:.0f}x)" in text


def test_dynamic_energy_of_moe_is_flat(scaling):
    """Active parameters are constant, so the MVM energy per token is flat (within 1 %: only the
    router's E columns grow); the dynamic total grows a few per cent, and most of that growth is
    communication: the two-die chip's crossings of expert vectors (A-D2D-HOME)."""
    moe = vs.series(scaling, "moe", "3d", 256)[1:]
    dyn = [r["energy_dynamic_per_token_pj"] for r in moe]
    mvm = [r["energy_mvm_pj"] for r in moe]
    assert max(mvm) / min(mvm) < 1.01 and max(dyn) / min(dyn) < 1.05
    comm = [r["energy_communication_pj"] / (r["batch"] * r["gen_len"]) for r in moe]
    assert comm[-1] - comm[0] > 0.8 * (dyn[-1] - dyn[0])
    deep = vs.series(scaling, "dense-deeper", "3d", 256)
    assert deep[-1]["energy_dynamic_per_token_pj"] > 30 * dyn[-1]


def test_energy_figure_shows_every_passive_share(scaling):
    """The passive-share panel spans 0-100 %, so small shares (a few per cent with mW units) are
    drawn, not clipped; the takeaway quotes the dynamic and total energy of dense deeper."""
    fig = vs.scaling_energy(scaling)
    ax_s = fig.axes[2]
    lo, hi = ax_s.get_ylim()
    ys = [y for line in ax_s.get_lines() for y in line.get_ydata()]
    assert ys and lo <= min(ys) and max(ys) <= hi
    d = vs.row(scaling, "dense-deeper|64|3d|256")
    text = fig.get_supxlabel()
    assert f"{d['energy_dynamic_per_token_pj'] / 1e6:,.0f} µJ dynamic" in text
    assert f"{d['energy_per_token_pj'] / 1e6:,.0f} µJ total" in text


def test_efficiency_takeaway_numbers(scaling):
    """3D's figure of merit: the same throughput per token of energy as 2D, many times the
    throughput per mm² (the tiers stack capacity at almost constant footprint)."""
    m3, m2 = vs.row(scaling, "moe|64|3d|256"), vs.row(scaling, "moe|64|2d|256")
    per_mm2 = (m3["tokens_per_s"] / m3["area_mm2"]) / (m2["tokens_per_s"] / m2["area_mm2"])
    text = vs.scaling_efficiency(scaling).get_supxlabel()
    assert f"({per_mm2:.1f}x)" in text
    assert per_mm2 > 5  # 36 tiers per tile: 17x less area, at most 2x less throughput
    # the energy of a token does not depend on stacking: same MVMs, same digital work
    assert m3["energy_dynamic_per_token_pj"] == pytest.approx(m2["energy_dynamic_per_token_pj"],
                                                               rel=0.02)


def test_conditions_takeaway_names_the_smallest_lead(conditions):
    r = vs.condition_ratios(conditions)
    b_min = min(r["batch"], key=r["batch"].get)
    text = vs.conditions_figure(conditions).get_supxlabel()
    assert f"{r['batch'][b_min]:.0f}x (batch {b_min})" in text


def test_strategies_share_one_chip(conditions):
    """in_order, balanced and moe_stacked are compared on one equal-capacity chip: 2E tiers."""
    chips = {(r["n_tiles"], r["n_tiers"], r["n_dpus"], r["n_mha_units"], r["area_mm2"])
             for r in conditions if r["label"].startswith("moe|strategy|")}
    assert len(chips) == 1 and next(iter(chips))[1] == 2 * 64


def test_provisioning_rows_by_hand(conditions):
    """Per layer: 24 DPUs and 8 attention units (3D-SiM's BERT-base check: 288 and 96 for 12
    layers); the digital area is units x 1.25 mm² and x 5 mm²: for the 516-layer dense model
    516 x (24 x 1.25 + 8 x 5) = 36,120 mm², 98 % of its chip."""
    rows = vs.provisioning_rows(conditions)
    area = hardware.preset(experiments.PRESET).area
    for r in rows:
        assert r["digital_area_mm2"] == pytest.approx(r["n_dpus"] * area.dpu_area_mm2
                                                      + r["n_mha_units"] * area.mha_unit_area_mm2)
        if r["provisioning"] == "per_layer":
            assert (r["dpus_per_layer"], r["mha_per_layer"]) == (24, 8)
    deep = next(r for r in rows if r["family"] == "dense-deeper" and r["batch"] == 256
                and r["provisioning"] == "per_layer")
    assert deep["digital_area_mm2"] == pytest.approx(516 * (24 * 1.25 + 8 * 5.0))
    assert deep["digital_area_mm2"] / deep["area_mm2"] > 0.97
    for fam in ("moe", "dense-deeper"):
        for b in (8, 256):
            pl, tl = (next(r for r in rows if (r["family"], r["batch"], r["provisioning"])
                           == (fam, b, k)) for k in ("per_layer", "to_load"))
            assert tl["n_dpus"] <= pl["n_dpus"] and tl["n_mha_units"] <= pl["n_mha_units"]
            assert tl["area_mm2"] < pl["area_mm2"]
            assert (tl["n_tiles"], tl["n_tiers"]) == (pl["n_tiles"], pl["n_tiers"])
    with pytest.raises(KeyError, match="no conditions row"):
        vs.provisioning_rows(conditions, batches=(3,))


def test_to_load_units_keep_the_kv_cache_on_chip(conditions):
    """Each attention unit holds 2 MB of KV cache; the cache is batch x positions x layers x 2 x
    d_model x 2 bytes (positions: the prompt and every generated token but the last), and whatever
    exceeds units x 2 MB is read from HBM. Rows with HBM energy are exactly those whose cache does
    not fit. By hand for MoE-64 at batch 256: 256 x 11 x 12 x 2048 x 2 B = 138.4 MB, against
    96 x 2 MB = 192 MB with 8 units per layer (fits). Sized to the load, the attention units must
    still hold it: ceil(138.4 MB / (12 layers x 2 MB)) = 6 per layer, 72 units, and nothing
    spills."""
    kv_mb = hardware.preset(experiments.PRESET).kv_sram_mb_per_mha_unit
    assert kv_mb == 2.0
    for r in conditions:
        if r["label"].split("|")[1] not in ("units", "tiles", "batch"):
            continue
        cache = (r["batch"] * (r["prompt_len"] + r["gen_len"] - 1) * r["n_layers"]
                 * 2 * r["d_model"] * 2.0)
        spills = cache > r["n_mha_units"] * kv_mb * 1e6
        assert (r["energy_dram_pj"] > 0) == spills, r["label"]
    moe = {k: vs.row(conditions, f"moe|{k}|256") for k in ("tiles|1", "units|to_load")}
    assert (moe["tiles|1"]["n_mha_units"], moe["units|to_load"]["n_mha_units"]) == (96, 72)
    assert moe["tiles|1"]["energy_dram_pj"] == 0 == moe["units|to_load"]["energy_dram_pj"]
    deep = vs.row(conditions, "dense-deeper|units|to_load|256")  # same cache per layer: 6 units
    assert deep["n_mha_units"] == 6 * 516 and deep["energy_dram_pj"] == 0


def test_condition_ratios_by_hand(conditions):
    r = vs.condition_ratios(conditions)
    by = {x["label"]: x["tokens_per_s"] for x in conditions}
    assert r["batch"][4] == pytest.approx(by["moe|batch|4"] / by["dense-deeper|batch|4"])
    assert r["tiles"][(0.5, 8)] == pytest.approx(by["moe|tiles|0.5|8"]
                                                 / by["dense-deeper|tiles|0.5|8"])
    assert r["zipf"][(2.0, 256)] == pytest.approx(by["moe|zipf|2.0|256"]
                                                  / by["dense-deeper|tiles|1|256"])
    assert r["strategy"][("moe_stacked", 256)] > r["strategy"][("in_order", 256)]
    assert sorted(r["batch"]) == [1, 4, 16, 64, 256, 1024]


def test_pareto_figure_with_highlight():
    rows = [r for r in ds.load() if r["batch"] == 8]
    front = ds.pareto_front(rows, ds.CAPACITY_OBJECTIVES)
    hl = sweep.run_point(ds.build_point())
    fig = vs.pareto_figure(rows, front, highlight=hl, objectives=ds.CAPACITY_OBJECTIVES)
    check_figure(fig)
    assert f"{len(front)} of {sum(not r['error'] for r in rows)}" in fig.get_supxlabel()
    text = vs.pareto_table(front)
    assert all(r["model"] in text for r in front)
    with pytest.raises(ValueError, match="no rows"):
        vs.pareto_figure([{**rows[0], "error": "x"}], [])


# ----------------------------------------------------------------------------- live
def test_family_points():
    pts = experiments.family_points(n_experts=4, batch=2, gen_len=2)
    assert [p.label for p in pts] == ["moe|4|3d|2", "dense-deeper|4|3d|2", "dense-wider|4|3d|2"]
    flat = experiments.family_points(n_experts=4, batch=2, gen_len=2, chip="2d")
    assert all(p.chip.n_tiers == 1 for p in flat)
    stacked = experiments.family_points(n_experts=8, strategy="moe_stacked", families=("moe",))
    assert stacked[0].strategy == "moe_stacked" and stacked[0].chip.n_tiers >= 16
    with pytest.raises(ValueError, match="chip"):
        experiments.family_points(chip="3D")


def test_family_rows_reproduce_the_shipped_rows(scaling):
    """The panel's live runs at the shipped workload equal the shipped rows."""
    for r in experiments.family_rows(n_experts=4, batch=8, gen_len=8):
        shipped = vs.row(scaling, r["label"])
        for k in ("tokens_per_s", "energy_pj", "area_mm2", "tile_conflicts"):
            assert r[k] == pytest.approx(shipped[k], rel=1e-12), (r["label"], k)


def test_family_comparison_rejects_unmapped_rows():
    rows = experiments.family_rows(n_experts=2, batch=1, gen_len=1)
    check_figure(vs.family_comparison(rows))
    with pytest.raises(ValueError, match="did not map"):
        vs.family_comparison([{**rows[0], "error": "needs more tiers"}])


def test_panels_build():
    assert isinstance(ws.scaling_panel(n_experts=2, batch=1, gen_len=1), ipywidgets.interactive)
    panel = ws.playground_panel()
    assert isinstance(panel, ipywidgets.VBox)


def test_playground_defaults_are_build_point_defaults():
    values = {k: c.value for k, c in ws._playground_controls().items()}
    assert sweep.point_key(ws.point_from_controls(values)) == sweep.point_key(ds.build_point())
    values.update(model="custom", n_experts=0, mvm_energy_x=2.0)
    p = ws.point_from_controls(values)
    base = ds.build_point().chip.cost  # the book's preset: x2 scales every part of the energy
    assert not p.model.is_moe
    assert p.chip.cost.mvm(512, 512).energy_pj == pytest.approx(2 * base.mvm(512, 512).energy_pj)
    assert p.chip.cost.mvm_energy_pj_per_cell == pytest.approx(2 * base.mvm_energy_pj_per_cell)


def test_scaling_panel_offers_the_books_preset_and_paper():
    panel = ws.scaling_panel(n_experts=2, batch=1, gen_len=1)
    preset = next(c for c in panel.children
                  if getattr(c, "description", "").startswith("chip preset"))
    assert preset.value == experiments.PRESET and "paper" in preset.options


def test_playground_chip_switch_moves_the_power_sliders():
    """Choosing a preset sets the passive-power sliders to its values (paper: 3D-SiM's 1 W per
    unit), so an untouched panel runs exactly that preset."""
    c = ws._playground_controls()
    assert c["chip"].value == experiments.PRESET and "paper" in c["chip"].options
    c["chip"].value = "paper"
    assert c["unit_passive_power_w"].value == 1.0
    p = ws.point_from_controls({k: x.value for k, x in c.items()})
    assert sweep.point_key(p) == sweep.point_key(ds.build_point(chip="paper"))
    c["chip"].value = "physical"  # MoEwithPIM: 0.02412 W for 5 DPUs + 4 MHA units
    assert c["unit_passive_power_w"].value == pytest.approx(0.02412 / 9)


def test_unknown_row_label_names_the_label_and_a_close_one(scaling):
    from aimoe_lib import checks
    with pytest.raises(checks.UnknownKeyError, match=r"moe\|64\|3d\|9.*did you mean 'moe\|64\|3d\|8'"):
        vs.row(scaling, "moe|64|3d|9")
    with pytest.raises(ValueError, match="rows are empty"):
        vs.row([], "moe|64|3d|8")


def test_chapter_5_slider_frames_are_the_family_comparison(scaling):
    from aimoe_lib.viz.static import png_bytes
    s = vs.family_slider(scaling, experts=(2, 64), chips=("3d",), batches=(8, 256))
    assert s.shape == (2, 1, 2)
    default = vs.family_comparison([vs.row(scaling, f"{f}|64|3d|8") for f in vs.FAMILIES])
    assert s._repr_png_() == png_bytes(default)
    other = vs.family_comparison([vs.row(scaling, f"{f}|2|3d|256") for f in vs.FAMILIES])
    assert s.frame(n_experts=2, chip="3d", batch=256) == png_bytes(other)
    assert s.frame(n_experts=2, chip="3d", batch=256) != s._repr_png_()
