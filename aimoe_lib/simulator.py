"""Event-driven pipelined inference on the 3D AIMC chip (DESIGN.md §5).

Data flow: ``ModelSpec`` + ``ChipConfig`` + ``Mapping`` + :class:`Workload` -> :func:`build_program`
(a token's operation graph as flat arrays) -> an engine -> :class:`SimResult`.

**The operation graph of one token.** Per layer: layer norm (DPU) -> Q/K/V MVMs (tiles) ->
partial-sum accumulation (DPU) -> [KV-cache read/write in DRAM] -> attention (an MHA unit, over
all keys so far) -> output-projection MVMs -> accumulation, residual add and layer norm (DPU) ->
FFN. Dense: up (and gate) MVMs -> accumulation and activation (DPU) -> down MVMs. MoE: router MVM
-> softmax and top-k (DPU) -> for each of the k chosen experts (and each shared expert): up/gate
MVMs -> activation -> down MVMs -> one DPU op accumulating the expert outputs, weighting and adding
them, adding the residual and normalising for the next layer. After the last layer, the last
token of each pass runs the LM head MVM and sampling (DPU). Consecutive digital steps of one
token are one DPU task. Matrices made digital at mapping time (router, attention, LM head) run as
DPU tasks costed by :meth:`~aimoe_lib.hardware.CostModel.digital_mvm`.

**Passes.** With a KV cache, pass 0 is the prefill of the prompt (all its tokens available at
time 0; token i attends after the keys/values of tokens 0..i at that layer exist) and produces
the first generated token; pass g >= 1 processes generated token g alone and starts when pass
g-1's sampling finishes. Without a KV cache, pass g re-runs the whole prefix (prompt + g
generated tokens) prefill-style. Different sequences are independent: that fills the pipeline.

**Scheduling.** Non-preemptive, first come first served: every resource serves operations in the
order they became ready, ties broken by (sequence, pass, token, position in the graph). An MVM
operation asks each of its tiles for its blocks there, which run back to back; the operation ends
when its last tile does; each tile receives its input slice and sends its partial output over its
own link (one slice's transfer latency, every element's energy). A DPU/MHA task takes the lowest-index idle unit of its pool (or of the
units locked to its layer), else the unit that frees first. The network has no contention: a
transfer adds latency and energy to its edge. A start that waits for a tile busy with another
operation is a **tile conflict**; its wait is stall time.

Two engines implement this: a compiled event loop (numba) that claims resources at the moment an
operation becomes ready, and ``aimoe_lib.sim_reference``, a plain-Python queue-based simulation
with one event per tier MVM, used by the tests to check that both agree exactly.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from . import routing as routing_mod
from .hardware import ChipConfig, KVPlacement, OpKind, UnitAssignment
from .mapping import Mapping
from .routing import moe_layer_keys as _moe_layer_keys
from .models import AttentionKind, ModelSpec, Role

__all__ = ["Workload", "SimResult", "Program", "build_program", "simulate", "RES_NAMES"]

# resource classes
R_TILES, R_DPU, R_MHA, R_DRAM = 0, 1, 2, 3
RES_NAMES = ("tiles", "dpu", "mha", "dram")
# op flags
F_KV_CONSUMER, F_HEAD, F_FIRST, F_LAST = 1, 2, 4, 8


# ============================================================================ inputs and outputs
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
        for f in ("batch", "prompt_len", "gen_len"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Workload.{f}={v!r}: must be an integer >= 1; "
                                 f"a run needs at least one sequence, prompt token and generated token")
        if not isinstance(self.kv_cache, bool):
            raise ValueError(f"Workload.kv_cache={self.kv_cache!r}: must be True or False")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Workload.seed={self.seed!r}: must be an integer >= 0")

    @property
    def n_passes(self) -> int:
        """Passes per sequence: one per generated token."""
        return self.gen_len

    def tokens_in_pass(self, p: int) -> int:
        """Tokens processed in pass ``p`` of one sequence."""
        if self.kv_cache:
            return self.prompt_len if p == 0 else 1
        return self.prompt_len + p

    def position(self, p: int, j: int) -> int:
        """Position in the sequence of the j-th token of pass p."""
        if self.kv_cache and p > 0:
            return self.prompt_len + p - 1
        return j


@dataclass(frozen=True, eq=False)
class SimResult:
    """What a run measured. Times in ns, energies in pJ."""

    makespan_ns: float
    """From time 0 to the end of the last operation."""
    ttft_ns: np.ndarray
    """Time to first token of each sequence."""
    tpot_ns: np.ndarray
    """Time per output token: gaps between consecutive generated tokens (all sequences)."""
    token_times_ns: np.ndarray
    """(batch, gen_len) time each generated token came out of sampling."""
    generated_tokens: int
    """batch x gen_len."""
    energy_breakdown_pj: dict
    """Energy by kind: mvm, digital, attention, dram, communication, passive."""
    tile_busy_ns: np.ndarray
    """Busy time of each tile."""
    unit_busy_ns: dict
    """Busy time of each DPU, MHA unit and of the DRAM channel: {'dpu': array, 'mha': array, 'dram': array}."""
    tile_conflicts: int
    """Starts on a tile that waited for another operation."""
    stall_ns: float
    """Total wait of those starts."""
    peak_scratchpad_bytes: int
    """Peak on-chip SRAM: KV cache held in SRAM plus one activation vector of the widest layer per sequence."""
    n_events: int
    """Operations scheduled."""
    events: np.ndarray | None = None
    """Event log or None: a structured array with fields ``start_ns``, ``end_ns``, ``resource``,
    ``unit``, ``seq``, ``pass_``, ``token``, ``layer``, ``op``."""
    op_names: tuple = ()
    """Names of the operations of the token program (index = the log's ``op``)."""

    @property
    def energy_pj(self) -> float:
        """Total energy: operations + passive power x makespan."""
        return float(sum(self.energy_breakdown_pj.values()))

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second over the whole run."""
        return self.generated_tokens / (self.makespan_ns * 1e-9)

    @property
    def energy_per_token_pj(self) -> float:
        """Energy per generated token."""
        return self.energy_pj / self.generated_tokens

    def tpot_stats_ns(self) -> dict:
        """mean, p50 and p99 of the time per output token (nan with one generated token)."""
        if self.tpot_ns.size == 0:
            return {"mean": math.nan, "p50": math.nan, "p99": math.nan}
        return {"mean": float(self.tpot_ns.mean()), "p50": float(np.percentile(self.tpot_ns, 50)),
                "p99": float(np.percentile(self.tpot_ns, 99))}

    @property
    def tile_utilisation(self) -> np.ndarray:
        """Busy fraction of each tile."""
        return self.tile_busy_ns / self.makespan_ns

    def busy_fraction(self) -> dict:
        """Mean busy fraction of each resource class (tiles: of the tiles holding weights)."""
        used = self.tile_busy_ns[self.tile_busy_ns > 0]
        out = {"tiles": float(used.mean() / self.makespan_ns) if used.size else 0.0,
               "tiles_max": float(self.tile_busy_ns.max() / self.makespan_ns)}
        for k, v in self.unit_busy_ns.items():
            out[k] = float(v.mean() / self.makespan_ns) if v.size else 0.0
        return out

    def bottleneck(self, threshold: float = 0.5) -> str:
        """Resource class with the highest busy fraction (the busiest tile for tiles), or
        'latency' when no resource is busy ``threshold`` of the time: then the run is bound by the
        tokens' dependency chains, not by a resource."""
        b = self.busy_fraction()
        cand = {"tiles": b["tiles_max"], "dpu": b["dpu"], "mha": b["mha"], "dram": b["dram"]}
        best = max(cand, key=cand.get)
        return best if cand[best] >= threshold else "latency"

    def summary(self) -> str:
        """A readable table of the key numbers."""
        t = self.tpot_stats_ns()
        e = self.energy_breakdown_pj
        b = self.busy_fraction()
        lines = [
            f"makespan               {self.makespan_ns / 1e3:12.2f} µs",
            f"throughput             {self.tokens_per_s:12.1f} tokens/s ({self.generated_tokens} generated)",
            f"time to first token    {self.ttft_ns.mean() / 1e3:12.2f} µs (mean)",
            f"time per output token  {t['mean'] / 1e3:12.2f} µs mean, {t['p50'] / 1e3:.2f} p50, {t['p99'] / 1e3:.2f} p99",
            f"energy                 {self.energy_pj / 1e6:12.3f} µJ, {self.energy_per_token_pj / 1e6:.3f} µJ per token",
            "  by kind              " + ", ".join(f"{k} {v / max(self.energy_pj, 1e-30):.1%}" for k, v in e.items()),
            f"tile conflicts         {self.tile_conflicts:12,d} (stall {self.stall_ns / 1e3:.2f} µs)",
            f"busy fraction          tiles {b['tiles']:.1%} (busiest {b['tiles_max']:.1%}), DPUs {b['dpu']:.1%}, "
            f"MHA {b['mha']:.1%}, DRAM {b['dram']:.1%} -> bottleneck: {self.bottleneck()}",
            f"peak scratchpad        {self.peak_scratchpad_bytes / 1e6:12.3f} MB",
        ]
        return "\n".join(lines)


# ============================================================================ the token program
@dataclass(frozen=True, eq=False)
class Program:
    """A token's operation graph and everything the engines need, as flat numpy arrays."""

    names: tuple
    res: np.ndarray          # resource class per op
    group: np.ndarray        # fixed tile group (R_TILES), else -1
    moe: np.ndarray          # MoE layer index of expert ops, else -1
    branch: np.ndarray       # routed branch 0..k-1 of expert ops, else -1
    stage: np.ndarray        # 0 up/gate, 1 down (expert ops)
    lat: np.ndarray          # fixed latency (DPU); per key (MHA); per byte (DRAM: ns per byte)
    energy: np.ndarray       # fixed energy (DPU); per key (MHA); per byte (DRAM)
    comm_in: np.ndarray      # transfer latency into the op
    comm_out: np.ndarray     # transfer latency out of the op
    comm_energy: np.ndarray  # transfer energy of the op's edges
    layer: np.ndarray        # layer slot (units locked per layer); n_layers for the head
    npreds: np.ndarray
    succ_ptr: np.ndarray
    succ: np.ndarray
    flags: np.ndarray
    kv_layer: np.ndarray     # layer of a KV consumer op, else -1
    grp_ptr: np.ndarray      # tile groups: tiles grp_tile[ptr[g]:ptr[g+1]] with block counts
    grp_tile: np.ndarray
    grp_count: np.ndarray
    grp_energy: np.ndarray
    expert_gid: np.ndarray   # (n_moe, 2, E) tile group of expert e's up (0) / down (1) MVMs
    choices: np.ndarray      # (batch, positions, n_moe, k) routed experts
    dram_bytes_per_key: float
    mvm_latency_ns: float
    n_layers: int
    unit_ptr: tuple          # per resource (dpu, mha): CSR of units per layer slot
    unit_idx: tuple
    n_units: tuple
    workload: Workload
    passive_power_w: float
    peak_scratchpad_bytes: int


class _Builder:
    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.groups: list[list[tuple[int, int]]] = []
        self.group_energy: list[float] = []

    def op(self, name, res, preds, *, layer, lat=0.0, energy=0.0, group=-1, moe=-1, branch=-1,
           stage=0, comm_in=(0.0, 0.0), comm_out=(0.0, 0.0), flags=0, kv_layer=-1) -> int:
        self.ops.append(dict(name=name, res=res, preds=list(preds), layer=layer, lat=lat,
                             energy=energy, group=group, moe=moe, branch=branch, stage=stage,
                             comm_in=comm_in[0], comm_out=comm_out[0],
                             comm_energy=comm_in[1] + comm_out[1], flags=flags, kv_layer=kv_layer))
        return len(self.ops) - 1


def _group_of(mapping: Mapping, mats) -> tuple[list[tuple[int, int]], int]:
    """(tile, blocks) pairs of the given analog matrices together, and their block count."""
    tiles = np.concatenate([mapping.blocks(m.name)["tile"] for m in mats])
    uniq, counts = np.unique(tiles, return_counts=True)
    return list(zip(uniq.tolist(), counts.tolist())), int(tiles.size)


def _acc_cost(cost, mats, rows) -> tuple[float, float]:
    """Digital accumulation of partial sums of matrices spanning several input blocks: one add of
    length out x (row blocks - 1) per matrix (assumption A-ACC-DPU)."""
    lat = en = 0.0
    for m in mats:
        nrb = -(-m.in_features // rows)
        if nrb > 1:
            c = cost.cost(OpKind.ADD, m.out_features * (nrb - 1))
            lat, en = lat + c.latency_ns, en + c.energy_pj
    return lat, en


def build_program(model: ModelSpec, chip: ChipConfig, mapping: Mapping, workload: Workload) -> Program:
    """Turn a mapped model and a workload into the flat operation graph the engines run."""
    _check_inputs(model, chip, mapping, workload)
    cost, rows = chip.cost, chip.tier_rows
    analog = {m.name for m in mapping.matrices}
    d = model.d_model
    b = _Builder()

    def cost_sum(*items):
        lat = en = 0.0
        for op_kind, length, *extra in items:
            c = cost.cost(op_kind, length, *extra)
            lat, en = lat + c.latency_ns, en + c.energy_pj
        return lat, en

    def comm(length):
        c = cost.cost(OpKind.COMM, max(int(length), 1))
        return (c.latency_ns, c.energy_pj)

    def tile_comm(mats):
        """Transfers of an MVM on tiles: every tile gets its slice of the input (at most ``rows``
        elements) and sends its partial output (at most ``cols``) over its own link, in parallel;
        latency is one slice's, energy every element's (assumption A-COMM-PARALLEL)."""
        cols = chip.tier_cols
        n_in = sum(m.in_features * -(-m.out_features // cols) for m in mats)
        n_out = sum(m.out_features * -(-m.in_features // rows) for m in mats)
        lat_in = comm(min(max(m.in_features for m in mats), rows))[0]
        lat_out = comm(min(max(m.out_features for m in mats), cols))[0]
        return (lat_in, comm(n_in)[1]), (lat_out, comm(n_out)[1])

    def mvm(name, mats, preds, layer, **kw):
        """An MVM op over ``mats`` (all analog: a tile group; all digital: a DPU task)."""
        is_analog = [m.name in analog for m in mats]
        if all(is_analog):
            pairs, nblk = _group_of(mapping, mats)
            b.groups.append(pairs)
            b.group_energy.append(nblk * cost.mvm_energy_pj)
            c_in, c_out = tile_comm(mats)
            return b.op(name, R_TILES, preds, layer=layer, group=len(b.groups) - 1,
                        comm_in=c_in, comm_out=c_out, **kw)
        if any(is_analog):
            raise ValueError(f"{name}: mixes analog and digital matrices")
        lat = sum(cost.digital_mvm(m.in_features, m.out_features).latency_ns for m in mats)
        en = sum(cost.digital_mvm(m.in_features, m.out_features).energy_pj for m in mats)
        return b.op(name, R_DPU, preds, layer=layer, lat=lat, energy=en, **kw)

    def acc_of(mats):
        return _acc_cost(cost, [m for m in mats if m.name in analog], rows)

    mats_by_layer: dict[int, list] = {}
    for m in model.matrices():
        mats_by_layer.setdefault(m.layer, []).append(m)
    moe_index = {key[1]: i for i, key in enumerate(_moe_layer_keys(model))}
    act_kind = {"gelu": OpKind.GELU, "relu": OpKind.RELU, "silu": OpKind.SILU}[model.ffn.activation]
    kv_dram = workload.kv_cache and chip.kv_placement is KVPlacement.DRAM

    lat_ln, en_ln = cost_sum((OpKind.LAYERNORM, d))
    prev = b.op("embed+ln1", R_DPU, [], layer=0, lat=lat_ln, energy=en_ln, comm_in=comm(d),
                flags=F_FIRST)
    # expert tile groups, filled per MoE layer
    n_moe = len(moe_index)
    expert_gid = np.full((max(n_moe, 1), 2, max(model.n_experts, 1)), -1, dtype=np.int64)

    for layer in range(model.n_layers):
        ms = mats_by_layer[layer]
        by_role = lambda *roles: [m for m in ms if m.role in roles and m.expert < 0]  # noqa: E731
        # ---- attention
        if model.attention is AttentionKind.MLA:
            first = by_role(Role.Q_A, Role.Q, Role.KV_A)
            second = by_role(Role.Q_B, Role.KV_B)
            a = mvm(f"L{layer}.qkv_a", first, [prev], layer)
            l1, e1 = acc_of(first)
            l2, e2 = cost_sum((OpKind.LAYERNORM, model.kv_lora_rank),
                              *(((OpKind.LAYERNORM, model.q_lora_rank),) if model.q_lora_rank else ()))
            nrm = b.op(f"L{layer}.latent_norm", R_DPU, [a], layer=layer, lat=l1 + l2, energy=e1 + e2)
            qkv = mvm(f"L{layer}.qkv_b", second, [nrm], layer)
            qkv_mats = second
        else:
            qkv_mats = by_role(Role.Q, Role.K, Role.V)
            qkv = mvm(f"L{layer}.qkv", qkv_mats, [prev], layer)
        la, ea = acc_of(qkv_mats)
        kv_src = qkv
        if la > 0:
            kv_src = b.op(f"L{layer}.acc_qkv", R_DPU, [qkv], layer=layer, lat=la, energy=ea)
        if kv_dram:
            per_byte_ns = 1.0 / cost.dram_bandwidth_gb_s
            att_in = b.op(f"L{layer}.kv_dram", R_DRAM, [kv_src], layer=layer, lat=per_byte_ns,
                          energy=cost.dram_active_power_w * per_byte_ns * 1e3,
                          flags=F_KV_CONSUMER, kv_layer=layer)
            mha_flags, mha_kv = 0, -1
            mha_preds = [att_in]
        else:
            mha_flags, mha_kv = F_KV_CONSUMER, layer
            mha_preds = [kv_src]
        c_one = cost.cost(OpKind.MHA, d, 1, 1)
        mha = b.op(f"L{layer}.attention", R_MHA, mha_preds, layer=layer, lat=c_one.latency_ns,
                   energy=c_one.energy_pj, comm_in=comm(model.q_dim), flags=mha_flags,
                   kv_layer=mha_kv)
        o_mats = by_role(Role.O)
        o = mvm(f"L{layer}.o", o_mats, [mha], layer)
        lo, eo = acc_of(o_mats)
        l2, e2 = cost_sum((OpKind.ADD, d), (OpKind.LAYERNORM, d))
        post = b.op(f"L{layer}.add+ln2", R_DPU, [o], layer=layer, lat=lo + l2, energy=eo + e2)
        # ---- FFN
        last_lat_en = cost_sum((OpKind.ADD, d), (OpKind.LAYERNORM, d))  # residual + next norm
        if not model.is_moe_layer(layer):
            up_mats = by_role(Role.FFN_GATE, Role.FFN_UP)
            up = mvm(f"L{layer}.ffn_up", up_mats, [post], layer)
            lu, eu = acc_of(up_mats)
            la2, ea2 = cost_sum((act_kind, model.d_ff),
                                *(((OpKind.MUL, model.d_ff),) if model.ffn.gated else ()))
            act = b.op(f"L{layer}.act", R_DPU, [up], layer=layer, lat=lu + la2, energy=eu + ea2)
            down_mats = by_role(Role.FFN_DOWN)
            down = mvm(f"L{layer}.ffn_down", down_mats, [act], layer)
            ld, ed = acc_of(down_mats)
            prev = b.op(f"L{layer}.add+ln", R_DPU, [down], layer=layer,
                        lat=ld + last_lat_en[0], energy=ed + last_lat_en[1])
            continue
        mi = moe_index[layer]
        r_mats = by_role(Role.ROUTER, Role.SHARED_GATE)
        router = mvm(f"L{layer}.router", r_mats, [post], layer)
        lr, er = acc_of(r_mats)
        l3, e3 = cost_sum((OpKind.SOFTMAX, model.n_experts), (OpKind.TOPK, model.n_experts, model.top_k))
        topk = b.op(f"L{layer}.topk", R_DPU, [router], layer=layer, lat=lr + l3, energy=er + e3)
        downs, down_acc = [], [0.0, 0.0]
        # routed experts: one tile group per expert and stage, chosen per token by the engine
        for e in range(model.n_experts):
            em = [m for m in ms if m.is_routed_expert and m.expert == e]
            upm = [m for m in em if m.role in (Role.FFN_GATE, Role.FFN_UP)]
            dnm = [m for m in em if m.role is Role.FFN_DOWN]
            for stage, mm in ((0, upm), (1, dnm)):
                pairs, nblk = _group_of(mapping, mm)
                b.groups.append(pairs)
                b.group_energy.append(nblk * cost.mvm_energy_pj)
                expert_gid[mi, stage, e] = len(b.groups) - 1
        e0 = [m for m in ms if m.is_routed_expert and m.expert == 0]
        up0 = [m for m in e0 if m.role in (Role.FFN_GATE, Role.FFN_UP)]
        dn0 = [m for m in e0 if m.role is Role.FFN_DOWN]
        lu, eu = acc_of(up0)
        la2, ea2 = cost_sum((act_kind, model.d_expert),
                            *(((OpKind.MUL, model.d_expert),) if model.ffn.gated else ()))
        ld, ed = acc_of(dn0)
        up_in, up_out = tile_comm(up0)
        dn_in, dn_out = tile_comm(dn0)
        for br in range(model.top_k):
            up = b.op(f"L{layer}.expert_up[{br}]", R_TILES, [topk], layer=layer, moe=mi, branch=br,
                      stage=0, comm_in=up_in, comm_out=up_out)
            act = b.op(f"L{layer}.expert_act[{br}]", R_DPU, [up], layer=layer, lat=lu + la2,
                       energy=eu + ea2)
            dn = b.op(f"L{layer}.expert_down[{br}]", R_TILES, [act], layer=layer, moe=mi,
                      branch=br, stage=1, comm_in=dn_in, comm_out=dn_out)
            downs.append(dn)
            down_acc[0] += ld
            down_acc[1] += ed
        for s in range(model.n_shared_experts):
            sm = [m for m in ms if m.shared and m.expert == s]
            upm = [m for m in sm if m.role in (Role.FFN_GATE, Role.FFN_UP)]
            dnm = [m for m in sm if m.role is Role.FFN_DOWN]
            up = mvm(f"L{layer}.shared_up[{s}]", upm, [post], layer)
            lu2, eu2 = acc_of(upm)
            la3, ea3 = cost_sum((act_kind, model.d_shared_expert),
                                *(((OpKind.MUL, model.d_shared_expert),) if model.ffn.gated else ()))
            act = b.op(f"L{layer}.shared_act[{s}]", R_DPU, [up], layer=layer, lat=lu2 + la3,
                       energy=eu2 + ea3)
            dn = mvm(f"L{layer}.shared_down[{s}]", dnm, [act], layer)
            downs.append(dn)
            ld2, ed2 = acc_of(dnm)
            down_acc[0] += ld2
            down_acc[1] += ed2
        n_sum = model.top_k + model.n_shared_experts
        lc, ec = cost_sum(*([(OpKind.MUL, d)] * (model.top_k + (1 if model.shared_expert_gate else 0))),
                          *([(OpKind.ADD, d)] * (n_sum - 1)))
        prev = b.op(f"L{layer}.combine+add+ln", R_DPU, downs, layer=layer,
                    lat=down_acc[0] + lc + last_lat_en[0], energy=down_acc[1] + ec + last_lat_en[1])
    # ---- head (last token of a pass only)
    head_mats = [m for m in mats_by_layer[-1] if m.role is Role.LM_HEAD]
    head = mvm("lm_head", head_mats, [prev], model.n_layers, flags=F_HEAD)
    lh, eh = acc_of(head_mats)
    ls, es = cost_sum((OpKind.SOFTMAX, model.vocab_size), (OpKind.TOPK, model.vocab_size, 1))
    b.op("sample", R_DPU, [head], layer=model.n_layers, lat=lh + ls, energy=eh + es,
         flags=F_HEAD | F_LAST)

    # ---- arrays
    ops = b.ops
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
    col = lambda k, dt: np.array([o[k] for o in ops], dtype=dt)  # noqa: E731

    choices = _route(model, workload)
    n_slots = model.n_layers + 1
    unit_ptr, unit_idx = [], []
    for n_units in (chip.n_dpus, chip.n_mha_units):
        if chip.unit_assignment is UnitAssignment.POOL:
            sets = [list(range(n_units))] * n_slots
        elif n_units >= n_slots:
            sets = [[u for u in range(n_units) if u % n_slots == s] for s in range(n_slots)]
        else:
            sets = [[s % n_units] for s in range(n_slots)]
        ptr = np.zeros(n_slots + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(s) for s in sets])
        unit_ptr.append(ptr)
        unit_idx.append(np.array([u for s in sets for u in s], dtype=np.int64))

    kv_elems = model.kv_cache_elements_per_token
    bpe = cost.kv_bytes_per_element
    positions = workload.prompt_len + workload.gen_len - 1
    widest = max(d, model.d_ff if any(not model.is_moe_layer(i) for i in range(model.n_layers)) else d,
                 model.d_expert if model.is_moe else d)
    kv_sram = (workload.kv_cache and chip.kv_placement is KVPlacement.SRAM)
    peak = workload.batch * (widest * bpe + (positions * model.n_layers * kv_elems * bpe if kv_sram else 0))

    return Program(
        names=tuple(o["name"] for o in ops), res=col("res", np.int64), group=col("group", np.int64),
        moe=col("moe", np.int64), branch=col("branch", np.int64), stage=col("stage", np.int64),
        lat=col("lat", np.float64), energy=col("energy", np.float64),
        comm_in=col("comm_in", np.float64), comm_out=col("comm_out", np.float64),
        comm_energy=col("comm_energy", np.float64), layer=col("layer", np.int64),
        npreds=np.array([len(o["preds"]) for o in ops], dtype=np.int64), succ_ptr=succ_ptr,
        succ=np.array([s for ss in succs for s in ss], dtype=np.int64), flags=col("flags", np.int64),
        kv_layer=col("kv_layer", np.int64), grp_ptr=grp_ptr,
        grp_tile=np.array([t for t, _ in flat], dtype=np.int64),
        grp_count=np.array([c for _, c in flat], dtype=np.int64),
        grp_energy=np.array(b.group_energy, dtype=np.float64), expert_gid=expert_gid,
        choices=choices, dram_bytes_per_key=float(kv_elems * bpe),
        mvm_latency_ns=float(cost.mvm_latency_ns), n_layers=model.n_layers,
        unit_ptr=tuple(unit_ptr), unit_idx=tuple(unit_idx), n_units=(chip.n_dpus, chip.n_mha_units),
        workload=workload, passive_power_w=chip.passive_power_w, peak_scratchpad_bytes=int(peak))


def _route(model: ModelSpec, w: Workload) -> np.ndarray:
    positions = w.prompt_len + w.gen_len - 1
    if not model.is_moe:
        return np.zeros((w.batch, positions, 1, 1), dtype=np.int64)
    # rows position-major: the batch's sequences at one position are consecutive routing rows, and
    # a longer run only appends rows (prefix-stable)
    ch = routing_mod.route(model, positions * w.batch, w.routing, seed=w.seed)
    ch = np.asarray(ch, dtype=np.int64).reshape(positions, w.batch, ch.shape[1], ch.shape[2])
    return np.ascontiguousarray(ch.transpose(1, 0, 2, 3))


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
    if mapping.chip != chip:
        raise ValueError(f"the mapping was made for chip {mapping.chip.describe()!r}, not for "
                         f"{chip.describe()!r}: map the model onto this chip")
    if model.is_encoder_decoder:
        raise ValueError(f"simulate runs decoder-only models; {model.name} is encoder-decoder "
                         f"(n_encoder_layers={model.n_encoder_layers}): set n_encoder_layers=0")


# ============================================================================ fast engine
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


def _engine_py(res, group, moe, branch, stage, lat, energy, comm_in, comm_out, comm_energy,
               layer, npreds, succ_ptr, succ, flags, kv_layer, grp_ptr, grp_tile, grp_count,
               grp_energy, expert_gid, choices, dram_bpk, mvm_lat, n_layers,
               dpu_ptr, dpu_idx, n_dpu, mha_ptr, mha_idx, n_mha, n_tiles,
               batch, n_passes, prompt_len, kv_cache, record, log_cap):
    """Claim-at-ready event loop; compiled with numba when available (same code either way)."""
    n_ops = res.shape[0]
    # instances: (seq, pass, token); ntok per pass
    ntok = np.empty(n_passes, np.int64)
    for p in range(n_passes):
        ntok[p] = (prompt_len if p == 0 else 1) if kv_cache else prompt_len + p
    pass_base = np.zeros(n_passes + 1, np.int64)
    for p in range(n_passes):
        pass_base[p + 1] = pass_base[p] + ntok[p]
    per_seq = pass_base[n_passes]
    n_inst = batch * per_seq
    inst_pass = np.empty(per_seq, np.int64)
    inst_tok = np.empty(per_seq, np.int64)
    for p in range(n_passes):
        for j in range(ntok[p]):
            inst_pass[pass_base[p] + j] = p
            inst_tok[pass_base[p] + j] = j
    remaining = np.empty((n_inst, n_ops), np.int64)
    rtime = np.zeros((n_inst, n_ops), np.float64)
    for i in range(n_inst):
        for o in range(n_ops):
            remaining[i, o] = npreds[o]
    kvt = np.full((n_inst, n_layers), -1.0)
    ptr = np.zeros((batch, n_passes, n_layers), np.int64)
    pmax = np.zeros((batch, n_passes, n_layers), np.float64)
    tile_free = np.zeros(n_tiles, np.float64)
    tile_busy = np.zeros(n_tiles, np.float64)
    dpu_free = np.zeros(n_dpu, np.float64)
    dpu_busy = np.zeros(n_dpu, np.float64)
    mha_free = np.zeros(n_mha, np.float64)
    mha_busy = np.zeros(n_mha, np.float64)
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
    token_times = np.zeros((batch, n_passes), np.float64)
    log_f = np.zeros((log_cap, 2), np.float64)
    log_i = np.zeros((log_cap, 7), np.int64)
    n_log = 0
    first_op = 0
    for o in range(n_ops):
        if flags[o] & 4:
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
        pos = j if (not kv_cache or p == 0) else prompt_len + p - 1
        n_events += 1
        r = res[o]
        f = t
        unit = -1
        if r == 0:
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
                for _ in range(grp_count[q]):  # blocks back to back (same arithmetic as the reference)
                    en += mvm_lat
                    tile_busy[tl] += mvm_lat
                tile_free[tl] = en
                if en > f:
                    f = en
                if record:
                    n_log = _log_event(log_f, log_i, n_log, st, en, 0, tl, s, p, j, layer[o], o)
            e_mvm += grp_energy[g]
        else:
            if r == 1 or r == 2:
                if r == 1:
                    free_a, busy_a, uptr, uidx = dpu_free, dpu_busy, dpu_ptr, dpu_idx
                    dur = lat[o]
                    e_dig += energy[o]
                else:
                    free_a, busy_a, uptr, uidx = mha_free, mha_busy, mha_ptr, mha_idx
                    dur = lat[o] * (pos + 1)
                    e_att += energy[o] * (pos + 1)
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
        if flags[o] & 8:
            token_times[s, p] = fo
            if p + 1 < n_passes:
                for jj in range(ntok[p + 1]):
                    inst2 = s * per_seq + pass_base[p + 1] + jj
                    heapq.heappush(heap, (fo + comm_in[first_op], inst2 * n_ops + first_op))
        for q in range(succ_ptr[o], succ_ptr[o + 1]):
            sc = succ[q]
            if (flags[sc] & 2) and j != ntok[p] - 1:
                continue
            if fo > rtime[inst, sc]:
                rtime[inst, sc] = fo
            remaining[inst, sc] -= 1
            if remaining[inst, sc] == 0:
                if flags[sc] & 1:
                    lyr = kv_layer[sc]
                    kvt[inst, lyr] = rtime[inst, sc]
                    base = s * per_seq + pass_base[p]
                    while ptr[s, p, lyr] < ntok[p] and kvt[base + ptr[s, p, lyr], lyr] >= 0.0:
                        k2 = base + ptr[s, p, lyr]
                        if kvt[k2, lyr] > pmax[s, p, lyr]:
                            pmax[s, p, lyr] = kvt[k2, lyr]
                        heapq.heappush(heap, (pmax[s, p, lyr] + comm_in[sc], k2 * n_ops + sc))
                        ptr[s, p, lyr] += 1
                else:
                    heapq.heappush(heap, (rtime[inst, sc] + comm_in[sc], inst * n_ops + sc))
    return (makespan, token_times, tile_busy, dpu_busy, mha_busy, dram_busy, e_mvm, e_dig, e_att,
            e_dram, e_comm, conflicts, stall, n_events, log_f[:min(n_log, log_cap)],
            log_i[:min(n_log, log_cap)], n_log)


try:  # the compiled engine; the same function runs as plain Python without numba
    import numba

    _log_event = numba.njit(cache=True)(_log_event_py)
    _engine = numba.njit(cache=True)(_engine_py)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    _engine = _engine_py

LOG_DTYPE = np.dtype([("start_ns", "f8"), ("end_ns", "f8"), ("resource", "i8"), ("unit", "i8"),
                      ("seq", "i8"), ("pass_", "i8"), ("token", "i8"), ("layer", "i8"), ("op", "i8")])


def _run(prog: Program, chip: ChipConfig, engine, log_cap: int):
    w = prog.workload
    return engine(prog.res, prog.group, prog.moe, prog.branch, prog.stage, prog.lat, prog.energy,
                  prog.comm_in, prog.comm_out, prog.comm_energy, prog.layer, prog.npreds,
                  prog.succ_ptr, prog.succ, prog.flags, prog.kv_layer, prog.grp_ptr, prog.grp_tile,
                  prog.grp_count, prog.grp_energy, prog.expert_gid, prog.choices,
                  prog.dram_bytes_per_key, prog.mvm_latency_ns, prog.n_layers,
                  prog.unit_ptr[0], prog.unit_idx[0], prog.n_units[0],
                  prog.unit_ptr[1], prog.unit_idx[1], prog.n_units[1], chip.n_tiles,
                  w.batch, w.n_passes, w.prompt_len, w.kv_cache, w.record_events, log_cap)


def simulate(model: ModelSpec, chip: ChipConfig, mapping: Mapping, workload: Workload, *,
             max_events_logged: int = 2_000_000) -> SimResult:
    """Run ``workload`` on ``chip`` with ``model`` placed by ``mapping``; see the module docstring
    for the graph, the passes and the scheduling policy."""
    prog = build_program(model, chip, mapping, workload)
    cap = max_events_logged if workload.record_events else 1
    out = _run(prog, chip, _engine, cap)
    return _result(prog, out, max_events_logged)


def _result(prog: Program, out, cap: int) -> SimResult:
    (makespan, token_times, tile_busy, dpu_busy, mha_busy, dram_busy, e_mvm, e_dig, e_att, e_dram,
     e_comm, conflicts, stall, n_events, log_f, log_i, n_log) = out
    w = prog.workload
    if w.record_events and n_log > cap:
        raise ValueError(f"the event log has {n_log:,} entries, more than max_events_logged={cap:,}: "
                         "record a smaller workload or raise max_events_logged")
    events = None
    if w.record_events:
        events = np.zeros(len(log_f), dtype=LOG_DTYPE)
        events["start_ns"], events["end_ns"] = log_f[:, 0], log_f[:, 1]
        for k, name in enumerate(("resource", "unit", "seq", "pass_", "token", "layer", "op")):
            events[name] = log_i[:, k]
    passive = prog.passive_power_w * makespan * 1e3  # W x ns = nJ
    tpot = np.diff(token_times, axis=1).ravel()
    return SimResult(
        makespan_ns=float(makespan), ttft_ns=token_times[:, 0].copy(), tpot_ns=tpot,
        token_times_ns=token_times, generated_tokens=w.batch * w.gen_len,
        energy_breakdown_pj={"mvm": float(e_mvm), "digital": float(e_dig), "attention": float(e_att),
                             "dram": float(e_dram), "communication": float(e_comm),
                             "passive": float(passive)},
        tile_busy_ns=tile_busy, unit_busy_ns={"dpu": dpu_busy, "mha": mha_busy,
                                              "dram": np.array([dram_busy])},
        tile_conflicts=int(conflicts), stall_ns=float(stall),
        peak_scratchpad_bytes=prog.peak_scratchpad_bytes, n_events=int(n_events), events=events,
        op_names=prog.names)
