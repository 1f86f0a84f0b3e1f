"""The sensitivity study: its knobs do what they say, its ranking is right, the shipped data is
complete and every conclusion's ratio is computed from the runs it names."""

from __future__ import annotations

import math

import pytest

from aimoe_lib import gpu, sensitivity
from aimoe_lib.viz import sensitivity as vsens

SMALL = sensitivity.Workload(batch=4, prompt_len=2, gen_len=3)


@pytest.fixture(scope="module")
def base():
    return sensitivity.ratios("physical", workload=SMALL)


def test_static_power_scales_only_the_static_energy(base):
    """Static power does not change timing, so x k static power gives energy per token
    E(k) = dynamic + k (E(1) - dynamic): a closed form from the unscaled run."""
    for k in (0.5, 2.0):
        r = sensitivity.ratios("physical", "static power", k, workload=SMALL)
        assert r["moe_tokens_per_s"] == base["moe_tokens_per_s"]
        dyn, tot = base["moe_dynamic_uj_per_token"], base["moe_uj_per_token"]
        assert r["moe_uj_per_token"] == pytest.approx(dyn + k * (tot - dyn), rel=1e-9)


def test_gpu_power_scales_the_gpu_side_only(base):
    """The roofline's energy is power x time: half the power, half the GPU energy per token; the
    AIMC side is untouched. x2 is capped at the board's TDP (power_fraction <= 1)."""
    half = sensitivity.ratios("physical", "GPU power", 0.5, workload=SMALL)
    assert half["gpu_uj_per_token"] == pytest.approx(base["gpu_uj_per_token"] / 2, rel=1e-12)
    assert half["mixtral_uj_per_token"] == base["mixtral_uj_per_token"]
    assert gpu.POWER_FRACTION == 1.0
    double = sensitivity.ratios("physical", "GPU power", 2.0, workload=SMALL)
    assert double["gpu_uj_per_token"] == base["gpu_uj_per_token"]


def test_ratios_are_the_quotients_of_their_numbers(base):
    assert base["moe_throughput"] == pytest.approx(base["moe_tokens_per_s"]
                                                   / base["dense_tokens_per_s"])
    assert base["moe_energy"] == pytest.approx(base["dense_uj_per_token"]
                                               / base["moe_uj_per_token"])
    assert base["density_3d"] == pytest.approx(base["moe_3d_tps_per_mm2"]
                                               / base["moe_2d_tps_per_mm2"])
    assert base["gpu_energy"] == pytest.approx(base["gpu_uj_per_token"]
                                               / base["mixtral_uj_per_token"])


def test_top_knobs_ranks_by_the_largest_log_change():
    """Hand-built rows: base 10; knob a moves to 5 and 20 (|log10| 0.301), b to 9 and 30
    (0.477), c to 10 and 11 (0.041): order b, a, c."""
    base = {k: 10.0 for k in sensitivity.RATIOS}
    rows = []
    for knob, lo, hi in (("a", 5, 20), ("b", 9, 30), ("c", 10, 11)):
        rows += [{**base, "knob": knob, "factor": 0.5, "moe_energy": float(lo)},
                 {**base, "knob": knob, "factor": 2.0, "moe_energy": float(hi)}]
    top = sensitivity.top_knobs(base, rows, "moe_energy", n=3)
    assert [t["knob"] for t in top] == ["b", "a", "c"]
    assert top[0]["swing"] == pytest.approx(math.log10(3)) and top[1]["low"] == 5.0
    assert vsens.surviving(base, rows)["moe_energy"] == []


def test_the_shipped_data_covers_every_preset_knob_and_factor():
    d = sensitivity.load()
    assert [r["preset"] for r in d["presets"]] == list(sensitivity.PRESETS)
    for p in sensitivity.PRESETS:
        got = {(r["knob"], r["factor"]) for r in d["tornado"][p]}
        assert got == {(k, f) for k in sensitivity.KNOBS for f in sensitivity.FACTORS}
    w = sensitivity.WORKLOAD
    assert d["workload"] == {"batch": w.batch, "prompt_len": w.prompt_len, "gen_len": w.gen_len}


@pytest.mark.parametrize("kw, says", [(dict(preset="papr"), "did you mean 'paper'"),
                                      (dict(knob="MVM"), "knob"),
                                      (dict(factor=0), "factor")])
def test_bad_arguments_are_named(kw, says):
    with pytest.raises(ValueError, match=says):
        sensitivity.ratios(**kw)
