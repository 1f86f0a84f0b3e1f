"""ipywidgets panel of chapter 7, "Against GPUs": dropdowns and a slider over
:func:`aimoe_lib.viz_gpu.compare_bars`.

The panel is returned, not displayed (the last line of a notebook cell shows it); sliders redraw
when released. In the static HTML book the panel has no kernel behind it; the chapter shows the
default figure in a cell of its own.
"""

from __future__ import annotations

import ipywidgets as w

from .. import gpu

from ..viz import gpu as viz_gpu

__all__ = ["GPU_PANEL_MODELS", "GPU_PANEL_BATCHES", "gpu_panel"]

GPU_PANEL_MODELS = ("olmoe-1b-7b", "mixtral-8x7b", "llama-2-7b", "qwen1.5-moe-a2.7b")
"""Models offered by :func:`~aimoe_lib.widgets_gpu.gpu_panel`: dense and MoE zoo models that
simulate in a few seconds at most at the panel's workload."""
GPU_PANEL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
"""Batch sizes offered by :func:`~aimoe_lib.widgets_gpu.gpu_panel`."""

_STYLE = {"description_width": "initial"}
_LAYOUT = w.Layout(width="420px")


def gpu_panel(model: str = "mixtral-8x7b", batch: int = 8, gpu_name: str = "h100",
              chip: str = "3d-64") -> w.interactive:
    """Model, batch size, GPU preset and AIMC chip preset (:data:`aimoe_lib.viz_gpu.CHIP_TIERS`)
    over :func:`aimoe_lib.viz_gpu.compare_bars` (16 prompt + 16 generated tokens per sequence)."""
    def show(model, batch, gpu_name, chip):
        return viz_gpu.compare_bars(model=model, batch=batch, gpu=gpu_name, chip=chip)

    return w.interactive(
        show,
        model=w.Dropdown(value=model, options=list(GPU_PANEL_MODELS), description="model",
                         style=_STYLE, layout=_LAYOUT),
        batch=w.SelectionSlider(value=batch, options=list(GPU_PANEL_BATCHES),
                                description="batch (sequences)", continuous_update=False,
                                style=_STYLE, layout=_LAYOUT),
        gpu_name=w.Dropdown(value=gpu_name, options=list(gpu.names()), description="GPU",
                            style=_STYLE, layout=_LAYOUT),
        chip=w.Dropdown(value=chip, options=list(viz_gpu.CHIP_TIERS), description="AIMC chip",
                        style=_STYLE, layout=_LAYOUT),
    )
