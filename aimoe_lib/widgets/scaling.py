"""ipywidgets panels of chapters 5 (dense vs MoE scaling) and 9 (design-space playground), built
from :mod:`aimoe_lib.widgets.controls`.

Both recompute live: each change runs :func:`~aimoe_lib.sweep.run_point` on small configurations
(well under a second for the defaults) and redraws. Panels are returned, not displayed; the last
line of a notebook cell shows them. In the static HTML book they have no kernel behind them, so
the chapters show the default figure in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import Markdown, display

from .. import design_space, experiments, hardware, sweep
from ..mapping import STRATEGIES
from ..viz import scaling as viz_scaling
from .controls import (
    STYLE,
    WIDTH,
    checkbox,
    choice_slider,
    dropdown,
    error_message,
    float_slider,
    int_slider,
    showing_errors,
    toggle,
)

__all__ = ["scaling_panel", "playground_panel", "point_from_controls", "PLAYGROUND_STRATEGIES",
           "PLAYGROUND_CHIPS", "SCALING_PRESETS"]

PLAYGROUND_STRATEGIES = tuple(s for s in STRATEGIES if s != "coactivation")
"""Strategies offered by :func:`playground_panel` (``coactivation`` needs a co-activation
density, which chapter 6 builds)."""
SCALING_PRESETS = tuple(dict.fromkeys((experiments.PRESET, "paper")))
"""Chip presets offered by :func:`scaling_panel`: the book's first, then ``paper`` (the earlier
constants, 1 W per digital unit)."""
PLAYGROUND_CHIPS = ("physical", "paper", "3dsim", "hermes")
"""Chip presets offered by :func:`playground_panel` (costs, area model and units; the tiers and
tiles come from the panel)."""


# ============================================================================ chapter 5
def scaling_panel(n_experts: int = 64, batch: int = 8, gen_len: int = 8, chip: str = "3d",
                  tiles_factor: float = 1.0, strategy: str = "in_order",
                  preset: str = experiments.PRESET) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.scaling.live_comparison`: experts E (the dense models
    follow its total), batch (at most 32), generated tokens (at most 8), 3D or 2D chip, tiles
    (x 702, tiers follow), the MoE's mapping strategy and the chip preset (``SCALING_PRESETS``:
    the book's, and ``paper`` to reproduce the earlier constants). Every change simulates the
    three models again; a model that does not map shows its error message instead of the
    figure."""
    def show(n_experts, batch, gen_len, chip, tiles_factor, strategy, preset):
        return viz_scaling.live_comparison(n_experts=n_experts, batch=batch, gen_len=gen_len,
                                           chip=chip, tiles_factor=tiles_factor,
                                           strategy=strategy, preset=preset)

    return w.interactive(
        showing_errors(show),
        n_experts=choice_slider(n_experts, (2, 4, 8, 16, 32, 64), "experts E (dense: same total)"),
        batch=choice_slider(batch, (1, 2, 4, 8, 16, 32), "batch (sequences)"),
        gen_len=int_slider(gen_len, 1, 8, "generated tokens"),
        chip=toggle(chip, [("3D", "3d"), ("2D", "2d")], "chip"),
        tiles_factor=choice_slider(tiles_factor, (0.5, 1.0, 2.0, 4.0),
                                   "tiles (x 702; tiers follow)"),
        strategy=dropdown(strategy, ("in_order", "balanced", "moe_stacked"), "MoE mapping"),
        preset=dropdown(preset, SCALING_PRESETS, "chip preset (costs)"),
    )


# ============================================================================ chapter 9
def _playground_controls() -> dict:
    """The playground's controls, at the book's preset (:data:`aimoe_lib.experiments.PRESET`);
    choosing another chip preset moves the passive-power sliders to that preset's values, so
    that an untouched slider never carries one preset's constant into another."""
    book = hardware.preset(experiments.PRESET).cost
    models = list(design_space.model_names()) + ["custom"]
    c = {
        # model
        "model": dropdown("moe-8e-top1", models, "model"),
        "d_model": choice_slider(1024, [256 * i for i in range(1, 17)], "custom: d_model"),
        "n_layers": int_slider(12, 1, 48, "custom: layers"),
        "n_heads": choice_slider(16, (4, 8, 16, 32), "custom: heads"),
        "d_ff": choice_slider(4096, [512 * i for i in range(1, 33)], "custom: FFN / expert width"),
        "n_experts": choice_slider(8, (0, 2, 4, 8, 16, 32, 64, 128), "custom: experts (0 = dense)"),
        "top_k": int_slider(1, 1, 8, "custom: top-k"),
        # chip
        "chip": dropdown(experiments.PRESET, PLAYGROUND_CHIPS, "chip preset (costs, area)"),
        "n_tiers": choice_slider(8, [2 ** i for i in range(11)], "tiers per tile"),
        "n_tiles": w.BoundedIntText(value=0, min=0, max=10_000_000, description="tiles (0 = fit)",
                                    style=STYLE, layout=w.Layout(width=WIDTH)),
        "tier_size": choice_slider(512, (128, 256, 512, 1024), "tier rows = columns"),
        "provision": checkbox(True, "digital units per layer (24 DPU + 8 MHA)"),
        # costs
        "mvm_latency_x": float_slider(1.0, 0.1, 10.0, 0.1, "MVM latency (x preset)"),
        "mvm_energy_x": float_slider(1.0, 0.1, 10.0, 0.1, "MVM energy (x preset)"),
        "unit_passive_power_w": float_slider(book.unit_passive_power_w, 0.0, 1.0, 0.00001,
                                       "passive power per DPU / MHA unit (W)", ".5f"),
        "tile_passive_power_w": float_slider(book.tile_passive_power_w, 0.0, 0.05, 0.001,
                                       "passive power per tile (W)", ".3f"),
        # mapping and workload
        "strategy": dropdown("in_order", PLAYGROUND_STRATEGIES, "mapping strategy"),
        "digital": w.SelectMultiple(value=(), options=["router", "attention", "lm_head"],
                                    description="also digital", style=STYLE,
                                    layout=w.Layout(width=WIDTH, height="70px")),
        "batch": choice_slider(8, (1, 2, 4, 8, 16, 32, 64), "batch (sequences)"),
        "prompt_len": int_slider(4, 1, 16, "prompt tokens"),
        "gen_len": int_slider(8, 1, 8, "generated tokens"),
        "kv_cache": checkbox(True, "KV cache"),
        "zipf_s": float_slider(0.0, 0.0, 2.0, 0.25, "routing skew (Zipf s; 0 = uniform)"),
        "seed": int_slider(0, 0, 9, "routing seed"),
    }

    def follow_preset(change):
        cost = hardware.preset(change["new"]).cost
        for k in ("unit_passive_power_w", "tile_passive_power_w"):
            c[k].value = getattr(cost, k)

    c["chip"].observe(follow_preset, names="value")
    return c


def point_from_controls(values: dict):
    """The :class:`~aimoe_lib.sweep.Point` of the playground's control values (a dict of the
    names of :func:`playground_panel`'s controls)."""
    v = dict(values)
    if v["model"] == "custom":
        model = design_space.custom_model(v["d_model"], v["n_layers"], v["n_heads"], v["d_ff"],
                                          v["n_experts"], v["top_k"])
    else:
        model = v["model"]
    base = hardware.preset(v["chip"]).cost
    over = {}
    if v["mvm_latency_x"] != 1.0:
        over["mvm_latency_ns"] = base.mvm_latency_ns * v["mvm_latency_x"]
    if v["mvm_energy_x"] != 1.0:
        # a full tier's MVM energy (build_point keeps the preset's split of it)
        over["mvm_energy_pj"] = (base.mvm(v["tier_size"], v["tier_size"]).energy_pj
                                 * v["mvm_energy_x"])
    for k in ("unit_passive_power_w", "tile_passive_power_w"):
        if v[k] != getattr(base, k):
            over[k] = v[k]
    return design_space.build_point(
        model, chip=v["chip"], n_tiers=v["n_tiers"], n_tiles=v["n_tiles"] or None,
        tier_size=v["tier_size"], provision=v["provision"], strategy=v["strategy"],
        digital=("embedding",) + tuple(v["digital"]), batch=v["batch"],
        prompt_len=v["prompt_len"], gen_len=v["gen_len"], kv_cache=v["kv_cache"],
        zipf_s=v["zipf_s"], seed=v["seed"], **over)


def playground_panel(rows: list[dict] | None = None) -> w.VBox:
    """Every knob on one panel: model (preset or custom sizes), chip preset, tiers and tiles, tier
    shape, digital units, cost overrides, mapping strategy, digital parts and workload. Each
    change builds the point (:func:`point_from_controls`), runs it and shows
    :func:`~aimoe_lib.design_space.format_result`, the point as a star over the shipped design
    space at the nearest batch (``rows``, default :func:`~aimoe_lib.design_space.load`) and the
    configuration as Python (:func:`~aimoe_lib.design_space.to_python`)."""
    rows = design_space.load() if rows is None else rows
    batches = sorted({r["batch"] for r in rows})
    c = _playground_controls()

    def show(**values):
        try:
            point = point_from_controls(values)
            row = sweep.run_point(point)
        except ValueError as err:
            display(error_message(err))
            return
        print(design_space.format_result(row))
        b = min(batches, key=lambda x: abs(x - values["batch"]))
        ref = [r for r in rows if r["batch"] == b]
        front = design_space.pareto_front(ref, design_space.CAPACITY_OBJECTIVES)
        display(viz_scaling.pareto_figure(
            ref, front, highlight=None if row["error"] else row,
            title=f"Your configuration (star) over the shipped design space at batch {b}",
            objectives=design_space.CAPACITY_OBJECTIVES))
        display(Markdown("**As Python** (paste it into a cell):\n\n```python\n"
                         + design_space.to_python(point) + "```"))

    out = w.interactive_output(show, c)
    tabs = w.Tab(children=[
        w.VBox([c[k] for k in ("model", "d_model", "n_layers", "n_heads", "d_ff", "n_experts",
                               "top_k")]),
        w.VBox([c[k] for k in ("chip", "n_tiers", "n_tiles", "tier_size", "provision")]),
        w.VBox([c[k] for k in ("mvm_latency_x", "mvm_energy_x", "unit_passive_power_w",
                               "tile_passive_power_w")]),
        w.VBox([c[k] for k in ("strategy", "digital", "batch", "prompt_len", "gen_len",
                               "kv_cache", "zipf_s", "seed")]),
    ])
    for i, title in enumerate(("model", "chip", "costs", "mapping & workload")):
        tabs.set_title(i, title)
    return w.VBox([tabs, out])
