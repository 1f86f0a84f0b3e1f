"""Re-evaluate a shipped checkpoint live on noisy analog tiles (the panel of chapter 8).

:func:`live_evaluate` loads a shipped checkpoint (``data/analog/ckpt_<model>_<fp|hwa>.npz``, read
with :func:`~aimoe_lib.shipped.data_path`), draws the chosen noise over a few seeds and returns the
perplexities that :func:`~aimoe_lib.viz.analog.live_figure` draws. Importing this module does not
import torch: the first evaluation does (a second or two), and the loaded models are kept for the
next ones.
"""

from __future__ import annotations

from functools import lru_cache

from ..shipped import data_path
from .config import PARTS

__all__ = ["MODEL_NAMES", "TRAININGS", "shipped_models", "live_evaluate"]

MODEL_NAMES = ("dense", "moe-4", "moe-16")
"""The models of chapter 8's study."""
TRAININGS = ("fp", "hwa")
"""Floating-point and hardware-aware training."""


def _checkpoint(model: str, training: str):
    return data_path("analog", f"ckpt_{model}_{training}.npz")


def _shipped(model: str, training: str) -> bool:
    try:
        _checkpoint(model, training)
    except FileNotFoundError:
        return False
    return True


def shipped_models() -> list[str]:
    """Models whose FP and HWA checkpoints are shipped in ``data/analog``."""
    return [m for m in MODEL_NAMES if all(_shipped(m, t) for t in TRAININGS)]


@lru_cache(maxsize=8)
def _evaluator(model: str, training: str, n_windows: int):
    from . import checkpoint, corpus
    from .evaluate import NoisyEvaluator

    net, ranges, _ = checkpoint.load(_checkpoint(model, training))
    windows = corpus.eval_windows(corpus.load_corpus().test, n_windows, net.cfg.context)
    return NoisyEvaluator(net, ranges, windows)


def live_evaluate(model: str = "moe-4", training: str = "hwa", analog=PARTS,
                  noise: str = "pcm", noise_pct: float = 6.0, t_s: float = 86400.0,
                  compensate: bool = True, n_seeds: int = 3, n_windows: int = 32) -> dict:
    """Re-evaluate a shipped checkpoint: perplexity over ``n_seeds`` noise seeds on
    ``n_windows`` test windows with the parts in ``analog`` on analog tiles and ``noise``
    ('gaussian' at ``noise_pct`` % of each row's largest ``abs(W)``, or 'pcm' at ``t_s``
    seconds after programming). Returns the dict :func:`~aimoe_lib.viz.analog.live_figure`
    draws, with the digital perplexity of this model, its noise-free analog perplexity
    (``clean_ppl``, same parts and converters) and the digital perplexity of the FP-trained model
    of the same architecture (``reference_ppl``), all on the same windows."""
    from .pcm import GaussianNoise, PCMNoise, time_label

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
