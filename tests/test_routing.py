"""Routing: shapes and distinctness on random models, determinism, closed forms, statistical checks
with fixed seeds, hand-worked cases, trace files and every invalid input.

Statistical tolerances: an expert's load over n independent tokens is a binomial fraction with
standard error sqrt(q (1 - q) / n); every check allows 5 standard errors (a false alarm has
probability < 1e-6 per entry, and with fixed seeds the outcome is deterministic anyway).
"""

import dataclasses
import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aimoe_lib import mapping, routing, zoo
from aimoe_lib.models import ModelSpec
from aimoe_lib.routing import RoutingSpec, route

Z = 5.0  # standard errors allowed by every statistical check


def moe(n_experts=8, top_k=2, n_layers=2, **kw) -> ModelSpec:
    return ModelSpec(d_model=8, n_layers=n_layers, n_heads=2, d_ff=16, vocab_size=10,
                     n_experts=n_experts, top_k=top_k, **kw)


def binomial_se(q, n):
    return np.sqrt(np.asarray(q) * (1 - np.asarray(q)) / n)


def random_density(e, rng, zero_frac=0.0):
    c = rng.random((e, e))
    c = c + c.T
    c[rng.random((e, e)) < zero_frac] = 0.0
    c = np.minimum(c, c.T)  # keep symmetric after zeroing
    np.fill_diagonal(c, 0.0)
    return c / c.sum()


def pair_spec(e, pairs):
    """Density uniform over the given unordered pairs."""
    c = np.zeros((e, e))
    for i, j in pairs:
        c[i, j] = c[j, i] = 1.0
    return c / c.sum()


# ------------------------------------------------------------------------------ properties
@st.composite
def small_moe_models(draw):
    e = draw(st.integers(1, 8))
    kw = dict(n_experts=e, top_k=draw(st.integers(1, e)), n_layers=draw(st.integers(1, 4)),
              moe_every=draw(st.integers(1, 2)), first_dense=draw(st.integers(0, 1)),
              n_encoder_layers=draw(st.sampled_from([0, 0, 2, 3])))
    try:
        return moe(**kw)
    except ValueError:  # a stack without any MoE layer
        assume(False)


def spec_for(model, kind, rng):
    e, k = model.n_experts, model.top_k
    if kind == "zipf":
        return RoutingSpec("zipf", zipf_s=float(rng.uniform(0, 3)), permute=bool(rng.integers(2)))
    if kind == "coactivation":
        assume(e >= 2)
        return RoutingSpec("coactivation", coactivation=random_density(e, rng))
    if kind == "trace":
        n_moe = len(routing.moe_layer_keys(model))
        t = np.argsort(rng.random((int(rng.integers(1, 6)), n_moe, e)), axis=2)[:, :, :k]
        return RoutingSpec("trace", trace=t)
    return RoutingSpec(kind)


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(model=small_moe_models(), n=st.integers(0, 40), seed=st.integers(0, 2**32),
       kind=st.sampled_from(routing.KINDS))
def test_every_token_gets_k_distinct_valid_experts_in_every_moe_layer(model, n, seed, kind):
    spec = spec_for(model, kind, np.random.default_rng(seed))
    c = route(model, n, spec, seed=seed)
    n_moe = len(routing.moe_layer_keys(model))
    assert c.shape == (n, n_moe, model.top_k)
    assert c.dtype in (np.int16, np.int32)
    if n:
        assert c.min() >= 0 and c.max() < model.n_experts
        s = np.sort(c, axis=2)
        assert np.all(s[..., 1:] != s[..., :-1])
        load = routing.expert_load(c, model.n_experts)
        assert load.shape == (n_moe, model.n_experts)
        np.testing.assert_allclose(load.sum(axis=1), model.top_k)


@PROPS
@given(model=small_moe_models())
def test_moe_layer_order_is_mappings(model):
    assert routing.moe_layer_keys(model) == mapping._moe_layer_keys(model)


@pytest.mark.parametrize("name", [n for n in zoo.names() if zoo.get(n).is_moe])
def test_zoo_models_route_in_mapping_order(name):
    spec = zoo.get(name)
    keys = routing.moe_layer_keys(spec)
    assert keys == mapping._moe_layer_keys(spec)
    if spec.is_encoder_decoder:  # encoder MoE layers first
        assert keys[0][0] == "encoder" and keys[-1][0] == "decoder"
    assert route(spec, 3).shape == (3, len(keys), spec.top_k)


# ------------------------------------------------------------------------------ determinism
def _specs():
    rng = np.random.default_rng(7)
    return [RoutingSpec("uniform"), RoutingSpec("zipf", zipf_s=1.3),
            RoutingSpec("coactivation", coactivation=random_density(8, rng)),
            RoutingSpec("coactivation", coactivation=np.stack(
                [random_density(8, rng) for _ in range(3)]))]


@pytest.mark.parametrize("spec", _specs(), ids=repr)
def test_same_seed_same_routing_other_seed_other_routing(spec):
    m = moe(8, 3, n_layers=3)
    a = route(m, 200, spec, seed=11)
    np.testing.assert_array_equal(a, route(m, 200, spec, seed=11))
    assert not np.array_equal(a, route(m, 200, spec, seed=12))
    # layers draw from their own streams: they are not copies of each other
    assert not np.array_equal(a[:, 0], a[:, 1])


@pytest.mark.parametrize("spec", _specs(), ids=repr)
def test_routing_is_prefix_stable_and_independent_of_chunking(spec, monkeypatch):
    m = moe(8, 3, n_layers=3)
    full = route(m, 123, spec, seed=5)
    np.testing.assert_array_equal(route(m, 50, spec, seed=5), full[:50])
    monkeypatch.setattr(routing, "_CHUNK_ELEMENTS", 7 * 8)  # chunks of 7 tokens
    np.testing.assert_array_equal(route(m, 123, spec, seed=5), full)


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v3", "olmoe-1b-7b"])
@pytest.mark.parametrize("spec", ["uniform", RoutingSpec("zipf", zipf_s=1.2),
                                  RoutingSpec("zipf", zipf_s=0.0),
                                  RoutingSpec("zipf", zipf_s=300.0, permute=False)], ids=repr)
def test_compiled_top_k_draws_what_the_partition_draws(name, spec, monkeypatch):
    """The compiled top-k scan changes no draw: published models (8, 256 and 64 experts), on
    three seeds, route exactly as with numpy's partition and stable sort of every row (the
    previous implementation, kept as routing._top_k_desc_numpy)."""
    m = zoo.get(name)
    fast = [route(m, 700, spec, seed=seed) for seed in (0, 1, 7)]
    monkeypatch.setattr(routing, "_top_k_desc", routing._top_k_desc_numpy)
    for seed, a in zip((0, 1, 7), fast, strict=True):
        b = route(m, 700, spec, seed=seed)
        assert a.dtype == b.dtype and np.array_equal(a, b), seed


@pytest.mark.parametrize("e, k", [(8, 2), (8, 8), (256, 8), (5, 1), (64, 6), (3, 3)])
def test_compiled_top_k_hands_ties_to_the_partition(e, k):
    """Keys on a grid of 7 values tie in almost every row (which of two equal keys comes first
    is the partition's choice): those rows are redone by numpy row by row and the result is the
    same as numpy's on the whole array; rows without ties, -inf keys (U = 0 in a race) and NaN
    too."""
    rng = np.random.default_rng(3)
    keys = np.floor(rng.random((4000, e)) * 7) / 7
    keys[::5] = rng.random((keys[::5].shape[0], e))
    keys[1::11, 0] = -np.inf
    keys[2::13, -1] = np.nan
    a = routing._top_k_desc(keys, k)
    assert a.dtype == np.int64 and a.shape == (4000, k)
    np.testing.assert_array_equal(a, routing._top_k_desc_numpy(keys, k))
    # distinct keys by hand: the k largest, largest first
    row = np.array([[0.3, 0.9, 0.1, 0.5, 0.7]])
    assert routing._top_k_desc(row, 3).tolist() == [[1, 4, 3]]


def test_zipf_with_exponent_zero_is_uniform_draw_for_draw():
    m = moe(16, 4, n_layers=3)
    np.testing.assert_array_equal(route(m, 300, RoutingSpec("zipf", zipf_s=0.0), seed=3),
                                  route(m, 300, "uniform", seed=3))


def test_string_spec_is_the_default_spec():
    m = moe(8, 2)
    np.testing.assert_array_equal(route(m, 40, "zipf", seed=1),
                                  route(m, 40, RoutingSpec("zipf", zipf_s=1.0), seed=1))


# ------------------------------------------------------------------------------ uniform
def test_uniform_load_is_k_over_e_within_five_standard_errors():
    n, m = 20_000, moe(8, 2, n_layers=4)
    load = routing.expert_load(route(m, n, "uniform", seed=0), 8)
    q = 2 / 8
    assert np.all(np.abs(load - q) <= Z * binomial_se(q, n))
    np.testing.assert_array_equal(routing.expert_probs(m, "uniform", 0), np.full(8, 1 / 8))


def test_uniform_k_subsets_are_equally_likely():
    # E=4, k=2: 6 unordered pairs, each with probability 1/6; pair density 1/12 off the diagonal
    n, m = 24_000, moe(4, 2, n_layers=1)
    dens = routing.coactivation_density(route(m, n, "uniform", seed=2), 4)[0]
    q = 1 / 6
    off = ~np.eye(4, dtype=bool)
    assert np.all(np.abs(dens[off] - q / 2) <= Z * binomial_se(q, n) / 2)


# ------------------------------------------------------------------------------ zipf
def test_zipf_probabilities_by_hand():
    # E=4, s=1, no permutation: p ∝ 1, 1/2, 1/3, 1/4; the sum is 25/12
    p = routing.expert_probs(moe(4, 1), RoutingSpec("zipf", permute=False), 0)
    np.testing.assert_allclose(p, [12 / 25, 6 / 25, 4 / 25, 3 / 25], rtol=1e-15)
    # s = 2: p ∝ 1, 1/4, 1/9, 1/16
    p2 = routing.expert_probs(moe(4, 1), RoutingSpec("zipf", zipf_s=2, permute=False), 0)
    w = np.array([1, 1 / 4, 1 / 9, 1 / 16])
    np.testing.assert_allclose(p2, w / w.sum(), rtol=1e-15)


def test_zipf_probs_closed_form():
    # s = 1: p ∝ 1, 1/2, 1/3; the sum is 11/6
    np.testing.assert_allclose(routing.zipf_probs(3, 1.0), [6 / 11, 3 / 11, 2 / 11], rtol=1e-15)
    # s = 2: p ∝ 1, 1/4, 1/9, 1/16; the sum is 205/144
    np.testing.assert_allclose(routing.zipf_probs(4, 2), [144 / 205, 36 / 205, 16 / 205, 9 / 205],
                               rtol=1e-15)
    # s = 1.2, expert 0 against expert 1: 2^1.2
    p = routing.zipf_probs(8, 1.2)
    assert p[0] / p[1] == pytest.approx(2**1.2, rel=1e-14)
    assert np.all(np.diff(p) < 0) and p.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(routing.zipf_probs(5, 0.0), np.full(5, 0.2))
    np.testing.assert_array_equal(routing.zipf_probs(1, 3.0), [1.0])
    # s = 2000: every expert but the first underflows, nothing becomes NaN
    np.testing.assert_array_equal(routing.zipf_probs(3, 2000.0), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("e, s", [(4, 1.0), (16, 1.2), (64, 0.5), (8, 0.0)])
def test_zipf_probs_are_the_weights_zipf_routing_samples(e, s):
    # one definition: the routing spec without permutation gives the same vector, bit for bit
    spec = RoutingSpec("zipf", zipf_s=s, permute=False)
    np.testing.assert_array_equal(routing.zipf_probs(e, s),
                                  routing.expert_probs(moe(e, 1), spec, 0))


@pytest.mark.parametrize("kw, match", [
    (dict(n_experts=0, s=1.0), r"n_experts=0"), (dict(n_experts=2.5, s=1.0), r"n_experts=2.5"),
    (dict(n_experts=True, s=1.0), r"n_experts=True"), (dict(n_experts=4, s=-1.0), r"s=-1.0"),
    (dict(n_experts=4, s=float("nan")), r"s=nan"), (dict(n_experts=4, s="1"), r"s='1'"),
])
def test_zipf_probs_rejects_bad_arguments_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        routing.zipf_probs(**kw)


def test_zipf_k1_load_is_p_exactly_in_every_layer():
    n, m = 20_000, moe(6, 1, n_layers=3)
    spec = RoutingSpec("zipf", zipf_s=1.0, permute=True)
    load = routing.expert_load(route(m, n, spec, seed=4), 6)
    for layer in range(3):
        p = routing.expert_probs(m, spec, layer, seed=4)
        ranks = np.argsort(np.argsort(-p))  # 0 = most popular
        np.testing.assert_allclose(p, (ranks + 1.0) ** -1 / np.sum(1 / np.arange(1, 7)))
        assert np.all(np.abs(load[layer] - p) <= Z * binomial_se(p, n))


def test_zipf_k2_load_matches_the_successive_sampling_formula():
    # P(e among 2 draws without replacement) = p_e + sum_{j != e} p_j p_e / (1 - p_j)
    n, m = 20_000, moe(5, 2, n_layers=2)
    spec = RoutingSpec("zipf", zipf_s=1.5, permute=False)
    p = routing.expert_probs(m, spec, 0)
    incl = np.array([p[e] + sum(p[j] * p[e] / (1 - p[j]) for j in range(5) if j != e)
                     for e in range(5)])
    assert math.isclose(incl.sum(), 2.0)
    load = routing.expert_load(route(m, n, spec, seed=9), 5)
    assert np.all(np.abs(load - incl) <= Z * binomial_se(incl, n))
    assert incl[0] < 2 * p[0]  # flattening: the top expert gets less than 2 p


def test_zipf_k3_load_is_monotone_in_p():
    n, m = 20_000, moe(6, 3, n_layers=2)
    spec = RoutingSpec("zipf", zipf_s=1.0, permute=True)
    load = routing.expert_load(route(m, n, spec, seed=1), 6)
    for layer in range(2):
        p = routing.expert_probs(m, spec, layer, seed=1)
        by_p = load[layer][np.argsort(-p)]
        assert np.all(np.diff(by_p) < 0), by_p


def test_zipf_keys_in_log_space_give_the_same_draws(monkeypatch):
    # exponential races log(U)/p and Gumbel keys log p - log(-log U) order experts alike
    m, spec = moe(16, 4, n_layers=2), RoutingSpec("zipf", zipf_s=2.0)
    fast = route(m, 500, spec, seed=8)
    monkeypatch.setattr(routing, "_RACE_MIN_LOGP", np.inf)
    np.testing.assert_array_equal(route(m, 500, spec, seed=8), fast)


def test_zipf_with_huge_exponent_always_takes_the_k_most_popular_in_order():
    # s = 300: p of rank 63 is 64^-300 (below float64), of rank 4 5^-300 = 1e-210; sampling is then
    # certain to draw ranks 0, 1, 2, 3 in this order
    m = moe(64, 4, n_layers=2)
    c = route(m, 20, RoutingSpec("zipf", zipf_s=300.0, permute=False), seed=2)
    assert np.all(c == [0, 1, 2, 3])
    c = route(m, 20, RoutingSpec("zipf", zipf_s=300.0), seed=2)
    for layer in range(2):
        p = routing.expert_probs(m, RoutingSpec("zipf", zipf_s=300.0), layer, seed=2)
        assert np.all(c[:, layer] == np.argsort(-p, kind="stable")[:4])


def test_zipf_permutation_differs_per_layer_unless_turned_off():
    m = moe(8, 1, n_layers=6)
    top = [int(np.argmax(routing.expert_probs(m, RoutingSpec("zipf"), i, seed=0)))
           for i in range(6)]
    assert len(set(top)) > 1
    flat = [int(np.argmax(routing.expert_probs(m, RoutingSpec("zipf", permute=False), i)))
            for i in range(6)]
    assert flat == [0] * 6
    # and the permutation follows the seed
    a = routing.expert_probs(m, RoutingSpec("zipf"), 0, seed=0)
    assert not all(np.array_equal(a, routing.expert_probs(m, RoutingSpec("zipf"), 0, seed=s))
                   for s in range(1, 4))


# ------------------------------------------------------------------------------ co-activation
def test_coactivation_k2_reproduces_the_input_density():
    n, e = 30_000, 6
    c = random_density(e, np.random.default_rng(3), zero_frac=0.3)
    m = moe(e, 2, n_layers=2)
    got = routing.coactivation_density(route(m, n, RoutingSpec("coactivation", coactivation=c),
                                             seed=0), e)
    # unordered pair {i, j} ~ Binomial(n, 2 C_ij); the density holds half of it in each triangle
    se = binomial_se(2 * c, n) / 2
    for layer in range(2):
        assert np.all(np.abs(got[layer] - c) <= Z * se + 1e-15)
        assert np.all(got[layer][c == 0] == 0)  # impossible pairs never appear


def test_coactivation_k1_samples_the_marginal():
    n, e = 20_000, 5
    c = random_density(e, np.random.default_rng(1))
    m = moe(e, 1, n_layers=1)
    spec = RoutingSpec("coactivation", coactivation=c)
    marg = c.sum(axis=1)
    np.testing.assert_allclose(routing.expert_probs(m, spec, 0), marg)
    load = routing.expert_load(route(m, n, spec, seed=0), e)[0]
    assert np.all(np.abs(load - marg) <= Z * binomial_se(marg, n))


def test_coactivation_single_pair_and_per_layer_densities_by_hand():
    m = moe(6, 2, n_layers=2)
    one = route(m, 50, RoutingSpec("coactivation", coactivation=pair_spec(6, [(2, 5)])))
    assert np.all(np.sort(one, axis=2) == [2, 5])
    per_layer = np.stack([pair_spec(6, [(0, 1)]), pair_spec(6, [(3, 4)])])
    two = np.sort(route(m, 50, RoutingSpec("coactivation", coactivation=per_layer)), axis=2)
    assert np.all(two[:, 0] == [0, 1]) and np.all(two[:, 1] == [3, 4])


def _expert_sets(choices, layer=0):
    return {tuple(r) for r in np.sort(choices[:, layer], axis=1).tolist()}


def test_coactivation_k3_stays_within_blocks_of_the_density():
    # two groups {0,1,2} and {3,4,5} with no density across: a token's 3 experts are one group
    m = moe(6, 3, n_layers=1)
    c = pair_spec(6, [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)])
    got = _expert_sets(route(m, 400, RoutingSpec("coactivation", coactivation=c)))
    assert got == {(0, 1, 2), (3, 4, 5)}


def test_coactivation_falls_back_to_the_marginal_when_pairs_run_out():
    # pairs {0,1} and {2,3} only, k=3: one full pair, then an expert of the other pair
    m = moe(4, 3, n_layers=1)
    c = pair_spec(4, [(0, 1), (2, 3)])
    got = _expert_sets(route(m, 400, RoutingSpec("coactivation", coactivation=c)))
    assert got == {(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)}
    # pairs {0,1}, {2,3}, {4,5}, k=4: after the marginal draw the pair density applies again, so
    # the fourth expert completes the third one's pair: every token holds two whole pairs
    m = moe(6, 4, n_layers=1)
    c = pair_spec(6, [(0, 1), (2, 3), (4, 5)])
    got = _expert_sets(route(m, 400, RoutingSpec("coactivation", coactivation=c)))
    assert got == {(0, 1, 2, 3), (0, 1, 4, 5), (2, 3, 4, 5)}


# ------------------------------------------------------------------------------ trace
def test_trace_replays_exactly_and_cyclically():
    m = moe(8, 2, n_layers=3, moe_every=1)
    rec = route(m, 17, "zipf", seed=3)
    spec = RoutingSpec("trace", trace=rec)
    np.testing.assert_array_equal(route(m, 17, spec), rec)
    long = route(m, 40, spec, seed=99)  # seed is ignored for traces
    np.testing.assert_array_equal(long, rec[np.arange(40) % 17])
    np.testing.assert_allclose(routing.expert_probs(m, spec, 1),
                               routing.expert_load(rec, 8)[1] / 2)


def test_trace_file_roundtrip(tmp_path):
    m = moe(8, 2, n_layers=2, name="tiny-moe")
    rec = route(m, 30, "uniform", seed=1)
    path = routing.save_trace(tmp_path / "t", rec, m)
    assert path.name == "t.npz" and path.exists()
    tr = routing.load_trace(path, m)
    assert tr.model_name == "tiny-moe"
    np.testing.assert_array_equal(tr.choices, rec)
    np.testing.assert_array_equal(route(m, 30, RoutingSpec("trace", trace=tr.choices)), rec)
    # saved by name only; loading without a model skips the model checks
    p2 = routing.save_trace(tmp_path / "u.npz", rec, "other")
    assert routing.load_trace(p2).model_name == "other"
    with pytest.raises(ValueError, match=r"model_name='other'.*'tiny-moe'.*check_name=False"):
        routing.load_trace(p2, m)
    assert routing.load_trace(p2, m, check_name=False).model_name == "other"
    with pytest.raises(ValueError, match=r"has 2 MoE layers but 'custom' has 4"):
        routing.load_trace(path, moe(8, 2, n_layers=4), check_name=False)
    np.savez_compressed(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match=r"path=.*bad.npz.*missing choices, model_name"):
        routing.load_trace(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"model_name='': must be a non-empty string"):
        routing.save_trace(tmp_path / "v", rec, "")


# ------------------------------------------------------------------------------ statistics
def test_expert_load_and_coactivation_density_by_hand():
    c = np.array([[[0, 1]], [[1, 2]]])  # 2 tokens, 1 layer, k=2
    np.testing.assert_allclose(routing.expert_load(c, 3), [[0.5, 1.0, 0.5]])
    d = routing.coactivation_density(np.array([[[0, 1]], [[0, 2]]]), 3)
    np.testing.assert_allclose(d, [[[0, .25, .25], [.25, 0, 0], [.25, 0, 0]]])
    # k=3: each token adds 3 pairs
    d3 = routing.coactivation_density(np.array([[[0, 1, 2]]]), 4)[0]
    np.testing.assert_allclose(d3[:3, :3], (1 - np.eye(3)) / 6)
    assert d3[3].sum() == 0


def test_distinct_experts_expected_by_hand():
    f = routing.distinct_experts_expected
    assert f(8, 2, 1) == pytest.approx(2.0)
    assert f(8, 2, np.inf) == 8.0
    assert f(8, 2, 2) == pytest.approx(8 * (1 - (3 / 4) ** 2))  # 3.5
    assert f(8, 2, 0) == 0.0
    assert f(8, 8, 1) == 8.0 and f(1, 1, 5) == 1.0
    np.testing.assert_allclose(f(8, 2, np.array([1, 2, np.inf])), [2, 3.5, 8])


def test_distinct_experts_by_hand():
    c = np.array([[0, 1], [1, 2], [3, 4], [3, 4]])[:, None, :]  # 4 tokens, 1 layer
    np.testing.assert_array_equal(routing.distinct_experts(c, 2), [[3], [2]])
    np.testing.assert_array_equal(routing.distinct_experts(c, 4), [[5]])
    # the trailing partial batch is left out
    np.testing.assert_array_equal(routing.distinct_experts(c, 3, n_experts=8), [[5]])


@pytest.mark.parametrize("e,k,b", [(8, 2, 4), (64, 6, 16), (16, 1, 32)])
def test_distinct_experts_expected_matches_monte_carlo(e, k, b):
    # X = E - (number of untouched experts); its exact variance follows from
    # q1 = P(one expert untouched) = (1 - k/E)^B and q2 = P(two given experts untouched)
    # = ((E - k)(E - k - 1) / (E (E - 1)))^B.
    m = moe(e, k, n_layers=4)
    x = routing.distinct_experts(route(m, b * 1000, "uniform", seed=0), b, e)
    q1 = (1 - k / e) ** b
    q2 = ((e - k) * (e - k - 1) / (e * (e - 1))) ** b
    var = e * q1 * (1 - q1) + e * (e - 1) * (q2 - q1 ** 2)
    expected = routing.distinct_experts_expected(e, k, b)
    assert abs(x.mean() - expected) <= Z * math.sqrt(var / x.size)


# ------------------------------------------------------------------------------ identity
def test_spec_equality_and_key_follow_contents():
    c = random_density(6, np.random.default_rng(0))
    a = RoutingSpec("coactivation", coactivation=c)
    b = RoutingSpec("coactivation", coactivation=c.copy())
    assert a == b and hash(a) == hash(b) and a.key() == b.key() and len({a, b}) == 1
    c2 = c.copy()
    c2[0, 1] += 1e-7
    c2[1, 0] += 1e-7
    assert RoutingSpec("coactivation", coactivation=c2 / c2.sum()) != a
    assert RoutingSpec("zipf", zipf_s=1.0) != RoutingSpec("zipf", zipf_s=1.1)
    assert RoutingSpec("zipf") != RoutingSpec("zipf", permute=False)
    assert RoutingSpec("zipf") != RoutingSpec("uniform")
    assert RoutingSpec("uniform", zipf_s=3.0) == RoutingSpec("uniform")  # ignored outside zipf
    assert isinstance(a.key(), str) and len(a.key()) == 64
    # the spec holds a read-only copy: changing the input afterwards changes nothing
    c[0, 1] = 5.0
    assert a == b and not a.coactivation.flags.writeable
    assert "coactivation=array(shape=(6, 6)" in repr(a)
    # survives pickling (process pools) and dataclasses.replace (validated again)
    assert pickle.loads(pickle.dumps(a)) == a
    z = dataclasses.replace(RoutingSpec("zipf"), zipf_s=2.0)
    assert z == RoutingSpec("zipf", zipf_s=2.0)
    with pytest.raises(ValueError, match="zipf_s=-1.0"):
        dataclasses.replace(z, zipf_s=-1.0)


# ------------------------------------------------------------------------------ errors
def _c(e=4):
    return pair_spec(e, [(0, 1), (1, 2), (2, 3)])


def _co(c):
    return dict(kind="coactivation", coactivation=c)


def _tr(t):
    return dict(kind="trace", trace=t)


_SIGN = np.array([1, -1, 1, 1])
BAD_SPECS = [
    (dict(kind="gaussian"),
     r"RoutingSpec.kind='gaussian'.*'uniform', 'zipf', 'coactivation', 'trace'"),
    (dict(kind="zipf", zipf_s=-0.5), r"zipf_s=-0.5: must be a finite number >= 0"),
    (dict(kind="zipf", zipf_s=float("nan")), r"zipf_s=nan"),
    (dict(kind="zipf", zipf_s=True), r"zipf_s=True"),
    (dict(kind="zipf", permute="yes"), r"permute='yes': must be True or False"),
    (dict(kind="coactivation"), r"coactivation=None: kind='coactivation' needs a pair density"),
    (_co(np.ones((3, 4)) / 12), r"coactivation=array\(shape=\(3, 4\).*has shape"),
    (_co(np.ones(4) / 4), r"coactivation=array\(shape=\(4,\).*\(E, E\)"),
    (_co(_c() * np.outer(_SIGN, _SIGN)), r"coactivation=.*negative entry"),
    (_co(2 * _c()), r"coactivation=.*sums to \[2.0\].*divide"),
    (_co(np.triu(_c()) * 2), r"coactivation=.*not symmetric.*\(C \+ C.T\) / 2"),
    (_co(np.eye(4) / 4), r"coactivation=.*non-zero diagonal.*fill_diagonal"),
    (_co(np.full((2, 2), np.nan)), r"coactivation=.*NaN"),
    (_co(np.array([["a", "b"], ["c", "d"]])), r"coactivation=.*numeric"),
    (dict(kind="uniform", coactivation=_c()),
     r"coactivation=array.*only used by kind='coactivation'"),
    (dict(kind="trace"), r"trace=None: kind='trace' needs recorded routing"),
    (_tr(np.zeros((3, 2), int)), r"trace=array\(shape=\(3, 2\).*2 dimensions, expected 3"),
    (_tr(np.zeros((3, 2, 1))), r"trace=array.*float64.*integers"),
    (_tr(np.array([[[0, 1]], [[2, 2]]])),
     r"trace: token 1 repeats an expert in MoE layer 0 \(\[2, 2\]\)"),
    (_tr(np.array([[[0, -1]]])), r"trace=array.*negative expert id \(-1\)"),
    (_tr(np.zeros((0, 1, 1), int)), r"trace=array\(shape=\(0, 1, 1\).*empty"),
    (dict(kind="zipf", trace=np.array([[[0]]])), r"trace=array.*only used by kind='trace'"),
]


@pytest.mark.parametrize("kw,msg", BAD_SPECS, ids=[m[:40] for _, m in BAD_SPECS])
def test_invalid_spec_raises_naming_field_and_value(kw, msg):
    with pytest.raises(ValueError, match=msg):
        RoutingSpec(**kw)


def test_spec_that_does_not_fit_the_model_raises():
    m = moe(4, 2, n_layers=2)  # 2 MoE layers, 4 experts, k=2
    t = np.array([[[0, 1], [2, 3]]])
    cases = [
        (RoutingSpec("trace", trace=t[:, :1]), r"trace=array.*has 1 MoE layers but 'custom' has 2"),
        (RoutingSpec("trace", trace=t[:, :, :1]), r"trace=array.*k=1 experts per token.*top_k=2"),
        (RoutingSpec("trace", trace=t + 1),
         r"trace=array.*expert id 4 is out of range.*n_experts=4"),
        (RoutingSpec("coactivation", coactivation=pair_spec(5, [(0, 1)])),
         r"coactivation=array\(shape=\(5, 5\).*over 5 experts.*n_experts=4"),
        (RoutingSpec("coactivation", coactivation=np.stack([_c()] * 3)),
         r"coactivation=array\(shape=\(3, 4, 4\).*has 3 layers.*2 MoE layers"),
        (RoutingSpec("coactivation", coactivation=pair_spec(4, [(0, 1)])),
         None),  # fine for k=2
    ]
    for spec, msg in cases:
        if msg is None:
            spec.validate(m)
            continue
        with pytest.raises(ValueError, match=msg):
            route(m, 5, spec)
    with pytest.raises(ValueError, match=r"coactivation=.*only 2 experts a non-zero.*top_k=3"):
        route(moe(4, 3), 5, RoutingSpec("coactivation", coactivation=pair_spec(4, [(0, 1)])))


def test_invalid_route_and_statistics_arguments_raise():
    m = moe(8, 2)
    dense = ModelSpec(d_model=8, n_layers=2, n_heads=2, d_ff=16, vocab_size=10, name="tiny-dense")
    with pytest.raises(ValueError, match=r"'tiny-dense' is dense \(n_experts=0\)"):
        route(dense, 4)
    with pytest.raises(ValueError, match=r"'tiny-dense' is dense"):
        routing.expert_probs(dense, "uniform", 0)
    with pytest.raises(TypeError, match="ModelSpec"):
        route("mixtral", 4)
    with pytest.raises(ValueError, match=r"n_tokens=-1: must be an integer >= 0"):
        route(m, -1)
    with pytest.raises(ValueError, match=r"n_tokens=2.5"):
        route(m, 2.5)
    with pytest.raises(ValueError, match=r"seed=-3: must be an integer >= 0"):
        route(m, 4, seed=-3)
    with pytest.raises(ValueError, match=r"kind='normal'"):
        route(m, 4, "normal")
    with pytest.raises(TypeError, match="RoutingSpec"):
        route(m, 4, 3)
    with pytest.raises(ValueError, match=r"layer_index=2: 'custom' has 2 MoE layers; pass 0..1"):
        routing.expert_probs(m, "zipf", 2)
    c = route(m, 10)
    with pytest.raises(ValueError, match=r"expert id 7 is out of range for n_experts=4"):
        routing.expert_load(c, 4)
    with pytest.raises(ValueError, match=r"n_experts=0: must be an integer >= 1"):
        routing.expert_load(c, 0)
    with pytest.raises(ValueError, match=r"choices=array\(shape=\(10, 2, 1\).*k=1.*no pairs"):
        routing.coactivation_density(c[:, :, :1], 8)
    with pytest.raises(ValueError, match=r"choices=array\(shape=\(10, 2\).*2 dimensions"):
        routing.expert_load(c[:, :, 0], 8)
    with pytest.raises(ValueError, match=r"top_k=9: must be <= n_experts=8"):
        routing.distinct_experts_expected(8, 9, 1)
    with pytest.raises(ValueError, match=r"n_experts=0: must be an integer >= 1"):
        routing.distinct_experts_expected(0, 1, 1)
    with pytest.raises(ValueError, match=r"batch=-1: must be >= 0"):
        routing.distinct_experts_expected(8, 2, -1)
    with pytest.raises(ValueError, match=r"batch=0: must be an integer >= 1"):
        routing.distinct_experts(c, 0)
    with pytest.raises(ValueError, match=r"batch=11: larger than the 10 tokens"):
        routing.distinct_experts(c, 11)
    with pytest.raises(ValueError, match=r"choices=array.*has 2 MoE layers but 'custom' has 1"):
        routing.save_trace("/nonexistent/x", c, moe(8, 2, n_layers=1))
