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

**State and speed.** Memory follows what is in flight, not the run's length
(:func:`engine_state_bytes`): one queue entry per ready operation, a join slot per token
instance (:attr:`~aimoe_lib.simulator.program.Program.join_slot`), and the KV release state of
each sequence's current pass, reused pass after pass. The ready operations wait in a radix heap
over the bits of their times (O(1) to queue an event; the same order as a heap). Consecutive
tiles that every operation reaches together advance as one run
(:attr:`~aimoe_lib.simulator.program.Program.tile_run`), and the blocks of a tile add their
latencies in O(1) (``_repeat_add_py``, bit for bit the repeated additions the reference makes);
without tier switches or an event log a tile's busy time is added up once, at the end, from the
times each group ran. The loop hands no array to a function per event: numba counts references
to arrays passed around (two atomic operations each), which cost more than the rest of an
event. :mod:`~aimoe_lib.simulator.engine_v1` keeps the previous loop.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..hardware import ChipConfig
from ..mapping import Mapping
from ..models import ModelSpec
from .program import (
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
    unit_set_entries,
)
from .result import SimResult, make_result

__all__ = ["EngineInput", "EngineOutput", "PROGRAM_ARRAYS", "LAYOUT_ARRAYS", "engine_input",
           "run_engine", "simulate", "state_bytes_estimate", "engine_state_bytes", "MAX_STATE_BYTES",
           "queue_capacity"]


PROGRAM_ARRAYS = ("res", "group", "moe", "branch", "stage", "lat", "energy", "comm_in", "comm_out",
                  "comm_energy", "layer", "npreds", "succ_ptr", "succ", "flags", "kv_layer",
                  "grp_ptr", "grp_tile", "grp_count", "grp_tier_ptr", "grp_tiers", "grp_energy",
                  "expert_gid", "choices", "join_slot", "tile_run", "run_tile0", "run_len",
                  "rgrp_ptr", "rgrp_entry")
"""Arrays of :class:`~aimoe_lib.simulator.program.Program` the event loop reads, by name."""

LAYOUT_ARRAYS = ("ntok", "pass_base", "inst_pass", "inst_tok", "inst_pos")
"""Arrays of :class:`~aimoe_lib.simulator.program.PassLayout` the event loop reads."""

EngineInput = NamedTuple("EngineInput", [(f, np.ndarray) for f in PROGRAM_ARRAYS + LAYOUT_ARRAYS]
                         + [("dpu_ptr", np.ndarray), ("dpu_idx", np.ndarray),
                            ("mha_ptr", np.ndarray), ("mha_idx", np.ndarray),
                            ("dram_bytes_per_key", float), ("mvm_latency_ns", float),
                            ("tier_switch_latency_ns", float), ("tier_switch_energy_pj", float),
                            ("mha_op_latency_ns", float), ("mha_op_energy_pj", float),
                            ("attention_pass", bool), ("n_join_slots", int),
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
        n_join_slots=int(prog.n_join_slots),
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


_TWO53 = 9007199254740992  # 2**53: integers up to here are exact in a float64


def _repeat_add_py(v, step, n):
    """``v`` after ``n`` floating-point additions of ``step`` (``v += step`` n times, IEEE
    round-to-nearest-even), in O(1) per power of two crossed instead of O(n); ``v >= 0``,
    ``step >= 0``.

    Within one binade [2^(e-1), 2^e) every value is a multiple of u = 2^(e-53), so ``v + step``
    rounds to ``v + round(step / u) * u`` whenever ``step / u`` is not a tie (x.5): each addition
    adds the same multiple of u and k of them land exactly on ``v + k * round(step / u) * u``, as
    long as the sum stays inside the binade. Ties, sums near a binade's top and ``v < step`` take
    one plain addition at a time, so the result is the loop's, bit for bit."""
    if n <= 16:  # short: plain additions are cheaper
        for _ in range(n):
            v = v + step
        return v
    if step == 0.0:
        return v
    while n > 0:
        if v < step or v < 1e-280:  # (and no units that underflow)
            v = v + step
            n -= 1
            continue
        e = math.frexp(v)[1]
        u = math.ldexp(1.0, e - 53)
        r = step / u  # exact: a power-of-two scaling, below 2**53 because step <= v
        b = math.floor(r)
        frac = r - b
        if frac == 0.5:  # a tie: rounds to even, which depends on v
            v = v + step
            n -= 1
            continue
        bi = np.int64(b)
        if frac > 0.5:
            bi += 1
        if bi == 0:  # step < u / 2: every addition rounds back to v
            return v
        a = np.int64(v / u)
        k = (_TWO53 - 2 - a) // bi  # additions that stay at least two units below 2^e
        if k <= 0:
            v = v + step
            n -= 1
            continue
        if k > n:
            k = n
        v = float(a + k * bi) * u
        n -= k
    return v


_CHUNK = 32
"""Events per chunk of a radix-heap bucket (two 256-byte rows: times, keys)."""


def _bit_length_py(x):
    """Bits of the non-negative int64 ``x`` (``int.bit_length``): 0 for 0, 64 - leading zeros."""
    n = 0
    if x >> 32:
        n += 32
        x >>= 32
    if x >> 16:
        n += 16
        x >>= 16
    if x >> 8:
        n += 8
        x >>= 8
    if x >> 4:
        n += 4
        x >>= 4
    if x >> 2:
        n += 2
        x >>= 2
    if x >> 1:
        n += 1
        x >>= 1
    return n + x


# The event queue: a radix heap (Ahuja, Mehlhorn, Orlin & Tarjan, "Faster algorithms for the
# shortest path problem", J. ACM 37(2):213-223, 1990) over the bits of the event times, which
# never fall below the last time popped (an operation becomes ready at or after the event that
# readies it). A non-negative float64 orders as its bit pattern read as an int64. Bucket b >= 1
# holds the events whose time first differs from the last popped one at bit b - 1, as a list of
# chunks of _CHUNK events (time bits, key) read in order; events at exactly the last popped time
# wait in bucket 0, a binary heap of their keys, which breaks ties by key. Each pop returns the
# least (time, key), as a heap would, so the run is the same event for event. Its code is
# written out in the loop: numba counts references to every array handed to a function, two
# atomic operations per array and call, which cost more than the queue itself.


_log_event = _log_event_py
_repeat_add = _repeat_add_py
_bit_length = _bit_length_py


def _engine_py(inp, cap):
    """Claim-at-ready event loop over ``inp`` (an :class:`EngineInput`); returns the fields of an
    :class:`EngineOutput` in order.

    State is bounded by what is in flight: one event per ready operation in the radix heap of
    (time, key) pairs (key = instance x operations + operation: the tie order), at most ``cap``
    of them (more: the run stops and returns ``overflow`` True, and :func:`run_engine` runs it
    again with a larger ``cap``), a (count, ready time) pair per join slot of each token instance
    (:attr:`Program.join_slot`; an operation with one predecessor is ready when that one ends),
    and the KV-ready times and release pointers of each sequence's current pass, reused pass
    after pass. Returns the fields of an :class:`EngineOutput`, then ``overflow``."""
    res, group, moe, branch, stage = inp.res, inp.group, inp.moe, inp.branch, inp.stage
    lat, energy, comm_in, comm_out = inp.lat, inp.energy, inp.comm_in, inp.comm_out
    comm_energy, layer, npreds, succ_ptr, succ = (inp.comm_energy, inp.layer, inp.npreds,
                                                  inp.succ_ptr, inp.succ)
    flags, kv_layer = inp.flags, inp.kv_layer
    grp_tile, grp_count, grp_energy = inp.grp_tile, inp.grp_count, inp.grp_energy
    expert_gid, choices = inp.expert_gid, inp.choices
    dpu_ptr, dpu_idx, mha_ptr, mha_idx = inp.dpu_ptr, inp.dpu_idx, inp.mha_ptr, inp.mha_idx
    ntok, pass_base, inst_pass, inst_tok, inst_pos = (inp.ntok, inp.pass_base, inp.inst_pass,
                                                      inp.inst_tok, inp.inst_pos)
    dram_bpk, mvm_lat, n_layers = inp.dram_bytes_per_key, inp.mvm_latency_ns, inp.n_layers
    mha_lat0, mha_en0, att_pass = inp.mha_op_latency_ns, inp.mha_op_energy_pj, inp.attention_pass
    grp_tier_ptr, grp_tiers = inp.grp_tier_ptr, inp.grp_tiers
    join_slot, n_slots = inp.join_slot, inp.n_join_slots
    sw_lat, sw_en = inp.tier_switch_latency_ns, inp.tier_switch_energy_pj
    switching = sw_lat > 0.0 or sw_en > 0.0
    batch, record, log_cap = inp.batch, inp.record, inp.log_capacity
    n_ops = res.shape[0]
    n_passes = ntok.shape[0]
    per_seq = pass_base[n_passes]
    n_inst = batch * per_seq
    max_ntok = 0
    for p in range(n_passes):
        if ntok[p] > max_ntok:
            max_ntok = ntok[p]
    pass_keys = np.zeros(n_passes, np.int64)  # keys a pass-synchronised attention reads
    for p in range(n_passes):
        for q in range(pass_base[p], pass_base[p + 1]):
            pass_keys[p] += inst_pos[q] + 1
    # switches inside a group entry (consecutive blocks on different tiers)
    grp_switches = np.zeros(grp_count.shape[0], np.int64)
    for q in range(grp_count.shape[0]):
        for b in range(grp_tier_ptr[q] + 1, grp_tier_ptr[q + 1]):
            if grp_tiers[b] != grp_tiers[b - 1]:
                grp_switches[q] += 1
    jcount = np.zeros(n_inst * n_slots, np.int64)  # inputs arrived at each join slot
    jtime = np.zeros(n_inst * n_slots, np.float64)  # the latest of them
    kvt = np.full((batch, max_ntok if not att_pass else 0, n_layers), -1.0)
    ptr = np.zeros((batch, n_layers), np.int64)  # tokens released (causal) or ready (pass)
    pmax = np.zeros((batch, n_layers), np.float64)
    tile_run, run_tile0, run_len = inp.tile_run, inp.run_tile0, inp.run_len
    rgrp_ptr, rgrp_entry = inp.rgrp_ptr, inp.rgrp_entry
    n_runs = run_len.shape[0]
    run_free = np.zeros(n_runs, np.float64)  # the tiles of a run share their state
    run_busy = np.zeros(n_runs, np.float64)
    run_tier = np.full(n_runs, -1, np.int64)  # tier of the run's last MVM (-1: none yet)
    # per run of a group: its run and blocks, read in one pass (no tile -> run indirection)
    n_rq = rgrp_entry.shape[0]
    rq_run = np.empty(n_rq, np.int64)
    rq_cnt = np.empty(n_rq, np.int64)
    for qr in range(n_rq):
        rq_run[qr] = tile_run[grp_tile[rgrp_entry[qr]]]
        rq_cnt[qr] = grp_count[rgrp_entry[qr]]
    n_grp = rgrp_ptr.shape[0] - 1
    g_mvm = np.zeros(n_grp, np.int64)  # tier MVMs of one run of each group
    for g in range(n_grp):
        for qr in range(rgrp_ptr[g], rgrp_ptr[g + 1]):
            g_mvm[g] += rq_cnt[qr] * run_len[rq_run[qr]]
    # without tier switches and event log, a run's busy time is only MVM latencies added one
    # after another: count the times each group ran and add them up at the end
    fast = not switching and not record
    g_exec = np.zeros(n_grp, np.int64)
    # DPUs (row 0) and MHA units (row 1) in one table: no array changes hands per event
    n_u = max(inp.n_dpus, inp.n_mha, 1)
    u_free = np.zeros((2, n_u), np.float64)
    u_busy = np.zeros((2, n_u), np.float64)
    nd = dpu_idx.shape[0]
    u_idx = np.empty(nd + mha_idx.shape[0], np.int64)
    u_idx[:nd] = dpu_idx
    u_idx[nd:] = mha_idx
    u_ptr = np.zeros((2, max(dpu_ptr.shape[0], mha_ptr.shape[0])), np.int64)
    u_ptr[0, :dpu_ptr.shape[0]] = dpu_ptr
    u_ptr[1, :mha_ptr.shape[0]] = mha_ptr + nd
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
    fb = np.zeros(1, np.float64)  # a time and its bits (the queue orders times by their bits)
    ib = fb.view(np.int64)
    n_queued = batch * ntok[0]
    b0 = np.empty(max(cap, n_queued), np.int64)  # the prompt's tokens, ready at once, in order
    for s in range(batch):
        for j in range(ntok[0]):
            b0[s * ntok[0] + j] = (s * per_seq + j) * n_ops + first_op
    overflow = n_queued > cap
    # buckets 1..63: linked lists of chunks of _CHUNK events (time bits, key), the first chunk
    # of a bucket the one filling; room for cap events and one part-filled chunk per bucket
    n_ch = b0.shape[0] // _CHUNK + 66
    ct = np.empty((n_ch, _CHUNK), np.int64)
    ck = np.empty((n_ch, _CHUNK), np.int64)
    cnext = np.empty(n_ch, np.int64)  # next chunk of the bucket, or of the free list
    ccount = np.zeros(n_ch, np.int64)
    for c in range(n_ch):
        cnext[c] = c + 1
    cnext[n_ch - 1] = -1
    cfree = 0  # first free chunk
    head = np.full(65, -1, np.int64)
    occupied = np.int64(0)  # bit b - 1 set: bucket b holds events
    n0 = n_queued  # events in bucket 0
    fb[0] = comm_in[first_op] + 0.0
    last = ib[0]  # the last time popped, as bits
    max_succ = 0
    for o in range(n_ops):
        if succ_ptr[o + 1] - succ_ptr[o] > max_succ:
            max_succ = succ_ptr[o + 1] - succ_ptr[o]
    # events readied by the one being handled: the next pass's tokens, and per successor one
    # event (for each token of the pass: a pass-synchronised attention) or the tokens a KV
    # consumer releases
    pend_t = np.empty(max_ntok * (max_succ + 1) + 1, np.float64)
    pend_k = np.empty(max_ntok * (max_succ + 1) + 1, np.int64)
    n_pend = 0
    while n_queued > 0 and not overflow:
        # -- pop the least (time, key)
        if n0 == 0:  # the next time: the least of the first non-empty bucket
            low = occupied & -occupied  # bit i - 1 of the first non-empty bucket i
            i = _bit_length(low)
            occupied ^= low
            c0 = head[i]
            head[i] = -1
            last = ct[c0, 0]
            c = c0
            while c >= 0:
                for ce in range(ccount[c]):
                    if ct[c, ce] < last:
                        last = ct[c, ce]
                c = cnext[c]
            c = c0
            while c >= 0:  # spread the bucket over lower ones (bucket 0: the least time)
                for ce in range(ccount[c]):
                    tb = ct[c, ce]
                    kk = ck[c, ce]
                    if tb == last:
                        i = n0
                        while i > 0 and b0[(i - 1) >> 1] > kk:
                            b0[i] = b0[(i - 1) >> 1]
                            i = (i - 1) >> 1
                        b0[i] = kk
                        n0 += 1
                    else:
                        b = _bit_length(tb ^ last)
                        cb = head[b]
                        if cb < 0 or ccount[cb] == _CHUNK:
                            nc = cfree
                            cfree = cnext[nc]
                            cnext[nc] = cb
                            ccount[nc] = 0
                            head[b] = nc
                            cb = nc
                            occupied |= np.int64(1) << (b - 1)
                        ct[cb, ccount[cb]] = tb
                        ck[cb, ccount[cb]] = kk
                        ccount[cb] += 1
                nxt = cnext[c]
                cnext[c] = cfree
                cfree = c
                c = nxt
        key = b0[0]
        n0 -= 1
        if n0 > 0:  # sift bucket 0's last key down from the root
            kk = b0[n0]
            i = 0
            while True:
                c = 2 * i + 1
                if c >= n0:
                    break
                if c + 1 < n0 and b0[c + 1] < b0[c]:
                    c += 1
                if b0[c] < kk:
                    b0[i] = b0[c]
                    i = c
                else:
                    break
            b0[i] = kk
        n_queued -= 1
        ib[0] = last
        t = fb[0]
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
            if fast:  # the loop below, less what only tier switches and the log need
                g_exec[g] += 1
                for qr in range(rgrp_ptr[g], rgrp_ptr[g + 1]):
                    c = rq_run[qr]
                    st = run_free[c]
                    if st > t:
                        m = run_len[c]
                        conflicts += m
                        stall = _repeat_add(stall, st - t, m)
                    else:
                        st = t
                    cnt = rq_cnt[qr]
                    if cnt == 1:
                        en = st + mvm_lat
                    else:
                        en = _repeat_add(st, mvm_lat, cnt)
                    run_free[c] = en
                    if en > f:
                        f = en
                n_mvm += g_mvm[g]
            else:
                for qr in range(rgrp_ptr[g], rgrp_ptr[g + 1]):  # run by run (Program.tile_run)
                    q = rgrp_entry[qr]
                    c = tile_run[grp_tile[q]]
                    m = run_len[c]
                    st = run_free[c]
                    if st > t:
                        conflicts += m
                        stall = _repeat_add(stall, st - t, m)
                    else:
                        st = t
                    en = st
                    cnt = grp_count[q]
                    if switching and (grp_switches[q] > 0 or (
                            run_tier[c] >= 0 and run_tier[c] != grp_tiers[grp_tier_ptr[q]])):
                        n_sw = 0
                        for b in range(grp_tier_ptr[q], grp_tier_ptr[q + 1]):  # block by block
                            if run_tier[c] >= 0 and run_tier[c] != grp_tiers[b]:
                                en += sw_lat
                                run_busy[c] += sw_lat
                                n_sw += 1
                            run_tier[c] = grp_tiers[b]
                            en += mvm_lat
                            run_busy[c] += mvm_lat
                        e_mvm = _repeat_add(e_mvm, sw_en, n_sw * m)  # every tile's switches
                    else:  # blocks back to back on one tier: cnt additions, as the reference adds
                        if switching:
                            run_tier[c] = grp_tiers[grp_tier_ptr[q]]
                        en = _repeat_add(en, mvm_lat, cnt)
                        run_busy[c] = _repeat_add(run_busy[c], mvm_lat, cnt)
                    n_mvm += cnt * m
                    run_free[c] = en
                    if en > f:
                        f = en
                    if record:
                        for tl in range(run_tile0[c], run_tile0[c] + m):
                            n_log = _log_event(log_f, log_i, n_log, st, en, R_TILES, tl, s, p, j,
                                               layer[o], o)
            e_mvm += grp_energy[g]
        else:
            if r == R_DPU or r == R_MHA:
                if r == R_DPU:
                    uc = 0
                    dur = lat[o]
                    e_dig += energy[o]
                else:
                    uc = 1
                    keys = pos + 1
                    if att_pass:  # one operation for every token of the pass
                        keys = pass_keys[p]
                    dur = mha_lat0 + lat[o] * keys
                    e_att += mha_en0 + energy[o] * keys
                sl = layer[o]
                best = -1
                idle = -1
                for q in range(u_ptr[uc, sl], u_ptr[uc, sl + 1]):
                    u = u_idx[q]  # ascending: the first idle unit found has the lowest index
                    if u_free[uc, u] <= t:
                        idle = u
                        break
                    elif best < 0 or u_free[uc, u] < u_free[uc, best]:
                        best = u
                unit = idle if idle >= 0 else best
                st = u_free[uc, unit]
                if st < t:
                    st = t
                f = st + dur
                u_free[uc, unit] = f
                u_busy[uc, unit] += dur
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
            # every token of pass p has released its keys/values at every layer (the last token
            # attended after all of them): the sequence's release state starts afresh
            for lyr in range(n_layers):
                ptr[s, lyr] = 0
                pmax[s, lyr] = 0.0
            if p + 1 < n_passes:
                for jj in range(ntok[p + 1]):
                    inst2 = s * per_seq + pass_base[p + 1] + jj
                    pend_t[n_pend] = fo + comm_in[first_op]
                    pend_k[n_pend] = inst2 * n_ops + first_op
                    n_pend += 1
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
                rt = fo
                js = join_slot[sc]
                if js >= 0:  # wait for every input
                    ji = ic * n_slots + js
                    if fo > jtime[ji]:
                        jtime[ji] = fo
                    jcount[ji] += 1
                    if jcount[ji] < npreds[sc]:
                        continue
                    rt = jtime[ji]
                    jcount[ji] = 0
                    jtime[ji] = 0.0
                if flags[sc] & F_KV_CONSUMER:
                    lyr = kv_layer[sc]
                    base = s * per_seq + pass_base[p]
                    if att_pass:  # wait for every token of the pass, then one operation
                        ptr[s, lyr] += 1
                        if rt > pmax[s, lyr]:
                            pmax[s, lyr] = rt
                        if ptr[s, lyr] == ntok[p]:
                            lastk = base + ntok[p] - 1
                            pend_t[n_pend] = pmax[s, lyr] + comm_in[sc]
                            pend_k[n_pend] = lastk * n_ops + sc
                            n_pend += 1
                    else:  # release every token whose keys/values and all before it exist
                        kvt[s, jc, lyr] = rt
                        while ptr[s, lyr] < ntok[p] and kvt[s, ptr[s, lyr], lyr] >= 0.0:
                            jr = ptr[s, lyr]
                            if kvt[s, jr, lyr] > pmax[s, lyr]:
                                pmax[s, lyr] = kvt[s, jr, lyr]
                            kvt[s, jr, lyr] = -1.0
                            pend_t[n_pend] = pmax[s, lyr] + comm_in[sc]
                            pend_k[n_pend] = (base + jr) * n_ops + sc
                            n_pend += 1
                            ptr[s, lyr] += 1
                else:
                    pend_t[n_pend] = rt + comm_in[sc]
                    pend_k[n_pend] = ic * n_ops + sc
                    n_pend += 1
        # -- queue the events this one readied
        if n_queued + n_pend > cap:  # no room: the caller runs again with more
            overflow = True
            break
        for q in range(n_pend):
            fb[0] = pend_t[q] + 0.0  # (-0.0 as +0.0)
            tb = ib[0]
            kk = pend_k[q]
            if tb == last:  # bucket 0: a heap of keys
                i = n0
                while i > 0 and b0[(i - 1) >> 1] > kk:
                    b0[i] = b0[(i - 1) >> 1]
                    i = (i - 1) >> 1
                b0[i] = kk
                n0 += 1
            else:
                if tb < last:
                    raise RuntimeError("engine: an event was scheduled before the current time")
                b = _bit_length(tb ^ last)
                cb = head[b]
                if cb < 0 or ccount[cb] == _CHUNK:
                    nc = cfree
                    cfree = cnext[nc]
                    cnext[nc] = cb
                    ccount[nc] = 0
                    head[b] = nc
                    cb = nc
                    occupied |= np.int64(1) << (b - 1)
                ct[cb, ccount[cb]] = tb
                ck[cb, ccount[cb]] = kk
                ccount[cb] += 1
        n_queued += n_pend
        n_pend = 0
    if fast:  # each run's blocks, added one after another (as the loop would have)
        run_blk = np.zeros(n_runs, np.int64)
        for g in range(n_grp):
            for qr in range(rgrp_ptr[g], rgrp_ptr[g + 1]):
                run_blk[rq_run[qr]] += g_exec[g] * rq_cnt[qr]
        for c in range(n_runs):
            run_busy[c] = _repeat_add(0.0, mvm_lat, run_blk[c])
    tile_busy = np.zeros(inp.n_tiles, np.float64)
    for tl in range(inp.n_tiles):
        tile_busy[tl] = run_busy[tile_run[tl]]
    n_keep = min(n_log, log_cap)
    dpu_busy = u_busy[0, :inp.n_dpus].copy()
    mha_busy = u_busy[1, :inp.n_mha].copy()
    return (makespan, token_times, tile_busy, dpu_busy, mha_busy, dram_busy, e_mvm, e_dig, e_att,
            e_dram, e_comm, conflicts, stall, n_events, n_mvm, log_f[:n_keep], log_i[:n_keep],
            n_log, overflow)


try:  # the compiled engine; the same functions run as plain Python without numba
    import numba

    # helpers inlined into the loop by numba (no call or reference-count traffic per event)
    _log_event = numba.njit(cache=True, inline="always")(_log_event_py)
    _repeat_add = numba.njit(cache=True, inline="always")(_repeat_add_py)
    _bit_length = numba.njit(cache=True, inline="always")(_bit_length_py)
    _engine = numba.njit(cache=True)(_engine_py)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    _engine = _engine_py


def queue_capacity(inp: EngineInput) -> int:
    """Events the engine's queue holds before it starts the run again with four times as many:
    every token of the longest pass of every sequence at its widest step (the most successors of
    an operation), and a margin. Memory: 32 B an event."""
    max_succ = int(np.max(np.diff(inp.succ_ptr))) if inp.succ_ptr.size > 1 else 1
    return int(inp.batch * int(np.max(inp.ntok)) * max(max_succ, 1) + 1024)


def run_engine(inp: EngineInput, *, compiled: bool = True) -> EngineOutput:
    """Run the event loop on ``inp``: compiled (default) or as plain Python (same code). The
    event queue has room for ``queue_capacity(inp)`` events; a run that needs more stops and
    starts again with four times the room (same result, more time)."""
    fn = _engine if compiled else _engine_py
    cap = queue_capacity(inp)
    while True:
        *out, overflow = fn(inp, cap)
        if not overflow:
            return EngineOutput(*out)
        cap *= 4


MAX_STATE_BYTES = 8_000_000_000
"""Default limit of :func:`simulate`'s estimated engine state, bytes (8 GB: a third of a 24 GB
machine); pass ``max_state_bytes`` to raise it."""


def state_bytes_estimate(model: ModelSpec, chip: ChipConfig, workload: Workload,
                         max_events_logged: int = 2_000_000) -> int:
    """A conservative bound of the memory a run needs, bytes, from the inputs alone (no
    allocation): what the previous engine (:mod:`~aimoe_lib.simulator.engine_v1`) held, which
    bounds this engine's state (:func:`engine_state_bytes`, what :func:`simulate`'s
    ``max_state_bytes`` guards) from above: 16 B per (token instance, operation) for
    pending-predecessor counts and ready times, 8 B per (token instance, layer) of KV-ready
    times, the routed experts (8 B per sequence, position, MoE layer and pick), 16 B per tile and
    unit, and the event log when recorded (72 B per event), and 16 B per entry of the units each
    layer may use (every unit for every layer when pooled). Token instances are batch x the tokens
    of every pass; operations are bounded by the layer's steps (8 + 3 per expert a token runs)
    plus the embedding and the head."""
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


def engine_state_bytes(model: ModelSpec, chip: ChipConfig, workload: Workload,
                       max_events_logged: int = 2_000_000) -> int:
    """Memory this engine holds for a run, bytes, from the inputs alone: 16 B per token instance
    for the (count, time) join slot of a MoE layer's combination (none for a dense model), the
    KV-ready times of one pass (8 B per sequence, token of the longest pass and layer), the
    release pointers (16 B per sequence and layer), the event queue (32 B per event of
    ``queue_capacity``: every token of the longest pass of every sequence times the most
    successors of an operation, the routed and shared experts of a MoE layer, at least 2) and the
    events one event readies (16 B per token of the longest pass and successor), the routed
    experts (2 B per sequence, position, MoE layer and pick, twice while they are transposed),
    the token times (8 B per generated token), 40 B per tile and the units' sets, and the event
    log when recorded (72 B per event). Nothing grows with tokens x operations (unlike the
    previous engine's tables, :func:`state_bytes_estimate`)."""
    w = workload
    lay_max = max(w.prompt_len, 1) if w.kv_cache else w.prompt_len + w.gen_len - 1
    per_seq = (w.prompt_len + w.gen_len - 1 if w.kv_cache
               else w.gen_len * w.prompt_len + w.gen_len * (w.gen_len - 1) // 2)
    n_inst = w.batch * per_seq
    n_moe = model.n_layers if model.is_moe else 0
    branches = (model.top_k + model.n_shared_experts) if model.is_moe else 1
    n_ops = 6 + model.n_layers * (8 + 3 * branches)
    succ = max(branches, 2)
    total = (16 * n_inst * (1 if model.is_moe else 0)
             + 8 * w.batch * lay_max * model.n_layers + 16 * w.batch * model.n_layers
             + 32 * (w.batch * lay_max * succ + 1024) + 16 * lay_max * (succ + 1)
             + 4 * w.batch * w.positions * n_moe * max(model.top_k, 1)
             + 8 * w.batch * w.gen_len
             + 40 * chip.n_tiles + 16 * (chip.n_dpus + chip.n_mha_units)
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

    A run whose engine state (:func:`engine_state_bytes`) would exceed ``max_state_bytes`` is
    refused before any work, with the estimate."""
    need = engine_state_bytes(model, chip, workload, max_events_logged) \
        if isinstance(workload, Workload) and isinstance(chip, ChipConfig) \
        and isinstance(model, ModelSpec) else 0
    if need > max_state_bytes:
        raise ValueError(
            f"simulate: this run needs about {need / 1e9:,.1f} GB of engine state (batch "
            f"{workload.batch} x {need // max(workload.batch, 1):,} bytes per sequence: the "
            f"tokens of its longest pass in flight, the routed experts of every position), more "
            f"than max_state_bytes="
            f"{max_state_bytes / 1e9:,.1f} GB; simulate fewer sequences or tokens (or use the KV "
            f"cache), or raise max_state_bytes")
    prog = build_program(model, chip, mapping, workload)
    cap = max_events_logged if workload.record_events else 1
    out = run_engine(engine_input(prog, cap))
    return make_result(prog, out, max_events_logged)
