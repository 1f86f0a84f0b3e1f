"""A deliberately simple reference scheduler, used only by the tests.

It runs the same operation graph as :mod:`aimoe_lib.simulator.engine`
(:func:`~aimoe_lib.simulator.program.build_program`)
but schedules it the textbook way: explicit FIFO queues in front of every tile and unit, one event
per tier MVM, plain Python loops, and events at equal times handled in a fixed order (resources
finishing first, in index order; then operations becoming ready, in key order). The fast engine
claims resources at the moment an operation becomes ready instead; both must agree exactly.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from .engine import EngineOutput
from .program import (
    F_FIRST,
    F_HEAD,
    F_KV_CONSUMER,
    F_LAST,
    R_DPU,
    R_DRAM,
    R_MHA,
    R_TILES,
    Program,
    Workload,
    build_program,
)
from .result import SimResult, make_result

__all__ = ["simulate_reference"]

DONE, READY = 0, 1


def simulate_reference(model, chip, mapping, workload: Workload) -> SimResult:
    """Same inputs and result as :func:`aimoe_lib.simulator.engine.simulate`, scheduled the slow way."""
    prog = build_program(model, chip, mapping, workload)
    return make_result(prog, _run_reference(prog), 10**9)


def _run_reference(prog: Program) -> EngineOutput:
    w, lay = prog.workload, prog.workload.layout
    n_tiles = prog.n_tiles
    n_ops = prog.n_ops
    insts = []  # (seq, pass, token) in key order
    for s in range(w.batch):
        for i in range(lay.per_seq):
            insts.append((s, int(lay.inst_pass[i]), int(lay.inst_tok[i])))
    pos_of_inst = [int(lay.inst_pos[i % lay.per_seq]) for i in range(len(insts))]
    index = {x: i for i, x in enumerate(insts)}
    remaining = {}
    rtime = {}
    first_op = prog.op_index(F_FIRST)

    # resources
    tile_q = [deque() for _ in range(n_tiles)]       # waiting blocks: (op_id, ready)
    tile_busy_until = [None] * n_tiles               # None = idle
    pools = {R_DPU: (prog.unit_ptr[0], prog.unit_idx[0], prog.n_units[0]),
             R_MHA: (prog.unit_ptr[1], prog.unit_idx[1], prog.n_units[1])}
    unit_idle = {R_DPU: [True] * prog.n_units[0], R_MHA: [True] * prog.n_units[1], R_DRAM: [True]}
    unit_q = {R_DPU: deque(), R_MHA: deque(), R_DRAM: deque()}  # waiting tasks: (op_id, units, dur)
    stats = dict(tile_busy=np.zeros(n_tiles), dpu=np.zeros(prog.n_units[0]),
                 mha=np.zeros(prog.n_units[1]), dram=0.0, e_mvm=0.0, e_dig=0.0, e_att=0.0,
                 e_dram=0.0, e_comm=0.0, conflicts=0, stall=0.0, makespan=0.0, n_events=0,
                 tier_mvms=0)
    token_times = np.zeros((w.batch, w.n_passes))
    live = {}       # op_id -> [blocks left, finish]
    kvt = {}
    ptr = {}
    pmax = {}
    events = []
    counter = [0]

    def push(t, cls, tie, payload):
        counter[0] += 1
        heapq.heappush(events, (t, cls, tie, counter[0], payload))

    def ready(t, inst, o):
        push(t, READY, inst * n_ops + o, (inst, o))

    for s in range(w.batch):
        for j in range(int(lay.ntok[0])):
            ready(prog.comm_in[first_op], index[(s, 0, j)], first_op)

    def finish_op(op_id, f):
        inst, o = op_id
        s, p, j = insts[inst]
        stats["e_comm"] += prog.comm_energy[o]
        fo = f + prog.comm_out[o]
        stats["makespan"] = max(stats["makespan"], fo)
        if prog.flags[o] & F_LAST:
            token_times[s, p] = fo
            if p + 1 < w.n_passes:
                for jj in range(int(lay.ntok[p + 1])):
                    ready(fo + prog.comm_in[first_op], index[(s, p + 1, jj)], first_op)
        # a pass-synchronised attention completes every token of its pass at once
        done = [inst]
        if prog.attention_pass and prog.flags[o] & F_KV_CONSUMER:
            done = [index[(s, p, jj)] for jj in range(int(lay.ntok[p]))]
        for ic in done:
            jc = insts[ic][2]
            for q in range(prog.succ_ptr[o], prog.succ_ptr[o + 1]):
                sc = int(prog.succ[q])
                if prog.flags[sc] & F_HEAD and jc != lay.ntok[p] - 1:
                    continue
                key = (ic, sc)
                remaining.setdefault(key, int(prog.npreds[sc]))
                rtime[key] = max(rtime.get(key, 0.0), fo)
                remaining[key] -= 1
                if remaining[key]:
                    continue
                if prog.flags[sc] & F_KV_CONSUMER:
                    kv_ready(s, p, ic, sc, rtime[key])
                else:
                    ready(rtime[key] + prog.comm_in[sc], ic, sc)

    def kv_ready(s, p, ic, sc, t_kv):
        """Token instance ``ic``'s keys/values of the layer of ``sc`` exist at ``t_kv``: release
        attention causally (every token whose prefix is complete) or, for a pass-synchronised
        attention, once for the whole pass when its last token's arrive."""
        lyr = int(prog.kv_layer[sc])
        kvt[(ic, lyr)] = t_kv
        k = (s, p, lyr)
        toks = [index[(s, p, jj)] for jj in range(int(lay.ntok[p]))]
        if prog.attention_pass:
            if all((i, lyr) in kvt for i in toks):
                ready(max(kvt[(i, lyr)] for i in toks) + prog.comm_in[sc], toks[-1], sc)
            return
        ptr.setdefault(k, 0)
        pmax.setdefault(k, 0.0)
        while ptr[k] < lay.ntok[p] and (toks[ptr[k]], lyr) in kvt:
            pmax[k] = max(pmax[k], kvt[(toks[ptr[k]], lyr)])
            ready(pmax[k] + prog.comm_in[sc], toks[ptr[k]], sc)
            ptr[k] += 1

    tile_tier = [-1] * n_tiles  # tier of the tile's last MVM

    def start_tile(t, tile):
        op_id, rdy, first, tier = tile_q[tile].popleft()
        if first and t > rdy:
            stats["conflicts"] += 1
            stats["stall"] += t - rdy
        begin = t  # the MVM itself starts after a tier switch, if any
        if prog.tier_switch_latency_ns > 0 or prog.tier_switch_energy_pj > 0:
            if tile_tier[tile] >= 0 and tile_tier[tile] != tier:
                begin = t + prog.tier_switch_latency_ns
                stats["tile_busy"][tile] += prog.tier_switch_latency_ns
                stats["e_mvm"] += prog.tier_switch_energy_pj
            tile_tier[tile] = tier
        end = begin + prog.mvm_latency_ns
        stats["tile_busy"][tile] += prog.mvm_latency_ns
        tile_busy_until[tile] = end
        push(end, DONE, (0, tile), ("tile", tile, op_id))

    def start_unit(t, res, unit, task):
        op_id, _, dur = task
        unit_idle[res][unit] = False
        end = t + dur
        if res == R_DPU:
            stats["dpu"][unit] += dur
        elif res == R_MHA:
            stats["mha"][unit] += dur
        else:
            stats["dram"] += dur
        push(end, DONE, (res, unit), ("unit", res, unit, op_id))

    while events:
        t, cls, _, _, payload = heapq.heappop(events)
        if cls == DONE:
            if payload[0] == "tile":
                _, tile, op_id = payload
                tile_busy_until[tile] = None
                rec = live[op_id]
                rec[0] -= 1
                rec[1] = max(rec[1], t)
                if rec[0] == 0:
                    finish_op(op_id, rec[1])
                if tile_q[tile]:
                    start_tile(t, tile)
            else:
                _, res, unit, op_id = payload
                unit_idle[res][unit] = True
                finish_op(op_id, t)
                for task in list(unit_q[res]):
                    if unit in task[1]:
                        unit_q[res].remove(task)
                        start_unit(t, res, unit, task)
                        break
            continue
        inst, o = payload
        s, p, j = insts[inst]
        pos = pos_of_inst[inst]
        stats["n_events"] += 1
        op_id = (inst, o)
        r = int(prog.res[o])
        if r == R_TILES:
            g = int(prog.group[o])
            if g < 0:
                e = prog.choices[s, pos, prog.moe[o], prog.branch[o]]
                g = int(prog.expert_gid[prog.moe[o], prog.stage[o], e])
            stats["e_mvm"] += prog.grp_energy[g]
            blocks = 0
            for q in range(prog.grp_ptr[g], prog.grp_ptr[g + 1]):
                tile, cnt = int(prog.grp_tile[q]), int(prog.grp_count[q])
                tiers = prog.grp_tiers[prog.grp_tier_ptr[q]:prog.grp_tier_ptr[q + 1]]
                for b in range(cnt):  # one request per tier MVM
                    tile_q[tile].append((op_id, t, b == 0, int(tiers[b])))
                    blocks += 1
            stats["tier_mvms"] += blocks
            live[op_id] = [blocks, t]
            for q in range(prog.grp_ptr[g], prog.grp_ptr[g + 1]):
                tile = int(prog.grp_tile[q])
                if tile_busy_until[tile] is None and tile_q[tile]:
                    start_tile(t, tile)
            continue
        if r in (R_DPU, R_MHA):
            ptr_a, idx_a, _ = pools[r]
            sl = int(prog.layer[o])
            units = [int(u) for u in idx_a[ptr_a[sl]:ptr_a[sl + 1]]]
            if r == R_DPU:
                dur = prog.lat[o]
                stats["e_dig"] += prog.energy[o]
            else:
                keys = pos + 1
                if prog.attention_pass:  # one operation for every token of the pass
                    keys = sum(pos_of_inst[index[(s, p, jj)]] + 1 for jj in range(int(lay.ntok[p])))
                dur = prog.mha_op_latency_ns + prog.lat[o] * keys
                stats["e_att"] += prog.mha_op_energy_pj + prog.energy[o] * keys
        else:
            units = [0]
            nbytes = prog.dram_bytes_per_key * (pos + 2)
            dur = prog.lat[o] * nbytes
            stats["e_dram"] += prog.energy[o] * nbytes
        task = (op_id, units, dur)
        idle = [u for u in units if unit_idle[r][u]]
        if idle and not any(set(units) & set(x[1]) for x in unit_q[r]):
            start_unit(t, r, min(idle), task)
        else:
            unit_q[r].append(task)

    return EngineOutput(
        stats["makespan"], token_times, stats["tile_busy"], stats["dpu"], stats["mha"],
        stats["dram"], stats["e_mvm"], stats["e_dig"], stats["e_att"], stats["e_dram"],
        stats["e_comm"], stats["conflicts"], stats["stall"], stats["n_events"], stats["tier_mvms"],
        np.zeros((0, 2)), np.zeros((0, 7), dtype=np.int64), 0)
