"""The small teaching models of the book, one function each, each named after the chapter that
uses it. They are small enough that every tier of an occupancy map, every bar of a Gantt chart and
every expert of a routing study stays visible; the published models are in :mod:`aimoe_lib.zoo`.

Keyword arguments of each function override any :class:`~aimoe_lib.models.ModelSpec` field.
"""

from __future__ import annotations

from .models import ModelSpec

__all__ = ["mapping_moe", "simulation_moe", "routing_moe"]


def mapping_moe(**overrides) -> ModelSpec:
    """The MoE of chapter 3 (mapping), named ``small-moe``: d_model 1024, 4 layers of 16 heads,
    every FFN an MoE of 8 SwiGLU experts of width 2048 with top-2 routing, RMSNorm, a vocabulary
    of 8192. On 512x512 tiers an expert is 24 blocks (gate, up and down, 8 each) and the model
    872 blocks (the input embedding stays digital)."""
    base = dict(name="small-moe", d_model=1024, n_layers=4, n_heads=16, d_ff=2048,
                vocab_size=8192, ffn="swiglu", norm="rmsnorm", n_experts=8, top_k=2)
    return ModelSpec(**{**base, **overrides})


def simulation_moe(**overrides) -> ModelSpec:
    """The MoE of chapter 4 (simulating inference), named ``sim-moe``: d_model 512, 4 layers of
    8 heads, every FFN an MoE of 8 SwiGLU experts of width 1024 with top-2 routing, RMSNorm, a
    vocabulary of 1024. On 512 x 512 tiers an expert is 6 blocks (gate, up and down, 2 each), a
    layer 53 (attention 4, router 1, experts 48) and the model 214 with its 2-block LM head (the
    input embedding stays digital)."""
    base = dict(name="sim-moe", d_model=512, n_layers=4, n_heads=8, d_ff=1024, vocab_size=1024,
                ffn="swiglu", norm="rmsnorm", n_experts=8, top_k=2)
    return ModelSpec(**{**base, **overrides})


def routing_moe(**overrides) -> ModelSpec:
    """The MoE of chapter 6 (routing skew and tier conflicts), named ``moe-16e-top2``: d_model
    512, 4 layers of 8 heads, 16 GELU experts of width 1024 with top-2 routing, LayerNorm, a
    vocabulary of 1024 (278 blocks of 512 x 512)."""
    base = dict(name="moe-16e-top2", d_model=512, n_layers=4, n_heads=8, d_ff=1024,
                vocab_size=1024, ffn="gelu", norm="layernorm", n_experts=16, top_k=2)
    return ModelSpec(**{**base, **overrides})
