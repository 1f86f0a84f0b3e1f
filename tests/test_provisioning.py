"""Units provisioned to load: the answer meets the bound and is the fewest that does."""

from __future__ import annotations

import numpy as np
import pytest

from aimoe_lib import mapping, zoo
from aimoe_lib.provisioning import layer_busy, provision_to_load
from aimoe_lib.simulator import Workload, simulate

SPEC = zoo.get("olmoe-1b-7b")
W = Workload(batch=16, prompt_len=4, gen_len=4)


@pytest.fixture(scope="module")
def case():
    chip = mapping.fitting_chip(SPEC, n_tiers=64, units="per_layer", preset="physical")
    return chip, mapping.map_model(SPEC, chip)


def test_layer_busy_is_each_slots_work_over_its_units_and_the_makespan(case):
    """With 3 DPUs per layer on 16 layers (48 units, 17 slots: unit u serves slot u mod 17),
    slot s's fraction is the busy time of its units summed, over (their count x makespan)."""
    chip, m = case
    c = chip.provisioned(SPEC.n_layers, 3, 2)
    r = simulate(SPEC, c, m, W)
    got = layer_busy(r, c, SPEC.n_layers)
    busy = r.unit_busy_ns["dpu"]
    n_slots = SPEC.n_layers + 1
    by_hand = []
    for s in range(n_slots):
        units = [u for u in range(c.n_dpus) if u % n_slots == s]
        by_hand.append(sum(busy[u] for u in units) / (len(units) * r.makespan_ns))
        assert got["dpu"][s] == pytest.approx(by_hand[-1])
    assert got["dpu"].shape == got["mha"].shape == (n_slots,)
    # the simulator's own account of its most loaded DPUs is the busiest slot, not one unit
    assert r.busy_fraction()["dpu_max"] == pytest.approx(max(by_hand))
    assert r.busy_fraction()["mha_max"] == pytest.approx(got["mha"].max())


def test_with_one_unit_per_layer_the_lm_head_shares_the_first_layers_unit(case):
    """16 units for 17 slots: slot s uses unit s mod 16, so the LM head's slot (16) reports the
    busy fraction of unit 0, which it shares with layer 0."""
    chip, m = case
    c = chip.provisioned(SPEC.n_layers, 1, 1)
    r = simulate(SPEC, c, m, W)
    got = layer_busy(r, c, SPEC.n_layers)
    for kind in ("dpu", "mha"):
        busy = r.unit_busy_ns[kind] / r.makespan_ns
        assert got[kind] == pytest.approx(np.append(busy, busy[0]))
    with pytest.raises(ValueError, match="n_layers"):
        layer_busy(r, c, SPEC.n_layers - 1)


@pytest.mark.parametrize("bound", [0.3, 0.6])
def test_provisioned_units_meet_the_bound_and_one_fewer_does_not(case, bound):
    chip, m = case
    p = provision_to_load(SPEC, chip, m, W, max_busy=bound)
    busy = layer_busy(p.result, p.chip, SPEC.n_layers)
    assert busy["dpu"].max() <= bound and busy["mha"].max() <= bound
    assert p.chip.n_dpus == SPEC.n_layers * p.dpus_per_layer
    for fewer in ((p.dpus_per_layer - 1, p.mha_units_per_layer),
                  (p.dpus_per_layer, p.mha_units_per_layer - 1)):
        if min(fewer) < 1:
            continue
        c = chip.provisioned(SPEC.n_layers, *fewer)
        b = layer_busy(simulate(SPEC, c, m, W), c, SPEC.n_layers)
        assert max(b["dpu"].max(), b["mha"].max()) > bound, fewer
    assert p.chip.area_mm2 < chip.area_mm2  # far fewer units than 24 + 8 per layer


def test_pooled_units_and_bad_bounds_are_refused(case):
    chip, m = case
    r = simulate(SPEC, chip.replace(unit_assignment="pool"), m, W)
    with pytest.raises(ValueError, match="pools its units"):
        layer_busy(r, chip.replace(unit_assignment="pool"), SPEC.n_layers)
    for bad in (0, 1.5, np.nan):
        with pytest.raises(ValueError, match="max_busy"):
            provision_to_load(SPEC, chip, m, W, max_busy=bad)
    with pytest.raises(ValueError, match="start="):
        provision_to_load(SPEC, chip, m, W, start=24)


def test_kv_units_hold_the_whole_cache():
    """Mixtral-8x7B keeps 2 (K, V) x 8 heads x 128 x 2 bytes = 4,096 bytes per token and layer.
    Batch 64 x (2048 + 16) positions -> 64 x 2064 x 4096 = 541,065,216 bytes per layer; at 2 MB
    per attention unit that needs ceil(541.07 / 2) = 271 units per layer."""
    spec = zoo.get("mixtral-8x7b")
    chip = mapping.fitting_chip(spec, n_tiers=64, units="per_layer", preset="physical")
    assert chip.kv_sram_mb_per_mha_unit == 2
    w = Workload(batch=64, prompt_len=2048, gen_len=16)
    from aimoe_lib.provisioning import kv_units_per_layer
    assert kv_units_per_layer(spec, chip, w) == 271
    assert kv_units_per_layer(spec, chip, Workload(batch=1, prompt_len=4, gen_len=4)) == 1
    assert kv_units_per_layer(spec, chip.replace(kv_sram_mb_per_mha_unit=None), w) == 1


def test_to_load_keeps_the_kv_cache_on_chip(case):
    """A run whose KV cache needs more attention units than its compute load keeps them (no
    spill); without keep_kv_on_chip the compute load alone decides and part of the cache spills."""
    from aimoe_lib.provisioning import kv_units_per_layer
    from aimoe_lib.simulator import kv_spill_fraction
    chip, m = case
    small = chip.replace(kv_sram_mb_per_mha_unit=0.05)  # 50 kB per unit
    w = Workload(batch=16, prompt_len=64, gen_len=4)
    need = kv_units_per_layer(SPEC, small, w)
    assert need > 2
    p = provision_to_load(SPEC, small, m, w)
    assert p.mha_units_per_layer >= need
    assert kv_spill_fraction(SPEC, p.chip, w) == 0
    q = provision_to_load(SPEC, small, m, w, keep_kv_on_chip=False)
    assert q.mha_units_per_layer < need
    assert kv_spill_fraction(SPEC, q.chip, w) > 0
