"""Chapter 7 ("Against GPUs") on the book's preset: the figures and tables default to
experiments.PRESET and show the AIMC chip's dynamic energy next to its total, and the chapter's
claims about the simulated chip hold against hand-worked closed forms."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest

from aimoe_lib import experiments, gpu, gpu_comparison, zoo
from aimoe_lib.viz import gpu as viz_gpu
from aimoe_lib.widgets import gpu as widgets_gpu


# --------------------------------------------------------------------------- the book's preset
@pytest.mark.parametrize("fn", [viz_gpu.headline, viz_gpu.moe_penalty, viz_gpu.context_sweep,
                                viz_gpu.compare_bars, widgets_gpu.gpu_panel])
def test_simulated_figures_default_to_the_books_preset(fn):
    assert inspect.signature(fn).parameters["preset"].default == experiments.PRESET == "physical"


def test_panel_offers_the_presets_with_the_books_first():
    assert widgets_gpu.GPU_PANEL_PRESETS[0] == experiments.PRESET
    panel = widgets_gpu.gpu_panel(model="olmoe-1b-7b", batch=2)
    preset = [c for c in panel.children if getattr(c, "description", "") == "chip costs"]
    assert len(preset) == 1 and preset[0].value == "physical"
    assert tuple(preset[0].options) == ("physical", "paper", "3dsim")


# --------------------------------------------------------------------------- dynamic energy
def test_dynamic_energy_is_total_less_static_power_times_time():
    # static energy per generated token = static power / generated tokens per second (no power
    # gating in any preset), so dynamic = total - P_static / (tokens/s)
    a = gpu_comparison.aimc_point("olmoe-1b-7b", 64, 2)
    static_j = a.passive_power_w / a.tokens_per_s
    assert viz_gpu.dynamic_energy_per_token_j(a) == pytest.approx(a.energy_per_token_j - static_j,
                                                                  rel=1e-9)
    # 'physical': 2.68 mW per unit ([MOEPIM] 0.02412 W / 9), 24 DPUs + 8 attention units per layer
    assert a.passive_power_w == pytest.approx(16 * 32 * 0.02412 / 9)


def test_format_comparison_shows_dynamic_next_to_total():
    c = gpu_comparison.compare("olmoe-1b-7b", "h100", batch=2)
    # hand-set AIMC numbers: 4.12 mJ per token, a quarter static, 1,000 tokens/s, 1 W static
    a = dataclasses.replace(c.aimc, energy_per_token_j=0.00412, passive_fraction=0.25,
                            tokens_per_s=1000.0, passive_power_w=1.0)
    text = viz_gpu.format_comparison(gpu_comparison.Comparison(a, c.gpu))
    rows = {line[:24].strip(): line[24:56].strip() for line in text.splitlines()[1:]}
    assert rows["energy per token"] == "4.12 mJ"
    assert rows["of it dynamic"] == "3.09 mJ (75%)"  # 0.75 x 4.12
    assert rows["average power"] == "4.1 W (1.00 W static)"  # 4.12 mJ x 1,000 tokens/s


def test_headline_draws_dynamic_energy_under_the_total():
    fig = viz_gpu.headline("olmoe-1b-7b", gpus=("h100",), n_tiers=64, batches=(1, 4))
    ax = fig.axes[2]
    assert "energy" in ax.get_title()
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(solid) == len(dotted) == 1
    assert all(d < t for d, t in zip(dotted[0].get_ydata(), solid[0].get_ydata(), strict=True))
    assert "physical" in fig.get_suptitle()
    assert "dynamic" in fig.get_supxlabel()


def test_compare_bars_energy_panel_has_total_dynamic_and_gpu():
    fig = viz_gpu.compare_bars("olmoe-1b-7b", batch=2)
    c = gpu_comparison.compare("olmoe-1b-7b", "h100", batch=2)
    heights = [p.get_height() for p in fig.axes[2].patches]
    assert heights == pytest.approx([c.aimc.energy_per_token_j * 1e3,
                                     viz_gpu.dynamic_energy_per_token_j(c.aimc) * 1e3,
                                     c.gpu.energy_per_token_j * 1e3])
    assert "physical" in fig.get_supxlabel()
    paper = viz_gpu.compare_bars("olmoe-1b-7b", batch=2, preset="paper")
    assert "paper" in paper.get_supxlabel()


# --------------------------------------------------------------------------- the chapter's claims
def test_dense_model_on_a_dense_stack_runs_at_its_tile_bound():
    # Llama-2-7B (d 4096, 32 layers, FFN 11008, vocabulary 32000) on 512 x 512 tiers:
    # q, k, v, o 8 x 8 = 64 blocks each; gate, up 8 x ceil(11008/512) = 8 x 22 = 176 each;
    # down 22 x 8 = 176: 784 per layer, 25,088 per token; LM head 8 x ceil(32000/512) = 504.
    spec = zoo.get("llama-2-7b")
    per_token, head = 32 * (4 * 64 + 3 * 176), 8 * math.ceil(32000 / 512)
    assert per_token == 25_088
    a = gpu_comparison.aimc_point(spec, 1024, 8)
    assert a.n_tiles == math.ceil((per_token + head) / 1024) == 25
    # 16 prompt + 16 generated tokens: 31 token passes through the layers, 16 LM-head passes;
    # HERMES' 132.9 ns per MVM; each tile does one MVM at a time
    mvm_s = 132.94e-9
    bound = a.n_tiles * 16 / ((31 * per_token + 16 * head) * mvm_s)
    assert bound == pytest.approx(3829, rel=1e-3)
    assert 0.99 * bound <= a.tokens_per_s <= bound * (1 + 1e-3)


def test_moe_costs_its_active_parameters_on_the_chip():
    mix = zoo.get("mixtral-8x7b")
    dense = gpu.active_dense_equivalent(mix)
    halves = mix.replace(name="mixtral-8x7b-two-halves", n_experts=2, top_k=2)
    m, d, h = (gpu_comparison.aimc_point(x, 64, 1) for x in (mix, dense, halves))
    # the same MVMs per token: the same dynamic energy to within 1 %
    assert viz_gpu.dynamic_energy_per_token_j(m) == pytest.approx(
        viz_gpu.dynamic_energy_per_token_j(d), rel=0.01)
    # the MoE's edge at batch 1 is the FFN cut in two branches, not routing
    assert m.tpot_s < 0.85 * d.tpot_s
    assert h.tpot_s == pytest.approx(m.tpot_s, rel=0.03)
    # and it pays for its idle experts in tiles: 3.6x the parameters
    assert m.n_tiles / d.n_tiles == pytest.approx(mix.total_params / dense.total_params, rel=0.05)


def test_chapter_7_slider_frames_are_the_operating_points_figure():
    """The static slider's default frame is the chapter's headline figure; another frame is the
    figure at that point (a different weight format changes it)."""
    from aimoe_lib.viz import gpu as vg
    from aimoe_lib.viz.static import png_bytes
    s = vg.operating_points_slider(precisions=("fp8", "int4"), targets_ms=(50.0,),
                                   presets=("physical",))
    assert s.shape == (2, 1, 1)
    assert s._repr_png_() == png_bytes(vg.operating_points(precision="fp8", preset="physical"))
    int4 = png_bytes(vg.operating_points(precision="int4", preset="physical"))
    assert s.frame(precision="int4", tpot_target_ms=50.0, preset="physical") == int4 != s._repr_png_()
