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

The other external references the book checks are gathered here too, each as plain rows:
[HERMES]'s published peak figures read back from :func:`~aimoe_lib.hardware.preset` ``'hermes'``
(:func:`hermes_check`), parameter counts against model cards (:func:`param_checks`), and, with the
GPU roofline against published measurements (:func:`~aimoe_lib.gpu.validation_table`), all of
them as one list of :class:`Check` (:func:`summary_rows`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from . import hardware
from .mapping import Mapping, block_layout, blocks_of
from .models import ModelSpec, Role
from .shipped import data_path
from .simulator import SimResult, Workload, simulate

__all__ = ["threedsim_model", "threedsim_mapping", "threedsim_readme", "threedsim_reference",
           "ThreedsimRow", "threedsim_comparison", "THREEDSIM_ENERGY_KINDS", "ThreedsimEnergy",
           "threedsim_energy_by_kind", "ThreedsimTiming", "threedsim_timing", "DataflowEffect",
           "threedsim_dataflow_effects", "HermesCheck", "mvm_tops_per_w", "hermes_check",
           "ParamCheck", "param_checks", "REFERENCES", "Check", "summary_rows", "Worst",
           "worst_errors"]


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
    geo = block_layout(matrices, rows, cols)
    tile_tier = np.array([tt for m in matrices for tt in place[m.name]], dtype=np.int32)
    return Mapping(model=model, chip=chip, strategy="in_order", matrices=matrices, digital=(),
                   matrix_offsets=geo.matrix_offsets, block_matrix=geo.block_matrix,
                   block_row=geo.block_row, block_col=geo.block_col, rows_used=geo.rows_used,
                   cols_used=geo.cols_used, tile=tile_tier[:, 0].copy(), tier=tile_tier[:, 1].copy())


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


# ------------------------------------------------------------------------------ energy by kind
THREEDSIM_ENERGY_KINDS: dict[str, tuple[str, ...]] = {
    "mvm": ("tier_linear",),
    "communication": ("communication",),
    "attention": ("mha",),
    "digital": ("layer_norm", "digital_relu", "digital_gelu", "digital_add", "multinomial"),
    "dram": (),
    "passive": ("passive",),
}
"""aimoe's energy kinds (keys of :attr:`~aimoe_lib.simulator.result.SimResult.energy_breakdown_pj`)
-> the kinds 3D-SiM reports that make them up (3D-SiM computes DRAM traffic but never charges it,
so it has no 'dram' kind)."""


@dataclass(frozen=True)
class ThreedsimEnergy:
    """One energy kind of one README workload in 3D-SiM and in aimoe, nJ."""

    name: str
    """The case, as data/threedsim.json names it."""
    kind: str
    """aimoe's energy kind (a key of :data:`THREEDSIM_ENERGY_KINDS`)."""
    threedsim_nj: float
    """3D-SiM's energy of the kinds that make up ``kind``, nJ."""
    aimoe_nj: float
    """aimoe's energy of ``kind``, nJ."""

    @property
    def difference_nj(self) -> float:
        """aimoe - 3D-SiM, nJ."""
        return self.aimoe_nj - self.threedsim_nj

    @property
    def error(self) -> float:
        """aimoe / 3D-SiM - 1 (0 when both are 0)."""
        if self.threedsim_nj == 0:
            return 0.0 if self.aimoe_nj == 0 else float("inf")
        return self.aimoe_nj / self.threedsim_nj - 1


def _threedsim_kind_nj(energy: dict, kinds: tuple[str, ...]) -> float:
    total = 0.0
    for k in kinds:
        v = energy.get(k, 0.0)
        total += sum(v.values()) if isinstance(v, dict) else float(v)
    return total


def _replay(case: dict) -> SimResult:
    return threedsim_readme(case["n_layers"], case["target_len"], case["n_seqs"],
                            case["kv_cache"], case["start_len"])


def threedsim_energy_by_kind(cases=None) -> list[ThreedsimEnergy]:
    """Every stored 3D-SiM case's energy by kind next to aimoe's
    (:func:`~aimoe_lib.validation.threedsim_readme`), grouped as
    :data:`~aimoe_lib.validation.THREEDSIM_ENERGY_KINDS`; kinds that are 0 in both are left out."""
    cases = threedsim_reference()["cases"] if cases is None else cases
    out = []
    for c in cases:
        e = _replay(c).energy_breakdown_pj
        for kind, theirs in THREEDSIM_ENERGY_KINDS.items():
            row = ThreedsimEnergy(c["name"], kind, _threedsim_kind_nj(c["energy"], theirs),
                                  e.get(kind, 0.0) / 1e3)
            if row.threedsim_nj or row.aimoe_nj:
                out.append(row)
    return out


# ------------------------------------------------------------------------------ wall time
@dataclass(frozen=True)
class ThreedsimTiming:
    """How long one README workload takes to simulate: 3D-SiM's stored run and aimoe measured
    here (seconds; aimoe's varies with the machine and its load)."""

    name: str
    """The case."""
    wall_3dsim_s: float
    """3D-SiM's whole process (tracing the model with torch.fx, scheduling, reporting), s."""
    trace_3dsim_s: float
    """Of which tracing the model into its operation graph, s."""
    schedule_3dsim_s: float
    """Of which scheduling the graph, s."""
    peak_rss_3dsim_mb: float
    """3D-SiM's peak resident memory, MB."""
    aimoe_s: float
    """aimoe's :func:`~aimoe_lib.validation.threedsim_readme` (model, mapping, operation graph and
    simulation), best of the repeats, s."""


def threedsim_timing(cases=None, repeat: int = 3) -> list[ThreedsimTiming]:
    """3D-SiM's stored wall time and memory next to aimoe's time for the same workload, measured
    now with ``time.perf_counter`` (best of ``repeat`` runs). Not deterministic."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"threedsim_timing(repeat={repeat!r}): must be an integer >= 1")
    cases = threedsim_reference()["cases"] if cases is None else cases
    out = []
    for c in cases:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            _replay(c)
            best = min(best, time.perf_counter() - t0)
        ip = c.get("in_process", {})
        out.append(ThreedsimTiming(c["name"], c["wall_s"], ip.get("trace_s", float("nan")),
                                   ip.get("schedule_s", float("nan")), c["peak_rss_mb"], best))
    return out


# ------------------------------------------------------------------------------ dataflow knobs
@dataclass(frozen=True)
class DataflowEffect:
    """One README workload with one :class:`~aimoe_lib.hardware.Dataflow` field of
    :data:`~aimoe_lib.hardware.THREEDSIM_DATAFLOW` set to aimoe's default (costs stay 3D-SiM's)."""

    name: str
    """The case."""
    knob: str
    """The Dataflow field changed ('none': 3D-SiM's dataflow; 'all': aimoe's whole default)."""
    value: str
    """Its value in this run."""
    makespan_3dsim_ns: float
    """3D-SiM's stored makespan, ns."""
    makespan_ns: float
    """aimoe's makespan with this dataflow, ns."""
    energy_nj: float
    """aimoe's total energy with this dataflow, nJ."""

    @property
    def makespan_error(self) -> float:
        """aimoe / 3D-SiM - 1."""
        return self.makespan_ns / self.makespan_3dsim_ns - 1


def threedsim_dataflow_effects(case_ids=("L3_T12_S1_start1_nokv", "L3_T12_S1_start1_kv")
                               ) -> list[DataflowEffect]:
    """For each stored case in ``case_ids``: 3D-SiM's dataflow, then each of its
    :class:`~aimoe_lib.hardware.Dataflow` fields in turn set to aimoe's default, then all of them;
    the model, its 3D-SiM mapping and 3D-SiM's costs stay as in
    :func:`~aimoe_lib.validation.threedsim_readme`. KV-cache traffic with pass-synchronised
    attention is not modelled, so that variant is left out of KV-cache cases."""
    by_id = {c["id"]: c for c in threedsim_reference()["cases"]}
    missing = [i for i in case_ids if i not in by_id]
    if missing:
        raise ValueError(f"threedsim_dataflow_effects: unknown case ids {missing}; stored: "
                         f"{', '.join(by_id)}")
    ours = hardware.Dataflow()
    variants = [("none", hardware.THREEDSIM_DATAFLOW)]
    for f in dataclasses.fields(hardware.Dataflow):
        if getattr(ours, f.name) != getattr(hardware.THREEDSIM_DATAFLOW, f.name):
            variants.append((f.name, dataclasses.replace(hardware.THREEDSIM_DATAFLOW,
                                                         **{f.name: getattr(ours, f.name)})))
    variants.append(("all", ours))
    out = []
    for cid in case_ids:
        c = by_id[cid]
        model = threedsim_model(c["n_layers"], c["target_len"])
        w = Workload(batch=c["n_seqs"], prompt_len=c["start_len"],
                     gen_len=c["target_len"] - c["start_len"], kv_cache=c["kv_cache"])
        for knob, flow in variants:
            if (c["kv_cache"] and flow.kv_traffic
                    and flow.attention_sync is hardware.AttentionSync.PASS):
                continue  # KV traffic with pass-synchronised attention: not modelled
            chip = hardware.preset("3dsim", kv_placement="dram" if c["kv_cache"] else "sram",
                                   dataflow=flow)
            r = simulate(model, chip, threedsim_mapping(model, chip), w)
            value = "-" if knob in ("none", "all") else _plain(getattr(flow, knob))
            out.append(DataflowEffect(c["name"], knob, value, c["makespan_ns"], r.makespan_ns,
                                      r.energy_pj / 1e3))
    return out


def _plain(v) -> str:
    return str(v.value) if isinstance(v, Enum) else str(v)


# ------------------------------------------------------------------------------ HERMES
@dataclass(frozen=True)
class HermesCheck:
    """The chip that :func:`~aimoe_lib.hardware.preset` ``'hermes'`` describes, read back as
    [HERMES]'s published peak figures."""

    n_cores: int
    """Cores (tiles of one tier)."""
    rows: int
    """Rows of a core's crossbar."""
    cols: int
    """Columns of a core's crossbar."""
    mvm_latency_ns: float
    """Latency of one full MVM in the preset, ns."""
    mvm_energy_pj: float
    """Energy of one full MVM in the preset, pJ."""
    peak_tops: float
    """Every core busy: cores x 2 rows cols / latency, TOPS."""
    tops_per_w: float
    """2 rows cols / energy of one MVM (operations per pJ = TOPS/W)."""
    published_tops: float = hardware.HERMES_PEAK_TOPS
    """[HERMES]'s peak throughput, TOPS."""
    published_tops_per_w: float = hardware.HERMES_TOPS_PER_W
    """[HERMES]'s peak efficiency, TOPS/W."""

    @property
    def tops_error(self) -> float:
        """Recomputed / published - 1."""
        return self.peak_tops / self.published_tops - 1

    @property
    def tops_per_w_error(self) -> float:
        """Recomputed / published - 1."""
        return self.tops_per_w / self.published_tops_per_w - 1


def mvm_tops_per_w(chip: hardware.ChipConfig) -> float:
    """Efficiency of one full tier MVM of ``chip``: 2 x rows x cols operations over its energy
    (operations per pJ = TOPS/W); static power and everything but the MVM left out."""
    c = chip.cost.cost(hardware.OpKind.MVM, chip.tier_rows, chip.tier_cols)
    return 2 * chip.tier_rows * chip.tier_cols / c.energy_pj


def hermes_check(chip: hardware.ChipConfig | None = None) -> HermesCheck:
    """Peak TOPS and TOPS/W recomputed from a chip's MVM cost (default: the ``'hermes'`` preset,
    whose cost :func:`~aimoe_lib.hardware.hermes_mvm_cost` derives from the published figures)."""
    chip = hardware.preset("hermes") if chip is None else chip
    c = chip.cost.cost(hardware.OpKind.MVM, chip.tier_rows, chip.tier_cols)
    ops = 2 * chip.tier_rows * chip.tier_cols
    return HermesCheck(n_cores=chip.n_tiles, rows=chip.tier_rows, cols=chip.tier_cols,
                       mvm_latency_ns=c.latency_ns, mvm_energy_pj=c.energy_pj,
                       peak_tops=chip.n_tiles * ops / c.latency_ns / 1e3,
                       tops_per_w=mvm_tops_per_w(chip))


# ------------------------------------------------------------------------------ model cards
@dataclass(frozen=True)
class ParamCheck:
    """One published parameter count next to ours in the same counting convention."""

    model: str
    """Zoo name."""
    quantity: str
    """'total' or 'active'."""
    figure: str
    """The figure as published, e.g. '46.7B'."""
    convention: str
    """What the figure counts."""
    published: float
    """The figure as a number."""
    ours: int
    """Our count in that convention."""
    error: float
    """Signed distance of ``ours`` from the interval the printed figure rounds from, relative to
    the figure (:meth:`~aimoe_lib.zoo.Published.relative_error`): 0 when ours rounds to it."""

    @property
    def ratio_error(self) -> float:
        """ours / published - 1, ignoring the rounding of the figure."""
        return self.ours / self.published - 1


def param_checks() -> list[ParamCheck]:
    """Every published count of every :func:`~aimoe_lib.zoo.entries` model against ours; the
    'active' count of a dense model (the same figure as its total) is left out."""
    from . import zoo

    out = []
    for e in zoo.entries():
        for p in e.published:
            if p.quantity == "active" and not e.spec.is_moe:
                continue
            n = e.count(p)
            out.append(ParamCheck(e.spec.name, p.quantity, p.figure, p.convention.label, p.value,
                                  n, float(np.sign(n - p.value)) * p.relative_error(n)))
    return out


# ------------------------------------------------------------------------------ summary
REFERENCES = ("3D-SiM", "HERMES", "GPU measurements", "model cards")
"""The external references, in the order of the summary."""


@dataclass(frozen=True)
class Check:
    """One number of aimoe against an external reference."""

    reference: str
    """One of :data:`~aimoe_lib.validation.REFERENCES`."""
    item: str
    """The case, data point or model."""
    quantity: str
    """What is compared."""
    unit: str
    """Unit of both values."""
    reference_value: float
    """The reference's value (published, or printed by the reference simulator)."""
    aimoe_value: float
    """aimoe's value."""
    error: float
    """aimoe / reference - 1 (for parameter counts: beyond the rounding of the published
    figure, :attr:`~aimoe_lib.validation.ParamCheck.error`)."""


def summary_rows(threedsim_rows=None, hermes=None, gpu_rows=None, params=None) -> list[Check]:
    """Every check of aimoe against an outside reference as one list: 3D-SiM's makespan, tier-MVM
    count and total energy per stored case (:func:`~aimoe_lib.validation.threedsim_comparison`),
    HERMES' peak TOPS and TOPS/W (:func:`~aimoe_lib.validation.hermes_check`), the GPU roofline
    against published measurements (:func:`~aimoe_lib.gpu.validation_table`) and parameter counts
    against model cards (:func:`~aimoe_lib.validation.param_checks`). Pass rows already computed
    to avoid recomputing them."""
    from . import gpu

    t3 = threedsim_comparison() if threedsim_rows is None else threedsim_rows
    h = hermes_check() if hermes is None else hermes
    g = gpu.validation_table() if gpu_rows is None else gpu_rows
    pc = param_checks() if params is None else params
    out = []
    for r in t3:
        case = r.name.split(" ")[0]
        out += [Check("3D-SiM", case, "makespan", "ns", r.makespan_3dsim_ns, r.makespan_aimoe_ns,
                      r.makespan_error),
                Check("3D-SiM", case, "tier MVMs", "", r.mvm_3dsim, r.mvm_aimoe, r.mvm_error),
                Check("3D-SiM", case, "energy", "nJ", r.energy_3dsim_nj, r.energy_aimoe_nj,
                      r.energy_error)]
    out += [Check("HERMES", "hermes preset", "peak throughput", "TOPS", h.published_tops,
                  h.peak_tops, h.tops_error),
            Check("HERMES", "hermes preset", "efficiency", "TOPS/W", h.published_tops_per_w,
                  h.tops_per_w, h.tops_per_w_error)]
    for r in g:
        m = r.measurement
        out.append(Check("GPU measurements", m.label, m.metric.replace("_s", ""), "s", m.value,
                         r.predicted, r.error))
    for p in pc:
        out.append(Check("model cards", p.model, f"{p.quantity} ({p.figure})", "parameters",
                         p.published, p.ours, p.error))
    return out


@dataclass(frozen=True)
class Worst:
    """The largest error of one quantity of one reference."""

    reference: str
    """The reference."""
    quantity: str
    """The quantity (parameter counts: 'total' or 'active')."""
    n_checks: int
    """How many checks."""
    worst: Check
    """The check with the largest absolute error."""


def worst_errors(rows) -> list[Worst]:
    """The check with the largest absolute error per (reference, quantity) of ``rows``
    (:func:`~aimoe_lib.validation.summary_rows`), in the order they first appear."""
    groups: dict[tuple[str, str], list[Check]] = {}
    for r in rows:
        q = r.quantity.split(" (")[0]
        groups.setdefault((r.reference, q), []).append(r)
    return [Worst(ref, q, len(g), max(g, key=lambda c: abs(c.error)))
            for (ref, q), g in groups.items()]
