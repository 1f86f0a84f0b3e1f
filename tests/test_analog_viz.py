"""Chapter 8's figures, numbers and shipped files (numpy only, except the live panel test)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from aimoe_lib import routing
from aimoe_lib.viz import analog as viz_analog
from aimoe_lib.analog import traces
from aimoe_lib.analog.config import MODELS, PARTS, LMConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "analog"


@pytest.fixture(scope="module")
def res():
    return viz_analog.load_results()


def test_figure_modules_do_not_import_torch():
    code = ("import sys, aimoe_lib.viz.analog, aimoe_lib.widgets.analog, aimoe_lib.analog.pcm, "
            "aimoe_lib.analog.corpus, aimoe_lib.analog.config, aimoe_lib.analog.traces; "
            "aimoe_lib.analog.traces.load('moe-16'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_data_is_small_and_complete(res):
    total = sum(p.stat().st_size for p in DATA.iterdir() if p.is_file())
    assert total <= 20e6
    assert (DATA / "shakespeare.json.xz").exists()
    assert [m["name"] for m in res["settings"]["models"]] == [m.name for m in MODELS]
    for m in MODELS:
        for f in res["models"][m.name]["files"]:
            assert (DATA / f).exists(), f


def test_traces_fit_their_models(res):
    for m in MODELS:
        if not m.is_moe:
            continue
        cfg = LMConfig(**res["models"][m.name]["config"])
        spec = cfg.spec()
        tr = routing.load_trace(DATA / f"trace_{spec.name}.npz", spec)
        assert tr.choices.shape == (res["settings"]["trace_windows"] * cfg.context,
                                    cfg.n_layers, cfg.top_k)
        load = routing.expert_load(tr.choices, cfg.n_experts)
        np.testing.assert_allclose(load.sum(axis=1), cfg.top_k)


def test_trace_loader_gives_the_model_and_its_trace():
    spec, tr = traces.load("moe-16")
    assert spec.name == "shakespeare-moe-16" and spec.n_experts == 16 and spec.top_k == 2
    assert tr.choices.shape == (32768, 4, 2) and tr.model_name == spec.name
    with pytest.raises(ValueError, match="dense"):
        traces.load("dense")


def test_every_condition_has_five_seeds(res):
    assert res["settings"]["n_seeds"] >= 5
    assert all(len(r["ppl"]) == res["settings"]["n_seeds"] for r in res["records"])
    assert all(np.isfinite(r["ppl"]).all() for r in res["records"])


def test_noise_hurts_on_average(res):
    """Sanity: 10% weight noise is worse than none for every model and training."""
    for m in viz_analog.MODEL_NAMES:
        for t in viz_analog.TRAININGS:
            clean = viz_analog.find(res, m, t, "none")["ppl"][0]
            noisy = np.mean(viz_analog.find(res, m, t, "gaussian", 0.10)["ppl"])
            assert noisy > clean


def test_findings_match_the_records(res):
    f = viz_analog.findings(res)
    rec = viz_analog.find(res, "dense", "fp", "gaussian", 0.06)
    digital = viz_analog.find(res, "dense", "fp", "digital")["ppl"][0]
    assert f["dense_fp_inc"] == pytest.approx(100 * (np.mean(rec["ppl"]) / digital - 1))
    rec = viz_analog.find(res, "moe-16", "hwa", "gaussian", 0.06, PARTS)
    assert f["route_moe-16_hwa_analog"] == pytest.approx(100 * np.mean(rec["route_changed"]))


@pytest.mark.parametrize("name", ["noise_sweep", "drift_sweep", "router_stability",
                                  "sensitivity", "training_curves"])
def test_figures(res, name):
    fig = getattr(viz_analog, name)(res)
    assert isinstance(fig, Figure)
    assert fig.get_suptitle() and fig.get_supxlabel()


def test_pcm_device_is_seeded():
    a = viz_analog.pcm_device(seed=1).get_supxlabel()
    assert a == viz_analog.pcm_device(seed=1).get_supxlabel()
    assert "1 day" in a


def test_summary_table(res):
    lines = viz_analog.summary_table(res).splitlines()
    assert len(lines) == 1 + 2 * len(MODELS)


def test_missing_condition_names_it(res):
    with pytest.raises(KeyError, match="level=0.5"):
        viz_analog.find(res, "dense", "fp", "gaussian", 0.5)


def test_live_evaluation_without_analog_parts_is_digital():
    from aimoe_lib.analog.live import live_evaluate

    live = live_evaluate("dense", "hwa", analog=(), n_seeds=2, n_windows=4)
    assert live["ppl"] == [pytest.approx(live["digital_ppl"])] * 2
    noisy = live_evaluate("moe-4", "fp", noise="gaussian", noise_pct=10,
                                         n_seeds=2, n_windows=4)
    assert noisy["ppl"][0] != noisy["ppl"][1] and noisy["route_changed"] is not None
    fig = viz_analog.live_figure(noisy)
    assert "Gaussian 10%" in fig.get_supxlabel()
