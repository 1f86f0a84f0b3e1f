"""Tests of aimoe_lib.zoo: 19 published models, their configs and published parameter counts."""

from __future__ import annotations

import pytest

from aimoe_lib import zoo
from aimoe_lib.models import FFNKind, NormKind, Stack
from aimoe_lib.zoo import ALL, HEAD_ONLY, NON_EMBEDDING, Published

EXPECTED_NAMES = (
    "mixtral-8x7b", "mixtral-8x22b", "deepseek-v2-lite", "deepseek-v3", "olmoe-1b-7b",
    "qwen3-30b-a3b", "qwen1.5-moe-a2.7b", "switch-base-128",
    "gpt3-125m", "gpt3-350m", "gpt3-760m", "gpt3-1.3b", "gpt3-2.7b", "gpt3-6.7b", "gpt3-13b",
    "gpt3-175b", "llama-2-7b", "llama-2-70b", "llama-3-8b",
)

FIGURES = [(e.spec.name, p) for e in zoo.entries() for p in e.published]


def _figure_id(item) -> str:
    name, p = item
    conv = {ALL: "all", HEAD_ONLY: "head-only", NON_EMBEDDING: "non-embedding"}[p.convention]
    return f"{name}:{p.quantity}={p.figure}({conv})"


# ---------------------------------------------------------------------------- published figures
@pytest.mark.parametrize("item", FIGURES, ids=[_figure_id(i) for i in FIGURES])
def test_count_matches_published_figure(item):
    """Our count, in the figure's own convention, lies within 1% of what the printed figure means.

    A printed figure stands for the interval of numbers that round to it at its significant
    figures: '46.7B' means 46.65B .. 46.75B, '141B' 140.5B .. 141.5B, '7B' 6.5B .. 7.5B, '350M'
    345M .. 355M (trailing zeros without a decimal point are not significant), '175.0B'
    174.95B .. 175.05B. ``relative_error`` is the distance of our count from that interval,
    relative to the figure (0 inside it). We require it to be at most 1%: vendors round, and
    sometimes count a small piece (a bias, a norm) differently, but a wrong config (vocabulary,
    layer count, expert width, dense layers) moves the count by more than that.
    """
    name, p = item
    e = zoo.entry(name)
    count = e.count(p)  # in p's convention: active or total, embedding / head included or not
    assert p.relative_error(count) <= 0.01, f"{name}: {count / 1e9:.4f}B against {p.figure}"


def test_every_model_publishes_total_and_active():
    for e in zoo.entries():
        quantities = {p.quantity for p in e.published}
        assert quantities == {"total", "active"}, e.spec.name
        assert all(p.source for p in e.published) and e.spec.source


# ---------------------------------------------------------------------------- Published arithmetic
@pytest.mark.parametrize(("figure", "value", "half_unit"), [
    ("46.7B", 46.7e9, 0.05e9),
    ("2.4B", 2.4e9, 0.05e9),
    ("7B", 7e9, 0.5e9),
    ("70B", 70e9, 5e9),  # trailing zero not significant
    ("350M", 350e6, 5e6),
    ("125M", 125e6, 0.5e6),
    ("175.0B", 175e9, 0.05e9),  # with a decimal point the zero is significant
    ("13.0B", 13e9, 0.05e9),
])
def test_published_significant_figures(figure, value, half_unit):
    p = Published("total", figure, ALL, "test")
    assert p.value == pytest.approx(value)
    assert p.half_unit == pytest.approx(half_unit)


def test_relative_error_is_distance_from_rounding_interval():
    p = Published("active", "2.4B", HEAD_ONLY, "test")
    assert p.relative_error(2_400_000_000) == 0.0
    assert p.relative_error(2_449_000_000) == 0.0  # still rounds to 2.4
    assert p.relative_error(2_451_300_000) == pytest.approx((2.4513 - 2.45) / 2.4)
    assert p.relative_error(2_300_000_000) == pytest.approx((2.35 - 2.30) / 2.4)


@pytest.mark.parametrize(("quantity", "figure"), [
    ("peak", "1B"), ("total", "46.7 B"), ("total", "46.7"), ("total", "1.5G"), ("total", "B")])
def test_published_rejects_malformed(quantity, figure):
    with pytest.raises(ValueError):
        Published(quantity, figure, ALL, "test")


# ---------------------------------------------------------------------------- hand-computed totals
def test_mixtral_8x7b_total_by_hand():
    # config.json: d 4096, 32 layers, 32 heads of 128, 8 KV heads, d_ff 14336, vocab 32000,
    # SwiGLU, RMSNorm, 8 experts top-2, untied.
    attn = 2 * 4096 * 4096 + 2 * 4096 * 1024  # Q, O 4096x4096; K, V 4096x(8*128)
    experts = 8 * 3 * 4096 * 14336
    router = 4096 * 8
    norms = 2 * 4096
    total = 32 * (attn + experts + router + norms) + 4096 + 2 * 32000 * 4096
    active = 32 * (attn + 2 * 3 * 4096 * 14336 + router + norms) + 4096 + 2 * 32000 * 4096
    spec = zoo.get("mixtral-8x7b")
    assert spec.total_params == total
    assert spec.active_params == active
    # Independent check: 46,702,792,704 is the parameter count of the Hugging Face safetensors
    # checkpoint mistralai/Mixtral-8x7B-v0.1 (model page, "46.7B params").
    assert total == 46_702_792_704


def test_llama_3_8b_total_by_hand():
    # config.json: d 4096, 32 layers, 32 heads, 8 KV heads, d_ff 14336, vocab 128256, untied
    per_layer = (2 * 4096 * 4096 + 2 * 4096 * 1024) + 3 * 4096 * 14336 + 2 * 4096
    total = 32 * per_layer + 4096 + 2 * 128256 * 4096
    spec = zoo.get("llama-3-8b")
    assert spec.total_params == spec.active_params == total
    # Independent check: the meta-llama/Meta-Llama-3-8B checkpoint holds 8,030,261,248 parameters.
    assert total == 8_030_261_248


def test_olmoe_total_by_hand():
    # config.json: d 2048, 16 layers, 16 heads, d_ff (expert) 1024, vocab 50304, SwiGLU, RMSNorm,
    # 64 experts top-8, untied; QK-norm over the full q (2048) and k (16*128) projections.
    attn = 4 * 2048 * 2048
    qk_norm = 2048 + 2048
    router = 2048 * 64
    norms = 2 * 2048
    total = (16 * (attn + qk_norm + 64 * 3 * 2048 * 1024 + router + norms)
             + 2048 + 2 * 50304 * 2048)
    active = (16 * (attn + qk_norm + 8 * 3 * 2048 * 1024 + router + norms)
              + 2048 + 2 * 50304 * 2048)
    spec = zoo.get("olmoe-1b-7b")
    assert (spec.total_params, spec.active_params) == (total, active)


def test_gpt3_125m_total_by_hand():
    # Brown et al. 2020 Table 2.1: 12 layers, d 768, 12 heads; d_ff 3072; GPT-2 vocab 50257;
    # biases on every linear layer, LayerNorm (scale + bias), 2048 learned positions, tied head.
    attn = 4 * 768 * 768 + 4 * 768
    ffn = 768 * 3072 + 3072 + 3072 * 768 + 768
    norms = 2 * (2 * 768)
    total = 12 * (attn + ffn + norms) + 2 * 768 + 50257 * 768 + 2048 * 768
    spec = zoo.get("gpt3-125m")
    assert spec.total_params == spec.active_params == total
    # Independent check: GPT-2 small has the same shapes with 1024 positions and 124,439,808
    # parameters (huggingface.co/gpt2); GPT-3 Small adds 1024 more position rows.
    assert total == 124_439_808 + 1024 * 768


def test_deepseek_v3_total_by_hand():
    # config_671B.json: d 7168, 61 layers (first 3 dense), 128 heads, MLA q_lora 1536, kv_lora 512,
    # nope 128, rope 64, v 128; dense d_ff 18432; 256 routed experts of 2048 (top-8) + 1 shared;
    # routing bias; vocab 129280 untied.
    attn = (7168 * 1536 + 1536 * 128 * (128 + 64) + 7168 * (512 + 64)
            + 512 * 128 * (128 + 128) + 128 * 128 * 7168)
    per_layer = attn + (1536 + 512) + 2 * 7168  # + latent RMSNorms + two RMSNorms
    expert = 3 * 7168 * 2048
    moe = 7168 * 256 + 256 + expert  # router, routing bias, shared expert
    emb = 129280 * 7168
    total = 61 * per_layer + 3 * 3 * 7168 * 18432 + 58 * (moe + 256 * expert) + 7168 + 2 * emb
    active_no_emb = 61 * per_layer + 3 * 3 * 7168 * 18432 + 58 * (moe + 8 * expert) + 7168 + emb
    spec = zoo.get("deepseek-v3")
    assert spec.total_params == total
    assert spec.params(active=True, embedding=False, head=True) == active_no_emb
    # The main model without the MTP module is "671B" (the 685B checkpoint adds MTP).
    assert 670.5e9 <= total < 671.5e9
    # README_WEIGHTS: 36.6B activated "including 0.9B for the output Head"
    assert round(emb / 1e9, 1) == 0.9


def test_switch_base_128_total_by_hand():
    # T5-Base shapes: d 768, 12 + 12 layers, 12 heads of 64, ReLU d_ff 3072, vocab 32128, RMS-style
    # T5 LayerNorm (scale only), 32 relative-position buckets per stack, tied embedding;
    # MoE with 128 experts, top-1, in layers 1, 3, 5, ... of each stack.
    attn = 4 * 768 * 768
    ffn = 2 * 768 * 3072
    moe = 768 * 128 + 128 * ffn
    moe_active = 768 * 128 + 1 * ffn
    buckets = 32 * 12
    encoder = 12 * attn + 6 * ffn + 12 * 2 * 768 + 768 + buckets
    decoder = 12 * 2 * attn + 6 * ffn + 12 * 3 * 768 + 768 + buckets  # + cross attention, norm
    emb = 32128 * 768  # shared by encoder, decoder and LM head
    spec = zoo.get("switch-base-128")
    assert spec.total_params == encoder + decoder + 12 * moe + emb
    assert spec.active_params == encoder + decoder + 12 * moe_active + emb


# ---------------------------------------------------------------------------- configuration traps
def test_mixtral_8x22b_vocab():
    # Mixtral-8x22B-v0.1 / Instruct config.json: vocab_size 32768 (not 8x7B's 32000)
    spec = zoo.get("mixtral-8x22b")
    assert spec.vocab_size == 32768
    assert (spec.d_model, spec.n_layers, spec.n_heads, spec.n_kv_heads) == (6144, 56, 48, 8)


def test_deepseek_dense_leading_layers():
    v3 = zoo.get("deepseek-v3")
    assert v3.moe_layers == tuple(range(3, 61))  # first_k_dense_replace = 3
    lite = zoo.get("deepseek-v2-lite")
    assert lite.moe_layers == tuple(range(1, 27))  # first_k_dense_replace = 1
    assert lite.q_lora_rank == 0  # V2-Lite does not compress queries
    assert v3.attention.value == lite.attention.value == "mla"


def test_switch_base_128_structure():
    spec = zoo.get("switch-base-128")
    assert spec.ffn is FFNKind.RELU and spec.d_ff == 3072
    assert spec.norm is NormKind.RMSNORM
    assert spec.n_experts == 128 and spec.top_k == 1
    assert spec.tied_embeddings
    assert spec.n_encoder_layers == 12 and spec.n_layers == 12
    odd = (1, 3, 5, 7, 9, 11)
    assert spec.moe_layers == odd
    for stack in (Stack.ENCODER, Stack.DECODER):
        assert tuple(i for i in range(12) if spec.is_moe_layer(i, stack)) == odd
    routers = [(m.stack, m.layer) for m in spec.matrices() if m.role.value == "router"]
    assert routers == [(s, i) for s in (Stack.ENCODER, Stack.DECODER) for i in odd]


def test_gpt3_13b_width():
    # Table 2.1 prints d_model 5140; 40 heads x 128 = 5120 is the real width.
    spec = zoo.get("gpt3-13b")
    assert spec.d_model == 5120 and spec.n_heads == 40 and spec.head_dim == 128


def test_gpt3_family_conventions():
    for name in zoo.families()["gpt3"]:
        spec = zoo.get(name)
        assert spec.bias and spec.tied_embeddings and spec.learned_positions == 2048
        assert spec.d_ff == 4 * spec.d_model and spec.vocab_size == 50257
        assert spec.n_heads * spec.head_dim == spec.d_model


def test_qwen3_non_embedding_gap_is_two_embedding_matrices():
    # The card's 30.5B total vs 29.9B non-embedding: untied embedding + head, 2 x 151936 x 2048
    spec = zoo.get("qwen3-30b-a3b")
    gap = spec.total_params - spec.params(embedding=False, head=False)
    assert gap == 2 * 151936 * 2048
    assert round(gap / 1e9, 1) == 0.6  # 30.5 - 29.9


# ---------------------------------------------------------------------------- lookup
def test_names_lists_all_19():
    assert zoo.names() == EXPECTED_NAMES
    assert len(set(zoo.names())) == 19


def test_entries_match_names():
    entries = zoo.entries()
    assert [e.spec.name for e in entries] == list(EXPECTED_NAMES)


@pytest.mark.parametrize("name", ["Mixtral-8x7B", "MIXTRAL-8X7B", "mixtral-8x7b"])
def test_get_is_case_insensitive(name):
    assert zoo.get(name) == zoo.get("mixtral-8x7b")
    assert zoo.get(name).name == "mixtral-8x7b"


def test_unknown_model_raises_keyerror_naming_known_models():
    with pytest.raises(KeyError) as excinfo:
        zoo.get("gpt-5")
    msg = excinfo.value.args[0]
    assert "'gpt-5'" in msg
    for name in EXPECTED_NAMES:
        assert name in msg


def test_unknown_model_suggests_family():
    with pytest.raises(KeyError) as excinfo:
        zoo.entry("mixtral-8x99b")
    assert "Did you mean mixtral-8x7b, mixtral-8x22b" in excinfo.value.args[0]


def test_families():
    fams = zoo.families()
    assert set(fams) == {"mixtral", "deepseek", "olmoe", "qwen", "switch", "gpt3", "llama"}
    assert fams["gpt3"] == EXPECTED_NAMES[8:16]
    assert sum(len(v) for v in fams.values()) == 19
