"""The widget panel of chapter 4: sliders over a simulated run of a small MoE.

:func:`~aimoe_lib.widgets_sim.simulation_panel` maps :func:`~aimoe_lib.viz_sim.small_moe` (or
another model) on a chip just large enough for it (:func:`~aimoe_lib.viz_sim.fitted_chip`),
simulates the workload the sliders describe and redraws :func:`~aimoe_lib.viz_sim.overview` (Gantt
chart, energy by kind, busy fractions). The panel is returned, not displayed; sliders redraw when
released. In the static HTML book it has no kernel behind it: the chapter shows its default figure
in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w
from IPython.display import Markdown

from ..viz import simulation as viz_sim
from ..mapping import STRATEGIES, MappingError, map_model
from ..models import ModelSpec
from ..routing import RoutingSpec
from ..simulator import Workload, simulate

__all__ = ["simulation_panel", "run_small"]

_STYLE = {"description_width": "initial"}
_LAYOUT = w.Layout(width="420px")


def run_small(model: ModelSpec | None = None, batch: int = 4, prompt_len: int = 4,
              gen_len: int = 4, n_tiers: int = 16, strategy: str = "in_order",
              zipf_s: float = 0.0, kv_placement: str = "sram", units: str = "per_layer",
              seed: int = 0):
    """Map ``model`` (default :func:`~aimoe_lib.viz_sim.small_moe`) with ``strategy`` on
    :func:`~aimoe_lib.viz_sim.fitted_chip` of ``n_tiers`` tiers and simulate ``batch`` sequences
    of ``prompt_len`` + ``gen_len`` tokens with the event log; routing is Zipf-skewed with exponent
    ``zipf_s`` (0 = uniform). Returns the :class:`~aimoe_lib.simulator.SimResult`; raises
    :class:`~aimoe_lib.mapping.MappingError` when the strategy cannot place the model."""
    model = viz_sim.small_moe() if model is None else model
    chip = viz_sim.fitted_chip(model, n_tiers, units=units, kv_placement=kv_placement)
    m = map_model(model, chip, strategy)
    routing = "uniform" if zipf_s == 0 else RoutingSpec(kind="zipf", zipf_s=float(zipf_s))
    wl = Workload(batch=batch, prompt_len=prompt_len, gen_len=gen_len, routing=routing,
                  seed=seed, record_events=True)
    return simulate(model, chip, m, wl)


def _int(value: int, lo: int, hi: int, label: str) -> w.IntSlider:
    return w.IntSlider(value=value, min=lo, max=hi, step=1, description=label,
                       continuous_update=False, style=_STYLE, layout=_LAYOUT)


def simulation_panel(batch: int = 4, prompt_len: int = 4, gen_len: int = 4, n_tiers: int = 16,
                     strategy: str = "in_order", zipf_s: float = 0.0, kv_placement: str = "sram",
                     units: str = "per_layer", color_by: str = "layer",
                     model: ModelSpec | None = None) -> w.interactive:
    """Sliders over a simulated run (:func:`~aimoe_lib.widgets_sim.run_small`) drawn by
    :func:`~aimoe_lib.viz_sim.overview`: sequences, prompt and generated tokens, tiers per tile,
    mapping strategy, routing skew (Zipf exponent, 0 = uniform), where the KV cache lives, how
    digital units are provisioned, and what the Gantt bars are coloured by. When the strategy
    cannot place the model (``moe_stacked`` needs free slabs of tiers), the panel shows the
    :class:`~aimoe_lib.mapping.MappingError` message instead of a figure."""
    def show(batch, prompt_len, gen_len, n_tiers, strategy, zipf_s, kv_placement, units,
             color_by):
        try:
            r = run_small(model, batch, prompt_len, gen_len, n_tiers, strategy, zipf_s,
                          kv_placement, units)
        except MappingError as err:
            return Markdown(f"**MappingError** ({strategy}, {n_tiers} tiers per tile): {err}")
        return viz_sim.overview(r, color_by=color_by)

    return w.interactive(
        show,
        batch=_int(batch, 1, 32, "sequences (batch)"),
        prompt_len=_int(prompt_len, 1, 64, "prompt tokens"),
        gen_len=_int(gen_len, 1, 32, "generated tokens"),
        n_tiers=w.SelectionSlider(value=n_tiers, options=[2**i for i in range(8)],
                                  description="tiers per tile", continuous_update=False,
                                  style=_STYLE, layout=_LAYOUT),
        strategy=w.Dropdown(value=strategy, options=[s for s in STRATEGIES if s != "coactivation"],
                            description="mapping strategy", style=_STYLE, layout=_LAYOUT),
        zipf_s=w.FloatSlider(value=zipf_s, min=0.0, max=3.0, step=0.1, readout_format=".1f",
                             description="routing skew (Zipf s, 0 = uniform)",
                             continuous_update=False, style=_STYLE, layout=_LAYOUT),
        kv_placement=w.ToggleButtons(value=kv_placement, options=["sram", "dram"],
                                     description="KV cache in", style=_STYLE),
        units=w.ToggleButtons(value=units, options=["per_layer", "pool"],
                              description="digital units", style=_STYLE),
        color_by=w.ToggleButtons(value=color_by, options=["layer", "op"],
                                 description="colour by", style=_STYLE),
    )
