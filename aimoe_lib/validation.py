"""Side-by-side reproductions of external references: IBM's 3D-SiM on its README workloads.

[3DSIM] (IBM/3D-CiM-LLM-Inference-Simulator) is the public simulator of the study this project
reproduces. :func:`threedsim_readme` builds its README model, mapping and workload in aimoe and
simulates them on :func:`~aimoe_lib.hardware.preset` ``'3dsim'`` (its public cost defaults and
dataflow: :data:`~aimoe_lib.hardware.THREEDSIM_DATAFLOW`). The numbers 3D-SiM itself printed, with
the commit and the commands that produced them, ship in data/threedsim.json (3D-SiM needs torch
and minutes per case; the comparison here needs neither): :func:`threedsim_reference`,
:func:`threedsim_comparison`.

Where aimoe and 3D-SiM still differ by design: the scheduler (aimoe serves every resource first
come first served in the order operations became ready; 3D-SiM gives a free tile or DPU to the
ready operation of the smallest (sequence, token), so the two order contended work differently)
and the tile-conflict count (aimoe counts starts that waited; 3D-SiM counts pairs of waiting and
running MVMs met while scanning its ready list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import hardware
from .mapping import Mapping, blocks_of
from .models import ModelSpec, Role
from .shipped import data_path
from .simulator import SimResult, Workload, simulate

__all__ = ["threedsim_model", "threedsim_mapping", "threedsim_readme", "threedsim_reference",
           "ThreedsimRow", "threedsim_comparison"]


def threedsim_model(n_layers: int = 3, target_len: int = 12) -> ModelSpec:
    """[3DSIM]'s README model: d_model 512, 8 heads, ReLU FFN of 2048 (4 d_model), vocabulary
    1024, post-norm LayerNorm, no biases, learned positions for ``target_len`` tokens."""
    return ModelSpec(name=f"3dsim-readme-{n_layers}L", d_model=512, n_layers=n_layers, n_heads=8,
                     d_ff=2048, vocab_size=1024, ffn="relu", norm="layernorm",
                     learned_positions=target_len)


def _threedsim_order(model: ModelSpec) -> list[tuple[str | None, int]]:
    """3D-SiM's module registration order: (matrix name or None for the position embedding, the
    tiers it takes when stacked on one tile or 0 to spread its blocks)."""
    by = {(m.layer, m.role): m.name for m in model.matrices()}
    qkv = lambda layer: [by[(layer, r)] for r in (Role.Q, Role.K, Role.V)]  # noqa: E731
    order = [(by[(-1, Role.EMBEDDING)], 1), (None, 0)] + [(n, 0) for n in qkv(0)]
    for layer in range(model.n_layers):
        if layer + 1 < model.n_layers:
            order += [(n, 0) for n in qkv(layer + 1)]
        order += [(by[(layer, r)], 0) for r in (Role.O, Role.FFN_UP, Role.FFN_DOWN)]
    return order + [(by[(-1, Role.LM_HEAD)], 0)]


def threedsim_mapping(model: ModelSpec, chip: hardware.ChipConfig) -> Mapping:
    """``model`` placed as [3DSIM]'s GREEDY_IN_ORDER mapper with ``stack_embedding=True`` places
    it: matrices in its module order (the next layer's Q/K/V right after a layer's attention
    inputs, before its output projection), each block on the tile with the fewest used tiers
    (lowest index on ties), the whole embedding table on one tile, and one tier taken by the
    position embedding (mapped, never run). Every matrix is analog."""
    rows, cols = chip.tier_rows, chip.tier_cols
    used = np.zeros(chip.n_tiles, dtype=np.int64)
    place: dict[str, list[tuple[int, int]]] = {}
    mats = {m.name: m for m in model.matrices()}

    def take() -> tuple[int, int]:
        t = int(np.argmin(used))
        used[t] += 1
        if used[t] > chip.n_tiers:
            raise ValueError(f"threedsim_mapping: {model.name} needs more than "
                             f"{chip.n_tiles} x {chip.n_tiers} tiers")
        return t, int(used[t] - 1)

    for name, stacked in _threedsim_order(model):
        if name is None:  # the position embedding's tier
            take()
            continue
        m = mats[name]
        n = blocks_of(m.in_features, m.out_features, rows, cols)
        if stacked:
            t, _ = take()
            used[t] -= 1
            place[name] = [(t, int(used[t] + k)) for k in range(n)]
            used[t] += n
        else:
            place[name] = [take() for _ in range(n)]
    matrices = model.matrices()
    ins = np.array([m.in_features for m in matrices])
    outs = np.array([m.out_features for m in matrices])
    ncb = -(-outs // cols)
    nb = -(-ins // rows) * ncb
    offsets = np.concatenate([[0], np.cumsum(nb)])
    bm = np.repeat(np.arange(len(matrices)), nb).astype(np.int32)
    local = np.arange(offsets[-1]) - offsets[bm]
    brow, bcol = (local // ncb[bm]).astype(np.int32), (local % ncb[bm]).astype(np.int32)
    tile_tier = np.array([tt for m in matrices for tt in place[m.name]], dtype=np.int32)
    return Mapping(model=model, chip=chip, strategy="in_order", matrices=matrices, digital=(),
                   matrix_offsets=offsets, block_matrix=bm, block_row=brow, block_col=bcol,
                   rows_used=np.minimum(rows, ins[bm] - brow * rows).astype(np.int32),
                   cols_used=np.minimum(cols, outs[bm] - bcol * cols).astype(np.int32),
                   tile=tile_tier[:, 0].copy(), tier=tile_tier[:, 1].copy())


def threedsim_readme(n_layers: int = 3, target_len: int = 12, n_seqs: int = 1,
                     kv_cache: bool = False, start_len: int = 1) -> SimResult:
    """[3DSIM]'s README experiment in aimoe: :func:`threedsim_model` mapped by
    :func:`threedsim_mapping` on :func:`~aimoe_lib.hardware.preset` ``'3dsim'``, ``n_seqs``
    sequences of ``start_len`` prompt tokens decoded to ``target_len`` tokens
    (``target_len - start_len`` passes). With the KV cache, 3D-SiM charges the DRAM's idle power
    (kv_placement 'dram') but no DRAM traffic."""
    for name, v in (("n_layers", n_layers), ("target_len", target_len), ("n_seqs", n_seqs),
                    ("start_len", start_len)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"threedsim_readme({name}={v!r}): must be an integer >= 1")
    if target_len <= start_len:
        raise ValueError(f"threedsim_readme(target_len={target_len}, start_len={start_len}): "
                         "3D-SiM runs target_len - start_len passes; make target_len larger")
    model = threedsim_model(int(n_layers), int(target_len))
    chip = hardware.preset("3dsim", kv_placement="dram" if kv_cache else "sram")
    w = Workload(batch=int(n_seqs), prompt_len=int(start_len),
                 gen_len=int(target_len - start_len), kv_cache=bool(kv_cache))
    return simulate(model, chip, threedsim_mapping(model, chip), w)


def threedsim_reference() -> dict:
    """The numbers 3D-SiM printed for its README workloads (data/threedsim.json): its commit,
    environment, the commands that produced them and one record per case."""
    return json.loads(data_path("threedsim.json").read_text())


@dataclass(frozen=True)
class ThreedsimRow:
    """One README workload in 3D-SiM and in aimoe (times ns, energies nJ)."""

    name: str
    n_layers: int
    target_len: int
    n_seqs: int
    kv_cache: bool
    makespan_3dsim_ns: float
    makespan_aimoe_ns: float
    mvm_3dsim: int
    mvm_aimoe: int
    energy_3dsim_nj: float
    energy_aimoe_nj: float
    conflicts_3dsim: int
    conflicts_aimoe: int
    wall_3dsim_s: float

    @property
    def makespan_error(self) -> float:
        """aimoe / 3D-SiM - 1."""
        return self.makespan_aimoe_ns / self.makespan_3dsim_ns - 1

    @property
    def mvm_error(self) -> float:
        """aimoe / 3D-SiM - 1."""
        return self.mvm_aimoe / self.mvm_3dsim - 1

    @property
    def energy_error(self) -> float:
        """aimoe / 3D-SiM - 1."""
        return self.energy_aimoe_nj / self.energy_3dsim_nj - 1


def threedsim_comparison(cases=None) -> list[ThreedsimRow]:
    """Every stored 3D-SiM case (or the given records) replayed through
    :func:`threedsim_readme`."""
    cases = threedsim_reference()["cases"] if cases is None else cases
    rows = []
    for c in cases:
        r = threedsim_readme(c["n_layers"], c["target_len"], c["n_seqs"], c["kv_cache"],
                             c["start_len"])
        rows.append(ThreedsimRow(
            name=c["name"], n_layers=c["n_layers"], target_len=c["target_len"],
            n_seqs=c["n_seqs"], kv_cache=c["kv_cache"], makespan_3dsim_ns=c["makespan_ns"],
            makespan_aimoe_ns=r.makespan_ns, mvm_3dsim=c["n_mvm"], mvm_aimoe=r.tier_mvms,
            energy_3dsim_nj=c["energy"]["total_nJ"], energy_aimoe_nj=r.energy_pj / 1e3,
            conflicts_3dsim=c["tile_conflicts"], conflicts_aimoe=r.tile_conflicts,
            wall_3dsim_s=c["wall_s"]))
    return rows
