"""Perplexity of trained models on analog tiles: noise, drift, router stability, sensitivity.

:class:`~aimoe_lib.analog.evaluate.NoisyEvaluator` holds one trained model and a fixed set of
token windows. For a choice of analog parts (``analog=``, parts of
:data:`aimoe_lib.analog.config.PARTS`, or ``digital=``, named as in
``aimoe_lib.mapping.DIGITAL_PARTS``) it converts the model once with aihwkit-lightning
(:func:`aimoe_lib.analog.hwa.to_analog`, DAC/ADC of the
:class:`~aimoe_lib.analog.config.Periphery`, fixed input ranges), then for every noise seed
replaces each analog layer's weights by a noisy copy (:mod:`aimoe_lib.analog.pcm`) and measures

* perplexity, exp(mean next-token cross-entropy) over the windows, and
* for MoE models, the fraction of (token, MoE layer) pairs whose set of top-k experts differs
  from the noise-free model's with the same analog parts and converters (router stability under
  weight noise), and the same fraction against the digital model (noise and converters).

Noise is drawn per layer from ``numpy.random.default_rng([seed, i])``, ``i`` the layer's index in
:meth:`~aimoe_lib.analog.models.TinyLM.linear_parts`, so a layer gets the same noise whichever
other layers are analog: "router analog" and "router digital" runs of one seed differ only in the
router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import hwa
from .config import Periphery, analog_parts, check_analog
from .models import TinyLM
from .pcm import GaussianNoise, PCMNoise

__all__ = ["perplexity", "routing_choices", "NoisyEvaluator", "Outcome", "noise_record"]


@torch.no_grad()
def _loss_and_choices(model, windows: torch.Tensor, batch: int, want_choices: bool):
    total, n, choices = 0.0, 0, []
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        logits = model(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                 w[:, 1:].reshape(-1), reduction="sum").item()
        n += w[:, 1:].numel()
        if want_choices:
            choices.append(model.last_choices())
    return total / n, (torch.cat(choices) if want_choices else None)


def perplexity(model, windows, batch: int = 32) -> float:
    """exp(mean next-token cross-entropy) of ``model`` (digital or converted) over ``windows``
    (array or tensor of token ids, shape (n, context + 1))."""
    model.eval()
    loss, _ = _loss_and_choices(model, torch.as_tensor(windows), batch, False)
    return math.exp(loss)


def routing_choices(model: TinyLM, windows, batch: int = 32) -> np.ndarray:
    """Expert ids the model picks for every input token of ``windows``: an int array of shape
    (n_windows * context, n_moe_layers, k), window by window, best expert first."""
    model.eval()
    _, ch = _loss_and_choices(model, torch.as_tensor(windows), batch, True)
    return ch.numpy().astype(np.int32)


def _changed(choices: torch.Tensor, reference: torch.Tensor) -> tuple[float, list[float]]:
    """Fraction of (token, layer) pairs whose top-k *set* differs; overall and per MoE layer."""
    a = choices.sort(dim=-1).values
    b = reference.sort(dim=-1).values
    diff = (a != b).any(dim=-1).float()
    return float(diff.mean()), [float(x) for x in diff.mean(dim=0)]


@dataclass(frozen=True)
class Outcome:
    """Results of one condition over its seeds."""

    seeds: tuple[int, ...]
    ppl: tuple[float, ...]
    """Perplexity per seed."""
    route_changed: tuple[float, ...] | None
    """Per seed, fraction of (token, MoE layer) pairs whose top-k set differs from the
    noise-free analog model's (same parts, same converters); None for a dense model."""
    route_changed_by_layer: tuple[tuple[float, ...], ...] | None
    """Per seed, that fraction per MoE layer."""
    route_changed_vs_digital: tuple[float, ...] | None = None
    """Per seed, the fraction against the digital model instead."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.ppl))

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(np.std(self.ppl, ddof=1)) if len(self.ppl) > 1 else 0.0


class NoisyEvaluator:
    """Evaluate one trained model under inference-time noise (module docstring)."""

    def __init__(self, model: TinyLM, input_ranges: dict[str, float], windows,
                 periphery: Periphery | None = None, batch: int = 32):
        self.model = model.eval()
        self.input_ranges = dict(input_ranges)
        self.windows = torch.as_tensor(windows)
        self.periphery = Periphery() if periphery is None else periphery
        self.batch = batch
        self.layer_index = {name: i for i, name in enumerate(model.linear_parts())}
        loss, ref = _loss_and_choices(model, self.windows, batch, model.cfg.is_moe)
        self.digital_ppl = math.exp(loss)
        self.reference_choices = ref
        self._converted: dict[tuple[str, ...], tuple] = {}

    def parts(self, analog=None, digital=None) -> tuple[str, ...]:
        """The model's parts that are analog for a choice given as ``analog`` (parts) or
        ``digital`` (keys of ``aimoe_lib.mapping.DIGITAL_PARTS``); default all."""
        if analog is not None and digital is not None:
            raise ValueError("give analog= or digital=, not both")
        chosen = (check_analog(analog) if analog is not None
                  else analog_parts(("embedding",) if digital is None else digital))
        present = set(self.model.linear_parts().values())
        return tuple(p for p in chosen if p in present)

    def _analog(self, key):
        if key not in self._converted:
            model = hwa.to_analog(self.model, hwa.inference_rpu_config(self.periphery), key)
            if not self.periphery.ideal:
                hwa.set_input_ranges(model, self.input_ranges)
            model.eval()
            layers = hwa.analog_layers(model)
            clean = {n: m.weight.detach().clone() for n, m in layers.items()}
            _, ref = _loss_and_choices(model, self.windows, self.batch, self.model.cfg.is_moe)
            self._converted[key] = (model, layers, clean, ref)
        return self._converted[key]

    @torch.no_grad()
    def run(self, noise: GaussianNoise | PCMNoise | None, analog=None, digital=None,
            seeds=range(5)) -> Outcome:
        """Perplexity (and routing changes) for each seed with the parts chosen by ``analog``
        or ``digital`` (:meth:`~aimoe_lib.analog.evaluate.NoisyEvaluator.parts`) on analog
        tiles; ``noise=None`` is the noise-free analog model (converters only), whose outcome is
        the same for every seed."""
        model, layers, clean, ref = self._analog(self.parts(analog, digital))
        seeds = tuple(int(s) for s in seeds)
        ppl, changed, by_layer, vs_digital = [], [], [], []
        try:
            for seed in (seeds[:1] if noise is None else seeds):
                for name, layer in layers.items():
                    w = clean[name]
                    if noise is not None:
                        rng = np.random.default_rng([seed, self.layer_index[name]])
                        noisy = noise.apply(w.numpy().astype(np.float64), rng)
                        layer.weight.copy_(torch.from_numpy(noisy).to(w.dtype))
                loss, ch = _loss_and_choices(model, self.windows, self.batch,
                                             self.model.cfg.is_moe)
                ppl.append(math.exp(loss))
                if ch is not None:
                    c, per = _changed(ch, ref)
                    changed.append(c)
                    by_layer.append(tuple(per))
                    vs_digital.append(_changed(ch, self.reference_choices)[0])
        finally:
            for name, layer in layers.items():
                layer.weight.copy_(clean[name])
        if noise is None:  # deterministic: one pass stands for every seed
            ppl, changed, by_layer, vs_digital = (x * len(seeds) for x in (
                ppl, changed, by_layer, vs_digital))
        moe = self.model.cfg.is_moe
        return Outcome(seeds, tuple(ppl), tuple(changed) if moe else None,
                       tuple(by_layer) if moe else None, tuple(vs_digital) if moe else None)


def noise_record(noise: GaussianNoise | PCMNoise | None) -> dict:
    """JSON description of a noise model: kind, level (std or time) and compensation."""
    if noise is None:
        return {"noise": "none", "level": 0.0, "compensate": None}
    if isinstance(noise, GaussianNoise):
        return {"noise": "gaussian", "level": noise.std, "compensate": None}
    return {"noise": "pcm", "level": noise.t_s, "compensate": noise.compensate}
