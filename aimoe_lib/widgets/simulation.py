"""The widget panel of chapter 4: sliders over a simulated run of a small MoE.

:func:`simulation_panel` runs :func:`~aimoe_lib.experiments.small_run` (the small MoE of
:func:`~aimoe_lib.teaching.simulation_moe`, or another model, on a chip of the book's preset,
:data:`~aimoe_lib.experiments.PRESET`, just large enough for it) with the workload the sliders
describe and redraws :func:`~aimoe_lib.viz.simulation.overview`
(Gantt chart, energy by kind, busy fractions). The panel is returned, not displayed; sliders
redraw when released. In the static HTML book it has no kernel behind it: the chapter shows its
default figure in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w

from ..experiments import small_run
from ..mapping import STRATEGIES, MappingError
from ..models import ModelSpec
from ..viz import simulation as vsim
from .controls import choice_slider, dropdown, error_message, float_slider, int_slider, toggle

__all__ = ["simulation_panel"]


def simulation_panel(batch: int = 4, prompt_len: int = 4, gen_len: int = 4, n_tiers: int = 16,
                     strategy: str = "in_order", zipf_s: float = 0.0, kv_placement: str = "sram",
                     units: str = "per_layer", color_by: str = "layer",
                     model: ModelSpec | None = None) -> w.interactive:
    """Sliders over a simulated run (:func:`~aimoe_lib.experiments.small_run`) drawn by
    :func:`~aimoe_lib.viz.simulation.overview`: sequences, prompt and generated tokens, tiers per
    tile, mapping strategy, routing skew (Zipf exponent, 0 = uniform), where the KV cache lives,
    how digital units are provisioned, and what the Gantt bars are coloured by. When the strategy
    cannot place the model (``moe_stacked`` needs free slabs of tiers), the panel shows the
    :class:`~aimoe_lib.mapping.MappingError` message instead of a figure."""
    def show(batch, prompt_len, gen_len, n_tiers, strategy, zipf_s, kv_placement, units,
             color_by):
        try:
            r = small_run(model, batch, prompt_len, gen_len, n_tiers, strategy, zipf_s,
                          kv_placement, units)
        except MappingError as err:
            return error_message(err, f"{strategy}, {n_tiers} tiers per tile")
        return vsim.overview(r, color_by=color_by)

    return w.interactive(
        show,
        batch=int_slider(batch, 1, 32, "sequences (batch)"),
        prompt_len=int_slider(prompt_len, 1, 64, "prompt tokens"),
        gen_len=int_slider(gen_len, 1, 32, "generated tokens"),
        n_tiers=choice_slider(n_tiers, [2**i for i in range(8)], "tiers per tile"),
        strategy=dropdown(strategy, [s for s in STRATEGIES if s != "coactivation"],
                          "mapping strategy"),
        zipf_s=float_slider(zipf_s, 0.0, 3.0, 0.1, "routing skew (Zipf s, 0 = uniform)",
                            readout_format=".1f"),
        kv_placement=toggle(kv_placement, ["sram", "dram"], "KV cache in"),
        units=toggle(units, ["per_layer", "pool"], "digital units"),
        color_by=toggle(color_by, ["layer", "op"], "colour by"),
    )
