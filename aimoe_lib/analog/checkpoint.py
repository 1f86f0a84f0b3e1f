"""Small checkpoints: weights as 8 bits per row, the rest in float32 (A-CKPT-INT8).

Every 2-D weight (linear layers, embeddings) is stored as int8 with one float32 scale per row
(symmetric, ``scale = max(abs(row)) / 127``): the 8-bit-equivalent weights of the chip,
and a quarter of the float32 size.
:func:`~aimoe_lib.analog.checkpoint.round_weights` applies the same rounding to a model in memory,
so that every number the training script reports is computed with exactly the weights it ships,
and a reader re-evaluating a shipped checkpoint gets the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .config import LMConfig
from .models import TinyLM

__all__ = ["round_weights", "save", "load"]

_FORMAT = 1


def _quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wmax = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(wmax > 0, wmax / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _is_weight(name: str, t: torch.Tensor) -> bool:
    return name.endswith(".weight") and t.ndim == 2


@torch.no_grad()
def round_weights(model: TinyLM) -> TinyLM:
    """Round every 2-D weight of ``model`` in place to 8 bits per row (what
    :func:`~aimoe_lib.analog.checkpoint.save` stores); returns the model."""
    for name, t in model.state_dict().items():
        if _is_weight(name, t):
            q, s = _quantize(t.detach().cpu().numpy().astype(np.float32))
            t.copy_(torch.from_numpy(q.astype(np.float32) * s))
    return model


def save(path, model: TinyLM, input_ranges: dict[str, float], meta: dict | None = None) -> Path:
    """Write ``model`` (weights rounded as in :func:`~aimoe_lib.analog.checkpoint.round_weights`),
    its analog layers' input ranges and a JSON-able ``meta`` to a compressed ``.npz``."""
    arrays = {}
    for name, t in model.state_dict().items():
        a = t.detach().cpu().numpy().astype(np.float32)
        if _is_weight(name, t):
            arrays[f"q:{name}"], arrays[f"s:{name}"] = _quantize(a)
        else:
            arrays[f"f:{name}"] = a
    doc = {"format": _FORMAT, "config": model.cfg.to_dict(), "input_ranges": input_ranges,
           "meta": meta or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, __doc__=np.array(json.dumps(doc, sort_keys=True)), **arrays)
    return path


def load(path) -> tuple[TinyLM, dict[str, float], dict]:
    """Read a checkpoint written by :func:`~aimoe_lib.analog.checkpoint.save`: (model in eval
    mode, input ranges, meta)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is missing; run "
                                "python -m aimoe_lib.analog.train --out data/analog to make it")
    with np.load(path, allow_pickle=False) as f:
        doc = json.loads(str(f["__doc__"]))
        if doc.get("format", 0) > _FORMAT:
            raise ValueError(f"checkpoint {str(path)!r} has format {doc['format']}, newer than "
                             f"this library reads ({_FORMAT})")
        state = {}
        for key in f.files:
            kind, _, name = key.partition(":")
            if kind == "q":
                state[name] = torch.from_numpy(f[key].astype(np.float32) * f[f"s:{name}"])
            elif kind == "f":
                state[name] = torch.from_numpy(f[key])
    model = TinyLM(LMConfig(**doc["config"]))
    model.load_state_dict(state)
    model.eval()
    return model, {k: float(v) for k, v in doc["input_ranges"].items()}, doc["meta"]
