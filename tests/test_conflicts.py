"""aimoe_lib.conflicts: exact set laws against brute force, closed-form conflicts against the Monte
Carlo estimate of mapping.expected_conflicts (tolerance from its standard error), the moe_stacked
and k = 1 closed forms, the simulator's isolated token, and the tile-load ceiling and asymptote
against simulated runs."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimoe_lib import conflicts as cf
from aimoe_lib import mapping, routing, simulator
from aimoe_lib.hardware import ChipConfig
from aimoe_lib.models import Role
from aimoe_lib.routing import RoutingSpec, zipf_probs
from aimoe_lib.teaching import mapping_moe
from aimoe_lib.teaching import routing_moe as small_moe
from aimoe_lib.routing import coactivation_from_probs


def chip_for(spec, strategy="in_order", tiles=34):
    """Chapter 6's chips: ``tiles`` tiles, tiers as needed, digital units per layer."""
    return mapping.fitting_chip(spec, n_tiles=tiles, units="per_layer", strategy=strategy)


def brute_set_probs(p, k):
    """P(set) of successive sampling by summing over every ordered draw (plain Python)."""
    out = {}
    for seq in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for e in seq:
            if left <= 0:
                prob = 0.0
                break
            prob *= p[e] / left
            left -= p[e]
        key = tuple(sorted(seq))
        out[key] = out.get(key, 0.0) + prob
    return out


def empirical_conflicts(m: mapping.Mapping, choices: np.ndarray, count="blocks") -> np.ndarray:
    """Per token, waiting tier MVMs (or starts) summed over MoE layers, straight from the
    definition: per layer and stage, active blocks per tile minus one, clipped at 0."""
    model = m.model
    is_down = np.array([x.role is Role.FFN_DOWN for x in m.matrices])
    per_token = np.zeros(choices.shape[0])
    for li, (_, layer) in enumerate(routing.moe_layer_keys(model)):
        for down in (False, True):
            counts = np.zeros((model.n_experts, m.chip.n_tiles))
            for b in range(m.n_blocks):
                i = m.block_matrix[b]
                if m.matrix_layer[i] == layer and m.matrix_expert[i] >= 0 and is_down[i] == down:
                    counts[m.matrix_expert[i], m.tile[b]] += 1
            if count == "starts":
                counts = (counts > 0).astype(float)
            active = counts[choices[:, li, :]].sum(axis=1)
            per_token += np.clip(active - 1, 0, None).sum(axis=1)
    return per_token


# ----------------------------------------------------------------------------- set laws
@settings(max_examples=40, deadline=None)
@given(w=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), min_size=2, max_size=6),
       k=st.integers(1, 3))
def test_set_distribution_equals_brute_force(w, k):
    p = np.array(w)
    if np.count_nonzero(p) < k or p.sum() <= 0 or k > p.size:
        return
    p = p / p.sum()
    law = cf.set_distribution(p.size, k, p)
    brute = brute_set_probs(p, k)
    if law.uniform:  # all weights equal
        assert np.allclose(list(brute.values()), 1 / math.comb(p.size, k))
        return
    got = {tuple(s): q for s, q in zip(law.sets.tolist(), law.probs, strict=True)}
    for key, q in brute.items():
        assert got.get(key, 0.0) == pytest.approx(q, abs=1e-12)
    assert law.probs.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("e,k", [(5, 1), (6, 2), (8, 3), (16, 2)])
def test_uniform_miss_probability_is_hypergeometric(e, k):
    law = cf.set_distribution(e, k)
    assert law.uniform
    rng = np.random.default_rng(0)
    members = rng.random((20, e)) < 0.3
    sets = list(itertools.combinations(range(e), k))
    brute = [np.mean([not any(members[i, list(s)]) for s in sets]) for i in range(20)]
    assert np.allclose(cf.miss_probability(law, members), brute, atol=1e-12)
    assert np.allclose(cf.inclusion_probs(law), k / e)


def test_equal_probs_are_uniform_and_k1_is_p():
    assert cf.set_distribution(8, 3, np.full(8, 1 / 8)).uniform
    p = zipf_probs(8, 1.2)
    law = cf.set_distribution(8, 1, p)
    assert np.allclose(cf.inclusion_probs(law), p)
    s = np.zeros((1, 8), dtype=bool)
    s[0, [0, 3]] = True
    assert cf.miss_probability(law, s)[0] == pytest.approx(1 - p[0] - p[3])


def test_top2_inclusion_matches_routing_docstring_formula():
    p = zipf_probs(10, 1.5)
    pi = cf.inclusion_probs(cf.set_distribution(10, 2, p))
    want = np.array([p[e] + sum(p[j] * p[e] / (1 - p[j]) for j in range(10) if j != e)
                     for e in range(10)])
    assert np.allclose(pi, want, atol=1e-12)
    assert pi.sum() == pytest.approx(2.0)


@pytest.mark.parametrize("k", [2, 3])
def test_inclusion_matches_routed_load(k):
    spec = small_moe(top_k=k)
    rs = RoutingSpec(kind="zipf", zipf_s=1.5)
    n = 40_000
    load = routing.expert_load(routing.route(spec, n, rs, seed=3), spec.n_experts)
    probs = cf.layer_probs(spec, rs, seed=3)
    for layer in range(load.shape[0]):
        pi = cf.inclusion_probs(cf.set_distribution(spec.n_experts, k, probs[layer]))
        se = np.sqrt(pi * (1 - pi) / n)
        assert np.all(np.abs(load[layer] - pi) <= 5 * se + 1e-12)


def test_pair_density_law_reproduces_route_coactivation():
    spec = small_moe()
    c = np.random.default_rng(1).random((16, 16))
    c = c + c.T
    np.fill_diagonal(c, 0)
    c /= c.sum()
    law = cf.set_distribution(16, 2, pair_density=c)
    assert law.probs.sum() == pytest.approx(1.0)
    assert np.allclose(cf.inclusion_probs(law), 2 * c.sum(axis=1))


def test_layer_probs_sources():
    spec = small_moe()
    assert cf.layer_probs(spec, "uniform") is None
    assert cf.layer_probs(spec, RoutingSpec(kind="zipf", zipf_s=0.0)) is None
    rs = RoutingSpec(kind="zipf", zipf_s=1.0)
    p = cf.layer_probs(spec, rs, seed=2)
    assert p.shape == (4, 16)
    assert np.allclose(p[3], routing.expert_probs(spec, rs, 3, seed=2))
    with pytest.raises(ValueError, match="pair_density"):
        cf.layer_probs(spec, RoutingSpec(kind="coactivation",
                                         coactivation=coactivation_from_probs(p[0])))


# ----------------------------------------------------------------------------- conflicts
CASES = [(small_moe, "balanced", 34), (small_moe, "random", 34), (small_moe, "in_order", 20),
         (mapping_moe, "in_order", None), (mapping_moe, "balanced", None)]


def _case_mapping(make, strategy, tiles):
    spec = make()
    chip = (chip_for(spec, strategy, tiles) if tiles
            else mapping.fitting_chip(spec, n_tiers=16, name="fitted"))
    return mapping.map_model(spec, chip, strategy)


@pytest.mark.parametrize("make,strategy,tiles", CASES)
@pytest.mark.parametrize("skew", [None, 1.2])
def test_closed_form_matches_monte_carlo(make, strategy, tiles, skew):
    m = _case_mapping(make, strategy, tiles)
    e = m.model.n_experts
    p = None if skew is None else zipf_probs(e, skew)
    closed = cf.expected_intra_token_conflicts(m, p)
    runs = np.array([mapping.expected_conflicts(m, p, 2000, seed=s) for s in range(8)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / math.sqrt(len(runs))
    assert np.all(np.abs(closed - mean) <= 4 * se + 1e-9), (closed, mean, se)


def test_closed_form_matches_direct_count_under_pair_density():
    spec = small_moe()
    m = mapping.map_model(spec, chip_for(spec, "random"), "random")
    c = coactivation_from_probs(zipf_probs(16, 1.0))
    choices = routing.route(spec, 20_000, RoutingSpec(kind="coactivation", coactivation=c), seed=0)
    for count in cf.COUNTS:
        x = empirical_conflicts(m, choices, count) / 4
        closed = cf.expected_intra_token_conflicts(m, pair_density=c, count=count).mean()
        assert abs(closed - x.mean()) <= 4 * x.std(ddof=1) / math.sqrt(x.size) + 1e-9


@pytest.mark.parametrize("skew", [None, 0.7, 2.0])
@pytest.mark.parametrize("k", [2, 3])
def test_moe_stacked_is_k_minus_1_times_blocks_per_expert(skew, k):
    spec = small_moe(top_k=k)
    m = mapping.map_model(spec, chip_for(spec, "moe_stacked"), "moe_stacked")
    p = None if skew is None else zipf_probs(16, skew)
    want = (k - 1) * 4  # 4 blocks per expert: up 512x1024 (2), down 1024x512 (2)
    assert cf.stacked_conflicts(spec) == want
    for count in cf.COUNTS:
        assert np.allclose(cf.expected_intra_token_conflicts(m, p, count=count), want, atol=1e-9)
    assert np.allclose(cf.expected_intra_token_conflicts(m, p, stages="up"), want / 2)


def test_top1_starts_are_zero_and_blocks_count_own_blocks():
    spec = small_moe(top_k=1, d_ff=1536)  # 3 up and 3 down blocks per expert
    chip = ChipConfig(n_tiles=2, n_tiers=250)  # so each stage puts 2 blocks on one tile
    m = mapping.map_model(spec, chip, "in_order")
    p = zipf_probs(16, 1.0)
    assert np.allclose(cf.expected_intra_token_conflicts(m, p, count="starts"), 0.0)
    want = []
    is_down = np.array([x.role is Role.FFN_DOWN for x in m.matrices])
    for layer in range(4):
        tot = 0.0
        for down in (False, True):
            sel = (m.matrix_layer[m.block_matrix] == layer) & \
                  (m.matrix_expert[m.block_matrix] >= 0) & (is_down[m.block_matrix] == down)
            c = np.zeros((16, 3))
            np.add.at(c, (m.matrix_expert[m.block_matrix][sel], m.tile[sel]), 1)
            tot += float(p @ np.clip(c - 1, 0, None).sum(axis=1))
        want.append(tot)
    got = cf.expected_intra_token_conflicts(m, p)
    assert np.allclose(got, want) and min(want) > 0
    mc = np.mean([mapping.expected_conflicts(m, p, 2000, seed=s) for s in range(4)], axis=0)
    assert np.allclose(got, mc, atol=0.1)


def test_isolated_token_in_the_simulator_matches_up_stage_closed_form():
    spec = small_moe()
    n = 60
    for strategy in ("moe_stacked", "in_order"):
        chip = chip_for(spec, strategy)
        m = mapping.map_model(spec, chip, strategy)
        r = simulator.simulate(spec, chip, m, simulator.Workload(batch=1, prompt_len=1,
                                                                 gen_len=n))
        up = cf.expected_intra_token_conflicts(m, count="starts", stages=("up",))
        # deterministic cases: every pair of experts meets on the same tiles (or never)
        assert r.tile_conflicts == pytest.approx(n * up.sum())


# ----------------------------------------------------------------------------- tile load
def test_tile_busy_counts_every_block_once_in_expectation():
    spec = small_moe()
    m = mapping.map_model(spec, chip_for(spec), "balanced")
    tl = cf.expected_tile_busy_ns(m)
    lat = m.chip.cost.mvm_latency_ns
    n_expert_blocks = 4 * 16 * 4
    other = m.n_blocks - n_expert_blocks - 2  # LM head 512 x 1024: 2 blocks
    assert tl.per_token_ns.sum() == pytest.approx(lat * (other + n_expert_blocks * 2 / 16))
    assert tl.per_head_ns.sum() == pytest.approx(2 * lat)
    assert tl.decode_pass_ns == pytest.approx((tl.per_token_ns + tl.per_head_ns).max())


def test_dense_ceiling_is_the_bottleneck_formula():
    spec = small_moe(n_experts=0, top_k=0, name="dense")
    chip = ChipConfig(n_tiles=5, n_tiers=20)
    m = mapping.map_model(spec, chip, "in_order")
    w = simulator.Workload(batch=4, prompt_len=3, gen_len=5)
    per_tile_token = np.bincount(m.tile, weights=np.array(
        [x.role is not Role.LM_HEAD for x in m.matrices], float)[m.block_matrix], minlength=5)
    head = np.bincount(m.tile, weights=np.array(
        [x.role is Role.LM_HEAD for x in m.matrices], float)[m.block_matrix], minlength=5)
    busy = 100.0 * (7 * per_tile_token + 5 * head)
    assert cf.throughput_ceiling(m, w) == pytest.approx(5 / busy.max() * 1e9)


@pytest.mark.parametrize("strategy,skew", [("in_order", 0.0), ("balanced", 0.0),
                                           ("balanced", 2.0), ("moe_stacked", 1.0)])
def test_simulation_stays_under_the_ceiling_and_near_the_asymptote(strategy, skew):
    spec = small_moe()
    chip = chip_for(spec, strategy)
    m = mapping.map_model(spec, chip, strategy)
    rs = RoutingSpec(kind="zipf", zipf_s=skew)
    probs = cf.layer_probs(spec, rs)
    w = simulator.Workload(batch=256, prompt_len=4, gen_len=16, routing=rs)
    r = simulator.simulate(spec, chip, m, w)
    ceil = cf.throughput_ceiling(m, w, probs)
    assert 0.7 * ceil <= r.tokens_per_s <= 1.02 * ceil
    alone = simulator.simulate(spec, chip, m, simulator.Workload(batch=1, prompt_len=4,
                                                                 gen_len=16, routing=rs))
    t1 = alone.tpot_stats_ns()["mean"]
    assert cf.tpot_asymptote_ns(m, 1, t1, probs) == pytest.approx(t1)
    est = cf.tpot_asymptote_ns(m, 256, t1, probs)
    assert 0.95 * est <= r.tpot_stats_ns()["mean"] <= 1.2 * est


# ----------------------------------------------------------------------------- errors
def test_errors_name_the_problem_and_the_fix():
    spec = small_moe()
    m = mapping.map_model(spec, chip_for(spec), "in_order")
    with pytest.raises(ValueError, match="Monte Carlo"):
        cf.set_distribution(64, 8, zipf_probs(64, 1.0))
    with pytest.raises(ValueError, match="probability vector"):
        cf.set_distribution(4, 2, [0.5, 0.6, 0.1, 0.0])
    with pytest.raises(ValueError, match="fewer than top_k"):
        cf.set_distribution(4, 3, [0.5, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="top_k"):
        cf.set_distribution(4, 5)
    with pytest.raises(ValueError, match="top_k=2"):
        cf.set_distribution(4, 3, pair_density=coactivation_from_probs(np.full(4, 0.25)))
    with pytest.raises(ValueError, match="count="):
        cf.expected_intra_token_conflicts(m, count="tiles")
    with pytest.raises(ValueError, match="stages="):
        cf.expected_intra_token_conflicts(m, stages=("gate",))
    with pytest.raises(ValueError, match="dense"):
        dense = small_moe(n_experts=0, top_k=0)
        cf.expected_intra_token_conflicts(mapping.map_model(dense, chip_for(dense), "in_order"))
    with pytest.raises(ValueError, match="batch="):
        cf.tpot_asymptote_ns(m, 0, 1000.0)
    with pytest.raises(TypeError, match="Mapping"):
        cf.expected_tile_busy_ns("not a mapping")
