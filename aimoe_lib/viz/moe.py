"""Figures and tables of chapter 2 (mixture of experts): total against active parameters of the
published models, how both grow with the number of experts, and a toy router.

Tables: :func:`params_table` (with :func:`format_params_table`) and :func:`published_table`;
figures: :func:`total_vs_active`, :func:`moe_scaling` (and :func:`moe_scaling_slider`, the same
figure precomputed over a grid for the static book) and :func:`routing_example` (over
:func:`toy_router`). Every figure is drawn in the house style of :mod:`aimoe_lib.viz.style`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .. import zoo
from ..models import ModelSpec
from .static import StaticSlider, static_slider
from .style import C_ACTIVE, C_DENSE, C_MOE, FONT_SIZE, figure, finish, table

__all__ = ["ParamRow", "params_table", "format_params_table", "published_table",
           "total_vs_active", "moe_scaling", "TOP_K_GRID", "EXPERT_WIDTH_GRID",
           "moe_scaling_slider", "RouterSample", "toy_router", "routing_example"]


@dataclass(frozen=True)
class ParamRow:
    """One model's parameter counts, embeddings and LM head included (Mixtral's convention)."""

    name: str
    """Zoo name."""
    family: str
    """Zoo family."""
    is_moe: bool
    """Mixture of experts?"""
    experts: str
    """'dense', or 'E top-k (+ s shared)'."""
    total: int
    """All parameters."""
    active: int
    """Parameters one token uses."""

    @property
    def ratio(self) -> float:
        """total / active (1 for dense models)."""
        return self.total / self.active


def params_table(entries: Iterable[zoo.ZooEntry] | None = None) -> tuple[ParamRow, ...]:
    """Total and active parameters of every zoo model (or of ``entries``), in zoo order."""
    entries = zoo.entries() if entries is None else tuple(entries)
    rows = []
    for e in entries:
        s = e.spec
        experts = (f"{s.n_experts} top-{s.top_k}" + (f" + {s.n_shared_experts} shared"
                                                     if s.n_shared_experts else "")
                   if s.is_moe else "dense")
        rows.append(ParamRow(s.name, e.family, s.is_moe, experts, s.total_params, s.active_params))
    return tuple(rows)


def format_params_table(rows: Sequence[ParamRow]) -> str:
    """Aligned plain-text table: model, experts, total (B), active (B), total / active."""
    body = [[r.name, r.experts, f"{r.total / 1e9:.2f}", f"{r.active / 1e9:.2f}", f"{r.ratio:.1f}"]
            for r in rows]
    return table(["model", "experts", "total (B)", "active (B)", "total/active"], body,
                 [False, False, True, True, True])


_UNIT = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def published_table(entries: Iterable[zoo.ZooEntry] | None = None, moe_only: bool = False) -> str:
    """Aligned plain-text table: every published figure next to our count in the vendor's
    convention.

    Columns: model, quantity (total / active), the figure as printed, our count in the same
    convention and unit (2 decimals), whether our count rounds to the printed figure (otherwise
    its distance from the figure's rounding interval,
    :meth:`~aimoe_lib.zoo.Published.relative_error`), and the convention.
    """
    entries = zoo.entries() if entries is None else tuple(entries)
    body = []
    for e in entries:
        if moe_only and not e.spec.is_moe:
            continue
        for p in e.published:
            ours = e.count(p)
            err = p.relative_error(ours)
            unit = p.figure[-1]
            body.append([e.spec.name, p.quantity, p.figure, f"{ours / _UNIT[unit]:.2f}{unit}",
                         "yes" if err == 0 else f"{err:.1%} off", p.convention.label])
    return table(["model", "quantity", "published", "ours", "rounds to it", "convention"], body,
                 [False, False, True, True, False, False])


def total_vs_active(entries: Iterable[zoo.ZooEntry] | None = None) -> Figure:
    """Total vs active parameters (billions, log scale) of every zoo model, one row per model.

    Each row joins the active count (what one token uses) to the total (what the chip must hold);
    a dense model is one dot, an MoE a bar whose length on the log axis is total / active (printed).
    Rows are sorted by total parameters; counts include embedding and LM head.
    """
    rows = sorted(params_table(entries), key=lambda r: r.total)
    if not rows:
        raise ValueError("total_vs_active(entries=()): give at least one zoo entry")
    y = np.arange(len(rows))
    tot = np.array([r.total for r in rows]) / 1e9
    act = np.array([r.active for r in rows]) / 1e9

    fig = figure(10.0, 0.32 * len(rows) + 1.9)
    ax = fig.subplots()
    for yi, r, t, a in zip(y, rows, tot, act, strict=True):
        c = C_MOE if r.is_moe else C_DENSE
        ax.plot([a, t], [yi, yi], color=c, lw=3, alpha=0.5, solid_capstyle="round")
        ax.plot(t, yi, "o", color=c, ms=6)
        ax.plot(a, yi, "o", mfc="none", mec=C_ACTIVE, mew=2, ms=10)
        label = f"{r.experts}: {t / a:.1f}x" if r.is_moe else "dense"
        ax.text(t * 1.25, yi, label, va="center", fontsize=FONT_SIZE - 2, color=c)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xscale("log")
    ax.set_xlim(act.min() / 2, tot.max() * 20)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set(xlabel="parameters (billions, log scale)", ylabel="model (sorted by total)")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.plot([], [], "o", color=C_DENSE, label="total, dense")
    ax.plot([], [], "o", color=C_MOE, label="total, MoE")
    ax.plot([], [], "o", mfc="none", mec=C_ACTIVE, mew=2, ms=10, label="active (per token)")
    ax.legend(loc="upper right", fontsize=FONT_SIZE - 2)
    moe = [r for r in rows if r.is_moe]
    if moe:
        top = max(moe, key=lambda r: r.ratio)
        takeaway = (f"MoEs hold {min(r.ratio for r in moe):.1f}x to {top.ratio:.1f}x the "
                    f"parameters a token uses ({top.name}: {top.ratio:.1f}x); "
                    "dense models use all of theirs")
    else:
        takeaway = "dense models: every parameter is active for every token"
    return finish(fig, "Total vs active parameters of published models", takeaway)


def moe_scaling(d_model: int = 1024, n_layers: int = 12, d_expert: int = 4096, top_k: int = 2,
                max_experts: int = 64, n_heads: int = 16, vocab_size: int = 32000,
                ffn: str = "swiglu") -> Figure:
    """Total and active parameters as the number of experts E grows at fixed top-k.

    Builds one :class:`~aimoe_lib.models.ModelSpec` per E in k, 2k, 4k, ... ``max_experts``
    (every layer MoE, experts of width ``d_expert``), plus the dense model with one FFN of width
    ``d_expert`` as reference. Left: parameters (billions) against E; right: the fraction of the
    parameters one token uses.
    """
    if not 1 <= top_k <= max_experts:
        raise ValueError(f"moe_scaling(top_k={top_k!r}, max_experts={max_experts!r}): "
                         "need 1 <= top_k <= max_experts")
    es = []
    e = top_k
    while e < max_experts:
        es.append(e)
        e *= 2
    es.append(max_experts)
    base = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_expert,
                vocab_size=vocab_size, ffn=ffn, norm="rmsnorm")
    specs = [ModelSpec(name=f"moe-{e}x", n_experts=e, top_k=top_k, **base) for e in es]
    dense = ModelSpec(name="dense", **base)
    tot = np.array([s.total_params for s in specs]) / 1e9
    act = np.array([s.active_params for s in specs]) / 1e9
    x = np.array(es)

    fig = figure(10.5, 3.9)
    ax_p, ax_f = fig.subplots(1, 2)
    ax_p.plot(x, tot, "o-", color=C_MOE, label="total (chip must hold)")
    ax_p.plot(x, act, "o-", mfc="white", color=C_ACTIVE, label="active (one token uses)")
    ax_p.axhline(dense.total_params / 1e9, color=C_DENSE, ls="--", label="dense, one FFN")
    ax_p.set(xscale="log", yscale="log", xlabel=f"routed experts per layer, E (top-{top_k})",
             ylabel="parameters (billions)", title="Total grows, active stays")
    ax_f.plot(x, 100 * act / tot, "o-", color=C_ACTIVE)
    ax_f.set(xscale="log", ylim=(0, 105), xlabel=f"routed experts per layer, E (top-{top_k})",
             ylabel="active / total (%)", title="Share of the weights a token uses")
    for ax in (ax_p, ax_f):
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        if len(x) == 1:
            ax.set_xlim(x[0] / 2, x[0] * 2)
    ax_p.legend(fontsize=FONT_SIZE - 2)
    takeaway = (f"E = {es[0]} -> {es[-1]}: total {tot[0]:.2f}B -> {tot[-1]:.2f}B "
                f"({tot[-1] / tot[0]:.1f}x), active {act[0]:.3f}B -> {act[-1]:.3f}B "
                f"(+{100 * (act[-1] / act[0] - 1):.2f}%, the router)")
    return finish(fig, f"Adding experts at fixed k: d_model {d_model}, {n_layers} layers, "
                  f"experts of width {d_expert}", takeaway)


TOP_K_GRID = (1, 2, 4, 8)
"""Top-k values on the static slider: Switch (1), Mixtral (2), and two wider choices."""
EXPERT_WIDTH_GRID = (1024, 2048, 4096, 8192)
"""Expert widths (features) on the static slider: from fine-grained experts to wide ones."""


def moe_scaling_slider(d_model: int = 1024, n_layers: int = 12, max_experts: int = 64,
                       top_ks: Sequence[int] = TOP_K_GRID,
                       widths: Sequence[int] = EXPERT_WIDTH_GRID) -> StaticSlider:
    """:func:`moe_scaling` precomputed for the static book
    (:func:`~aimoe_lib.viz.static.static_slider`): one slider for top-k (``top_ks``, starts at
    2), one for the expert width (``widths``, starts at 4096)."""
    def draw(top_k: int, d_expert: int) -> Figure:
        return moe_scaling(d_model=d_model, n_layers=n_layers, d_expert=d_expert, top_k=top_k,
                           max_experts=max_experts)

    return static_slider(draw, {"top_k": top_ks, "d_expert": widths},
                         default={"top_k": 2, "d_expert": 4096},
                         labels={"top_k": "top-k", "d_expert": "expert width d_expert"})


@dataclass(frozen=True)
class RouterSample:
    """A toy router's decisions for a batch of tokens."""

    probs: np.ndarray
    """Softmax router probabilities, shape (n_tokens, n_experts)."""
    chosen: np.ndarray
    """Indices of the k chosen experts per token, best first, shape (n_tokens, top_k)."""
    gates: np.ndarray
    """Weights of the chosen experts, renormalised to sum to 1 per token, (n_tokens, top_k)."""

    @property
    def load(self) -> np.ndarray:
        """Tokens each expert receives, shape (n_experts,)."""
        return np.bincount(self.chosen.ravel(), minlength=self.probs.shape[1])


def toy_router(n_tokens: int = 16, n_experts: int = 8, top_k: int = 2,
               seed: int = 0) -> RouterSample:
    """A seeded toy router: standard-normal logits -> softmax -> top-k -> gates renormalised
    over the k.

    Stands in for a trained router's linear layer (d_model -> E) so that the mechanics are visible;
    real routers are skewed (chapter on routing skew). Uses ``numpy.random.default_rng(seed)``;
    ties are broken towards the lower expert index.
    """
    for name, v in (("n_tokens", n_tokens), ("n_experts", n_experts), ("top_k", top_k)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"toy_router({name}={v!r}): must be an integer >= 1")
    if top_k > n_experts:
        raise ValueError(f"toy_router(top_k={top_k}, n_experts={n_experts}): a token picks k of E "
                         "experts, so top_k <= n_experts")
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_tokens, n_experts))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    chosen = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    picked = np.take_along_axis(probs, chosen, axis=1)
    return RouterSample(probs, chosen, picked / picked.sum(axis=1, keepdims=True))


def routing_example(n_tokens: int = 16, n_experts: int = 8, top_k: int = 2,
                    seed: int = 0) -> Figure:
    """The toy router (:func:`toy_router`) drawn: token x expert probabilities with the top-k
    picks marked, and the tokens each expert receives against the even share n_tokens x k / E."""
    r = toy_router(n_tokens, n_experts, top_k, seed)
    load = r.load
    mean = n_tokens * top_k / n_experts

    fig = figure(10.5, min(6.5, max(3.6, 0.22 * n_tokens + 1.8)))
    ax_h, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1.0]})
    im = ax_h.imshow(r.probs, aspect="auto", cmap="Blues", vmin=0.0,
                     vmax=float(r.probs.max()), interpolation="nearest")
    tok = np.repeat(np.arange(n_tokens), top_k)
    size = max(8.0, 640.0 / max(n_tokens, n_experts))  # marker area, points²
    ax_h.scatter(r.chosen.ravel(), tok, marker="o", s=size, facecolors="none",
                 edgecolors="tab:red", linewidths=1.5)
    fig.colorbar(im, ax=ax_h, label="router probability (softmax, 0-1)", shrink=0.9)
    ax_h.set(xlabel="expert (index)", ylabel="token (index)",
             title=f"Each token picks {top_k} of {n_experts} experts (red circles)")
    if n_experts <= 32:
        ax_h.set_xticks(range(n_experts))
    if n_tokens <= 32:
        ax_h.set_yticks(range(n_tokens))
    ax_l.bar(np.arange(n_experts), load, color=C_MOE)
    ax_l.axhline(mean, color="k", ls="--", lw=1, label=f"even share {mean:.1f}")
    ax_l.set(xlabel="expert (index)", ylabel="tokens routed to it (count)",
             title="Load per expert")
    if n_experts <= 32:
        ax_l.set_xticks(range(n_experts))
    ax_l.legend(fontsize=FONT_SIZE - 2)
    takeaway = (f"{n_tokens} tokens x top-{top_k} = {n_tokens * top_k} expert calls; loads range "
                f"{load.min()}-{load.max()} tokens against an even {mean:.1f} (seed {seed})")
    return finish(fig, "A toy router: softmax over random logits, then top-k", takeaway)
