"""Which experts each token uses: per token and MoE layer, the k expert ids the router picks.

The simulator consumes an integer array ``choices`` of shape ``(n_tokens, n_moe_layers, top_k)``:
``choices[t, l]`` holds the ``top_k`` distinct routed experts token ``t`` uses in the ``l``-th MoE
layer. MoE layers are counted over the whole model, encoder MoE layers first for encoder-decoder
models (the order of :func:`moe_layer_keys`, the same as ``mapping``). Shared experts are always
active and are not part of routing.

Sources of routing (:class:`RoutingSpec`, ``kind``):

* ``uniform`` — every k-subset of the E experts is equally likely (a perfectly load-balanced
  router, the usual assumption of MoE cost models).
* ``zipf`` — skewed routing: expert of popularity rank r (0 = most popular) has weight
  p ∝ 1 / (r + 1)^s, and a token draws k experts *without replacement* proportionally to p
  (successive sampling, implemented by the Gumbel-top-k trick: the k largest of
  log p_e + Gumbel noise). With ``permute`` (default) the popularity ranks are a seeded random
  permutation per MoE layer, so layers do not all favour expert 0.
* ``coactivation`` — tokens pick experts so that *pairs* of experts follow a given pair density
  C (E x E, symmetric, zero diagonal, summing to 1; or one per MoE layer). See
  :func:`route` for the sampling procedure; for k = 2 the pair frequencies reproduce C exactly in
  expectation.
* ``trace`` — replay of recorded routing decisions (e.g. from a trained router), taken
  cyclically: token t uses row ``t mod len(trace)``.

Sampling is deterministic per ``seed``: MoE layer l draws from its own stream
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(0, l)))`` and the zipf popularity
permutation of layer l from ``spawn_key=(1, l)``. Tokens are drawn in order from the layer's
stream, so routing is *prefix-stable*: ``route(m, n)`` equals ``route(m, n + more)[:n]``, and
asking for more tokens never changes the routing of earlier ones. Tokens are independent of each
other and MoE layers independent of each other (real routers correlate a token's choices across
layers; only a ``trace`` carries such correlations).

Statistics: :func:`expert_load`, :func:`coactivation_density`, :func:`distinct_experts` and the
closed form :func:`distinct_experts_expected`. Traces are stored with :func:`save_trace` and read
with :func:`load_trace`.
"""

from __future__ import annotations

import hashlib
import numbers
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import checks
from .models import ModelSpec, Stack

__all__ = [
    "KINDS",
    "RoutingSpec",
    "Trace",
    "route",
    "moe_layer_keys",
    "expert_probs",
    "coactivation_from_probs",
    "zipf_probs",
    "expert_load",
    "coactivation_density",
    "distinct_experts",
    "distinct_experts_expected",
    "save_trace",
    "load_trace",
    "MAX_RESULT_VALUES",
]

KINDS = ("uniform", "zipf", "coactivation", "trace")
"""Names accepted as ``RoutingSpec.kind`` (and as a plain string ``spec`` of :func:`route`)."""

_SUM_ATOL = 1e-6
"""Tolerance on a density summing to 1 (the same as mapping's co-activation check)."""

_CHUNK_ELEMENTS = 1 << 22
"""Tokens are sampled in chunks of about this many (token x expert) values per layer, to bound
memory (4 Mi doubles = 32 MiB); chunking does not change the result (tokens are drawn in order)."""

_RACE_MIN_LOGP = -700.0
"""Below this log p (1/p near the float64 limit) zipf keys are computed as Gumbel keys in log
space instead of exponential races; both give the same order."""

_TRACE_FORMAT = 1
"""Version of the file layout written by :func:`save_trace`."""

MAX_RESULT_VALUES = 2**27
"""Most values (per-expert probabilities, loads, pair densities) one statistics call returns:
1 GiB of float64. A larger request (an n_experts of billions) is refused up front instead of
failing inside numpy."""


def _err(field_: str, value, why: str, fix: str) -> ValueError:
    shown = _short(value) if isinstance(value, np.ndarray) else repr(value)
    return ValueError(f"RoutingSpec.{field_}={shown}: {why}; {fix}")


def _short(a: np.ndarray) -> str:
    """Compact description of an array for messages and reprs."""
    return f"array(shape={tuple(a.shape)}, dtype={a.dtype})"


# ----------------------------------------------------------------------------- MoE layers
def moe_layer_keys(model: ModelSpec) -> list[tuple[str, int]]:
    """The MoE layers of ``model`` as ``(stack, layer)`` pairs in routing order: encoder MoE layers
    first (encoder-decoder models), then decoder MoE layers. The index into this list is the
    ``layer`` axis of a routing array (the same order as ``mapping``'s MoE layers)."""
    checks.instance("moe_layer_keys()", "model", model, ModelSpec,
                    fix="pass a models.ModelSpec (e.g. zoo.get(name))")
    stacks = (Stack.ENCODER, Stack.DECODER) if model.is_encoder_decoder else (Stack.DECODER,)
    keys = []
    for stack in stacks:
        n = model.n_encoder_layers if stack is Stack.ENCODER else model.n_layers
        keys += [(stack.value, i) for i in model._moe_layers(n)]
    return keys


def _check_model(model) -> int:
    """Number of MoE layers of an MoE model; TypeError / ValueError otherwise."""
    if not isinstance(model, ModelSpec):
        raise TypeError(f"model must be a ModelSpec, got {type(model).__name__}")
    if not model.is_moe:
        raise ValueError(f"model {model.name!r} is dense (n_experts=0): it has no experts to "
                         "route; use an MoE model (n_experts >= 1, top_k >= 1)")
    return len(moe_layer_keys(model))


# ----------------------------------------------------------------------------- the spec
@dataclass(frozen=True, eq=False)
class RoutingSpec:
    """Where routing decisions come from (see the module docstring for the kinds).

    Arrays are copied, converted (coactivation to float64, trace to int32) and made read-only.
    Equality and hashing compare *contents* through :meth:`key`, so two specs built from equal
    arrays are equal and share a cache entry. Fields a kind does not use (``zipf_s`` and
    ``permute`` outside ``zipf``) are validated but ignored, and left out of :meth:`key`;
    arrays given for a kind that does not use them are an error.

    Checks that need the model (number of experts, of MoE layers, top_k) run in :meth:`validate`,
    which :func:`route` calls.
    """

    kind: str = "uniform"
    """'uniform', 'zipf', 'coactivation' or 'trace'."""
    zipf_s: float = 1.0
    """Zipf exponent s >= 0: expert of popularity rank r has weight 1 / (r + 1)^s (0 = uniform)."""
    permute: bool = True
    """zipf: popularity ranks are a seeded random permutation per MoE layer (False: expert 0 is the
    most popular in every layer)."""
    coactivation: np.ndarray | None = None
    """Pair density: (E, E) for all MoE layers or (n_moe_layers, E, E); symmetric, non-negative,
    zero diagonal, each (E, E) summing to 1. Entry C[i, j] + C[j, i] is the probability that a
    token's pair is {i, j} (for k = 2)."""
    trace: np.ndarray | None = None
    """Recorded routing, (n_tokens, n_moe_layers, top_k) expert ids; replayed cyclically."""
    _key: str = field(init=False, repr=False, default="")

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        checks.choice("RoutingSpec", "kind", self.kind, KINDS, what="routing kind")
        set_("zipf_s", float(checks.real(
            "RoutingSpec", "zipf_s", self.zipf_s, minimum=0,
            fix="use 0 for uniform popularity, about 1 for a classic Zipf law")))
        set_("permute", checks.boolean(
            "RoutingSpec", "permute", self.permute,
            fix="pass permute=True (popular experts differ per layer) or False"))

        if self.kind == "coactivation":
            if self.coactivation is None:
                raise _err("coactivation", None, "kind='coactivation' needs a pair density",
                           "pass coactivation=, an (E, E) symmetric array summing to 1 "
                           "(e.g. routing.coactivation_density(recorded_choices, E))")
            set_("coactivation", _check_density(self.coactivation))
        elif self.coactivation is not None:
            raise _err("coactivation", np.asarray(self.coactivation),
                       f"is only used by kind='coactivation', not kind={self.kind!r}",
                       "leave coactivation=None or set kind='coactivation'")
        if self.kind == "trace":
            if self.trace is None:
                raise _err("trace", None, "kind='trace' needs recorded routing",
                           "pass trace=, an (n_tokens, n_moe_layers, top_k) int array "
                           "(e.g. routing.load_trace(path).choices)")
            set_("trace", _check_choices(self.trace, "RoutingSpec.trace"))
        elif self.trace is not None:
            raise _err("trace", np.asarray(self.trace),
                       f"is only used by kind='trace', not kind={self.kind!r}",
                       "leave trace=None or set kind='trace'")
        set_("_key", self._compute_key())

    # -- identity ---------------------------------------------------------------------------
    def _compute_key(self) -> str:
        h = hashlib.sha256()
        h.update(f"RoutingSpec/1|{self.kind}".encode())
        if self.kind == "zipf":
            h.update(f"|s={self.zipf_s!r}|permute={self.permute}".encode())
        for name in ("coactivation", "trace"):
            a = getattr(self, name)
            if a is not None:
                h.update(f"|{name}:{a.dtype.str}:{a.shape}|".encode())
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def key(self) -> str:
        """Stable content hash (SHA-256 hex) of everything that decides the routing: kind, the
        zipf parameters (zipf only) and the arrays' dtype, shape and bytes. Use it in cache keys;
        it does not depend on the Python process (unlike ``hash``)."""
        return self._key

    def __eq__(self, other) -> bool:
        if not isinstance(other, RoutingSpec):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        parts = [f"kind={self.kind!r}"]
        if self.kind == "zipf":
            parts += [f"zipf_s={self.zipf_s!r}", f"permute={self.permute!r}"]
        if self.coactivation is not None:
            parts.append(f"coactivation={_short(self.coactivation)}")
        if self.trace is not None:
            parts.append(f"trace={_short(self.trace)}")
        return f"RoutingSpec({', '.join(parts)})"

    # -- model-dependent checks ---------------------------------------------------------------
    def validate(self, model: ModelSpec) -> RoutingSpec:
        """Check that this spec fits ``model`` (experts, MoE layers, top_k); returns self.

        Raises ValueError naming the field, the value and the fix.
        """
        n_moe = _check_model(model)
        e, k = model.n_experts, model.top_k
        if self.kind == "coactivation":
            c = self.coactivation
            if c.shape[-1] != e:
                raise _err("coactivation", c, f"is over {c.shape[-1]} experts but "
                           f"{model.name!r} has n_experts={e}",
                           f"pass an ({e}, {e}) or ({n_moe}, {e}, {e}) density")
            if c.ndim == 3 and c.shape[0] != n_moe:
                raise _err("coactivation", c, f"has {c.shape[0]} layers but "
                           f"{model.name!r} has {n_moe} MoE layers",
                           f"pass an ({e}, {e}) density for all layers or ({n_moe}, {e}, {e})")
            marg = np.atleast_1d(np.count_nonzero(c.sum(axis=-1) > 0, axis=-1))
            if np.any(marg < k):
                where = f" (MoE layer {int(np.argmax(marg < k))})" if c.ndim == 3 else ""
                raise _err("coactivation", c, f"gives only {int(np.min(marg))} experts a "
                           f"non-zero probability{where}, fewer than top_k={k}",
                           f"give at least {k} experts some pair density")
        elif self.kind == "trace":
            t = self.trace
            _check_choices_fit(t, model, "RoutingSpec.trace", n_moe)
        return self


def _check_density(c) -> np.ndarray:
    """Model-independent checks of a pair density; returns a read-only float64 copy."""
    try:
        a = np.asarray(c)
    except (ValueError, TypeError):  # ragged nested lists
        raise _err("coactivation", c, "is not a rectangular array",
                   "pass an (E, E) float array") from None
    if a.dtype.kind not in "iuf":  # no bools, complex numbers (imaginary parts), strings
        raise _err("coactivation", a, "must be a numeric array of real numbers",
                   "pass an (E, E) float array")
    arr = a.astype(float, copy=True)
    shape = arr.shape
    if arr.ndim not in (2, 3) or shape[-1] != shape[-2] or shape[-1] < 2 or 0 in shape:
        raise _err("coactivation", arr, f"has shape {shape}",
                   "pass an (E, E) density (E >= 2) or one per MoE layer, (n_moe_layers, E, E)")
    if not np.all(np.isfinite(arr)):
        raise _err("coactivation", arr, "contains NaN or infinite values",
                   "pass finite pair probabilities")
    if arr.min() < 0:
        raise _err("coactivation", arr, f"has a negative entry ({arr.min():.3g})",
                   "pass non-negative pair probabilities")
    sums = arr.reshape(-1, shape[-1] * shape[-1]).sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0, atol=_SUM_ATOL):
        raise _err("coactivation", arr, f"sums to {np.round(sums, 6)[:4].tolist()} "
                   "(per layer), not 1", "divide each (E, E) density by its sum")
    if not np.allclose(arr, np.swapaxes(arr, -1, -2), rtol=1e-9, atol=1e-12):
        raise _err("coactivation", arr, "is not symmetric (C[i, j] != C[j, i])",
                   "symmetrise it: (C + C.T) / 2")
    diag = np.diagonal(arr, axis1=-2, axis2=-1)
    if np.any(diag > 1e-12):
        raise _err("coactivation", arr, f"has a non-zero diagonal (max {diag.max():.3g}): "
                   "a token never picks the same expert twice",
                   "np.fill_diagonal(C, 0) and divide by the new sum")
    arr.setflags(write=False)
    return arr


def _check_choices(choices, what: str) -> np.ndarray:
    """Model-independent checks of a routing array; returns a read-only int32 copy."""
    try:
        a = np.asarray(choices)
    except (ValueError, TypeError):  # ragged nested lists
        raise ValueError(f"{what}: is not a rectangular array; pass (n_tokens, n_moe_layers, "
                         "top_k) expert ids, the same k for every token and layer") from None
    if a.ndim != 3:
        raise ValueError(f"{what}={_short(a)}: has {a.ndim} dimensions, expected 3; pass "
                         "(n_tokens, n_moe_layers, top_k) expert ids")
    if not np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        raise ValueError(f"{what}={_short(a)}: expert ids must be integers; convert with "
                         ".astype(np.int32)")
    if 0 in a.shape:
        raise ValueError(f"{what}={_short(a)}: is empty; record at least one token of one "
                         "layer with k >= 1 experts")
    if a.min() < 0:
        raise ValueError(f"{what}={_short(a)}: has a negative expert id ({int(a.min())}); "
                         "expert ids are 0..n_experts-1")
    if a.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{what}={_short(a)}: expert id {int(a.max())} is out of range; "
                         "expert ids are 0..n_experts-1")
    s = np.sort(a, axis=2)
    dup = np.any(s[..., 1:] == s[..., :-1], axis=2)
    if np.any(dup):
        t, layer = (int(x) for x in np.argwhere(dup)[0])
        raise ValueError(f"{what}: token {t} repeats an expert in MoE layer {layer} "
                         f"({a[t, layer].tolist()}); each token uses k distinct experts")
    out = a.astype(np.int32, copy=True)
    out.setflags(write=False)
    return out


def _check_choices_fit(a: np.ndarray, model: ModelSpec, what: str, n_moe: int) -> None:
    e, k = model.n_experts, model.top_k
    if a.shape[1] != n_moe:
        raise ValueError(f"{what}={_short(a)}: has {a.shape[1]} MoE layers but {model.name!r} "
                         f"has {n_moe}; record one column per MoE layer (encoder first)")
    if a.shape[2] != k:
        raise ValueError(f"{what}={_short(a)}: has k={a.shape[2]} experts per token but "
                         f"{model.name!r} has top_k={k}; record top_k experts per token")
    if a.max() >= e:
        raise ValueError(f"{what}={_short(a)}: expert id {int(a.max())} is out of range for "
                         f"{model.name!r} with n_experts={e}; expert ids are 0..{e - 1}")


def _as_spec(spec) -> RoutingSpec:
    if isinstance(spec, RoutingSpec):
        return spec
    if isinstance(spec, str):
        return RoutingSpec(kind=spec)
    raise TypeError(f"spec must be a kind name ({', '.join(KINDS)}) or a RoutingSpec, "
                    f"got {type(spec).__name__}")


def _check_seed(seed) -> int:
    return checks.seed("", "seed", seed)


# ----------------------------------------------------------------------------- sampling
def _stream(seed: int, which: int, layer: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(which, layer)))


def _zipf_log_of_ranks(rank: np.ndarray, s: float) -> np.ndarray:
    """log p_e of the Zipf law p_e = (rank_e + 1)^-s / sum_j (rank_j + 1)^-s, computed in log space
    so that no expert underflows to 0: the one place the Zipf weights are defined."""
    logw = -s * np.log1p(rank)
    top = logw.max()
    return logw - (top + np.log(np.sum(np.exp(logw - top))))


def _zipf_logprobs(e: int, s: float, permute: bool, seed: int, layer: int) -> np.ndarray:
    """log p of the zipf weights of MoE layer ``layer`` (ranks permuted per layer with
    ``permute``)."""
    rank = _stream(seed, 1, layer).permutation(e) if permute else np.arange(e)
    return _zipf_log_of_ranks(rank, s)


def zipf_probs(n_experts: int, s: float) -> np.ndarray:
    """Zipf routing probabilities with expert 0 the most popular: p_e = (e + 1)^-s / sum_j
    (j + 1)^-s for e = 0 .. n_experts - 1 (dimensionless, summing to 1; s = 0 is uniform).

    The weights that ``zipf`` routing samples from (:class:`RoutingSpec` with
    ``permute=False``; :func:`expert_probs` gives the same vector), and the form
    :func:`~aimoe_lib.mapping.expected_conflicts` takes as ``expert_probs``.
    """
    n_experts = _check_n_experts("zipf_probs()", n_experts, 1)
    s = checks.real("zipf_probs()", "s", s, minimum=0,
                    fix="the Zipf exponent: use 0 for uniform popularity, about 1 for a classic "
                        "Zipf law")
    return np.exp(_zipf_log_of_ranks(np.arange(n_experts), float(s)))


def _check_n_experts(owner: str, n_experts, per_expert: int = 1) -> int:
    """n_experts as an int >= 1 whose result (``per_expert`` values per expert) stays within
    :data:`MAX_RESULT_VALUES`."""
    top = max(1, MAX_RESULT_VALUES // max(per_expert, 1))
    return checks.integer(owner, "n_experts", n_experts, minimum=1, maximum=top,
                          fix="pass the model's n_experts" + (
                              f" (the result would hold {per_expert:,} values per expert, at most "
                              f"{MAX_RESULT_VALUES:,} in all)" if per_expert > 1 else
                              f" (at most {top:,})"))


def coactivation_from_probs(p) -> np.ndarray:
    """Co-activation density of the experts from their routing probabilities ``p`` (length E).

    C[i, j] = p_i p_j / Z for i != j, C[i, i] = 0, with Z making the matrix sum to 1: the chance
    that a token picks experts i and j together, as the :func:`~aimoe_lib.mapping.map_model`
    strategy ``coactivation`` expects. This is an approximation: it treats the k picks of a token
    as independent draws from ``p``, while top-k picks k distinct experts (without replacement),
    which shifts pair probabilities slightly away from the most popular experts. A recorded routing
    trace gives the exact density.
    """
    p = checks.array("coactivation_from_probs()", "p", p, ndim=1, dtype=float,
                     fix="pass a probability vector over the experts, e.g. "
                         "routing.zipf_probs(n_experts, s)")
    if p.size < 2 or not np.all(np.isfinite(p)) or np.any(p < 0) \
            or not np.isclose(p.sum(), 1.0):
        raise ValueError("coactivation_from_probs(p): p must be a probability vector over at "
                         "least 2 experts (non-negative, summing to 1)")
    c = np.outer(p, p)
    np.fill_diagonal(c, 0.0)
    total = c.sum()
    if total <= 0:
        raise ValueError("coactivation_from_probs(p): p puts all probability on one expert, so "
                         "no two experts are ever picked together")
    return c / total


def expert_probs(model: ModelSpec, spec="uniform", layer_index: int = 0,
                 seed: int = 0) -> np.ndarray:
    """Per-expert selection probabilities p (length E, summing to 1) of MoE layer ``layer_index``
    (an index into :func:`moe_layer_keys`) under ``spec`` and ``seed``.

    * uniform: 1/E. zipf: (r_e + 1)^-s / sum, r_e the popularity rank of expert e in this layer
      (seeded as in :func:`route`).
      These are the weights of the successive sampling :func:`route` performs, the same meaning as
      ``mapping.expected_conflicts(expert_probs=...)``. For k = 1, p_e is the probability that a
      token picks e; for k > 1 the probability that e is among the k (its expected load) is
      *not* k·p_e: sampling without replacement flattens it (for k = 2 it is
      p_e + sum_{j != e} p_j p_e / (1 - p_j)).
    * coactivation: the marginal sum_j C[e, j] (what k = 1 samples; half the inclusion
      probability for k = 2).
    * trace: the recorded load of each expert divided by k.
    """
    spec = _as_spec(spec).validate(model)
    n_moe = len(moe_layer_keys(model))
    if (not isinstance(layer_index, numbers.Integral) or isinstance(layer_index, bool | np.bool_)
            or not 0 <= layer_index < n_moe):
        raise ValueError(f"layer_index={layer_index!r}: {model.name!r} has {n_moe} MoE layers; "
                         f"pass 0..{n_moe - 1} (an index into routing.moe_layer_keys(model))")
    layer_index = int(layer_index)
    seed = _check_seed(seed)
    e = model.n_experts
    if spec.kind == "uniform":
        return np.full(e, 1.0 / e)
    if spec.kind == "zipf":
        return np.exp(_zipf_logprobs(e, spec.zipf_s, spec.permute, seed, layer_index))
    if spec.kind == "coactivation":
        c = spec.coactivation
        c = c[layer_index] if c.ndim == 3 else c
        m = c.sum(axis=1)
        return m / m.sum()
    return expert_load(spec.trace, e)[layer_index] / model.top_k


def _topk_gumbel(rng: np.random.Generator, e: int, logp: np.ndarray | None, n: int,
                 k: int) -> np.ndarray:
    """k distinct indices per row, sampled without replacement proportionally to p = exp(logp)
    (uniformly when ``logp`` is None), listed in the order successive draws would produce them.

    Gumbel-top-k: the k largest log p_e + G_e with G_e = -log(-log U_e), U_e uniform on [0, 1).
    Computed as exponential races, the k largest log(U_e) / p_e (the same order, one logarithm
    fewer), unless some p_e is too small for 1/p_e (zipf_s in the hundreds). For uniform p the
    order is that of U itself, so zipf with s = 0 reproduces uniform routing draw for draw."""
    keys = rng.random(size=(n, e))
    if logp is not None:
        with np.errstate(divide="ignore"):  # U = 0 gives a key of -inf: drawn last
            np.log(keys, out=keys)
            if logp.min() > _RACE_MIN_LOGP:  # 1 / p_e representable
                keys *= np.exp(-logp)
            else:
                np.negative(keys, out=keys)
                np.log(keys, out=keys)
                np.subtract(logp, keys, out=keys)
    return _top_k_desc(keys, k)


def _top_k_desc_numpy(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest keys of each row, largest first: a partition, then a stable sort
    of the k (the definition :func:`_top_k_desc` follows; ties keep numpy's partition order)."""
    n, e = keys.shape
    if k < e:
        part = np.argpartition(keys, e - k, axis=1)[:, e - k:]
    else:
        part = np.broadcast_to(np.arange(e), (n, e))
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _top_k_scan_py(keys, k, out, tied):
    """Row by row, the k largest keys (largest first) by one scan that keeps the k + 1 largest
    seen so far in a sorted buffer (the (k+1)-th tells whether the k-th is tied with the next);
    ``tied[r]`` is set where two of those k + 1 are equal, so that the order depends on how ties
    are broken and the row is left to :func:`_top_k_desc_numpy` (rows holding a NaN as well:
    the caller marks them)."""
    n, e = keys.shape
    kk = k + 1 if k < e else k
    bv = np.empty(kk, np.float64)
    bi = np.empty(kk, np.int64)
    for r in range(n):
        for x in range(kk):  # the first kk keys, sorted
            v = keys[r, x]
            i = x
            while i > 0 and bv[i - 1] < v:
                bv[i] = bv[i - 1]
                bi[i] = bi[i - 1]
                i -= 1
            bv[i] = v
            bi[i] = x
        thr = bv[kk - 1]
        for x in range(kk, e):  # the rest: most fall below the kk-th largest so far
            v = keys[r, x]
            if v > thr:
                i = kk - 1
                while i > 0 and bv[i - 1] < v:
                    bv[i] = bv[i - 1]
                    bi[i] = bi[i - 1]
                    i -= 1
                bv[i] = v
                bi[i] = x
                thr = bv[kk - 1]
        bad = False
        for i in range(kk - 1):
            if bv[i] == bv[i + 1]:
                bad = True
        tied[r] = bad
        for i in range(k):
            out[r, i] = bi[i]


_top_k_scan = None
"""The compiled :func:`_top_k_scan_py` (numba), compiled on first use; False without numba."""


def _top_k_desc(keys: np.ndarray, k: int) -> np.ndarray:
    """:func:`_top_k_desc_numpy`, faster: a compiled scan per row (no partition of every row),
    the rows whose k + 1 largest keys hold a tie (whose result depends on how ties are broken)
    redone by :func:`_top_k_desc_numpy` on those rows alone (numpy partitions each row on its
    own, so a row's result does not depend on the other rows). Identical results; without
    numba the numpy path."""
    global _top_k_scan
    if _top_k_scan is None:
        try:
            import numba
            _top_k_scan = numba.njit(cache=True, nogil=True)(_top_k_scan_py)
        except ImportError:  # pragma: no cover - numba is a pinned dependency
            _top_k_scan = False
    n, e = keys.shape
    if _top_k_scan is False or n == 0 or k == 0:
        return _top_k_desc_numpy(keys, k)
    out = np.empty((n, k), dtype=np.int64)
    tied = np.zeros(n, dtype=np.bool_)
    keys = np.ascontiguousarray(keys, dtype=np.float64)
    _top_k_scan(keys, int(k), out, tied)
    nan = np.isnan(keys)
    if nan.any():  # NaN keys have no order: numpy's
        tied |= nan.any(axis=1)
    if tied.any():
        out[tied] = _top_k_desc_numpy(keys[tied], k)
    return out


def _pick(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One index per row of non-negative weights ``w`` (n, E), by inverse CDF with uniforms
    ``u`` (n,) in [0, 1): the first index whose cumulative weight exceeds u x total. Every row must
    have a positive total; an index of zero weight is never returned."""
    cw = np.cumsum(w, axis=1)
    idx = np.count_nonzero(cw <= (u * cw[:, -1])[:, None], axis=1)
    over = idx >= w.shape[1]  # u x total rounded up to the total: take the last positive weight
    if np.any(over):
        idx[over] = w.shape[1] - 1 - np.argmax(w[over, ::-1] > 0, axis=1)
    return idx


def _coactivation_sample(rng: np.random.Generator, c: np.ndarray, n: int, k: int) -> np.ndarray:
    e = c.shape[0]
    u = rng.random(size=(n, max(k - 1, 1)))
    marg = c.sum(axis=1)
    out = np.empty((n, k), dtype=np.int64)
    if k == 1:
        out[:, 0] = _pick(u[:, 0], np.broadcast_to(marg, (n, e)))
        return out
    cdf = np.cumsum(c.ravel())
    flat = np.searchsorted(cdf, u[:, 0] * cdf[-1], side="right")
    # u x total rounded up to the total: take the last pair of positive density
    flat = np.minimum(flat, np.flatnonzero(c.ravel() > 0)[-1])
    out[:, 0], out[:, 1] = flat // e, flat % e
    rows = np.arange(n)
    w = c[out[:, 0]] + c[out[:, 1]]
    for s in range(2, k):
        w[rows[:, None], out[:, :s]] = 0.0
        dead = w.sum(axis=1) <= 0.0
        ws = w
        if np.any(dead):  # no pair density with the chosen ones left: draw from the marginal
            wd = np.broadcast_to(marg, (int(dead.sum()), e)).copy()
            wd[np.arange(wd.shape[0])[:, None], out[dead, :s]] = 0.0
            ws = w.copy()
            ws[dead] = wd
        out[:, s] = _pick(u[:, s - 1], ws)
        w += c[out[:, s]]
    return out


_MAX_ROUTED_ENTRIES = 2**31
"""Most expert ids :func:`route` returns in one call (4 GiB as int16)."""


def route(model: ModelSpec, n_tokens: int, spec="uniform", seed: int = 0) -> np.ndarray:
    """Routing decisions of ``n_tokens`` tokens through every MoE layer of ``model``.

    Returns an int array of shape ``(n_tokens, n_moe_layers, top_k)`` (int16 when the expert ids
    fit, else int32): row ``[t, l]`` holds the k distinct experts token t uses in the l-th MoE
    layer (order of :func:`moe_layer_keys`: encoder MoE layers first). Deterministic per ``seed``
    and prefix-stable (see the module docstring). ``spec`` is a kind name (``'uniform'``,
    ``'zipf'`` with s = 1) or a :class:`RoutingSpec`.

    Procedures, per token and MoE layer:

    * uniform / zipf: the k largest of log p_e + G_e (G_e i.i.d. standard Gumbel; Gumbel-top-k,
      computed as exponential races), i.e. k draws without replacement, each proportional to p
      among the experts not yet drawn; ``p`` from :func:`expert_probs`. Experts are listed in
      draw order. Zipf with s = 0 gives exactly the uniform routing of the same seed.
    * coactivation with density C of the layer: k = 1: one expert from the marginal
      m_e = sum_j C[e, j]. k >= 2: an ordered pair (i, j) with probability C[i, j] (so the
      unordered pair {i, j} with C[i, j] + C[j, i]); then, while fewer than k experts are chosen,
      one more expert e not yet chosen with probability proportional to sum_{c chosen} C[c, e];
      if that sum is zero for every unchosen expert, from the marginal m restricted to the
      unchosen experts. For k = 2 the expected pair frequencies equal C exactly; for k > 2 pairs
      follow C only approximately (the procedure favours experts that pair with many chosen ones).
    * trace: token t uses row ``t mod len(trace)`` of the recorded trace (cyclic replay; ``seed``
      is ignored).

    A dense model raises ValueError.
    """
    spec = _as_spec(spec).validate(model)
    n_moe = len(moe_layer_keys(model))
    e, k = model.n_experts, model.top_k
    n = checks.integer("", "n_tokens", n_tokens, minimum=0,
                       maximum=_MAX_ROUTED_ENTRIES // max(1, n_moe * k),
                       fix="pass the number of tokens to route (the result holds n_tokens x "
                           f"{n_moe} MoE layers x top_k={k} expert ids, at most "
                           f"{_MAX_ROUTED_ENTRIES:,}; route is prefix-stable, so route fewer "
                           "tokens at a time)")
    seed = _check_seed(seed)
    dtype = np.int16 if e <= np.iinfo(np.int16).max + 1 else np.int32
    if spec.kind == "trace":
        t = spec.trace
        return t[np.arange(n) % t.shape[0]].astype(dtype)

    out = np.empty((n, n_moe, k), dtype=dtype)
    chunk = max(1, _CHUNK_ELEMENTS // e)
    for layer in range(n_moe):
        rng = _stream(seed, 0, layer)
        if spec.kind == "coactivation":
            c = spec.coactivation[layer] if spec.coactivation.ndim == 3 else spec.coactivation
        else:
            logp = None if spec.kind == "uniform" else \
                _zipf_logprobs(e, spec.zipf_s, spec.permute, seed, layer)
        for start in range(0, n, chunk):  # tokens in order from the layer's stream
            m = min(chunk, n - start)
            out[start:start + m, layer] = (_coactivation_sample(rng, c, m, k)
                                           if spec.kind == "coactivation"
                                           else _topk_gumbel(rng, e, logp, m, k))
    return out


# ----------------------------------------------------------------------------- statistics
def _check_stats_input(choices, n_experts, what="choices", owner="",
                       per_expert=lambda a: 1) -> tuple[np.ndarray, int]:
    """(choices as checked int32 array, n_experts as an int); ``per_expert(a)`` is how many
    result values each expert adds (bounded by :data:`MAX_RESULT_VALUES`)."""
    a = _check_choices(choices, what)
    n_experts = _check_n_experts(owner, n_experts, per_expert(a))
    if a.max() >= n_experts:
        raise ValueError(f"{what}={_short(a)}: expert id {int(a.max())} is out of range for "
                         f"n_experts={n_experts}; pass the model's n_experts")
    return a, n_experts


def expert_load(choices, n_experts: int) -> np.ndarray:
    """Fraction of tokens routed to each expert, shape ``(n_moe_layers, n_experts)``; each row
    sums to k (every token uses k experts). Uniform routing gives k/E everywhere."""
    a, n_experts = _check_stats_input(choices, n_experts, owner="",
                                      per_expert=lambda a: a.shape[1])
    n, n_moe, _ = a.shape
    flat = (a + (np.arange(n_moe) * n_experts)[None, :, None]).ravel()
    counts = np.bincount(flat, minlength=n_moe * n_experts).reshape(n_moe, n_experts)
    return counts / n


def coactivation_density(choices, n_experts: int) -> np.ndarray:
    """Empirical pair density of co-selected experts, shape ``(n_moe_layers, E, E)``: every token
    adds its k(k-1)/2 unordered pairs {i, j}, half to [i, j] and half to [j, i]; each layer is
    normalised to sum 1. Symmetric with a zero diagonal: the input :func:`route` and
    ``mapping.map_model(..., 'coactivation', coactivation=...)`` take. k = 1 has no pairs and
    raises ValueError."""
    a, n_experts = _check_stats_input(choices, n_experts, owner="",
                                      per_expert=lambda a: a.shape[1])
    n, n_moe, k = a.shape
    if n_moe * n_experts * n_experts > MAX_RESULT_VALUES:
        raise ValueError(f"coactivation_density(n_experts={n_experts}): the density would hold "
                         f"{n_moe} MoE layers x {n_experts}^2 = {n_moe * n_experts**2:,} values, "
                         f"more than MAX_RESULT_VALUES={MAX_RESULT_VALUES:,}; pass the model's "
                         "n_experts")
    if k < 2:
        raise ValueError(f"choices={_short(a)}: k=1 expert per token has no pairs of co-selected "
                         "experts; a co-activation density needs top_k >= 2 (use expert_load)")
    e = n_experts
    base = (np.arange(n_moe) * e * e)[None, :]
    idx = [base + a[:, :, i].astype(np.int64) * e + a[:, :, j]
           for i in range(k) for j in range(k) if i != j]
    counts = np.bincount(np.concatenate([x.ravel() for x in idx]),
                         minlength=n_moe * e * e).reshape(n_moe, e, e).astype(float)
    return counts / counts.sum(axis=(1, 2), keepdims=True)


def distinct_experts_expected(n_experts: int, top_k: int, batch):
    """Expected number of distinct experts that a batch of B tokens touches in one MoE layer
    under uniform routing: E · (1 - (1 - k/E)^B).

    The classical occupancy result (linearity of expectation): a uniform k-subset misses a given
    expert with probability 1 - k/E, B independent tokens all miss it with probability
    (1 - k/E)^B. B = 1 gives k; B -> infinity gives E. ``batch`` may be an array or ``np.inf``;
    returns a float (or an array of the shape of ``batch``).
    """
    n_experts = checks.integer("", "n_experts", n_experts, minimum=1, maximum=checks.INT32_MAX,
                               fix="pass the model's n_experts")
    top_k = checks.integer("", "top_k", top_k, minimum=1, fix="pass the model's top_k")
    if top_k > n_experts:
        raise ValueError(f"top_k={top_k!r}: must be <= n_experts={n_experts}; pass the model's "
                         "top_k and n_experts")
    b = _check_batch_sizes(batch)
    out = n_experts * (1.0 - np.power(1.0 - top_k / n_experts, b))
    return float(out) if out.ndim == 0 else out


def _check_batch_sizes(batch) -> np.ndarray:
    """``batch`` of :func:`distinct_experts_expected` as a float array: numbers >= 0 (np.inf
    allowed), no bools or strings, also inside a list."""
    def bad(why: str) -> ValueError:
        shown = _short(batch) if isinstance(batch, np.ndarray) else repr(batch)
        return ValueError(f"batch={shown}: must be >= 0 (tokens per batch; np.inf allowed){why}; "
                          "pass a number of tokens or an array of them")
    if isinstance(batch, str | bytes) or batch is None:
        raise bad(f" (got {type(batch).__name__})")
    if isinstance(batch, list | tuple):  # each entry checked: no bools or strings in a list
        for v in np.asarray(batch, dtype=object).ravel():
            if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
                raise bad(f" (it holds {v!r})")
    try:
        b = np.asarray(batch)
    except (ValueError, TypeError):
        raise bad(" (not a rectangular array)") from None
    if b.dtype.kind not in "iuf":
        raise bad(f" (got {type(batch).__name__}" + (f" of {b.dtype}" if b.ndim else "") + ")")
    b = b.astype(float)
    if np.any(np.isnan(b)) or np.any(b < 0):
        raise bad("")
    return b


def distinct_experts(choices, batch: int, n_experts: int | None = None) -> np.ndarray:
    """Number of distinct experts each batch of ``batch`` consecutive tokens touches, per MoE layer:
    an int array of shape ``(n_tokens // batch, n_moe_layers)`` (a trailing partial batch is left
    out). Compare its mean with :func:`distinct_experts_expected`."""
    a = _check_choices(choices, "choices")
    if n_experts is None:
        n_experts = int(a.max()) + 1
    batch = checks.integer("", "batch", batch, minimum=1, fix="pass the tokens per batch")
    a, n_experts = _check_stats_input(
        a, n_experts, owner="",
        per_expert=lambda a: max(1, a.shape[0] // batch) * a.shape[1])
    n, n_moe, k = a.shape
    nb = n // batch
    if nb == 0:
        raise ValueError(f"batch={batch!r}: larger than the {n} tokens of choices; "
                         f"use batch <= {n}")
    a = a[:nb * batch].reshape(nb, batch, n_moe, k)
    seen = np.zeros((nb, n_moe, n_experts), dtype=bool)
    bi = np.arange(nb)[:, None, None, None]
    li = np.arange(n_moe)[None, None, :, None]
    seen[bi, li, a] = True
    return seen.sum(axis=2)


# ----------------------------------------------------------------------------- traces on disk
class Trace(NamedTuple):
    """A routing trace read by :func:`load_trace`."""

    choices: np.ndarray
    """(n_tokens, n_moe_layers, top_k) expert ids (read-only int32)."""
    model_name: str
    """Name of the model the trace was recorded with."""


def save_trace(path, choices, model_name) -> Path:
    """Write a routing trace with ``np.savez_compressed``: arrays ``choices`` (int16/int32),
    ``model_name`` and ``format``. ``model_name`` may be a ModelSpec (its name is stored and the
    trace is checked against it). Returns the path written (numpy adds ``.npz`` if missing).

    ``path`` is a file in an existing folder (not a folder itself); what cannot be written is
    refused with a ValueError naming the path."""
    if isinstance(model_name, ModelSpec):
        model = model_name
        a = _check_choices(choices, "choices")
        _check_choices_fit(a, model, "choices", _check_model(model))
        model_name = model.name
    else:
        a = _check_choices(choices, "choices")
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name={model_name!r}: must be a non-empty string; pass the name "
                         "of the model the trace was recorded with")
    path = checks.path("save_trace()", "path", path, kind="new_file",
                       fix="pass a file path such as 'trace.npz' in an existing folder")
    if path.suffix != ".npz":
        path = checks.path("save_trace()", "path", path.with_name(path.name + ".npz"),
                           kind="new_file", fix="numpy adds .npz to the name; pass a free name")
    dtype = np.int16 if a.max() <= np.iinfo(np.int16).max else np.int32
    try:
        np.savez_compressed(path, choices=a.astype(dtype), model_name=np.array(model_name),
                            format=np.array(_TRACE_FORMAT))
    except OSError as e:
        raise ValueError(f"save_trace(path={str(path)!r}): cannot be written ({e}); pass a "
                         "writable file path") from e
    return path


def load_trace(path, model: ModelSpec | None = None, *, check_name: bool = True) -> Trace:
    """Read a trace written by :func:`save_trace`.

    With ``model``, the trace must fit it (MoE layers, top_k, expert ids) and, unless
    ``check_name=False``, have been recorded with a model of the same name (case-insensitive).
    Use ``RoutingSpec(kind='trace', trace=load_trace(p, model).choices)`` to replay it.

    A folder, a missing file (:class:`~aimoe_lib.checks.MissingPathError`, also a
    FileNotFoundError) or a file that is not such a trace raises ValueError naming the path.
    """
    path = checks.path("load_trace()", "path", path, kind="file",
                       fix="pass the .npz file written by routing.save_trace")
    if model is not None:
        checks.instance("load_trace()", "model", model, ModelSpec,
                        fix="pass the models.ModelSpec the trace was recorded with, or None")
    check_name = checks.boolean("load_trace()", "check_name", check_name)
    where = f"load_trace(path={str(path)!r})"
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("a single array (.npy), not an .npz archive of arrays")
        with f:
            missing = {"choices", "model_name"} - set(f.files)
            if missing:
                raise ValueError(f"missing {', '.join(sorted(missing))}")
            fmt = _member(f, "format") if "format" in f.files else np.array(_TRACE_FORMAT)
            if fmt.ndim != 0 or fmt.dtype.kind not in "iu":
                raise ValueError(f"format is {_short(fmt)}, not a version number")
            fmt = int(fmt)
            if fmt > _TRACE_FORMAT:
                raise _NewerFormat(f"{where}: trace format {fmt} is newer than this library "
                                   f"reads ({_TRACE_FORMAT}); update aimoe_lib")
            name = _member(f, "model_name")
            if name.ndim != 0 or name.dtype.kind != "U":
                raise ValueError(f"model_name is {_short(name)}, not a name")
            name = str(name)
            raw = _member(f, "choices")
    except _NewerFormat:
        raise
    except (OSError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where}: not a routing trace ({e}); write traces with "
                         "routing.save_trace") from None
    a = _check_choices(raw, f"trace {str(path)!r}")
    if model is not None:
        _check_choices_fit(a, model, f"trace {str(path)!r}", _check_model(model))
        if check_name and name.lower() != model.name.lower():
            raise ValueError(f"trace {str(path)!r} was recorded with model_name={name!r}, not "
                             f"{model.name!r}; pass the matching model or check_name=False")
    return Trace(a, name)


def _member(f, key: str) -> np.ndarray:
    """Array ``key`` of an opened .npz; numpy hands back raw bytes for a member that is not an
    .npy array, refused here."""
    a = f[key]
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{key} is not an array")
    return a


class _NewerFormat(ValueError):
    """A trace written by a newer library (passed through load_trace's catch-all)."""
