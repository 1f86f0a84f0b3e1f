"""What the simulator runs: the :class:`Workload`, its passes, and a token's operation graph.

**The operation graph of one token** (:class:`Program`). Per layer: layer norm (DPU) -> Q/K/V MVMs
(tiles) -> partial-sum accumulation (DPU) -> [KV-cache read/write in DRAM] -> attention (an MHA
unit, over all keys so far) -> output-projection MVMs -> accumulation, residual add and layer norm
(DPU) -> FFN. Dense: up (and gate) MVMs -> accumulation and activation (DPU) -> down MVMs. MoE:
router MVM -> softmax and top-k (DPU) -> for each of the k chosen experts (and each shared expert):
up/gate MVMs -> activation -> down MVMs -> one DPU op accumulating the expert outputs, weighting
and adding them, adding the residual and normalising for the next layer. After the last layer,
the last token of each pass runs the LM head MVM and sampling (DPU). Consecutive digital steps of
one token are one DPU task. Matrices made digital at mapping time (router, attention, LM head) run
as DPU tasks costed by :meth:`~aimoe_lib.hardware.CostModel.digital_mvm`. Every operation has a
:class:`Step` (what it does), a resource class (``R_*``) and flags (``F_*``).

**Passes** (:func:`pass_layout`, the one home of this rule). With a KV cache, pass 0 is the
prefill of the prompt (all its tokens available at time 0; token i attends after the keys/values
of tokens 0..i at that layer exist) and produces the first generated token; pass g >= 1 processes
generated token g alone and starts when pass g-1's sampling finishes. Without a KV cache, pass g
re-runs the whole prefix (prompt + g generated tokens) prefill-style.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import NamedTuple

import numpy as np

from .. import checks
from .. import routing as routing_mod
from ..hardware import AttentionSync, ChipConfig, KVPlacement, OpKind, PartialSums, UnitAssignment
from ..mapping import Mapping
from ..models import AttentionKind, ModelSpec, Role, Stack
from ..routing import moe_layer_keys as _moe_layer_keys

__all__ = ["Workload", "PassLayout", "pass_layout", "Step", "Program", "build_program",
           "kv_cache_bytes", "kv_spill_fraction",
           "RES_NAMES", "R_TILES", "R_DPU", "R_MHA", "R_DRAM",
           "F_KV_CONSUMER", "F_HEAD", "F_FIRST", "F_LAST"]

# Resource classes of an operation (index into RES_NAMES).
R_TILES, R_DPU, R_MHA, R_DRAM = 0, 1, 2, 3
RES_NAMES = ("tiles", "dpu", "mha", "dram")
"""Names of the resource classes, indexed by ``R_TILES``, ``R_DPU``, ``R_MHA``, ``R_DRAM``."""

# Operation flags (bits of Program.flags).
F_KV_CONSUMER = 1
"""The operation reads the keys/values of its layer: in a prefill, token i waits for tokens 0..i."""
F_HEAD = 2
"""The operation runs for the last token of a pass only (LM head and sampling)."""
F_FIRST = 4
"""The first operation of a token (embedding and first layer norm)."""
F_LAST = 8
"""The last operation of a token (sampling): its end is the generated token's time."""


class Step(IntEnum):
    """What an operation of the token program does (the ``kind`` of :class:`Program`)."""

    EMBED_NORM = 0
    QKV_A = 1
    LATENT_NORM = 2
    QKV_B = 3
    QKV = 4
    ACC_QKV = 5
    KV_DRAM = 6
    ATTENTION = 7
    O_PROJ = 8
    ADD_NORM = 9
    FFN_UP = 10
    FFN_ACT = 11
    FFN_DOWN = 12
    FFN_ADD_NORM = 13
    ROUTER = 14
    TOPK = 15
    EXPERT_UP = 16
    EXPERT_ACT = 17
    EXPERT_DOWN = 18
    SHARED_UP = 19
    SHARED_ACT = 20
    SHARED_DOWN = 21
    COMBINE = 22
    LM_HEAD = 23
    SAMPLE = 24
    EMBED = 25
    FINAL_NORM = 26

    @property
    def label(self) -> str:
        """Short name used in operation names and figure legends (``'expert_up'``)."""
        return _STEP_LABELS[self]


_STEP_LABELS = {
    Step.EMBED_NORM: "embed+ln1", Step.QKV_A: "qkv_a", Step.LATENT_NORM: "latent_norm",
    Step.QKV_B: "qkv_b", Step.QKV: "qkv", Step.ACC_QKV: "acc_qkv", Step.KV_DRAM: "kv_dram",
    Step.ATTENTION: "attention", Step.O_PROJ: "o", Step.ADD_NORM: "add+ln2",
    Step.FFN_UP: "ffn_up", Step.FFN_ACT: "act", Step.FFN_DOWN: "ffn_down",
    Step.FFN_ADD_NORM: "add+ln", Step.ROUTER: "router", Step.TOPK: "topk",
    Step.EXPERT_UP: "expert_up", Step.EXPERT_ACT: "expert_act", Step.EXPERT_DOWN: "expert_down",
    Step.SHARED_UP: "shared_up", Step.SHARED_ACT: "shared_act", Step.SHARED_DOWN: "shared_down",
    Step.COMBINE: "combine+add+ln", Step.LM_HEAD: "lm_head", Step.SAMPLE: "sample",
    Step.EMBED: "embed", Step.FINAL_NORM: "final_norm",
}


# ============================================================================ the workload
class PassLayout(NamedTuple):
    """Token instances of one sequence, pass by pass (from :func:`pass_layout`). An instance is
    one token of one pass; instance ``i`` of sequence ``s`` has global index ``s * per_seq + i``."""

    ntok: np.ndarray
    """(n_passes,) tokens processed in each pass."""
    pass_base: np.ndarray
    """(n_passes + 1,) first instance of each pass; the last entry is ``per_seq``."""
    inst_pass: np.ndarray
    """(per_seq,) pass of each instance."""
    inst_tok: np.ndarray
    """(per_seq,) token index of each instance within its pass."""
    inst_pos: np.ndarray
    """(per_seq,) position in the sequence of each instance (the key count its attention reads
    is ``position + 1``)."""

    @property
    def per_seq(self) -> int:
        """Token instances of one sequence over all passes."""
        return int(self.pass_base[-1])


def pass_layout(workload: Workload) -> PassLayout:
    """The passes of one sequence of ``workload``: the one place where tokens per pass and token
    positions are decided (module docstring), used by the engine, the reference and the traces."""
    w = workload
    p = np.arange(w.gen_len, dtype=np.int64)
    ntok = np.where(p == 0, w.prompt_len, 1) if w.kv_cache else w.prompt_len + p
    ntok = ntok.astype(np.int64)
    pass_base = np.zeros(w.gen_len + 1, dtype=np.int64)
    np.cumsum(ntok, out=pass_base[1:])
    inst_pass = np.repeat(p, ntok)
    inst_tok = np.arange(pass_base[-1], dtype=np.int64) - pass_base[inst_pass]
    if w.kv_cache:
        inst_pos = np.where(inst_pass == 0, inst_tok, w.prompt_len + inst_pass - 1)
    else:
        inst_pos = inst_tok.copy()
    return PassLayout(ntok, pass_base, inst_pass, inst_tok, inst_pos.astype(np.int64))


@dataclass(frozen=True, eq=False)
class Workload:
    """What to run: ``batch`` independent sequences, each a prompt of ``prompt_len`` tokens and
    ``gen_len`` generated tokens."""

    batch: int = 1
    """Independent sequences run together."""
    prompt_len: int = 1
    """Prompt tokens per sequence (prefilled in pass 0)."""
    gen_len: int = 1
    """Generated tokens per sequence (the first comes out of the prefill pass)."""
    kv_cache: bool = True
    """Keep keys/values of past tokens (where: ChipConfig.kv_placement); without it every pass
    re-runs the whole prefix."""
    routing: str | routing_mod.RoutingSpec = "uniform"
    """Expert choice: 'uniform', 'zipf', or a RoutingSpec (zipf exponent, co-activation, trace)."""
    seed: int = 0
    """Seed of the routing."""
    record_events: bool = False
    """Keep the event log (start, end, resource) for Gantt charts."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        for f in ("batch", "prompt_len", "gen_len"):
            set_(f, checks.integer("Workload", f, getattr(self, f), minimum=1,
                                   maximum=checks.INT32_MAX,
                                   fix="a run needs at least one sequence, prompt token and "
                                       "generated token"))
        set_("kv_cache", checks.boolean("Workload", "kv_cache", self.kv_cache))
        set_("record_events", checks.boolean("Workload", "record_events", self.record_events))
        set_("seed", checks.seed("Workload", "seed", self.seed))
        if not isinstance(self.routing, routing_mod.RoutingSpec):
            checks.choice("Workload", "routing", self.routing, ("uniform", "zipf"),
                          fix="use 'uniform' or 'zipf', or a routing.RoutingSpec (co-activation, "
                              "trace)")

    @property
    def n_passes(self) -> int:
        """Passes per sequence: one per generated token."""
        return self.gen_len

    @property
    def positions(self) -> int:
        """Sequence positions a run touches: the prompt and every generated token but the last
        (which is sampled, never processed)."""
        return self.prompt_len + self.gen_len - 1

    @cached_property
    def layout(self) -> PassLayout:
        """The passes of one sequence (:func:`pass_layout`)."""
        return pass_layout(self)

    def _check_pass(self, p: int) -> None:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 0 <= p < self.gen_len:
            raise ValueError(f"pass {p!r}: the workload has passes 0..{self.gen_len - 1}")

    def tokens_in_pass(self, p: int) -> int:
        """Tokens processed in pass ``p`` of one sequence."""
        self._check_pass(p)
        return int(self.layout.ntok[p])

    def position(self, p: int, j: int) -> int:
        """Position in the sequence of the j-th token of pass p."""
        n = self.tokens_in_pass(p)
        if isinstance(j, bool) or not isinstance(j, int | np.integer) or not 0 <= j < n:
            raise ValueError(f"token {j!r}: pass {p} has tokens 0..{n - 1}")
        return int(self.layout.inst_pos[self.layout.pass_base[p] + j])


# ============================================================================ the token program
@dataclass(frozen=True, eq=False)
class Program:
    """A token's operation graph and everything the engines need, as flat numpy arrays (one entry
    per operation unless said otherwise)."""

    names: tuple
    """Readable name of each operation (``'L3.expert_up[1]'``)."""
    kind: np.ndarray
    """:class:`Step` of each operation (int)."""
    res: np.ndarray
    """Resource class (``R_*``)."""
    group: np.ndarray
    """Fixed tile group of an ``R_TILES`` op, else -1 (routed experts: -1, chosen per token)."""
    moe: np.ndarray
    """MoE layer index of a routed-expert op, else -1."""
    branch: np.ndarray
    """Routed branch 0..k-1 of a routed-expert op, else -1."""
    stage: np.ndarray
    """0 up/gate, 1 down (routed-expert ops)."""
    lat: np.ndarray
    """Fixed latency in ns (DPU); per key (MHA); ns per byte (DRAM)."""
    energy: np.ndarray
    """Fixed energy in pJ (DPU); per key (MHA); per byte (DRAM)."""
    comm_in: np.ndarray
    """Transfer latency into the op, ns."""
    comm_out: np.ndarray
    """Transfer latency out of the op, ns."""
    comm_energy: np.ndarray
    """Transfer energy of the op's edges, pJ."""
    layer: np.ndarray
    """Layer slot (units locked per layer); ``n_layers`` for the LM head and sampling."""
    npreds: np.ndarray
    """Predecessors of each op."""
    succ_ptr: np.ndarray
    """Successors of op o: ``succ[succ_ptr[o]:succ_ptr[o + 1]]``."""
    succ: np.ndarray
    """Successor lists, concatenated."""
    flags: np.ndarray
    """Bits ``F_KV_CONSUMER``, ``F_HEAD``, ``F_FIRST``, ``F_LAST``."""
    kv_layer: np.ndarray
    """Layer of a KV consumer op, else -1."""
    grp_ptr: np.ndarray
    """Tile groups: group g is tiles ``grp_tile[grp_ptr[g]:grp_ptr[g + 1]]``."""
    grp_tile: np.ndarray
    """Tiles of the groups, concatenated."""
    grp_count: np.ndarray
    """Blocks of the group on each of those tiles (run back to back)."""
    grp_tiers: np.ndarray
    """Tiers of the blocks of every group entry q (a tile of a group), in the order they run,
    concatenated: entry q's are ``grp_tiers[grp_tier_ptr[q]:grp_tier_ptr[q + 1]]``."""
    grp_energy: np.ndarray
    """MVM energy of one run of each group, pJ."""
    expert_gid: np.ndarray
    """(n_moe, 2, E) tile group of expert e's up (0) / down (1) MVMs."""
    choices: np.ndarray
    """(batch, positions, n_moe, k) routed experts (int16, or int32 beyond 32,768 experts)."""
    dram_bytes_per_key: float
    """KV bytes per past token and layer (DRAM traffic per key)."""
    mha_op_latency_ns: float
    """Fixed latency of one attention operation (``lat`` adds the per-key part)."""
    mha_op_energy_pj: float
    """Fixed energy of one attention operation (``energy`` adds the per-key part)."""
    attention_pass: bool
    """One attention per layer and pass after all its tokens' Q/K/V (``AttentionSync.PASS``),
    else causal streaming."""
    mvm_latency_ns: float
    """Latency of one tier MVM."""
    tier_switch_latency_ns: float
    """Extra latency when a tile changes tier."""
    tier_switch_energy_pj: float
    """Extra energy of a tier switch."""
    n_layers: int
    """Transformer layers of the model."""
    unit_ptr: tuple
    """Per unit class (DPU, MHA): CSR pointers of the units each layer slot may use."""
    unit_idx: tuple
    """Per unit class (DPU, MHA): the unit indices, ascending within a slot."""
    n_units: tuple
    """(DPUs, MHA units) of the chip."""
    n_tiles: int
    """Tiles of the chip."""
    workload: Workload
    """The workload this program was built for."""
    passive_power_w: float
    """Static power of the chip, W (no power gating)."""
    unit_power_w: float
    """Static power of one DPU or attention unit, W."""
    tile_power_w: float
    """Static power of one tile, W."""
    idle_power_fraction: float
    """Fraction of a unit's or tile's static power drawn while idle (1 = no gating)."""
    chip_area_mm2: float
    """Area of the chip that runs the program, mm²."""
    n_dies: int
    """Dies the chip is split into (1 without a reticle limit, :attr:`~aimoe_lib.hardware.ChipConfig.n_dies`)."""
    peak_scratchpad_bytes: int
    """On-chip SRAM the run needs at its peak."""

    @property
    def n_ops(self) -> int:
        """Operations of one token."""
        return len(self.names)

    @cached_property
    def grp_tier_ptr(self) -> np.ndarray:
        """Offsets of each group entry's tiers in ``grp_tiers`` (the running sum of
        ``grp_count``)."""
        ptr = np.zeros(self.grp_count.size + 1, dtype=np.int64)
        np.cumsum(self.grp_count, out=ptr[1:])
        return ptr

    @cached_property
    def preds(self) -> tuple[tuple[int, ...], ...]:
        """Predecessors of every operation (inverse of the successor lists)."""
        out: list[list[int]] = [[] for _ in range(self.n_ops)]
        for o in range(self.n_ops):
            for q in self.succ[self.succ_ptr[o]:self.succ_ptr[o + 1]]:
                out[int(q)].append(o)
        return tuple(tuple(p) for p in out)

    @cached_property
    def _tile_runs(self) -> tuple[np.ndarray, ...]:
        """(run_tile0, run_len, tile_run, rgrp_ptr, rgrp_entry): see :attr:`tile_run`."""
        n_t = self.n_tiles
        n_q = self.grp_tile.size
        gid = np.repeat(np.arange(self.grp_ptr.size - 1, dtype=np.int64), np.diff(self.grp_ptr))
        tile, cnt = self.grp_tile, self.grp_count
        switching = self.tier_switch_latency_ns > 0 or self.tier_switch_energy_pj > 0
        if switching:  # the tiers a tile runs each group's blocks on matter too
            ids: dict = {}
            tp = self.grp_tier_ptr
            seq = np.array([ids.setdefault(tuple(self.grp_tiers[tp[q]:tp[q + 1]].tolist()),
                                           len(ids)) for q in range(n_q)], dtype=np.int64)
        else:
            seq = np.zeros(n_q, dtype=np.int64)
        order = np.lexsort((seq, cnt, gid, tile))
        g_s, c_s, k_s, t_s = gid[order], cnt[order], seq[order], tile[order]
        per_tile = np.bincount(t_s, minlength=n_t).astype(np.int64)
        # tile t + 1 continues tile t's run when both hold the same (group, blocks, tiers) list
        same = np.zeros(n_t, dtype=bool)
        if n_t > 1:
            same[1:] = per_tile[1:] == per_tile[:-1]
            e = np.arange(n_q, dtype=np.int64)
            te = t_s
            cand = (te > 0) & same[te]
            prev = e[cand] - per_tile[te[cand] - 1]
            cur = e[cand]
            bad = ((g_s[cur] != g_s[prev]) | (c_s[cur] != c_s[prev]) | (k_s[cur] != k_s[prev]))
            same[np.unique(te[cand][bad])] = False
        same[0] = False
        tile_run = np.cumsum(~same) - 1
        run_tile0 = np.flatnonzero(~same).astype(np.int64)
        run_len = np.diff(np.append(run_tile0, n_t)).astype(np.int64)
        # each group's entries (ascending tile) merged run by run
        run_of_q = tile_run[tile]
        first = np.ones(n_q, dtype=bool)
        if n_q > 1:
            first[1:] = (run_of_q[1:] != run_of_q[:-1])
        first[self.grp_ptr[:-1][np.diff(self.grp_ptr) > 0]] = True
        rgrp_entry = np.flatnonzero(first).astype(np.int64)
        rgrp_ptr = np.searchsorted(rgrp_entry, self.grp_ptr).astype(np.int64)
        return run_tile0, run_len, tile_run.astype(np.int64), rgrp_ptr, rgrp_entry

    @property
    def tile_run(self) -> np.ndarray:
        """Run of each tile. A *run* is a maximal range of consecutive tiles that hold blocks of
        the same groups, the same number on each (and, with a tier-switch cost, on the same
        tiers): every operation reaches all of its tiles or none, so they stay in the same state
        and the engine advances them as one, times their count (:attr:`run_len`), in the same
        order the per-tile loop would."""
        return self._tile_runs[2]

    @property
    def run_tile0(self) -> np.ndarray:
        """First tile of each run (:attr:`tile_run`)."""
        return self._tile_runs[0]

    @property
    def run_len(self) -> np.ndarray:
        """Tiles in each run (:attr:`tile_run`)."""
        return self._tile_runs[1]

    @property
    def rgrp_ptr(self) -> np.ndarray:
        """Groups by run: group g's runs are entries ``rgrp_entry[rgrp_ptr[g]:rgrp_ptr[g + 1]]``."""
        return self._tile_runs[3]

    @property
    def rgrp_entry(self) -> np.ndarray:
        """For each run of a group, the group entry (index into ``grp_tile``) of its first tile."""
        return self._tile_runs[4]

    @cached_property
    def join_slot(self) -> np.ndarray:
        """Slot of each *join* (an operation with two or more predecessors) in a token instance's
        join state, else -1. Two joins share a slot only when they can never wait at the same
        time: every predecessor of the later one descends from the earlier one (so it is ready
        before the later one's first input arrives). Greedy colouring in graph order; the
        engine keeps ``n_join_slots`` (count, ready time) pairs per token instance instead of a
        pair per operation."""
        n = self.n_ops
        slot = np.full(n, -1, dtype=np.int64)
        joins = [o for o in range(n) if self.npreds[o] >= 2]
        if not joins:
            return slot
        desc = [0] * n  # bit set of each op and the ops that descend from it
        for o in reversed(range(n)):  # successors come later in graph order
            d = 1 << o
            for q in self.succ[self.succ_ptr[o]:self.succ_ptr[o + 1]]:
                d |= desc[int(q)]
            desc[o] = d
        preds = self.preds

        def ordered(a: int, b: int) -> bool:  # b waits only after a is ready
            return all((desc[a] >> p) & 1 for p in preds[b])

        for i, b in enumerate(joins):
            taken = {int(slot[a]) for a in joins[:i] if not ordered(a, b) and not ordered(b, a)}
            slot[b] = next(c for c in range(len(joins)) if c not in taken)
        return slot

    @property
    def n_join_slots(self) -> int:
        """Join slots per token instance (:attr:`join_slot`): 0 without joins."""
        return int(self.join_slot.max()) + 1 if self.n_ops else 0

    def op_index(self, flag: int) -> int:
        """The operation carrying ``flag`` (``F_FIRST`` or ``F_LAST``: there is exactly one)."""
        return int(np.flatnonzero(self.flags & flag)[0])

    def tile_group(self, op: np.ndarray, seq: np.ndarray, pass_: np.ndarray,
                   token: np.ndarray) -> np.ndarray:
        """Tile group each tile operation instance ran: its fixed group, or for a routed expert the
        group of the expert the token was routed to."""
        op = np.asarray(op)
        g = self.group[op].copy()
        ex = g < 0
        if np.any(ex):
            lay = self.workload.layout
            pos = lay.inst_pos[lay.pass_base[np.asarray(pass_)[ex]] + np.asarray(token)[ex]]
            oe = op[ex]
            choice = self.choices[np.asarray(seq)[ex], pos, self.moe[oe], self.branch[oe]]
            g[ex] = self.expert_gid[self.moe[oe], self.stage[oe], choice]
        return g


# ============================================================================ building it
class _Builder:
    """Collects operations and tile groups while the blocks of the model are added."""

    def __init__(self, model: ModelSpec, chip: ChipConfig, mapping: Mapping,
                 workload: Workload) -> None:
        self.model, self.chip, self.mapping, self.workload = model, chip, mapping, workload
        self.cost, self.rows = chip.cost, chip.tier_rows
        self.analog = {m.name for m in mapping.matrices}
        self.ops: list[dict] = []
        self.groups: list[list[tuple[int, int]]] = []
        self.group_tiers: list[np.ndarray] = []
        self.group_energy: list[float] = []
        self.act_kind = {"gelu": OpKind.GELU, "relu": OpKind.RELU,
                         "silu": OpKind.SILU}[model.ffn.activation]

    # ---------------------------------------------------------------- costs
    def cost_sum(self, *items) -> tuple[float, float]:
        """Latency and energy of digital steps done one after another on one DPU."""
        lat = en = 0.0
        for op_kind, length, *extra in items:
            c = self.cost.cost(op_kind, length, *extra)
            lat, en = lat + c.latency_ns, en + c.energy_pj
        return lat, en

    def comm(self, length) -> tuple[float, float]:
        """One transfer of ``length`` elements: (latency, energy)."""
        c = self.cost.cost(OpKind.COMM, max(int(length), 1))
        return (c.latency_ns, c.energy_pj)

    def tile_comm(self, mats, placed=None):
        """Transfers of an MVM on tiles: every tile gets its slice of the input (at most ``rows``
        elements) and sends its partial output (at most ``cols``) over its own link, in parallel;
        latency is one slice's, energy every element's (assumption A-COMM-PARALLEL). On a chip of
        several dies, the share of the blocks of ``placed`` (default ``mats``; a routed expert
        passes every expert of its stage) away from the home die adds a die-to-die crossing each
        way: the link latency if any block is away, energy for the share that crosses
        (A-D2D-HOME)."""
        rows, cols = self.rows, self.chip.tier_cols
        n_in = sum(m.in_features * -(-m.out_features // cols) for m in mats)
        n_out = sum(m.out_features * -(-m.in_features // rows) for m in mats)
        s_in = min(max(m.in_features for m in mats), rows)
        s_out = min(max(m.out_features for m in mats), cols)
        f = self.crossing(mats if placed is None else placed)
        x_in, x_out = self.d2d(n_in, s_in, f), self.d2d(n_out, s_out, f)
        return ((self.comm(s_in)[0] + x_in[0], self.comm(n_in)[1] + x_in[1]),
                (self.comm(s_out)[0] + x_out[0], self.comm(n_out)[1] + x_out[1]))

    # ---------------------------------------------------------------- dies
    @staticmethod
    def die_key(m) -> tuple:
        """The part of the model a matrix belongs to for die placement: its (stack, layer), or
        the embedding / LM head."""
        return (m.stack.value, m.layer) if m.layer >= 0 else (m.role.value,)

    @cached_property
    def home_die(self) -> dict:
        """Die of each layer's digital units (and of the embedding / LM head): the die that holds
        most of that part's analog blocks (lowest die on a tie; die 0 for a part without analog
        blocks). Assumption A-D2D-HOME."""
        chip, mp = self.chip, self.mapping
        if chip.n_dies == 1:
            return {}
        keys = [self.die_key(m) for m in mp.matrices]
        uniq = sorted(set(keys), key=str)
        kid = np.array([uniq.index(k) for k in keys], dtype=np.int64)
        counts = np.zeros((len(uniq), chip.n_dies), dtype=np.int64)
        np.add.at(counts, (kid[mp.block_matrix], chip.die_of_tile(mp.tile)), 1)
        return {k: int(np.argmax(counts[i])) for i, k in enumerate(uniq)}

    def d2d(self, n_elements: float, slice_elements: int, f_cross: float = 1.0
            ) -> tuple[float, float]:
        """A transfer of ``n_elements`` across a die boundary, ``f_cross`` of it crossing:
        latency (the link's fixed latency plus one ``slice_elements`` slice serialised at its
        bandwidth) and energy (the crossing bits at pJ per bit)."""
        if f_cross <= 0:
            return 0.0, 0.0
        c = self.cost
        bits = c.activation_bits
        lat = c.d2d_latency_ns + slice_elements * bits / (8.0 * c.d2d_bandwidth_gb_s)
        return lat, f_cross * n_elements * bits * c.d2d_energy_pj_per_bit

    def crossing(self, mats) -> float:
        """Fraction of the blocks of ``mats`` on a die other than their part's home die."""
        if self.chip.n_dies == 1:
            return 0.0
        analog = [m for m in mats if m.name in self.analog]
        if not analog:
            return 0.0
        home = self.home_die[self.die_key(analog[0])]
        tiles = np.concatenate([self.mapping.blocks(m.name)["tile"] for m in analog])
        return float(np.mean(self.chip.die_of_tile(tiles) != home))

    def residual_crossing(self, op: int, src_key: tuple, dst_key: tuple) -> None:
        """Charge the residual stream (d_model elements) leaving ``op`` for another die when the
        next part's home die differs from this part's."""
        hd = self.home_die
        if not hd or hd.get(src_key, 0) == hd.get(dst_key, 0):
            return
        d = self.model.d_model
        lat, en = self.d2d(d, d)
        self.ops[op]["comm_out"] += lat
        self.ops[op]["comm_energy"] += en

    def acc(self, mats) -> tuple[float, float]:
        """Digital accumulation of partial sums of the analog matrices among ``mats`` that span
        several input blocks, by :class:`~aimoe_lib.hardware.PartialSums`: one add of length
        out x (row blocks - 1) (A-ACC-DPU); a chain or a tree of (row blocks - 1) adds of length
        out (latency: all of them, or ceil(log2(row blocks)) of them); or in the periphery (the
        adds' energy, no DPU time, A-ACC-PERIPHERY)."""
        mode = self.chip.dataflow.partial_sums
        lat = en = 0.0
        for m in mats:
            if m.name not in self.analog:
                continue
            nrb = -(-m.in_features // self.rows)
            if nrb > 1:
                if mode is PartialSums.ONE_ADD:
                    c = self.cost.cost(OpKind.ADD, m.out_features * (nrb - 1))
                    lat, en = lat + c.latency_ns, en + c.energy_pj
                    continue
                c = self.cost.cost(OpKind.ADD, m.out_features)
                depth = {PartialSums.CHAIN: nrb - 1, PartialSums.TREE: math.ceil(math.log2(nrb)),
                         PartialSums.PERIPHERY: 0}[mode]
                lat, en = lat + c.latency_ns * depth, en + c.energy_pj * (nrb - 1)
        return lat, en

    def act(self, width: int) -> tuple[float, float]:
        """The FFN activation over ``width`` elements (times the gate for gated FFNs)."""
        gated = ((OpKind.MUL, width),) if self.model.ffn.gated else ()
        return self.cost_sum((self.act_kind, width), *gated)

    # ---------------------------------------------------------------- ops
    def op(self, step: Step, layer_name, res, preds, *, layer, lat=0.0, energy=0.0, group=-1,
           moe=-1, branch=-1, stage=0, comm_in=(0.0, 0.0), comm_out=(0.0, 0.0), flags=0,
           kv_layer=-1, index=None) -> int:
        """Add one operation; its name is ``L<layer>.<step label>[<index>]``."""
        name = step.label if layer_name is None else f"L{layer_name}.{step.label}"
        if index is not None:
            name += f"[{index}]"
        self.ops.append(dict(name=name, kind=int(step), res=res, preds=list(preds), layer=layer,
                             lat=lat, energy=energy, group=group, moe=moe, branch=branch,
                             stage=stage, comm_in=comm_in[0], comm_out=comm_out[0],
                             comm_energy=comm_in[1] + comm_out[1], flags=flags,
                             kv_layer=kv_layer))
        return len(self.ops) - 1

    def dpu(self, step: Step, layer: int, preds, cost: tuple[float, float], *,
            layer_name="same", **kw) -> int:
        """A DPU task of ``cost`` = (latency, energy)."""
        name = layer if layer_name == "same" else layer_name
        return self.op(step, name, R_DPU, preds, layer=layer, lat=cost[0], energy=cost[1], **kw)

    def group(self, mats, first_row_block: bool = False) -> int:
        """A new tile group holding the blocks of ``mats`` (only their first row of blocks with
        ``first_row_block``: a one-hot input selects one row); returns its index."""
        parts = [self.mapping.blocks(m.name) for m in mats]
        if first_row_block:
            parts = [{k: v[b["row_block"] == 0] for k, v in b.items()} for b in parts]
        tiles = np.concatenate([b["tile"] for b in parts])
        tiers = np.concatenate([b["tier"] for b in parts])
        uniq, counts = np.unique(tiles, return_counts=True)
        self.groups.append(list(zip(uniq.tolist(), counts.tolist())))
        # the blocks' tiers tile by tile (ascending tile, block order within a tile)
        self.group_tiers.append(tiers[np.argsort(tiles, kind="stable")])
        self.group_energy.append(self._blocks_energy(parts, int(tiles.size)))
        return len(self.groups) - 1

    def _blocks_energy(self, parts, n_blocks: int) -> float:
        """MVM energy of running every block once (:meth:`~aimoe_lib.hardware.CostModel.mvm` of
        each block's used rows and columns); shape-independent costs as n x one tier's."""
        c = self.cost
        if not (c.mvm_energy_pj_per_row or c.mvm_energy_pj_per_column or c.mvm_energy_pj_per_cell):
            return n_blocks * c.mvm(1, 1).energy_pj
        return float(sum(c.mvm(int(r), int(k)).energy_pj
                         for b in parts for r, k in zip(b["rows"], b["cols"], strict=True)))

    def mvm(self, step: Step, layer: int, mats, preds, *, layer_name="same", index=None,
            **kw) -> int:
        """An MVM over ``mats``: all analog -> one tile group; all digital -> one DPU task."""
        name = layer if layer_name == "same" else layer_name
        is_analog = [m.name in self.analog for m in mats]
        if all(is_analog):
            c_in, c_out = self.tile_comm(mats)
            return self.op(step, name, R_TILES, preds, layer=layer, group=self.group(mats),
                           comm_in=c_in, comm_out=c_out, index=index, **kw)
        if any(is_analog):
            raise ValueError(f"L{layer}.{step.label}: mixes analog and digital matrices")
        lat = sum(self.cost.digital_mvm(m.in_features, m.out_features).latency_ns for m in mats)
        en = sum(self.cost.digital_mvm(m.in_features, m.out_features).energy_pj for m in mats)
        return self.op(step, name, R_DPU, preds, layer=layer, lat=lat, energy=en, index=index,
                       **kw)


def _by_role(ms, *roles):
    return [m for m in ms if m.role in roles and m.expert < 0]


def _routed_ffn_mats(ms, n_experts: int) -> list:
    """``_ffn_mats(ms, e, shared=False)`` for every routed expert e, in one pass over ``ms``."""
    em: list[list] = [[] for _ in range(n_experts)]
    for m in ms:
        if m.is_routed_expert:
            em[m.expert].append(m)
    return [([m for m in x if m.role in (Role.FFN_GATE, Role.FFN_UP)],
             [m for m in x if m.role is Role.FFN_DOWN]) for x in em]


def _ffn_mats(ms, expert: int, *, shared: bool):
    """(up/gate matrices, down matrices) of routed expert or shared expert ``expert``."""
    em = [m for m in ms if m.expert == expert and (m.shared if shared else m.is_routed_expert)]
    return ([m for m in em if m.role in (Role.FFN_GATE, Role.FFN_UP)],
            [m for m in em if m.role is Role.FFN_DOWN])


def _attention(b: _Builder, layer: int, ms, prev: int, kv_dram: bool) -> int:
    """Q/K/V (or MLA's latent projections), KV cache, attention and output projection; returns
    the op after the output projection's accumulation, residual add and second layer norm."""
    model, d = b.model, b.model.d_model
    if model.attention is AttentionKind.MLA:
        first = _by_role(ms, Role.Q_A, Role.Q, Role.KV_A)
        second = _by_role(ms, Role.Q_B, Role.KV_B)
        a = b.mvm(Step.QKV_A, layer, first, [prev])
        l1, e1 = b.acc(first)
        norms = [(OpKind.LAYERNORM, model.kv_lora_rank)]
        if model.q_lora_rank:
            norms.append((OpKind.LAYERNORM, model.q_lora_rank))
        l2, e2 = b.cost_sum(*norms)
        nrm = b.dpu(Step.LATENT_NORM, layer, [a], (l1 + l2, e1 + e2))
        qkv = b.mvm(Step.QKV_B, layer, second, [nrm])
        qkv_mats = second
    else:
        qkv_mats = _by_role(ms, Role.Q, Role.K, Role.V)
        qkv = b.mvm(Step.QKV, layer, qkv_mats, [prev])
    acc = b.acc(qkv_mats)
    kv_src = b.dpu(Step.ACC_QKV, layer, [qkv], acc) if acc[0] > 0 else qkv
    if kv_dram:
        per_byte_ns = 1.0 / b.cost.dram_bandwidth_gb_s
        per_byte_pj = (8.0 * b.cost.dram_energy_pj_per_bit if b.cost.dram_energy_pj_per_bit
                       else b.cost.dram_active_power_w * per_byte_ns * 1e3)
        att_in = b.op(Step.KV_DRAM, layer, R_DRAM, [kv_src], layer=layer, lat=per_byte_ns,
                      energy=per_byte_pj,
                      flags=F_KV_CONSUMER, kv_layer=layer)
        mha_flags, mha_kv, mha_preds = 0, -1, [att_in]
    else:
        mha_flags, mha_kv, mha_preds = F_KV_CONSUMER, layer, [kv_src]
    c_one = b.cost.cost(OpKind.MHA, d, 1, 1)
    into = b.comm(model.q_dim) if b.chip.dataflow.transfer_into_attention else (0.0, 0.0)
    mha = b.op(Step.ATTENTION, layer, R_MHA, mha_preds, layer=layer, lat=c_one.latency_ns,
               energy=c_one.energy_pj, comm_in=into, flags=mha_flags, kv_layer=mha_kv)
    o_mats = _by_role(ms, Role.O)
    o = b.mvm(Step.O_PROJ, layer, o_mats, [mha])
    lo, eo = b.acc(o_mats)
    l2, e2 = b.cost_sum((OpKind.ADD, d), (OpKind.LAYERNORM, d))
    return b.dpu(Step.ADD_NORM, layer, [o], (lo + l2, eo + e2))


def _residual_norm(b: _Builder, layer: int) -> tuple[float, float]:
    """The residual add and the next layer's norm that close every FFN; after the last layer the
    final norm, unless the dataflow runs it for the last token of a pass only (then its own op)."""
    d = b.model.d_model
    if layer == b.model.n_layers - 1 and not b.chip.dataflow.final_norm_every_token:
        return b.cost_sum((OpKind.ADD, d))
    return b.cost_sum((OpKind.ADD, d), (OpKind.LAYERNORM, d))


def _dense_ffn(b: _Builder, layer: int, ms, prev: int) -> int:
    """Up (and gate) MVMs, activation, down MVMs, residual add and next norm."""
    up_mats = _by_role(ms, Role.FFN_GATE, Role.FFN_UP)
    up = b.mvm(Step.FFN_UP, layer, up_mats, [prev])
    lu, eu = b.acc(up_mats)
    la, ea = b.act(b.model.d_ff)
    act = b.dpu(Step.FFN_ACT, layer, [up], (lu + la, eu + ea))
    down_mats = _by_role(ms, Role.FFN_DOWN)
    down = b.mvm(Step.FFN_DOWN, layer, down_mats, [act])
    ld, ed = b.acc(down_mats)
    lr, er = _residual_norm(b, layer)
    return b.dpu(Step.FFN_ADD_NORM, layer, [down], (ld + lr, ed + er))


def _moe_ffn(b: _Builder, layer: int, ms, prev: int, mi: int, expert_gid: np.ndarray) -> int:
    """Router, top-k, the k routed experts (tile groups chosen per token by the engine), shared
    experts, and the combination with residual add and next norm."""
    model, d = b.model, b.model.d_model
    r_mats = _by_role(ms, Role.ROUTER, Role.SHARED_GATE)
    router = b.mvm(Step.ROUTER, layer, r_mats, [prev])
    lr, er = b.acc(r_mats)
    l3, e3 = b.cost_sum((OpKind.SOFTMAX, model.n_experts),
                        (OpKind.TOPK, model.n_experts, model.top_k))
    topk = b.dpu(Step.TOPK, layer, [router], (lr + l3, er + e3))
    routed = _routed_ffn_mats(ms, model.n_experts)
    for e in range(model.n_experts):
        for stage, mats in enumerate(routed[e]):
            expert_gid[mi, stage, e] = b.group(mats)
    # every expert has the shape of expert 0: its costs stand for the routed one
    up0, dn0 = routed[0]
    lu, eu = b.acc(up0)
    la, ea = b.act(model.d_expert)
    ld, ed = b.acc(dn0)
    stages = routed
    up_in, up_out = b.tile_comm(up0, placed=[m for st in stages for m in st[0]])
    dn_in, dn_out = b.tile_comm(dn0, placed=[m for st in stages for m in st[1]])
    downs, down_acc = [], [0.0, 0.0]
    for br in range(model.top_k):
        up = b.op(Step.EXPERT_UP, layer, R_TILES, [topk], layer=layer, moe=mi, branch=br,
                  stage=0, comm_in=up_in, comm_out=up_out, index=br)
        act = b.dpu(Step.EXPERT_ACT, layer, [up], (lu + la, eu + ea), index=br)
        dn = b.op(Step.EXPERT_DOWN, layer, R_TILES, [act], layer=layer, moe=mi, branch=br,
                  stage=1, comm_in=dn_in, comm_out=dn_out, index=br)
        downs.append(dn)
        down_acc[0] += ld
        down_acc[1] += ed
    for s in range(model.n_shared_experts):
        upm, dnm = _ffn_mats(ms, s, shared=True)
        up = b.mvm(Step.SHARED_UP, layer, upm, [prev], index=s)
        lu2, eu2 = b.acc(upm)
        la3, ea3 = b.act(model.d_shared_expert)
        act = b.dpu(Step.SHARED_ACT, layer, [up], (lu2 + la3, eu2 + ea3), index=s)
        downs.append(b.mvm(Step.SHARED_DOWN, layer, dnm, [act], index=s))
        ld2, ed2 = b.acc(dnm)
        down_acc[0] += ld2
        down_acc[1] += ed2
    n_sum = model.top_k + model.n_shared_experts
    lc, ec = b.cost_sum(*([(OpKind.MUL, d)] * (model.top_k + (1 if model.shared_expert_gate else 0))),
                        *([(OpKind.ADD, d)] * (n_sum - 1)))
    ln, en = _residual_norm(b, layer)
    return b.dpu(Step.COMBINE, layer, downs, (down_acc[0] + lc + ln, down_acc[1] + ec + en))


def _head(b: _Builder, head_mats, prev: int) -> None:
    """[The final norm,] LM head MVM and sampling, for the last token of a pass only."""
    model = b.model
    if not b.chip.dataflow.final_norm_every_token:
        prev = b.dpu(Step.FINAL_NORM, model.n_layers, [prev],
                     b.cost_sum((OpKind.LAYERNORM, model.d_model)), layer_name=None, flags=F_HEAD)
    head = b.mvm(Step.LM_HEAD, model.n_layers, head_mats, [prev], layer_name=None, flags=F_HEAD)
    lh, eh = b.acc(head_mats)
    ls, es = b.cost.sampling(model.vocab_size)
    b.dpu(Step.SAMPLE, model.n_layers, [head], (lh + ls, eh + es), layer_name=None,
          flags=F_HEAD | F_LAST)


def _embed(b: _Builder, emb_mats) -> int:
    """The first step of a token: a digital lookup (then the first layer norm), or, with the
    embedding on tiles, a one-hot MVM on its first row of blocks followed by the position add
    (learned positions) and the first layer norm."""
    model, d = b.model, b.model.d_model
    norm = ((OpKind.LAYERNORM, d),) if b.chip.dataflow.norm_before_first_layer else ()
    analog = [m for m in emb_mats if m.name in b.analog]
    if not analog:
        return b.dpu(Step.EMBED_NORM, 0, [], b.cost_sum(*norm), layer_name=None,
                     comm_in=b.comm(d), flags=F_FIRST)
    (m,) = analog
    # the one-hot row slice in, the embedding vector out (its first row of blocks only)
    c_in = b.comm(min(m.in_features, b.rows))
    c_out = (b.comm(min(m.out_features, b.chip.tier_cols))[0], b.comm(m.out_features)[1])
    emb = b.op(Step.EMBED, None, R_TILES, [], layer=0, group=b.group(analog, first_row_block=True),
               comm_in=c_in, comm_out=c_out, flags=F_FIRST)
    pos = ((OpKind.ADD, d),) if model.learned_positions else ()
    return b.dpu(Step.EMBED_NORM, 0, [emb], b.cost_sum(*pos, *norm), layer_name=None)


def _unit_sets(chip: ChipConfig, n_layers: int) -> tuple[list, list]:
    """CSR (ptr, idx) per unit class of the units each layer slot (layers + head) may use: every
    unit for each slot when pooled, units u with u % slots == s when there are enough for a set
    per slot, unit s % n_units otherwise. Built with numpy (no Python object per unit)."""
    n_slots = n_layers + 1
    unit_ptr, unit_idx = [], []
    for n_units in (chip.n_dpus, chip.n_mha_units):
        if chip.unit_assignment is UnitAssignment.POOL:
            counts = np.full(n_slots, n_units, dtype=np.int64)
            idx = np.tile(np.arange(n_units, dtype=np.int64), n_slots)
        elif n_units >= n_slots:
            counts = np.bincount(np.arange(n_units) % n_slots, minlength=n_slots).astype(np.int64)
            # units of slot s are s, s + n_slots, ...: sort the unit ids by their slot (stable)
            idx = np.argsort(np.arange(n_units, dtype=np.int64) % n_slots, kind="stable")
        else:
            counts = np.ones(n_slots, dtype=np.int64)
            idx = np.arange(n_slots, dtype=np.int64) % n_units
        ptr = np.zeros(n_slots + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(counts)
        unit_ptr.append(ptr)
        unit_idx.append(idx.astype(np.int64))
    return unit_ptr, unit_idx


def unit_set_entries(chip: ChipConfig, n_layers: int) -> int:
    """Entries of the unit sets :func:`_unit_sets` builds (for memory estimates)."""
    n_slots = n_layers + 1
    pooled = chip.unit_assignment is UnitAssignment.POOL
    return sum(n * n_slots if pooled else max(n, n_slots)
               for n in (chip.n_dpus, chip.n_mha_units))


def kv_cache_bytes(model: ModelSpec, chip: ChipConfig, workload: Workload) -> float:
    """Bytes of KV cache a run keeps at its end: batch x positions x layers x KV elements per
    token and layer x bytes per element (0 without a KV cache)."""
    if not workload.kv_cache:
        return 0.0
    return float(workload.batch * workload.positions * model.n_layers
                 * model.kv_cache_elements_per_token * chip.cost.kv_bytes_per_element)


def kv_spill_fraction(model: ModelSpec, chip: ChipConfig, workload: Workload) -> float:
    """Fraction of the KV cache that does not fit the on-chip capacity (n_mha_units x
    ``kv_sram_mb_per_mha_unit``) and is read from off-chip memory: 0 when it fits, when the
    capacity is unbounded or when the cache lives in DRAM anyway."""
    cap_mb = chip.kv_sram_mb_per_mha_unit
    total = kv_cache_bytes(model, chip, workload)
    if cap_mb is None or chip.kv_placement is not KVPlacement.SRAM or total == 0:
        return 0.0
    return max(0.0, 1.0 - chip.n_mha_units * cap_mb * 1e6 / total)


def _peak_scratchpad(model: ModelSpec, chip: ChipConfig, workload: Workload) -> int:
    """KV cache held in SRAM plus one activation vector of the widest layer per sequence."""
    d = model.d_model
    bpe = chip.cost.kv_bytes_per_element
    widest = max(d, model.d_ff if any(not model.is_moe_layer(i) for i in range(model.n_layers)) else d,
                 model.d_expert if model.is_moe else d)
    kv_sram = workload.kv_cache and chip.kv_placement is KVPlacement.SRAM
    kv = workload.positions * model.n_layers * model.kv_cache_elements_per_token * bpe
    if kv_sram and chip.kv_sram_mb_per_mha_unit is not None:  # on chip: at most its capacity
        held = min(workload.batch * kv, chip.n_mha_units * chip.kv_sram_mb_per_mha_unit * 1e6)
        return int(workload.batch * widest * bpe + held)
    return int(workload.batch * (widest * bpe + (kv if kv_sram else 0)))


def build_program(model: ModelSpec, chip: ChipConfig, mapping: Mapping, workload: Workload) -> Program:
    """Turn a mapped model and a workload into the flat operation graph the engines run."""
    _check_inputs(model, chip, mapping, workload)
    b = _Builder(model, chip, mapping, workload)
    mats_by_layer: dict[int, list] = {}
    for m in model.matrices():
        mats_by_layer.setdefault(m.layer, []).append(m)
    moe_index = {key[1]: i for i, key in enumerate(_moe_layer_keys(model))}
    spill = kv_spill_fraction(model, chip, workload)
    kv_dram = workload.kv_cache and ((chip.kv_placement is KVPlacement.DRAM
                                      and chip.dataflow.kv_traffic) or spill > 0)
    expert_gid = np.full((max(len(moe_index), 1), 2, max(model.n_experts, 1)), -1, dtype=np.int64)

    prev = _embed(b, [m for m in mats_by_layer.get(-1, []) if m.role is Role.EMBEDDING])
    dec = Stack.DECODER.value
    b.residual_crossing(prev, (Role.EMBEDDING.value,), (dec, 0))
    for layer in range(model.n_layers):
        ms = mats_by_layer[layer]
        post = _attention(b, layer, ms, prev, kv_dram)
        if model.is_moe_layer(layer):
            prev = _moe_ffn(b, layer, ms, post, moe_index[layer], expert_gid)
        else:
            prev = _dense_ffn(b, layer, ms, post)
        nxt = (dec, layer + 1) if layer + 1 < model.n_layers else (Role.LM_HEAD.value,)
        b.residual_crossing(prev, (dec, layer), nxt)
    _head(b, [m for m in mats_by_layer[-1] if m.role is Role.LM_HEAD], prev)
    return _assemble(b, expert_gid)


def _assemble(b: _Builder, expert_gid: np.ndarray) -> Program:
    """The collected operations and groups as flat arrays."""
    ops, model, chip, workload = b.ops, b.model, b.chip, b.workload
    n = len(ops)
    succs: list[list[int]] = [[] for _ in range(n)]
    for i, o in enumerate(ops):
        for p in o["preds"]:
            succs[p].append(i)
    succ_ptr = np.zeros(n + 1, dtype=np.int64)
    succ_ptr[1:] = np.cumsum([len(s) for s in succs])
    grp_ptr = np.zeros(len(b.groups) + 1, dtype=np.int64)
    grp_ptr[1:] = np.cumsum([len(g) for g in b.groups])
    flat = [p for g in b.groups for p in g]
    grp_count = np.array([c for _, c in flat], dtype=np.int64)
    col = lambda k, dt: np.array([o[k] for o in ops], dtype=dt)  # noqa: E731
    unit_ptr, unit_idx = _unit_sets(chip, model.n_layers)
    return Program(
        names=tuple(o["name"] for o in ops), kind=col("kind", np.int64), res=col("res", np.int64),
        group=col("group", np.int64), moe=col("moe", np.int64), branch=col("branch", np.int64),
        stage=col("stage", np.int64), lat=col("lat", np.float64), energy=col("energy", np.float64),
        comm_in=col("comm_in", np.float64), comm_out=col("comm_out", np.float64),
        comm_energy=col("comm_energy", np.float64), layer=col("layer", np.int64),
        npreds=np.array([len(o["preds"]) for o in ops], dtype=np.int64), succ_ptr=succ_ptr,
        succ=np.array([s for ss in succs for s in ss], dtype=np.int64), flags=col("flags", np.int64),
        kv_layer=col("kv_layer", np.int64), grp_ptr=grp_ptr,
        grp_tile=np.array([t for t, _ in flat], dtype=np.int64),
        grp_count=grp_count,
        grp_tiers=(np.concatenate(b.group_tiers).astype(np.int64) if b.group_tiers
                   else np.zeros(0, dtype=np.int64)),
        grp_energy=np.array(b.group_energy, dtype=np.float64), expert_gid=expert_gid,
        choices=_route(model, workload),
        dram_bytes_per_key=float(model.kv_cache_elements_per_token * chip.cost.kv_bytes_per_element
                                 * (kv_spill_fraction(model, chip, workload)
                                    if chip.kv_placement is KVPlacement.SRAM else 1.0)),
        mha_op_latency_ns=float(chip.cost.mha_latency_ns_per_op),
        mha_op_energy_pj=float(chip.cost.mha_energy_pj_per_op),
        attention_pass=chip.dataflow.attention_sync is AttentionSync.PASS,
        mvm_latency_ns=float(chip.cost.tier_mvm_latency_ns), n_layers=model.n_layers,
        tier_switch_latency_ns=float(chip.cost.tier_switch_latency_ns),
        tier_switch_energy_pj=float(chip.cost.tier_switch_energy_pj),
        unit_ptr=tuple(unit_ptr), unit_idx=tuple(unit_idx), n_units=(chip.n_dpus, chip.n_mha_units),
        n_tiles=chip.n_tiles, workload=workload, passive_power_w=chip.passive_power_w,
        unit_power_w=chip.cost.unit_passive_power_w, tile_power_w=chip.cost.tile_passive_power_w,
        idle_power_fraction=chip.cost.idle_power_fraction, chip_area_mm2=float(chip.area_mm2),
        n_dies=int(chip.n_dies),
        peak_scratchpad_bytes=_peak_scratchpad(model, chip, workload))


def _route(model: ModelSpec, w: Workload) -> np.ndarray:
    """(batch, positions, n_moe, k) expert ids in the narrow integer type
    :func:`~aimoe_lib.routing.route` returns (int16 for up to 32,768 experts): one copy, no
    widening."""
    positions = w.positions
    if not model.is_moe:
        return np.zeros((w.batch, positions, 1, 1), dtype=np.int16)
    # rows position-major: the batch's sequences at one position are consecutive routing rows, and
    # a longer run only appends rows (prefix-stable)
    ch = routing_mod.route(model, positions * w.batch, w.routing, seed=w.seed)
    ch = ch.reshape(positions, w.batch, ch.shape[1], ch.shape[2])
    return np.ascontiguousarray(ch.transpose(1, 0, 2, 3))


_PLACEMENT_FIELDS = ("n_tiles", "n_tiers", "tier_rows", "tier_cols")
"""The chip fields a Mapping depends on."""


def _check_inputs(model, chip, mapping, workload) -> None:
    if not isinstance(model, ModelSpec):
        raise TypeError(f"model must be a ModelSpec, got {type(model).__name__}")
    if not isinstance(chip, ChipConfig):
        raise TypeError(f"chip must be a ChipConfig, got {type(chip).__name__}")
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a Mapping (from mapping.map_model), got {type(mapping).__name__}")
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    if mapping.model != model:
        raise ValueError(f"the mapping was made for model {mapping.model.name!r}, not for "
                         f"{model.name!r}: map this model with mapping.map_model(model, chip)")
    # a placement depends only on the chip's shape: the same mapping serves any costs or units
    differ = [f"{f}={getattr(mapping.chip, f)} vs {getattr(chip, f)}" for f in _PLACEMENT_FIELDS
              if getattr(mapping.chip, f) != getattr(chip, f)]
    if differ:
        raise ValueError(f"the mapping was made for chip {mapping.chip.name!r} of another shape "
                         f"({', '.join(differ)}): map the model onto this chip with "
                         "mapping.map_model(model, chip)")
    if (chip.dataflow.attention_sync is AttentionSync.PASS and workload.kv_cache
            and ((chip.kv_placement is KVPlacement.DRAM and chip.dataflow.kv_traffic)
                 or kv_spill_fraction(model, chip, workload) > 0)):
        raise ValueError("Dataflow.attention_sync='pass' with the KV cache in DRAM and "
                         "kv_traffic=True is not modelled: use attention_sync='causal', "
                         "kv_traffic=False or kv_placement='sram'")
    if model.is_encoder_decoder:
        raise ValueError(f"simulate runs decoder-only models; {model.name} is encoder-decoder "
                         f"(n_encoder_layers={model.n_encoder_layers}): set n_encoder_layers=0")
