"""The ipywidgets panel of chapter 3 (mapping): model, strategy and chip shape over
:func:`~aimoe_lib.viz.mapping.occupancy_map`.

The panel is an ``ipywidgets.interactive`` returned, not displayed, built from the controls of
:mod:`aimoe_lib.widgets.controls`; the chapter shows the default figures in cells of their own.
"""

from __future__ import annotations

import ipywidgets as w

from ..experiments import fitted_mapping
from ..mapping import STRATEGIES
from ..viz import mapping as viz_mapping
from .controls import choice_slider, dropdown, showing_errors

__all__ = ["mapping_panel", "MAPPING_PANEL_MODELS"]

MAPPING_PANEL_MODELS = ("small-moe", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b",
                        "llama-2-7b")
"""Models offered by :func:`mapping_panel`: chapter 3's small MoE
(:func:`~aimoe_lib.teaching.mapping_moe`) and zoo models that map in well under a second."""


def mapping_panel(model: str = "small-moe", strategy: str = "in_order", n_tiers: int = 16,
                  tier_size: int = 512, color_by: str = "layer") -> w.interactive:
    """Drop-downs and sliders over :func:`~aimoe_lib.viz.mapping.occupancy_map`: model, mapping
    strategy, tiers per tile, tier shape (square, 256 / 512 / 1024 cells a side) and what the
    tiers are coloured by.

    The mapping is :func:`~aimoe_lib.experiments.fitted_mapping`: just enough tiles of
    ``n_tiers`` tiers for the model's blocks; ``coactivation`` plans with the co-activation of
    Zipf-skewed routing (exponent :data:`~aimoe_lib.experiments.ZIPF_S`). When a
    strategy cannot map the model (``moe_stacked`` needs free slabs of tiers; expert strategies
    need experts) the panel shows the error message instead of a figure.
    """
    @showing_errors
    def show(model, strategy, n_tiers, tier_size, color_by):
        m = fitted_mapping(model, strategy, n_tiers, tier_size)
        return viz_mapping.occupancy_map(m, color_by)

    return w.interactive(
        show,
        model=dropdown(model, MAPPING_PANEL_MODELS, "model"),
        strategy=dropdown(strategy, STRATEGIES, "strategy"),
        n_tiers=choice_slider(n_tiers, [2**i for i in range(11)], "tiers per tile"),
        tier_size=choice_slider(tier_size, (256, 512, 1024), "tier rows = columns"),
        color_by=dropdown(color_by, viz_mapping.OCCUPANCY_COLOR_BY, "colour by"),
    )
