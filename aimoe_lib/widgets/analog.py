"""The panel of chapter 8: re-evaluate a shipped model live on noisy analog tiles.

:func:`~aimoe_lib.widgets_analog.analog_panel` offers the shipped checkpoints
(``data/analog/ckpt_<model>_<fp|hwa>.npz``), the noise (Gaussian weight noise and its level, or
the PCM model and the time since programming, with or without drift compensation) and which
parts run on analog tiles; every change
re-evaluates the model on a few test windows over a few noise seeds
(:func:`~aimoe_lib.widgets_analog.live_evaluate`) and redraws
:func:`aimoe_lib.viz_analog.live_figure`.

Importing this module does not import torch: the first evaluation does (a second or two), and
the loaded models are kept for the next ones.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import ipywidgets as w

from ..viz import analog as viz_analog
from ..analog.config import PARTS

__all__ = ["analog_panel", "live_evaluate", "shipped_models", "PANEL_TIMES_S"]

_DATA = Path(__file__).resolve().parents[1] / "data" / "analog"
_STYLE = {"description_width": "initial"}
_LAYOUT = w.Layout(width="420px")

PANEL_TIMES_S = {"1 s": 1.0, "1 min": 60.0, "1 h": 3600.0, "1 day": 86400.0,
                 "1 week": 7 * 86400.0, "30 days": 30 * 86400.0, "1 year": 365 * 86400.0,
                 "10 years": 3650 * 86400.0}
"""Times since programming offered by the panel."""


def shipped_models() -> list[str]:
    """Models whose FP and HWA checkpoints are shipped in ``data/analog``."""
    return [m for m in viz_analog.MODEL_NAMES
            if all((_DATA / f"ckpt_{m}_{t}.npz").exists() for t in viz_analog.TRAININGS)]


@lru_cache(maxsize=8)
def _evaluator(model: str, training: str, n_windows: int):
    from ..analog import checkpoint, corpus
    from ..analog.evaluate import NoisyEvaluator

    net, ranges, _ = checkpoint.load(_DATA / f"ckpt_{model}_{training}.npz")
    windows = corpus.eval_windows(corpus.load_corpus().test, n_windows, net.cfg.context)
    return NoisyEvaluator(net, ranges, windows)


def live_evaluate(model: str = "moe-4", training: str = "hwa", analog=PARTS,
                  noise: str = "pcm", noise_pct: float = 6.0, t_s: float = 86400.0,
                  compensate: bool = True, n_seeds: int = 3, n_windows: int = 32) -> dict:
    """Re-evaluate a shipped checkpoint: perplexity over ``n_seeds`` noise seeds on
    ``n_windows`` test windows with the parts in ``analog`` on analog tiles and ``noise``
    ('gaussian' at ``noise_pct`` % of each row's largest ``abs(W)``, or 'pcm' at ``t_s``
    seconds after programming). Returns the dict :func:`aimoe_lib.viz_analog.live_figure` draws,
    with the digital perplexity of this model, its noise-free analog perplexity (``clean_ppl``,
    same parts and converters) and the digital perplexity of the FP-trained model of the same
    architecture (``reference_ppl``), all on the same windows."""
    from ..analog.pcm import GaussianNoise, PCMNoise, time_label

    if noise not in ("gaussian", "pcm"):
        raise ValueError(f"noise={noise!r}: choose 'gaussian' or 'pcm'")
    if model not in shipped_models():
        raise ValueError(f"model={model!r}: no shipped checkpoints; choose from "
                         f"{', '.join(shipped_models())}")
    ev = _evaluator(model, training, int(n_windows))
    parts = ev.parts(analog=analog)
    if noise == "gaussian":
        nm = GaussianNoise(noise_pct / 100.0)
        label = f"Gaussian {noise_pct:g}%"
    else:
        nm = PCMNoise(t_s, compensate=compensate)
        label = f"PCM, {time_label(t_s)}" + ("" if compensate else ", no compensation")
    out = ev.run(nm if parts else None, analog=parts, seeds=range(int(n_seeds)))
    clean = ev.run(None, analog=parts, seeds=range(1)).ppl[0]
    reference = _evaluator(model, "fp", int(n_windows)).digital_ppl
    return {"model": model, "training": training, "analog": list(parts), "label": label,
            "ppl": list(out.ppl), "digital_ppl": ev.digital_ppl, "reference_ppl": reference,
            "clean_ppl": clean,
            "route_changed": None if out.route_changed is None else list(out.route_changed)}


def analog_panel(model: str = "moe-4", training: str = "hwa", noise: str = "pcm",
                 noise_pct: float = 6.0, time: str = "1 day", compensate: bool = True,
                 n_seeds: int = 3) -> w.interactive:
    """Sliders over :func:`~aimoe_lib.widgets_analog.live_evaluate`: model, training, noise kind
    and level, time since programming, drift compensation, and one checkbox per part (router
    ignored for the dense model). Redraws when a control is released."""
    def show(model, training, noise, noise_pct, time, compensate, attention, router, ffn,
             lm_head):
        chosen = {"attention": attention, "router": router, "ffn": ffn, "lm_head": lm_head}
        live = live_evaluate(model, training, tuple(p for p in PARTS if chosen[p]), noise,
                             noise_pct, PANEL_TIMES_S[time], compensate, n_seeds)
        return viz_analog.live_figure(live)

    def box(part):
        return w.Checkbox(value=True, description=f"{part} analog", style=_STYLE)

    return w.interactive(
        show,
        model=w.Dropdown(value=model, options=shipped_models(), description="model",
                         style=_STYLE),
        training=w.ToggleButtons(value=training, options=[("FP", "fp"), ("HWA", "hwa")],
                                 description="training", style=_STYLE),
        noise=w.ToggleButtons(value=noise, options=[("Gaussian", "gaussian"), ("PCM", "pcm")],
                              description="noise", style=_STYLE),
        noise_pct=w.FloatSlider(value=noise_pct, min=0.0, max=15.0, step=1.0,
                                description="Gaussian noise (% of row max)",
                                continuous_update=False, style=_STYLE, layout=_LAYOUT),
        time=w.SelectionSlider(value=time, options=list(PANEL_TIMES_S),
                               description="PCM: time since programming",
                               continuous_update=False, style=_STYLE, layout=_LAYOUT),
        compensate=w.Checkbox(value=compensate, description="global drift compensation",
                              style=_STYLE),
        attention=box("attention"), router=box("router"), ffn=box("ffn"),
        lm_head=box("lm_head"),
    )
