"""ipywidgets panel of chapter 7, "Against GPUs": dropdowns and a slider over
:func:`~aimoe_lib.viz.gpu.compare_bars` (AIMC chip of the book's preset by default, with
``paper`` and ``3dsim`` offered for comparison).

The panel is returned, not displayed (the last line of a notebook cell shows it), built from
:mod:`aimoe_lib.widgets.controls`. In the static HTML book the panel has no kernel behind it; the
chapter shows the default figure in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w

from .. import gpu
from ..experiments import PRESET
from ..gpu_comparison import CHIP_TIERS
from ..viz import gpu as viz_gpu
from .controls import choice_slider, dropdown

__all__ = ["GPU_PANEL_MODELS", "GPU_PANEL_BATCHES", "GPU_PANEL_PRESETS", "gpu_panel",
           "OPERATING_PANEL_GPUS", "OPERATING_PANEL_TARGETS_MS", "operating_panel"]

GPU_PANEL_MODELS = ("olmoe-1b-7b", "mixtral-8x7b", "llama-2-7b", "qwen1.5-moe-a2.7b")
"""Models offered by :func:`~aimoe_lib.widgets.gpu.gpu_panel`: dense and MoE zoo models that
simulate in a few seconds at most at the panel's workload."""
GPU_PANEL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
"""Batch sizes offered by :func:`~aimoe_lib.widgets.gpu.gpu_panel`."""
GPU_PANEL_PRESETS = ("physical", "paper", "3dsim")
"""Chip cost presets offered by :func:`~aimoe_lib.widgets.gpu.gpu_panel` (the book's first)."""


def gpu_panel(model: str = "mixtral-8x7b", batch: int = 8, gpu_name: str = "h100",
              chip: str = "3d-64", preset: str = PRESET) -> w.interactive:
    """Model, batch size, GPU preset, AIMC chip shape
    (:data:`~aimoe_lib.gpu_comparison.CHIP_TIERS`) and its cost preset over
    :func:`~aimoe_lib.viz.gpu.compare_bars` (16 prompt + 16 generated tokens per sequence)."""
    def show(model, batch, gpu_name, chip, preset):
        return viz_gpu.compare_bars(model=model, batch=batch, gpu=gpu_name, chip=chip,
                                    preset=preset)

    return w.interactive(
        show,
        model=dropdown(model, GPU_PANEL_MODELS, "model"),
        batch=choice_slider(batch, GPU_PANEL_BATCHES, "batch (sequences)"),
        gpu_name=dropdown(gpu_name, gpu.names(), "GPU"),
        chip=dropdown(chip, CHIP_TIERS, "AIMC chip"),
        preset=dropdown(preset, GPU_PANEL_PRESETS, "chip costs"),
    )


OPERATING_PANEL_GPUS = (0, 1, 2, 4, 8)
"""GPU counts offered by :func:`~aimoe_lib.widgets.gpu.operating_panel` (0: the fewest that hold
the largest batch)."""
OPERATING_PANEL_TARGETS_MS = (10.0, 20.0, 50.0, 100.0)
"""TPOT targets offered by :func:`~aimoe_lib.widgets.gpu.operating_panel`, ms."""


def operating_panel(model: str = "mixtral-8x7b", gpu_name: str = "h100", precision: str = "fp8",
                    n_gpus: int = 0, chip: str = "3d-64", preset: str = PRESET,
                    tpot_target_ms: float = 50.0) -> w.interactive:
    """Model, GPU, weight format, GPU count, AIMC chip, cost preset and TPOT target over
    :func:`~aimoe_lib.viz.gpu.operating_points` (the chapter's headline figure)."""
    def show(model, gpu_name, precision, n_gpus, chip, preset, tpot_target_ms):
        return viz_gpu.operating_points(model=model, gpu=gpu_name, precision=precision,
                                        n_gpus=n_gpus, n_tiers=CHIP_TIERS[chip], preset=preset,
                                        tpot_target_ms=tpot_target_ms)

    return w.interactive(
        show,
        model=dropdown(model, GPU_PANEL_MODELS, "model"),
        gpu_name=dropdown(gpu_name, gpu.names(), "GPU"),
        precision=dropdown(precision, gpu.precision_formats(), "GPU weights"),
        n_gpus=dropdown(n_gpus, OPERATING_PANEL_GPUS, "GPUs (0: fewest)"),
        chip=dropdown(chip, CHIP_TIERS, "AIMC chip"),
        preset=dropdown(preset, GPU_PANEL_PRESETS, "chip costs"),
        tpot_target_ms=dropdown(tpot_target_ms, OPERATING_PANEL_TARGETS_MS, "TPOT target (ms)"),
    )
