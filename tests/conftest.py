"""Shared fixtures for the tests of aimoe_lib's models, zoo and hardware modules."""

from __future__ import annotations

import pytest

from aimoe_lib import hardware
from aimoe_lib.models import ModelSpec


@pytest.fixture
def tiny() -> dict:
    """Keyword arguments of the small model used by the hand-worked counts.

    d_model 8, 2 layers, 2 heads (head_dim 4), d_ff 16, vocabulary 10. With the ModelSpec defaults
    (GeLU FFN, LayerNorm, no biases, untied) one layer holds
    attention 4*8*8 = 256 + FFN 8*16 + 16*8 = 256 + two LayerNorms 2*(2*8) = 32  ->  544.
    """
    return dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, vocab_size=10)


@pytest.fixture
def make_spec(tiny):
    """Build a ModelSpec from the tiny model with some fields changed."""

    def make(**changes) -> ModelSpec:
        return ModelSpec(**{**tiny, **changes})

    return make


@pytest.fixture
def cost() -> hardware.CostModel:
    """The default ('paper') cost model."""
    return hardware.CostModel()


@pytest.fixture
def area() -> hardware.AreaModel:
    """The default area model."""
    return hardware.AreaModel()


@pytest.fixture
def paper_chip() -> hardware.ChipConfig:
    """The 'paper' preset: 100 tiles x 1024 tiers of 512x512."""
    return hardware.preset("paper")
