"""The compiled event loop and :func:`simulate`.

**Scheduling.** Non-preemptive, first come first served: every resource serves operations in the
order they became ready, ties broken by (sequence, pass, token, position in the graph). An MVM
operation asks each of its tiles for its blocks there, which run back to back; the operation ends
when its last tile does; each tile receives its input slice and sends its partial output over its
own link (one slice's transfer latency, every element's energy). A DPU/MHA task takes the
lowest-index idle unit of its pool (or of the units locked to its layer), else the unit that frees
first. The network has no contention: a transfer adds latency and energy to its edge. A start
that waits for a tile busy with another operation is a **tile conflict**; its wait is stall time.

The engine claims resources at the moment an operation becomes ready (numba-compiled; the same
code runs as plain Python without numba). Its inputs and outputs are named structures
(:class:`EngineInput`, :class:`EngineOutput`); :mod:`aimoe_lib.simulator.reference` schedules the
same program the textbook way, and the tests check that both agree exactly.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

from ..hardware import ChipConfig
from ..mapping import Mapping
from ..models import ModelSpec
from .program import (
    unit_set_entries,
    F_FIRST,
    F_HEAD,
    F_KV_CONSUMER,
    F_LAST,
    R_DPU,
    R_MHA,
    R_TILES,
    Program,
    Workload,
    build_program,
)
from .result import SimResult, make_result

__all__ = ["EngineInput", "EngineOutput", "PROGRAM_ARRAYS", "LAYOUT_ARRAYS", "engine_input",
           "run_engine", "simulate", "state_bytes_estimate", "MAX_STATE_BYTES"]


PROGRAM_ARRAYS = ("res", "group", "moe", "branch", "stage", "lat", "energy", "comm_in", "comm_out",
                  "comm_energy", "layer", "npreds", "succ_ptr", "succ", "flags", "kv_layer",
                  "grp_ptr", "grp_tile", "grp_count", "grp_tier_ptr", "grp_tiers", "grp_energy",
                  "expert_gid", "choices")
"""Arrays of :class:`~aimoe_lib.simulator.program.Program` the event loop reads, by name."""

LAYOUT_ARRAYS = ("ntok", "pass_base", "inst_pass", "inst_tok", "inst_pos")
"""Arrays of :class:`~aimoe_lib.simulator.program.PassLayout` the event loop reads."""

EngineInput = NamedTuple("EngineInput", [(f, np.ndarray) for f in PROGRAM_ARRAYS + LAYOUT_ARRAYS]
                         + [("dpu_ptr", np.ndarray), ("dpu_idx", np.ndarray),
                            ("mha_ptr", np.ndarray), ("mha_idx", np.ndarray),
                            ("dram_bytes_per_key", float), ("mvm_latency_ns", float),
                            ("tier_switch_latency_ns", float), ("tier_switch_energy_pj", float),
                            ("mha_op_latency_ns", float), ("mha_op_energy_pj", float),
                            ("attention_pass", bool),
                            ("n_layers", int), ("n_dpus", int), ("n_mha", int), ("n_tiles", int),
                            ("batch", int), ("record", bool), ("log_capacity", int)])
EngineInput.__doc__ = """Everything the event loop reads: the program's arrays (``PROGRAM_ARRAYS``,
as in :class:`~aimoe_lib.simulator.program.Program`), the pass layout of one sequence
(``LAYOUT_ARRAYS``), the units each layer slot may use (CSR ``dpu_ptr``/``dpu_idx``,
``mha_ptr``/``mha_idx``), the attention's fixed cost per operation and synchronisation
(``attention_pass``: one attention per layer and pass), the run's sizes, whether to keep the event log (``record``) and the
rows of its buffer (``log_capacity``)."""


class EngineOutput(NamedTuple):
    """What the event loop measured (times ns, energies pJ)."""

    makespan_ns: float
    token_times_ns: np.ndarray
    """(batch, passes) time each generated token came out of sampling."""
    tile_busy_ns: np.ndarray
    dpu_busy_ns: np.ndarray
    mha_busy_ns: np.ndarray
    dram_busy_ns: float
    e_mvm: float
    e_digital: float
    e_attention: float
    e_dram: float
    e_communication: float
    tile_conflicts: int
    stall_ns: float
    n_events: int
    tier_mvms: int
    """Tier MVMs executed (blocks run, summed over every tile operation)."""
    log_f: np.ndarray
    """(n, 2) start and end of each logged event."""
    log_i: np.ndarray
    """(n, 7) resource, unit, seq, pass, token, layer, op of each logged event."""
    n_logged: int
    """Events the run wanted to log (may exceed the buffer)."""


def engine_input(prog: Program, log_capacity: int = 1) -> EngineInput:
    """The engine's view of a program."""
    w, lay = prog.workload, prog.workload.layout
    return EngineInput(
        *(getattr(prog, f) for f in PROGRAM_ARRAYS), *(getattr(lay, f) for f in LAYOUT_ARRAYS),
        dpu_ptr=prog.unit_ptr[0], dpu_idx=prog.unit_idx[0], mha_ptr=prog.unit_ptr[1],
        mha_idx=prog.unit_idx[1], dram_bytes_per_key=float(prog.dram_bytes_per_key),
        mvm_latency_ns=float(prog.mvm_latency_ns),
        tier_switch_latency_ns=float(prog.tier_switch_latency_ns),
        tier_switch_energy_pj=float(prog.tier_switch_energy_pj),
        mha_op_latency_ns=float(prog.mha_op_latency_ns),
        mha_op_energy_pj=float(prog.mha_op_energy_pj), attention_pass=bool(prog.attention_pass),
        n_layers=int(prog.n_layers),
        n_dpus=int(prog.n_units[0]), n_mha=int(prog.n_units[1]), n_tiles=int(prog.n_tiles),
        batch=int(w.batch), record=bool(w.record_events), log_capacity=int(log_capacity))


def _log_event_py(log_f, log_i, n_log, start, end, resource, unit, s, p, j, layer, op):
    """Append one record to the event log if it has room; return the new record count (it keeps
    counting past the capacity so the caller can say how large a log the run needed)."""
    if n_log < log_f.shape[0]:
        log_f[n_log, 0] = start
        log_f[n_log, 1] = end
        log_i[n_log, 0] = resource
        log_i[n_log, 1] = unit
        log_i[n_log, 2] = s
        log_i[n_log, 3] = p
        log_i[n_log, 4] = j
        log_i[n_log, 5] = layer
        log_i[n_log, 6] = op
    return n_log + 1


_log_event = _log_event_py


def _engine_py(inp):
    """Claim-at-ready event loop over ``inp`` (an :class:`EngineInput`); returns the fields of an
    :class:`EngineOutput` in order."""
    res, group, moe, branch, stage = inp.res, inp.group, inp.moe, inp.branch, inp.stage
    lat, energy, comm_in, comm_out = inp.lat, inp.energy, inp.comm_in, inp.comm_out
    comm_energy, layer, npreds, succ_ptr, succ = (inp.comm_energy, inp.layer, inp.npreds,
                                                  inp.succ_ptr, inp.succ)
    flags, kv_layer = inp.flags, inp.kv_layer
    grp_ptr, grp_tile, grp_count, grp_energy = inp.grp_ptr, inp.grp_tile, inp.grp_count, inp.grp_energy
    expert_gid, choices = inp.expert_gid, inp.choices
    dpu_ptr, dpu_idx, mha_ptr, mha_idx = inp.dpu_ptr, inp.dpu_idx, inp.mha_ptr, inp.mha_idx
    ntok, pass_base, inst_pass, inst_tok, inst_pos = (inp.ntok, inp.pass_base, inp.inst_pass,
                                                      inp.inst_tok, inp.inst_pos)
    dram_bpk, mvm_lat, n_layers = inp.dram_bytes_per_key, inp.mvm_latency_ns, inp.n_layers
    mha_lat0, mha_en0, att_pass = inp.mha_op_latency_ns, inp.mha_op_energy_pj, inp.attention_pass
    grp_tier_ptr, grp_tiers = inp.grp_tier_ptr, inp.grp_tiers
    sw_lat, sw_en = inp.tier_switch_latency_ns, inp.tier_switch_energy_pj
    switching = sw_lat > 0.0 or sw_en > 0.0
    batch, record, log_cap = inp.batch, inp.record, inp.log_capacity
    n_ops = res.shape[0]
    n_passes = ntok.shape[0]
    per_seq = pass_base[n_passes]
    n_inst = batch * per_seq
    remaining = np.empty((n_inst, n_ops), np.int64)
    rtime = np.zeros((n_inst, n_ops), np.float64)
    for i in range(n_inst):
        for o in range(n_ops):
            remaining[i, o] = npreds[o]
    kvt = np.full((n_inst, n_layers), -1.0)
    ptr = np.zeros((batch, n_passes, n_layers), np.int64)  # tokens released (causal) or ready (pass)
    pmax = np.zeros((batch, n_passes, n_layers), np.float64)
    tile_free = np.zeros(inp.n_tiles, np.float64)
    tile_busy = np.zeros(inp.n_tiles, np.float64)
    tile_tier = np.full(inp.n_tiles, -1, np.int64)  # tier of the tile's last MVM (-1: none yet)
    dpu_free = np.zeros(inp.n_dpus, np.float64)
    dpu_busy = np.zeros(inp.n_dpus, np.float64)
    mha_free = np.zeros(inp.n_mha, np.float64)
    mha_busy = np.zeros(inp.n_mha, np.float64)
    dram_free = 0.0
    dram_busy = 0.0
    e_mvm = 0.0
    e_dig = 0.0
    e_att = 0.0
    e_dram = 0.0
    e_comm = 0.0
    conflicts = 0
    stall = 0.0
    makespan = 0.0
    n_events = 0
    n_mvm = 0
    token_times = np.zeros((batch, n_passes), np.float64)
    log_f = np.zeros((log_cap, 2), np.float64)
    log_i = np.zeros((log_cap, 7), np.int64)
    n_log = 0
    first_op = 0
    for o in range(n_ops):
        if flags[o] & F_FIRST:
            first_op = o
    heap = [(0.0, np.int64(0))]
    heap.pop()
    for s in range(batch):
        for j in range(ntok[0]):
            inst = s * per_seq + j
            heapq.heappush(heap, (comm_in[first_op], inst * n_ops + first_op))
    while len(heap) > 0:
        t, key = heapq.heappop(heap)
        inst = key // n_ops
        o = key - inst * n_ops
        s = inst // per_seq
        rem = inst - s * per_seq
        p = inst_pass[rem]
        j = inst_tok[rem]
        pos = inst_pos[rem]
        n_events += 1
        r = res[o]
        f = t
        unit = -1
        if r == R_TILES:
            g = group[o]
            if g < 0:
                g = expert_gid[moe[o], stage[o], choices[s, pos, moe[o], branch[o]]]
            for q in range(grp_ptr[g], grp_ptr[g + 1]):
                tl = grp_tile[q]
                st = tile_free[tl]
                if st > t:
                    conflicts += 1
                    stall += st - t
                else:
                    st = t
                en = st
                if switching:  # blocks back to back, each on its tier
                    for b in range(grp_tier_ptr[q], grp_tier_ptr[q + 1]):
                        if tile_tier[tl] >= 0 and tile_tier[tl] != grp_tiers[b]:
                            en += sw_lat
                            tile_busy[tl] += sw_lat
                            e_mvm += sw_en
                        tile_tier[tl] = grp_tiers[b]
                        en += mvm_lat
                        tile_busy[tl] += mvm_lat
                else:
                    for _ in range(grp_count[q]):  # blocks back to back (as the reference adds)
                        en += mvm_lat
                        tile_busy[tl] += mvm_lat
                n_mvm += grp_count[q]
                tile_free[tl] = en
                if en > f:
                    f = en
                if record:
                    n_log = _log_event(log_f, log_i, n_log, st, en, R_TILES, tl, s, p, j,
                                       layer[o], o)
            e_mvm += grp_energy[g]
        else:
            if r == R_DPU or r == R_MHA:
                if r == R_DPU:
                    free_a, busy_a, uptr, uidx = dpu_free, dpu_busy, dpu_ptr, dpu_idx
                    dur = lat[o]
                    e_dig += energy[o]
                else:
                    free_a, busy_a, uptr, uidx = mha_free, mha_busy, mha_ptr, mha_idx
                    keys = pos + 1
                    if att_pass:  # one operation for every token of the pass
                        keys = 0
                        for q in range(pass_base[p], pass_base[p + 1]):
                            keys += inst_pos[q] + 1
                    dur = mha_lat0 + lat[o] * keys
                    e_att += mha_en0 + energy[o] * keys
                sl = layer[o]
                best = -1
                idle = -1
                for q in range(uptr[sl], uptr[sl + 1]):
                    u = uidx[q]  # ascending: the first idle unit found has the lowest index
                    if free_a[u] <= t:
                        if idle < 0:
                            idle = u
                    elif best < 0 or free_a[u] < free_a[best]:
                        best = u
                unit = idle if idle >= 0 else best
                st = free_a[unit]
                if st < t:
                    st = t
                f = st + dur
                free_a[unit] = f
                busy_a[unit] += dur
            else:
                nbytes = dram_bpk * (pos + 2)
                dur = lat[o] * nbytes
                e_dram += energy[o] * nbytes
                st = dram_free
                if st < t:
                    st = t
                f = st + dur
                dram_free = f
                dram_busy += dur
                unit = 0
            if record:
                n_log = _log_event(log_f, log_i, n_log, st, f, r, unit, s, p, j, layer[o], o)
        e_comm += comm_energy[o]
        fo = f + comm_out[o]
        if fo > makespan:
            makespan = fo
        if flags[o] & F_LAST:
            token_times[s, p] = fo
            if p + 1 < n_passes:
                for jj in range(ntok[p + 1]):
                    inst2 = s * per_seq + pass_base[p + 1] + jj
                    heapq.heappush(heap, (fo + comm_in[first_op], inst2 * n_ops + first_op))
        # a pass-synchronised attention completes every token of its pass at once
        i0, i1 = inst, inst + 1
        if att_pass and (flags[o] & F_KV_CONSUMER):
            i0 = s * per_seq + pass_base[p]
            i1 = i0 + ntok[p]
        for ic in range(i0, i1):
            jc = inst_tok[ic - s * per_seq]
            for q in range(succ_ptr[o], succ_ptr[o + 1]):
                sc = succ[q]
                if (flags[sc] & F_HEAD) and jc != ntok[p] - 1:
                    continue
                if fo > rtime[ic, sc]:
                    rtime[ic, sc] = fo
                remaining[ic, sc] -= 1
                if remaining[ic, sc] == 0:
                    if flags[sc] & F_KV_CONSUMER:
                        lyr = kv_layer[sc]
                        kvt[ic, lyr] = rtime[ic, sc]
                        base = s * per_seq + pass_base[p]
                        if att_pass:  # wait for every token of the pass, then one operation
                            ptr[s, p, lyr] += 1
                            if rtime[ic, sc] > pmax[s, p, lyr]:
                                pmax[s, p, lyr] = rtime[ic, sc]
                            if ptr[s, p, lyr] == ntok[p]:
                                last = base + ntok[p] - 1
                                heapq.heappush(heap, (pmax[s, p, lyr] + comm_in[sc],
                                                      last * n_ops + sc))
                        else:
                            while ptr[s, p, lyr] < ntok[p] and kvt[base + ptr[s, p, lyr], lyr] >= 0.0:
                                k2 = base + ptr[s, p, lyr]
                                if kvt[k2, lyr] > pmax[s, p, lyr]:
                                    pmax[s, p, lyr] = kvt[k2, lyr]
                                heapq.heappush(heap, (pmax[s, p, lyr] + comm_in[sc], k2 * n_ops + sc))
                                ptr[s, p, lyr] += 1
                    else:
                        heapq.heappush(heap, (rtime[ic, sc] + comm_in[sc], ic * n_ops + sc))
    n_keep = min(n_log, log_cap)
    return (makespan, token_times, tile_busy, dpu_busy, mha_busy, dram_busy, e_mvm, e_dig, e_att,
            e_dram, e_comm, conflicts, stall, n_events, n_mvm, log_f[:n_keep], log_i[:n_keep],
            n_log)


try:  # the compiled engine; the same function runs as plain Python without numba
    import numba

    _log_event = numba.njit(cache=True)(_log_event_py)
    _engine = numba.njit(cache=True)(_engine_py)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    _engine = _engine_py


def run_engine(inp: EngineInput, *, compiled: bool = True) -> EngineOutput:
    """Run the event loop on ``inp``: compiled (default) or as plain Python (same code)."""
    return EngineOutput(*(_engine if compiled else _engine_py)(inp))


MAX_STATE_BYTES = 8_000_000_000
"""Default limit of :func:`simulate`'s estimated engine state, bytes (8 GB: a third of a 24 GB
machine); pass ``max_state_bytes`` to raise it."""


def state_bytes_estimate(model: ModelSpec, chip: ChipConfig, workload: Workload,
                         max_events_logged: int = 2_000_000) -> int:
    """Memory the engine will hold for this run, bytes, from the inputs alone (no allocation):
    16 B per (token instance, operation) for pending-predecessor counts and ready times, 8 B per
    (token instance, layer) of KV-ready times, the routed experts (8 B per sequence, position,
    MoE layer and pick), 16 B per tile and unit, and the event log when recorded (72 B per
    event), and 16 B per entry of the units each layer may use (every unit for every layer when
    pooled). Token instances are batch x the tokens of every pass; operations are bounded by the
    layer's steps (8 + 3 per expert a token runs) plus the embedding and the head."""
    w = workload
    per_seq = (w.prompt_len + w.gen_len - 1 if w.kv_cache
               else w.gen_len * w.prompt_len + w.gen_len * (w.gen_len - 1) // 2)
    n_inst = w.batch * per_seq
    branches = (model.top_k + model.n_shared_experts) if model.is_moe else 1
    n_ops = 6 + model.n_layers * (8 + 3 * branches)
    n_moe = model.n_layers if model.is_moe else 0
    total = (16 * n_inst * n_ops + 8 * n_inst * model.n_layers
             + 8 * w.batch * w.positions * n_moe * max(model.top_k, 1)
             + 16 * w.batch * w.gen_len * model.n_layers
             + 16 * (chip.n_tiles + chip.n_dpus + chip.n_mha_units)
             + 16 * unit_set_entries(chip, model.n_layers))
    if w.record_events:
        total += 72 * min(max_events_logged, n_inst * n_ops * 4)
    return int(total)


def simulate(model: ModelSpec, chip: ChipConfig, mapping: Mapping, workload: Workload, *,
             max_events_logged: int = 2_000_000,
             max_state_bytes: int = MAX_STATE_BYTES) -> SimResult:
    """Run ``workload`` on ``chip`` with ``model`` placed by ``mapping``: build the token program
    (:func:`~aimoe_lib.simulator.program.build_program`), schedule it (module docstring) and
    return a :class:`~aimoe_lib.simulator.result.SimResult` that keeps its workload and program.

    A run whose engine state (:func:`state_bytes_estimate`) would exceed ``max_state_bytes`` is
    refused before any work, with the estimate."""
    need = state_bytes_estimate(model, chip, workload, max_events_logged) \
        if isinstance(workload, Workload) and isinstance(chip, ChipConfig) \
        and isinstance(model, ModelSpec) else 0
    if need > max_state_bytes:
        raise ValueError(
            f"simulate: this run needs about {need / 1e9:,.1f} GB of engine state (batch "
            f"{workload.batch} x {need // max(workload.batch, 1):,} bytes per sequence: every "
            f"token instance x operation is tracked), more than max_state_bytes="
            f"{max_state_bytes / 1e9:,.1f} GB; simulate fewer sequences or tokens (or use the KV "
            f"cache), or raise max_state_bytes")
    prog = build_program(model, chip, mapping, workload)
    cap = max_events_logged if workload.record_events else 1
    out = run_engine(engine_input(prog, cap))
    return make_result(prog, out, max_events_logged)
