"""Sweeps: cache hits return identical rows, any changed input misses, executors agree, errors."""

import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from aimoe_lib import hardware, sweep
from aimoe_lib.models import ModelSpec
from aimoe_lib.simulator import Workload

SPEC = ModelSpec(name="tiny-moe", d_model=32, n_layers=2, n_heads=2, d_ff=64, vocab_size=64,
                 ffn="swiglu", n_experts=4, top_k=2)
CHIP = hardware.ChipConfig(n_tiles=16, n_tiers=32, tier_rows=32, tier_cols=32)
W = Workload(batch=2, prompt_len=3, gen_len=3)


def _points():
    return sweep.grid([SPEC], [CHIP, CHIP.replace(n_tiles=8, n_tiers=64)], ["in_order", "moe_stacked"], [W])


def test_cache_returns_identical_rows_and_skips_work(tmp_path):
    first = sweep.sweep(_points(), cache_dir=tmp_path, executor=ThreadPoolExecutor(1), progress=False)
    assert len(list(tmp_path.glob("*.json"))) == 4
    stamp = {f: f.stat().st_mtime_ns for f in tmp_path.glob("*.json")}
    again = sweep.sweep(_points(), cache_dir=tmp_path, executor=ThreadPoolExecutor(1), progress=False)
    assert again == first
    assert {f: f.stat().st_mtime_ns for f in tmp_path.glob("*.json")} == stamp  # nothing rewritten


@pytest.mark.parametrize("change", [
    lambda p: dataclasses.replace(p, chip=p.chip.replace(cost=dataclasses.replace(p.chip.cost, mvm_latency_ns=101.0))),
    lambda p: dataclasses.replace(p, chip=p.chip.replace(area=dataclasses.replace(p.chip.area, dpu_area_mm2=1.3))),
    lambda p: dataclasses.replace(p, model=p.model.replace(d_ff=65)),
    lambda p: dataclasses.replace(p, workload=Workload(batch=2, prompt_len=3, gen_len=3, seed=1)),
    lambda p: dataclasses.replace(p, strategy="balanced"),
    lambda p: dataclasses.replace(p, digital=("embedding", "router")),
])
def test_any_changed_input_changes_the_key(change):
    p = _points()[0]
    assert sweep.point_key(change(p)) != sweep.point_key(p)
    assert sweep.point_key(p) == sweep.point_key(_points()[0])


def test_a_changed_constant_is_recomputed_not_read_from_cache(tmp_path):
    p = _points()[0]
    slow = dataclasses.replace(p, chip=p.chip.replace(
        cost=dataclasses.replace(p.chip.cost, mvm_latency_ns=200.0)))
    a = sweep.sweep([p], cache_dir=tmp_path, progress=False)[0]
    b = sweep.sweep([slow], cache_dir=tmp_path, progress=False)[0]
    assert b["makespan_ns"] > a["makespan_ns"]
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_process_pool_equals_serial_run():
    pts = _points()
    serial = sweep.sweep(pts, executor=ThreadPoolExecutor(1), progress=False)
    with ProcessPoolExecutor(2) as ex:
        parallel = sweep.sweep(pts, executor=ex, progress=False)
    assert parallel == serial
    assert [r["strategy"] for r in serial] == ["in_order", "moe_stacked"] * 2  # input order kept


def test_rows_are_json_and_columns_are_arrays():
    rows = sweep.sweep(_points()[:1], progress=False)
    json.dumps(rows)
    cols = sweep.columns(rows)
    assert cols["tokens_per_s"].dtype == float and cols["model"][0] == "tiny-moe"


def test_a_model_that_does_not_fit_is_recorded_or_raised():
    small = sweep.Point(model=SPEC, chip=CHIP.replace(n_tiles=1, n_tiers=1))
    row = sweep.sweep([small], progress=False)[0]
    assert "needs" in row["error"] and "tokens_per_s" not in row
    with pytest.raises(ValueError, match="needs"):
        sweep.sweep([small], progress=False, on_error="raise")


@pytest.mark.parametrize("call, match", [
    (lambda: sweep.sweep([]), "nothing to run"),
    (lambda: sweep.sweep([CHIP]), "not a sweep.Point"),
    (lambda: sweep.sweep(_points(), executor="processes"), "concurrent.futures.Executor"),
    (lambda: sweep.sweep(_points(), on_error="ignore"), "on_error"),
    (lambda: sweep.Point(model="mixtral", chip=CHIP), "Point.model"),
    (lambda: sweep.Point(model=SPEC, chip=None), "Point.chip"),
    (lambda: sweep.Point(model=SPEC, chip=CHIP, workload=3), "Point.workload"),
    (lambda: sweep.grid(SPEC, [CHIP]), "models"),
    (lambda: sweep.grid([SPEC], []), "chips"),
])
def test_invalid_sweep_specs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cache_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        sweep.sweep(_points(), cache_dir=f, progress=False)


def test_dask_local_cluster_executor_equals_serial_run():
    """The documented cluster path: a Dask client's executor is a concurrent.futures.Executor."""
    from distributed import Client, LocalCluster

    pts = _points()[:2]
    serial = sweep.sweep(pts, executor=ThreadPoolExecutor(1), progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        rows = sweep.sweep(pts, executor=client.get_executor(), progress=False)
    assert rows == serial


def test_the_label_is_not_part_of_the_key_but_is_carried_into_the_row(tmp_path):
    p = _points()[0]
    a, b = dataclasses.replace(p, label="first"), dataclasses.replace(p, label="second")
    assert sweep.point_key(a) == sweep.point_key(b)
    sweep.sweep([a], cache_dir=tmp_path, progress=False)
    row = sweep.sweep([b], cache_dir=tmp_path, progress=False)[0]
    assert row["label"] == "second" and len(list(tmp_path.glob("*.json"))) == 1


def test_the_code_hash_covers_every_module_of_the_simulator_package(monkeypatch):
    """Editing any file of aimoe_lib/simulator/ (engine, program, ...) changes every key."""
    import pathlib

    base = sweep._code_hash()
    pkg = pathlib.Path(sweep.__file__).parent / "simulator"
    files = sorted(pkg.rglob("*.py"))
    assert {f.name for f in files} >= {"engine.py", "program.py", "result.py", "trace.py"}
    real = pathlib.Path.read_bytes
    for target in files:
        monkeypatch.setattr(pathlib.Path, "read_bytes",
                            lambda self, t=target: real(self) + (b"#" if self == t else b""))
        assert sweep._code_hash() != base, target.name
    monkeypatch.setattr(pathlib.Path, "read_bytes", real)
    assert sweep._code_hash() == base
