"""Sweeps: cache hits return identical rows, any changed input misses, executors agree, errors."""

import dataclasses
import json
import multiprocessing
import os
import re
import time
import warnings
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


# ----------------------------------------------------------------------------- cache robustness
TINY = ModelSpec(name="tiny-dense", d_model=16, n_layers=1, n_heads=2, d_ff=32, vocab_size=32,
                 ffn="gelu")
TINY_W = Workload(batch=1, prompt_len=1, gen_len=2)


def _tiny_points():
    """Four cheap points (a few ms each), all distinct keys."""
    return sweep.grid([TINY, TINY.replace(d_ff=48)], [CHIP, CHIP.replace(n_tiles=8)],
                      ["in_order"], [TINY_W])


def _same(a, b):
    """Rows equal value for value (nan equal to nan, as JSON writes both)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _file(tmp_path, p):
    return tmp_path / f"{sweep.point_key(p)}.json"


def _damage_truncated(f, other):
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])


def _damage_garbage(f, other):
    f.write_bytes(b"\xff\xfe\x00\x9c garbage \x80" * 7)


def _damage_empty_file(f, other):
    f.write_bytes(b"")


def _damage_empty_object(f, other):
    f.write_text("{}")


def _edit_row(f, **changes):
    data = json.loads(f.read_text())
    data["row"].update(changes)
    f.write_text(json.dumps(data))


def _damage_negative_makespan(f, other):
    _edit_row(f, makespan_ns=-1)


def _damage_infinite_energy(f, other):
    _edit_row(f, energy_pj=float("inf"))


def _damage_string_tokens(f, other):
    _edit_row(f, tokens_per_s="fast")


def _damage_config_field(f, other):
    _edit_row(f, n_tiles=999)


def _damage_missing_field(f, other):
    data = json.loads(f.read_text())
    del data["row"]["energy_mvm_pj"]
    f.write_text(json.dumps(data))


def _damage_bare_row_without_key(f, other):
    f.write_text(json.dumps(json.loads(f.read_text())["row"]))


def _damage_other_points_file(f, other):
    f.write_bytes(other.read_bytes())


def _damage_other_points_row_under_this_key(f, other):
    data = json.loads(f.read_text())
    data["row"] = json.loads(other.read_text())["row"]
    f.write_text(json.dumps(data))


def _damage_error_marker_on_a_good_row(f, other):
    _edit_row(f, error="made up")


@pytest.mark.parametrize("damage, why", [
    (_damage_truncated, "not valid JSON"),
    (_damage_garbage, "not valid JSON"),
    (_damage_empty_file, "is empty"),
    (_damage_empty_object, "no 'key'"),
    (_damage_negative_makespan, "makespan_ns=-1"),
    (_damage_infinite_energy, "energy_pj=inf"),
    (_damage_string_tokens, "tokens_per_s='fast'"),
    (_damage_config_field, "n_tiles=999"),
    (_damage_missing_field, "energy_mvm_pj"),
    (_damage_bare_row_without_key, "no 'key'"),
    (_damage_other_points_file, "another point"),
    (_damage_other_points_row_under_this_key, "d_ff|total_params|n_tiles"),
    (_damage_error_marker_on_a_good_row, "error_type"),
])
def test_a_damaged_cache_file_is_recomputed_with_a_warning_naming_it(tmp_path, damage, why):
    """Whatever the damage, the row equals a fresh run_point, a warning names the file and the
    reason, and the file is rewritten so that the next sweep reads it back without a warning."""
    p, other = _tiny_points()[0], _tiny_points()[3]
    fresh = sweep.run_point(p)  # computed without any cache
    sweep.sweep([p, other], cache_dir=tmp_path, executor=ThreadPoolExecutor(1), progress=False)
    f = _file(tmp_path, p)
    damage(f, _file(tmp_path, other))
    with pytest.warns(sweep.SweepCacheWarning, match=f.name) as rec:
        row = sweep.sweep([p], cache_dir=tmp_path, progress=False)[0]
    assert _same(row, fresh)
    assert len(rec) == 1 and re.search(why, str(rec[0].message)), str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = sweep.sweep([p], cache_dir=tmp_path, progress=False)[0]
    assert _same(again, fresh)
    left = sorted(x.name for x in tmp_path.iterdir())
    assert left == sorted([f.name, _file(tmp_path, other).name])  # no temporary file left


def test_a_cached_error_row_that_was_edited_is_recomputed(tmp_path):
    small = sweep.Point(model=SPEC, chip=CHIP.replace(n_tiles=1, n_tiers=1))
    fresh = sweep.run_point(small)
    assert "needs" in fresh["error"]
    sweep.sweep([small], cache_dir=tmp_path, progress=False)
    _edit_row(_file(tmp_path, small), makespan_ns=5.0)
    with pytest.warns(sweep.SweepCacheWarning, match="error row has result field"):
        row = sweep.sweep([small], cache_dir=tmp_path, progress=False)[0]
    assert row == fresh


_BARRIER = None


def _set_barrier(b):
    global _BARRIER
    _BARRIER = b


def _sweep_after_barrier(cache_dir):
    """One of two processes: wait for the other, then sweep the same points into one folder."""
    _BARRIER.wait(timeout=30)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rows = sweep.sweep(_tiny_points(), cache_dir=cache_dir, executor=ThreadPoolExecutor(2),
                           progress=False)
    return rows, [str(w.message) for w in rec]


def test_two_processes_sweeping_into_one_cache_folder_never_collide(tmp_path):
    """20 trials; in each two processes, released together by a barrier, compute the same four
    points and write them into one fresh folder. Every row equals a fresh run, nobody warns or
    raises, no temporary file is left behind, and a third sweep reads all four back."""
    pts = _tiny_points()
    fresh = [sweep.run_point(p) for p in pts]
    names = sorted(f"{sweep.point_key(p)}.json" for p in pts)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    t = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=_set_barrier,
                             initargs=(barrier,)) as ex:
        for trial in range(20):
            folder = tmp_path / f"trial{trial}"
            runs = [ex.submit(_sweep_after_barrier, folder) for _ in range(2)]
            for fut in runs:
                rows, warned = fut.result(timeout=60)
                assert warned == [], (trial, warned)
                assert all(_same(a, b) for a, b in zip(rows, fresh, strict=True)), trial
            assert sorted(os.listdir(folder)) == names, trial
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                back = sweep.sweep(pts, cache_dir=folder, progress=False)
            assert all(_same(a, b) for a, b in zip(back, fresh, strict=True)), trial
    assert time.perf_counter() - t < 20


def test_an_unwritable_cache_folder_warns_once_and_returns_every_row(tmp_path, monkeypatch):
    """The folder is made read-only (chmod 0o555). Tests often run as root, where chmod does not
    stop writes: the test then checks that a file can still be created there and, if so,
    simulates the failure by making the cache's one write function raise OSError (EROFS), which
    is what a read-only or full folder gives."""
    import errno

    pts = _tiny_points()
    fresh = [sweep.run_point(p) for p in pts]
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            chmod_blocks_writes = False
        except OSError:
            chmod_blocks_writes = True
        if not chmod_blocks_writes:
            def refuse(path, text):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            monkeypatch.setattr(sweep, "_write_atomic", refuse)
        with pytest.warns(sweep.SweepCacheWarning, match="cannot write to the cache folder") as rec:
            rows = sweep.sweep(pts, cache_dir=folder, executor=ThreadPoolExecutor(1),
                               progress=False)
    finally:
        folder.chmod(0o755)
    assert len(rec) == 1 and str(folder) in str(rec[0].message)
    assert all(_same(a, b) for a, b in zip(rows, fresh, strict=True))
    assert os.listdir(folder) == []


def test_a_cache_folder_that_cannot_be_created_warns_and_runs_without_cache(tmp_path, monkeypatch):
    import pathlib

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    p = _tiny_points()[0]
    with pytest.warns(sweep.SweepCacheWarning, match="cannot write to the cache folder"):
        row = sweep.sweep([p], cache_dir=tmp_path / "new", progress=False)[0]
    assert _same(row, sweep.run_point(p))


def test_on_error_record_keeps_going_and_raise_raises_even_from_the_cache(tmp_path):
    """A point asking to stack the experts of a dense model makes map_model raise a ValueError
    (an unknown strategy is refused by Point itself): recorded as an error row between two good
    rows (which equal fresh runs), or raised."""
    good = _tiny_points()
    bad = dataclasses.replace(good[0], strategy="moe_stacked")
    rows = sweep.sweep([good[0], bad, good[1]], cache_dir=tmp_path, progress=False)
    assert "places experts, but tiny-dense is dense" in rows[1]["error"] and "makespan_ns" not in rows[1]
    assert rows[1]["strategy"] == "moe_stacked" and rows[1]["model"] == "tiny-dense"
    assert _same(rows[0], sweep.run_point(good[0])) and _same(rows[2], sweep.run_point(good[1]))
    assert sweep.run_point(bad)["error"] == rows[1]["error"]
    with pytest.raises(ValueError, match="places experts"):
        sweep.sweep([good[0], bad], progress=False, on_error="raise")  # computed
    with pytest.raises(ValueError, match="places experts"):
        sweep.sweep([good[0], bad], cache_dir=tmp_path, progress=False, on_error="raise")  # cached
    with pytest.raises(ValueError, match="places experts"):
        sweep.run_point(bad, on_error="raise")


def test_a_simulator_refusal_is_recorded_as_an_error_row(monkeypatch):
    """A ValueError raised by simulate itself (here forced, in-process) is recorded too."""
    p = _tiny_points()[0]

    def refuse(*a, **k):
        raise ValueError("simulate: refused for the test")

    monkeypatch.setattr(sweep, "simulate", refuse)
    row = sweep.sweep([p], executor=ThreadPoolExecutor(1), progress=False)[0]
    assert row["error"] == "simulate: refused for the test" and "tokens_per_s" not in row
    with pytest.raises(ValueError, match="refused for the test"):
        sweep.sweep([p], executor=ThreadPoolExecutor(1), progress=False, on_error="raise")
