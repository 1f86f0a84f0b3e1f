"""The previous event loop (per-(token instance, operation) state), kept for benchmarks and as a
second oracle: :func:`run_engine_v1` takes the same :class:`~aimoe_lib.simulator.engine.EngineInput`
as :func:`~aimoe_lib.simulator.engine.run_engine` and must give the same
:class:`~aimoe_lib.simulator.engine.EngineOutput`.

It holds a pending-predecessor count and a ready time for every (token instance, operation) of the
whole run (16 bytes each) and runs the blocks of a tile one addition at a time, so its memory grows
with batch x tokens x operations; ``python -m aimoe_lib.bench serving`` measures it next to the
current engine.
"""

from __future__ import annotations

import heapq

import numpy as np

from .engine import EngineInput, EngineOutput
from .program import F_FIRST, F_HEAD, F_KV_CONSUMER, F_LAST, R_DPU, R_MHA, R_TILES

__all__ = ["run_engine_v1", "state_bytes_v1"]


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


def run_engine_v1(inp: EngineInput, *, compiled: bool = True) -> EngineOutput:
    """Run the previous event loop on ``inp``: compiled (default) or as plain Python (same code)."""
    return EngineOutput(*(_engine if compiled else _engine_py)(inp))


def state_bytes_v1(n_inst: int, n_ops: int, n_layers: int) -> int:
    """Bytes of the two per-(token instance, operation) tables and the KV-ready table this loop
    allocates for ``n_inst`` token instances (the dominant part of its state)."""
    return int(16 * n_inst * n_ops + 8 * n_inst * n_layers)
