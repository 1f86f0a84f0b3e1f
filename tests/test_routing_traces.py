"""Chapter 6's trained-router traces (aimoe_lib.routing_study, trace part): skew and pair
statistics against hand computations, the Zipf fit against traces drawn with a known exponent,
the planning/replay split, and the replayed simulation against the same choices given directly."""

import itertools
import math

import numpy as np
import pytest
from figure_checks import check_figure

from aimoe_lib import experiments, routing
from aimoe_lib import routing_study as study
from aimoe_lib.mapping import blocks_needed, fitting_chip, map_model
from aimoe_lib.routing import RoutingSpec
from aimoe_lib.simulator import Workload, simulate
from aimoe_lib.teaching import routing_moe
from aimoe_lib.viz import routing as vr

# four tokens, one MoE layer, top-2 over 4 experts: expert 0 in every token, 1 twice, 2 and 3 once
TINY = np.array([[[0, 1]], [[0, 2]], [[0, 1]], [[3, 0]]])


# ----------------------------------------------------------------------------- skew by hand
def test_expert_popularity_of_a_hand_built_trace():
    pop = study.expert_popularity(TINY, 4)
    assert np.allclose(pop["load"], [[4 / 4, 2 / 4, 1 / 4, 1 / 4]])   # tokens using each expert
    assert np.allclose(pop["share"], [[4 / 8, 2 / 8, 1 / 8, 1 / 8]])  # of the 8 expert calls
    assert np.allclose(pop["sorted_share"], [[0.5, 0.25, 0.125, 0.125]])
    # busiest expert: in all 4 tokens; even share k/E = 2/4 of the tokens -> 2x
    assert pop["imbalance"] == pytest.approx([2.0])
    assert pop["mean_imbalance"] == pytest.approx(2.0)
    assert pop["n_tokens"] == 4


def test_zipf_shares_match_successive_sampling_by_hand():
    # E = 3, k = 2, s = 1: weights 1, 1/2, 1/3 normalised = 6/11, 3/11, 2/11. Expert e is in the
    # pair if drawn first (p_e) or second after j (p_j p_e / (1 - p_j)).
    p = np.array([6, 3, 2]) / 11
    pi = [p[e] + sum(p[j] * p[e] / (1 - p[j]) for j in range(3) if j != e) for e in range(3)]
    assert np.allclose(study.zipf_shares(3, 2, 1.0), np.array(pi) / 2)
    assert study.zipf_shares(3, 2, 1.0).sum() == pytest.approx(1.0)
    # k = 1: the shares are the weights; s = 0: uniform
    assert np.allclose(study.zipf_shares(3, 1, 1.0), p)
    assert np.allclose(study.zipf_shares(16, 2, 0.0), 1 / 16)


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0, 1.5])
def test_fit_zipf_recovers_the_exponent_a_trace_was_drawn_with(s):
    model = routing_moe()  # 16 experts, top-2, 4 MoE layers (each its own popularity ranks)
    ch = routing.route(model, 32768, RoutingSpec(kind="zipf", zipf_s=s), seed=7)
    fit = study.fit_zipf(ch, model.n_experts)
    assert fit["s"] == pytest.approx(s, abs=0.04)
    assert np.allclose(fit["s_per_layer"], s, atol=0.08)
    assert not fit["at_bound"]
    assert fit["rms_log"] <= fit["rms_log_uniform"] + 1e-12
    assert np.allclose(fit["model_share"], study.zipf_shares(16, 2, fit["s"]))


def test_fit_zipf_flags_its_bound():
    ch = np.zeros((100, 1, 1), dtype=int)  # one expert takes every token: s -> infinity
    fit = study.fit_zipf(ch, 8, s_max=2.0)
    assert fit["at_bound"] and fit["s"] == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match="s_max"):
        study.fit_zipf(ch, 8, s_max=0)


# ----------------------------------------------------------------------------- pairs by hand
def test_grouping_and_within_share_of_a_hand_built_trace():
    d = routing.coactivation_density(TINY, 4)
    # pairs {0,1} twice, {0,2} and {0,3} once; the 3 ways to cut 4 experts into 2 pairs keep
    # 2/4 ({01|23}), 1/4 ({02|13}) and 1/4 ({03|12}) of the pairs inside the groups
    shares = {}
    for a in itertools.combinations(range(4), 2):
        if 0 in a:
            g = np.array([0 if e in a else 1 for e in range(4)])
            shares[a] = study.within_group_share(d[0], g)
    assert shares == pytest.approx({(0, 1): 0.5, (0, 2): 0.25, (0, 3): 0.25})
    assert study.best_grouping(d[0], 2).tolist() == [0, 0, 1, 1]
    assert study.top_pair_share(d[0], 1 / 6) == pytest.approx(0.5)  # 1 of 6 pairs: {0,1}


def test_best_grouping_finds_planted_blocks():
    perm = np.random.default_rng(3).permutation(16)
    block = study.block_coactivation(16, 4, 0.9)
    d = np.empty_like(block)
    d[np.ix_(perm, perm)] = block  # expert perm[i] plays the role of i
    g = study.best_grouping(d, 4)
    planted = np.empty(16, dtype=int)
    planted[perm] = np.arange(16) // 4
    same = lambda lab: lab[:, None] == lab[None, :]  # noqa: E731
    assert np.array_equal(same(g), same(planted))
    assert study.within_group_share(d, g) == pytest.approx(0.9)
    # 12 most frequent of the 120 pairs: 12 of the 24 within-group pairs, each 0.9 / 24
    assert study.top_pair_share(block) == pytest.approx(12 * 0.9 / 24)
    uniform = study.block_coactivation(16, 1, 1.0)
    assert study.top_pair_share(uniform) == pytest.approx(12 / 120)
    with pytest.raises(ValueError, match="n_groups"):
        study.best_grouping(d, 3)


# ----------------------------------------------------------------------------- the shipped traces
@pytest.fixture(scope="module")
def summary():
    return study.trace_summary()


def test_shipped_traces_fit_their_chips():
    for name in study.TRACE_MODELS:
        case = study.trace_case(name)
        m = case.model
        assert (m.n_layers, m.top_k, m.d_model, m.d_expert) == (4, 2, 128, 256)
        # by hand, 512 x 512 tiers: q, k, v, o, router 128 x <= 128 -> 1 block each; an expert's
        # 128 x 256 up and 256 x 128 down -> 1 block each; LM head 128 x 85 -> 1 block
        assert blocks_needed(m) == 4 * (5 + 2 * m.n_experts) + 1
        for strategy in study.TRACE_STRATEGIES:
            chip = study.routing_chip(m, strategy)
            assert chip.n_tiles == 4 * 6 + 1  # the dense twin: attention 4 + FFN 2 per layer
            assert chip.n_tiles * chip.n_tiers >= blocks_needed(m)
            if strategy == "moe_stacked":
                assert chip.n_tiers >= 2 * m.n_experts
            map_model(m, chip, strategy, coactivation=routing.coactivation_density(
                case.plan_tokens, m.n_experts) if strategy == "coactivation" else None)


def test_trace_case_split_is_disjoint_and_complete():
    case = study.trace_case("moe-16")
    assert (case.n_windows, case.window, case.n_plan) == (512, 64, 256)
    both = np.concatenate([case.plan_tokens, case.replay_tokens])
    assert np.array_equal(both, case.choices)
    assert case.plan_windows.shape[0] + case.replay_windows.shape[0] == case.n_windows
    with pytest.raises(ValueError, match="n_plan"):
        study.TraceCase("x", case.model, case.choices, 64, 512)
    with pytest.raises(ValueError, match="window"):
        study.TraceCase("x", case.model, case.choices, 100, 1)


def _random_case(n_windows=12, window=8, n_plan=4, seed=0):
    model = routing_moe()
    ch = routing.route(model, n_windows * window, RoutingSpec(kind="zipf", zipf_s=0.7), seed)
    return study.TraceCase("random", model, ch, window, n_plan)


def test_planning_never_sees_the_replayed_tokens():
    case = _random_case()
    w = Workload(batch=4, prompt_len=3, gen_len=3)
    plans = study.trace_routings(case, w, n_repeats=2)
    # the plan comes from the planning windows alone: changing the replay part changes nothing
    other = case.choices.copy()
    other[case.n_plan * case.window:] = routing.route(case.model, len(case.replay_tokens),
                                                      "uniform", seed=99)
    plans2 = study.trace_routings(study.TraceCase("b", case.model, other, 8, 4), w, n_repeats=2)
    assert np.array_equal(plans["plan"]["density"], plans2["plan"]["density"])
    assert plans["plan"]["zipf_s"] == plans2["plan"]["zipf_s"]
    assert np.allclose(plans["plan"]["density"],
                       routing.coactivation_density(case.plan_tokens, 16))
    # the replays: repeat r, sequence b, position p is token p of replay window r * batch + b
    used = set()
    for _label, spec, r, law in plans["trace"]:
        for b in range(w.batch):
            win = case.n_plan + r * w.batch + b
            used.add(win)
            for p in range(w.positions):
                assert np.array_equal(spec.trace[p * w.batch + b], case.windows[win, p])
        assert np.allclose(law["pair_density"], routing.coactivation_density(spec.trace, 16))
    assert used.isdisjoint(range(case.n_plan)) and len(used) == 2 * w.batch
    with pytest.raises(ValueError, match="replay part"):
        study.trace_routings(case, Workload(batch=5, prompt_len=3, gen_len=3), n_repeats=2)
    with pytest.raises(ValueError, match="positions"):
        study.trace_routings(case, Workload(batch=2, prompt_len=6, gen_len=4), n_repeats=1)


def test_replay_windows_layout_and_limits():
    win = np.arange(3 * 5 * 2 * 2).reshape(3, 5, 2, 2)
    out = study.replay_windows(win, 2, 4)
    assert out.shape == (8, 2, 2)
    for p in range(4):
        for b in range(2):
            assert np.array_equal(out[p * 2 + b], win[b, p])
    with pytest.raises(ValueError, match="batch"):
        study.replay_windows(win, 4, 2)
    with pytest.raises(ValueError, match="positions"):
        study.replay_windows(win, 2, 6)


def test_replayed_trace_simulates_exactly_as_the_same_choices_routed():
    """A trace holding what uniform routing (seed 0) draws for a workload, replayed through the
    study, gives exactly the uniform simulation: same choices, same run."""
    model = routing_moe()
    w = Workload(batch=4, prompt_len=2, gen_len=3)
    rows = routing.route(model, w.positions * w.batch, "uniform", seed=0)
    # the simulator's layout: sequence b, position p <- row p * batch + b; store it as windows
    windows = np.stack([rows[b::w.batch] for b in range(w.batch)])       # (batch, positions, ...)
    plan = routing.route(model, 2 * w.positions, "uniform", seed=5)       # anything: not replayed
    case = study.TraceCase("uniform-as-trace", model,
                           np.concatenate([plan, windows.reshape(-1, *rows.shape[1:])]),
                           w.positions, 2)
    got = study.trace_strategy_rows(case, workload=w, strategies=("in_order",),
                                    routings=("trace",), n_repeats=1)[0]
    dense = model.replace(name="dense", n_experts=0, top_k=0)
    # the study sizes its chips on the book's preset by default: the direct run must use it too
    chip = fitting_chip(model, n_tiles=blocks_needed(dense), units="per_layer",
                        preset=experiments.PRESET)
    direct = simulate(model, chip, map_model(model, chip, "in_order"),
                      Workload(batch=4, prompt_len=2, gen_len=3, routing="uniform", seed=0))
    assert got["tokens_per_s"] == direct.tokens_per_s
    assert got["conflicts_per_token"] == direct.tile_conflicts / direct.generated_tokens
    assert got["energy_per_token_pj"] == direct.energy_per_token_pj
    assert np.array_equal(direct.program.choices,
                          windows.astype(direct.program.choices.dtype))


def test_trace_strategy_rows_on_the_shipped_trace():
    w = Workload(batch=16, prompt_len=4, gen_len=4)
    rows = study.trace_strategy_rows("moe-16", workload=w, n_repeats=2,
                                     strategies=("in_order", "moe_stacked"))
    assert {(r["strategy"], r["routing"]) for r in rows} == {
        (s, n) for s in ("in_order", "moe_stacked") for n in study.TRACE_ROUTINGS}
    for r in rows:
        assert r["tokens_per_s_min"] <= r["tokens_per_s"] <= r["tokens_per_s_max"]
        assert r["of_ceiling"] <= 1.02
        assert r["preset"] == experiments.PRESET
        assert 0 < r["dynamic_pj_per_token"] < r["energy_per_token_pj"]
        e = r["energy_by_kind_pj"]
        assert sum(e.values()) == pytest.approx(r["energy_per_token_pj"])
        assert e["passive"] == pytest.approx(r["energy_per_token_pj"] - r["dynamic_pj_per_token"])
        # static energy per token = static power / throughput: 4 layers x (24 DPUs + 8 attention
        # units), each MOEPIM_STATIC_POWER_W / 9 ([MOEPIM]: 0.02412 W for 5 DPUs + 4 units)
        watts = 4 * (24 + 8) * 0.02412 / 9
        assert e["passive"] == pytest.approx(watts / r["tokens_per_s"] * 1e12, rel=0.02)
    # moe_stacked: every token does the same tier MVMs on the slab tiles whichever experts it
    # picks, so every routing gives the same run
    stacked = [r for r in rows if r["strategy"] == "moe_stacked"]
    assert len({r["tokens_per_s"] for r in stacked}) == 1
    # every token runs the same number of tier MVMs: the dynamic energy ignores the routing
    dyn = [r["dynamic_pj_per_token"] for r in rows if r["strategy"] == "in_order"]
    assert max(dyn) == pytest.approx(min(dyn), rel=1e-3)
    assert "trained router" in vr.format_trace_rows(rows)


def test_trace_summary_numbers(summary):
    by = {r["name"]: r for r in summary}
    m16 = by["moe-16"]
    case = study.trace_case("moe-16")
    load = routing.expert_load(case.choices, 16)
    assert np.allclose(m16["imbalance"], load.max(axis=1) * 16 / 2)
    assert m16["within_uniform"] == pytest.approx(4 * math.comb(4, 2) / math.comb(16, 2))
    assert m16["top_pairs_uniform"] == pytest.approx(12 / 120)
    assert by["moe-4"]["within_uniform"] == pytest.approx(2 / 6)
    for r in summary:
        assert 0 <= r["zipf_s"] < study.ZIPF_FIT_MAX_S and not r["zipf_at_bound"]
        assert np.all(r["imbalance"] >= 1.0)
        assert np.all(r["within"] >= r["within_uniform"] - 0.05)
    assert "Zipf fit" in vr.format_trace_summary(summary)


def test_trace_figures_are_labelled(summary):
    rows = study.trace_strategy_rows(
        "moe-4", workload=Workload(batch=8, prompt_len=2, gen_len=2), n_repeats=1,
        strategies=("in_order", "moe_stacked"))
    for fig in (vr.trace_routing_overview(summary), vr.trace_strategy_effects(rows)):
        check_figure(fig)
    assert "uniform" in vr.trace_strategy_effects(rows).get_supxlabel()


def test_routing_chip_takes_a_preset():
    model = study.trace_case("moe-4").model
    chip = study.routing_chip(model, "in_order", preset="3dsim")
    dense = model.replace(name="dense", n_experts=0, top_k=0)
    ref = fitting_chip(model, n_tiles=blocks_needed(dense), units="per_layer", preset="3dsim")
    assert chip == ref
    assert chip != study.routing_chip(model, "in_order")
    # the default is the book's preset, the one the shipped conditions sweep was run with
    book = fitting_chip(model, n_tiles=blocks_needed(dense), units="per_layer",
                        preset=experiments.PRESET)
    assert study.routing_chip(model, "in_order") == book
