"""The routing traces chapter 8 ships for the routing study (chapter 6), without torch.

``python -m aimoe_lib.analog.train`` records which experts the floating-point MoEs pick for every
token of 512 validation windows of 64 characters (32 768 tokens; *Julius Caesar* and *Twelfth
Night*), and writes them with :func:`aimoe_lib.routing.save_trace` to
``data/analog/trace_shakespeare-<model>.npz``: an array of shape (tokens, MoE layers, k), best
expert first, window after window.

>>> from aimoe_lib.analog import traces
>>> spec, trace = traces.load("moe-16")            # doctest: +SKIP
>>> RoutingSpec(kind="trace", trace=trace.choices)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from .. import routing
from ..models import ModelSpec
from ..shipped import data_path
from .config import model_config

__all__ = ["TRACE_DIR", "trace_path", "load"]

TRACE_DIR = data_path() / "analog"
"""Where the shipped traces live: ``data/analog`` of the installed package
(:func:`~aimoe_lib.shipped.data_path`)."""


def trace_path(model: str = "moe-16") -> Path:
    """Path of the shipped trace of the MoE preset ``model`` ('moe-4' or 'moe-16')."""
    return TRACE_DIR / f"trace_{model_config(model).spec().name}.npz"


def load(model: str = "moe-16") -> tuple[ModelSpec, routing.Trace]:
    """The :class:`~aimoe_lib.models.ModelSpec` of the MoE preset ``model`` and its shipped
    trace, checked against it by :func:`aimoe_lib.routing.load_trace`."""
    cfg = model_config(model)
    if not cfg.is_moe:
        raise ValueError(f"model={model!r} is dense: it has no routing trace; use 'moe-4' or "
                         "'moe-16'")
    spec = cfg.spec()
    path = data_path("analog", trace_path(model).name)  # FileNotFoundError that says what ships
    return spec, routing.load_trace(path, spec)
