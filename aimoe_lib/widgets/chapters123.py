"""ipywidgets panels the notebooks share: sliders over the figure functions of :mod:`aimoe_lib.viz`.

Each panel is an ``ipywidgets.interactive`` over one viz function and is returned, not displayed:
the last line of a notebook cell shows it. Sliders redraw only when released
(``continuous_update=False``). In the static HTML book the sliders have no kernel behind them;
the chapters show the default figure in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import Markdown

from .. import zoo

from ..viz import chapters123 as viz
from ..hardware import AreaModel
from ..mapping import STRATEGIES, MappingError, map_model

__all__ = ["tile_panel", "moe_panel", "mapping_panel", "MAPPING_PANEL_MODELS"]

_STYLE = {"description_width": "initial"}
_LAYOUT = w.Layout(width="420px")


def _int(value: int, lo: int, hi: int, step: int, label: str) -> w.IntSlider:
    return w.IntSlider(value=value, min=lo, max=hi, step=step, description=label,
                       continuous_update=False, style=_STYLE, layout=_LAYOUT)


def _choice(value: int, options, label: str) -> w.SelectionSlider:
    return w.SelectionSlider(value=value, options=list(options), description=label,
                             continuous_update=False, style=_STYLE, layout=_LAYOUT)


def tile_panel(n_tiles: int = 100, n_tiers_max: int = 1024, tier_rows: int = 512,
               tier_cols: int = 512, tier_overhead_fraction: float | None = None) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.tile_capacity_area`: tiles, tiers, tier shape and the per-tier area
    overhead (assumption A-TIER-OVERHEAD, default from :class:`~aimoe_lib.hardware.AreaModel`)."""
    overhead = (AreaModel().tier_overhead_fraction if tier_overhead_fraction is None
                else tier_overhead_fraction)

    def show(n_tiles, n_tiers_max, tier_rows, tier_cols, tier_overhead_fraction):
        area = AreaModel(tier_overhead_fraction=tier_overhead_fraction)
        return viz.tile_capacity_area(n_tiles, n_tiers_max, tier_rows, tier_cols, area=area)

    shapes = (128, 256, 512, 1024)
    return w.interactive(
        show,
        n_tiles=_int(n_tiles, 1, 1000, 1, "tiles"),
        n_tiers_max=_choice(n_tiers_max, [2**i for i in range(13)], "max tiers per tile"),
        tier_rows=_choice(tier_rows, shapes, "tier rows"),
        tier_cols=_choice(tier_cols, shapes, "tier columns"),
        tier_overhead_fraction=w.FloatSlider(
            value=overhead, min=0.0, max=0.5, step=0.01, readout_format=".2f",
            description="area per extra tier (x one array)", continuous_update=False,
            style=_STYLE, layout=_LAYOUT),
    )


def moe_panel(d_model: int = 1024, n_layers: int = 12, d_expert: int = 4096, top_k: int = 2,
              max_experts: int = 64) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.moe_scaling`: width, depth, expert width, k and the largest E."""
    def show(d_model, n_layers, d_expert, top_k, max_experts):
        return viz.moe_scaling(d_model=d_model, n_layers=n_layers, d_expert=d_expert,
                               top_k=min(top_k, max_experts), max_experts=max_experts)

    widths = [256 * i for i in range(1, 33)]
    return w.interactive(
        show,
        d_model=_choice(d_model, widths, "d_model"),
        n_layers=_int(n_layers, 1, 96, 1, "layers"),
        d_expert=_choice(d_expert, widths, "expert width d_expert"),
        top_k=_int(top_k, 1, 16, 1, "top-k"),
        max_experts=_choice(max_experts, [2**i for i in range(11)], "max experts E"),
    )


MAPPING_PANEL_MODELS = ("small-moe", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b",
                        "llama-2-7b")
"""Models offered by :func:`mapping_panel`: chapter 3's small MoE
(:func:`~aimoe_lib.viz.example_moe`) and zoo models that map in well under a second."""


def mapping_panel(model: str = "small-moe", strategy: str = "in_order", n_tiers: int = 16,
                  tier_size: int = 512, color_by: str = "layer") -> w.interactive:
    """Dropdowns and sliders over :func:`~aimoe_lib.viz.occupancy_map`: model, mapping strategy,
    tiers per tile, tier shape (square, 256 / 512 / 1024) and what the tiers are coloured by.

    The chip is :func:`~aimoe_lib.viz.fitting_chip`: just enough tiles of ``n_tiers`` tiers for
    the model's blocks. ``coactivation`` plans with the co-activation of Zipf-skewed routing
    (:func:`~aimoe_lib.viz.coactivation_from_probs` of :func:`~aimoe_lib.viz.zipf_probs`). When a
    strategy cannot map the model (``moe_stacked`` needs free slabs of tiers; expert strategies
    need experts) the panel shows the error message instead of a figure.
    """
    def show(model, strategy, n_tiers, tier_size, color_by):
        spec = viz.example_moe() if model == "small-moe" else zoo.get(model)
        chip = viz.fitting_chip(spec, n_tiers, tier_size, tier_size)
        coact = None
        if strategy == "coactivation" and spec.is_moe:
            coact = viz.coactivation_from_probs(viz.zipf_probs(spec.n_experts))
        try:
            m = map_model(spec, chip, strategy, coactivation=coact)
        except (MappingError, ValueError) as err:
            return Markdown(f"**{type(err).__name__}** on {chip.n_tiles:,} tiles x "
                            f"{chip.n_tiers:,} tiers: {err}")
        return viz.occupancy_map(m, color_by)

    return w.interactive(
        show,
        model=w.Dropdown(value=model, options=list(MAPPING_PANEL_MODELS), description="model",
                         style=_STYLE, layout=_LAYOUT),
        strategy=w.Dropdown(value=strategy, options=list(STRATEGIES), description="strategy",
                            style=_STYLE, layout=_LAYOUT),
        n_tiers=_choice(n_tiers, [2**i for i in range(11)], "tiers per tile"),
        tier_size=_choice(tier_size, (256, 512, 1024), "tier rows = columns"),
        color_by=w.ToggleButtons(value=color_by, options=list(viz.OCCUPANCY_COLOR_BY),
                                 description="colour by", style=_STYLE),
    )
