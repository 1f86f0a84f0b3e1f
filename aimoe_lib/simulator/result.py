"""What a run measured: :class:`SimResult`, and the dtype of its event log."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .program import Program, Workload

__all__ = ["SimResult", "LOG_DTYPE", "make_result"]

LOG_DTYPE = np.dtype([("start_ns", "f8"), ("end_ns", "f8"), ("resource", "i8"), ("unit", "i8"),
                      ("seq", "i8"), ("pass_", "i8"), ("token", "i8"), ("layer", "i8"), ("op", "i8")])
"""One event: start and end (ns), resource class (``R_*``) and its tile or unit index, the
sequence, pass and token of the instance, the layer slot and the operation (index into
``Program.names``)."""


@dataclass(frozen=True, eq=False)
class SimResult:
    """What a run measured, with the inputs it came from. Times in ns, energies in pJ."""

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
    tier_mvms: int
    """Tier MVMs executed (every block of every tile operation)."""
    workload: Workload
    """The workload that ran."""
    program: Program
    """The token program that ran (:func:`~aimoe_lib.simulator.program.build_program`)."""
    events: np.ndarray | None = None
    """Event log (:data:`LOG_DTYPE`) or None without ``Workload(record_events=True)``."""

    @property
    def op_names(self) -> tuple:
        """Names of the operations of the token program (index = the log's ``op``)."""
        return self.program.names

    @property
    def passive_power_w(self) -> float:
        """Static power of the chip that ran, W."""
        return self.program.passive_power_w

    @property
    def energy_pj(self) -> float:
        """Total energy: operations + passive power x makespan."""
        return float(sum(self.energy_breakdown_pj.values()))

    @property
    def dynamic_energy_pj(self) -> float:
        """Energy of the operations alone (total minus static energy)."""
        return float(sum(v for k, v in self.energy_breakdown_pj.items() if k != "passive"))

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second over the whole run."""
        return self.generated_tokens / (self.makespan_ns * 1e-9)

    @property
    def energy_per_token_pj(self) -> float:
        """Energy per generated token."""
        return self.energy_pj / self.generated_tokens

    @property
    def tokens_per_joule(self) -> float:
        """Generated tokens per joule of total energy."""
        return self.generated_tokens / (self.energy_pj * 1e-12)

    @property
    def tokens_per_s_per_mm2(self) -> float:
        """Throughput per mm² of the chip that ran: the figure of merit of stacking tiers."""
        return self.tokens_per_s / self.program.chip_area_mm2

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
        """Busy fraction of each resource class, two ways.

        - Mean over the class: ``tiles`` (over the tiles holding weights), ``dpu``, ``mha``,
          ``dram``.
        - The class's most loaded set of interchangeable units: ``tiles_max`` (the busiest tile:
          each tile holds its own weights), ``dpu_max`` and ``mha_max`` (the units one layer slot
          may use, :attr:`~aimoe_lib.simulator.program.Program.unit_ptr`: a layer's own units
          when units are locked to layers, where the LM head's DPUs or one hot layer can
          saturate while the class mean stays low; the whole pool when pooled, so then the mean),
          ``dram_max`` (the one channel).
        """
        mk = self.makespan_ns
        used = self.tile_busy_ns[self.tile_busy_ns > 0]
        out = {"tiles": float(used.mean() / mk) if used.size else 0.0,
               "tiles_max": float(self.tile_busy_ns.max() / mk) if self.tile_busy_ns.size else 0.0}
        for k, v in self.unit_busy_ns.items():
            out[k] = float(v.mean() / mk) if v.size else 0.0
            out[f"{k}_max"] = out[k]
        for k in ("dpu", "mha"):
            per_slot = self.slot_busy_fraction(k)
            if per_slot.size:
                out[f"{k}_max"] = float(per_slot.max())
        return out

    def slot_busy_fraction(self, kind: str) -> np.ndarray:
        """Busy fraction of the units each layer slot may use (the layers, then the LM head's
        slot), for ``kind`` 'dpu' or 'mha': the units' summed busy time over (their count x
        makespan), from the program's unit sets. Units locked to layers: a layer's own units (or
        the one unit it shares when there are fewer units than slots); pooled: the whole pool,
        the same for every slot."""
        kinds = ("dpu", "mha")
        if kind not in kinds:
            raise ValueError(f"slot_busy_fraction(kind={kind!r}): use 'dpu' or 'mha'")
        c = kinds.index(kind)
        busy = np.asarray(self.unit_busy_ns.get(kind, ()), dtype=np.float64)
        ptr, idx = self.program.unit_ptr[c], self.program.unit_idx[c]
        counts = np.diff(ptr)
        if not (busy.size and idx.size) or counts.min() < 1:
            return np.zeros(0)
        return np.add.reduceat(busy[idx], ptr[:-1]) / counts / self.makespan_ns

    def bottleneck(self, threshold: float = 0.5) -> str:
        """Resource class whose most loaded set of interchangeable units (:meth:`busy_fraction`'s
        ``*_max``: a tile, a layer's DPUs or attention units, the pool) is busy the largest
        fraction of the run ('tiles', 'dpu', 'mha' or 'dram'), or 'latency' when none is busy
        ``threshold`` of the time: then the run is bound by the tokens' dependency chains, not by
        a resource. The most loaded set, not the class mean, because a pipeline runs at the pace
        of its slowest stage."""
        b = self.busy_fraction()
        cand = {k: b[f"{k}_max"] for k in ("tiles", "dpu", "mha", "dram")}
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
            f"energy                 {self.energy_pj / 1e6:12.3f} µJ, {self.energy_per_token_pj / 1e6:.3f} µJ per token "
            f"(dynamic {self.dynamic_energy_pj / 1e6:.3f} µJ, "
            f"{self.dynamic_energy_pj / self.generated_tokens / 1e6:.3f} µJ per token)",
            "  by kind              " + ", ".join(f"{k} {v / max(self.energy_pj, 1e-30):.1%}" for k, v in e.items()),
            f"tile conflicts         {self.tile_conflicts:12,d} (stall {self.stall_ns / 1e3:.2f} µs)",
            f"busy fraction          tiles {b['tiles']:.1%} (busiest {b['tiles_max']:.1%}), "
            f"DPUs {b['dpu']:.1%} (most loaded {b['dpu_max']:.1%}), MHA {b['mha']:.1%} "
            f"(most loaded {b['mha_max']:.1%}), "
            f"DRAM {b['dram']:.1%} -> bottleneck: {self.bottleneck()}",
            f"peak scratchpad        {self.peak_scratchpad_bytes / 1e6:12.3f} MB",
            f"efficiency             {self.tokens_per_joule:12,.1f} tokens/J, "
            f"{self.tokens_per_s_per_mm2:,.2f} tokens/s per mm² "
            f"({self.program.chip_area_mm2:,.1f} mm²"
            + (f" on {self.program.n_dies} dies)" if self.program.n_dies > 1 else ")"),
        ]
        return "\n".join(lines)


def _passive_energy_pj(prog: Program, out) -> float:
    """Static energy: every unit and tile at its static power for the whole run, or, with power
    gating (``idle_power_fraction`` < 1), at that fraction of it while idle."""
    mk = out.makespan_ns
    f = prog.idle_power_fraction
    if f == 1.0:
        return prog.passive_power_w * mk * 1e3  # W x ns = nJ = 1e3 pJ
    gated = prog.passive_power_w - (prog.unit_power_w * (prog.n_units[0] + prog.n_units[1])
                                    + prog.tile_power_w * prog.n_tiles)  # the DRAM's idle power

    def draw(p_w: float, busy: np.ndarray) -> float:
        return p_w * (f * busy.size * mk + (1.0 - f) * float(busy.sum()))

    return (draw(prog.unit_power_w, out.dpu_busy_ns) + draw(prog.unit_power_w, out.mha_busy_ns)
            + draw(prog.tile_power_w, out.tile_busy_ns) + gated * mk) * 1e3


def make_result(prog: Program, out, max_events_logged: int) -> SimResult:
    """A :class:`SimResult` from a program and what an engine measured (an
    :class:`~aimoe_lib.simulator.engine.EngineOutput`)."""
    w = prog.workload
    if w.record_events and out.n_logged > max_events_logged:
        raise ValueError(f"the event log has {out.n_logged:,} entries, more than "
                         f"max_events_logged={max_events_logged:,}: record a smaller workload "
                         "or raise max_events_logged")
    events = None
    if w.record_events:
        events = np.zeros(len(out.log_f), dtype=LOG_DTYPE)
        events["start_ns"], events["end_ns"] = out.log_f[:, 0], out.log_f[:, 1]
        for k, name in enumerate(("resource", "unit", "seq", "pass_", "token", "layer", "op")):
            events[name] = out.log_i[:, k]
    passive = _passive_energy_pj(prog, out)
    token_times = out.token_times_ns
    return SimResult(
        makespan_ns=float(out.makespan_ns), ttft_ns=token_times[:, 0].copy(),
        tpot_ns=np.diff(token_times, axis=1).ravel(), token_times_ns=token_times,
        generated_tokens=w.batch * w.gen_len,
        energy_breakdown_pj={"mvm": float(out.e_mvm), "digital": float(out.e_digital),
                             "attention": float(out.e_attention), "dram": float(out.e_dram),
                             "communication": float(out.e_communication),
                             "passive": float(passive)},
        tile_busy_ns=out.tile_busy_ns,
        unit_busy_ns={"dpu": out.dpu_busy_ns, "mha": out.mha_busy_ns,
                      "dram": np.array([out.dram_busy_ns])},
        tile_conflicts=int(out.tile_conflicts), stall_ns=float(out.stall_ns),
        peak_scratchpad_bytes=prog.peak_scratchpad_bytes, n_events=int(out.n_events),
        tier_mvms=int(out.tier_mvms),
        workload=w, program=prog, events=events)
