"""The ipywidgets panel of chapter 6: Zipf skew, mapping strategy, tiles and batch over
:func:`~aimoe_lib.viz.routing.routing_dashboard`.

Like every panel of :mod:`aimoe_lib.widgets`, it is an ``ipywidgets.interactive`` returned, not
displayed, built from :mod:`aimoe_lib.widgets.controls`. One redraw maps the small MoE and
simulates it twice (the chosen batch and batch 1), well under a second.
"""

from __future__ import annotations

import ipywidgets as w

from ..mapping import STRATEGIES, MappingError
from ..viz import routing as viz_routing
from .controls import choice_slider, dropdown, showing_errors

__all__ = ["routing_panel", "ZIPF_OPTIONS", "TILES_OPTIONS", "BATCH_OPTIONS"]

ZIPF_OPTIONS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
"""Zipf exponents offered by the skew slider."""
TILES_OPTIONS = (0.5, 1.0, 2.0, 4.0)
"""Tile-count multipliers offered (1 = as many tiles as the dense base model has blocks)."""
BATCH_OPTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Batch sizes offered."""


def routing_panel(zipf_s: float = 1.0, strategy: str = "in_order", tiles_multiplier: float = 1.0,
                  batch: int = 64) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.routing.routing_dashboard` for the small MoE of
    :func:`~aimoe_lib.teaching.routing_moe`: Zipf exponent of the routing, mapping strategy
    (``coactivation`` plans from the routing's measured co-activation density), tiles as a
    multiple of the base chip's, and batch. A mapping that does not fit shows its error message
    instead of a figure."""
    def show(zipf_s, strategy, tiles_multiplier, batch):
        return viz_routing.routing_dashboard(zipf_s, strategy, tiles_multiplier, batch)

    return w.interactive(
        showing_errors(show, (MappingError, ValueError)),
        zipf_s=choice_slider(zipf_s, ZIPF_OPTIONS, "Zipf skew s"),
        strategy=dropdown(strategy, STRATEGIES, "strategy"),
        tiles_multiplier=choice_slider(tiles_multiplier, TILES_OPTIONS, "tiles (x base chip)"),
        batch=choice_slider(batch, BATCH_OPTIONS, "batch (sequences)"),
    )
