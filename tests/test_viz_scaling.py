"""Chapter 5 and 9 figures and helpers (aimoe_lib.viz.scaling) and their panels
(aimoe_lib.widgets.scaling): labelled figures over the shipped rows, the numbers the chapters quote,
and live recomputation that reproduces the shipped rows."""

import ipywidgets
import pytest

from aimoe_lib import design_space as ds
from aimoe_lib import experiments, sweep
from aimoe_lib.viz import scaling as vs
from aimoe_lib.widgets import scaling as ws
from figure_checks import check_figure


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


def test_scaling_table_lists_each_model_once(scaling):
    text = vs.scaling_table(scaling, 256, "3d")
    assert text.count("base-dense") == 1
    assert "moe-64e-top1" in text and "dense-deeper-516L" in text and "dense-wider-d6528" in text


# ----------------------------------------------------------------------------- figures
def test_chapter5_figures_are_labelled(scaling, conditions, zoo_rows):
    figs = [vs.scaling_throughput(scaling), vs.scaling_latency(scaling),
            vs.scaling_energy(scaling), vs.scaling_area_conflicts(scaling),
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
