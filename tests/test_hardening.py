"""Regression tests of issue 15 (hardening) for zoo, models, routing, gpu, gpu_measure, sweep,
design_space, conflicts, analog.config and bench: every bad input is a ValueError or TypeError
naming the argument, its value and the fix; never another exception type, a silent coercion, a
warning or a blow-up."""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
import zipfile

import numpy as np
import pytest

from aimoe_lib import (
    bench,
    checks,
    conflicts,
    design_space,
    gpu,
    gpu_measure,
    mapping,
    routing,
    sweep,
    zoo,
)
from aimoe_lib.analog import config as acfg
from aimoe_lib.models import ModelSpec, Stack, WeightMatrix
from aimoe_lib.simulator import Workload

TINY = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=32, vocab_size=20, n_experts=4, top_k=2,
                 name="tiny-moe")
DENSE = ModelSpec(d_model=16, n_layers=2, n_heads=2, d_ff=32, vocab_size=20, name="tiny-dense")
CHIP = mapping.fitting_chip(TINY, n_tiers=4, tier_rows=16, tier_cols=16)
MAP = mapping.map_model(TINY, CHIP)
ROUTED = routing.route(TINY, 8)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """A RuntimeWarning (overflow, division by zero) is a failure here, not a side note."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# ----------------------------------------------------------------------------------- zoo
def test_an_unknown_zoo_name_is_a_value_error_that_is_still_a_key_error():
    with pytest.raises(zoo.UnknownModelError) as e:
        zoo.get("gpt-5")
    assert isinstance(e.value, ValueError) and isinstance(e.value, KeyError)
    text = str(e.value)
    assert text.startswith("zoo.get(name='gpt-5'): unknown model. Did you mean gpt3-125m")
    assert "Known zoo models: mixtral-8x7b" in text


@pytest.mark.parametrize("name, shown", [(3, "3"), (None, "None"), (TINY, "<ModelSpec>"),
                                         (["mixtral-8x7b"], "<list>")])
def test_a_zoo_name_must_be_a_string(name, shown):
    with pytest.raises(ValueError, match=rf"zoo.entry\(name={shown}\): a zoo model name must be "
                                         "a string"):
        zoo.entry(name)


def test_an_empty_name_lists_the_models_without_suggesting_all_of_them():
    with pytest.raises(ValueError) as e:
        zoo.get("")
    assert "Did you mean" not in str(e.value) and "Known zoo models" in str(e.value)


def test_zoo_records_check_their_fields():
    with pytest.raises(ValueError, match="Convention.embedding='no': must be True or False"):
        zoo.Convention("no", True, "x")
    with pytest.raises(ValueError, match="Published.figure=3: write it as printed"):
        zoo.Published("total", 3, zoo.ALL, "s")
    with pytest.raises(ValueError, match="Published.convention=.*must be a Convention"):
        zoo.Published("total", "1B", "all", "s")
    with pytest.raises(ValueError, match=r"relative_error\(count='a'\)"):
        zoo.Published("total", "1B", zoo.ALL, "s").relative_error("a")
    with pytest.raises(ValueError, match=r"relative_error\(count=nan\)"):
        zoo.Published("total", "1B", zoo.ALL, "s").relative_error(math.nan)
    with pytest.raises(ValueError, match="ZooEntry.spec=1: must be a ModelSpec"):
        zoo.ZooEntry(1, "f", ())
    e = zoo.ZooEntry(TINY, "f", [zoo.Published("total", "1B", zoo.ALL, "s")])
    assert isinstance(e.published, tuple)


# ----------------------------------------------------------------------------------- models
@pytest.mark.parametrize("layer", [1.0, True, np.bool_(True), "1", None, -1, 2, 10**18])
def test_is_moe_layer_refuses_what_is_not_a_layer_of_the_stack(layer):
    with pytest.raises(ValueError, match=r"ModelSpec.is_moe_layer\(layer="):
        TINY.is_moe_layer(layer)


def test_is_moe_layer_takes_the_stack_by_name_and_answers_a_plain_bool():
    switch = zoo.get("switch-base-128")
    assert switch.is_moe_layer(1, "encoder") is True and switch.is_moe_layer(0, "encoder") is False
    assert switch.is_moe_layer(1, Stack.ENCODER) is True
    assert TINY.is_moe_layer(np.int64(1)) is TINY.is_moe_layer(1)
    with pytest.raises(ValueError, match=r"is_moe_layer\(stack='encoder'\): 'tiny-moe' has no "
                                         "encoder layers"):
        TINY.is_moe_layer(1, "encoder")  # used to answer for the decoder
    with pytest.raises(ValueError, match=r"is_moe_layer\(stack='x'\): unknown value"):
        TINY.is_moe_layer(1, "x")


def test_is_moe_layer_of_a_billion_layer_model_takes_constant_time():
    big = TINY.replace(n_layers=10**9)
    assert big.is_moe_layer(10**9 - 1) in (True, False)
    with pytest.raises(ValueError, match="layer=1.0"):  # used to list 1e9 layers (out of memory)
        big.is_moe_layer(1.0)


def test_replace_names_an_unknown_field_with_a_suggestion():
    with pytest.raises(ValueError, match=r"ModelSpec.replace\(n_exprts=4\): unknown field "
                                         r"\(did you mean 'n_experts'\?\)"):
        TINY.replace(n_exprts=4)


def test_weight_matrix_checks_its_fields():
    with pytest.raises(ValueError, match="WeightMatrix.in_features=-1"):
        WeightMatrix("a", Stack.DECODER, 0, TINY.matrices()[1].role, -1, 2)
    with pytest.raises(ValueError, match="WeightMatrix.bias='no'"):
        WeightMatrix("a", Stack.DECODER, 0, TINY.matrices()[1].role, 2, 2, bias="no")
    m = WeightMatrix("a", "encoder", np.int64(0), "q", 2, 2)
    assert m.stack is Stack.ENCODER and type(m.layer) is int


# ----------------------------------------------------------------------------------- routing
def test_billions_of_experts_are_refused_before_numpy_allocates():
    with pytest.raises(ValueError, match=r"zipf_probs\(n_experts=1000000000\): .*<= 134217728"):
        routing.zipf_probs(10**9, 1.0)  # was a MemoryError
    with pytest.raises(ValueError, match="n_experts=1000000000000000000"):
        routing.coactivation_density(ROUTED, 10**18)  # was an OverflowError
    with pytest.raises(ValueError, match="n_experts=1000000000: .*values"):
        routing.coactivation_density(ROUTED, 10**9)  # was numpy's 'array is too big'
    with pytest.raises(ValueError, match="n_experts=1000000000000"):
        routing.expert_load(ROUTED, 10**12)  # was a MemoryError
    with pytest.raises(ValueError, match="n_experts=1000000000000"):
        routing.distinct_experts(ROUTED, 2, 10**12)


def test_a_numpy_small_int_expert_count_does_not_overflow():
    """np.uint8(250) x layer index overflowed (RuntimeWarning, then a reshape error)."""
    assert np.array_equal(routing.expert_load(ROUTED, np.uint8(250)),
                          routing.expert_load(ROUTED, 250))
    assert np.array_equal(routing.coactivation_density(ROUTED, np.uint8(250)),
                          routing.coactivation_density(ROUTED, 250))


@pytest.mark.parametrize("batch", [True, np.bool_(True), "4", [1, True], [1, "2"], None, 1j,
                                   [[1], [1, 2]]])
def test_distinct_experts_expected_refuses_bools_and_strings_as_batch_sizes(batch):
    with pytest.raises(ValueError, match="batch=.*must be >= 0"):
        routing.distinct_experts_expected(8, 2, batch)


def test_distinct_experts_expected_still_takes_numbers_arrays_and_inf():
    assert routing.distinct_experts_expected(8, 2, 1) == 2.0
    assert routing.distinct_experts_expected(8, 2, math.inf) == 8.0
    assert routing.distinct_experts_expected(8, 2, [1, 2]).shape == (2,)
    assert routing.distinct_experts_expected(np.int64(8), 2, np.arange(3)).shape == (3,)


def test_routing_arrays_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"moe_layer_keys\(model='x'\): must be a ModelSpec"):
        routing.moe_layer_keys("x")  # was an AttributeError
    with pytest.raises(ValueError, match="RoutingSpec.coactivation=.*complex128.*real numbers"):
        routing.RoutingSpec("coactivation", coactivation=np.array([[0, .5], [.5, 0]], complex))
    with pytest.raises(ValueError, match="RoutingSpec.coactivation=.*not a rectangular array"):
        routing.RoutingSpec("coactivation", coactivation=[[0, 1], [1]])
    with pytest.raises(ValueError, match="RoutingSpec.trace: is not a rectangular array"):
        routing.RoutingSpec("trace", trace=[[[0, 1]], [[0]]])
    with pytest.raises(ValueError, match=r"coactivation_from_probs\(p='ab'\)"):
        routing.coactivation_from_probs("ab")
    with pytest.raises(ValueError, match=r"coactivation_from_probs\(p=.*bool.*booleans"):
        routing.coactivation_from_probs([True, False])


def test_save_trace_refuses_a_folder_instead_of_writing_next_to_it(tmp_path):
    (tmp_path / "traces").mkdir()
    with pytest.raises(ValueError, match=r"save_trace\(path=.*traces'\): is a folder"):
        routing.save_trace(tmp_path / "traces", ROUTED, TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces"]  # no traces.npz beside it
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match=r"save_trace\(path=.*d.npz'\): is a folder"):
        routing.save_trace(tmp_path / "d.npz", ROUTED, TINY)
    with pytest.raises(ValueError, match=r"save_trace\(path=.*its folder .*nope' does not exist"):
        routing.save_trace(tmp_path / "nope" / "t.npz", ROUTED, TINY)
    with pytest.raises(ValueError, match=r"save_trace\(path=None\): must be a path"):
        routing.save_trace(None, ROUTED, TINY)
    assert routing.save_trace(tmp_path / "ok", ROUTED, TINY).name == "ok.npz"


def _bad_traces(tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip at all")
    (tmp_path / "empty.npz").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "garbage.npz", "w") as z:
        z.writestr("choices.npy", b"garbage")
        z.writestr("model_name.npy", b"garbage")
    np.save(tmp_path / "plain.npy", ROUTED)
    np.savez(tmp_path / "objects.npz", choices=np.array([object()]), model_name=np.array("m"))
    np.savez(tmp_path / "fmt.npz", choices=ROUTED, model_name=np.array("m"), format=np.ones(2))
    np.savez(tmp_path / "name.npz", choices=ROUTED, model_name=np.array(["a", "b"]))
    np.savez(tmp_path / "nochoices.npz", model_name=np.array("m"))
    return ["corrupt.npz", "empty.npz", "garbage.npz", "plain.npy", "objects.npz", "fmt.npz",
            "name.npz", "nochoices.npz"]


def test_load_trace_names_the_path_of_anything_that_is_not_a_trace(tmp_path):
    for name in _bad_traces(tmp_path):
        with pytest.raises(ValueError, match=rf"load_trace\(path=.*{name}'\): not a routing "
                                             "trace .*routing.save_trace"):
            routing.load_trace(tmp_path / name)
    with pytest.raises(ValueError, match=r"load_trace\(path=.*\): is a folder"):
        routing.load_trace(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        routing.load_trace(tmp_path / "missing.npz")
    assert isinstance(e.value, ValueError) and "load_trace(path=" in str(e.value)
    with pytest.raises(ValueError, match=r"load_trace\(path=3\): must be a path"):
        routing.load_trace(3)


def test_load_trace_checks_model_and_check_name(tmp_path):
    p = routing.save_trace(tmp_path / "t.npz", ROUTED, TINY)
    with pytest.raises(ValueError, match=r"load_trace\(model='x'\): must be a ModelSpec"):
        routing.load_trace(p, "x")
    with pytest.raises(ValueError, match=r"load_trace\(check_name='no'\): must be True or False"):
        routing.load_trace(p, TINY, check_name="no")  # was truthy
    assert routing.load_trace(p, TINY).choices.shape == ROUTED.shape


# ----------------------------------------------------------------------------------- gpu
H100 = {k: getattr(gpu.h100(), k) for k in gpu.GPUSpec.__dataclass_fields__}


@pytest.mark.parametrize("field, value", [("name", 3), ("name", ""), ("label", None),
                                          ("process", 3), ("source", None)])
def test_gpu_spec_text_fields_are_text(field, value):
    with pytest.raises(ValueError, match=f"GPUSpec.{field}={value!r}"):
        gpu.GPUSpec(**{**H100, field: value})


def test_gpu_spec_stores_plain_numbers():
    g = gpu.GPUSpec(**{**H100, "memory_gb": np.int64(80), "tdp_w": np.float64(700.0)})
    assert type(g.memory_gb) is int and type(g.tdp_w) is float


@pytest.mark.parametrize("field, value, says", [
    ("hbm_bandwidth_gb_s", 1e-320, "not finite positive"),  # was inf times and a RuntimeWarning
    ("hbm_bandwidth_gb_s", 1e308, "rate of inf B/s"),        # was a time of 0
])
def test_absurd_gpu_rates_are_refused_not_turned_into_inf(field, value, says):
    g = gpu.GPUSpec(**{**H100, field: value, "memory_gb": 1e6})
    with pytest.raises(ValueError, match=f"gpu='h100'.*{says}"):
        gpu.roofline(TINY, g, n_gpus=1)


def test_sweep_batches_checks_every_batch_before_the_first_roofline(monkeypatch):
    calls = []
    monkeypatch.setattr(gpu, "roofline", lambda *a, **k: calls.append(k))
    with pytest.raises(ValueError, match=r"sweep_batches\(batches=\[\]\): is empty; give at "
                                         r"least one batch size, e.g. batches=\(1, 2, 4\)"):
        gpu.sweep_batches(TINY, "h100", [])  # returned () before
    with pytest.raises(ValueError, match=r"sweep_batches\(batches=0\)"):
        gpu.sweep_batches(TINY, "h100", [1, 2, 0])
    with pytest.raises(ValueError, match=r"sweep_batches\(batches=<dict>\)"):
        gpu.sweep_batches(TINY, "h100", {})
    with pytest.raises(ValueError, match=r"sweep_batches\(batch=2\): .*batches="):
        gpu.sweep_batches(TINY, "h100", batch=2)
    assert calls == []
    gpu.sweep_batches(TINY, "h100", (b for b in (1, np.int64(2))))
    assert [k["batch"] for k in calls] == [1, 2] and type(calls[1]["batch"]) is int


def test_gpu_models_by_name_get_the_same_checks_as_model_specs():
    with pytest.raises(ValueError, match="decoder-only"):
        gpu.weight_traffic("switch-base-128", 4)  # a ModelSpec was refused, its name accepted
    with pytest.raises(ValueError, match="decoder-only"):
        gpu.active_dense_equivalent("switch-base-128")
    with pytest.raises(KeyError) as e:  # still a KeyError, now also a ValueError
        gpu.roofline("gpt-5")
    assert isinstance(e.value, ValueError) and str(e.value).startswith("spec='gpt-5': unknown")


@pytest.mark.parametrize("value", [None, 3, ["zipf"]])
def test_routing_of_the_roofline_is_a_kind_name_or_a_spec(value):
    """str(None) used to be looked up as the kind 'None'."""
    with pytest.raises(ValueError, match=re.escape(f"routing={value!r}: must be a routing kind "
                                                   "name")):
        gpu.weight_traffic(TINY, 4, value)
    with pytest.raises(ValueError, match=r"routing='Zipf': unknown routing kind \(did you mean"):
        gpu.roofline(TINY, routing="Zipf")
    with pytest.raises(ValueError, match="routing=3"):
        gpu.weight_traffic(DENSE, 4, 3)  # checked for dense models too


def test_validation_tables_check_their_rows():
    with pytest.raises(ValueError, match=r"validation_table\(measurements='abc'\): must be a list"):
        gpu.validation_table("abc")
    with pytest.raises(ValueError, match=r"validation_table\(measurements=3\): must be a "
                                         "Measurement"):
        gpu.validation_table([3])
    with pytest.raises(ValueError, match=r"Measurement.predict\(batch=2\): batch is fixed"):
        gpu.validation_table(batch=2)
    with pytest.raises(ValueError, match=r"format_validation_table\(rows=3\): must be a "
                                         "ValidationRow"):
        gpu.format_validation_table([3])
    with pytest.raises(ValueError, match="ValidationRow.measurement=3"):
        gpu.ValidationRow(3, 1.0)
    assert gpu.validation_table([]) == ()


MEAS = {k: getattr(gpu.MEASUREMENTS[0], k) for k in gpu.Measurement.__dataclass_fields__}


@pytest.mark.parametrize("field, value, says", [
    ("value", 0.0, "Measurement.value=0.0: must be a finite number > 0"),  # ZeroDivisionError
    ("value", math.nan, "Measurement.value=nan"),
    ("metric", "x", "Measurement.metric='x': unknown metric"),             # silently ttft
    ("model", "gpt-5", "Measurement.model='gpt-5': unknown model"),
    ("gpu", "h9", "Measurement.gpu='h9': unknown GPU preset"),
    ("n_gpus", True, "Measurement.n_gpus=True"),
    ("label", 3, "Measurement.label=3: must be a string"),
])
def test_measurement_checks_its_fields_at_construction(field, value, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        gpu.Measurement(**{**MEAS, field: value})


ROW = dict(gpu_name="cpu", model="llama-2-7b", batch=1, prompt_len=5, decode_steps=3,
           layers_run=1, layers_model=32, prefill_s_model=1.0, decode_step_s_model=0.5,
           distinct_experts_per_layer=math.nan, avg_power_w=math.nan, dry_run=False)


@pytest.mark.parametrize("field, value", [("dry_run", "False"), ("batch", 0), ("batch", "1"),
                                          ("layers_run", 0), ("prefill_s_model", -1.0),
                                          ("avg_power_w", "x"), ("gpu_name", 3)])
def test_measured_row_checks_its_fields(field, value):
    with pytest.raises(ValueError, match=f"MeasuredRow.{field}={value!r}"):
        gpu.MeasuredRow(**{**ROW, field: value})


def test_measured_row_runs_at_most_the_model_layers():
    with pytest.raises(ValueError, match="MeasuredRow.layers_run=33: more than layers_model=32"):
        gpu.MeasuredRow(**{**ROW, "layers_run": 33})
    r = gpu.MeasuredRow(**{**ROW, "batch": np.int64(2), "avg_power_w": np.float64(300)})
    assert type(r.batch) is int and type(r.avg_power_w) is float


HEADER = ("gpu_name,model,batch,prompt_len,decode_steps,layers_run,layers_model,prefill_s_model,"
          "decode_step_s_model,distinct_experts_per_layer,avg_power_w,dry_run\n")


@pytest.mark.parametrize("row, says", [
    ("cpu,m,x,1,1,1,1,1,1,,,True", "line 2, column batch holds 'x', not a number"),
    ("cpu,m,1,1,1,1,1,abc,1,,,True", "line 2, column prefill_s_model holds 'abc'"),
    ("cpu,m,1,1", "line 2, column decode_steps holds None"),           # was a TypeError
    ("cpu,m,1,1,1,1,1,1,1,,,maybe", "line 2, column dry_run holds 'maybe', not True/False"),
    ("cpu,m,-3,1,1,1,1,1,1,,,True", "line 2: MeasuredRow.batch=-3"),  # was accepted
])
def test_load_measured_names_the_line_and_column_of_a_bad_cell(tmp_path, row, says):
    p = tmp_path / "m.csv"
    p.write_text(HEADER + row + "\n")
    with pytest.raises(ValueError, match=rf"load_measured\(path=.*m.csv'\): {says}"):
        gpu.load_measured(p)


def test_load_measured_refuses_binary_and_non_paths(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"load_measured\(path=.*bin.csv'\): not a text CSV"):
        gpu.load_measured(p)
    with pytest.raises(ValueError, match=r"load_measured\(path=None\): must be a path"):
        gpu.load_measured(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # and a ValueError
        gpu.load_measured(tmp_path / "none.csv")


# ----------------------------------------------------------------------------------- gpu_measure
@pytest.mark.parametrize("field, value", [("batches", ()), ("batches", (0,)), ("batches", "1,2"),
                                          ("batches", 4), ("layers", True), ("dtype", "fp8"),
                                          ("dry_run", "yes"), ("warmup", -1), ("seed", 1.5),
                                          ("model", 3)])
def test_measure_settings_check_their_fields(field, value):
    with pytest.raises(ValueError, match=f"MeasureSettings.{field}="):
        gpu_measure.MeasureSettings(**{field: value})


def test_measure_refuses_bad_settings_with_value_errors(tmp_path, capsys):
    assert issubclass(gpu_measure.HarnessError, ValueError)
    assert issubclass(gpu_measure.HarnessError, RuntimeError)
    with pytest.raises(ValueError, match=r"measure\(settings=int\)"):
        gpu_measure.measure(3)
    with pytest.raises(ValueError, match="MeasureSettings.model='gpt-5': unknown model"):
        gpu_measure.measure(gpu_measure.MeasureSettings(model="gpt-5", device="cpu",
                                                        dry_run=True))
    assert gpu_measure.main(["--layers", "0", "--device", "cpu", "--dry-run"]) == 2
    assert "MeasureSettings.layers=0" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"main\(argv='--dry-run'\): pass a list"):
        gpu_measure.main("--dry-run")
    with pytest.raises(ValueError, match=r"tiny_like\(spec=3\)"):
        gpu_measure.tiny_like(3)
    with pytest.raises(ValueError, match=r"write_csv\(path=.*\): is a folder"):
        gpu_measure.write_csv([], tmp_path)
    with pytest.raises(ValueError, match=r"write_csv\(rows=3\): must be a dict"):
        gpu_measure.write_csv([3], tmp_path / "x.csv")


# ----------------------------------------------------------------------------------- sweep
POINT = sweep.Point(TINY, CHIP)


def test_sweep_arguments_are_checked():
    with pytest.raises(ValueError, match=r"sweep\(points=None\): must be a list of sweep.Point"):
        sweep.sweep(None)
    with pytest.raises(ValueError, match=r"sweep\(progress='no'\): must be True or False"):
        sweep.sweep([POINT], progress="no")
    with pytest.raises(ValueError, match=r"sweep\(cache_dir=''\): must be a folder path"):
        sweep.sweep([POINT], cache_dir="", progress=False)  # used to cache into the cwd
    with pytest.raises(ValueError, match=r"sweep\(cache_dir=3\)"):
        sweep.sweep([POINT], cache_dir=3, progress=False)


def test_grid_takes_any_list_and_names_what_is_not_one():
    assert len(sweep.grid((m for m in [TINY]), [CHIP])) == 1
    with pytest.raises(ValueError, match=r"grid\(models=None\): must be a list"):
        sweep.grid(None, [CHIP])
    with pytest.raises(ValueError, match=r"grid\(strategies=\.\.\.\): is a single str, not a list"):
        sweep.grid([TINY], [CHIP], "in_order")
    with pytest.raises(ValueError, match=r"grid\(labl='x'\): not a field of sweep.Point "
                                         r"\(did you mean 'label'\?\)"):
        sweep.grid([TINY], [CHIP], labl="x")


def test_run_point_point_key_and_columns_check_their_arguments():
    with pytest.raises(ValueError, match=r"run_point\(point=3\): must be a Point"):
        sweep.run_point(3)  # was an AttributeError
    with pytest.raises(ValueError, match=r"point_key\(point=None\): must be a Point"):
        sweep.point_key(None)
    with pytest.raises(ValueError, match=r"point_key\(code_hash=3\): must be a string"):
        sweep.point_key(POINT, 3)
    with pytest.raises(ValueError, match=r"columns\(rows='ab'\): must be a list"):
        sweep.columns("ab")
    with pytest.raises(ValueError, match=r"columns\(rows=3\): must be a dict"):
        sweep.columns([3])
    cols = sweep.columns([{"a": 1, "b": [1, 2]}, {"a": True, "b": [3, 4]}])
    assert cols["a"].dtype == float and cols["b"].shape == (2,) and cols["b"][1] == [3, 4]


# ----------------------------------------------------------------------------------- design_space
def test_build_point_takes_a_single_digital_part_whole():
    """'router' used to become the parts 'r', 'o', 'u', ... (and was refused as 'r')."""
    one = design_space.build_point(TINY, n_tiers=4, tier_size=16, digital="router")
    assert one.digital == ("router",)
    assert sweep.point_key(one) == sweep.point_key(
        design_space.build_point(TINY, n_tiers=4, tier_size=16, digital=("router",)))
    with pytest.raises(ValueError, match=r"build_point\(digital=\('rtr',\)\): unknown part 'rtr' "
                                         r"\(did you mean 'router'\?\)"):
        design_space.build_point(TINY, n_tiers=4, tier_size=16, digital="rtr")


@pytest.mark.parametrize("field, value", [("provision", "no"), ("provision", 0),
                                          ("zipf_s", False), ("zipf_s", None)])
def test_build_point_flags_and_skew_are_not_truthy(field, value):
    with pytest.raises(ValueError, match=rf"build_point\({field}={value!r}\)"):
        design_space.build_point(TINY, n_tiers=4, tier_size=16, **{field: value})


@pytest.mark.parametrize("kw, says", [
    (dict(n_experts=True), r"custom_model\(n_experts=True\)"),  # silently dense
    (dict(n_experts=-1), r"custom_model\(n_experts=-1\)"),
    (dict(n_experts=1), r"custom_model\(n_experts=1\): one expert is no mixture"),
    (dict(n_experts=None), r"custom_model\(n_experts=None\)"),  # was a TypeError of '>='
    (dict(top_k=None), r"custom_model\(top_k=None\)"),          # ignored for dense models
    (dict(top_k=1.0, n_experts=4), r"custom_model\(top_k=1.0\)"),
])
def test_custom_model_checks_its_counts(kw, says):
    with pytest.raises(ValueError, match=says):
        design_space.custom_model(**kw)


def test_custom_model_lowers_top_k_to_the_experts_as_documented():
    assert design_space.custom_model(512, 2, 8, 1024, n_experts=2, top_k=8).top_k == 2


def test_pareto_front_and_dominates_check_their_inputs():
    with pytest.raises(ValueError, match=r"pareto_front\(rows\[0\]=3\): must be a Mapping"):
        design_space.pareto_front([3])  # was an AttributeError
    with pytest.raises(ValueError, match=r"pareto_front\(objectives=\.\.\.\): 'a' is not a "
                                         r"\(column, sense\) pair"):
        design_space.pareto_front([{"a": 1}], ["a"])
    with pytest.raises(ValueError, match=r"pareto_front\(objectives=3\): must be a list"):
        design_space.pareto_front([{"a": 1}], 3)
    rows = [{"a": [1]}, {"a": 1j}, {"a": 2.0, "label": "ok"}]
    assert design_space.pareto_front(rows, {"a": "min"}) == [rows[2]]  # was a TypeError
    with pytest.raises(ValueError, match=r"dominates\(a, b\): a has 2 entries and b 1"):
        design_space.dominates([1, 2], [1])  # broadcast to False before
    with pytest.raises(ValueError, match=r"dominates\(a, b\): a cost is NaN"):
        design_space.dominates([math.nan], [1])
    with pytest.raises(ValueError, match=r"dominates\(a='ab'\)"):
        design_space.dominates("ab", "cd")


def test_rows_without_their_columns_are_named():
    with pytest.raises(ValueError, match=r"with_derived\(rows\[0\]\): a row without error lacks "
                                         "batch, gen_len"):
        design_space.with_derived([{"error": ""}])  # was a KeyError
    row = dict(batch=1, gen_len=0, energy_pj=1.0, energy_passive_pj=0.0, tile_conflicts=0)
    with pytest.raises(ValueError, match=r"rows\[0\]\['gen_len'\]=0"):
        design_space.with_derived([row])  # was a ZeroDivisionError
    with pytest.raises(ValueError, match=r"format_result\(row\): the row lacks the column "
                                         "'model'"):
        design_space.format_result({})
    with pytest.raises(ValueError, match=r"format_result\(row=None\): must be a Mapping"):
        design_space.format_result(None)


def test_load_names_a_folder_a_missing_or_a_corrupt_file(tmp_path):
    with pytest.raises(ValueError, match=r"load\(path=.*\): is a folder"):
        design_space.load(tmp_path)  # was an IsADirectoryError
    with pytest.raises(FileNotFoundError) as e:
        design_space.load(str(tmp_path / "none.json"))  # a str used to be an AttributeError
    assert isinstance(e.value, ValueError) and "python -m aimoe_lib.design_space" in str(e.value)
    for name, text in (("bad.json", "{not json"), ("list.json", "[1, 2]"),
                       ("rows.json", '{"rows": 3}')):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"load\(path=.*{name}'\): not a design-space sweep "
                                             "file"):
            design_space.load(tmp_path / name)
    (tmp_path / "ok.json").write_text(json.dumps({"rows": [{"error": "x", "label": "a"}]}))
    assert design_space.load(str(tmp_path / "ok.json")) == [{"error": "x", "label": "a"}]


def test_run_checks_its_output_before_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "sweep", lambda *a, **k: pytest.fail("swept before refusing"))
    with pytest.raises(ValueError, match=r"run\(out=.*\): is a folder"):
        design_space.run(out=tmp_path, cache_dir=None, progress=False)
    with pytest.raises(ValueError, match=r"run\(progress='no'\)"):
        design_space.run(out=tmp_path / "x.json", cache_dir=None, progress="no")


def test_design_space_points_checks_its_lists():
    with pytest.raises(ValueError, match=r"design_space_points\(models=<ModelSpec>\): must be a "
                                         "list"):
        design_space.design_space_points(models=TINY)
    with pytest.raises(ValueError, match=r"design_space_points\(models=3\): must be a ModelSpec"):
        design_space.design_space_points(models=[3])
    with pytest.raises(ValueError, match=r"design_space_points\(tier_sizes=\[\]\): is empty"):
        design_space.design_space_points(models=[TINY], tier_sizes=[])  # returned [] before
    with pytest.raises(ValueError, match=r"design_space_points\(workload=3\)"):
        design_space.design_space_points(models=[TINY], workload=3)
    with pytest.raises(ValueError, match=r"main\(argv='--no-cache'\): pass a list"):
        design_space.main("--no-cache")


# ----------------------------------------------------------------------------------- conflicts
def test_set_distribution_refuses_billions_of_experts_and_boolean_probabilities():
    with pytest.raises(ValueError, match="n_experts=1000000000000000000"):
        conflicts.set_distribution(10**18, 2)  # inclusion_probs was a MemoryError
    with pytest.raises(ValueError, match="expert_probs=.*booleans"):
        conflicts.set_distribution(2, 1, [True, False])  # read as [1.0, 0.0]
    with pytest.raises(ValueError, match="expert_probs=.*not a rectangular array"):
        conflicts.set_distribution(2, 1, [[0.5], [0.25, 0.25]])
    d = conflicts.set_distribution(np.uint8(250), np.int64(2))
    assert type(d.n_experts) is int and type(d.top_k) is int


@pytest.mark.parametrize("kw, says", [
    (dict(n_experts=4, top_k=9, uniform=True), "SetDistribution.top_k=9"),  # ZeroDivisionError
    (dict(n_experts=4, top_k=2, uniform="no"), "SetDistribution.uniform='no'"),
    (dict(n_experts=4, top_k=2, uniform=False), "SetDistribution.sets=None"),  # AttributeError
    (dict(n_experts=4, top_k=2, uniform=False, sets=np.array([[0, 9]]), probs=np.ones(1)),
     "expert ids must be in 0..3"),
    (dict(n_experts=4, top_k=2, uniform=False, sets=np.array([[0, 1]]), probs=np.full(1, .5)),
     "sum to 1"),
])
def test_set_distribution_records_check_themselves(kw, says):
    with pytest.raises(ValueError, match=says):
        conflicts.SetDistribution(**kw)


def test_conflict_functions_name_their_arguments():
    with pytest.raises(ValueError, match=r"inclusion_probs\(dist=3\): must be a SetDistribution"):
        conflicts.inclusion_probs(3)
    d8 = conflicts.set_distribution(8, 2)
    with pytest.raises(ValueError, match=r"miss_probability\(members=<array\(shape=\(1, 8\), "
                                         r"dtype=float64\)>\): holds real numbers"):
        conflicts.miss_probability(d8, np.full((1, 8), 0.5))  # was read as all True
    with pytest.raises(ValueError, match=r"miss_probability\(members=\.\.\.\): holds values other "
                                         "than 0 and 1"):
        conflicts.miss_probability(d8, np.full((1, 8), 2))
    assert conflicts.miss_probability(d8, np.eye(8, dtype=int)[:1]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="stages=3: choose from"):
        conflicts.expected_intra_token_conflicts(MAP, stages=3)  # was a TypeError
    with pytest.raises(ValueError, match=r"layer_probs\(seed=-1\)"):
        conflicts.layer_probs(TINY, "uniform", -1)  # unused, still checked
    with pytest.raises(ValueError, match="'tiny-dense' is dense"):
        conflicts.layer_probs(DENSE, "zipf")  # was numpy's 'need at least one array to stack'
    assert conflicts.layer_probs(DENSE, "uniform") is None
    dense_map = mapping.map_model(DENSE, mapping.fitting_chip(DENSE, n_tiers=4, tier_rows=16,
                                                              tier_cols=16))
    with pytest.raises(ValueError, match="tiny-dense is dense.*expert_probs="):
        conflicts.expected_tile_busy_ns(dense_map, [0.5, 0.5])  # silently ignored before


@pytest.mark.parametrize("value", [True, math.inf, 0, "1", None])
def test_tpot_alone_must_be_a_finite_positive_time(value):
    with pytest.raises(ValueError, match=f"tpot_alone_ns={value!r}"):
        conflicts.tpot_asymptote_ns(MAP, 2, value)


@pytest.mark.parametrize("value", [0, 1.5, -1, True, "512", 10**18])
def test_stacked_conflicts_checks_the_tier_shape(value):
    """0 was a ZeroDivisionError, 1.5 and -1 gave fractional or negative conflict counts."""
    with pytest.raises(ValueError, match=rf"stacked_conflicts\(tier_rows={value!r}\)"):
        conflicts.stacked_conflicts(TINY, value)
    with pytest.raises(ValueError, match=r"stacked_conflicts\(model='mixtral-8x7b'\)"):
        conflicts.stacked_conflicts("mixtral-8x7b")


# ----------------------------------------------------------------------------------- analog config
@pytest.mark.parametrize("field, value", [("pretrain_steps", True), ("pretrain_steps", 1.0),
                                          ("batch", 10**18), ("warmup_steps", -1),
                                          ("seed", "0"), ("threads", 0), ("lr", math.nan),
                                          ("finetune_lr", 0.0), ("weight_decay", -1.0),
                                          ("aux_loss", None)])
def test_train_config_checks_its_fields(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}={value!r}"):
        acfg.TrainConfig(**{field: value})


def test_train_config_words_step_counts_as_the_command_line_does():
    with pytest.raises(ValueError, match="pretrain_steps=0: must be a whole number >= 1"):
        acfg.TrainConfig(pretrain_steps=0)
    assert type(acfg.TrainConfig(batch=np.int64(4)).batch) is int


@pytest.mark.parametrize("field, value", [("weight_noise", -0.1), ("out_noise", True),
                                          ("clip_sigma", 0), ("init_std_alpha", math.inf),
                                          ("init_from_data", 2.5)])
def test_hwa_config_checks_its_fields(field, value):
    with pytest.raises(ValueError, match=f"HWAConfig.{field}={value!r}"):
        acfg.HWAConfig(**{field: value})


def test_settings_check_their_parts():
    assert acfg.Settings(models=list(acfg.MODELS)).models == acfg.MODELS
    with pytest.raises(ValueError, match=r"Settings.models=\(\): is empty"):
        acfg.Settings(models=())
    with pytest.raises(ValueError, match="Settings.models='dense': is one LMConfig, not a tuple"):
        acfg.Settings(models=acfg.MODELS[0])
    with pytest.raises(ValueError, match="the name\\(s\\) 'dense' appear more than once"):
        acfg.Settings(models=(acfg.MODELS[0], acfg.MODELS[0]))
    with pytest.raises(ValueError, match="Settings.train=3: must be a TrainConfig"):
        acfg.Settings(train=3)
    with pytest.raises(ValueError, match=r"model='Dense': unknown model \(did you mean 'dense'"):
        acfg.model_config("Dense")


# ----------------------------------------------------------------------------------- bench
def test_bench_main_takes_a_list_not_a_string(monkeypatch):
    with pytest.raises(ValueError, match=r"main\(argv='sim'\): pass a list of argument strings"):
        bench.main("sim")  # used to run the suites 's', 'i', 'm'
    ran = []
    monkeypatch.setattr(bench, "SUITES", {n: (lambda n=n: ran.append(n)) for n in bench.SUITES})
    monkeypatch.setattr(sys, "argv", ["bench", "sim"])
    assert bench.main() == 0 and ran == ["sim"]  # None: the command line


# ----------------------------------------------------------------------------------- checks
def test_check_helpers():
    with pytest.raises(ValueError, match=r"f\(x='ab'\): must be a list \(got str\)"):
        checks.items("f()", "x", "ab")
    assert checks.items("f()", "x", range(3)) == (0, 1, 2)
    with pytest.raises(ValueError, match=r"f\(p=<array\(shape=\(2,\), dtype=bool\)>\): holds "
                                         "booleans"):
        checks.array("f()", "p", np.array([True, False]))
    with pytest.raises(ValueError, match=r"f\(name=3\): must be a string"):
        checks.string("f()", "name", 3)
    with pytest.raises(ValueError, match=r"f\(spec=<list>\): must be a ModelSpec"):
        checks.instance("f()", "spec", [1], ModelSpec)
    assert issubclass(checks.MissingPathError, FileNotFoundError)
    assert issubclass(checks.MissingPathError, ValueError)
    with pytest.raises(ValueError, match="T.n=0: must be a whole number >= 1"):
        checks.integer("T", "n", 0, minimum=1, noun="a whole number")


def test_a_workload_is_not_a_list_of_workloads():
    with pytest.raises(ValueError, match=r"grid\(workloads=\.\.\.\): is a single Workload"):
        sweep.grid([TINY], [CHIP], workloads=Workload())


# ---------------------------------------------------------------- lookups outside the audit
def test_an_unknown_or_digital_matrix_name_is_a_value_error_and_a_key_error():
    from aimoe_lib import checks, hardware, mapping
    from aimoe_lib.models import ModelSpec
    spec = ModelSpec(d_model=16, n_layers=1, n_heads=1, d_ff=16, vocab_size=16, name="one")
    m = mapping.map_model(spec, hardware.ChipConfig(n_tiles=8, n_tiers=1, tier_rows=16,
                                                    tier_cols=16))
    for name, says in (("nope", "no matrix 'nope' in one; names look like"),
                       ("embedding", "runs on digital units")):
        with pytest.raises(checks.UnknownKeyError, match=says) as err:
            m.matrix_index(name)
        assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
        assert not str(err.value).startswith("'")  # plain text, not a quoted KeyError


def test_a_missing_shipped_file_is_a_value_error_and_a_file_not_found_error():
    from aimoe_lib import checks, shipped
    with pytest.raises(checks.MissingPathError, match="shipped data file 'data/nope.json'"):
        shipped.data_path("nope.json")
    assert issubclass(checks.MissingPathError, FileNotFoundError)


def test_training_run_checks_accept_numpy_integers():
    from aimoe_lib.analog import train
    assert train._positive_int(np.int64(2)) and train._positive_int(2)
    assert not train._positive_int(np.bool_(True)) and not train._positive_int(True)
    assert not train._positive_int(np.int64(0)) and not train._positive_int(2.0)
