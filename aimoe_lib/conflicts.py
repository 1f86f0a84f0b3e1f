"""Analytic expectations of tier conflicts and tile load under routing, without sampling.

Chapter 6 compares these closed forms with the Monte Carlo estimate of
:func:`~aimoe_lib.mapping.expected_conflicts` and with the event simulation of
:func:`~aimoe_lib.simulator.engine.simulate`.

**Which experts a token picks.** Every function here takes the distribution of the *set* of k
experts one token uses in one MoE layer from one of three sources:

* uniform routing (``expert_probs=None``): every k-subset of the E experts equally likely. Expert e
  is in the set with probability k/E; a set S of experts is missed with the hypergeometric
  probability ``C(E - len(S), k) / C(E, k)``. Closed form for any E and k.
* ``expert_probs`` p (length E, or one row per MoE layer): k draws without replacement, each
  proportional to p among the experts not yet drawn (successive sampling, the Gumbel-top-k of
  :func:`~aimoe_lib.routing.route` and :func:`~aimoe_lib.mapping.expected_conflicts`). For k = 1 the
  set is {e} with probability p_e. For k >= 2 the probability of a set A is the sum over the k!
  orders of its draws of prod_j p_(a_j) / (1 - p_(a_1) - ... - p_(a_(j-1))); this module enumerates
  all C(E, k) sets exactly (all terms positive, no cancellation) and refuses with a clear error
  where that would take more than :data:`~aimoe_lib.conflicts.MAX_TERMS` terms (then use the Monte
  Carlo estimate).
* ``pair_density`` C (E x E, k = 2 only): the set {i, j} with probability C[i, j] + C[j, i], the
  exact pair law of :func:`~aimoe_lib.routing.route` with a ``coactivation`` RoutingSpec.

**Intra-token conflicts.** At an MoE layer a token runs the gate/up matrices of its k experts,
then their down matrices. In each of the two stages let n_t be the number of active blocks on
tile t. A tile with n_t active blocks makes n_t - 1 of them wait, so the waiting tier MVMs per
token are sum_t max(0, n_t - 1), and by linearity::

    E[sum_t max(0, n_t - 1)] = sum_t (E[n_t] - P(n_t > 0)),

with E[n_t] = sum_e pi_e c_(e,t) (pi_e the probability that e is among the k, c_(e,t) the blocks of
expert e on tile t in that stage) and P(n_t > 0) = 1 - P(no expert with a block on t is chosen).
Both are exact functions of the set distribution: this is what
:func:`~aimoe_lib.conflicts.expected_intra_token_conflicts` returns with ``count="blocks"`` (the
quantity :func:`~aimoe_lib.mapping.expected_conflicts` estimates by sampling). With
``count="starts"``, c_(e,t) is replaced by 1 wherever expert e has a block on t: blocks of one
expert on one tile run back to back inside one operation, and the simulator counts a **tile
conflict** only when an operation of one expert waits for another's
(:class:`~aimoe_lib.simulator.result.SimResult`). For k = 1 the start count is exactly 0 for every mapping;
for ``moe_stacked`` with an expert no larger than the chip (one block per slab tile) both counts are
exactly (k - 1) x blocks per expert, whatever the routing.

**Tile load.** :func:`~aimoe_lib.conflicts.expected_tile_busy_ns` gives each tile's expected busy
time per token, and :func:`~aimoe_lib.conflicts.throughput_ceiling` the generated tokens per second
at which the busiest tile would be busy all the time: an upper bound of the simulated throughput at
large batch (up to the sampling spread of the realised routing).
:func:`~aimoe_lib.conflicts.tpot_asymptote_ns` turns the same loads into the asymptote of the time
per output token against batch (operational analysis of a closed system). Neither is a queueing
model of the simulator's stall counter, which sums the waits of every tile start; the chapter shows
that counter as simulated.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from . import checks
from .mapping import Mapping
from .models import ModelSpec, Role
from .routing import MAX_RESULT_VALUES, RoutingSpec
from .routing import _as_spec as _routing_spec
from .routing import _check_model as _check_moe_model
from .routing import expert_probs as _routing_expert_probs
from .routing import moe_layer_keys as _moe_layer_keys
from .simulator import Workload

__all__ = [
    "MAX_TERMS",
    "COUNTS",
    "STAGES",
    "SetDistribution",
    "set_distribution",
    "inclusion_probs",
    "miss_probability",
    "expected_intra_token_conflicts",
    "stacked_conflicts",
    "layer_probs",
    "TileLoad",
    "expected_tile_busy_ns",
    "throughput_ceiling",
    "tpot_asymptote_ns",
]

MAX_TERMS = 20_000_000
"""Largest k! x C(E, k) the exact enumeration of skewed top-k sets will evaluate (about a second
of numpy work); beyond it the functions raise ValueError and point to the Monte Carlo estimate."""

COUNTS = ("blocks", "starts")
"""What :func:`~aimoe_lib.conflicts.expected_intra_token_conflicts` counts: waiting tier MVMs
(``blocks``, as :func:`~aimoe_lib.mapping.expected_conflicts`) or waiting operation starts per tile
(``starts``, as the simulator's tile conflicts)."""

STAGES = ("up", "down")
"""The two stages of an expert FFN: gate/up MVMs, then down MVMs."""

_SUM_ATOL = 1e-6
"""Tolerance on probabilities summing to 1 (as in routing and mapping)."""


# ----------------------------------------------------------------------------- set laws
@dataclass(frozen=True, eq=False)
class SetDistribution:
    """Law of the set of k experts one token uses in one MoE layer.

    Either ``uniform`` (every k-subset of ``n_experts`` equally likely; ``sets`` and ``probs``
    are None) or an explicit list: ``sets`` (n_sets, k) expert ids, each row sorted, with
    probabilities ``probs`` (n_sets,) summing to 1.
    """

    n_experts: int
    """E."""
    top_k: int
    """k, the size of every set."""
    uniform: bool
    """True: all C(E, k) sets equally likely (closed forms are used)."""
    sets: np.ndarray | None = None
    """(n_sets, k) sorted expert ids of the sets with non-zero probability."""
    probs: np.ndarray | None = None
    """(n_sets,) probability of each set."""

    def __post_init__(self) -> None:
        o = "SetDistribution"
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        set_("n_experts", _check_e(self.n_experts, o))
        set_("top_k", _check_k(self.n_experts, self.top_k, o))
        set_("uniform", checks.boolean(o, "uniform", self.uniform))
        if self.uniform:
            if self.sets is not None or self.probs is not None:
                raise ValueError("SetDistribution(uniform=True): leave sets and probs None; "
                                 "every k-subset is equally likely")
            return
        fix = "pass sets (n_sets, k) of expert ids with probs (n_sets,) summing to 1 (or use " \
              "conflicts.set_distribution)"
        sets = checks.array(o, "sets", self.sets, kinds="iu", ndim=2, fix=fix)
        probs = checks.array(o, "probs", self.probs, ndim=1, dtype=float, fix=fix)
        if sets.shape[1] != self.top_k or sets.shape[0] != probs.shape[0] or not len(probs):
            raise ValueError(f"SetDistribution(sets shape {sets.shape}, probs shape "
                             f"{probs.shape}, top_k={self.top_k}): need one row of top_k "
                             f"experts per probability; {fix}")
        if sets.min() < 0 or sets.max() >= self.n_experts:
            raise ValueError(f"SetDistribution.sets: expert ids must be in 0..{self.n_experts - 1}"
                             f"; {fix}")
        if not np.all(np.isfinite(probs)) or probs.min() < 0 \
                or not math.isclose(float(probs.sum()), 1.0, abs_tol=_SUM_ATOL):
            raise ValueError(f"SetDistribution.probs: must be non-negative and sum to 1; {fix}")
        set_("sets", sets.astype(np.int64, copy=False))
        set_("probs", probs)


def _check_e(n_experts, owner: str = "") -> int:
    return checks.integer(owner, "n_experts", n_experts, minimum=1, maximum=MAX_RESULT_VALUES,
                          fix="pass the model's number of experts")


def _check_k(n_experts: int, top_k, owner: str = "") -> int:
    if not checks._is_int(top_k) or not 1 <= top_k <= n_experts:
        raise ValueError(f"{checks.label(owner, 'top_k', top_k)}: must be an integer in "
                         f"1..n_experts={n_experts}")
    return int(top_k)


def _check_probs(expert_probs, top_k) -> np.ndarray:
    p = checks.array("", "expert_probs", expert_probs, dtype=float,
                     fix="pass a probability vector over the experts, e.g. "
                         "routing.expert_probs(model, spec, layer)")
    if p.ndim != 1 or p.size < 1 or not np.all(np.isfinite(p)) or np.any(p < 0) \
            or not math.isclose(float(p.sum()), 1.0, abs_tol=_SUM_ATOL):
        raise ValueError(f"expert_probs={_short(p)}: must be a probability vector over the "
                         "experts (non-negative, summing to 1); e.g. routing.expert_probs(model, "
                         "spec, layer)")
    _check_k(p.size, top_k)
    if np.count_nonzero(p) < top_k:
        raise ValueError(f"expert_probs gives only {np.count_nonzero(p)} experts a non-zero "
                         f"probability, fewer than top_k={top_k}; a token could not pick k "
                         "distinct experts")
    return p / p.sum()


def _short(a: np.ndarray) -> str:
    return f"array(shape={tuple(a.shape)})"


def set_distribution(n_experts: int, top_k: int, expert_probs=None,
                     pair_density=None) -> SetDistribution:
    """The law of a token's expert set (see the module docstring for the three sources).

    ``expert_probs`` None (and no ``pair_density``) gives uniform routing; all-equal
    ``expert_probs`` are uniform too. Raises ValueError when skewed top-k sets would need more than
    :data:`~aimoe_lib.conflicts.MAX_TERMS` terms to enumerate (e.g. E = 64, k = 8): use uniform
    routing, k <= 4, or :func:`~aimoe_lib.mapping.expected_conflicts` instead.
    """
    e = _check_e(n_experts)
    k = _check_k(e, top_k)
    if pair_density is not None:
        if expert_probs is not None:
            raise ValueError("pass expert_probs= or pair_density=, not both: a pair density "
                             "already fixes which experts a token picks")
        return _pair_law(e, k, pair_density)
    if expert_probs is None:
        return SetDistribution(e, k, True)
    p = _check_probs(expert_probs, k)
    if p.size != e:
        raise ValueError(f"expert_probs has {p.size} entries but n_experts={e}; pass one "
                         "probability per expert")
    if np.all(p == p[0]) or np.allclose(p, 1.0 / e, rtol=1e-12, atol=0.0):
        return SetDistribution(e, k, True)
    if k == 1:
        idx = np.flatnonzero(p > 0)
        return SetDistribution(e, 1, False, idx[:, None].astype(np.int64), p[idx])
    terms = math.factorial(k) * math.comb(e, k)
    if terms > MAX_TERMS:
        raise ValueError(f"skewed top-{k} routing over {e} experts has C({e}, {k}) = "
                         f"{math.comb(e, k):,} expert sets ({terms:,} ordered draws), more than "
                         f"MAX_TERMS={MAX_TERMS:,}; use uniform routing (closed form), a smaller "
                         "k, or the Monte Carlo estimate mapping.expected_conflicts")
    sets = np.array(list(itertools.combinations(range(e), k)), dtype=np.int64)
    pa = p[sets]  # (n, k)
    probs = np.zeros(len(sets))
    with np.errstate(divide="ignore", invalid="ignore"):
        for order in itertools.permutations(range(k)):
            q = pa[:, order]
            before = np.cumsum(q, axis=1) - q  # probability drawn before step j
            left = 1.0 - before
            term = np.where(left > 0, q / np.where(left > 0, left, 1.0), 0.0)
            probs += np.prod(term, axis=1)
    keep = probs > 0
    return SetDistribution(e, k, False, sets[keep], probs[keep] / probs[keep].sum())


def _pair_law(e: int, k: int, pair_density) -> SetDistribution:
    if k != 2:
        raise ValueError(f"pair_density= fixes the law of expert pairs, which is the whole law of "
                         f"a token's set only for top_k=2 (got top_k={k}); use expert_probs=")
    c = checks.array("", "pair_density", pair_density, dtype=float,
                     fix="pass an (E, E) pair density, e.g. routing.coactivation_density(...)[0]")
    if c.shape != (e, e):
        raise ValueError(f"pair_density has shape {c.shape}; expected ({e}, {e}) (one layer)")
    if not np.all(np.isfinite(c)) or c.min() < 0 \
            or not math.isclose(float(c.sum()), 1.0, abs_tol=_SUM_ATOL) \
            or not np.allclose(c, c.T) or np.any(np.diag(c) != 0):
        raise ValueError("pair_density must be symmetric, non-negative, zero on the diagonal "
                         "and sum to 1 (routing.coactivation_density gives one)")
    i, j = np.triu_indices(e, 1)
    pr = c[i, j] + c[j, i]
    keep = pr > 0
    return SetDistribution(e, 2, False, np.stack([i[keep], j[keep]], axis=1).astype(np.int64),
                           pr[keep] / pr[keep].sum())


def inclusion_probs(dist: SetDistribution) -> np.ndarray:
    """pi_e: probability that expert e is among a token's k experts (length E, sums to k)."""
    checks.instance("inclusion_probs()", "dist", dist, SetDistribution,
                    fix="pass a conflicts.set_distribution(...)")
    if dist.uniform:
        return np.full(dist.n_experts, dist.top_k / dist.n_experts)
    pi = np.zeros(dist.n_experts)
    np.add.at(pi, dist.sets.ravel(), np.repeat(dist.probs, dist.top_k))
    return pi


def miss_probability(dist: SetDistribution, members) -> np.ndarray:
    """P(a token's k experts avoid every expert of S), for each row S of the boolean matrix
    ``members`` (n_sets, E) (booleans, or 0 / 1). A row with no expert gives 1."""
    checks.instance("miss_probability()", "dist", dist, SetDistribution,
                    fix="pass a conflicts.set_distribution(...)")
    fix = "pass a boolean matrix (n_sets, n_experts): True where the set holds the expert"
    m = checks.array("miss_probability()", "members", members, kinds="biu", ndim=(1, 2), fix=fix)
    if m.dtype.kind != "b" and not np.isin(m, (0, 1)).all():
        raise ValueError(f"miss_probability(members=...): holds values other than 0 and 1; {fix}")
    m = np.atleast_2d(m.astype(bool))
    if m.shape[1] != dist.n_experts:
        raise ValueError(f"members has {m.shape[1]} columns; expected n_experts="
                         f"{dist.n_experts} (one per expert)")
    if dist.uniform:
        e, k = dist.n_experts, dist.top_k
        total = math.comb(e, k)
        return np.array([math.comb(e - int(s), k) / total for s in m.sum(axis=1)])
    hit = np.zeros((len(dist.sets), m.shape[0]), dtype=bool)
    for col in range(dist.top_k):
        hit |= m.T[dist.sets[:, col]]
    return dist.probs @ (~hit)


# ----------------------------------------------------------------------------- per layer
def layer_probs(model: ModelSpec, spec="uniform", seed: int = 0):
    """Per-MoE-layer expert probabilities of a routing spec, in the form the functions here take:
    None for uniform routing; an (n_moe_layers, E) array for ``zipf`` (each layer its own seeded
    popularity permutation, as :func:`~aimoe_lib.routing.route` draws) and ``trace`` (the
    recorded load / k; an approximation for k > 1). ``coactivation`` raises ValueError: pass its
    density as ``pair_density=``."""
    checks.instance("layer_probs()", "model", model, ModelSpec,
                    fix="pass a models.ModelSpec (e.g. zoo.get(name))")
    rs = _routing_spec(spec)
    seed = checks.seed("layer_probs()", "seed", seed)
    if rs.kind == "uniform" or (rs.kind == "zipf" and rs.zipf_s == 0.0):
        return None  # also for a dense model: nothing to weight
    _check_moe_model(model)  # a dense model has no experts to weight
    if rs.kind == "coactivation":
        raise ValueError("layer_probs: a coactivation spec is a pair law, not per-expert "
                         "probabilities; pass pair_density=spec.coactivation instead")
    n_moe = len(_moe_layer_keys(model))
    return np.stack([_routing_expert_probs(model, rs, i, seed) for i in range(n_moe)])


def _layer_laws(model: ModelSpec, expert_probs, pair_density) -> list[SetDistribution]:
    n_moe = len(_moe_layer_keys(model))
    e, k = model.n_experts, model.top_k

    def rows(a, what):
        if a is None:
            return [None] * n_moe
        arr = np.asarray(a, dtype=float)
        if arr.ndim == 2 + (what == "pair_density") and arr.shape[0] == n_moe:
            return list(arr)
        if arr.ndim == 1 + (what == "pair_density"):
            return [arr] * n_moe
        raise ValueError(f"{what} has shape {arr.shape}; expected one for all {n_moe} MoE layers "
                         f"or one per layer (leading axis {n_moe})")

    ps, cs = rows(expert_probs, "expert_probs"), rows(pair_density, "pair_density")
    cache: dict = {}
    laws = []
    for p, c in zip(ps, cs, strict=True):
        key = (None if p is None else p.tobytes(), None if c is None else c.tobytes())
        if key not in cache:
            cache[key] = set_distribution(e, k, p, c)
        laws.append(cache[key])
    return laws


def _expert_blocks(mapping: Mapping, glayer: int, down: bool) -> np.ndarray:
    """(E, n_tiles) blocks of each routed expert of global layer ``glayer`` in one stage."""
    e, n_tiles = mapping.model.n_experts, mapping.chip.n_tiles
    is_down = np.array([m.role is Role.FFN_DOWN for m in mapping.matrices])
    bm = mapping.block_matrix
    sel = ((mapping.matrix_layer[bm] == glayer) & (mapping.matrix_expert[bm] >= 0)
           & (is_down[bm] == down))
    counts = np.zeros((e, n_tiles))
    np.add.at(counts, (mapping.matrix_expert[bm][sel], mapping.tile[sel]), 1.0)
    return counts


def _global_layers(model: ModelSpec) -> list[int]:
    enc = model.n_encoder_layers
    return [layer + (enc if stack == "decoder" else 0) for stack, layer in _moe_layer_keys(model)]


def expected_intra_token_conflicts(mapping: Mapping, expert_probs=None, *, pair_density=None,
                                   count: str = "blocks", stages=STAGES) -> np.ndarray:
    """Expected waiting tier MVMs (``count="blocks"``) or waiting starts (``count="starts"``) per
    token in each MoE layer's expert FFN, in closed form: sum over the two stages (gate/up, then
    down) and the tiles of E[n_t] - P(n_t > 0) (module docstring). No sampling.

    ``expert_probs``: None (uniform), length E, or (n_moe_layers, E) (e.g.
    :func:`~aimoe_lib.conflicts.layer_probs`); ``pair_density``: (E, E) or (n_moe_layers, E, E),
    top-2 only. ``count="blocks"`` is what :func:`~aimoe_lib.mapping.expected_conflicts` estimates
    by sampling. ``stages`` selects the stages summed. For a token alone on the chip (batch 1, one
    token per pass) the simulator's k gate/up operations become ready at the same instant, so
    ``count="starts", stages=("up",)`` is exactly the expected number of its gate/up tile conflicts,
    and a lower bound of all its conflicts; the down operations are staggered by the waits of the
    first stage, so they meet less often than the two-stage sum assumes. Returns one value per MoE
    layer (order of :func:`~aimoe_lib.routing.moe_layer_keys`).
    """
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a Mapping (mapping.map_model), got "
                        f"{type(mapping).__name__}")
    model = mapping.model
    if not model.is_moe:
        raise ValueError(f"{model.name} is dense: it has no experts to route")
    if count not in COUNTS:
        raise ValueError(f"count={count!r}: choose 'blocks' (waiting tier MVMs, as "
                         "mapping.expected_conflicts) or 'starts' (waiting operations per tile, "
                         "as the simulator's tile conflicts)")
    if isinstance(stages, str):
        stages = (stages,)
    if not isinstance(stages, list | tuple | set | frozenset) or not stages \
            or any(s not in STAGES for s in stages):
        raise ValueError(f"stages={stages!r}: choose from {STAGES} (gate/up MVMs, down MVMs), "
                         "e.g. stages=('up',)")
    stages = tuple(stages)
    laws = _layer_laws(model, expert_probs, pair_density)
    out = []
    for glayer, law in zip(_global_layers(model), laws, strict=True):
        pi = inclusion_probs(law)
        total = 0.0
        for down in sorted({s == "down" for s in stages}):
            c = _expert_blocks(mapping, glayer, down)
            on = c > 0
            used = on.any(axis=0)
            if not used.any():
                continue
            c, on = c[:, used], on[:, used]
            weight = c if count == "blocks" else on.astype(float)
            mean_n = pi @ weight
            # tiles holding the same set of experts share P(n_t > 0)
            uniq, inv = np.unique(on.T, axis=0, return_inverse=True)
            p_any = 1.0 - miss_probability(law, uniq)[inv.ravel()]
            total += float(np.sum(mean_n - p_any))
        out.append(max(total, 0.0))
    return np.array(out)


def stacked_conflicts(model: ModelSpec, tier_rows: int = 512, tier_cols: int = 512) -> int:
    """(k - 1) x blocks per routed expert: the waiting tier MVMs per token and MoE layer of a
    ``moe_stacked`` mapping whose experts fit one block per slab tile (blocks per expert <=
    tiles), whatever the routing: every slab tile holds one block of every expert, so the k
    chosen experts meet on each of the expert's tiles."""
    checks.instance("stacked_conflicts()", "model", model, ModelSpec,
                    fix="pass a models.ModelSpec (e.g. zoo.get(name))")
    tier_rows, tier_cols = (checks.integer("stacked_conflicts()", n, v, minimum=1,
                                           maximum=checks.INT32_MAX, fix="pass the tier shape")
                            for n, v in (("tier_rows", tier_rows), ("tier_cols", tier_cols)))
    if not model.is_moe:
        raise ValueError(f"{model.name} is dense: it has no experts to stack")
    mats = [m for m in model.matrices() if m.is_routed_expert and m.expert == 0
            and m.layer == _moe_layer_keys(model)[0][1]]
    per_expert = sum(-(-m.in_features // tier_rows) * -(-m.out_features // tier_cols)
                     for m in mats)
    return (model.top_k - 1) * per_expert


# ----------------------------------------------------------------------------- tile load
@dataclass(frozen=True)
class TileLoad:
    """Expected busy time of every tile, ns, per token (through all layers) and per LM-head run."""

    per_token_ns: np.ndarray
    """(n_tiles,) expected busy ns per token passing every layer (routed experts weighted by
    their inclusion probability pi_e, everything else by 1)."""
    per_head_ns: np.ndarray
    """(n_tiles,) busy ns of one LM-head MVM (the last token of each pass)."""

    @property
    def decode_pass_ns(self) -> float:
        """Busy ns of the busiest tile per decode pass (one token through every layer and the LM
        head): the bottleneck demand D_max of one sequence's step."""
        return float((self.per_token_ns + self.per_head_ns).max())


def expected_tile_busy_ns(mapping: Mapping, expert_probs=None, *, pair_density=None) -> TileLoad:
    """Expected busy time of each tile per token: tier-MVM latency x (blocks of always-active
    matrices + sum_e pi_e x blocks of routed expert e). Sources of the routing as in
    :func:`~aimoe_lib.conflicts.expected_intra_token_conflicts`."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a Mapping (mapping.map_model), got "
                        f"{type(mapping).__name__}")
    model, n_tiles = mapping.model, mapping.chip.n_tiles
    if not model.is_moe and (expert_probs is not None or pair_density is not None):
        raise ValueError(f"{model.name} is dense: it has no experts, so expert_probs= and "
                         "pair_density= do not apply; leave them None")
    lat = mapping.chip.cost.tier_mvm_latency_ns
    bm = mapping.block_matrix
    weight = np.ones(len(mapping.matrices))
    head = np.array([m.role is Role.LM_HEAD for m in mapping.matrices])
    weight[head] = 0.0
    if model.is_moe:
        laws = _layer_laws(model, expert_probs, pair_density)
        pis = {g: inclusion_probs(law) for g, law in zip(_global_layers(model), laws, strict=True)}
        for i in np.flatnonzero(mapping.matrix_expert >= 0):
            weight[i] = pis[int(mapping.matrix_layer[i])][int(mapping.matrix_expert[i])]
    per_token = np.bincount(mapping.tile, weights=weight[bm], minlength=n_tiles) * lat
    per_head = np.bincount(mapping.tile, weights=head[bm].astype(float), minlength=n_tiles) * lat
    return TileLoad(per_token, per_head)


def throughput_ceiling(mapping: Mapping, workload: Workload, expert_probs=None, *,
                       pair_density=None) -> float:
    """Generated tokens per second at which the busiest tile is busy all the time (expected load).

    One sequence of ``workload`` sends prompt_len + gen_len - 1 tokens through the layers (with a
    KV cache; without, every pass re-runs its prefix) and runs the LM head gen_len times; tile t
    is then busy n_tokens x per_token_ns[t] + gen_len x per_head_ns[t]. Whatever the batch, the
    run takes at least batch x max_t of that, so the throughput cannot exceed
    gen_len / max_t(busy) per ns. Only tiles are counted (not the digital units), and expected
    loads stand for realised ones: at small batch the sampled routing can load a tile more.
    """
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a simulator.Workload, got {type(workload).__name__}")
    load = expected_tile_busy_ns(mapping, expert_probs, pair_density=pair_density)
    n_tok = sum(workload.tokens_in_pass(p) for p in range(workload.n_passes))
    busy = n_tok * load.per_token_ns + workload.gen_len * load.per_head_ns
    return workload.gen_len / float(busy.max()) * 1e9


def tpot_asymptote_ns(mapping: Mapping, batch: int, tpot_alone_ns: float, expert_probs=None, *,
                      pair_density=None) -> float:
    """Asymptotic time per output token of ``batch`` sequences decoding together:
    max(tpot_alone_ns, batch x D_max), D_max = :attr:`~aimoe_lib.conflicts.TileLoad.decode_pass_ns`.

    The asymptotic bounds of operational analysis for a closed system of N customers without
    think time (response time R(N) >= max(D, N x D_max), D the demand of one customer alone):
    each of the ``batch`` sequences has one token in flight, which needs ``tpot_alone_ns`` alone
    (measured at batch 1) and D_max of the busiest tile, which serves every sequence in turn.
    With expected loads standing for realised ones it is an estimate, not a strict bound; the
    waiting it implies per output token is the returned value minus ``tpot_alone_ns``.
    """
    batch = checks.integer("", "batch", batch, minimum=1,
                           fix="the sequences in flight: an integer >= 1")
    tpot_alone_ns = checks.real("", "tpot_alone_ns", tpot_alone_ns, minimum=0, strict=True,
                                fix="the time per output token of one sequence alone (> 0), "
                                    "e.g. from a batch-1 simulation")
    load = expected_tile_busy_ns(mapping, expert_probs, pair_density=pair_density)
    return max(float(tpot_alone_ns), batch * load.decode_pass_ns)
