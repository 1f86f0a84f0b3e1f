"""The panel of chapter 8: re-evaluate a shipped model live on noisy analog tiles.

:func:`~aimoe_lib.widgets.analog.analog_panel` offers the shipped checkpoints
(:func:`~aimoe_lib.analog.live.shipped_models`), the noise (Gaussian weight noise and its level, or
the PCM model and the time since programming, with or without drift compensation) and which parts
run on analog tiles; every change redraws :func:`~aimoe_lib.viz.analog.live_reevaluation`, which
re-evaluates the model on a few test windows over a few noise seeds.

Importing this module does not import torch: the first evaluation does (a second or two).
"""

from __future__ import annotations

import ipywidgets as w

from ..analog.config import PARTS
from ..analog.live import shipped_models
from ..viz import analog as viz_analog
from .controls import checkbox, choice_slider, dropdown, float_slider, toggle

__all__ = ["analog_panel", "PANEL_TIMES_S"]

PANEL_TIMES_S = {"1 s": 1.0, "1 min": 60.0, "1 h": 3600.0, "1 day": 86400.0,
                 "1 week": 7 * 86400.0, "30 days": 30 * 86400.0, "1 year": 365 * 86400.0,
                 "10 years": 3650 * 86400.0}
"""Times since programming offered by the panel."""


def analog_panel(model: str = "moe-4", training: str = "hwa", noise: str = "pcm",
                 noise_pct: float = 6.0, time: str = "1 day", compensate: bool = True,
                 n_seeds: int = 3) -> w.interactive:
    """Controls over :func:`~aimoe_lib.viz.analog.live_reevaluation`: model, training, noise kind
    and level, time since programming, drift compensation, and one checkbox per part (router
    ignored for the dense model). Redraws when a control is released."""
    def show(model, training, noise, noise_pct, time, compensate, attention, router, ffn,
             lm_head):
        chosen = {"attention": attention, "router": router, "ffn": ffn, "lm_head": lm_head}
        return viz_analog.live_reevaluation(
            model=model, training=training, analog=tuple(p for p in PARTS if chosen[p]),
            noise=noise, noise_pct=noise_pct, t_s=PANEL_TIMES_S[time], compensate=compensate,
            n_seeds=n_seeds)

    return w.interactive(
        show,
        model=dropdown(model, shipped_models(), "model"),
        training=toggle(training, [("FP", "fp"), ("HWA", "hwa")], "training"),
        noise=toggle(noise, [("Gaussian", "gaussian"), ("PCM", "pcm")], "noise"),
        noise_pct=float_slider(noise_pct, 0.0, 15.0, 1.0, "Gaussian noise (% of row max)"),
        time=choice_slider(time, PANEL_TIMES_S, "PCM: time since programming"),
        compensate=checkbox(compensate, "global drift compensation"),
        attention=checkbox(True, "attention analog"), router=checkbox(True, "router analog"),
        ffn=checkbox(True, "ffn analog"), lm_head=checkbox(True, "lm_head analog"),
    )
