"""Analyses of a recorded run (``Workload(record_events=True)``): the rows of a Gantt chart, the
critical path of one generated token, and what caused each tile conflict.

They rebuild what the engine knew when it started an operation (its ready time) from the event
log and the run's own program (:attr:`~aimoe_lib.simulator.result.SimResult.program`): an
operation is ready ``comm_in`` after the last of its predecessors' outputs arrived
(``end + comm_out``), exactly as the engine computes it. Token positions come from the workload's
:func:`~aimoe_lib.simulator.program.pass_layout`, flags from their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .program import F_FIRST, F_KV_CONSUMER, F_LAST, R_DRAM, R_TILES, RES_NAMES, Program, Step
from .result import SimResult

__all__ = ["GanttData", "gantt_data", "RES_LABELS", "op_kinds", "PATH_KINDS", "CriticalPath",
           "critical_path", "CONFLICT_CAUSES", "ConflictCauses", "conflict_causes"]

RES_LABELS = {"tiles": "tile", "dpu": "DPU", "mha": "MHA", "dram": "DRAM"}
"""Row label of one unit of each resource class."""

PATH_KINDS = ("analog MVM", "digital (DPU)", "attention (MHA)", "KV cache (DRAM)", "network",
              "waiting for a tile", "waiting for a unit", "waiting for DRAM")
"""Parts of a token's critical path (:func:`critical_path`)."""

_RES_KIND = PATH_KINDS[:4]  # compute part of each resource class, indexed by R_*
_RES_WAIT = ("waiting for a tile", "waiting for a unit", "waiting for a unit", "waiting for DRAM")

CONFLICT_CAUSES = ("same weights", "same token", "shared tile")
"""Why a tile MVM waited (:func:`conflict_causes`): another token was using the *same weights*
(one copy of every matrix: inherent to pipelining); another MVM of the *same token* holds blocks
on that tile (e.g. its k experts stacked on one slab); or another token's MVM of a *different
matrix* sharing the tile (layers or experts stacked in the tiers of one tile)."""


def _need_events(result: SimResult) -> np.ndarray:
    if not isinstance(result, SimResult):
        raise TypeError(f"result must be a SimResult (from simulator.simulate), got "
                        f"{type(result).__name__}")
    if result.events is None:
        raise ValueError("result has no event log: simulate with "
                         "Workload(..., record_events=True)")
    return result.events


def op_kinds(program: Program) -> tuple[np.ndarray, tuple[str, ...]]:
    """The kind of every operation as an index into a tuple of kind labels (in order of first
    appearance in the program: ``'embed+ln1'``, ``'qkv'``, ...), from the program's
    :class:`~aimoe_lib.simulator.program.Step` array."""
    steps = [Step(int(k)) for k in program.kind]
    order = list(dict.fromkeys(steps))
    index = np.array([order.index(s) for s in steps], dtype=np.int64)
    return index, tuple(s.label for s in order)


# =============================================================================== Gantt
@dataclass(frozen=True)
class GanttData:
    """The rows of a Gantt chart and the events on them (:func:`gantt_data`)."""

    labels: tuple[str, ...]
    """Row labels, top to bottom (``'tile 3'``, ``'DPU 0'``, ``'MHA 1'``, ``'DRAM'``)."""
    resource: np.ndarray
    """Resource class index (0 tiles, 1 DPU, 2 MHA, 3 DRAM, as ``simulator.RES_NAMES``) per row."""
    unit: np.ndarray
    """Tile or unit index per row."""
    row: np.ndarray
    """Row of each kept event."""
    start_ns: np.ndarray
    """Start of each kept event, ns."""
    end_ns: np.ndarray
    """End of each kept event, ns."""
    layer: np.ndarray
    """Layer slot of each kept event (n_layers = LM head and sampling)."""
    op: np.ndarray
    """Token-program operation of each kept event (index into ``SimResult.op_names``)."""
    n_used: dict
    """Units of each resource class that ran at least one operation."""

    @property
    def truncated(self) -> bool:
        """True when some used units are not shown."""
        shown = {RES_NAMES[r]: int(np.sum(self.resource == r)) for r in range(len(RES_NAMES))}
        return any(shown.get(k, 0) < v for k, v in self.n_used.items())


def gantt_data(result: SimResult, max_rows: int = 40,
               resources: Sequence[str] = ("tiles", "dpu", "mha", "dram")) -> GanttData:
    """Rows and events of a Gantt chart of ``result``'s event log.

    One row per tile or unit that ran at least one operation, in the order of ``resources`` and by
    index. With more than ``max_rows`` such rows, each class other than tiles keeps its busiest
    ``max(1, max_rows // 8)`` units and the tiles share the remaining rows, busiest first.
    """
    ev = _need_events(result)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"gantt(max_rows={max_rows!r}): must be an integer >= 1")
    res_idx = []
    for r in resources:
        if r not in RES_NAMES:
            raise ValueError(f"gantt(resources=...): unknown resource {r!r}; use some of "
                             f"{', '.join(RES_NAMES)}")
        res_idx.append(RES_NAMES.index(r))
    sel = np.isin(ev["resource"], res_idx)
    if not np.any(sel):
        raise ValueError(f"gantt(resources={tuple(resources)!r}): no operation ran on these "
                         f"resources in this run; choose some of {', '.join(RES_NAMES)}")
    ev = ev[sel]
    dur = ev["end_ns"] - ev["start_ns"]
    key = ev["resource"] * (1 << 32) + ev["unit"]
    ukey, inv = np.unique(key, return_inverse=True)
    busy = np.bincount(inv, weights=dur, minlength=ukey.size)
    ures, uunit = ukey >> 32, ukey & ((1 << 32) - 1)
    n_used = {RES_NAMES[r]: int(np.sum(ures == r)) for r in res_idx}
    keep = np.zeros(ukey.size, bool)
    if ukey.size <= max_rows:
        keep[:] = True
    else:
        budget = max_rows
        others = [r for r in res_idx if r != R_TILES]
        per_other = max(1, max_rows // 8)
        for r in others:
            cand = np.flatnonzero(ures == r)
            take = cand[np.argsort(-busy[cand], kind="stable")][:min(per_other, budget)]
            keep[take] = True
            budget -= take.size
        if R_TILES in res_idx and budget > 0:
            cand = np.flatnonzero(ures == R_TILES)
            keep[cand[np.argsort(-busy[cand], kind="stable")][:budget]] = True
    order = sorted(np.flatnonzero(keep), key=lambda i: (res_idx.index(int(ures[i])), int(uunit[i])))
    row_of = np.full(ukey.size, -1)
    row_of[order] = np.arange(len(order))
    rows = row_of[inv]
    on = rows >= 0
    labels = tuple(RES_LABELS[RES_NAMES[int(ures[i])]]
                   + ("" if ures[i] == R_DRAM else f" {int(uunit[i])}") for i in order)
    return GanttData(labels=labels, resource=ures[order].astype(int), unit=uunit[order].astype(int),
                     row=rows[on], start_ns=ev["start_ns"][on], end_ns=ev["end_ns"][on],
                     layer=ev["layer"][on], op=ev["op"][on], n_used=n_used)


# =============================================================================== lookups
class _Index:
    """Lookup of operation instances in an event log: end time, and start of the unit that
    finished last."""

    def __init__(self, result: SimResult) -> None:
        ev = _need_events(result)
        self.prog = program = result.program
        self.w, self.n_ops = result.workload, program.n_ops
        self.J = int(self.w.layout.ntok.max())
        self.P = self.w.n_passes
        key = self.key(ev["seq"], ev["pass_"], ev["token"], ev["op"])
        # sorted by key, then end, then start: the last entry of a key has the latest end
        order = np.lexsort((ev["start_ns"], ev["end_ns"], key))
        k_sorted = key[order]
        last = np.r_[k_sorted[1:] != k_sorted[:-1], True]
        self.keys = k_sorted[last]
        self.end = ev["end_ns"][order][last]
        self.start_last = ev["start_ns"][order][last]

    def key(self, s, p, j, o):
        return ((np.asarray(s, np.int64) * self.P + p) * self.J + j) * self.n_ops + o

    def find(self, s, p, j, o) -> int:
        k = int(self.key(s, p, j, o))
        i = int(np.searchsorted(self.keys, k))
        if i >= self.keys.size or self.keys[i] != k:
            return -1
        return i


# =============================================================================== critical path
@dataclass(frozen=True)
class CriticalPath:
    """The chain of operations that decided when one generated token came out."""

    total_ns: float
    """Time from the start of the pass (0 for the prefill, else the previous token's output) to
    this token's output."""
    by_kind_ns: dict
    """Time along the chain by part (``PATH_KINDS``); sums to ``total_ns``."""
    steps: tuple
    """(op name, token, ready_ns, start_ns, end_ns) along the chain, first to last."""


def critical_path(result: SimResult, seq: int = 0, pass_: int = 0) -> CriticalPath:
    """Walk back from the sampling of pass ``pass_`` of sequence ``seq`` along the predecessors that
    arrived last, and split the pass's time into compute per resource class, network transfers
    and waiting for a busy tile or unit.

    ``result`` needs its event log (``record_events=True``). Pass 0 is the prefill (its total is
    the time to first token); pass g >= 1 starts at the previous token's output (its total is one
    time per output token). In a prefill the chain may jump to an earlier prompt token through the
    keys and values attention waits for.
    """
    idx = _Index(result)
    prog = idx.prog
    b, g = result.token_times_ns.shape
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < b:
        raise ValueError(f"critical_path(seq={seq!r}): the run has sequences 0..{b - 1}")
    if isinstance(pass_, bool) or not isinstance(pass_, int) or not 0 <= pass_ < g:
        raise ValueError(f"critical_path(pass_={pass_!r}): the run has passes 0..{g - 1}")
    sample = prog.op_index(F_LAST)
    preds = prog.preds
    by = dict.fromkeys(PATH_KINDS, 0.0)
    steps = []
    s, p = seq, pass_
    j, o = result.workload.tokens_in_pass(p) - 1, sample
    token_time = float(result.token_times_ns[s, p])
    by["network"] += float(prog.comm_out[sample])
    while True:
        i = idx.find(s, p, j, o)
        if i < 0:
            raise ValueError(f"operation {prog.names[o]} of sequence {s}, pass {p}, token {j} is "
                             "missing from the event log")
        end, st = float(idx.end[i]), float(idx.start_last[i])
        # candidates: (arrival time, token, op)
        cands = []
        if prog.flags[o] & F_FIRST:
            cands.append((float(result.token_times_ns[s, p - 1]) if p > 0 else 0.0, -1, -1))
        toks = range(j + 1) if prog.flags[o] & F_KV_CONSUMER else (j,)
        for jj in toks:
            for q in preds[o]:
                iq = idx.find(s, p, jj, q)
                if iq >= 0:
                    cands.append((float(idx.end[iq]) + float(prog.comm_out[q]), jj, q))
        arrive, jj, q = max(cands, key=lambda c: c[0])
        ready = arrive + float(prog.comm_in[o])
        r = int(prog.res[o])
        by[_RES_KIND[r]] += end - st
        by[_RES_WAIT[r]] += st - ready
        by["network"] += float(prog.comm_in[o])
        steps.append((prog.names[o], j, ready, st, end))
        if q < 0:
            break
        by["network"] += float(prog.comm_out[q])
        j, o = jj, q
    start = float(result.token_times_ns[s, p - 1]) if p > 0 else 0.0
    return CriticalPath(total_ns=token_time - start, by_kind_ns=by, steps=tuple(reversed(steps)))


# =============================================================================== conflicts
@dataclass(frozen=True)
class ConflictCauses:
    """Tile conflicts of a run, each attributed to what held the tile (``CONFLICT_CAUSES``)."""

    count: dict
    """Conflicts per cause; the values sum to ``SimResult.tile_conflicts``."""
    stall_ns: dict
    """Stall time per cause; sums to ``SimResult.stall_ns`` (to rounding)."""
    examples: tuple
    """Per conflict, in log order: (event index, blocking event index, cause, ready_ns)."""


def _tile_ready(idx: _Index, ev: np.ndarray) -> np.ndarray:
    """Ready time of every tile event's operation instance (nan for other events)."""
    prog = idx.prog
    preds = prog.preds
    ready = np.full(ev.size, np.nan)
    tile = np.flatnonzero(ev["resource"] == R_TILES)
    ops = ev["op"][tile]
    for o in np.unique(ops):
        sel = tile[ops == o]
        arrive = np.full(sel.size, -np.inf)
        for q in preds[int(o)]:
            k = idx.key(ev["seq"][sel], ev["pass_"][sel], ev["token"][sel], q)
            pos = np.minimum(np.searchsorted(idx.keys, k), idx.keys.size - 1)
            found = idx.keys[pos] == k
            cand = np.where(found, idx.end[pos] + prog.comm_out[q], -np.inf)
            arrive = np.maximum(arrive, cand)
        ready[sel] = arrive + prog.comm_in[int(o)]
    return ready


def conflict_causes(result: SimResult) -> ConflictCauses:
    """Find every tile conflict in the event log and say what held the tile.

    A tile MVM conflicts when it starts after its operation became ready; the operation that held
    the tile is the previous one logged on that tile. Causes: *same weights* (the same blocks, for
    another token), *same token* (another MVM of this token) and *shared tile* (another token's MVM
    of different blocks on the same tile). The counts sum to
    :attr:`~aimoe_lib.simulator.result.SimResult.tile_conflicts`.
    """
    idx = _Index(result)
    ev = result.events
    ready = _tile_ready(idx, ev)
    tile = np.flatnonzero(ev["resource"] == R_TILES)
    units = ev["unit"][tile]
    order = np.argsort(units, kind="stable")  # log order within each tile
    t_sorted = tile[order]
    u_sorted = units[order]
    prev = np.r_[-1, t_sorted[:-1]]
    prev[np.r_[True, u_sorted[1:] != u_sorted[:-1]]] = -1
    waits = ev["start_ns"][t_sorted] > ready[t_sorted]
    me, blk = t_sorted[waits], prev[waits]
    if np.any(blk < 0):
        raise ValueError("a tile operation waited with no earlier operation on its tile: the event "
                         "log and the program disagree")
    both = np.r_[me, blk]
    grp = idx.prog.tile_group(ev["op"][both], ev["seq"][both], ev["pass_"][both],
                              ev["token"][both])
    g_me, g_blk = grp[:me.size], grp[me.size:]
    same_inst = ((ev["seq"][me] == ev["seq"][blk]) & (ev["pass_"][me] == ev["pass_"][blk])
                 & (ev["token"][me] == ev["token"][blk]))
    cause = np.where(same_inst, 1, np.where(g_me == g_blk, 0, 2))
    stall = ev["start_ns"][me] - ready[me]
    count = {c: int(np.sum(cause == i)) for i, c in enumerate(CONFLICT_CAUSES)}
    st = {c: float(stall[cause == i].sum()) for i, c in enumerate(CONFLICT_CAUSES)}
    log_order = np.argsort(me, kind="stable")
    examples = tuple((int(me[k]), int(blk[k]), CONFLICT_CAUSES[int(cause[k])], float(ready[me[k]]))
                     for k in log_order)
    return ConflictCauses(count=count, stall_ns=st, examples=examples)
