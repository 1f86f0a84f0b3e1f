"""Training script: smoke test (tiny models, a few steps, everything written, <= 60 s on 2 cores)
and the command line's argument checks (refused before any work)."""

import inspect
import json
import math
import time
from dataclasses import replace

import pytest

from aimoe_lib import routing
from aimoe_lib.analog import checkpoint, train
from aimoe_lib.analog.config import PARTS


def test_learning_rate_schedule():
    assert train.lr_at(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert train.lr_at(9, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert train.lr_at(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert train.lr_at(100, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert train.lr_at(55, 100, 1.0, warmup=10) == pytest.approx(0.55)


def test_smoke_run(tmp_path):
    settings = train.quick_settings()
    t = time.perf_counter()
    res = train.run(settings, tmp_path, workers=1, checkpoints=("dense",), progress=False)
    assert time.perf_counter() - t < 60
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["records"] == json.loads(json.dumps(res["records"]))
    assert set(res["models"]) == {"dense", "moe-4"}
    for m in res["models"].values():
        assert len(m["curves"]["pretrain"]) >= 1 and m["seconds"]["train_total"] > 0
        assert all(math.isfinite(x[2]) for x in m["curves"]["hwa"])
    recs = res["records"]
    n_seeds = train.N_SEEDS
    assert all(len(r["ppl"]) == n_seeds for r in recs)
    kinds = {(r["model"], r["training"], r["noise"]) for r in recs}
    for model in ("dense", "moe-4"):
        for training in ("fp", "hwa"):
            for noise in ("digital", "none", "gaussian", "pcm"):
                assert (model, training, noise) in kinds
    dense = [r for r in recs if r["model"] == "dense"]
    assert all("router" not in r["analog"] for r in dense)
    moe_full = [r for r in recs if r["model"] == "moe-4" and r["analog"] == list(PARTS)]
    assert all(r["route_changed"] is not None for r in moe_full)
    # each part analog alone, at the sensitivity noise
    alone = {tuple(r["analog"]) for r in recs if r["model"] == "moe-4"
             and r["noise"] == "gaussian" and len(r["analog"]) == 1}
    assert alone == {(p,) for p in PARTS}
    # files: the dense checkpoints and the MoE's routing trace
    model, ranges, meta = checkpoint.load(tmp_path / "ckpt_dense_hwa.npz")
    assert meta == {"model": "dense", "training": "hwa"} and set(ranges) == set(
        model.linear_parts())
    assert not (tmp_path / "ckpt_moe-4_fp.npz").exists()
    spec = settings.models[1].spec()
    tr = routing.load_trace(tmp_path / f"trace_{spec.name}.npz", spec)
    assert tr.choices.shape == (train.TRACE_WINDOWS * 32, 1, 2)


# ----------------------------------------------------------------------------- command line
# Argument checks only: run() and the corpus are replaced by functions that fail the test if
# called, so every refusal below is shown to come before any work.
@pytest.fixture
def no_work(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("work started before the arguments were refused")

    monkeypatch.setattr(train, "run", forbidden)
    monkeypatch.setattr(train, "load_corpus", forbidden)
    monkeypatch.setattr(train, "train_model", forbidden)


def _refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--pretrain-steps", "0"], "--pretrain-steps: must be a whole number >= 1, got '0'"),
    (["--finetune-steps", "-5"], "--finetune-steps: must be a whole number >= 1, got '-5'"),
    (["--pretrain-steps", "ten"], "--pretrain-steps: must be a whole number >= 1, got 'ten'"),
    (["--workers", "0"], "--workers: must be a whole number >= 1, got '0'"),
    (["--threads", "-1"], "--threads: must be a whole number >= 1, got '-1'"),
    (["--checkpoints", "dense,moe-9"], "--checkpoints: 'moe-9' is not a model of this run; "
                                       "choose from dense, moe-4, moe-16"),
    (["--quick", "--checkpoints", "moe-16"], "'moe-16' is not a model of this run; choose "
                                             "from dense, moe-4"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, monkeypatch, no_work, capsys, argv,
                                                   says):
    monkeypatch.chdir(tmp_path)
    assert says in _refused(argv, capsys)
    assert list(tmp_path.iterdir()) == []  # not even the output folder was made


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, no_work, capsys):
    f = tmp_path / "results"
    f.write_text("keep me")
    err = _refused(["--out", str(f)], capsys)
    assert f"--out {str(f)!r} is an existing file, not a folder" in err
    assert f.read_text() == "keep me"
    err = _refused(["--out", str(tmp_path / "ok"), "--spare-dir", str(f)], capsys)
    assert f"--spare-dir {str(f)!r} is an existing file" in err


@pytest.mark.parametrize("name", ["results.json", "ckpt_dense_fp.npz", "ckpt_moe-4_hwa.npz",
                                  "trace_shakespeare-moe-16.npz"])
def test_an_output_file_that_is_a_folder_is_refused(tmp_path, no_work, capsys, name):
    (tmp_path / name).mkdir()
    err = _refused(["--out", str(tmp_path)], capsys)
    assert f"{str(tmp_path / name)!r} is a folder, but this run writes a file there" in err


def test_evaluate_only_without_results_is_refused_and_creates_nothing(tmp_path, no_work, capsys):
    out = tmp_path / "never_trained"
    err = _refused(["--evaluate-only", "--out", str(out)], capsys)
    assert f"{str(out / 'results.json')!r} is missing; train first" in err
    assert not out.exists()


def test_evaluate_only_with_a_missing_checkpoint_is_refused(tmp_path, no_work, capsys):
    models = {m.name: {} for m in train.quick_settings().models}
    (tmp_path / "results.json").write_text(json.dumps({"models": models}))
    err = _refused(["--quick", "--evaluate-only", "--out", str(tmp_path)], capsys)
    assert "ckpt_dense_fp.npz is neither in --out" in err


def test_the_default_output_is_a_folder_of_the_working_directory_not_the_shipped_data(
        tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(train, "run", lambda settings, out, **kw: calls.append((out, kw)))
    monkeypatch.chdir(tmp_path)
    assert train.main(["--quick", "--no-progress"]) == 0
    (out, kw), = calls
    assert out == str(train.DEFAULT_OUT) == "aimoe_runs/analog"
    where = (tmp_path / "aimoe_runs" / "analog").resolve()
    assert where.is_dir() and train.OUT_DIR.resolve() != where
    assert f"writing results to {where}" in capsys.readouterr().err
    assert kw["checkpoints"] == ("dense", "moe-4") and kw["workers"] == 2
    # the shipped folder is written only when named
    assert train.main(["--quick", "--out", str(tmp_path / "data" / "analog")]) == 0
    assert calls[-1][0] == str(tmp_path / "data" / "analog")


def test_run_has_no_default_output_and_checks_before_work(tmp_path, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("work started before the arguments were refused")

    monkeypatch.setattr(train, "load_corpus", forbidden)  # the real run(), no corpus or training
    monkeypatch.setattr(train, "train_model", forbidden)
    assert inspect.signature(train.run).parameters["out_dir"].default is inspect.Parameter.empty
    s = train.quick_settings()
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="out_dir=.* is an existing file"):
        train.run(s, f)
    with pytest.raises(ValueError, match="pretrain_steps=0: must be a whole number >= 1"):
        train.run(replace(s, train=replace(s.train, pretrain_steps=0)), tmp_path / "a")
    with pytest.raises(ValueError, match="finetune_steps=-1"):
        train.run(replace(s, train=replace(s.train, finetune_steps=-1)), tmp_path / "a")
    with pytest.raises(ValueError, match="checkpoints: 'moe-16' is not a model"):
        train.run(s, tmp_path / "a", checkpoints=("moe-16",))
    with pytest.raises(ValueError, match="checkpoints='dense': pass a list"):
        train.run(s, tmp_path / "a", checkpoints="dense")
    with pytest.raises(ValueError, match="workers=0"):
        train.run(s, tmp_path / "a", workers=0)
    assert not (tmp_path / "a").exists()


def test_an_unwritable_output_folder_is_refused(tmp_path, monkeypatch):
    """Tests run as root, where a chmod does not stop writes: the probe write is made to fail."""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match="out_dir=.* cannot be written .*Permission denied"):
        train.check_run(train.quick_settings(), tmp_path / "out")


def test_help_names_the_explicit_shipped_output(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out data/analog" in out and "aimoe_runs/analog" in out
