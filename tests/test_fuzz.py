"""Fuzzing the public constructors and entry points one argument at a time.

On top of a valid base call, one argument gets a random value of a random type. The call must
either succeed *with the value that was meant* (a numpy integer given for a count is stored as
that int; nothing is coerced: a bool is not a count, a string is not a bool, ``'router'`` is one
part, not six letters) or raise ValueError/TypeError. Any other exception type fails.

The oracle (`_meant`) is written from the argument's declared kind alone, independently of
aimoe_lib.checks.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimoe_lib import (
    conflicts,
    design_space,
    gpu,
    gpu_measure,
    hardware,
    mapping,
    routing,
    sweep,
    zoo,
)
from aimoe_lib.analog import config as analog_config
from aimoe_lib.hardware import AreaModel, ChipConfig, CostModel, Dataflow
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import Workload, simulate

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

ANY = st.one_of(
    st.integers(-2**70, 2**70),
    st.sampled_from([0, 1, 2, 3, 4, 8, -1, 2**31 - 1, 2**31, 2**63, 10**18]),
    st.integers(-3, 9).map(np.int64),
    st.sampled_from([np.int32(4), np.uint8(2), np.int16(-1)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 1.0, 2.0, 1e308, np.float64(0.25)]),
    st.booleans(),
    st.sampled_from([np.bool_(True), np.bool_(False)]),
    st.text(max_size=6),
    st.sampled_from(["", "no", "yes", "True", "pool", "gelu", "uniform", "router", "embedding"]),
    st.none(),
    st.lists(st.integers(0, 3), max_size=3),
    st.tuples(st.integers(0, 3), st.text(max_size=3)),
)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _meant(kind: str, v):
    """(allowed, value meant) for an argument of ``kind`` given ``v``; None when v is refused."""
    if kind == "int":
        return (True, int(v)) if _is_int(v) else (False, None)
    if kind == "int?":
        return (True, None) if v is None else _meant("int", v)
    if kind == "int|None":  # None kept as None (e.g. an ideal converter)
        return (True, None) if v is None else _meant("int", v)
    if kind == "real":
        return (True, v) if _is_real(v) and not math.isnan(v) else (False, None)
    if kind == "real?":
        return (True, None) if v is None else _meant("real", v)
    if kind == "real|nan":  # a number, nan meaning 'not measured'
        return (True, v) if _is_real(v) else (False, None)
    if kind == "bool":
        return (True, bool(v)) if isinstance(v, bool | np.bool_) else (False, None)
    if kind == "str?":
        return (True, None) if v is None else _meant("str", v)
    if kind in ("str", "enum"):
        return (True, v) if isinstance(v, str) else (False, None)
    raise AssertionError(kind)


def _check_stored(kind: str, given, stored) -> None:
    ok, meant = _meant(kind, given)
    assert ok, f"{given!r} was accepted for a {kind} argument (stored {stored!r})"
    if kind == "int?" and meant is None:  # None asks for the derived default
        assert type(stored) is int, (given, stored)
    elif kind == "int|None" and meant is None:
        assert stored is None, (given, stored)
    elif kind in ("int", "int?", "int|None"):
        assert type(stored) is int and stored == meant, (given, stored)
    elif kind == "bool":
        assert type(stored) is bool and stored is meant, (given, stored)
    elif kind == "enum":
        assert stored.value == meant.lower(), (given, stored)
    elif kind in ("real", "real?") and meant is not None:
        assert stored == meant and not isinstance(stored, bool), (given, stored)
    elif kind == "real|nan":
        assert (math.isnan(stored) if math.isnan(meant) else stored == meant), (given, stored)
        assert not isinstance(stored, bool), (given, stored)
    else:
        assert stored == meant, (given, stored)


def _construct(cls, base: dict, name: str, kind: str, value):
    try:
        obj = cls(**{**base, name: value})
    except (ValueError, TypeError):
        return None
    _check_stored(kind, value, getattr(obj, name))
    return obj


# ------------------------------------------------------------------------- constructors
MODEL_BASE = dict(d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab_size=100, n_experts=4,
                  top_k=2)
MODEL_FIELDS = {
    **{f: "int" for f in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size",
                          "learned_positions", "relative_attention_buckets", "n_experts",
                          "top_k", "n_shared_experts", "moe_every", "first_dense",
                          "n_encoder_layers", "q_lora_rank", "kv_lora_rank")},
    **{f: "int?" for f in ("n_kv_heads", "head_dim", "d_expert", "d_shared_expert")},
    **{f: "bool" for f in ("bias", "qkv_bias", "tied_embeddings", "shared_expert_gate",
                           "router_bias")},
    **{f: "enum" for f in ("ffn", "norm", "qk_norm", "attention")},
    "name": "str", "source": "str",
}


@FUZZ
@given(name=st.sampled_from(sorted(MODEL_FIELDS)), value=ANY)
def test_fuzz_model_spec(name, value):
    spec = _construct(ModelSpec, MODEL_BASE, name, MODEL_FIELDS[name], value)
    if spec is not None:  # counting works for anything accepted, in constant time
        assert spec.total_params >= spec.active_params > 0
        assert spec.describe()


CHIP_FIELDS = {**{f: "int" for f in ("n_tiles", "n_tiers", "tier_rows", "tier_cols", "n_dpus",
                                     "n_mha_units", "weight_bits")},
               "kv_sram_mb_per_mha_unit": "real?", "unit_assignment": "enum",
               "kv_placement": "enum", "name": "str"}


@FUZZ
@given(name=st.sampled_from(sorted(CHIP_FIELDS)), value=ANY)
def test_fuzz_chip_config(name, value):
    chip = _construct(ChipConfig, dict(n_tiles=4, n_tiers=2), name, CHIP_FIELDS[name], value)
    if chip is not None:
        assert chip.describe() and chip.area_mm2 > 0


@FUZZ
@given(name=st.sampled_from([f for f in CostModel.__dataclass_fields__]), value=ANY)
def test_fuzz_cost_model(name, value):
    kind = {"mvm_input_phases": "int", "activation_bits": "int", "mha_cost_model": "str",
            "sampling_latency_ns": "real?", "sampling_energy_pj": "real?"}.get(name, "real")
    cost = _construct(CostModel, {}, name, kind, value)
    if cost is not None:  # every cost of the accepted model is a finite number
        for op in hardware.OpKind:
            lat, en = cost.cost(op, 512, 2, 3)
            assert math.isfinite(lat) and math.isfinite(en), (op, lat, en)


@FUZZ
@given(name=st.sampled_from([f for f in AreaModel.__dataclass_fields__]), value=ANY)
def test_fuzz_area_model(name, value):
    _construct(AreaModel, {}, name, "real", value)


@FUZZ
@given(name=st.sampled_from([f for f in Dataflow.__dataclass_fields__]), value=ANY)
def test_fuzz_dataflow(name, value):
    kind = "enum" if name in ("attention_sync", "partial_sums") else "bool"
    _construct(Dataflow, {}, name, kind, value)


WORKLOAD_FIELDS = {"batch": "int", "prompt_len": "int", "gen_len": "int", "kv_cache": "bool",
                   "record_events": "bool", "seed": "int", "routing": "str"}


@FUZZ
@given(name=st.sampled_from(sorted(WORKLOAD_FIELDS)), value=ANY)
def test_fuzz_workload(name, value):
    _construct(Workload, {}, name, WORKLOAD_FIELDS[name], value)


@FUZZ
@given(name=st.sampled_from(["kind", "zipf_s", "permute"]), value=ANY)
def test_fuzz_routing_spec(name, value):
    kind = {"kind": "str", "zipf_s": "real", "permute": "bool"}[name]
    spec = _construct(routing.RoutingSpec, {"kind": "zipf"}, name, kind, value)
    if spec is not None and name == "zipf_s":
        assert type(spec.zipf_s) is float


@FUZZ
@given(value=ANY)
def test_fuzz_lm_config(value):
    _construct(analog_config.LMConfig, {"name": "dense"}, "d_model", "int", value)


# ------------------------------------------------------------------------- entry points
TINY = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=32, vocab_size=20, n_experts=4, top_k=2,
                 name="tiny-moe")
TINY_CHIP = mapping.fitting_chip(TINY, n_tiers=4, tier_rows=16, tier_cols=16)


def _call(fn, *args, **kwargs):
    """fn(...) or None when it raised ValueError/TypeError (anything else propagates)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError):
        return None


@FUZZ
@given(name=st.sampled_from(["n_tokens", "seed", "spec"]), value=ANY)
def test_fuzz_route(name, value):
    kw = {"n_tokens": 5, "seed": 0, "spec": "uniform", name: value}
    out = _call(routing.route, TINY, kw["n_tokens"], kw["spec"], seed=kw["seed"])
    if out is not None:
        kind = {"n_tokens": "int", "seed": "int", "spec": "str"}[name]
        assert _meant(kind, value)[0], f"route accepted {name}={value!r}"
        assert out.shape == (kw["n_tokens"], 2, 2)


MAP_ARGS = {"strategy": "str", "seed": "int", "digital": "names"}


@FUZZ
@given(name=st.sampled_from(sorted(MAP_ARGS)), value=ANY)
def test_fuzz_map_model(name, value):
    kw = {"strategy": "in_order", "seed": 0, "digital": ("embedding",), name: value}
    m = _call(mapping.map_model, TINY, TINY_CHIP, kw.pop("strategy"), **kw)
    if m is None:
        return
    if name == "digital":
        parts = (value,) if isinstance(value, str) else value
        assert isinstance(value, str | list | tuple) and all(p in mapping.DIGITAL_PARTS
                                                              for p in parts), value
    else:
        assert _meant(MAP_ARGS[name], value)[0], f"map_model accepted {name}={value!r}"


FIT_ARGS = {"n_tiers": "int", "tier_rows": "int", "slack": "real", "units": "str",
            "strategy": "str?", "name": "str?", "digital": "names"}


@FUZZ
@given(name=st.sampled_from(sorted(FIT_ARGS)), value=ANY)
def test_fuzz_fitting_chip(name, value):
    kw = {"n_tiers": 4, name: value}
    chip = _call(mapping.fitting_chip, TINY, **kw)
    if chip is None:
        return
    if FIT_ARGS[name] != "names":
        assert _meant(FIT_ARGS[name], value)[0], f"fitting_chip accepted {name}={value!r}"
    if name in ("n_tiers", "tier_rows"):
        assert getattr(chip, name) == value and type(getattr(chip, name)) is int
    elif name == "name":
        assert chip.name == ("paper" if value is None else value)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["batch", "prompt_len", "gen_len", "seed"]), value=ANY)
def test_fuzz_simulate_tiny(name, value):
    m = mapping.map_model(TINY, TINY_CHIP)
    w = _call(Workload, **{"batch": 1, "prompt_len": 2, "gen_len": 2, name: value})
    if w is None:
        return
    r = _call(simulate, TINY, TINY_CHIP, m, w)  # huge runs are refused up front (ValueError)
    if r is not None:
        assert getattr(r.workload, name) == value


ROOF_ARGS = {"batch": "int", "prompt_len": "int", "gen_len": "int", "n_gpus": "int?",
             "bytes_per_param": "real?", "seed": "int", "check_memory": "bool",
             "power_fraction": "real", "compute": "str?", "precision": "str?", "calibrated": "bool"}


@FUZZ
@given(name=st.sampled_from(sorted(ROOF_ARGS)), value=ANY)
def test_fuzz_gpu_roofline(name, value):
    r = _call(gpu.roofline, TINY, "h100", **{name: value})
    if r is not None:
        assert _meant(ROOF_ARGS[name], value)[0], f"roofline accepted {name}={value!r}"
        assert math.isfinite(r.ttft_s) and math.isfinite(r.time_per_output_token_s)


# ------------------------------------------------------------------------- the listed problems
@pytest.mark.parametrize("field", ["bias", "qkv_bias", "tied_embeddings", "router_bias",
                                   "shared_expert_gate"])
@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_model_bool_fields_refuse_non_bools(field, value):
    with pytest.raises(ValueError) as e:
        ModelSpec(**MODEL_BASE, **{field: value})
    assert f"ModelSpec.{field}={value!r}" in str(e.value) and "True or False" in str(e.value)


@pytest.mark.parametrize("flag", ["active", "embedding", "head"])
def test_params_flags_refuse_non_bools(flag):
    with pytest.raises(ValueError, match=f"{flag}='no'.*True or False"):
        ModelSpec(**MODEL_BASE).params(**{flag: "no"})


def test_numpy_bools_are_bools():
    spec = ModelSpec(**MODEL_BASE, tied_embeddings=np.bool_(True))
    assert spec.tied_embeddings is True and spec == ModelSpec(**MODEL_BASE, tied_embeddings=True)


def test_numpy_integers_are_accepted_as_ints_everywhere():
    i8 = np.int64(8)
    spec = ModelSpec(d_model=np.int64(64), n_layers=np.int32(2), n_heads=4, d_ff=128,
                     vocab_size=100, n_experts=i8, top_k=np.int64(2))
    plain = ModelSpec(d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab_size=100, n_experts=8,
                      top_k=2)
    assert spec == plain and hash(spec) == hash(plain) and type(spec.n_experts) is int
    chip = ChipConfig(n_tiles=i8, n_tiers=np.int16(2))
    assert chip == ChipConfig(n_tiles=8, n_tiers=2) and type(chip.n_tiles) is int
    assert CostModel(mvm_input_phases=np.int64(4)).mvm_input_phases == 4
    w = Workload(batch=np.int64(2), gen_len=np.int64(3), seed=np.uint8(1))
    assert (w.batch, w.gen_len, w.seed) == (2, 3, 1) and type(w.batch) is int
    assert chip.provisioned(np.int64(2)).n_dpus == 2 * hardware.DPUS_PER_LAYER


def test_bools_are_not_counts():
    with pytest.raises(ValueError, match="ModelSpec.n_experts=True"):
        ModelSpec(**{**MODEL_BASE, "n_experts": True})
    with pytest.raises(ValueError, match="Workload.batch=True"):
        Workload(batch=True)


@pytest.mark.parametrize("call", [
    lambda d: mapping.map_model(TINY, TINY_CHIP, digital=d),
    lambda d: mapping.blocks_needed(TINY, 16, 16, digital=d),
    lambda d: analog_config.analog_parts(d),
])
def test_a_single_part_name_is_one_part_not_its_letters(call):
    """'router' is the router, not the parts 'r', 'o', ...; and a wrong single name is reported
    whole, with a suggestion."""
    one, tup = call("router"), call(("router",))
    if isinstance(one, mapping.Mapping):
        assert one.n_blocks == tup.n_blocks and {w.role.value for w in one.digital} == {"router"}
    else:
        assert one == tup
    with pytest.raises(ValueError, match=r"unknown part 'routr' \(did you mean 'router'\?\)"):
        call("routr")
    with pytest.raises(ValueError, match="not a name"):
        call(("router", 3))


def test_check_analog_takes_one_name_whole():
    assert analog_config.check_analog("ffn") == ("ffn",)


def test_an_unused_seed_is_checked_by_us_not_numpy():
    """map_model's in_order strategy draws nothing, yet a bad seed is refused the same way
    (ValueError naming the argument), never by numpy."""
    for bad in (-1, 1.5, "0", None):
        with pytest.raises(ValueError, match=r"map_model\(seed="):
            mapping.map_model(TINY, TINY_CHIP, seed=bad)
        with pytest.raises(ValueError, match=r"seed="):
            routing.route(TINY, 3, seed=bad)
        with pytest.raises(ValueError, match=r"seed="):
            gpu.roofline(TINY, "h100", seed=bad)


def test_unknown_choices_suggest_the_closest():
    with pytest.raises(ValueError, match=r"'in_ordr'\): unknown mapping strategy "
                                         r"\(did you mean 'in_order'\?\)"):
        mapping.map_model(TINY, TINY_CHIP, "in_ordr")
    with pytest.raises(ValueError, match=r"did you mean 'zipf'"):
        routing.RoutingSpec(kind="zipff")
    with pytest.raises(ValueError, match=r"did you mean 'pool'"):
        ChipConfig(n_tiles=1, n_tiers=1, unit_assignment="pol")


def test_enum_fields_refuse_non_strings():
    """str(True).lower() used to be looked up; a bool or number is refused as such now."""
    with pytest.raises(ValueError, match=r"ChipConfig.kv_placement=1: must be one of"):
        ChipConfig(n_tiles=1, n_tiers=1, kv_placement=1)


def _layer_count_closed_form(spec: ModelSpec) -> int:
    """Parameters of a decoder-only MoE with MHA, GeLU FFNs, LayerNorm and no biases, written
    out by hand: per layer attention 4 d^2 (n_kv_heads = n_heads, head_dim = d / h) + two
    LayerNorms (4 d); dense layers a d x d_ff x 2 FFN; MoE layers a router d x E and E experts of
    2 d x d_expert; plus the final norm (2 d), embedding and head (2 V d)."""
    d, L, E = spec.d_model, spec.n_layers, spec.n_experts
    n_moe = (L - spec.first_dense) // spec.moe_every
    per_layer = 4 * d * d + 4 * d
    return (L * per_layer + (L - n_moe) * 2 * d * spec.d_ff
            + n_moe * (d * E + E * 2 * d * spec.d_expert) + 2 * d + 2 * spec.vocab_size * d)


@pytest.mark.parametrize("n_layers", [5, 16_000, 10**9])
def test_moe_counting_matches_a_closed_form_at_any_depth(n_layers):
    spec = ModelSpec(d_model=64, n_layers=n_layers, n_heads=4, d_ff=256, vocab_size=1000,
                     n_experts=8, top_k=2, d_expert=96, moe_every=2, first_dense=1)
    t0 = time.perf_counter()
    total = spec.total_params
    assert time.perf_counter() - t0 < 0.5  # 16,000 layers took 16 s when counting was quadratic
    assert total == _layer_count_closed_form(spec)
    if n_layers == 5:  # the closed form agrees with summing the listed matrices too
        listed = sum(m.params for m in spec.matrices() if m.role.value != "lm_head")
        assert total == listed + 2 * (2 * 64) * 5 + 2 * 64 + 64 * 1000


def test_huge_layer_counts_are_refused_not_hung():
    with pytest.raises(ValueError,
                       match=r"ModelSpec.n_layers=1000000000000000000: .*<= 2147483647"):
        ModelSpec(**{**MODEL_BASE, "n_layers": 10**18})


def test_provisioning_a_huge_model_is_refused_with_the_layers_named():
    with pytest.raises(ValueError, match=r"provisioned\(n_layers=1000000000\)"):
        TINY_CHIP.provisioned(10**9)


def test_a_chip_with_a_billion_units_describes_itself_without_listing_them():
    t0 = time.perf_counter()
    chip = ChipConfig(n_tiles=4, n_tiers=2, n_dpus=10**9, n_mha_units=10**9)
    assert chip.area_mm2 == pytest.approx(chip.tiles_area_mm2 + 10**9 * (1.25 + 5.0))
    assert "1000000000 DPUs" in chip.describe()
    assert chip.provisioned(12).n_dpus == 12 * 24
    assert time.perf_counter() - t0 < 0.5


def test_zero_attention_throughput_is_refused_not_divided_by():
    with pytest.raises(ValueError, match="CostModel.mha_macs_per_ns=0"):
        CostModel(mha_cost_model="macs", mha_macs_per_ns=0)


@pytest.mark.parametrize("kw", [dict(slack=math.inf), dict(slack=1e300)])
def test_fitting_chip_refuses_infinite_slack(kw):
    with pytest.raises(ValueError, match="fitting_chip\\(slack="):
        mapping.fitting_chip(TINY, n_tiers=4, **kw)


def test_weight_traffic_refuses_infinite_tokens():
    with pytest.raises(ValueError, match="tokens=inf"):
        gpu.weight_traffic(TINY, math.inf)


POINT_ARGS = {"strategy": "str", "digital": "names", "mapping_seed": "int", "label": "str"}


@FUZZ
@given(name=st.sampled_from(sorted(POINT_ARGS)), value=ANY)
def test_fuzz_sweep_point(name, value):
    """sweep.Point checks its own fields at construction (not when the sweep reaches it)."""
    from aimoe_lib import sweep
    kw = {"strategy": "in_order", "digital": ("embedding",), "mapping_seed": 0, "label": "",
          name: value}
    p = _call(sweep.Point, TINY, TINY_CHIP, **kw)
    if p is None:
        return
    if name == "digital":
        parts = (value,) if isinstance(value, str) else tuple(value)
        assert isinstance(value, str | list | tuple) and p.digital == parts, (value, p.digital)
    elif name == "strategy":
        assert value in mapping.STRATEGIES and value != "coactivation", value
    elif name == "mapping_seed":
        assert _meant("int", value)[0] and value >= 0 and type(p.mapping_seed) is int, value
    else:
        assert isinstance(value, str), value


def test_a_point_names_a_one_part_digital_as_one_part_and_needs_coactivation_with_its_strategy():
    from aimoe_lib import sweep
    assert sweep.Point(TINY, TINY_CHIP, digital="router").digital == ("router",)
    with pytest.raises(ValueError, match=r"Point.coactivation=None with strategy='coactivation'"):
        sweep.Point(TINY, TINY_CHIP, "coactivation")
    with pytest.raises(ValueError, match=r"Point.coactivation=an array with strategy='in_order'"):
        sweep.Point(TINY, TINY_CHIP, coactivation=np.full((4, 4), 1 / 16))
    with pytest.raises(ValueError, match=r"Point.strategy='balance'.*did you mean 'balanced'"):
        sweep.Point(TINY, TINY_CHIP, "balance")


def test_mapping_onto_two_billion_tiles_is_refused_before_any_work():
    """Per-tile arrays of 2^31 - 1 tiles are 3 x 8 B x 2.1e9 = 51.5 GB: refused with the estimate
    and the block count, in well under a second; a limit just at the estimate lets a small chip
    through and one byte less refuses it."""
    big = ChipConfig(n_tiles=2**31 - 1, n_tiers=1)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"needs about 51\.5 GB .*max_bytes=8,000,000,000"):
        mapping.map_model(TINY, big)
    assert time.perf_counter() - t0 < 1.0
    blocks = len(mapping.map_model(TINY, TINY_CHIP).tile)
    need = 8 * 3 * TINY_CHIP.n_tiles + 16 * blocks
    assert mapping.mapping_bytes_estimate(TINY, TINY_CHIP, "in_order", blocks) == need
    mapping.map_model(TINY, TINY_CHIP, max_bytes=need)
    with pytest.raises(ValueError, match="max_bytes"):
        mapping.map_model(TINY, TINY_CHIP, max_bytes=need - 1)


def test_a_pooled_billion_unit_chip_is_refused_by_simulate_before_any_work():
    """Pooled, every layer slot lists every unit: (2 + 1) slots x 1e9 units x 16 B per class is
    far beyond 8 GB; simulate refuses in under a second instead of building the list."""
    chip = TINY_CHIP.replace(n_dpus=10**9, unit_assignment="pool")
    m = mapping.map_model(TINY, chip)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"GB of engine state"):
        simulate(TINY, chip, m, Workload(batch=1, prompt_len=2, gen_len=2))
    assert time.perf_counter() - t0 < 1.0


FEWEST_ARGS = {"batch": "int", "prompt_len": "int", "gen_len": "int", "bytes_per_param": "real",
               "kv_bytes": "real", "memory_fraction": "real"}


@FUZZ
@given(name=st.sampled_from(sorted(FEWEST_ARGS)), value=ANY)
def test_fuzz_gpu_fewest_gpus(name, value):
    n = _call(gpu.fewest_gpus, TINY, "h100", **{name: value})
    if n is not None:
        assert _meant(FEWEST_ARGS[name], value)[0], f"fewest_gpus accepted {name}={value!r}"
        assert type(n) is int and n >= 1


@pytest.mark.parametrize("make, says", [(lambda p: p, "is a folder"),
                                        (lambda p: p / "none.csv", "does not exist")])
def test_load_measured_names_a_missing_or_folder_path(tmp_path, make, says):
    with pytest.raises(ValueError, match=f"load_measured\\(path=.*{says}"):
        gpu.load_measured(make(tmp_path))


# ------------------------------------------------------------------------- more entry points
# (issue 15: the public functions of zoo, routing, gpu, gpu_measure, sweep, design_space,
# conflicts and analog.config, one argument at a time, with the same oracle)
def _accepted(kind: str, value, what: str) -> None:
    assert _meant(kind, value)[0], f"{what} accepted {value!r}"


def _ints_meant(value) -> bool:
    """A list/tuple of integers (no bools, no floats), not a bare string or scalar."""
    return isinstance(value, list | tuple) and len(value) > 0 and all(_is_int(v) for v in value)


@FUZZ
@given(value=ANY)
def test_fuzz_zoo_get(value):
    """Only a name of the zoo (any case) is a model; anything else is a ValueError that is still
    a KeyError (what earlier versions raised)."""
    try:
        spec = zoo.get(value)
    except KeyError as e:
        assert isinstance(e, ValueError) and "zoo.get(name=" in str(e)
        assert not str(e).startswith(("'", '"'))  # the message itself, not its repr
        return
    assert isinstance(value, str) and value.lower() in zoo.names()
    assert isinstance(spec, ModelSpec)


IS_MOE_ARGS = {"layer": "int", "stack": "enum"}


@FUZZ
@given(name=st.sampled_from(sorted(IS_MOE_ARGS)), value=ANY)
def test_fuzz_is_moe_layer(name, value):
    kw = {"layer": 1, "stack": "decoder", name: value}
    out = _call(TINY.is_moe_layer, kw["layer"], kw["stack"])
    if out is not None:
        _accepted(IS_MOE_ARGS[name], value, f"is_moe_layer({name}=)")
        assert type(out) is bool
        if name == "layer":
            assert 0 <= value < TINY.n_layers


@FUZZ
@given(name=st.sampled_from(["active", "embedding", "head"]), value=ANY)
def test_fuzz_model_params_flags(name, value):
    out = _call(TINY.params, **{name: value})
    if out is not None:
        _accepted("bool", value, f"params({name}=)")
        assert out == TINY.params(**{name: bool(value)})


SMALL_RESULTS = (mock.patch.object(routing, "MAX_RESULT_VALUES", 2**16),
                 mock.patch.object(conflicts, "MAX_RESULT_VALUES", 2**16))
"""Result-size caps lowered in the fuzz tests, so that an accepted random n_experts allocates
little (the caps are what refuses billions of experts)."""

ROUTING_CALLS = {
    "zipf_probs.n_experts": ("int", lambda v: routing.zipf_probs(v, 1.0)),
    "zipf_probs.s": ("real", lambda v: routing.zipf_probs(4, v)),
    "expert_load.n_experts": ("int", lambda v: routing.expert_load(ROUTED, v)),
    "coactivation_density.n_experts": ("int", lambda v: routing.coactivation_density(ROUTED, v)),
    "distinct_experts.batch": ("int", lambda v: routing.distinct_experts(ROUTED, v)),
    "distinct_experts.n_experts": ("int?", lambda v: routing.distinct_experts(ROUTED, 2, v)),
    "distinct_experts_expected.n_experts": ("int",
                                            lambda v: routing.distinct_experts_expected(v, 1, 4)),
    "distinct_experts_expected.top_k": ("int",
                                        lambda v: routing.distinct_experts_expected(8, v, 4)),
    "distinct_experts_expected.batch": ("reals",  # a number or a list of numbers
                                        lambda v: routing.distinct_experts_expected(8, 2, v)),
    "expert_probs.layer_index": ("int", lambda v: routing.expert_probs(TINY, "zipf", v)),
    "expert_probs.seed": ("int", lambda v: routing.expert_probs(TINY, "zipf", 0, v)),
    "coactivation_from_probs.p": ("array", lambda v: routing.coactivation_from_probs(v)),
    "moe_layer_keys.model": ("model", lambda v: routing.moe_layer_keys(v)),
    "load_trace.path": ("path", lambda v: routing.load_trace(v)),
}
ROUTED = routing.route(TINY, 8)


@FUZZ
@given(name=st.sampled_from(sorted(ROUTING_CALLS)), value=ANY)
def test_fuzz_routing_functions(name, value):
    kind, call = ROUTING_CALLS[name]
    with SMALL_RESULTS[0], SMALL_RESULTS[1]:
        out = _call(call, value)
    if out is None:
        return
    if kind in ("model", "path"):
        raise AssertionError(f"{name} accepted {value!r}")
    if kind == "array":  # a list of numbers summing to 1, not a string or a scalar
        assert isinstance(value, list) and all(_is_real(v) for v in value), value
        return
    if kind == "reals":
        values = value if isinstance(value, list) else [value]
        assert all(_is_real(v) and v >= 0 for v in values), value  # inf allowed, not nan
        return
    _accepted(kind, value, name)
    if kind == "real":
        assert not math.isnan(value) and value >= 0
    if kind == "int":
        assert value >= 0


def test_fuzz_trace_check_name_is_a_bool(tmp_path):
    path = routing.save_trace(tmp_path / "t.npz", ROUTED, TINY)
    for value in ("no", 0, 1, None, "False"):
        with pytest.raises(ValueError, match=r"load_trace\(check_name="):
            routing.load_trace(path, TINY, check_name=value)
    assert routing.load_trace(path, TINY, check_name=np.bool_(False)).model_name == "tiny-moe"


GPU_FIELDS = {**{f: "real" for f in ("hbm_bandwidth_gb_s", "bf16_tflops", "fp8_tflops", "int8_tops",
                                     "memory_gb", "tdp_w", "nvlink_gb_s", "allreduce_bus_gb_s",
                                     "allreduce_latency_us", "internode_gb_s", "die_area_mm2",
                                     "bw_efficiency", "flop_efficiency")},
              **{f: "str" for f in ("name", "label", "process", "source")}}
H100 = {f.name: getattr(gpu.h100(), f.name) for f in dataclasses.fields(gpu.GPUSpec)}


@FUZZ
@given(name=st.sampled_from(sorted(GPU_FIELDS)), value=ANY)
def test_fuzz_gpu_spec(name, value):
    g = _construct(gpu.GPUSpec, H100, name, GPU_FIELDS[name], value)
    if g is not None:
        r = _call(gpu.roofline, TINY, g, n_gpus=1, gen_len=2)  # finite times or a refusal
        if r is not None:
            assert 0 < r.ttft_s < math.inf and 0 < r.time_per_output_token_s < math.inf


TRAFFIC_ARGS = {"tokens": "real", "seed": "int", "n_sample": "int", "routing": "str"}


@FUZZ
@given(name=st.sampled_from(sorted(TRAFFIC_ARGS)), value=ANY)
def test_fuzz_weight_traffic(name, value):
    kw = {"tokens": 4, "routing": "uniform", name: value}
    w = _call(gpu.weight_traffic, TINY, **kw)
    if w is not None:
        _accepted(TRAFFIC_ARGS[name], value, f"weight_traffic({name}=)")
        assert math.isfinite(w.params_read) and type(w.tokens) is float
        if name == "routing":
            assert value in routing.KINDS


@FUZZ
@given(value=ANY, wrap=st.booleans())
def test_fuzz_sweep_batches(value, wrap):
    batches = [value] if wrap else value
    out = _call(gpu.sweep_batches, TINY, "h100", batches, n_gpus=1, gen_len=2)
    if out is not None:
        assert _ints_meant(batches) and all(b >= 1 for b in batches), batches
        assert [r.batch for r in out] == [int(b) for b in batches]


MEAS = gpu.MEASUREMENTS[0]
MEAS_FIELDS = {"n_gpus": "int", "batch": "int", "prompt_len": "int", "gen_len": "int",
               "bytes_per_param": "real", "value": "real", "compute": "str", "metric": "str",
               "label": "str", "model": "str", "gpu": "str", "figure": "str", "source": "str"}


@FUZZ
@given(name=st.sampled_from(sorted(MEAS_FIELDS)), value=ANY)
def test_fuzz_measurement(name, value):
    base = {f.name: getattr(MEAS, f.name) for f in dataclasses.fields(gpu.Measurement)}
    m = _construct(gpu.Measurement, base, name, MEAS_FIELDS[name], value)
    if m is not None and name == "value":
        assert math.isfinite(gpu.ValidationRow(m, 0.01).error)


ROW = gpu.MeasuredRow("cpu", "llama-2-7b", 1, 5, 3, 1, 32, 1.0, 0.5, math.nan, math.nan, False)
ROW_FIELDS = {"gpu_name": "str", "model": "str", "batch": "int", "prompt_len": "int",
              "decode_steps": "int", "layers_run": "int", "layers_model": "int",
              "prefill_s_model": "real", "decode_step_s_model": "real",
              "distinct_experts_per_layer": "real|nan", "avg_power_w": "real|nan",
              "dry_run": "bool"}


@FUZZ
@given(name=st.sampled_from(sorted(ROW_FIELDS)), value=ANY)
def test_fuzz_measured_row(name, value):
    base = {f.name: getattr(ROW, f.name) for f in dataclasses.fields(gpu.MeasuredRow)}
    _construct(gpu.MeasuredRow, base, name, ROW_FIELDS[name], value)


SETTINGS_FIELDS = {"model": "str", "layers": "int", "prompt_len": "int", "decode_steps": "int",
                   "warmup": "int", "repeats": "int", "dtype": "str", "device": "str",
                   "dry_run": "bool", "seed": "int"}


@FUZZ
@given(name=st.sampled_from(sorted(SETTINGS_FIELDS) + ["batches"]), value=ANY)
def test_fuzz_measure_settings(name, value):
    if name == "batches":
        s = _call(gpu_measure.MeasureSettings, batches=value)
        if s is not None:
            assert _ints_meant(value) and s.batches == tuple(int(b) for b in value)
        return
    _construct(gpu_measure.MeasureSettings, {}, name, SETTINGS_FIELDS[name], value)


SWEEP_CALLS = {
    "grid.models": lambda v: sweep.grid(v, [TINY_CHIP]),
    "grid.strategies": lambda v: sweep.grid([TINY], [TINY_CHIP], v),
    "run_point.point": lambda v: sweep.run_point(v),
    "run_point.on_error": lambda v: sweep.run_point(sweep.Point(TINY, TINY_CHIP), v),
    "point_key.code_hash": lambda v: sweep.point_key(sweep.Point(TINY, TINY_CHIP), v),
    "columns.rows": lambda v: sweep.columns(v),
    "sweep.points": lambda v: sweep.sweep(v, progress=False),
    "sweep.progress": lambda v: sweep.sweep([sweep.Point(TINY, TINY_CHIP)], progress=v),
    "sweep.cache_dir": lambda v: sweep.sweep([sweep.Point(TINY, TINY_CHIP)], progress=False,
                                             cache_dir=v if not isinstance(v, str) else None),
}


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SWEEP_CALLS)), value=ANY)
def test_fuzz_sweep_functions(name, value):
    out = _call(SWEEP_CALLS[name], value)
    if out is None:
        return
    if name in ("grid.models", "run_point.point", "sweep.points", "sweep.cache_dir"):
        raise AssertionError(f"{name} accepted {value!r}")  # ANY holds no model, point or path
    if name == "grid.strategies":
        assert isinstance(value, list | tuple) and all(v in mapping.STRATEGIES for v in value)
    elif name == "run_point.on_error":
        assert value in ("record", "raise")
    elif name == "point_key.code_hash":
        assert isinstance(value, str) and value
    elif name == "columns.rows":
        assert isinstance(value, list | tuple) and not value  # ANY holds no dict
    elif name == "sweep.progress":
        _accepted("bool", value, "sweep(progress=)")


CUSTOM_ARGS = {"d_model": "int", "n_layers": "int", "n_heads": "int", "d_ff": "int",
               "n_experts": "int", "top_k": "int", "vocab_size": "int", "ffn": "enum"}


@FUZZ
@given(name=st.sampled_from(sorted(CUSTOM_ARGS)), value=ANY)
def test_fuzz_custom_model(name, value):
    spec = _call(design_space.custom_model, **{name: value})
    if spec is not None:
        _accepted(CUSTOM_ARGS[name], value, f"custom_model({name}=)")
        if name == "n_experts":
            assert spec.n_experts == (value if value >= 2 else 0) and value != 1


BUILD_ARGS = {"n_tiers": "int", "n_tiles": "int?", "tier_size": "int", "provision": "bool",
              "mvm_latency_ns": "real?", "strategy": "str", "batch": "int", "prompt_len": "int",
              "gen_len": "int", "kv_cache": "bool", "zipf_s": "real", "seed": "int",
              "digital": "names", "chip": "str"}


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BUILD_ARGS)), value=ANY)
def test_fuzz_build_point(name, value):
    kw = {"n_tiers": 4, "tier_size": 16, name: value}
    p = _call(design_space.build_point, TINY, **kw)
    if p is None:
        return
    if name == "digital":
        parts = (value,) if isinstance(value, str) else tuple(value)
        assert isinstance(value, str | list | tuple) and p.digital == parts, value
    else:
        _accepted(BUILD_ARGS[name], value, f"build_point({name}=)")


DESIGN_CALLS = {
    "pareto_front.rows": lambda v: design_space.pareto_front(v),
    "pareto_front.objectives": lambda v: design_space.pareto_front([{"a": 1}], v),
    "dominates.a": lambda v: design_space.dominates(v, [1, 2]),
    "with_derived.rows": lambda v: design_space.with_derived(v),
    "format_result.row": lambda v: design_space.format_result(v),
    "design_space_points.tiers": lambda v: design_space.design_space_points([TINY], v, (16,),
                                                                            (1,)),
    "to_python.point": lambda v: design_space.to_python(v),
    "load.path": lambda v: design_space.load(v),
}


@FUZZ
@given(name=st.sampled_from(sorted(DESIGN_CALLS)), value=ANY)
def test_fuzz_design_space_functions(name, value):
    out = _call(DESIGN_CALLS[name], value)
    if out is None:
        return
    if name in ("pareto_front.rows", "with_derived.rows"):
        assert isinstance(value, list | tuple) and not value, value  # ANY holds no dict
    elif name == "dominates.a":
        assert isinstance(value, list) and len(value) == 2 and all(_is_real(v) for v in value)
    elif name == "design_space_points.tiers":
        assert _ints_meant(value) and all(v >= 1 for v in value), value
    elif name == "load.path":
        assert value is None and len(out) > 0  # None: the shipped sweep
    else:
        raise AssertionError(f"{name} accepted {value!r}")


CONFLICT_CALLS = {
    "set_distribution.n_experts": ("int", lambda v: conflicts.set_distribution(v, 1)),
    "set_distribution.top_k": ("int", lambda v: conflicts.set_distribution(8, v)),
    "set_distribution.expert_probs": ("array", lambda v: conflicts.set_distribution(2, 1, v)),
    "stacked_conflicts.tier_rows": ("int", lambda v: conflicts.stacked_conflicts(TINY, v)),
    "tpot_asymptote_ns.batch": ("int", lambda v: conflicts.tpot_asymptote_ns(TINY_MAP, v, 1.0)),
    "tpot_asymptote_ns.tpot_alone_ns": ("real", lambda v: conflicts.tpot_asymptote_ns(
        TINY_MAP, 2, v)),
    "layer_probs.seed": ("int", lambda v: conflicts.layer_probs(TINY, "zipf", v)),
    "layer_probs.spec": ("str", lambda v: conflicts.layer_probs(TINY, v)),
    "expected_intra_token_conflicts.count": ("str", lambda v: (
        conflicts.expected_intra_token_conflicts(TINY_MAP, count=v))),
    "expected_intra_token_conflicts.stages": ("names", lambda v: (
        conflicts.expected_intra_token_conflicts(TINY_MAP, stages=v))),
    "inclusion_probs.dist": ("dist", lambda v: conflicts.inclusion_probs(v)),
    "miss_probability.members": ("array", lambda v: conflicts.miss_probability(
        conflicts.set_distribution(2, 1), v)),
}
TINY_MAP = mapping.map_model(TINY, TINY_CHIP)


@FUZZ
@given(name=st.sampled_from(sorted(CONFLICT_CALLS)), value=ANY)
def test_fuzz_conflicts_functions(name, value):
    kind, call = CONFLICT_CALLS[name]
    with SMALL_RESULTS[0], SMALL_RESULTS[1]:
        out = _call(call, value)
    if out is None:
        return
    if kind == "dist":
        raise AssertionError(f"{name} accepted {value!r}")
    if kind == "array":  # None for expert_probs: uniform routing
        assert (value is None and name == "set_distribution.expert_probs") or (
            isinstance(value, list) and all(_is_real(v) for v in value)), value
    elif kind == "names":
        parts = (value,) if isinstance(value, str) else value
        assert isinstance(value, str | list | tuple) and parts and set(parts) <= {"up", "down"}
    else:
        _accepted(kind, value, name)
        if kind == "real":
            assert 0 < value < math.inf
        if kind == "str":
            assert value in ("blocks", "starts") + routing.KINDS


TRAIN_FIELDS = {**{f: "int" for f in ("pretrain_steps", "finetune_steps", "batch",
                                      "warmup_steps", "seed", "threads")},
                **{f: "real" for f in ("lr", "finetune_lr", "weight_decay", "aux_loss")}}
HWA_FIELDS = {**{f: "real" for f in ("weight_noise", "out_noise", "clip_sigma",
                                    "init_std_alpha")}, "init_from_data": "int"}
PERIPHERY_FIELDS = {"inp_bits": "int|None", "out_bits": "int|None", "out_bound": "real"}


@FUZZ
@given(which=st.sampled_from(["train", "hwa", "periphery"]), data=st.data())
def test_fuzz_analog_configs(which, data):
    cls, fields = {"train": (analog_config.TrainConfig, TRAIN_FIELDS),
                   "hwa": (analog_config.HWAConfig, HWA_FIELDS),
                   "periphery": (analog_config.Periphery, PERIPHERY_FIELDS)}[which]
    name = data.draw(st.sampled_from(sorted(fields)))
    value = data.draw(ANY)
    obj = _construct(cls, {}, name, fields[name], value)
    if obj is not None and fields[name] == "real":
        assert math.isfinite(getattr(obj, name)) and getattr(obj, name) >= 0


@FUZZ
@given(name=st.sampled_from(["models", "train", "hwa", "periphery"]), value=ANY)
def test_fuzz_analog_settings(name, value):
    s = _call(analog_config.Settings, **{name: value})
    assert s is None, f"Settings accepted {name}={value!r}"  # ANY holds no config object
