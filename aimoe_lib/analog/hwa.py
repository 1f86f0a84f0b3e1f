"""aihwkit-lightning glue: RPU configurations, conversion of chosen parts, input ranges.

* :func:`~aimoe_lib.analog.hwa.training_rpu_config` — hardware-aware training (HWA): per-row
  Gaussian weight-noise injection, output noise, per-row Gaussian weight clipping, learned input
  ranges, and the DAC/ADC of :class:`~aimoe_lib.analog.config.Periphery`. aihwkit-lightning
  injects the noise only in ``train()`` mode; ``eval()`` is noise-free.
* :func:`~aimoe_lib.analog.hwa.inference_rpu_config` — the same converters, no noise, fixed input
  ranges. Noise at inference is applied to the weights by :mod:`aimoe_lib.analog.pcm`.
* :func:`~aimoe_lib.analog.hwa.to_analog` — ``convert_to_analog`` on the linear layers of the
  chosen parts only (the others stay ``nn.Linear``, i.e. digital).
* :func:`~aimoe_lib.analog.hwa.calibrate` — input ranges of a model trained without them
  (aihwkit-lightning's ``calibrate_input_ranges``).

Output noise and input quantisation need the input range enabled (aihwkit-lightning asserts
it); ``modifier.type`` is deprecated in v2, so the noise and the quantiser are set through
``modifier.noise_type`` / ``modifier.quantization_type``.
"""

from __future__ import annotations

import contextlib
import io

import torch

# aihwkit-lightning prints "Could not import triton_utils..." on import (no GPU); library code
# does not print, so the line is swallowed here.
with contextlib.redirect_stdout(io.StringIO()):
    from aihwkit_lightning.inference.calibration import (
        InputRangeCalibrationType,
        calibrate_input_ranges,
    )
    from aihwkit_lightning.nn import AnalogLinear
    from aihwkit_lightning.nn.conversion import convert_to_analog
    from aihwkit_lightning.optim import AnalogOptimizer
    from aihwkit_lightning.simulator.configs import (
        TorchInferenceRPUConfig,
        WeightClipType,
        WeightNoiseInjectionType,
    )

from ..checks import UnknownKeyError
from .config import PARTS, HWAConfig, Periphery, check_analog
from .models import TinyLM

__all__ = ["training_rpu_config", "inference_rpu_config", "to_analog", "analog_layers",
           "calibrate", "input_ranges", "set_input_ranges", "CALIBRATION_QUANTILE",
           "AnalogOptimizer", "parts_of"]

CALIBRATION_QUANTILE = 0.9999
"""Input range of a floating-point-trained layer: this quantile of ``abs(input)`` over calibration
batches (aihwkit-lightning ``CACHE_QUANTILE``; A-CALIB-Q)."""


def _res(bits: int | None) -> float:
    """aihwkit-lightning resolution for ``bits`` (2^bits - 2 levels; -1 = ideal)."""
    return -1 if bits is None else float(2**bits - 2)


def _periphery(rpu: TorchInferenceRPUConfig, periphery: Periphery) -> None:
    rpu.forward.inp_res = _res(periphery.inp_bits)
    rpu.forward.out_res = _res(periphery.out_bits)
    rpu.forward.out_bound = periphery.out_bound if periphery.out_bits is not None else -1
    rpu.mapping.max_input_size = -1


def training_rpu_config(hwa: HWAConfig, periphery: Periphery) -> TorchInferenceRPUConfig:
    """The RPU configuration of hardware-aware training."""
    rpu = TorchInferenceRPUConfig()
    _periphery(rpu, periphery)
    rpu.forward.out_noise = hwa.out_noise
    rpu.forward.out_noise_per_channel = True
    rpu.modifier.noise_type = WeightNoiseInjectionType.ADD_NORMAL_PER_CHANNEL
    rpu.modifier.std_dev = hwa.weight_noise
    rpu.clip.type = WeightClipType.LAYER_GAUSSIAN_PER_CHANNEL
    rpu.clip.sigma = hwa.clip_sigma
    ir = rpu.pre_post.input_range
    ir.enable = True
    ir.learn_input_range = True
    ir.init_from_data = hwa.init_from_data
    ir.init_std_alpha = hwa.init_std_alpha
    return rpu


def inference_rpu_config(periphery: Periphery) -> TorchInferenceRPUConfig:
    """The RPU configuration of inference: converters only, input ranges fixed."""
    rpu = TorchInferenceRPUConfig()
    _periphery(rpu, periphery)
    ir = rpu.pre_post.input_range
    ir.enable = not periphery.ideal
    ir.learn_input_range = False
    ir.init_from_data = 0
    return rpu


def to_analog(model: TinyLM, rpu: TorchInferenceRPUConfig, analog=PARTS):
    """A converted copy of ``model`` whose linear layers of the parts in ``analog`` (of
    :data:`aimoe_lib.analog.config.PARTS`; from a digital choice use
    :func:`aimoe_lib.analog.config.analog_parts`) are ``AnalogLinear``, the others plain
    ``nn.Linear``. Returns the aihwkit-lightning ``AnalogWrapper`` (its bound method
    ``analog_layers`` is what ``AnalogOptimizer`` takes)."""
    analog = set(check_analog(analog))
    exclude = [name for name, part in model.linear_parts().items() if part not in analog]
    model.forget()
    return convert_to_analog(model, rpu, exclude_modules=exclude)


def analog_layers(model) -> dict[str, AnalogLinear]:
    """The analog layers of a converted model by dotted name (names of the unconverted model)."""
    return {name: mod for name, mod in model.named_modules() if isinstance(mod, AnalogLinear)}


def input_ranges(model) -> dict[str, float]:
    """Each analog layer's input range (one tile per layer here)."""
    return {name: float(mod.input_range.detach()[0]) for name, mod in analog_layers(model).items()
            if mod.input_range is not None}


def set_input_ranges(model, ranges: dict[str, float]) -> None:
    """Set fixed input ranges on a converted model's analog layers (names as in
    :func:`~aimoe_lib.analog.hwa.input_ranges`); a layer without an entry raises KeyError naming
    it."""
    with torch.no_grad():
        for name, mod in analog_layers(model).items():
            if mod.input_range is None:
                continue
            if name not in ranges:
                raise UnknownKeyError(f"no input range for analog layer {name!r}; calibrate the model "
                               "(hwa.calibrate) or train it with HWA")
            mod.input_range.fill_(ranges[name])


@torch.no_grad()
def calibrate(model: TinyLM, batches, periphery: Periphery, seed: int = 0) -> dict[str, float]:
    """Input ranges for a model trained without them: every part converted to analog with the
    input range and DAC off, ``calibrate_input_ranges`` (``CACHE_QUANTILE`` at
    ``CALIBRATION_QUANTILE``) over ``batches`` (tensors of token ids).
    The library subsamples the cached inputs with torch's global generator (and converting
    initialises layers with it); both run here under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``, leaving the caller's state alone."""
    rpu = inference_rpu_config(periphery)
    rpu.pre_post.input_range.enable = False
    rpu.forward.inp_res = -1
    rpu.forward.out_res = -1
    rpu.forward.out_bound = -1
    with torch.random.fork_rng(devices=[]):  # conversion initialises layers, calibration samples
        torch.manual_seed(seed)
        analog = to_analog(model, rpu, PARTS)
        analog.eval()
        calibrate_input_ranges(analog, InputRangeCalibrationType.CACHE_QUANTILE,
                               iter([((b,), {}) for b in batches]),
                               quantile=CALIBRATION_QUANTILE, max_samples=4000, verbose=False)
    ranges = input_ranges(analog)
    missing = set(model.linear_parts()) - set(ranges)
    if missing:
        raise RuntimeError(f"calibration left layers without input range: {sorted(missing)}")
    return ranges


def parts_of(model: TinyLM) -> dict[str, list[str]]:
    """Part -> dotted names of its linear layers."""
    out = {p: [] for p in PARTS}
    for name, part in model.linear_parts().items():
        out[part].append(name)
    return out
