"""Training script smoke test: tiny models, a few steps, everything written (<= 60 s on 2 cores)."""

import json
import math
import time

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
