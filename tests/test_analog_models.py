"""Models, analog conversion and noisy evaluation (torch and aihwkit-lightning).

The central check: with ideal converters and no weight noise, the analog model computes exactly
what the floating-point model does, whichever parts are analog.
"""

import itertools

import numpy as np
import pytest
import torch

from aimoe_lib.analog import checkpoint, hwa
from aimoe_lib.analog.config import (
    IDEAL,
    MODELS,
    PARTS,
    HWAConfig,
    LMConfig,
    Periphery,
    analog_parts,
)
from aimoe_lib.analog.evaluate import NoisyEvaluator, perplexity, routing_choices
from aimoe_lib.analog.models import TinyLM
from aimoe_lib.analog.pcm import GaussianNoise, PCMNoise

TINY = dict(d_model=32, n_layers=2, n_heads=2, context=16, d_ff=64, vocab_size=85)


def tiny(moe: bool) -> TinyLM:
    torch.manual_seed(0)
    cfg = (LMConfig("moe-4", n_experts=4, top_k=2, d_expert=32, **TINY) if moe
           else LMConfig("dense", **TINY))
    return TinyLM(cfg).eval()


@pytest.fixture
def tokens():
    return torch.from_numpy(np.random.default_rng(0).integers(1, 85, size=(6, 17)))


@pytest.mark.parametrize("cfg", MODELS, ids=lambda c: c.name)
def test_parameter_count_matches_model_spec(cfg):
    """The torch model and aimoe_lib.models.ModelSpec count the same parameters."""
    model = TinyLM(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.spec().total_params


def test_active_parameters_are_equal_across_models():
    active = [c.spec().active_params for c in MODELS]
    assert max(active) / min(active) < 1.02  # only the routers differ
    total = [c.spec().total_params for c in MODELS]
    assert total[0] < total[1] < total[2]


@pytest.mark.parametrize("moe", [False, True])
def test_linear_parts_cover_every_linear_layer(moe):
    model = tiny(moe)
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(model.linear_parts()) == linears
    assert set(model.linear_parts().values()) == (set(PARTS) if moe else set(PARTS) - {"router"})


@pytest.mark.parametrize("moe", [False, True])
def test_zero_noise_analog_equals_floating_point(moe, tokens):
    model = tiny(moe)
    with torch.no_grad():
        ref = model(tokens[:, :-1])
        for r in range(len(PARTS) + 1):
            for analog in itertools.combinations(PARTS, r):
                a = hwa.to_analog(model, hwa.inference_rpu_config(IDEAL), analog).eval()
                n_analog = sum(1 for p in model.linear_parts().values() if p in analog)
                assert len(hwa.analog_layers(a)) == n_analog
                torch.testing.assert_close(a(tokens[:, :-1]), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("moe", [False, True])
def test_zero_noise_evaluation_equals_digital(moe, tokens):
    model = tiny(moe)
    ev = NoisyEvaluator(model, {}, tokens, periphery=IDEAL)
    assert ev.digital_ppl == pytest.approx(perplexity(model, tokens), rel=1e-12)
    for noise in (None, GaussianNoise(0.0), PCMNoise(0.0, prog_scale=0, read_scale=0)):
        out = ev.run(noise, seeds=range(2))
        assert out.ppl == pytest.approx((ev.digital_ppl,) * 2, rel=1e-5)
        if moe:
            assert out.route_changed == (0.0, 0.0)


def test_calibration_is_seeded(tokens):
    model = tiny(True)
    torch.manual_seed(123)
    a = hwa.calibrate(model, [tokens[:, :-1]], Periphery(), seed=1)
    state = torch.random.get_rng_state()
    b = hwa.calibrate(model, [tokens[:, :-1]], Periphery(), seed=1)
    assert a == b and set(a) == set(model.linear_parts())
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator untouched


def test_noisy_evaluation_is_seeded_and_per_layer(tokens):
    model = tiny(True)
    ranges = hwa.calibrate(model, [tokens[:, :-1]], Periphery())
    ev = NoisyEvaluator(model, ranges, tokens)
    a = ev.run(GaussianNoise(0.1), seeds=[3, 4])
    b = ev.run(GaussianNoise(0.1), seeds=[3, 4])
    assert a == b and a.ppl[0] != a.ppl[1]
    assert a.std > 0 and a.mean == pytest.approx(np.mean(a.ppl))
    # with the router digital, noise reaches routing only through upstream layers
    only_router = ev.run(GaussianNoise(0.1), analog=("router",), seeds=[3])
    no_router = ev.run(GaussianNoise(0.1), digital=("embedding", "router"), seeds=[3])
    assert only_router.route_changed[0] > 0
    assert len(no_router.route_changed_by_layer[0]) == 2
    # the first MoE layer's router input comes from embeddings and attention of layer 0 only
    first = ev.run(GaussianNoise(0.1), analog=("lm_head",), seeds=[3])
    assert first.route_changed == (0.0,)
    # clean weights are restored after a run
    assert ev.run(None, seeds=[0]).ppl == ev.run(None, seeds=[1]).ppl


def test_digital_choice_uses_mapping_part_names():
    assert analog_parts(("embedding",)) == PARTS
    assert analog_parts(("embedding", "router", "attention")) == ("ffn", "lm_head")
    with pytest.raises(ValueError, match="unknown part"):
        analog_parts(("experts",))


def test_noise_is_injected_only_in_train_mode(tokens):
    """aihwkit-lightning: weight and output noise in train(), none in eval()."""
    model = tiny(False)
    a = hwa.to_analog(model, hwa.training_rpu_config(HWAConfig(), Periphery()))
    with torch.no_grad():
        a.train()
        x, y = a(tokens[:, :-1]), a(tokens[:, :-1])
        assert not torch.equal(x, y)
        a.eval()
        x, y = a(tokens[:, :-1]), a(tokens[:, :-1])
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_analog_optimizer_clips_weights(tokens):
    model = tiny(False)
    hc = HWAConfig(clip_sigma=2.0)
    a = hwa.to_analog(model, hwa.training_rpu_config(hc, Periphery()))
    opt = hwa.AnalogOptimizer(torch.optim.SGD, a.analog_layers, a.parameters(), lr=0.0)
    before = {n: m.weight.detach().clone() for n, m in hwa.analog_layers(a).items()}
    a.train()
    a(tokens[:, :-1]).sum().backward()
    opt.step()  # lr = 0: only the clipping hook changes the weights
    for name, layer in hwa.analog_layers(a).items():
        bound = 2.0 * before[name].std(dim=1, keepdim=True)
        torch.testing.assert_close(layer.weight.detach(),
                                   before[name].clamp(-bound, bound), rtol=0, atol=0)


def test_routing_choices_are_distinct_top_k(tokens):
    model = tiny(True)
    ch = routing_choices(model, tokens)
    assert ch.shape == (6 * 16, 2, 2)
    assert (ch[..., 0] != ch[..., 1]).all() and ch.min() >= 0 and ch.max() < 4


def test_checkpoint_round_trip(tmp_path, tokens):
    model = checkpoint.round_weights(tiny(True))
    ranges = {n: 1.5 for n in model.linear_parts()}
    p = checkpoint.save(tmp_path / "m.npz", model, ranges, {"k": 1})
    loaded, r, meta = checkpoint.load(p)
    assert r == ranges and meta == {"k": 1} and loaded.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens[:, :-1]), model(tokens[:, :-1]), rtol=0,
                                   atol=1e-6)


def test_rounding_is_8_bits_per_row():
    model = checkpoint.round_weights(tiny(False))
    w = model.blocks[0].ffn.up.weight.detach().numpy()
    step = np.abs(w).max(axis=1, keepdims=True) / 127
    np.testing.assert_allclose(w / step, np.rint(w / step), atol=1e-3)
