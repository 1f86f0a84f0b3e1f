"""The ipywidgets panel of chapter 1 (the 3D AIMC tile): sliders over
:func:`~aimoe_lib.viz.tile.tile_capacity_area`.

The panel is an ``ipywidgets.interactive`` returned, not displayed (the last line of a notebook
cell shows it), built from the controls of :mod:`aimoe_lib.widgets.controls`. The static HTML book
has no kernel behind these sliders and shows a "run this live" note instead; its readers move the
precomputed sliders of :func:`~aimoe_lib.viz.tile.tile_capacity_area_slider` at the top of the
chapter.
"""

from __future__ import annotations

import ipywidgets as w

from ..hardware import AreaModel
from ..viz import tile as viz_tile
from .controls import choice_slider, float_slider, int_slider, showing_errors

__all__ = ["tile_panel"]

TIER_SHAPES = (128, 256, 512, 1024)
"""Tier rows and columns offered, cells."""


def tile_panel(n_tiles: int = 100, n_tiers_max: int = 1024, tier_rows: int = 512,
               tier_cols: int = 512, tier_overhead_fraction: float | None = None) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.viz.tile.tile_capacity_area`: tiles, largest tier count,
    tier shape (rows and columns, cells) and the area each extra tier adds as a fraction of one
    tier's array (assumption A-TIER-OVERHEAD, default from
    :class:`~aimoe_lib.hardware.AreaModel`)."""
    overhead = (AreaModel().tier_overhead_fraction if tier_overhead_fraction is None
                else tier_overhead_fraction)

    @showing_errors
    def show(n_tiles, n_tiers_max, tier_rows, tier_cols, tier_overhead_fraction):
        return viz_tile.tile_capacity_area(
            n_tiles, n_tiers_max, tier_rows, tier_cols,
            area=AreaModel(tier_overhead_fraction=tier_overhead_fraction))

    return w.interactive(
        show,
        n_tiles=int_slider(n_tiles, 1, 1000, "tiles"),
        n_tiers_max=choice_slider(n_tiers_max, [2**i for i in range(13)], "max tiers per tile"),
        tier_rows=choice_slider(tier_rows, TIER_SHAPES, "tier rows"),
        tier_cols=choice_slider(tier_cols, TIER_SHAPES, "tier columns"),
        tier_overhead_fraction=float_slider(overhead, 0.0, 0.5, 0.01,
                                            "area per extra tier (x one array)"),
    )
