"""The ipywidgets panel of chapter 2 (mixture of experts): sliders over
:func:`~aimoe_lib.viz.moe.moe_scaling`.

The panel is an ``ipywidgets.interactive`` returned, not displayed, built from the controls of
:mod:`aimoe_lib.widgets.controls`. The static HTML book shows a "run this live" note in its place;
its readers move the precomputed sliders of :func:`~aimoe_lib.viz.moe.moe_scaling_slider`.
"""

from __future__ import annotations

import ipywidgets as w

from ..viz import moe as viz_moe
from .controls import choice_slider, int_slider, showing_errors

__all__ = ["moe_panel"]

WIDTHS = tuple(256 * i for i in range(1, 33))
"""Model and expert widths offered (256 to 8192 features)."""


def moe_panel(d_model: int = 1024, n_layers: int = 12, d_expert: int = 4096, top_k: int = 2,
              max_experts: int = 64) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.moe.moe_scaling`: width (features), depth (layers),
    expert width (features), top-k and the largest number of experts E (k above E is capped at
    E)."""
    @showing_errors
    def show(d_model, n_layers, d_expert, top_k, max_experts):
        return viz_moe.moe_scaling(d_model=d_model, n_layers=n_layers, d_expert=d_expert,
                                   top_k=min(top_k, max_experts), max_experts=max_experts)

    return w.interactive(
        show,
        d_model=choice_slider(d_model, WIDTHS, "d_model"),
        n_layers=int_slider(n_layers, 1, 96, "layers"),
        d_expert=choice_slider(d_expert, WIDTHS, "expert width d_expert"),
        top_k=int_slider(top_k, 1, 16, "top-k"),
        max_experts=choice_slider(max_experts, [2**i for i in range(11)], "max experts E"),
    )
