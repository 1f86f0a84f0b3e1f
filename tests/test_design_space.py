"""aimoe_lib.design_space: Pareto fronts by hand and by property, the shipped sweep, building a
point from knobs, and the export as Python (exec'd and compared by cache key)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from row_checks import assert_same_row

from aimoe_lib import design_space as ds
from aimoe_lib import experiments, hardware, mapping, sweep, zoo
from aimoe_lib.mapping import fitting_chip
from aimoe_lib.models import ModelSpec
from aimoe_lib.routing import RoutingSpec
from aimoe_lib.shipped import data_path
from aimoe_lib.simulator import Workload

MIN2 = {"a": "min", "b": "min"}


def _rows(*pairs, names=("a", "b")):
    return [{"label": f"p{i}", **dict(zip(names, p, strict=True))} for i, p in enumerate(pairs)]


def _labels(rows):
    return [r["label"] for r in rows]


# ----------------------------------------------------------------------------- Pareto by hand
def test_dominated_points_are_removed():
    # p3 (3, 3) is beaten by p1 (2, 2) in both; p0, p1, p2 trade off
    rows = _rows((1, 3), (2, 2), (3, 1), (3, 3))
    assert _labels(ds.pareto_front(rows, MIN2)) == ["p0", "p1", "p2"]


def test_weakly_dominated_point_is_removed():
    # p1 equals p0 in a and is worse in b
    rows = _rows((1, 1), (1, 2))
    assert _labels(ds.pareto_front(rows, MIN2)) == ["p0"]


def test_ties_are_kept():
    rows = _rows((1, 2), (1, 2), (2, 1), (2, 2))
    assert _labels(ds.pareto_front(rows, MIN2)) == ["p0", "p1", "p2"]


def test_max_and_min_objectives():
    # maximise throughput t, minimise energy e: p1 has more t and less e than p0
    rows = _rows((10, 5), (20, 4), (30, 9), (5, 9), names=("t", "e"))
    front = ds.pareto_front(rows, {"t": "max", "e": "min"})
    assert _labels(front) == ["p1", "p2"]
    # as (column, sense) pairs the result is the same
    assert _labels(ds.pareto_front(rows, [("t", "max"), ("e", "min")])) == ["p1", "p2"]


def test_one_objective_keeps_all_best():
    rows = _rows((3, 0), (1, 0), (1, 9), (2, 0))
    assert _labels(ds.pareto_front(rows, {"a": "min"})) == ["p1", "p2"]


def test_rows_with_errors_or_missing_values_take_no_part():
    rows = _rows((1, 1), (0, 0), (0.5, math.nan), (2, 2))
    rows[1]["error"] = "does not map"
    rows.append({"label": "p4", "a": 0.1})  # no b
    assert _labels(ds.pareto_front(rows, MIN2)) == ["p0"]
    assert ds.pareto_front([], MIN2) == []


def test_pareto_front_rejects_bad_objectives():
    with pytest.raises(ValueError, match="sense 'best'"):
        ds.pareto_front(_rows((1, 1)), {"a": "best"})
    with pytest.raises(ValueError, match="at least one objective"):
        ds.pareto_front(_rows((1, 1)), {})


def test_dominates():
    assert ds.dominates([1, 2], [1, 3])
    assert not ds.dominates([1, 2], [1, 2])
    assert not ds.dominates([1, 3], [2, 2])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
                min_size=1, max_size=25))
def test_front_property(points):
    """No front point is dominated; every other point is dominated by a front point."""
    rows = _rows(*points, names=("a", "b", "c"))
    obj = {"a": "min", "b": "max", "c": "min"}
    cost = {r["label"]: (r["a"], -r["b"], r["c"]) for r in rows}
    front = set(_labels(ds.pareto_front(rows, obj)))
    assert front
    for lab in cost:
        beaten = any(ds.dominates(cost[f], cost[lab]) for f in front)
        assert beaten == (lab not in front)


# ----------------------------------------------------------------------------- the sweep
def test_design_space_points_grid():
    pts = ds.design_space_points()
    assert 60 <= len(pts) <= 150
    labels = [p.label for p in pts]
    assert len(set(labels)) == len(labels)
    for p in pts:
        assert p.chip.n_tiers in ds.TIERS and p.chip.tier_rows in ds.TIER_SIZES
        assert p.workload.batch in ds.BATCHES
        assert p.chip.n_tier_slots >= experiments.blocks_needed(p.model, p.chip.tier_rows,
                                                                p.chip.tier_cols)
        if not p.model.is_moe:
            assert p.strategy == "in_order"
        if p.strategy == "moe_stacked":
            assert p.chip.n_tiers > 1


def test_shipped_design_space_matches_the_points():
    path = data_path("design_space.json")
    assert path.stat().st_size < 300_000
    data = json.loads(path.read_text())
    assert data["command"] == "python -m aimoe_lib.design_space"
    assert [r["label"] for r in data["rows"]] == [p.label for p in ds.design_space_points()]


def test_shipped_rows_are_what_the_code_computes():
    """Two cheap points re-simulated: the shipped numbers are current."""
    rows = {r["label"]: r for r in ds.load()}
    pts = {p.label: p for p in ds.design_space_points()}
    for label in ("base-dense|T8|512|in_order|b8", "moe-8e-top1|T64|512|moe_stacked|b8"):
        assert_same_row(sweep.run_point(pts[label]), rows[label], label)


def test_load_adds_derived_columns():
    r = next(r for r in ds.load() if not r["error"])
    n = r["batch"] * r["gen_len"]
    assert r["generated_tokens"] == n
    assert r["energy_dynamic_per_token_pj"] == pytest.approx(
        (r["energy_pj"] - r["energy_passive_pj"]) / n)
    assert r["conflicts_per_token"] == pytest.approx(r["tile_conflicts"] / n)


def test_cli_writes_json_through_the_cache(tmp_path, monkeypatch):
    spec = experiments.BASE.replace(n_layers=1, vocab_size=512)
    chip = fitting_chip(spec, n_tiers=2, units="per_layer")
    pts = [sweep.Point(spec, chip, "in_order", Workload(batch=b, prompt_len=2, gen_len=2),
                       label=f"tiny|b{b}") for b in (1, 2)]
    monkeypatch.setattr(ds, "design_space_points", lambda: pts)
    out, cache = tmp_path / "ds.json", tmp_path / "cache"
    assert ds.main(["--out", str(out), "--cache-dir", str(cache)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["label"] for r in rows] == ["tiny|b1", "tiny|b2"]
    assert len(list(cache.glob("*.json"))) == 2


# ----------------------------------------------------------------------------- one point
def test_build_point_default_is_the_shipped_configuration():
    p = ds.build_point()
    shipped = next(q for q in ds.design_space_points()
                   if q.label == "moe-8e-top1|T8|512|in_order|b8")
    # same configuration, different label
    assert sweep.point_key(p) == sweep.point_key(
        sweep.Point(shipped.model, shipped.chip, shipped.strategy, shipped.workload,
                    label="playground"))


def test_build_point_knobs():
    p = ds.build_point("olmoe-1b-7b", chip="hermes", n_tiers=64, tier_size=256,
                       mvm_latency_ns=50.0, unit_passive_power_w=0.25, provision=False,
                       digital=("embedding", "router"), batch=2, gen_len=2, zipf_s=1.5)
    c = p.chip
    assert p.model is zoo.get("olmoe-1b-7b") or p.model.name == "olmoe-1b-7b"
    assert (c.n_tiers, c.tier_rows, c.tier_cols) == (64, 256, 256)
    assert c.cost.mvm_latency_ns == 50.0 and c.cost.unit_passive_power_w == 0.25
    assert c.cost.mvm_energy_pj == hardware.preset("hermes").cost.mvm_energy_pj
    assert c.n_dpus == hardware.preset("hermes").n_dpus
    assert p.workload.routing.kind == "zipf" and p.workload.routing.zipf_s == 1.5
    m = mapping.map_model(p.model, c, p.strategy, digital=p.digital)  # fits: tiles follow
    assert m.n_blocks <= c.n_tier_slots < m.n_blocks + 64


def test_build_point_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="olmoe-1b-7b"):
        ds.build_point("gpt-5")


def test_custom_model():
    dense = ds.custom_model(512, 4, 8, 2048)
    moe = ds.custom_model(512, 4, 8, 2048, n_experts=4, top_k=2)
    assert not dense.is_moe and dense.name == "custom-dense"
    assert moe.n_experts == 4 and moe.top_k == 2
    assert moe.active_params < moe.total_params


def test_format_result():
    row = sweep.run_point(ds.build_point(batch=2, gen_len=2))
    text = ds.format_result(row)
    assert "M tokens/s" in text and "dynamic" in text and "bound by" in text
    bad = sweep.run_point(ds.build_point(strategy="moe_stacked", n_tiers=1, batch=1, gen_len=1))
    assert bad["error"] and "does not map" in ds.format_result(bad)


# ----------------------------------------------------------------------------- to_python
def _rebuilt(point):
    code = ds.to_python(point)
    ns: dict = {}
    exec(compile(code, "<to_python>", "exec"), ns)  # noqa: S102 - testing generated code
    return code, ns


def _points():
    e = 8
    coact = np.full((e, e), 1.0 / (e * (e - 1)))
    np.fill_diagonal(coact, 0.0)
    spec = experiments.moe_variant(experiments.BASE.replace(n_layers=2), e, top_k=2)
    chip = fitting_chip(spec, n_tiers=16, units="per_layer")
    return {
        "default": ds.build_point(),
        "zoo": ds.build_point("olmoe-1b-7b", n_tiers=64, batch=2),
        "hermes-costs": ds.build_point("base-dense", chip="hermes", tier_size=256,
                                       mvm_latency_ns=250, mvm_energy_pj=1.5e4,
                                       unit_passive_power_w=0.1, tile_passive_power_w=0.002),
        "zipf-digital": ds.build_point("moe-8e-top2", zipf_s=1.25, kv_cache=False,
                                       digital=("embedding", "router", "lm_head"), seed=3),
        "coactivation": sweep.Point(
            spec, chip.replace(area=hardware.AreaModel(tier_overhead_fraction=0.0)),
            "coactivation", Workload(batch=2, prompt_len=3, gen_len=2,
                                     routing=RoutingSpec(kind="coactivation", coactivation=coact)),
            coactivation=coact, mapping_seed=5, label="with arrays"),
        "custom": ds.build_point(ds.custom_model(768, 3, 12, 3072, n_experts=4, top_k=2),
                                 n_tiers=4, n_tiles=500, provision=False),
    }


@pytest.mark.parametrize("name", list(_points()))
def test_to_python_rebuilds_the_same_point(name):
    point = _points()[name]
    code, ns = _rebuilt(point)
    assert sweep.point_key(ns["point"]) == sweep.point_key(point), code
    assert "row = sweep.run_point(point)" in code


def test_to_python_writes_zoo_models_by_name_and_only_what_differs():
    code = ds.to_python(_points()["zoo"])
    assert "zoo.get('olmoe-1b-7b')" in code and "ModelSpec(" not in code
    code = ds.to_python(_points()["default"])
    assert "CostModel(" not in code and "AreaModel(" not in code and "import numpy" not in code
    assert "tier_rows" not in code  # 512 is the default
    assert "np.array(" in ds.to_python(_points()["coactivation"])


def test_to_python_runs(tmp_path):
    point = ds.build_point("base-dense", n_tiers=4, batch=1, gen_len=2)
    _, ns = _rebuilt(point)
    assert ns["row"]["tokens_per_s"] == sweep.run_point(point)["tokens_per_s"]


def test_to_python_rejects_non_points():
    with pytest.raises(ValueError, match="sweep.Point"):
        ds.to_python(ModelSpec(d_model=8, n_layers=1, n_heads=2, d_ff=16, vocab_size=10))
