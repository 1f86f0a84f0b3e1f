"""Digital units provisioned to load: the fewest DPUs and attention units per layer that keep
every layer's units busy at most a given fraction of the run, at a given workload.

The study's chips lock 24 DPUs and 8 attention units to every layer (assumption
A-UNITS-PER-LAYER, from 3D-SiM's BERT-base check). At the workloads of this book most of them
idle (2 % busy is typical), and on deep models they are most of the chip's area: a comparison of
tokens/s per mm² then measures unit counts, not tiles. :func:`provision_to_load` sizes them to
the work instead:

1. simulate with the chip's units locked to layers (``k`` per layer to start, default 24 and 8);
2. for each unit class, the busiest layer's work ``W`` (ns of busy time summed over its units)
   needs ``ceil(W / (max_busy x makespan))`` units to stay at most ``max_busy`` busy;
3. re-provision every layer with that count and simulate again; repeat until the counts no
   longer change and every layer is within the bound (fewer units lengthen the run, which
   lowers the busy fraction, so the counts settle in a few rounds).

Attention units also hold the KV cache (``kv_sram_mb_per_mha_unit`` each). Sizing them to their
compute load alone can leave a long-context or large-batch run with too little on-chip KV
capacity, and every spilled read then goes to off-chip memory: with ``keep_kv_on_chip`` (the
default) a layer keeps at least :func:`kv_units_per_layer` attention units, the fewest whose
capacity holds the run's whole KV cache.

The answer depends on the workload (batch, lengths, routing): provisioning is a design choice
for a load, stated with it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import checks
from .hardware import ChipConfig, KVPlacement, UnitAssignment
from .mapping import Mapping
from .models import ModelSpec
from .simulator import SimResult, Workload, kv_cache_bytes, simulate

__all__ = ["Provisioned", "kv_units_per_layer", "layer_busy", "provision_to_load"]


class Provisioned(NamedTuple):
    """What :func:`provision_to_load` found."""

    chip: ChipConfig
    """The chip with ``dpus_per_layer`` and ``mha_units_per_layer`` units locked to each layer."""
    result: SimResult
    """The run on that chip."""
    dpus_per_layer: int
    mha_units_per_layer: int
    rounds: tuple
    """(dpus per layer, attention units per layer, busiest DPU-layer fraction, busiest
    attention-layer fraction) of every simulated round, in order."""


def kv_units_per_layer(model: ModelSpec, chip: ChipConfig, workload: Workload) -> int:
    """The fewest attention units per layer whose KV capacity holds the whole KV cache of
    ``workload``: ceil(KV bytes / (layers x ``kv_sram_mb_per_mha_unit`` x 1e6)), at least 1
    (1 when the capacity is unbounded or the run keeps no KV cache on chip)."""
    cap_mb = chip.kv_sram_mb_per_mha_unit
    kv = kv_cache_bytes(model, chip, workload)
    if cap_mb is None or kv == 0 or chip.kv_placement is not KVPlacement.SRAM:
        return 1
    return max(1, math.ceil(kv / (model.n_layers * cap_mb * 1e6) - 1e-9))


def layer_busy(result: SimResult, chip: ChipConfig, n_layers: int) -> dict:
    """Busy fraction of each layer slot's units (layers, then the LM head's slot) per class:
    {'dpu': array, 'mha': array}, the slot's summed busy time over (its units x makespan)
    (:meth:`~aimoe_lib.simulator.result.SimResult.slot_busy_fraction`). Needs units locked to
    layers (``unit_assignment='per_layer'``) and ``result`` a run of an ``n_layers`` model."""
    if chip.unit_assignment is not UnitAssignment.PER_LAYER:
        raise ValueError(f"layer_busy: chip {chip.name!r} pools its units "
                         f"(unit_assignment={chip.unit_assignment.value!r}); per-layer load needs "
                         "units locked to layers: chip.provisioned(n_layers)")
    out = {k: result.slot_busy_fraction(k) for k in ("dpu", "mha")}
    if any(v.shape != (n_layers + 1,) for v in out.values()):
        raise ValueError(f"layer_busy: result has {len(out['dpu'])} layer slots, not "
                         f"n_layers + 1 = {n_layers + 1}; pass the run's model's n_layers")
    return out


def provision_to_load(model: ModelSpec, chip: ChipConfig, mapping: Mapping, workload: Workload, *,
                      max_busy: float = 0.5, start: tuple[int, int] = (24, 8),
                      max_rounds: int = 8, keep_kv_on_chip: bool = True) -> Provisioned:
    """The fewest DPUs and attention units per layer (the same count for every layer) that keep
    each layer's units busy at most ``max_busy`` of the run of ``workload`` and, with
    ``keep_kv_on_chip``, at least :func:`kv_units_per_layer` attention units per layer; see the
    module docstring. ``chip``'s unit counts are replaced; ``mapping`` must fit ``chip``."""
    owner = "provision_to_load()"
    max_busy = checks.real(owner, "max_busy", max_busy, minimum=0, strict=True, maximum=1,
                           fix="pass a busy fraction in (0, 1], e.g. 0.5")
    max_rounds = checks.integer(owner, "max_rounds", max_rounds, minimum=1, maximum=100)
    if not (isinstance(start, tuple | list) and len(start) == 2):
        raise ValueError(f"{owner[:-1]}start={start!r}): give (dpus per layer, attention units "
                         "per layer), e.g. (24, 8)")
    k_dpu, k_mha = (checks.integer(owner, "start", v, minimum=1) for v in start)
    if not isinstance(keep_kv_on_chip, bool):
        raise ValueError(f"provision_to_load(keep_kv_on_chip={keep_kv_on_chip!r}): pass True or "
                         "False")
    kv_min = kv_units_per_layer(model, chip, workload) if keep_kv_on_chip else 1
    k_mha = max(k_mha, kv_min)
    rounds = []
    seen = set()
    for _ in range(max_rounds):
        c = chip.provisioned(model.n_layers, k_dpu, k_mha)
        r = simulate(model, c, mapping, workload)
        busy = layer_busy(r, c, model.n_layers)
        top = (float(busy["dpu"].max()), float(busy["mha"].max()))
        rounds.append((k_dpu, k_mha, *top))
        seen.add((k_dpu, k_mha))
        # units each class needs: the busiest slot's work over the bound, at this makespan
        need = [max(1, math.ceil(top[i] * k / max_busy - 1e-9)) for i, k in enumerate((k_dpu, k_mha))]
        need[1] = max(need[1], kv_min)
        if all(t <= max_busy for t in top) and tuple(need) == (k_dpu, k_mha):
            return Provisioned(c, r, k_dpu, k_mha, tuple(rounds))
        nxt = tuple(max(n, k + 1) if t > max_busy else n
                    for n, k, t in zip(need, (k_dpu, k_mha), top, strict=True))
        if nxt in seen:  # oscillating: the fewest units of the rounds that met the bound
            ok = [rd for rd in rounds if rd[2] <= max_busy and rd[3] <= max_busy]
            if ok:
                best = min(ok, key=lambda rd: (rd[0], rd[1]))
                c = chip.provisioned(model.n_layers, best[0], best[1])
                return Provisioned(c, simulate(model, c, mapping, workload), best[0], best[1],
                                   tuple(rounds))
        k_dpu, k_mha = nxt
    raise ValueError(f"provision_to_load: no unit counts within max_busy={max_busy} after "
                     f"{max_rounds} rounds (last: {rounds[-1]}); raise max_rounds or max_busy")
