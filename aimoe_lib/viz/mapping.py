"""Figures and tables of chapter 3 (mapping): how a model's matrices are cut into tier-sized
blocks and where the strategies of :func:`~aimoe_lib.mapping.map_model` put them.

Figures: :func:`tiling_example` (with :func:`tiling_stats`), :func:`occupancy_map`,
:func:`occupancy_maps` (aggregated by :func:`bin_dominant` when the chip is large),
:func:`matrix_placement` and :func:`strategy_comparison` (with :func:`~aimoe_lib.experiments.strategy_table` and
:func:`format_strategy_table`). :func:`~aimoe_lib.routing.coactivation_from_probs` turns routing probabilities into
the pair density the ``coactivation`` strategy plans with. The chips come from
:func:`~aimoe_lib.mapping.fitting_chip`, the skewed routing from
:func:`~aimoe_lib.routing.zipf_probs` and the small MoE from
:func:`~aimoe_lib.teaching.mapping_moe`. Every figure is drawn in the house style of
:mod:`aimoe_lib.viz.style`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..experiments import ZIPF_S, strategy_table
from ..hardware import ChipConfig
from ..mapping import STRATEGIES, Mapping
from ..models import ModelSpec, Role
from .style import C_2D, C_3D, C_ACTIVE, C_DENSE, C_MOE, FONT_SIZE, figure, finish, palette, table

__all__ = ["OCCUPANCY_COLOR_BY", "MAX_TIERS_SHOWN", 
           "bin_dominant", "occupancy_map", "occupancy_maps", "TilingStats", "tiling_stats",
           "tiling_example", "matrix_placement", "format_strategy_table",
           "strategy_comparison"]

OCCUPANCY_COLOR_BY = ("layer", "expert", "role")
"""What :func:`occupancy_map` can colour the tiers by."""

MAX_TIERS_SHOWN = 256
"""Above this many tiers per tile, :func:`occupancy_map` bins consecutive tiers (dominant
category per bin)."""

C_EMPTY = "white"
C_OTHER = "0.35"  # LM head / matrices that are not routed experts


# -- occupancy -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Categories:
    """Colour classes of an occupancy map: the class of every analog matrix, then labels and
    colours of every class; the last class is 'empty'."""

    of_matrix: np.ndarray
    labels: tuple[str, ...]
    colors: tuple

    @property
    def empty(self) -> int:
        return len(self.labels) - 1


def _categories(mapping: Mapping, color_by: str) -> _Categories:
    model = mapping.model
    if color_by == "layer":
        n = model.n_layers + model.n_encoder_layers
        lay = mapping.matrix_layer
        of = np.where(lay >= 0, lay, n)
        labels = [f"layer {i}" for i in range(n)] + ["LM head"]
        colors = palette(n) + [C_OTHER]
    elif color_by == "expert":
        e = model.n_experts
        ex = mapping.matrix_expert
        of = np.where(ex >= 0, ex, e)
        labels = [f"expert {i}" for i in range(e)] + ["not a routed expert"]
        colors = palette(e) + [C_OTHER]
    elif color_by == "role":
        present = [r for r in Role if any(m.role is r for m in mapping.matrices)]
        idx = {r: i for i, r in enumerate(present)}
        of = np.array([idx[m.role] for m in mapping.matrices], dtype=np.int64)
        labels = [r.value for r in present]
        colors = palette(len(present))
    else:
        raise ValueError(f"color_by={color_by!r}: choose one of {', '.join(OCCUPANCY_COLOR_BY)}")
    return _Categories(np.asarray(of, dtype=np.int64), tuple(labels) + ("empty",),
                       tuple(colors) + (C_EMPTY,))


def bin_dominant(codes, tiles_per_bin: int = 1, tiers_per_bin: int = 1) -> np.ndarray:
    """Aggregate an (n_tiles, n_tiers) grid of non-negative category codes into bins of
    ``tiles_per_bin`` x ``tiers_per_bin`` cells, keeping the most frequent code of each bin (ties go
    to the smaller code). The last bin along an axis may be partial. Returns an array of shape
    (ceil(n_tiles / tiles_per_bin), ceil(n_tiers / tiers_per_bin))."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size == 0 or codes.min() < 0:
        raise ValueError("bin_dominant(codes): need a non-empty 2-D grid of codes >= 0")
    for name, v in (("tiles_per_bin", tiles_per_bin), ("tiers_per_bin", tiers_per_bin)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bin_dominant({name}={v!r}): must be an integer >= 1")
    if tiles_per_bin == 1 and tiers_per_bin == 1:
        return codes.copy()
    n_t, n_l = codes.shape
    nb_t, nb_l = -(-n_t // tiles_per_bin), -(-n_l // tiers_per_bin)
    n_codes = int(codes.max()) + 1
    bins = ((np.arange(n_t)[:, None] // tiles_per_bin) * nb_l
            + np.arange(n_l)[None, :] // tiers_per_bin)
    key = bins.astype(np.int64).ravel() * n_codes + codes.ravel()
    uniq, count = np.unique(key, return_counts=True)
    b, c = uniq // n_codes, uniq % n_codes
    order = np.lexsort((c, -count, b))  # per bin: highest count first, then smallest code
    first = order[np.r_[True, b[order][1:] != b[order][:-1]]]
    out = np.empty(nb_t * nb_l, dtype=codes.dtype)
    out[b[first]] = c[first]
    return out.reshape(nb_t, nb_l)


def _occupancy_codes(mapping: Mapping, cats: _Categories) -> np.ndarray:
    occ = mapping.occupancy()
    return np.where(occ >= 0, cats.of_matrix[np.maximum(occ, 0)], cats.empty)


def _bin_sizes(n_tiles: int, n_tiers: int, max_tiles: int, max_tiers: int) -> tuple[int, int]:
    for name, v in (("max_tiles", max_tiles), ("max_tiers", max_tiers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"occupancy_map({name}={v!r}): must be an integer >= 1")
    return (-(-n_tiles // max_tiles) if n_tiles > max_tiles else 1,
            -(-n_tiers // max_tiers) if n_tiers > max_tiers else 1)


def _draw_occupancy(ax, mapping: Mapping, cats: _Categories, max_tiles: int, max_tiers: int):
    """Occupancy image on ``ax``; returns (image, tiles per bin, tiers per bin)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n_t, n_l = mapping.chip.n_tiles, mapping.chip.n_tiers
    bt, bl = _bin_sizes(n_t, n_l, max_tiles, max_tiers)
    grid = bin_dominant(_occupancy_codes(mapping, cats), bt, bl)
    n_c = len(cats.labels)
    im = ax.imshow(grid.T, origin="lower", aspect="auto", interpolation="nearest",
                   cmap=ListedColormap(list(cats.colors)),
                   norm=BoundaryNorm(np.arange(n_c + 1) - 0.5, n_c),
                   extent=(-0.5, grid.shape[0] * bt - 0.5, -0.5, grid.shape[1] * bl - 0.5))
    ax.set_xlim(-0.5, n_t - 0.5)
    ax.set_ylim(-0.5, n_l - 0.5)
    if grid.shape[0] <= 128 and grid.shape[1] <= 64:  # thin cell borders where cells are visible
        ax.set_xticks(np.arange(grid.shape[0] + 1) * bt - 0.5, minor=True)
        ax.set_yticks(np.arange(grid.shape[1] + 1) * bl - 0.5, minor=True)
        ax.grid(True, which="minor", color="0.85", lw=0.4)
        ax.tick_params(which="minor", length=0)
    xl = "tile (index)" + (f"; a pixel is {bt} tiles" if bt > 1 else "")
    yl = "tier (index)" + (f"; a pixel is {bl} tiers" if bl > 1 else "")
    ax.set(xlabel=xl, ylabel=yl)
    return im, bt, bl


def _category_colorbar(fig: Figure, im, cats: _Categories, axes, label: str) -> None:
    """Colour bar of the categories; with many of them, thinned tick labels and a small legend
    for the two special classes (dark grey 'other' and white 'empty'), whose slivers are thin."""
    n_c = len(cats.labels)
    cb = fig.colorbar(im, ax=axes, pad=0.01, fraction=0.04, aspect=30)
    if n_c > 20:
        step = math.ceil((n_c - 2) / 12)
        ticks = list(range(0, n_c - 2, step))
        cb.ax.legend(handles=[Patch(facecolor=cats.colors[i], edgecolor="k", lw=0.5,
                                    label=cats.labels[i]) for i in (n_c - 2, n_c - 1)],
                     loc="lower left", bbox_to_anchor=(0.0, 1.005), fontsize=FONT_SIZE - 3,
                     frameon=False, borderaxespad=0.0, handlelength=1.0)
    else:
        ticks = list(range(n_c))
    cb.set_ticks(ticks, labels=[cats.labels[t] for t in ticks])
    cb.ax.tick_params(labelsize=FONT_SIZE - 2, length=0)
    cb.set_label(label, fontsize=FONT_SIZE - 1)


def _distinct_per_tile(tile: np.ndarray, key: np.ndarray, n_tiles: int) -> np.ndarray:
    """Number of distinct ``key`` values among the blocks of each tile (length n_tiles)."""
    if tile.size == 0:
        return np.zeros(n_tiles, dtype=np.int64)
    k = key.astype(np.int64) - int(key.min())
    span = int(k.max()) + 1
    uniq = np.unique(tile.astype(np.int64) * span + k)
    return np.bincount(uniq // span, minlength=n_tiles)


def _layers_per_tile(mapping: Mapping) -> np.ndarray:
    """Distinct layers (the LM head counts as one) with a block on each tile."""
    return _distinct_per_tile(mapping.tile, mapping.matrix_layer[mapping.block_matrix],
                              mapping.chip.n_tiles)


def _experts_per_tile_layer(mapping: Mapping) -> np.ndarray:
    """For every (tile, MoE layer) pair holding routed experts: how many distinct experts of that
    layer sit on the tile."""
    ex = mapping.matrix_expert[mapping.block_matrix]
    sel = ex >= 0
    if not np.any(sel):
        return np.zeros(0, dtype=np.int64)
    n_e = mapping.model.n_experts
    n_layers = mapping.model.n_layers + mapping.model.n_encoder_layers
    lay = mapping.matrix_layer[mapping.block_matrix][sel].astype(np.int64)
    pair = mapping.tile[sel].astype(np.int64) * n_layers + lay
    uniq = np.unique(pair * n_e + ex[sel])
    return np.bincount(uniq // n_e)[np.unique(pair)]


def _occupancy_takeaway(mapping: Mapping, color_by: str) -> str:
    if color_by == "layer":
        per_tile = _layers_per_tile(mapping)
        used = per_tile[per_tile > 0]
        tu = mapping.tiers_used[mapping.tiers_used > 0]
        return (f"{mapping.n_blocks:,} blocks on {used.size:,} tiles ({tu.min()}-{tu.max()} tiers "
                f"each); {int(np.sum(used >= 2)):,} tiles hold 2 or more layers (up to "
                f"{used.max()}), whose MVMs take turns on them")
    if color_by == "expert":
        if not mapping.model.is_moe:
            return f"{mapping.model.name} is dense: no routed experts"
        per = _experts_per_tile_layer(mapping)
        return (f"up to {per.max()} experts of one MoE layer share a tile (mean {per.mean():.1f} "
                f"where experts sit): a token that picks two of them on one tile waits")
    roles = np.array([m.is_routed_expert for m in mapping.matrices])[mapping.block_matrix]
    attn = np.array([m.role.is_attention for m in mapping.matrices])[mapping.block_matrix]
    n = max(mapping.n_blocks, 1)
    return (f"routed experts fill {roles.sum() / n:.0%} of the {mapping.n_blocks:,} occupied "
            f"tiers, attention {attn.sum() / n:.0%}, the rest (router, dense FFN, LM head) "
            f"{1 - (roles.sum() + attn.sum()) / n:.0%}")


def occupancy_map(mapping: Mapping, color_by: str = "layer", max_tiles: int = 256,
                  max_tiers: int = MAX_TIERS_SHOWN) -> Figure:
    """Tiles (x) by tiers (y) of a :class:`~aimoe_lib.mapping.Mapping`, each tier coloured by the
    layer, the routed expert or the role of the block it holds; empty tiers are white.

    ``color_by``: ``"layer"`` (global layer, encoder first; the LM head in dark grey), ``"expert"``
    (routed expert index within its layer; everything else dark grey) or ``"role"``
    (:class:`~aimoe_lib.models.Role`). With more than ``max_tiles`` tiles (or ``max_tiers`` tiers)
    consecutive tiles (tiers) are grouped into bins and each pixel shows the most frequent category
    of its bin, empty counted as a category (:func:`bin_dominant`); the title says so.
    """
    cats = _categories(mapping, color_by)
    chip = mapping.chip
    fig = figure(10.5, 3.9 if chip.n_tiers > 8 else 3.0)
    ax = fig.subplots()
    im, bt, bl = _draw_occupancy(ax, mapping, cats, max_tiles, max_tiers)
    _category_colorbar(fig, im, cats, ax, color_by)
    ax.set_title(f"strategy {mapping.strategy}: {mapping.n_blocks:,} blocks on "
                 f"{chip.tier_rows}x{chip.tier_cols} tiers, {mapping.tiles_used:,} tiles used, "
                 f"utilisation {mapping.utilisation:.0%}")
    title = (f"{mapping.model.name} on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers, by "
             f"{color_by}" + _binned_note(bt, bl))
    return finish(fig, title, _occupancy_takeaway(mapping, color_by))


def _binned_note(bt: int, bl: int) -> str:
    if bt == 1 and bl == 1:
        return ""
    return (f" (binned: dominant of {bt} tile{'s' if bt > 1 else ''} x {bl} "
            f"tier{'s' if bl > 1 else ''})")


def occupancy_maps(mappings: Sequence[Mapping], color_by: str = "layer", max_tiles: int = 256,
                   max_tiers: int = MAX_TIERS_SHOWN) -> Figure:
    """:func:`occupancy_map` of several mappings of the same model (e.g. one per strategy), one
    panel each, stacked, with one shared colour scale."""
    mappings = list(mappings)
    if not mappings:
        raise ValueError("occupancy_maps(mappings=[]): give at least one Mapping")
    model = mappings[0].model
    if any(m.model != model for m in mappings):
        raise ValueError("occupancy_maps: all mappings must be of the same model "
                         "(one colour scale)")
    cats = _categories(mappings[0], color_by)
    per_panel = 1.1 + (1.3 if max(m.chip.n_tiers for m in mappings) > 8 else 0.6)
    fig = figure(10.5, 1.0 + per_panel * len(mappings))
    axes = np.atleast_1d(fig.subplots(len(mappings), 1))
    stats, bins = [], (1, 1)
    for ax, m in zip(axes, mappings, strict=True):
        im, bt, bl = _draw_occupancy(ax, m, cats, max_tiles, max_tiers)
        bins = max(bins, (bt, bl))
        if color_by == "expert" and model.is_moe:
            v = int(_experts_per_tile_layer(m).max())
            stat = f"up to {v} experts of a layer per tile"
        elif color_by == "role":
            v = m.tiles_used
            stat = f"{v:,} tiles used"
        else:
            sharing = m.consecutive_layer_sharing()
            v = float(sharing.mean()) if sharing.size else 0.0
            per_tile = _layers_per_tile(m)
            stat = (f"consecutive layers share {v:.0%} of their tiles; "
                    f"{per_tile[per_tile > 0].mean():.1f} layers per tile")
        stats.append((m.strategy, v))
        ax.set_title(f"{m.strategy}: {stat}", loc="left")
    _category_colorbar(fig, im, cats, list(axes), color_by)
    if color_by == "layer":
        takeaway = ("share of layer l+1's tiles that also hold layer l: "
                    + ", ".join(f"{s} {v:.2f}" for s, v in stats))
    else:
        what = {"expert": "most experts of one layer on a tile", "role": "tiles used"}[color_by]
        takeaway = f"{what}: " + ", ".join(f"{s} {v:,}" for s, v in stats)
    chip = mappings[0].chip
    title = (f"Where {model.name}'s blocks land on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers,"
             f" by {color_by}" + _binned_note(*bins))
    return finish(fig, title, takeaway)


# -- one matrix ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TilingStats:
    """How one (in_features x out_features) matrix is cut into blocks of at most rows x cols."""

    row_blocks: int
    """ceil(in_features / rows): blocks along the input."""
    col_blocks: int
    """ceil(out_features / cols): blocks along the output."""
    full_blocks: int
    """Blocks that fill their whole tier."""
    weights: int
    """in_features x out_features."""
    cells: int
    """Crossbar cells of the occupied tiers: blocks x rows x cols."""

    @property
    def blocks(self) -> int:
        """Tiers occupied (= :func:`~aimoe_lib.mapping.blocks_of`)."""
        return self.row_blocks * self.col_blocks

    @property
    def partial_blocks(self) -> int:
        """Edge blocks that leave part of their tier empty."""
        return self.blocks - self.full_blocks

    @property
    def fill(self) -> float:
        """Fraction of the occupied tiers' cells holding a weight:
        in x out / (blocks x rows x cols)."""
        return self.weights / self.cells


def tiling_stats(in_features: int, out_features: int, rows: int = 512,
                 cols: int = 512) -> TilingStats:
    """Block counts and fill of one matrix on rows x cols tiers."""
    for name, v in (("in_features", in_features), ("out_features", out_features), ("rows", rows),
                    ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"tiling_stats({name}={v!r}): must be an integer >= 1")
    nr, nc = -(-in_features // rows), -(-out_features // cols)
    full = (in_features // rows) * (out_features // cols)
    return TilingStats(nr, nc, full, in_features * out_features, nr * nc * rows * cols)


def tiling_example(in_features: int = 2048, out_features: int = 768, rows: int = 512,
                   cols: int = 512) -> Figure:
    """One matrix cut into blocks of at most rows x cols, each block one tier.

    Drawn to scale: weights in blue, each tier's outline in black, the unused cells of partial edge
    blocks hatched red. The takeaway gives the fill fraction
    in x out / (blocks x rows x cols) (:func:`tiling_stats`).
    """
    st = tiling_stats(in_features, out_features, rows, cols)
    w_in, w_out = st.row_blocks * rows, st.col_blocks * cols
    ratio = w_in / w_out  # height / width of the drawing
    ax_h = float(np.clip(4.6 * min(ratio, 1.0), 2.0, 4.6))  # axes size in inches, to scale
    ax_w = float(np.clip(ax_h / ratio, 0.6, 7.5))
    fig = figure(max(8.5, ax_w + 3.4), ax_h + 1.7)
    ax = fig.subplots()
    ax.add_patch(Rectangle((0, 0), out_features, in_features, facecolor="tab:blue", alpha=0.45,
                           edgecolor="none"))
    label = st.blocks <= 64
    for i in range(st.row_blocks):
        for j in range(st.col_blocks):
            r = min(rows, in_features - i * rows)
            c = min(cols, out_features - j * cols)
            partial = r < rows or c < cols
            if partial:  # unused cells of this tier
                if c < cols:
                    ax.add_patch(Rectangle((j * cols + c, i * rows), cols - c, rows, fill=False,
                                           hatch="///", edgecolor="tab:red", lw=0))
                if r < rows:
                    ax.add_patch(Rectangle((j * cols, i * rows + r), c, rows - r, fill=False,
                                           hatch="///", edgecolor="tab:red", lw=0))
            ax.add_patch(Rectangle((j * cols, i * rows), cols, rows, fill=False,
                                   edgecolor="tab:red" if partial else "k",
                                   lw=1.6 if partial else 1.0))
            if label:
                ax.text(j * cols + cols / 2, i * rows + rows / 2,
                        f"block {i * st.col_blocks + j}\n{r}x{c}", ha="center", va="center",
                        fontsize=FONT_SIZE - 3)
    ax.set_xlim(0, w_out)
    ax.set_ylim(w_in, 0)
    to_scale = 0.25 <= ratio <= 8.0
    ax.set_aspect("equal" if to_scale else "auto")
    ax.set(xlabel=f"output feature (index; {cols} per tier)",
           ylabel=f"input feature (index; {rows} per tier)",
           title=f"{st.row_blocks} x {st.col_blocks} blocks, {st.partial_blocks} of them partial"
                 + ("" if to_scale else " (not to scale)"))
    ax.legend(handles=[Patch(facecolor="tab:blue", alpha=0.45, label="weights"),
                       Patch(facecolor="white", edgecolor="tab:red", hatch="///",
                             label="unused cells of a partial tier")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT_SIZE - 2)
    takeaway = (f"{in_features:,} x {out_features:,} weights on {rows}x{cols} tiers: "
                f"{st.blocks} blocks ({st.partial_blocks} partial), {st.weights:,} weights in "
                f"{st.cells:,} cells: fill {st.fill:.1%}")
    return finish(fig, f"Cutting a {in_features:,} x {out_features:,} matrix into "
                  f"{rows}x{cols} tiers", takeaway)


def matrix_placement(mapping: Mapping, name: str) -> Figure:
    """Where the blocks of one matrix landed: its block grid (row blocks x column blocks), each
    block coloured by its tile and annotated with (tile, tier), next to the number of its blocks on
    each tile. The busiest tile's count is the matrix's MVM depth
    (:meth:`~aimoe_lib.mapping.Mapping.mvm_depth`): blocks on one tile run one after another."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    b = mapping.blocks(name)
    m = mapping.matrices[mapping.matrix_index(name)]
    nr, nc = int(b["row_block"].max()) + 1, int(b["col_block"].max()) + 1
    tile_grid = np.empty((nr, nc), dtype=np.int64)
    tier_grid = np.empty((nr, nc), dtype=np.int64)
    tile_grid[b["row_block"], b["col_block"]] = b["tile"]
    tier_grid[b["row_block"], b["col_block"]] = b["tier"]
    tiles, per_tile = np.unique(b["tile"], return_counts=True)
    rank = np.searchsorted(tiles, tile_grid)
    depth = int(per_tile.max())
    lat = mapping.chip.cost.tier_mvm_latency_ns

    fig = figure(11.0, float(np.clip(1.8 + 0.45 * nr, 3.4, 6.5)))
    ax_g, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1.0]})
    colors = palette(len(tiles))
    im = ax_g.imshow(rank, cmap=ListedColormap(colors), aspect="auto", interpolation="nearest",
                     norm=BoundaryNorm(np.arange(len(tiles) + 1) - 0.5, len(tiles)))
    if nr * nc <= 96:
        for i in range(nr):
            for j in range(nc):
                ax_g.text(j, i, f"{tile_grid[i, j]},{tier_grid[i, j]}", ha="center",
                          va="center", fontsize=FONT_SIZE - 3 if nr * nc <= 48 else FONT_SIZE - 4)
    cb = fig.colorbar(im, ax=ax_g, pad=0.01)
    step = math.ceil(len(tiles) / 16)
    cb.set_ticks(range(0, len(tiles), step), labels=[str(t) for t in tiles[::step]])
    cb.set_label("tile (index)", fontsize=FONT_SIZE - 1)
    cb.ax.tick_params(labelsize=FONT_SIZE - 2)
    ax_g.set(xlabel=f"column block (outputs, {mapping.chip.tier_cols} per block)",
             ylabel=f"row block (inputs, {mapping.chip.tier_rows} per block)",
             title=f"{m.in_features:,} x {m.out_features:,} in {nr} x {nc} blocks; "
                   "text: tile,tier" if nr * nc <= 96 else
                   f"{m.in_features:,} x {m.out_features:,} in {nr} x {nc} blocks")
    if nc <= 32:
        ax_g.set_xticks(range(nc))
    if nr <= 32:
        ax_g.set_yticks(range(nr))
    x = np.arange(tiles.size)
    ax_b.bar(x, per_tile, color=colors)
    ax_b.axhline(depth, color="k", ls=":", lw=1)
    step = math.ceil(tiles.size / 16)
    ax_b.set_xticks(x[::step], [str(t) for t in tiles[::step]],
                    rotation=90 if tiles.size > 8 else 0)
    ax_b.set(xlabel="tile (index, only tiles holding this matrix)",
             ylabel="blocks on the tile (serial tier MVMs)",
             title=f"MVM depth {depth}: busiest tile")
    takeaway = (f"{name}: {per_tile.sum()} blocks on {tiles.size} tiles; the busiest holds "
                f"{depth}, so one MVM of this matrix takes {depth} x {lat:.4g} ns = "
                f"{depth * lat:,.0f} ns instead of {lat:.4g} ns on {per_tile.sum()} tiles")
    return finish(fig, f"Placement of one matrix ({mapping.strategy}, {mapping.model.name})",
                  takeaway)


# -- strategies ------------------------------------------------------------------------------
def format_strategy_table(rows: Sequence[dict]) -> str:
    """Aligned plain-text table of :func:`~aimoe_lib.experiments.strategy_table` rows (conflicts to 1 decimal)."""
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append([r["strategy"], "-", "-", "-", "-", "-", r["status"]])
            continue
        body.append([r["strategy"], f"{r['tiles_used']:,}", f"{r['max_tiers_per_tile']:,}",
                     f"{r['layer_sharing']:.2f}", f"{r['conflicts_uniform']:.1f}",
                     f"{r['conflicts_skewed']:.1f}", ""])
    return table(["strategy", "tiles", "max tiers", "layer sharing", "conflicts uniform",
                  "conflicts skewed", "note"], body,
                 [False, True, True, True, True, True, False])


def strategy_comparison(model: ModelSpec, chip: ChipConfig, strategies: Sequence[str] = STRATEGIES,
                        expert_probs=None, seed: int = 0, zipf_s: float = ZIPF_S,
                        n_tokens: int = 2000, digital=("embedding",)) -> Figure:
    """Mapping strategies side by side, as grouped bars over :func:`~aimoe_lib.experiments.strategy_table`.

    Three panels: how much of the chip a strategy uses (tiles holding blocks, and tiers on the
    fullest tile, both in % of the chip, absolute numbers on the bars); the tile sharing between
    consecutive layers; and the expected tier conflicts per token per MoE layer under uniform and
    skewed routing. A strategy that cannot map the model is marked 'does not fit' (or 'not
    applicable' for an expert strategy on a dense model).
    """
    rows = strategy_table(model, chip, strategies, expert_probs, seed, zipf_s, n_tokens,
                          digital)
    names = [r["strategy"] for r in rows]
    ok = [r for r in rows if r["status"] == "ok"]
    x = np.arange(len(rows))
    w = 0.38

    def values(key: str) -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)

    def grouped(ax, series, fmt) -> None:
        """series: (offset, values, colour, label, values printed on the bars)."""
        for off, vals, color, label, shown in series:
            ax.bar(x + off, np.nan_to_num(vals), width=w if len(series) > 1 else 0.6,
                   color=color, label=label)
            for xi, v, t in zip(x, vals, shown, strict=True):
                if np.isfinite(v):
                    ax.text(xi + off, v, fmt(t), ha="center", va="bottom",
                            fontsize=FONT_SIZE - 3)
        for xi, r in zip(x, rows, strict=True):
            if r["status"] != "ok":
                ax.text(xi, 0.02, r["status"], ha="center", va="bottom", rotation=90,
                        fontsize=FONT_SIZE - 2, transform=ax.get_xaxis_transform())

    fig = figure(12.0, 4.3)
    ax_u, ax_s, ax_c = fig.subplots(1, 3)
    tiles, tiers = values("tiles_used"), values("max_tiers_per_tile")
    grouped(ax_u, [(-w / 2, 100 * tiles / chip.n_tiles, C_3D, f"tiles used (of {chip.n_tiles:,})",
                    tiles),
                   (w / 2, 100 * tiers / chip.n_tiers, C_2D,
                    f"tiers on the fullest tile (of {chip.n_tiers:,})", tiers)],
            lambda v: f"{v:,.0f}")
    ax_u.set(ylim=(0, 135), ylabel="share of the chip (%)", title="How much of the chip is used")
    ax_u.legend(fontsize=FONT_SIZE - 3, loc="upper left")
    share = values("layer_sharing")
    grouped(ax_s, [(0.0, share, C_DENSE, None, share)], lambda v: f"{v:.2f}")
    ax_s.set(ylim=(0, 1.2), ylabel="tiles of layer l+1 also holding layer l (fraction)",
             title="Consecutive layers sharing tiles")
    cu, cs = values("conflicts_uniform"), values("conflicts_skewed")
    skew_label = f"Zipf s = {zipf_s:g}" if expert_probs is None else "given expert_probs"
    grouped(ax_c, [(-w / 2, cu, C_ACTIVE, "uniform routing", cu),
                   (w / 2, cs, C_MOE, skew_label, cs)], lambda v: f"{v:.1f}")
    finite = np.r_[cu, cs][np.isfinite(np.r_[cu, cs])]
    ax_c.set(ylim=(0, 1.3 * (finite.max() if finite.size and finite.max() > 0 else 1.0)),
             ylabel="waiting tier MVMs per token per MoE layer",
             title="Tier conflicts within one token")
    ax_c.legend(fontsize=FONT_SIZE - 3, loc="upper left")
    if not model.is_moe:
        ax_c.text(0.5, 0.5, "dense model: no experts, no routing", transform=ax_c.transAxes,
                  ha="center")
    for ax in (ax_u, ax_s, ax_c):
        ax.set_xticks(x, names, rotation=25, ha="right", rotation_mode="anchor")
        ax.set_xlabel("mapping strategy")
        ax.grid(True, axis="y", alpha=0.3)
    parts = []
    if ok and model.is_moe:
        bu = min(ok, key=lambda r: r["conflicts_uniform"])
        bs = min(ok, key=lambda r: r["conflicts_skewed"])
        parts.append(f"fewest conflicts: {bu['strategy']} ({bu['conflicts_uniform']:.1f} uniform)"
                     f", {bs['strategy']} ({bs['conflicts_skewed']:.1f} skewed)")
    if ok:
        ls = min(ok, key=lambda r: r["layer_sharing"])
        parts.append(f"least layer sharing: {ls['strategy']} ({ls['layer_sharing']:.2f})")
    failed = [r["strategy"] for r in rows if r["status"] == "does not fit"]
    if failed:
        parts.append(f"{', '.join(failed)}: does not fit")
    title = (f"Mapping strategies: {model.name} on {chip.n_tiles:,} tiles x {chip.n_tiers:,} tiers "
             f"of {chip.tier_rows}x{chip.tier_cols}")
    return finish(fig, title, "; ".join(parts))
