"""Unit and property tests of aimoe_lib.models: ModelSpec, its weight matrices and parameter counts.

Every expected count is worked out by hand from the definitions (the arithmetic is in the test),
never copied from what the code prints.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimoe_lib.models import (
    AttentionKind,
    FFNKind,
    ModelSpec,
    NormKind,
    QKNorm,
    Role,
    Stack,
)

# The tiny model of conftest.tiny (d 8, 2 layers, 2 heads of 4, d_ff 16, vocab 10), in pieces:
ATTN = 4 * 8 * 8  # Q, K, V, O, each 8 x 8
FFN2 = 8 * 16 + 16 * 8  # up, down
FFN3 = 3 * 8 * 16  # gate, up, down
LN = 2 * 8  # LayerNorm of width 8: scale and bias
RMS = 8  # RMSNorm of width 8: scale only
EMB = 10 * 8  # embedding; the untied LM head is the same size


# ---------------------------------------------------------------------------- hand-worked counts
def test_dense_gelu_hand_count(make_spec):
    spec = make_spec()
    per_layer = ATTN + FFN2 + 2 * LN  # 256 + 256 + 32 = 544
    assert per_layer == 544
    expected = 2 * per_layer + LN + 2 * EMB  # + final norm + embedding + LM head = 1264
    assert spec.total_params == expected == 1264
    assert spec.active_params == spec.total_params
    assert not spec.is_moe and spec.moe_layers == ()


@pytest.mark.parametrize("ffn", ["gelu", "relu"])
def test_two_matrix_ffn_kinds_count_the_same(make_spec, ffn):
    assert make_spec(ffn=ffn).total_params == 1264


def test_gated_swiglu_rmsnorm_hand_count(make_spec):
    spec = make_spec(ffn="swiglu", norm="rmsnorm")
    per_layer = ATTN + FFN3 + 2 * RMS  # 256 + 384 + 16 = 656
    assert spec.total_params == 2 * per_layer + RMS + 2 * EMB == 1480
    ffn_roles = [m.role for m in spec.matrices() if m.layer == 0 and m.role.is_ffn]
    assert ffn_roles == [Role.FFN_GATE, Role.FFN_UP, Role.FFN_DOWN]
    assert make_spec(ffn="geglu", norm="rmsnorm").total_params == 1480


def test_ffn_kind_properties():
    assert FFNKind.SWIGLU.gated and FFNKind.GEGLU.gated
    assert not FFNKind.GELU.gated and not FFNKind.RELU.gated
    assert FFNKind.SWIGLU.activation == "silu"
    assert FFNKind.GEGLU.activation == "gelu"
    assert FFNKind.RELU.activation == "relu"


def test_gqa_hand_count(make_spec):
    spec = make_spec(n_kv_heads=1)
    # Q 8x8, K and V 8x(1 head * 4), O 8x8
    attn = 8 * 8 + 8 * 4 + 8 * 4 + 8 * 8
    assert attn == 192
    assert spec.total_params == 2 * (attn + FFN2 + 2 * LN) + LN + 2 * EMB == 1136
    shapes = {m.role: m.shape for m in spec.matrices() if m.layer == 0}
    assert shapes[Role.Q] == (8, 8) and shapes[Role.K] == (8, 4) and shapes[Role.V] == (8, 4)
    assert spec.kv_cache_elements_per_token == 2 * 1 * 4
    assert make_spec().kv_cache_elements_per_token == 2 * 2 * 4


MLA = dict(attention="mla", kv_lora_rank=4, qk_nope_head_dim=2, qk_rope_head_dim=1, v_head_dim=3)


def test_mla_without_q_lora_hand_count(make_spec):
    spec = make_spec(**MLA)
    q = 8 * (2 * (2 + 1))  # d x heads*(nope+rope) = 48
    kv_a = 8 * (4 + 1)  # d x (kv_lora + rope) = 40
    kv_b = 4 * (2 * (2 + 3))  # kv_lora x heads*(nope+v) = 40
    o = (2 * 3) * 8  # heads*v x d = 48
    latent_norm = 4  # RMSNorm on the kv latent
    per_layer = q + kv_a + kv_b + o + latent_norm + FFN2 + 2 * LN  # 176 + 4 + 256 + 32
    assert spec.total_params == 2 * per_layer + LN + 2 * EMB == 1112
    layer0 = [m for m in spec.matrices() if m.layer == 0 and m.role.is_attention]
    assert [(m.role, m.shape) for m in layer0] == [
        (Role.Q, (8, 6)), (Role.KV_A, (8, 5)), (Role.KV_B, (4, 10)), (Role.O, (6, 8))]
    assert spec.q_dim == 6
    assert spec.kv_cache_elements_per_token == 4 + 1  # latent + decoupled rope key


def test_mla_with_q_lora_hand_count(make_spec):
    spec = make_spec(**MLA, q_lora_rank=5)
    q_a, q_b = 8 * 5, 5 * 6  # d x q_lora, q_lora x heads*(nope+rope)
    kv_a, kv_b, o = 40, 40, 48
    latent_norms = 4 + 5  # kv latent and q latent
    per_layer = q_a + q_b + kv_a + kv_b + o + latent_norms + FFN2 + 2 * LN  # 198 + 9 + 256 + 32
    assert spec.total_params == 2 * per_layer + LN + 2 * EMB == 1166
    roles = [m.role for m in spec.matrices() if m.layer == 0 and m.role.is_attention]
    assert roles == [Role.Q_A, Role.Q_B, Role.KV_A, Role.KV_B, Role.O]


MOE = dict(n_layers=5, ffn="swiglu", norm="rmsnorm", n_experts=4, top_k=2, d_expert=6,
           n_shared_experts=1, d_shared_expert=10, shared_expert_gate=True, first_dense=1,
           moe_every=2)


def test_moe_layer_placement(make_spec):
    spec = make_spec(**MOE)
    # first_dense=1 then every 2nd layer: layers 0, 1, 3 dense; 2, 4 MoE
    assert spec.moe_layers == (2, 4)
    assert [spec.is_moe_layer(i) for i in range(5)] == [False, False, True, False, True]
    assert make_spec(n_layers=6, n_experts=2, top_k=1).moe_layers == (0, 1, 2, 3, 4, 5)
    assert make_spec(n_layers=6, n_experts=2, top_k=1, moe_every=2).moe_layers == (1, 3, 5)
    assert make_spec(n_layers=6, n_experts=2, top_k=1, first_dense=2).moe_layers == (2, 3, 4, 5)
    assert make_spec(n_layers=7, n_experts=2, top_k=1, first_dense=1,
                     moe_every=3).moe_layers == (3, 6)


def test_moe_shared_experts_gate_first_dense_hand_count(make_spec):
    spec = make_spec(**MOE)
    dense_layer = ATTN + FFN3 + 2 * RMS  # 656
    router = 8 * 4
    shared = 3 * 8 * 10
    gate = 8 * 1
    expert = 3 * 8 * 6  # 144
    moe_total = ATTN + 2 * RMS + router + shared + gate + 4 * expert  # 1128
    moe_active = ATTN + 2 * RMS + router + shared + gate + 2 * expert  # 840
    assert spec.total_params == 3 * dense_layer + 2 * moe_total + RMS + 2 * EMB == 4392
    assert spec.active_params == 3 * dense_layer + 2 * moe_active + RMS + 2 * EMB == 3816
    # router_bias: one bias per expert and MoE layer, always active
    biased = spec.replace(router_bias=True)
    assert biased.total_params == 4392 + 2 * 4
    assert biased.active_params == 3816 + 2 * 4


def test_moe_matrix_flags(make_spec):
    spec = make_spec(**MOE)
    layer2 = [m for m in spec.matrices() if m.layer == 2]
    shared = [m for m in layer2 if m.shared]
    routed = [m for m in layer2 if m.is_routed_expert]
    assert len(shared) == 3 and all(m.expert == 0 and m.in_features * m.out_features == 80
                                   for m in shared)
    assert len(routed) == 4 * 3
    assert sorted({m.expert for m in routed}) == [0, 1, 2, 3]
    assert [m.shape for m in layer2 if m.role is Role.ROUTER] == [(8, 4)]
    assert [m.shape for m in layer2 if m.role is Role.SHARED_GATE] == [(8, 1)]
    assert not any(m.expert >= 0 for m in spec.matrices() if m.layer == 1)


# Embedding conventions: (embedding, head) -> what the embedding matrices add to the body.
BODY = 2 * 544 + LN  # the tiny dense model without its embedding matrices: 1104


@pytest.mark.parametrize(("embedding", "head", "tied_extra", "untied_extra"), [
    (True, True, EMB + 3 * 8, EMB + 3 * 8 + EMB),
    (True, False, EMB + 3 * 8, EMB + 3 * 8),
    (False, True, EMB, EMB),  # the head only: the vocab x d matrix, without positions
    (False, False, 0, 0),
])
def test_tied_head_counted_once_in_every_convention(make_spec, embedding, head, tied_extra,
                                                   untied_extra):
    tied = make_spec(tied_embeddings=True, learned_positions=3)
    untied = make_spec(learned_positions=3)
    assert tied.params(embedding=embedding, head=head) == BODY + tied_extra
    assert untied.params(embedding=embedding, head=head) == BODY + untied_extra


def test_tied_lm_head_listed_but_counted_once(make_spec):
    spec = make_spec(tied_embeddings=True)
    roles = [m.role for m in spec.matrices()]
    assert roles[0] is Role.EMBEDDING and roles[-1] is Role.LM_HEAD  # the head is still an MVM
    assert spec.total_params == BODY + EMB == 1184


def test_encoder_decoder_cross_attention_hand_count(make_spec):
    spec = make_spec(n_layers=1, n_encoder_layers=1, relative_attention_buckets=4)
    buckets = 4 * 2  # one bias per bucket and head, once per stack
    encoder = ATTN + FFN2 + 2 * LN + LN + buckets  # layer + final norm + buckets = 568
    decoder = ATTN + 4 * 8 * 8 + FFN2 + 3 * LN + LN + buckets  # + cross attention, 3 norms = 840
    assert spec.total_params == encoder + decoder + 2 * EMB == 1568
    assert spec.is_encoder_decoder
    cross = [m for m in spec.matrices() if m.role.value.startswith("cross")]
    assert [m.role for m in cross] == [Role.CROSS_Q, Role.CROSS_K, Role.CROSS_V, Role.CROSS_O]
    assert all(m.stack is Stack.DECODER and m.role.is_attention for m in cross)
    encoder_roles = {m.role for m in spec.matrices() if m.stack is Stack.ENCODER}
    assert not encoder_roles & {Role.CROSS_Q, Role.CROSS_K, Role.CROSS_V, Role.CROSS_O}


def test_biases_hand_count(make_spec):
    spec = make_spec(bias=True)
    attn_bias = 4 * 8  # Q, K, V, O
    ffn_bias = 16 + 8  # up, down
    assert spec.total_params == 1264 + 2 * (attn_bias + ffn_bias) == 1376
    assert not next(m for m in spec.matrices() if m.role is Role.LM_HEAD).bias


def test_qkv_bias_only_hand_count(make_spec):
    spec = make_spec(n_kv_heads=1, qkv_bias=True)
    assert spec.total_params == 1136 + 2 * (8 + 4 + 4) == 1168  # Q 8, K 4, V 4; none on O
    biased = {m.role for m in spec.matrices() if m.bias}
    assert biased == {Role.Q, Role.K, Role.V}


# Bases: LayerNorm 1264 (above); RMSNorm 2*(ATTN + FFN2 + 2*RMS) + RMS + 2*EMB = 2*528 + 8 + 160
# = 1224; with one KV head (K, V of 8x4) RMSNorm 2*(192 + 256 + 16) + 8 + 160 = 1096.
@pytest.mark.parametrize(("norm", "qk_norm", "n_kv_heads", "base", "extra_per_layer"), [
    ("layernorm", "per_head", 2, 1264, 2 * (2 * 4)),  # q and k norm of head_dim 4, scale+bias
    ("rmsnorm", "per_head", 2, 1224, 2 * 4),  # scale only
    ("rmsnorm", "full", 1, 1096, 8 + 4),  # q over 2 heads*4, k over 1 head*4
    ("layernorm", "full", 2, 1264, 2 * 8 + 2 * 8),
])
def test_qk_norm_variants_hand_count(make_spec, norm, qk_norm, n_kv_heads, base, extra_per_layer):
    plain = make_spec(norm=norm, n_kv_heads=n_kv_heads)
    assert plain.total_params == base
    spec = plain.replace(qk_norm=qk_norm)
    assert spec.total_params == base + 2 * extra_per_layer


def test_matrices_execution_order_and_orientation(make_spec):
    spec = make_spec()
    mats = spec.matrices()
    assert [m.name for m in mats] == [
        "embedding",
        "decoder.0.attn.q", "decoder.0.attn.k", "decoder.0.attn.v", "decoder.0.attn.o",
        "decoder.0.ffn.ffn_up", "decoder.0.ffn.ffn_down",
        "decoder.1.attn.q", "decoder.1.attn.k", "decoder.1.attn.v", "decoder.1.attn.o",
        "decoder.1.ffn.ffn_up", "decoder.1.ffn.ffn_down",
        "lm_head"]
    by_name = {m.name: m for m in mats}
    assert by_name["embedding"].shape == (10, 8) and by_name["embedding"].layer == -1
    assert by_name["lm_head"].shape == (8, 10)
    assert by_name["decoder.0.ffn.ffn_up"].shape == (8, 16)
    assert by_name["decoder.0.ffn.ffn_down"].shape == (16, 8)


def test_weight_matrix_params_include_bias(make_spec):
    m = next(m for m in make_spec(bias=True).matrices() if m.role is Role.FFN_UP)
    assert m.params == 8 * 16 + 16


def test_enum_fields_coerced_case_insensitively(make_spec):
    spec = make_spec(ffn="SwiGLU", norm="RMSNorm", qk_norm="Per_Head", attention="MHA")
    assert spec.ffn is FFNKind.SWIGLU and spec.norm is NormKind.RMSNORM
    assert spec.qk_norm is QKNorm.PER_HEAD and spec.attention is AttentionKind.MHA


def test_defaults_resolved(make_spec):
    spec = make_spec(n_experts=2, top_k=1)
    assert spec.n_kv_heads == 2 and spec.head_dim == 4
    assert spec.d_expert == 16 and spec.d_shared_expert == 16
    explicit = make_spec(n_heads=3, head_dim=5)  # 3 does not divide 8, fine with head_dim given
    assert explicit.q_dim == 15


def test_replace_validates_again(make_spec):
    spec = make_spec()
    assert spec.replace(d_ff=32).d_ff == 32
    with pytest.raises(ValueError, match="d_ff"):
        spec.replace(d_ff=0)


def test_describe_mentions_sizes(make_spec):
    text = make_spec(**MOE).describe()
    assert "MoE 4 experts top-2 + 1 shared" in text and "5 layers" in text


# ---------------------------------------------------------------------------- validation
def _assert_names(excinfo, field, value):
    msg = str(excinfo.value)
    assert field in msg, msg
    assert repr(value) in msg, msg


SIZE_FIELDS = ["d_model", "n_layers", "n_heads", "d_ff", "vocab_size"]


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("field", SIZE_FIELDS)
def test_nonpositive_required_sizes_rejected(make_spec, field, value):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{field: value})
    _assert_names(excinfo, field, value)


@pytest.mark.parametrize(("field", "value", "extra"), [
    ("n_kv_heads", 0, {}),
    ("head_dim", 0, {}),
    ("head_dim", -4, {}),
    ("d_expert", 0, {"n_experts": 2, "top_k": 1}),
    ("d_shared_expert", 0, {"n_experts": 2, "top_k": 1, "n_shared_experts": 1}),
    ("moe_every", 0, {"n_experts": 2, "top_k": 1}),
])
def test_nonpositive_optional_sizes_rejected(make_spec, field, value, extra):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**extra, **{field: value})
    _assert_names(excinfo, field, value)


NONNEG_FIELDS = ["learned_positions", "relative_attention_buckets", "q_lora_rank", "kv_lora_rank",
                 "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_experts", "top_k",
                 "n_shared_experts", "first_dense", "n_encoder_layers"]


@pytest.mark.parametrize("field", NONNEG_FIELDS)
def test_negative_counts_rejected(make_spec, field):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{field: -1})
    _assert_names(excinfo, field, -1)


@pytest.mark.parametrize(("field", "extra"), [
    ("d_model", {}), ("n_layers", {}), ("n_heads", {}), ("d_ff", {}), ("vocab_size", {}),
    ("n_kv_heads", {}), ("head_dim", {}), ("learned_positions", {}),
    ("n_experts", {}), ("top_k", {"n_experts": 2}),
    ("d_expert", {"n_experts": 2, "top_k": 1}),
    ("moe_every", {"n_experts": 2, "top_k": 1}),
])
def test_booleans_rejected_as_sizes(make_spec, field, extra):
    """True is an int in Python; a size given as True is a mistake, not 1."""
    with pytest.raises(ValueError) as excinfo:
        make_spec(**extra, **{field: True})
    _assert_names(excinfo, field, True)


def test_float_size_rejected(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(d_model=8.0)
    _assert_names(excinfo, "d_model", 8.0)


def test_top_k_above_n_experts(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_experts=2, top_k=3)
    _assert_names(excinfo, "top_k", 3)
    assert "n_experts=2" in str(excinfo.value)


def test_top_k_zero_with_experts(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_experts=2, top_k=0)
    _assert_names(excinfo, "top_k", 0)


@pytest.mark.parametrize(("field", "value"), [
    ("top_k", 1), ("n_shared_experts", 1)])
def test_moe_fields_on_dense_model(make_spec, field, value):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{field: value})
    _assert_names(excinfo, field, value)
    assert "n_experts=0" in str(excinfo.value)


@pytest.mark.parametrize("flag", ["shared_expert_gate", "router_bias"])
def test_moe_flags_on_dense_model(make_spec, flag):
    with pytest.raises(ValueError, match=flag):
        make_spec(**{flag: True})


def test_shared_gate_without_shared_expert(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_experts=2, top_k=1, shared_expert_gate=True)
    _assert_names(excinfo, "shared_expert_gate", True)


def test_n_heads_not_dividing_d_model(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_heads=3)
    _assert_names(excinfo, "n_heads", 3)
    assert "d_model=8" in str(excinfo.value)
    assert "head_dim" in str(excinfo.value)  # the fix


@pytest.mark.parametrize(("n_heads", "kv"), [
    (4, 3),  # 3 KV heads cannot serve 4 query heads in equal groups
    (2, 4),  # more KV heads than query heads
])
def test_n_kv_heads_not_dividing_n_heads(make_spec, n_heads, kv):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_heads=n_heads, n_kv_heads=kv)
    _assert_names(excinfo, "n_kv_heads", kv)
    assert f"n_heads={n_heads}" in str(excinfo.value)


def test_unknown_ffn_lists_valid_kinds(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(ffn="swish")
    _assert_names(excinfo, "ffn", "swish")
    for kind in ("gelu", "relu", "swiglu", "geglu"):
        assert repr(kind) in str(excinfo.value)


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("norm", "batchnorm", ("layernorm", "rmsnorm")),
    ("attention", "linear", ("mha", "mla")),
    ("qk_norm", "l2", ("none", "per_head", "full")),
])
def test_unknown_enum_values(make_spec, field, value, valid):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{field: value})
    _assert_names(excinfo, field, value)
    for v in valid:
        assert repr(v) in str(excinfo.value)


@pytest.mark.parametrize("field", ["q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                                   "qk_rope_head_dim", "v_head_dim"])
def test_mla_dims_with_mha_rejected(make_spec, field):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{field: 4})
    _assert_names(excinfo, field, 4)
    assert "mla" in str(excinfo.value)


@pytest.mark.parametrize("missing", ["kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                     "v_head_dim"])
def test_mla_missing_dims_rejected(make_spec, missing):
    with pytest.raises(ValueError) as excinfo:
        make_spec(**{**MLA, missing: 0})
    _assert_names(excinfo, missing, 0)


@pytest.mark.parametrize(("extra", "value"), [
    ({"first_dense": 2}, 2),  # 2 layers, both dense
    ({"moe_every": 3}, 0),  # 2 layers, the first MoE layer would be layer 2
    ({"first_dense": 1, "n_encoder_layers": 1}, 1),  # the 1-layer encoder has no MoE layer
])
def test_first_dense_leaving_no_moe_layer(make_spec, extra, value):
    with pytest.raises(ValueError) as excinfo:
        make_spec(n_experts=2, top_k=1, **extra)
    _assert_names(excinfo, "first_dense", value)


def test_first_dense_beyond_n_layers_on_dense_model(make_spec):
    with pytest.raises(ValueError) as excinfo:
        make_spec(first_dense=3)
    _assert_names(excinfo, "first_dense", 3)


def test_empty_name_rejected(make_spec):
    with pytest.raises(ValueError, match="name"):
        make_spec(name="")


# ---------------------------------------------------------------------------- properties
def _norm(spec: ModelSpec, width: int) -> int:
    """LayerNorm: scale and bias; RMSNorm: scale only."""
    return 2 * width if spec.norm is NormKind.LAYERNORM else width


def _n_moe_layers(spec: ModelSpec, n_layers: int) -> int:
    """MoE layers are first_dense + moe_every - 1, then every moe_every-th: (n - first) // every."""
    if not spec.n_experts:
        return 0
    return max(0, (n_layers - spec.first_dense) // spec.moe_every)


def _stacks(spec: ModelSpec) -> list[tuple[str, int]]:
    out = [("encoder", spec.n_encoder_layers)] if spec.n_encoder_layers else []
    return out + [("decoder", spec.n_layers)]


def _vector_params(spec: ModelSpec) -> int:
    """Parameters outside weight matrices, from the field definitions in models.py."""
    d, total = spec.d_model, 0
    for name, n in _stacks(spec):
        norms = 3 if (name == "decoder" and spec.n_encoder_layers) else 2  # + cross-attn norm
        per_layer = norms * _norm(spec, d)
        if spec.attention is AttentionKind.MLA:
            per_layer += spec.kv_lora_rank + spec.q_lora_rank  # RMSNorms on the latents
        if spec.qk_norm is QKNorm.PER_HEAD:
            per_layer += 2 * _norm(spec, spec.head_dim)
        elif spec.qk_norm is QKNorm.FULL:
            per_layer += (_norm(spec, spec.n_heads * spec.head_dim)
                          + _norm(spec, spec.n_kv_heads * spec.head_dim))
        total += n * per_layer + _norm(spec, d)  # final norm of the stack
        if spec.router_bias:
            total += _n_moe_layers(spec, n) * spec.n_experts
        total += spec.relative_attention_buckets * spec.n_heads
    return total


def _linear(spec: ModelSpec, n_in: int, n_out: int, bias: bool | None = None) -> int:
    return n_in * n_out + (n_out if (spec.bias if bias is None else bias) else 0)


def _closed_form(spec: ModelSpec, active: bool) -> int:
    """Total or active parameters in closed form, layer by layer, without matrices()."""
    d, h, e = spec.d_model, spec.n_heads, spec.n_experts
    if spec.attention is AttentionKind.MLA:
        qd = h * (spec.qk_nope_head_dim + spec.qk_rope_head_dim)
        q = (_linear(spec, d, spec.q_lora_rank) + _linear(spec, spec.q_lora_rank, qd)
             if spec.q_lora_rank else _linear(spec, d, qd))
        attn = (q + _linear(spec, d, spec.kv_lora_rank + spec.qk_rope_head_dim)
                + _linear(spec, spec.kv_lora_rank, h * (spec.qk_nope_head_dim + spec.v_head_dim))
                + _linear(spec, h * spec.v_head_dim, d))
    else:
        qd, kvd = h * spec.head_dim, spec.n_kv_heads * spec.head_dim
        qkv_b = spec.bias or spec.qkv_bias
        attn = (_linear(spec, d, qd, qkv_b) + 2 * _linear(spec, d, kvd, qkv_b)
                + _linear(spec, qd, d))
    cross_qd = h * spec.head_dim
    # cross-attention Q, K, V carry the same biases as self-attention's (bias or qkv_bias)
    cross = 3 * _linear(spec, d, cross_qd, spec.bias or spec.qkv_bias) + _linear(spec, cross_qd, d)

    def ffn(width: int) -> int:
        n_in = 2 if spec.ffn.gated else 1
        return n_in * _linear(spec, d, width) + _linear(spec, width, d)

    used = spec.top_k if active else e
    moe = (d * e + spec.n_shared_experts * ffn(spec.d_shared_expert)
           + (d if spec.shared_expert_gate else 0) + used * ffn(spec.d_expert))
    total = 0
    for name, n in _stacks(spec):
        per_layer = attn + (cross if name == "decoder" and spec.n_encoder_layers else 0)
        n_moe = _n_moe_layers(spec, n)
        total += n * per_layer + n_moe * moe + (n - n_moe) * ffn(spec.d_ff)
    emb = spec.vocab_size * d + spec.learned_positions * d
    head = 0 if spec.tied_embeddings else d * spec.vocab_size
    return total + emb + head + _vector_params(spec)


@st.composite
def specs(draw, moe: bool | None = None) -> ModelSpec:
    """Small random valid ModelSpecs covering every feature."""
    n_heads = draw(st.integers(1, 4))
    n_kv = draw(st.sampled_from([k for k in range(1, n_heads + 1) if n_heads % k == 0]))
    if draw(st.booleans()):
        head_dim, d_model = draw(st.integers(1, 5)), draw(st.integers(1, 12))
    else:
        head_dim, d_model = None, n_heads * draw(st.integers(1, 4))
    n_layers = draw(st.integers(1, 4))
    n_enc = draw(st.sampled_from([0, 0, 1, 3]))
    kw = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
              head_dim=head_dim, d_ff=draw(st.integers(1, 8)), vocab_size=draw(st.integers(1, 20)),
              ffn=draw(st.sampled_from(list(FFNKind))), norm=draw(st.sampled_from(list(NormKind))),
              bias=draw(st.booleans()), qkv_bias=draw(st.booleans()),
              tied_embeddings=draw(st.booleans()), learned_positions=draw(st.integers(0, 4)),
              relative_attention_buckets=draw(st.integers(0, 3)), n_encoder_layers=n_enc)
    if not n_enc and draw(st.booleans()):  # MLA cross-attention is not defined anywhere
        kw.update(attention="mla", q_lora_rank=draw(st.integers(0, 3)),
                  kv_lora_rank=draw(st.integers(1, 4)), qk_nope_head_dim=draw(st.integers(1, 3)),
                  qk_rope_head_dim=draw(st.integers(1, 3)), v_head_dim=draw(st.integers(1, 3)))
    else:
        kw.update(qk_norm=draw(st.sampled_from(list(QKNorm))))
    n_experts = draw(st.integers(1, 6) if moe else st.just(0) if moe is False
                     else st.integers(0, 6))
    if n_experts:
        shared = draw(st.integers(0, 2))
        min_layers = min(n_layers, n_enc) if n_enc else n_layers
        every = draw(st.integers(1, min_layers))
        kw.update(n_experts=n_experts, top_k=draw(st.integers(1, n_experts)),
                  d_expert=draw(st.none() | st.integers(1, 6)), n_shared_experts=shared,
                  d_shared_expert=draw(st.none() | st.integers(1, 6)),
                  shared_expert_gate=shared > 0 and draw(st.booleans()),
                  router_bias=draw(st.booleans()), moe_every=every,
                  first_dense=draw(st.integers(0, min_layers - every)))
    return ModelSpec(**kw)


PROPS = settings(max_examples=100, deadline=None)


@PROPS
@given(specs())
def test_counts_match_closed_form(spec):
    assert spec.total_params == _closed_form(spec, active=False)
    assert spec.active_params == _closed_form(spec, active=True)


@PROPS
@given(specs())
def test_total_is_matrix_sum_plus_vector_params(spec):
    matrix_sum = sum(m.params for m in spec.matrices()
                     if not (spec.tied_embeddings and m.role is Role.LM_HEAD))
    positions = spec.learned_positions * spec.d_model  # a lookup table, not an MVM
    assert spec.total_params == matrix_sum + positions + _vector_params(spec)


@PROPS
@given(specs())
def test_active_at_most_total(spec):
    assert 0 < spec.active_params <= spec.total_params
    for emb in (True, False):
        for head in (True, False):
            assert spec.params(active=True, embedding=emb, head=head) <= spec.params(
                embedding=emb, head=head)


@PROPS
@given(specs(moe=False))
def test_dense_active_equals_total(spec):
    assert spec.active_params == spec.total_params
    assert not any(m.role is Role.ROUTER or m.expert >= 0 for m in spec.matrices())


@PROPS
@given(specs())
def test_conventions_differ_by_embedding_matrices(spec):
    vd, pd = spec.vocab_size * spec.d_model, spec.learned_positions * spec.d_model
    total = spec.total_params
    body = spec.params(embedding=False, head=False)
    assert total == body + vd + pd + (0 if spec.tied_embeddings else vd)
    assert spec.params(embedding=False, head=True) == body + vd
    assert spec.params(embedding=True, head=False) == body + vd + pd


@PROPS
@given(specs(moe=True))
def test_inactive_share_is_unused_routed_experts(spec):
    """total - active == (E - k) / E x routed expert params, exactly (checked as integers)."""
    routed = sum(m.params for m in spec.matrices() if m.is_routed_expert)
    e, k = spec.n_experts, spec.top_k
    assert (spec.total_params - spec.active_params) * e == (e - k) * routed


@PROPS
@given(specs(moe=True))
def test_counts_monotone_in_n_experts(spec):
    more = spec.replace(n_experts=spec.n_experts + 1)
    n_moe = sum(_n_moe_layers(spec, n) for _, n in _stacks(spec))
    assert more.total_params > spec.total_params
    # at fixed k only the router grows: one column of d weights (+ one routing bias) per MoE layer
    router_growth = n_moe * (spec.d_model + (1 if spec.router_bias else 0))
    assert more.active_params - spec.active_params == router_growth
    assert more.active_params >= spec.active_params


@PROPS
@given(specs())
def test_matrices_per_layer(spec):
    per_ffn = 3 if spec.ffn.gated else 2
    if spec.attention is AttentionKind.MLA:
        n_attn = 5 if spec.q_lora_rank else 4  # (Q | Q_A, Q_B), KV_A, KV_B, O
    else:
        n_attn = 4
    counts = Counter((m.stack, m.layer) for m in spec.matrices() if m.layer >= 0)
    for stack in (Stack.ENCODER, Stack.DECODER):
        n = spec.n_encoder_layers if stack is Stack.ENCODER else spec.n_layers
        cross = 4 if (stack is Stack.DECODER and spec.is_encoder_decoder) else 0
        for layer in range(n):
            if spec.is_moe_layer(layer, stack):
                expected = (n_attn + cross + 1 + (spec.n_experts + spec.n_shared_experts) * per_ffn
                            + (1 if spec.shared_expert_gate else 0))
            else:
                expected = n_attn + cross + per_ffn
            assert counts[(stack, layer)] == expected
    assert sum(counts.values()) == len(spec.matrices()) - 2  # + embedding and LM head


@PROPS
@given(specs())
def test_matrix_names_unique(spec):
    names = [m.name for m in spec.matrices()]
    assert len(names) == len(set(names))
    assert all(m.in_features >= 1 and m.out_features >= 1 for m in spec.matrices())


def test_mla_combinations_that_are_not_modelled_are_refused():
    mla = dict(d_model=64, n_layers=2, n_heads=3, d_ff=32, vocab_size=10, attention="mla",
               kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
    spec = ModelSpec(**mla)  # 3 heads need not divide d_model=64 under MLA
    assert spec.head_dim == 8 + 4
    with pytest.raises(ValueError, match=r"n_encoder_layers=2.*attention='mha'"):
        ModelSpec(**mla, n_encoder_layers=2)
    with pytest.raises(ValueError, match=r"qk_norm='full'"):
        ModelSpec(**mla, qk_norm="full")


def test_replace_derives_defaulted_fields_again():
    base = ModelSpec(d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab_size=10)
    wide = base.replace(d_model=128, n_heads=2, d_ff=256)
    assert (wide.n_kv_heads, wide.head_dim, wide.d_expert) == (2, 64, 256)
    gqa = ModelSpec(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, vocab_size=10)
    assert gqa.replace(d_ff=64).n_kv_heads == 2  # an explicit value is kept
