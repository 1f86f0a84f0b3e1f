"""Fuzzing the public constructors and entry points one argument at a time.

On top of a valid base call, one argument gets a random value of a random type. The call must
either succeed *with the value that was meant* (a numpy integer given for a count is stored as
that int; nothing is coerced: a bool is not a count, a string is not a bool, ``'router'`` is one
part, not six letters) or raise ValueError/TypeError. Any other exception type fails.

The oracle (`_meant`) is written from the argument's declared kind alone, independently of
aimoe_lib.checks.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimoe_lib import gpu, hardware, mapping, routing
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
    if kind == "real":
        return (True, v) if _is_real(v) and not math.isnan(v) else (False, None)
    if kind == "real?":
        return (True, None) if v is None else _meant("real", v)
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
    elif kind in ("int", "int?"):
        assert type(stored) is int and stored == meant, (given, stored)
    elif kind == "bool":
        assert type(stored) is bool and stored is meant, (given, stored)
    elif kind == "enum":
        assert stored.value == meant.lower(), (given, stored)
    elif kind in ("real", "real?") and meant is not None:
        assert stored == meant and not isinstance(stored, bool), (given, stored)
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
             "bytes_per_param": "real", "seed": "int", "check_memory": "bool",
             "power_fraction": "real", "compute": "str"}


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
