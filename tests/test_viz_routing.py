"""Chapter 6 figures and numbers (aimoe_lib.viz.routing) and its widget panel: labelled figures
with computed takeaways, the helpers' invariants, and the numbers the chapter reports."""

import numpy as np
import pytest
from figure_checks import check_figure
from matplotlib.figure import Figure

from aimoe_lib import conflicts as cf
from aimoe_lib import experiments, mapping, routing
from aimoe_lib import routing_study as study
from aimoe_lib.mapping import STRATEGIES
from aimoe_lib.routing import RoutingSpec
from aimoe_lib.simulator import Workload
from aimoe_lib.teaching import routing_moe
from aimoe_lib.viz import routing as vr


@pytest.fixture(scope="module")
def condition_rows():
    return study.condition_rows()


# ----------------------------------------------------------------------------- helpers
def test_routing_moe_and_chips():
    spec = routing_moe()
    assert (spec.n_experts, spec.top_k, spec.n_layers) == (16, 2, 4)
    assert experiments.blocks_needed(spec) == 278
    for mult, tiles in ((0.5, 17), (1.0, 34), (2.0, 68), (4.0, 136)):
        for strategy in STRATEGIES:
            chip = study.routing_chip(spec, strategy, mult)
            assert chip.n_tiles == tiles
            assert chip.n_tiles * chip.n_tiers >= 278
            if strategy == "moe_stacked":
                assert chip.n_tiers >= 32
    with pytest.raises(ValueError, match="tiles_multiplier"):
        study.routing_chip(spec, "in_order", 0)


@pytest.mark.parametrize("groups,within", [(4, 0.9), (2, 0.5), (8, 1.0), (1, 1.0)])
def test_block_coactivation_is_a_valid_density(groups, within):
    c = study.block_coactivation(16, groups, within)
    assert c.sum() == pytest.approx(1.0)
    assert np.allclose(c, c.T) and np.all(np.diag(c) == 0) and c.min() >= 0
    assert study.block_share(c, groups) == pytest.approx(within)
    RoutingSpec(kind="coactivation", coactivation=c).validate(routing_moe())
    with pytest.raises(ValueError, match="n_groups"):
        study.block_coactivation(16, 3)


def test_analytic_routing_forms():
    spec = routing_moe()
    assert study.analytic_routing(spec) == {}
    assert study.analytic_routing(spec, RoutingSpec(kind="zipf", zipf_s=0.0)) == {}
    z = study.analytic_routing(spec, RoutingSpec(kind="zipf", zipf_s=1.0))
    assert z["expert_probs"].shape == (4, 16)
    c = study.block_coactivation()
    a = study.analytic_routing(spec, RoutingSpec(kind="coactivation", coactivation=c))
    assert np.allclose(a["pair_density"], c)


# ----------------------------------------------------------------------------- numbers
def test_load_imbalance_expected_matches_measured_and_closed_forms():
    spec = routing_moe()
    moe64 = experiments.moe_variant(experiments.BASE, 64)
    rows = study.load_imbalance((spec, moe64), s_values=(0.0, 2.0), n_tokens=8192)
    for r in rows:
        if r["zipf_s"] == 0:
            assert r["expected"] == pytest.approx(1.0)
        else:
            assert r["measured"] == pytest.approx(r["expected"], rel=0.05)
    top1 = next(r for r in rows if r["n_experts"] == 64 and r["zipf_s"] == 2.0)
    h = np.sum(1.0 / np.arange(1, 65) ** 2)
    assert top1["expected"] == pytest.approx(64 / h)  # k = 1: E x p_max


def test_strategy_rows_moe_stacked_is_immune_to_skew():
    rows = study.strategy_rows(configs=(("moe_stacked", 1.0), ("balanced", 1.0)))
    stacked = [r for r in rows if r["strategy"] == "moe_stacked"]
    assert len({round(r["tokens_per_s"], 6) for r in stacked}) == 1
    assert all(r["intra_token"] == pytest.approx(4.0) for r in stacked)
    for r in rows:
        assert 0.5 < r["of_ceiling"] <= 1.02
    assert "M tok/s" in vr.format_strategy_rows(rows)


def test_conflict_checks_agree():
    rows = study.conflict_checks(configs=(("balanced", 1.0), ("moe_stacked", 1.0)), n_tokens=1000,
                              n_seeds=6, n_isolated=400)
    for r in rows:
        if np.isfinite(r["mc"]):
            assert abs(r["mc"] - r["closed"]) <= 4 * r["mc_se"] + 1e-9
        assert r["up_starts"] <= r["all_starts"] + 1e-12
        assert r["simulated"] == pytest.approx(r["up_starts"], abs=0.03)
    assert "Monte Carlo" in vr.format_conflict_checks(rows)


def test_batch_rows_bounds():
    rows = study.batch_rows(configs=(("balanced", 0.0),), batches=(1, 4, 64), gen_len=8)
    for r in rows:
        assert r["tokens_per_s"] <= 1.02 * min(r["ceiling"], r["latency_bound"])
        assert r["tpot_ns"] >= 0.95 * r["tpot_asymptote_ns"]
    assert rows[0]["latency_bound"] == pytest.approx(rows[0]["tokens_per_s"])


def test_condition_rows_stay_under_their_ceiling(condition_rows):
    kinds = {r["kind"] for r in condition_rows}
    assert kinds == {"zipf", "strategy", "tiles"}
    assert {r["batch"] for r in condition_rows} == {8, 256}
    for r in condition_rows:
        assert r["of_ceiling"] <= 1.02, r
    z = [r for r in condition_rows if r["kind"] == "zipf" and r["batch"] == 256]
    ceilings = [r["ceiling"] for r in sorted(z, key=lambda r: float(r["value"]))]
    assert all(a > b for a, b in zip(ceilings, ceilings[1:], strict=False))
    text = vr.condition_summary(condition_rows, {0.0: 1.0, 2.0: 1.0})
    assert "identical" in text and "batch 256" in text


def test_condition_ceiling_matches_a_fresh_mapping(condition_rows):
    moe = experiments.moe_variant(experiments.BASE, 64)
    chip = mapping.fitting_chip(moe, n_tiles=experiments.blocks_needed(experiments.BASE),
                                units="per_layer", preset=experiments.PRESET)
    m = mapping.map_model(moe, chip, "in_order")
    rs = RoutingSpec(kind="zipf", zipf_s=1.0)
    w = experiments.WORKLOAD
    ceil = cf.throughput_ceiling(m, Workload(batch=256, prompt_len=w.prompt_len,
                                             gen_len=w.gen_len, routing=rs),
                                 cf.layer_probs(moe, rs))
    row = next(r for r in condition_rows if r["kind"] == "zipf" and r["value"] == "1.0"
               and r["batch"] == 256)
    assert row["ceiling"] == pytest.approx(ceil)


def test_equal_capacity_chip_of_the_strategy_rows():
    """The strategy rows share one chip with the tiers moe_stacked needs. in_order fills tiers
    level by level, so the extra tiers leave its placement as on the smallest chip; balanced uses
    them to keep always-active blocks apart; moe_stacked's busiest tile is worked out by hand."""
    moe = experiments.moe_variant(experiments.BASE, 64)
    n = experiments.blocks_needed(experiments.BASE)
    small = mapping.fitting_chip(moe, n_tiles=n, units="per_layer", preset=experiments.PRESET)
    big = mapping.fitting_chip(moe, n_tiles=n, units="per_layer", strategy="moe_stacked",
                               preset=experiments.PRESET)
    assert (small.n_tiles, big.n_tiles) == (702, 702)
    assert big.n_tiers == mapping.moe_stacked_min_tiers(moe) == 128 > small.n_tiers
    a, b = mapping.map_model(moe, small), mapping.map_model(moe, big)
    assert np.array_equal(a.tile, b.tile) and np.array_equal(a.tier, b.tier)

    def always_active_per_tile(m):
        aa = np.array([not mat.is_routed_expert for mat in m.matrices])[m.block_matrix]
        return np.bincount(m.tile, weights=aa, minlength=m.chip.n_tiles)

    assert always_active_per_tile(mapping.map_model(moe, small, "balanced")).max() >= 2
    assert always_active_per_tile(mapping.map_model(moe, big, "balanced")).max() == 1
    # moe_stacked: a slab tile holds one block of each of the 64 experts (one tier MVM per token);
    # the busiest tiles hold one always-active block (11 tokens per sequence: 4 + 8 - 1) and one
    # LM-head block (8 generated tokens): 19 tier MVMs per sequence of 8 generated tokens
    w = Workload(batch=256, prompt_len=4, gen_len=8)
    t_mvm = big.cost.tier_mvm_latency_ns
    stacked = cf.throughput_ceiling(mapping.map_model(moe, big, "moe_stacked"), w)
    assert stacked == pytest.approx(8 / (19 * t_mvm) * 1e9)
    assert cf.throughput_ceiling(mapping.map_model(moe, big, "balanced"), w) > stacked \
        > cf.throughput_ceiling(b, w)
    # the study's table of the same chips (no simulation): the same facts
    rows = {(r["n_tiers"], r["strategy"]): r
            for r in study.equal_capacity_rows(simulate_configs=())}
    assert rows[(128, "moe_stacked")]["busiest_mvms"] == pytest.approx(19 / 8)
    assert rows[(128, "moe_stacked")]["ceiling"] == pytest.approx(stacked)
    assert rows[(36, "in_order")]["fill"] == pytest.approx(
        experiments.blocks_needed(moe) / (702 * 36))
    assert rows[(36, "in_order")]["busiest_mvms"] == rows[(128, "in_order")]["busiest_mvms"]
    assert (rows[(36, "balanced")]["max_always_active"],
            rows[(128, "balanced")]["max_always_active"]) == (2, 1)
    assert np.isnan(rows[(9, "in_order")]["tokens_per_s"])
    assert "layer's DPUs" in vr.format_equal_capacity_rows(list(rows.values()))


def test_stacked_under_skew_is_identical():
    out = study.stacked_under_skew((0.0, 2.0), batch=8)
    assert out[0.0] == out[2.0] > 0
    with pytest.raises(ValueError, match="batch"):
        study.stacked_under_skew((0.0,), batch=16)


def test_dashboard_expected_busy_tracks_simulated():
    d = study.dashboard_numbers(zipf_s=1.0, strategy="balanced", batch=128)
    assert np.mean(np.abs(d["busy"] - d["expected_busy"])) < 0.05
    assert d["load"].sum() == pytest.approx(2.0)
    assert d["pi"].sum() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="strategy"):
        study.dashboard_numbers(strategy="nope")


# ----------------------------------------------------------------------------- figures
def test_figures_are_labelled(condition_rows):
    spec = routing_moe()
    figs = [
        vr.conditions_overview(condition_rows),
        vr.expert_load_skew((spec,), s_values=(0.0, 1.0, 2.0), n_tokens=2048),
        vr.coactivation_maps(spec, n_tokens=2048),
        vr.strategy_effects(study.strategy_rows(
            routings={"uniform": RoutingSpec()}, configs=(("in_order", 1.0), ("moe_stacked", 1.0)),
            workload=Workload(batch=8, prompt_len=2, gen_len=2))),
        vr.analytic_vs_simulated(study.conflict_checks(
            configs=(("balanced", 1.0),), n_tokens=500, n_seeds=3, n_isolated=50)),
        vr.batch_curves(study.batch_rows(configs=(("in_order", 0.0),), batches=(1, 8), gen_len=4)),
        vr.routing_dashboard(zipf_s=2.0, strategy="coactivation", tiles_multiplier=2.0, batch=16),
    ]
    for fig in figs:
        check_figure(fig)


def test_headline_takeaway_uses_the_rows(condition_rows):
    fig = vr.conditions_overview(condition_rows)
    z0 = next(r for r in condition_rows if r["kind"] == "zipf" and r["value"] == "0.0"
              and r["batch"] == 256)
    z2 = next(r for r in condition_rows if r["kind"] == "zipf" and r["value"] == "2.0"
              and r["batch"] == 256)
    assert f"{z2['tokens_per_s'] / z0['tokens_per_s'] - 1:+.1%}" in fig.get_supxlabel()


def test_routing_panel_builds_and_draws():
    from aimoe_lib.widgets.routing import routing_panel

    panel = routing_panel(zipf_s=0.5, strategy="balanced", batch=8)
    names = [c.description for c in panel.children[:-1]]
    assert names == ["Zipf skew s", "strategy", "tiles (x base chip)", "batch (sequences)"]
    assert isinstance(panel.result, Figure)


def test_route_of_dashboard_is_the_simulated_routing():
    d = study.dashboard_numbers(zipf_s=1.5, batch=4)
    w = d["workload"]
    n = (w.prompt_len + w.gen_len - 1) * w.batch
    load = routing.expert_load(routing.route(d["model"], n, w.routing, seed=w.seed), 16)[0]
    assert np.allclose(load, d["load"])
