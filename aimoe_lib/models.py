"""Transformer model descriptions: dense or mixture-of-experts, their weight matrices and parameter counts.

A :class:`ModelSpec` describes a decoder-only transformer (optionally with an encoder stack, for
Switch-style encoder-decoder models). It enumerates every weight matrix the chip has to hold
(:meth:`ModelSpec.matrices`) and counts parameters (:meth:`ModelSpec.params`) in the conventions that
model vendors use when they publish "total" and "active" figures.

Orientation: a matrix has shape ``(in_features, out_features)``; an MVM reads ``in_features``
inputs and produces ``out_features`` outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from . import checks

__all__ = [
    "FFNKind",
    "AttentionKind",
    "NormKind",
    "QKNorm",
    "Role",
    "Stack",
    "WeightMatrix",
    "ModelSpec",
]


class FFNKind(str, Enum):
    """Feed-forward block: 2-matrix (up -> activation -> down) or 3-matrix gated (gate, up -> act*mul -> down)."""

    GELU = "gelu"
    RELU = "relu"
    SWIGLU = "swiglu"
    GEGLU = "geglu"

    @property
    def gated(self) -> bool:
        """True for the 3-matrix gated kinds (SwiGLU, GeGLU)."""
        return self in (FFNKind.SWIGLU, FFNKind.GEGLU)

    @property
    def activation(self) -> str:
        """Name of the element-wise activation: 'gelu', 'relu' or 'silu'."""
        return {"gelu": "gelu", "relu": "relu", "swiglu": "silu", "geglu": "gelu"}[self.value]


class AttentionKind(str, Enum):
    """Standard multi-head attention (covers GQA and MQA via n_kv_heads) or DeepSeek's multi-head latent attention."""

    MHA = "mha"
    MLA = "mla"


class NormKind(str, Enum):
    """LayerNorm (scale and bias, 2d parameters) or RMSNorm (scale only, d parameters)."""

    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"


class QKNorm(str, Enum):
    """Normalisation of queries and keys: none, per head (Qwen3: head_dim each) or over the full projection (OLMoE)."""

    NONE = "none"
    PER_HEAD = "per_head"
    FULL = "full"


class Role(str, Enum):
    """What a weight matrix does in the transformer (the paper's words where it has them)."""

    EMBEDDING = "embedding"
    Q = "q"
    K = "k"
    V = "v"
    O = "o"  # noqa: E741 - the output projection is called O everywhere
    Q_A = "q_a"  # MLA query down-projection
    Q_B = "q_b"  # MLA query up-projection
    KV_A = "kv_a"  # MLA joint KV down-projection (+ decoupled RoPE key)
    KV_B = "kv_b"  # MLA KV up-projection
    CROSS_Q = "cross_q"
    CROSS_K = "cross_k"
    CROSS_V = "cross_v"
    CROSS_O = "cross_o"
    FFN_GATE = "ffn_gate"
    FFN_UP = "ffn_up"
    FFN_DOWN = "ffn_down"
    ROUTER = "router"
    SHARED_GATE = "shared_gate"  # Qwen1.5-MoE's sigmoid gate on the shared expert
    LM_HEAD = "lm_head"

    @property
    def is_attention(self) -> bool:
        """True for self- and cross-attention projections (standard and MLA)."""
        return self in _ATTENTION_ROLES

    @property
    def is_ffn(self) -> bool:
        """True for FFN matrices (dense FFN, routed and shared experts)."""
        return self in (Role.FFN_GATE, Role.FFN_UP, Role.FFN_DOWN)


_ATTENTION_ROLES = frozenset(
    {Role.Q, Role.K, Role.V, Role.O, Role.Q_A, Role.Q_B, Role.KV_A, Role.KV_B,
     Role.CROSS_Q, Role.CROSS_K, Role.CROSS_V, Role.CROSS_O}
)


class Stack(str, Enum):
    """Which transformer stack a layer belongs to (decoder-only models have only the decoder)."""

    DECODER = "decoder"
    ENCODER = "encoder"


@dataclass(frozen=True)
class WeightMatrix:
    """One weight matrix of the model, in MVM orientation (in_features x out_features)."""

    name: str
    """Unique dotted name, e.g. ``decoder.3.expert5.ffn_up``."""
    stack: Stack
    """Encoder or decoder; embedding and LM head belong to the decoder."""
    layer: int
    """Layer index within its stack; -1 for the embedding and the LM head."""
    role: Role
    """What the matrix does."""
    in_features: int
    """Rows of the matrix = length of the MVM input vector."""
    out_features: int
    """Columns of the matrix = length of the MVM output vector."""
    expert: int = -1
    """Expert index within its layer (routed or shared), -1 for non-expert matrices."""
    shared: bool = False
    """True for the always-active shared experts (DeepSeek, Qwen1.5-MoE)."""
    bias: bool = False
    """Whether a bias vector of length out_features belongs to this matrix (counted in params)."""

    def __post_init__(self) -> None:
        if (type(self.in_features) is int and type(self.out_features) is int  # fast path
                and type(self.layer) is int and type(self.expert) is int
                and self.in_features > 0 and self.out_features > 0
                and self.layer >= -1 and self.expert >= -1 and type(self.name) is str
                and type(self.stack) is Stack and type(self.role) is Role
                and type(self.shared) is bool and type(self.bias) is bool):
            return
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        checks.string("WeightMatrix", "name", self.name, empty=False)
        set_("stack", checks.enum("WeightMatrix", "stack", self.stack, Stack))
        set_("role", checks.enum("WeightMatrix", "role", self.role, Role))
        for f, lo in (("layer", -1), ("in_features", 1), ("out_features", 1), ("expert", -1)):
            set_(f, checks.integer("WeightMatrix", f, getattr(self, f), minimum=lo,
                                   maximum=checks.INT32_MAX))
        for f in ("shared", "bias"):
            set_(f, checks.boolean("WeightMatrix", f, getattr(self, f)))

    @property
    def params(self) -> int:
        """Parameters of the matrix including its bias."""
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    @property
    def is_routed_expert(self) -> bool:
        """True for matrices of routed (top-k selected) experts."""
        return self.expert >= 0 and not self.shared

    @property
    def shape(self) -> tuple[int, int]:
        """(in_features, out_features)."""
        return (self.in_features, self.out_features)


def _err(field: str, value, why: str, fix: str) -> ValueError:
    return ValueError(f"ModelSpec.{field}={value!r}: {why}; {fix}")


def _coerce_enum(enum_cls, field: str, value):
    return checks.enum("ModelSpec", field, value, enum_cls)


_BOOL_FIELDS = ("bias", "qkv_bias", "tied_embeddings", "shared_expert_gate", "router_bias")


@dataclass(frozen=True)
class ModelSpec:
    """A transformer, dense or mixture-of-experts, described by its published configuration.

    Sizes follow Hugging Face config names where they exist (hidden_size -> ``d_model``,
    intermediate_size -> ``d_ff``, moe_intermediate_size -> ``d_expert``, ...). Fields left at
    ``None`` are resolved in ``__post_init__`` (e.g. ``n_kv_heads`` defaults to ``n_heads``).
    """

    d_model: int
    """Residual stream width (hidden_size)."""
    n_layers: int
    """Decoder layers (num_hidden_layers)."""
    n_heads: int
    """Query heads per attention layer."""
    d_ff: int
    """FFN width of dense layers; default width of experts."""
    vocab_size: int
    """Vocabulary size: embedding rows and LM-head columns."""
    name: str = "custom"
    """Preset name or a label of your choice."""
    n_kv_heads: int | None = None
    """Key/value heads (GQA/MQA); default n_heads (plain multi-head attention)."""
    head_dim: int | None = None
    """Dimension per head; default d_model // n_heads (which must then divide evenly)."""
    ffn: FFNKind | str = FFNKind.GELU
    """FFN kind: 'gelu' or 'relu' (2 matrices), 'swiglu' or 'geglu' (3 matrices, gated)."""
    norm: NormKind | str = NormKind.LAYERNORM
    """'layernorm' (2d parameters) or 'rmsnorm' (d parameters)."""
    bias: bool = False
    """Every linear layer has a bias (GPT-3)."""
    qkv_bias: bool = False
    """Only the Q, K, V projections have biases (Qwen1.5)."""
    qk_norm: QKNorm | str = QKNorm.NONE
    """Query/key normalisation: 'none', 'per_head' (Qwen3) or 'full' (OLMoE)."""
    tied_embeddings: bool = False
    """LM head shares the input embedding matrix (counted once)."""
    learned_positions: int = 0
    """Rows of a learned absolute position embedding (GPT-3: 2048); 0 for RoPE / relative."""
    relative_attention_buckets: int = 0
    """T5-style relative position buckets (one bias per head and bucket, first layer of each stack)."""
    attention: AttentionKind | str = AttentionKind.MHA
    """'mha' (standard, incl. GQA) or 'mla' (DeepSeek multi-head latent attention)."""
    q_lora_rank: int = 0
    """MLA: rank of the query compression; 0 = queries not compressed (DeepSeek-V2-Lite)."""
    kv_lora_rank: int = 0
    """MLA: rank of the joint key/value compression (the cached latent)."""
    qk_nope_head_dim: int = 0
    """MLA: per-head query/key dimension without rotary embedding."""
    qk_rope_head_dim: int = 0
    """MLA: per-head decoupled rotary query/key dimension."""
    v_head_dim: int = 0
    """MLA: per-head value dimension."""
    n_experts: int = 0
    """Routed experts per MoE layer; 0 for a dense model."""
    top_k: int = 0
    """Routed experts each token uses per MoE layer (k)."""
    d_expert: int | None = None
    """Width of each routed expert's FFN (moe_intermediate_size); default d_ff."""
    n_shared_experts: int = 0
    """Always-active shared experts per MoE layer (DeepSeekMoE, Qwen1.5-MoE)."""
    d_shared_expert: int | None = None
    """Width of each shared expert; default d_expert."""
    shared_expert_gate: bool = False
    """A d_model x 1 sigmoid gate scales the shared expert (Qwen1.5-MoE)."""
    router_bias: bool = False
    """Per-expert routing bias vector (DeepSeek-V3 e_score_correction_bias)."""
    moe_every: int = 1
    """Every n-th layer (after the leading dense ones) is MoE; Switch uses 2 (layers 1, 3, 5, ...)."""
    first_dense: int = 0
    """Leading dense layers before the first MoE layer (DeepSeek first_k_dense_replace)."""
    n_encoder_layers: int = 0
    """Encoder layers for encoder-decoder models (Switch/T5); 0 = decoder-only. Decoder layers then
    carry cross-attention."""
    source: str = ""
    """Where the numbers come from (config file, paper)."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        # fields left to their derived default: replace() derives them again from the new values
        set_("_derived", frozenset(f for f in ("n_kv_heads", "head_dim", "d_expert", "d_shared_expert")
                                   if getattr(self, f) is None))
        if not isinstance(self.name, str) or not self.name:
            raise _err("name", self.name, "must be a non-empty string", "give the model a label")
        if not isinstance(self.source, str):
            raise _err("source", self.source, "must be a string", "say where the numbers come from, "
                       "or leave it ''")
        for f in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size"):
            set_(f, checks.integer("ModelSpec", f, getattr(self, f), minimum=1,
                                   maximum=checks.INT32_MAX, fix=f"pass a positive integer {f}"))
        for f in ("learned_positions", "relative_attention_buckets", "q_lora_rank", "kv_lora_rank",
                  "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_experts", "top_k",
                  "n_shared_experts", "first_dense", "n_encoder_layers"):
            set_(f, checks.integer("ModelSpec", f, getattr(self, f), minimum=0,
                                   maximum=checks.INT32_MAX,
                                   fix=f"pass 0 or a positive integer {f}"))
        for f in ("n_kv_heads", "head_dim", "d_expert", "d_shared_expert"):
            set_(f, checks.optional_integer("ModelSpec", f, getattr(self, f), minimum=1,
                                            maximum=checks.INT32_MAX,
                                            fix=f"pass a positive integer {f}, or None to derive it"))
        set_("moe_every", checks.integer("ModelSpec", "moe_every", self.moe_every, minimum=1,
                                         maximum=checks.INT32_MAX,
                                         fix="use 1 for MoE in every layer, 2 for every other layer"))
        for f in _BOOL_FIELDS:
            set_(f, checks.boolean("ModelSpec", f, getattr(self, f)))
        set_("ffn", _coerce_enum(FFNKind, "ffn", self.ffn))
        set_("norm", _coerce_enum(NormKind, "norm", self.norm))
        set_("qk_norm", _coerce_enum(QKNorm, "qk_norm", self.qk_norm))
        set_("attention", _coerce_enum(AttentionKind, "attention", self.attention))

        if self.n_kv_heads is None:
            set_("n_kv_heads", self.n_heads)
        kv = self.n_kv_heads
        if not 1 <= kv <= self.n_heads:
            raise _err("n_kv_heads", kv, f"must be in 1..n_heads={self.n_heads}",
                       "use n_heads for multi-head, 1 for multi-query attention")
        if self.n_heads % kv:
            raise _err("n_kv_heads", kv, f"must divide n_heads={self.n_heads} (each KV head serves "
                       "a whole group of query heads)", "choose a divisor of n_heads")
        if self.head_dim is None and self.attention is AttentionKind.MLA:
            set_("head_dim", max(1, self.qk_nope_head_dim + self.qk_rope_head_dim))
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise _err("n_heads", self.n_heads, f"does not divide d_model={self.d_model}",
                           "choose n_heads dividing d_model or set head_dim explicitly")
            set_("head_dim", self.d_model // self.n_heads)

        if self.attention is AttentionKind.MLA:
            for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                if getattr(self, f) < 1:
                    raise _err(f, getattr(self, f), "must be >= 1 for attention='mla'",
                               "give the MLA dimensions from the model's config")
            if self.n_encoder_layers:
                raise _err("n_encoder_layers", self.n_encoder_layers, "MLA is modelled for "
                           "decoder-only models only", "use attention='mha' for encoder-decoders")
            if self.qk_norm is not QKNorm.NONE:
                raise _err("qk_norm", self.qk_norm.value, "MLA normalises its latents, not q/k",
                           "leave qk_norm='none' with attention='mla'")
        else:
            for f in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                      "v_head_dim"):
                if getattr(self, f):
                    raise _err(f, getattr(self, f), "is an MLA dimension but attention='mha'",
                               "set attention='mla' or leave it 0")

        if self.d_expert is None:
            set_("d_expert", self.d_ff)
        if self.d_shared_expert is None:
            set_("d_shared_expert", self.d_expert)
        if self.n_experts == 0:
            for f in ("top_k", "n_shared_experts"):
                if getattr(self, f):
                    raise _err(f, getattr(self, f), "is set but n_experts=0 (a dense model)",
                               "set n_experts >= 1 for an MoE, or leave it 0")
            if self.shared_expert_gate or self.router_bias:
                raise _err("n_experts", 0, "shared_expert_gate/router_bias need experts",
                           "set n_experts >= 1 or turn them off")
        else:
            if not 1 <= self.top_k <= self.n_experts:
                raise _err("top_k", self.top_k, f"must be in 1..n_experts={self.n_experts}",
                           "each token picks k of the E experts, so 1 <= k <= E")
            if self.shared_expert_gate and self.n_shared_experts == 0:
                raise _err("shared_expert_gate", True, "needs n_shared_experts >= 1",
                           "add a shared expert or turn the gate off")
            for stack in self._stacks():
                if not self._n_moe_layers(self._n_stack_layers(stack)):
                    raise _err("first_dense", self.first_dense,
                               f"leaves no MoE layer in the {stack.value} stack "
                               f"({self._n_stack_layers(stack)} layers, moe_every={self.moe_every})",
                               "lower first_dense or moe_every")
        if self.first_dense > self.n_layers:
            raise _err("first_dense", self.first_dense, f"exceeds n_layers={self.n_layers}",
                       "use at most n_layers")

    # ---------------------------------------------------------------- structure
    def _stacks(self) -> tuple[Stack, ...]:
        return (Stack.ENCODER, Stack.DECODER) if self.n_encoder_layers else (Stack.DECODER,)

    def _n_stack_layers(self, stack: Stack) -> int:
        return self.n_encoder_layers if stack is Stack.ENCODER else self.n_layers

    def _moe_layers(self, n: int) -> tuple[int, ...]:
        """MoE layers among the first ``n``: first_dense + moe_every - 1, then every moe_every."""
        if not self.n_experts:
            return ()
        return tuple(range(self.first_dense + self.moe_every - 1, n, self.moe_every))

    def _n_moe_layers(self, n: int) -> int:
        """len(_moe_layers(n)) without listing them: floor((n - first_dense) / moe_every)."""
        if not self.n_experts:
            return 0
        return max(0, (n - self.first_dense) // self.moe_every)

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.n_experts > 0

    @property
    def is_encoder_decoder(self) -> bool:
        """True when the model has an encoder stack (Switch/T5 style)."""
        return self.n_encoder_layers > 0

    @property
    def moe_layers(self) -> tuple[int, ...]:
        """Indices of the MoE layers of the decoder stack."""
        return self._moe_layers(self.n_layers)

    def is_moe_layer(self, layer: int, stack: Stack = Stack.DECODER) -> bool:
        """Whether ``layer`` (0 .. layers of the stack - 1) of ``stack`` (a :class:`Stack` or
        ``'encoder'`` / ``'decoder'``) has an MoE FFN, in constant time (no list of layers).
        A layer outside the stack, a non-integer layer or an unknown stack is refused."""
        if type(stack) is not Stack:
            stack = checks.enum("ModelSpec.is_moe_layer()", "stack", stack, Stack)
        n = self._n_stack_layers(stack)
        if not n:
            raise ValueError(f"ModelSpec.is_moe_layer(stack={stack.value!r}): {self.name!r} has "
                             f"no {stack.value} layers; use stack='decoder'")
        if type(layer) is not int or not 0 <= layer < n:
            layer = checks.integer(
                "ModelSpec.is_moe_layer()", "layer", layer, minimum=0, maximum=n - 1,
                fix=f"pass a layer index 0..{n - 1} of the {stack.value} stack ({n} layers)")
        fd, every = self.first_dense, self.moe_every
        return (bool(self.n_experts) and fd <= layer
                and (layer - fd) % every == every - 1)

    @property
    def q_dim(self) -> int:
        """Length of all query heads together (MLA: heads x (nope + rope))."""
        if self.attention is AttentionKind.MLA:
            return self.n_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
        return self.n_heads * self.head_dim

    @property
    def kv_cache_elements_per_token(self) -> int:
        """KV-cache elements one token leaves per layer: 2 x kv heads x head_dim, or MLA's latent + rope key."""
        if self.attention is AttentionKind.MLA:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.n_kv_heads * self.head_dim

    # ---------------------------------------------------------------- matrices
    def _attention_matrices(self, prefix: str, stack: Stack, layer: int) -> list[WeightMatrix]:
        d, b = self.d_model, self.bias
        mk = lambda role, i, o, bias=b: WeightMatrix(  # noqa: E731
            f"{prefix}.{role.value}", stack, layer, role, i, o, bias=bias)
        if self.attention is AttentionKind.MLA:
            h = self.n_heads
            out = []
            if self.q_lora_rank:
                out += [mk(Role.Q_A, d, self.q_lora_rank), mk(Role.Q_B, self.q_lora_rank, self.q_dim)]
            else:
                out.append(mk(Role.Q, d, self.q_dim))
            out += [mk(Role.KV_A, d, self.kv_lora_rank + self.qk_rope_head_dim),
                    mk(Role.KV_B, self.kv_lora_rank, h * (self.qk_nope_head_dim + self.v_head_dim)),
                    mk(Role.O, h * self.v_head_dim, d)]
            return out
        kvd = self.n_kv_heads * self.head_dim
        qb = b or self.qkv_bias
        return [mk(Role.Q, d, self.q_dim, qb), mk(Role.K, d, kvd, qb), mk(Role.V, d, kvd, qb),
                mk(Role.O, self.q_dim, d)]

    def _cross_attention_matrices(self, prefix: str, layer: int) -> list[WeightMatrix]:
        d, qd, b = self.d_model, self.q_dim, self.bias
        qb = b or self.qkv_bias
        roles = ((Role.CROSS_Q, d, qd, qb), (Role.CROSS_K, d, qd, qb), (Role.CROSS_V, d, qd, qb),
                 (Role.CROSS_O, qd, d, b))
        return [WeightMatrix(f"{prefix}.{r.value}", Stack.DECODER, layer, r, i, o, bias=bb)
                for r, i, o, bb in roles]

    def _ffn_matrices(self, prefix: str, stack: Stack, layer: int, width: int,
                      expert: int = -1, shared: bool = False) -> list[WeightMatrix]:
        d, b = self.d_model, self.bias
        roles = [(Role.FFN_GATE, d, width)] if self.ffn.gated else []
        roles += [(Role.FFN_UP, d, width), (Role.FFN_DOWN, width, d)]
        return [WeightMatrix(f"{prefix}.{r.value}", stack, layer, r, i, o, expert, shared, b)
                for r, i, o in roles]

    def _layer_matrices(self, stack: Stack, layer: int, one_each: bool = False) -> list[WeightMatrix]:
        """The layer's matrices; ``one_each`` lists only the first shared and the first routed
        expert (all experts of a kind are equal: what counting needs)."""
        p = f"{stack.value}.{layer}"
        out = self._attention_matrices(f"{p}.attn", stack, layer)
        if stack is Stack.DECODER and self.is_encoder_decoder:
            out += self._cross_attention_matrices(f"{p}.cross", layer)
        if not self.is_moe_layer(layer, stack):
            return out + self._ffn_matrices(f"{p}.ffn", stack, layer, self.d_ff)
        out.append(WeightMatrix(f"{p}.router", stack, layer, Role.ROUTER, self.d_model,
                                self.n_experts))
        for e in range(min(self.n_shared_experts, 1) if one_each else self.n_shared_experts):
            out += self._ffn_matrices(f"{p}.shared{e}", stack, layer, self.d_shared_expert, e, True)
        if self.shared_expert_gate:
            out.append(WeightMatrix(f"{p}.shared_gate", stack, layer, Role.SHARED_GATE,
                                    self.d_model, 1))
        for e in range(1 if one_each else self.n_experts):
            out += self._ffn_matrices(f"{p}.expert{e}", stack, layer, self.d_expert, e)
        return out

    @cached_property
    def _matrices(self) -> tuple[WeightMatrix, ...]:
        d = self.d_model
        out = [WeightMatrix("embedding", Stack.DECODER, -1, Role.EMBEDDING, self.vocab_size, d)]
        for stack in self._stacks():
            for layer in range(self._n_stack_layers(stack)):
                out += self._layer_matrices(stack, layer)
        out.append(WeightMatrix("lm_head", Stack.DECODER, -1, Role.LM_HEAD, d, self.vocab_size,
                                bias=False))
        return tuple(out)

    def matrices(self) -> tuple[WeightMatrix, ...]:
        """Every weight matrix in execution order: embedding, each layer (attention, [cross-attention],
        router, shared experts, routed experts or dense FFN), LM head.

        With tied embeddings the LM head is listed (it is an MVM) but shares its parameters with the
        embedding; :meth:`params` counts them once.
        """
        return self._matrices

    # ---------------------------------------------------------------- counting
    def _norm_params(self, width: int) -> int:
        return 2 * width if self.norm is NormKind.LAYERNORM else width

    def _vector_params(self) -> int:
        """Parameters outside weight matrices and embeddings: norms, qk-norms, routing biases, relative position biases."""
        total = 0
        for stack in self._stacks():
            n = self._n_stack_layers(stack)
            norms_per_layer = 3 if (stack is Stack.DECODER and self.is_encoder_decoder) else 2
            per_layer = norms_per_layer * self._norm_params(self.d_model)
            if self.attention is AttentionKind.MLA:
                # MLA normalises its compressed latents (RMSNorm on q_lora_rank and kv_lora_rank).
                per_layer += self.kv_lora_rank + self.q_lora_rank
            if self.qk_norm is QKNorm.PER_HEAD:
                per_layer += 2 * self._norm_params(self.head_dim)
            elif self.qk_norm is QKNorm.FULL:
                per_layer += self._norm_params(self.q_dim) + self._norm_params(
                    self.n_kv_heads * self.head_dim)
            total += n * per_layer + self._norm_params(self.d_model)  # + final norm of the stack
            if self.router_bias:
                total += self._n_moe_layers(n) * self.n_experts
            total += self.relative_attention_buckets * self.n_heads
        return total

    def _embedding_params(self) -> int:
        return self.vocab_size * self.d_model + self.learned_positions * self.d_model

    def params(self, active: bool = False, embedding: bool = True, head: bool = True) -> int:
        """Parameter count.

        ``active`` counts what one token uses: routed experts contribute only top_k of n_experts
        per MoE layer; everything else counts in full. ``embedding`` includes the input embedding
        (and a learned position embedding); ``head`` includes the LM head.

        With tied embeddings, embedding and head are one matrix: it is counted once if either flag
        is set. Vendors publish with different flags (see ``zoo``): Mixtral, Qwen and OLMoE count
        both; DeepSeek's active figures leave out the input embedding; "non-embedding" counts
        neither.
        """
        active = checks.boolean("ModelSpec.params()", "active", active)
        embedding = checks.boolean("ModelSpec.params()", "embedding", embedding)
        head = checks.boolean("ModelSpec.params()", "head", head)
        body = self._vector_params()
        routed = 0
        # All dense layers of a stack hold equal matrices, and so do all its MoE layers and all
        # experts of a kind: count one of each and multiply, so counting takes constant time
        # whatever the number of layers and experts.
        for stack in self._stacks():
            n = self._n_stack_layers(stack)
            n_moe = self._n_moe_layers(n)
            for count, layer in ((n - n_moe, 0), (n_moe, self.first_dense + self.moe_every - 1)):
                if not count:  # layer 0 is dense whenever a dense layer exists
                    continue
                for m in self._layer_matrices(stack, layer, one_each=True):
                    if m.is_routed_expert:
                        routed += count * self.n_experts * m.params
                    elif m.shared:
                        body += count * self.n_shared_experts * m.params
                    else:
                        body += count * m.params
        if active and self.n_experts:
            routed = routed * self.top_k // self.n_experts  # all experts of a layer are equal
        lm = self.d_model * self.vocab_size
        if self.tied_embeddings:
            emb = self._embedding_params() if (embedding or head) else 0
            if not embedding and head:
                emb = lm
        else:
            emb = (self._embedding_params() if embedding else 0) + (lm if head else 0)
        return body + routed + emb

    @property
    def total_params(self) -> int:
        """All parameters, embeddings and LM head included (tied ones once)."""
        return self.params(active=False)

    @property
    def active_params(self) -> int:
        """Parameters one token uses, embeddings and LM head included (Mixtral's convention)."""
        return self.params(active=True)

    def replace(self, **changes) -> ModelSpec:
        """A copy with some fields changed (validated again). Fields that were left to their
        derived default (n_kv_heads, head_dim, d_expert, d_shared_expert) are derived again from
        the new values unless given."""
        fields = [f.name for f in dataclasses.fields(self) if f.init]
        for k, v in changes.items():
            if k not in fields:
                raise ValueError(f"{checks.label('ModelSpec.replace()', k, v)}: unknown field"
                                 f"{checks._suggest(k, fields)}; change one of the fields "
                                 f"{', '.join(fields)}")
        for f in self._derived:
            changes.setdefault(f, None)
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line: kind, sizes and parameter counts."""
        kind = (f"MoE {self.n_experts} experts top-{self.top_k}"
                + (f" + {self.n_shared_experts} shared" if self.n_shared_experts else "")
                if self.is_moe else "dense")
        return (f"{self.name}: {kind}, {self.n_layers} layers, d_model {self.d_model}, "
                f"{self.total_params / 1e9:.2f}B total / {self.active_params / 1e9:.2f}B active")
