"""Mapping weights onto tiles and tiers.

A weight matrix of shape (in_features, out_features) is cut into blocks of at most
``tier_rows x tier_cols``; each block goes to one tier of one tile. Blocks of one matrix on
different tiles run in parallel; blocks on the same tile run one after another.

:func:`map_model` returns a :class:`Mapping`: flat numpy arrays, one entry per block, plus a table
of the mapped matrices. Nothing here creates one Python object per block, so DeepSeek-V3's
~2.6 million blocks map in seconds.

Strategies (``STRATEGIES``):

* ``in_order`` — walk the model in execution order; each block goes to the tile with the fewest
  used tiers, lowest index on ties. Consecutive layers end up stacked on the same tiles.
* ``balanced`` — per matrix, the blocks go to the tiles with the least utilisation-weighted load
  (1 per block of an always-active matrix, k/E per block of a routed expert), never two blocks of
  one matrix on a tile while another tile with a free tier exists.
* ``random`` — ``in_order`` over a seeded random order of the matrices.
* ``coactivation`` — like ``in_order`` for everything but the routed experts; the experts of each
  MoE layer are placed one after another on the tiles where the experts already placed share the
  least co-activation with them (from an E x E co-activation density; an expert's own blocks count
  with its overall share of pairs), so experts often picked together by one token do not share
  tiles.
* ``moe_stacked`` — the routed experts of one MoE layer share one set of tiles, expert e in the
  e-th tier of the layer's slab; the rest of the model is then mapped ``in_order``. Shared experts
  are always active, so they are not stacked with the routed ones.

Which matrices live on analog tiles is a choice (``digital=``): by default only the input
embedding (a table lookup, not an MVM) stays digital; the router, the attention projections or the
LM head can be moved to the digital units too. They then take no tiers and the simulator costs
them on DPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from . import checks, hardware
from .hardware import ChipConfig
from .models import ModelSpec, Role, WeightMatrix
from .routing import moe_layer_keys as _moe_layer_keys

__all__ = ["MappingError", "Mapping", "map_model", "mapping_bytes_estimate", "MAX_MAPPING_BYTES", "STRATEGIES", "DIGITAL_PARTS",
           "blocks_of", "blocks_needed", "expected_conflicts", "fitting_chip",
           "moe_stacked_min_tiers", "block_layout", "BlockLayout"]

STRATEGIES = ("in_order", "balanced", "random", "coactivation", "moe_stacked")
"""Names accepted by :func:`map_model`."""

DIGITAL_PARTS = {
    "embedding": frozenset({Role.EMBEDDING}),
    "router": frozenset({Role.ROUTER, Role.SHARED_GATE}),
    "attention": frozenset(r for r in Role if r.is_attention),
    "lm_head": frozenset({Role.LM_HEAD}),
}
"""Parts of the model that can run on digital units instead of analog tiles."""


class MappingError(ValueError):
    """The model does not fit the chip; the message says what it needs."""


def blocks_of(in_features: int, out_features: int, rows: int, cols: int) -> int:
    """Number of blocks of a matrix: ceil(in / rows) x ceil(out / cols)."""
    return math.ceil(in_features / rows) * math.ceil(out_features / cols)


def blocks_needed(model: ModelSpec, tier_rows: int = 512, tier_cols: int = 512,
                  digital=("embedding",)) -> int:
    """Tiers (= blocks) the analog matrices of ``model`` need: :func:`blocks_of` summed over every
    matrix not moved to the digital units by ``digital`` (parts as in :func:`map_model`)."""
    tier_rows, tier_cols = (
        checks.integer("blocks_needed()", name, v, minimum=1, maximum=checks.INT32_MAX,
                       fix="the tier shape must be integers >= 1")
        for name, v in (("tier_rows", tier_rows), ("tier_cols", tier_cols)))
    roles = _resolve_digital(digital, "blocks_needed()")
    return sum(blocks_of(m.in_features, m.out_features, tier_rows, tier_cols)
               for m in model.matrices() if m.role not in roles)


def moe_stacked_min_tiers(model: ModelSpec) -> int:
    """Tiers per tile with which ``moe_stacked`` always fits: 2 E (expert e's up/gate blocks and
    its down blocks each take one tier of the layer's slab of tiles when the slab is as wide as
    an expert's blocks), 1 for a dense model. A sizing rule, not a requirement: a narrower slab
    stacks E x ceil(blocks per expert / slab tiles) tiers."""
    return max(1, 2 * model.n_experts)


def fitting_chip(model: ModelSpec, *, n_tiles: int | None = None, n_tiers: int | None = None,
                 tier_rows: int = 512, tier_cols: int = 512, digital=("embedding",),
                 preset: str = "paper", units: str = "pool", slack: float = 0.0,
                 strategy: str | None = None, name: str | None = None,
                 **chip_fields) -> ChipConfig:
    """The smallest chip of ``preset`` that holds ``model``'s analog blocks
    (:func:`blocks_needed` with ``digital``): the one place where a chip is sized for a model.

    Give exactly one of ``n_tiles`` (tiers follow: ceil(blocks / n_tiles)) or ``n_tiers`` (tiles
    follow: ceil(blocks / n_tiers)). ``slack`` adds that fraction of spare blocks before sizing.
    ``strategy='moe_stacked'`` raises the tiers to :func:`moe_stacked_min_tiers` (the strategy may
    still need more tiles: :class:`MappingError` says how many). ``units='per_layer'`` provisions
    digital and attention units with the model's layers and locks them to layers
    (:meth:`~aimoe_lib.hardware.ChipConfig.provisioned`); ``units='pool'`` keeps the preset's
    shared pool. ``name`` labels the chip (None: the preset's name); other keyword arguments are
    :class:`~aimoe_lib.hardware.ChipConfig` fields.
    """
    if (n_tiles is None) == (n_tiers is None):
        raise ValueError(f"fitting_chip(n_tiles={n_tiles!r}, n_tiers={n_tiers!r}): give exactly "
                         "one of them; the other follows from the model's blocks")
    owner = "fitting_chip()"
    n_tiles, n_tiers = (checks.optional_integer(owner, name, v, minimum=1, maximum=checks.INT32_MAX)
                        for name, v in (("n_tiles", n_tiles), ("n_tiers", n_tiers)))
    checks.choice(owner, "units", units, ("per_layer", "pool"),
                  fix="use 'per_layer' (units provisioned with the layers) or 'pool' (the "
                      "preset's shared units)")
    slack = checks.real(owner, "slack", slack, minimum=0, maximum=1e6,
                        fix="pass the fraction of spare tiers (0.1 = 10 % spare tiers)")
    if strategy is not None:
        checks.choice(owner, "strategy", strategy, STRATEGIES, what="mapping strategy",
                      fix=f"choose one of {', '.join(STRATEGIES)} or None")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"fitting_chip(name={name!r}): must be a string or None; give the chip "
                         "a label, or None for the preset's name")
    need = math.ceil(blocks_needed(model, tier_rows, tier_cols, digital) * (1 + slack))
    if n_tiles is not None:
        n_tiers = max(1, -(-need // n_tiles))
    else:
        n_tiles = max(1, -(-need // n_tiers))
    if strategy == "moe_stacked":
        n_tiers = max(n_tiers, moe_stacked_min_tiers(model))
    if name is not None:
        chip_fields["name"] = name
    chip = hardware.preset(preset, n_tiles=n_tiles, n_tiers=n_tiers, tier_rows=tier_rows,
                           tier_cols=tier_cols, **chip_fields)
    return chip.provisioned(model.n_layers) if units == "per_layer" else chip


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class Mapping:
    """Where every block of every analog matrix lives.

    Per-block arrays (length = number of blocks, ordered matrix by matrix, row block major):
    ``block_matrix`` (index into ``matrices``), ``block_row``/``block_col`` (block position in the
    matrix), ``rows_used``/``cols_used`` (part of the tier the block fills), ``tile``, ``tier``.
    """

    model: ModelSpec
    chip: ChipConfig
    strategy: str
    matrices: tuple[WeightMatrix, ...]
    """Analog matrices, in execution order."""
    digital: tuple[WeightMatrix, ...]
    """Matrices run on digital units (embedding lookup by default)."""
    matrix_offsets: np.ndarray
    """Blocks of matrix i are block_*[matrix_offsets[i]:matrix_offsets[i+1]]."""
    block_matrix: np.ndarray
    block_row: np.ndarray
    block_col: np.ndarray
    rows_used: np.ndarray
    cols_used: np.ndarray
    tile: np.ndarray
    tier: np.ndarray
    seed: int | None = None
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index.update({m.name: i for i, m in enumerate(self.matrices)})
        for a in (self.matrix_offsets, self.block_matrix, self.block_row, self.block_col,
                  self.rows_used, self.cols_used, self.tile, self.tier):
            a.setflags(write=False)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        """Blocks placed = tiers occupied."""
        return int(self.tile.size)

    def matrix_index(self, name: str) -> int:
        """Index of an analog matrix by name; an unknown or digital name raises
        :class:`~aimoe_lib.checks.UnknownKeyError` (a KeyError and a ValueError)."""
        try:
            return self._index[name]
        except KeyError:
            if any(m.name == name for m in self.digital):
                raise checks.UnknownKeyError(f"matrix {name!r} runs on digital units, not on tiles; its "
                                             "cost is a DPU task") from None
            raise checks.UnknownKeyError(f"no matrix {name!r} in {self.model.name}; names look like "
                                         f"{self.matrices[0].name!r}") from None

    def blocks(self, name: str) -> dict[str, np.ndarray]:
        """Blocks of one matrix: arrays tile, tier, rows (used), cols (used), row_block, col_block."""
        i = self.matrix_index(name)
        s = slice(self.matrix_offsets[i], self.matrix_offsets[i + 1])
        return {"tile": self.tile[s], "tier": self.tier[s], "rows": self.rows_used[s],
                "cols": self.cols_used[s], "row_block": self.block_row[s],
                "col_block": self.block_col[s]}

    def mvm_depth(self, name: str) -> int:
        """Serial tier MVMs of one matrix on its busiest tile (1 = fully parallel)."""
        return int(np.bincount(self.blocks(name)["tile"]).max())

    @cached_property
    def matrix_mvm_depth(self) -> np.ndarray:
        """mvm_depth of every analog matrix, in ``matrices`` order."""
        key = self.block_matrix.astype(np.int64) * self.chip.n_tiles + self.tile
        uniq, counts = np.unique(key, return_counts=True)
        depth = np.zeros(len(self.matrices), dtype=np.int64)
        np.maximum.at(depth, uniq // self.chip.n_tiles, counts)
        return depth

    @cached_property
    def tiers_used(self) -> np.ndarray:
        """Occupied tiers of each tile (length n_tiles)."""
        return np.bincount(self.tile, minlength=self.chip.n_tiles)

    @property
    def tiles_used(self) -> int:
        """Tiles holding at least one block."""
        return int(np.count_nonzero(self.tiers_used))

    @property
    def weights_mapped(self) -> int:
        """Weights stored on tiles (equals the analog matrices' weights: nothing is lost or duplicated)."""
        return int(np.sum(self.rows_used.astype(np.int64) * self.cols_used))

    @property
    def utilisation(self) -> float:
        """Fraction of the chip's devices holding weights."""
        return self.weights_mapped / self.chip.capacity_weights

    @property
    def tier_fill(self) -> float:
        """Fraction of the devices of occupied tiers holding weights (padding loss of the tiling)."""
        return self.weights_mapped / (self.n_blocks * self.chip.weights_per_tier)

    def matrices_on_tile(self, tile: int) -> tuple[str, ...]:
        """Names of the matrices with a block on ``tile``, in execution order."""
        if not 0 <= tile < self.chip.n_tiles:
            raise IndexError(f"tile={tile}: valid tiles are 0..{self.chip.n_tiles - 1}")
        idx = np.unique(self.block_matrix[self.tile == tile])
        return tuple(self.matrices[i].name for i in idx)

    def occupancy(self) -> np.ndarray:
        """(n_tiles, n_tiers) array: index of the matrix in each tier, -1 where empty."""
        grid = np.full((self.chip.n_tiles, self.chip.n_tiers), -1, dtype=np.int32)
        grid[self.tile, self.tier] = self.block_matrix
        return grid

    # -- per-block attributes for figures and statistics --------------------------------------
    @cached_property
    def matrix_layer(self) -> np.ndarray:
        """Global layer of every analog matrix: encoder layers first, then decoder layers;
        -1 for the LM head."""
        enc = self.model.n_encoder_layers
        return np.array([(-1 if m.layer < 0 else m.layer + (enc if m.stack.value == "decoder" else 0))
                         for m in self.matrices], dtype=np.int32)

    @cached_property
    def matrix_expert(self) -> np.ndarray:
        """Routed expert index of every analog matrix, -1 for the rest."""
        return np.array([m.expert if m.is_routed_expert else -1 for m in self.matrices],
                        dtype=np.int32)

    def tiles_of_layer(self, layer: int) -> np.ndarray:
        """Tiles holding a block of global layer ``layer``."""
        return np.unique(self.tile[self.matrix_layer[self.block_matrix] == layer])

    def consecutive_layer_sharing(self) -> np.ndarray:
        """For each pair of consecutive layers (l, l+1): fraction of layer l+1's tiles that also
        hold layer l. 0 means the two layers never wait for each other's tiles."""
        n = self.model.n_layers + self.model.n_encoder_layers
        sets = [self.tiles_of_layer(layer) for layer in range(n)]
        return np.array([np.intersect1d(a, b).size / max(b.size, 1)
                         for a, b in zip(sets[:-1], sets[1:])])

    def summary(self) -> str:
        """A few lines: blocks, tiles, tiers, utilisation, depth."""
        tu = self.tiers_used
        return "\n".join([
            f"{self.model.name} on {self.chip.describe()}",
            f"strategy {self.strategy}: {self.n_blocks:,} blocks on {self.tiles_used:,} tiles, "
            f"tiers used per tile {tu.min()}..{tu.max()} (of {self.chip.n_tiers})",
            f"utilisation {self.utilisation:.1%} of the chip, {self.tier_fill:.1%} of occupied tiers",
            f"digital: {', '.join(m.name for m in self.digital) or 'nothing'}",
        ])


# ----------------------------------------------------------------------------- placement
def _fill_in_order(n: int, used: np.ndarray, n_tiers: int) -> tuple[np.ndarray, np.ndarray]:
    """Place n blocks one by one on the tile with the fewest used tiers (lowest index on ties).

    Equivalent closed form: the free slots (tier, tile) taken in increasing (tier, tile) order,
    since the tile with the fewest used tiers offers the lowest free tier. Updates ``used``.
    """
    tiles, tiers = [], []
    level = int(used.min()) if used.size else 0
    left = n
    while left > 0:
        if level >= n_tiers:
            raise _Full()
        cand = np.flatnonzero(used <= level)[:left]
        tiles.append(cand)
        tiers.append(np.full(cand.size, level, dtype=np.int32))
        left -= cand.size
        level += 1
    t = np.concatenate(tiles) if tiles else np.zeros(0, np.int64)
    tier = np.concatenate(tiers) if tiers else np.zeros(0, np.int32)
    # the k-th block on a tile takes tier used+k: slots of one tile come level by level
    np.add.at(used, t, 1)
    return t.astype(np.int32), tier


def _fill_by_key(n: int, used: np.ndarray, n_tiers: int, *keys: np.ndarray,
                 weight: float = 0.0, load: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Place n blocks of one matrix on distinct tiles ordered by ``keys`` (primary first), then
    fewest used tiers, then index; wrap to a second round only when every tile with a free tier
    already holds one. Updates ``used`` (and ``load`` by ``weight`` per block)."""
    tiles, tiers = [], []
    left = n
    while left > 0:
        free = np.flatnonzero(used < n_tiers)
        if free.size == 0:
            raise _Full()
        order = free[np.lexsort((free, used[free]) + tuple(k[free] for k in reversed(keys)))]
        take = order[:left]
        tiles.append(take)
        tiers.append(used[take].astype(np.int32))
        used[take] += 1
        if load is not None:
            load[take] += weight
        left -= take.size
    return np.concatenate(tiles).astype(np.int32), np.concatenate(tiers)


class _Full(Exception):
    """Internal: ran out of tiers while placing."""


def _check_coactivation(c, model: ModelSpec) -> np.ndarray:
    e = model.n_experts
    n_moe = len(_moe_layer_keys(model))
    arr = np.asarray(c, dtype=float)
    if arr.shape == (e, e):
        arr = np.broadcast_to(arr, (n_moe, e, e))
    if arr.shape != (n_moe, e, e):
        raise ValueError(f"coactivation has shape {np.shape(c)}; expected ({e}, {e}) for "
                         f"{model.name}'s {e} experts (or ({n_moe}, {e}, {e}), one per MoE layer)")
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise ValueError("coactivation must be finite and non-negative: it is a probability "
                         "distribution over pairs of experts")
    sums = arr.sum(axis=(1, 2))
    if not np.allclose(sums, 1.0, atol=1e-6):
        raise ValueError(f"coactivation must sum to 1 per layer (a probability distribution over "
                         f"expert pairs); sums are {np.round(sums, 6)[:4]}...; divide by its sum")
    if not np.allclose(arr, np.swapaxes(arr, 1, 2)):
        raise ValueError("coactivation must be symmetric: P(i and j together) = P(j and i)")
    if np.any(np.diagonal(arr, axis1=1, axis2=2) != 0):
        raise ValueError("coactivation must have a zero diagonal: a token never picks the same "
                         "expert twice; set the diagonal to 0 and renormalise")
    return arr


def _resolve_digital(digital, owner: str = "map_model()") -> frozenset[Role]:
    """The roles of the parts named in ``digital`` (one name or a tuple/list of names)."""
    roles: set[Role] = set()
    for part in checks.names(owner, "digital", digital, DIGITAL_PARTS):
        roles |= DIGITAL_PARTS[part]
    return frozenset(roles)


class BlockLayout(NamedTuple):
    """How matrices cut into tier-sized blocks: per matrix its block count and offset, per block
    (matrix by matrix, row block major) its matrix, position and the part of the tier it fills."""

    blocks_per_matrix: np.ndarray
    matrix_offsets: np.ndarray
    block_matrix: np.ndarray
    block_row: np.ndarray
    block_col: np.ndarray
    rows_used: np.ndarray
    cols_used: np.ndarray


def block_layout(matrices, rows: int, cols: int) -> BlockLayout:
    """The blocks of ``matrices`` on ``rows`` x ``cols`` tiers, vectorised (the geometry every
    placement shares; where each block goes is the strategy's)."""
    ins = np.array([m.in_features for m in matrices], dtype=np.int64)
    outs = np.array([m.out_features for m in matrices], dtype=np.int64)
    ncb = -(-outs // cols)
    nb = -(-ins // rows) * ncb
    offsets = np.concatenate([[0], np.cumsum(nb)]).astype(np.int64)
    bm = np.repeat(np.arange(len(matrices), dtype=np.int32), nb)
    local = np.arange(int(offsets[-1]), dtype=np.int64) - offsets[bm]
    brow = (local // ncb[bm]).astype(np.int32)
    bcol = (local % ncb[bm]).astype(np.int32)
    return BlockLayout(nb, offsets, bm, brow, bcol,
                       np.minimum(rows, ins[bm] - brow.astype(np.int64) * rows).astype(np.int32),
                       np.minimum(cols, outs[bm] - bcol.astype(np.int64) * cols).astype(np.int32))


#: Default bound on the working memory of :func:`map_model` (bytes); raise it with ``max_bytes=``.
MAX_MAPPING_BYTES = 8_000_000_000


def mapping_bytes_estimate(model: ModelSpec, chip: ChipConfig, strategy: str, n_blocks: int) -> int:
    """Working memory of :func:`map_model`, bytes, from the inputs alone: three 8-byte arrays per
    tile (tiers used, load, occupancy), an (n_tiles, n_experts) count for ``coactivation``, and
    16 B per weight block (its tile and tier, and the walk order)."""
    per_tile = 8 * (3 + (model.n_experts if strategy == "coactivation" else 0))
    return int(per_tile * chip.n_tiles + 16 * n_blocks)


def map_model(model: ModelSpec, chip: ChipConfig, strategy: str = "in_order", *,
              digital=("embedding",), seed: int = 0, coactivation=None,
              max_bytes: int = MAX_MAPPING_BYTES) -> Mapping:
    """Place every analog weight block of ``model`` on ``chip``.

    Args are described in the module docstring; ``seed`` drives ``random``; ``coactivation`` is an
    (E, E) or (n_moe_layers, E, E) symmetric probability distribution over expert pairs, required
    by ``coactivation``. Raises :class:`MappingError` when the model does not fit, saying how many
    tiers it needs and the smallest chips that would hold it, and ValueError before any work when
    the placement would need more than ``max_bytes`` of memory (:func:`mapping_bytes_estimate`).
    """
    if not isinstance(model, ModelSpec):
        raise TypeError(f"model must be a ModelSpec, got {type(model).__name__}")
    if not isinstance(chip, ChipConfig):
        raise TypeError(f"chip must be a ChipConfig, got {type(chip).__name__}")
    checks.choice("map_model()", "strategy", strategy, STRATEGIES, what="mapping strategy",
                  fix=f"choose one of {', '.join(STRATEGIES)}")
    seed = checks.seed("map_model()", "seed", seed)  # checked whether or not the strategy draws
    max_bytes = checks.integer("map_model()", "max_bytes", max_bytes, minimum=1)
    if strategy in ("coactivation", "moe_stacked") and not model.is_moe:
        raise ValueError(f"strategy={strategy!r} places experts, but {model.name} is dense; "
                         "use in_order, balanced or random")
    if strategy == "coactivation":
        if coactivation is None:
            raise ValueError("strategy='coactivation' needs coactivation=, an (E, E) "
                             "co-activation density of the experts")
        coact = _check_coactivation(coactivation, model)
    elif coactivation is not None:
        raise ValueError(f"coactivation= is only used by strategy='coactivation', not {strategy!r}")
    droles = _resolve_digital(digital)

    all_m = model.matrices()
    analog = tuple(m for m in all_m if m.role not in droles)
    dig = tuple(m for m in all_m if m.role in droles)
    rows, cols, T, L = chip.tier_rows, chip.tier_cols, chip.n_tiles, chip.n_tiers

    geo = block_layout(analog, rows, cols)
    nb, offsets = geo.blocks_per_matrix, geo.matrix_offsets
    B = int(offsets[-1])
    need_msg = _need_message(model, chip, B)
    if B > T * L:
        raise MappingError(need_msg)
    need_bytes = mapping_bytes_estimate(model, chip, strategy, B)
    if need_bytes > max_bytes:
        raise ValueError(
            f"map_model: placing {model.name} on {T:,} tiles needs about {need_bytes / 1e9:,.1f} GB "
            f"of working memory (per-tile arrays), more than max_bytes={max_bytes:,}. The model "
            f"has {B:,} weight blocks, so at most {B:,} tiles are ever used: use a chip with fewer "
            f"tiles (mapping.fitting_chip sizes one), or raise max_bytes.")

    tile = np.empty(B, dtype=np.int32)
    tier = np.empty(B, dtype=np.int32)
    used = np.zeros(T, dtype=np.int64)

    def put(i: int, t: np.ndarray, lv: np.ndarray) -> None:
        tile[offsets[i]:offsets[i + 1]] = t
        tier[offsets[i]:offsets[i + 1]] = lv

    try:
        if strategy in ("in_order", "random"):
            order = np.arange(len(analog)) if strategy == "in_order" \
                else np.random.default_rng(seed).permutation(len(analog))
            t, lv = _fill_in_order(B, used, L)
            # blocks in the walk order: matrix order[0]'s blocks first, ...
            walk = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in order]) \
                if strategy == "random" else np.arange(B)
            tile[walk], tier[walk] = t, lv
        elif strategy == "balanced":
            load = np.zeros(T)
            k_over_e = model.top_k / model.n_experts if model.is_moe else 1.0
            for i, m in enumerate(analog):
                w = k_over_e if m.is_routed_expert else 1.0
                put(i, *_fill_by_key(int(nb[i]), used, L, load, weight=w, load=load))
        elif strategy == "coactivation":
            layer_keys = {k: j for j, k in enumerate(_moe_layer_keys(model))}
            expert_count = None  # (T, E) blocks of each expert of the current layer per tile
            cur = None
            for i, m in enumerate(analog):
                if not m.is_routed_expert:
                    put(i, *_fill_in_order(int(nb[i]), used, L))
                    continue
                key = (m.stack.value, m.layer)
                if key != cur:
                    cur, expert_count = key, np.zeros((T, model.n_experts))
                    dens = coact[layer_keys[key]]
                # other experts weighted by how often they run with this one; this expert's own
                # blocks (its gate and up run together) by how often it runs at all
                cost = expert_count @ dens[m.expert] + expert_count[:, m.expert] * dens[m.expert].sum()
                t, lv = _fill_by_key(int(nb[i]), used, L, cost)
                expert_count[t, m.expert] += 1
                put(i, t, lv)
        else:  # moe_stacked
            _place_stacked(model, analog, nb, offsets, used, L, put)
    except _Full:
        raise MappingError(need_msg if strategy != "moe_stacked"
                           else _stacked_need_message(model, chip, analog, nb)) from None

    return Mapping(model=model, chip=chip, strategy=strategy, matrices=analog, digital=dig,
                   matrix_offsets=offsets, block_matrix=geo.block_matrix, block_row=geo.block_row,
                   block_col=geo.block_col, rows_used=geo.rows_used, cols_used=geo.cols_used,
                   tile=tile, tier=tier,
                   seed=seed if strategy == "random" else None)


def _expert_groups(analog, nb):
    """{(stack, layer): {expert: [matrix indices]}} for routed experts."""
    groups: dict = {}
    for i, m in enumerate(analog):
        if m.is_routed_expert:
            groups.setdefault((m.stack.value, m.layer), {}).setdefault(m.expert, []).append(i)
    return groups


def _place_stacked(model, analog, nb, offsets, used, L, put) -> None:
    T = used.size
    groups = _expert_groups(analog, nb)
    placed = set()
    for experts in groups.values():
        per_expert = int(sum(nb[i] for i in experts[0]))
        width = min(per_expert, T)
        depth = -(-per_expert // width)  # tiers per expert on each tile of the slab
        need = model.n_experts * depth
        free_ok = np.flatnonzero(used + need <= L)
        if free_ok.size < width:
            raise _Full()
        slab = free_ok[np.lexsort((free_ok, used[free_ok]))][:width]
        base = used[slab].copy()
        for e, mats in experts.items():
            b = 0
            for i in mats:
                n = int(nb[i])
                j = np.arange(b, b + n)
                put(i, slab[j % width].astype(np.int32),
                    (base[j % width] + e * depth + j // width).astype(np.int32))
                b += n
                placed.add(i)
        used[slab] += need
    for i in range(len(analog)):
        if i not in placed:
            put(i, *_fill_in_order(int(nb[i]), used, L))


def _need_message(model: ModelSpec, chip: ChipConfig, blocks: int) -> str:
    T, L = chip.n_tiles, chip.n_tiers
    return (f"{model.name} needs {blocks:,} tiers of {chip.tier_rows}x{chip.tier_cols} "
            f"(one per weight block) but the chip has {T:,} tiles x {L:,} tiers = {T * L:,}. "
            f"Smallest chips that fit: n_tiles={-(-blocks // L):,} at n_tiers={L:,}, or "
            f"n_tiers={-(-blocks // T):,} at n_tiles={T:,}.")


def _stacked_need_message(model, chip, analog, nb) -> str:
    groups = _expert_groups(analog, nb)
    per_expert = int(sum(nb[i] for i in next(iter(groups.values()))[0]))
    width = min(per_expert, chip.n_tiles)
    depth = -(-per_expert // width)
    T = chip.n_tiles

    def fits(n_tiers: int) -> bool:
        try:
            _place_stacked(model, analog, nb, None, np.zeros(T, np.int64), n_tiers,
                           lambda *a: None)
            return True
        except _Full:
            return False

    lo, hi = chip.n_tiers, 2 * chip.n_tiers
    while not fits(hi):
        lo, hi = hi, 2 * hi
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return (f"moe_stacked: each of the {len(groups)} MoE layers of {model.name} needs a slab of "
            f"{width:,} tiles with {model.n_experts * depth:,} free tiers each ({model.n_experts} "
            f"experts x {depth} tier(s) per expert per tile), and the rest of the model "
            f"{int(nb.sum()) - len(groups) * model.n_experts * per_expert:,} more tiers; the chip "
            f"has {T:,} tiles x {chip.n_tiers:,} tiers. Smallest that fits at n_tiles={T:,}: "
            f"n_tiers={hi:,} (or use strategy='in_order', which needs {int(nb.sum()):,} tiers in all).")


# ----------------------------------------------------------------------------- statistics
def expected_conflicts(mapping: Mapping, expert_probs=None, n_tokens: int = 2000,
                       seed: int = 0) -> np.ndarray:
    """Mean number of tier MVMs per token that wait for another MVM of the same token on the same
    tile, in each MoE layer's expert FFN, estimated over ``n_tokens`` sampled tokens.

    Each token picks top_k distinct experts with probabilities ``expert_probs`` (length E; uniform
    if None; sampled without replacement by the Gumbel-top-k trick, seeded). The experts' input
    matrices (gate and up) run together, then their down matrices: in each of the two stages a
    tile holding n active blocks makes n - 1 of them wait. Returns one value per MoE layer.
    """
    model = mapping.model
    if not model.is_moe:
        raise ValueError(f"{model.name} is dense: it has no experts to route")
    e, k = model.n_experts, model.top_k
    p = np.full(e, 1.0 / e) if expert_probs is None else np.asarray(expert_probs, dtype=float)
    if p.shape != (e,) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"expert_probs must be a probability vector of length {e}")
    if np.count_nonzero(p) < k:
        raise ValueError(f"expert_probs gives only {np.count_nonzero(p)} experts a chance, "
                         f"fewer than top_k={k}")
    n_tokens = checks.integer("expected_conflicts()", "n_tokens", n_tokens, minimum=1,
                              maximum=10**7, fix="pass the number of tokens to sample, e.g. 2000")
    rng = np.random.default_rng(checks.seed("expected_conflicts()", "seed", seed))
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    pick = np.argsort(-(logp + rng.gumbel(size=(n_tokens, e))), axis=1)[:, :k]
    chosen = np.zeros((n_tokens, e))
    np.put_along_axis(chosen, pick, 1.0, axis=1)

    T = mapping.chip.n_tiles
    bexp = mapping.matrix_expert[mapping.block_matrix]
    blayer = mapping.matrix_layer[mapping.block_matrix]
    roles = np.array([m.role is Role.FFN_DOWN for m in mapping.matrices])[mapping.block_matrix]
    out = []
    for key in _moe_layer_keys(model):
        enc = model.n_encoder_layers
        glayer = key[1] + (enc if key[0] == "decoder" else 0)
        total = np.zeros(n_tokens)
        for stage_down in (False, True):
            sel = (blayer == glayer) & (bexp >= 0) & (roles == stage_down)
            counts = np.zeros((e, T))
            np.add.at(counts, (bexp[sel], mapping.tile[sel]), 1.0)
            tiles = np.flatnonzero(counts.sum(0))
            active = chosen @ counts[:, tiles]
            total += np.clip(active - 1.0, 0.0, None).sum(1)
        out.append(total.mean())
    return np.array(out)
