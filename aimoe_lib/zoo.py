"""Real published transformers, dense and mixture-of-experts, each with its config source and the
parameter counts its authors published (and the counting convention they used).

>>> from aimoe_lib import zoo
>>> spec = zoo.get("Mixtral-8x7B")          # case-insensitive
>>> round(spec.total_params / 1e9, 1), round(spec.active_params / 1e9, 1)
(46.7, 12.9)

An unknown name raises :class:`UnknownModelError`, a ValueError that is also a KeyError (what
earlier versions raised), naming the value, the closest names and every known one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

from . import checks
from .models import ModelSpec

__all__ = ["Convention", "Published", "ZooEntry", "UnknownModelError", "get", "entry", "names",
           "entries", "families"]


class UnknownModelError(KeyError, ValueError):
    """A name that is not a zoo preset. A ValueError (as every refused argument) and a KeyError
    (as a failed lookup, for code written against earlier versions); its text is the plain
    message (a KeyError alone would print it in quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Convention:
    """Which embedding matrices a published parameter count includes."""

    embedding: bool
    """Input embedding (and learned position embedding) counted."""
    head: bool
    """LM head counted (with tied embeddings it is the same matrix, counted once)."""
    label: str
    """How the vendor words it."""

    def __post_init__(self) -> None:
        for f in ("embedding", "head"):
            object.__setattr__(self, f, checks.boolean("Convention", f, getattr(self, f)))
        checks.string("Convention", "label", self.label)


ALL = Convention(True, True, "embedding and LM head included")
HEAD_ONLY = Convention(False, True, "LM head included, input embedding left out (DeepSeek)")
NON_EMBEDDING = Convention(False, False, "non-embedding (neither input embedding nor LM head)")

_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


@dataclass(frozen=True)
class Published:
    """A parameter count as its authors published it."""

    quantity: str
    """'total' or 'active'."""
    figure: str
    """The figure as printed, e.g. '46.7B' (its digits say how precise it is)."""
    convention: Convention
    """What the figure counts."""
    source: str
    """Where it is printed, with a short quote."""

    def __post_init__(self) -> None:
        if self.quantity not in ("total", "active"):
            raise ValueError(f"Published.quantity={self.quantity!r}: use 'total' or 'active'")
        if not isinstance(self.figure, str) or not re.fullmatch(r"\d+(\.\d+)?[KMBT]", self.figure):
            raise ValueError(f"Published.figure={self.figure!r}: write it as printed, e.g. '46.7B'")
        checks.instance("Published", "convention", self.convention, Convention,
                        fix="pass zoo.ALL, zoo.HEAD_ONLY, zoo.NON_EMBEDDING or a Convention")
        checks.string("Published", "source", self.source)

    @property
    def value(self) -> float:
        """The figure as a number of parameters."""
        return float(self.figure[:-1]) * _SUFFIX[self.figure[-1]]

    @property
    def half_unit(self) -> float:
        """Half a unit of the last significant printed digit: '2.4B' stands for 2.35B .. 2.45B.

        Standard significant-figure reading: trailing zeros of a figure without a decimal point are
        not significant ('350M' = 3.5e8 +- 5M, '70B' +- 5B), with one (as in '175.0B') they are.
        """
        num = self.figure[:-1]
        if "." in num:
            exponent = -len(num.split(".")[1])
        else:
            exponent = len(num) - len(num.rstrip("0")) if num.rstrip("0") else 0
        return 0.5 * 10.0 ** exponent * _SUFFIX[self.figure[-1]]

    def relative_error(self, count: int) -> float:
        """Distance of ``count`` from the interval the printed figure rounds from, relative to it.

        0 when ``count`` rounds to the printed figure; e.g. 2.4513B against '2.4B' gives
        (2.4513 - 2.45) / 2.4 = 0.05%.
        """
        count = checks.real("Published.relative_error()", "count", count, minimum=0,
                            fix="pass a parameter count (e.g. ZooEntry.count(published))")
        lo, hi = self.value - self.half_unit, self.value + self.half_unit
        return max(lo - count, count - hi, 0.0) / self.value


@dataclass(frozen=True)
class ZooEntry:
    """A preset: the model, its family and what its authors published about it."""

    spec: ModelSpec
    family: str
    published: tuple[Published, ...]
    notes: str = ""

    def __post_init__(self) -> None:
        checks.instance("ZooEntry", "spec", self.spec, ModelSpec)
        checks.string("ZooEntry", "family", self.family, empty=False)
        pub = checks.items("ZooEntry", "published", self.published, nonempty=False,
                           fix="pass a tuple of zoo.Published")
        for p in pub:
            checks.instance("ZooEntry", "published", p, Published,
                            fix="pass a tuple of zoo.Published")
        object.__setattr__(self, "published", pub)
        checks.string("ZooEntry", "notes", self.notes)

    def count(self, p: Published) -> int:
        """Our parameter count in the convention of the published figure ``p``."""
        return self.spec.params(active=p.quantity == "active", embedding=p.convention.embedding,
                                head=p.convention.head)


_REGISTRY: dict[str, Callable[[], ZooEntry]] = {}
_CANONICAL: dict[str, str] = {}


def _preset(name: str):
    def deco(fn: Callable[[], ZooEntry]) -> Callable[[], ZooEntry]:
        _REGISTRY[name.lower()] = fn
        _CANONICAL[name.lower()] = name
        return fn
    return deco


# ------------------------------------------------------------------------------- Mixtral
_MIXTRAL_PAPER = "Jiang et al. 2024, 'Mixtral of Experts', arXiv:2401.04088"


@_preset("mixtral-8x7b")
def _mixtral_8x7b() -> ZooEntry:
    src = "huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json"
    spec = ModelSpec(name="mixtral-8x7b", d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                     d_ff=14336, vocab_size=32000, ffn="swiglu", norm="rmsnorm", n_experts=8,
                     top_k=2, source=src)
    return ZooEntry(spec, "mixtral", (
        Published("total", "46.7B", ALL, "mistral.ai/news/mixtral-of-experts: 'Mixtral has 46.7B "
                  "total parameters but only uses 12.9B parameters per token'"),
        Published("active", "12.9B", ALL, "mistral.ai/news/mixtral-of-experts (same sentence)"),
    ), notes=_MIXTRAL_PAPER)


@_preset("mixtral-8x22b")
def _mixtral_8x22b() -> ZooEntry:
    src = ("huggingface.co/mistralai/Mixtral-8x22B-Instruct-v0.1 config.json (vocab 32768; the "
           "community conversion of the base v0.1 torrent has 32000)")
    spec = ModelSpec(name="mixtral-8x22b", d_model=6144, n_layers=56, n_heads=48, n_kv_heads=8,
                     d_ff=16384, vocab_size=32768, ffn="swiglu", norm="rmsnorm", n_experts=8,
                     top_k=2, source=src)
    return ZooEntry(spec, "mixtral", (
        Published("total", "141B", ALL, "mistral.ai/news/mixtral-8x22b: 'uses only 39B active "
                  "parameters out of 141B'"),
        Published("active", "39B", ALL, "mistral.ai/news/mixtral-8x22b (same sentence)"),
    ))


# ------------------------------------------------------------------------------- DeepSeek
@_preset("deepseek-v2-lite")
def _deepseek_v2_lite() -> ZooEntry:
    src = ("huggingface.co/deepseek-ai/DeepSeek-V2-Lite config.json; DeepSeek-V2 paper "
           "(arXiv:2405.04434) appendix B")
    spec = ModelSpec(name="deepseek-v2-lite", d_model=2048, n_layers=27, n_heads=16,
                     d_ff=10944, vocab_size=102400, ffn="swiglu", norm="rmsnorm",
                     attention="mla", q_lora_rank=0, kv_lora_rank=512, qk_nope_head_dim=128,
                     qk_rope_head_dim=64, v_head_dim=128, n_experts=64, top_k=6, d_expert=1408,
                     n_shared_experts=2, first_dense=1, source=src)
    paper = ("DeepSeek-V2 paper (arXiv:2405.04434) appendix B: 'DeepSeek-V2-Lite comprises 15.7B "
             "total parameters, of which 2.4B are activated for each token'")
    return ZooEntry(spec, "deepseek", (
        Published("total", "15.7B", ALL, paper),
        Published("active", "2.4B", HEAD_ONLY, paper + " (our count in this convention: 2.45B, "
                  "which the printed 2.4B rounds down)"),
    ))


@_preset("deepseek-v3")
def _deepseek_v3() -> ZooEntry:
    src = "github.com/deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json"
    spec = ModelSpec(name="deepseek-v3", d_model=7168, n_layers=61, n_heads=128,
                     d_ff=18432, vocab_size=129280, ffn="swiglu", norm="rmsnorm",
                     attention="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                     qk_rope_head_dim=64, v_head_dim=128, n_experts=256, top_k=8, d_expert=2048,
                     n_shared_experts=1, first_dense=3, router_bias=True, source=src)
    paper = ("DeepSeek-V3 technical report (arXiv:2412.19437): '671B total parameters with 37B "
             "activated for each token'")
    return ZooEntry(spec, "deepseek", (
        Published("total", "671B", ALL, paper),
        Published("active", "37B", HEAD_ONLY, paper),
        Published("active", "36.6B", HEAD_ONLY, "DeepSeek-V3-Base README_WEIGHTS.md: 'Activation "
                  "parameters: 36.6B (including 0.9B for the output Head)'"),
    ), notes=("Main model only: the 685B checkpoint adds the multi-token-prediction module "
              "(11.5B unique parameters plus its own copies of embedding and head)."))


# ------------------------------------------------------------------------------- OLMoE, Qwen
@_preset("olmoe-1b-7b")
def _olmoe() -> ZooEntry:
    src = "huggingface.co/allenai/OLMoE-1B-7B-0924 config.json; QK-norm over the full projection"
    spec = ModelSpec(name="olmoe-1b-7b", d_model=2048, n_layers=16, n_heads=16, d_ff=1024,
                     vocab_size=50304, ffn="swiglu", norm="rmsnorm", qk_norm="full",
                     n_experts=64, top_k=8, source=src)
    paper = "Muennighoff et al. 2024, 'OLMoE: Open Mixture-of-Experts Language Models', arXiv:2409.02060, Table 1"
    return ZooEntry(spec, "olmoe", (
        Published("total", "6.9B", ALL, paper + ": 6.9B total"),
        Published("active", "1.3B", ALL, paper + ": 1.3B active"),
    ))


@_preset("qwen3-30b-a3b")
def _qwen3_30b_a3b() -> ZooEntry:
    src = "huggingface.co/Qwen/Qwen3-30B-A3B config.json (head_dim 128, per-head QK RMSNorm)"
    spec = ModelSpec(name="qwen3-30b-a3b", d_model=2048, n_layers=48, n_heads=32, n_kv_heads=4,
                     head_dim=128, d_ff=6144, vocab_size=151936, ffn="swiglu", norm="rmsnorm",
                     qk_norm="per_head", n_experts=128, top_k=8, d_expert=768, source=src)
    card = "huggingface.co/Qwen/Qwen3-30B-A3B model card"
    return ZooEntry(spec, "qwen", (
        Published("total", "30.5B", ALL, card + ": '30.5B in total and 3.3B activated'"),
        Published("active", "3.3B", ALL, card + " (same line)"),
        Published("total", "29.9B", NON_EMBEDDING, card + ": 'Number of Parameters (Non-Embedding): 29.9B'"),
    ), notes="d_ff (intermediate_size 6144) is unused: every layer is MoE.")


@_preset("qwen1.5-moe-a2.7b")
def _qwen15_moe() -> ZooEntry:
    src = ("huggingface.co/Qwen/Qwen1.5-MoE-A2.7B config.json: 60 experts of 1408, top-4, one "
           "shared expert of 5632 with a sigmoid gate, QKV bias")
    spec = ModelSpec(name="qwen1.5-moe-a2.7b", d_model=2048, n_layers=24, n_heads=16,
                     d_ff=5632, vocab_size=151936, ffn="swiglu", norm="rmsnorm", qkv_bias=True,
                     n_experts=60, top_k=4, d_expert=1408, n_shared_experts=1,
                     d_shared_expert=5632, shared_expert_gate=True, source=src)
    return ZooEntry(spec, "qwen", (
        Published("total", "14.3B", ALL, "huggingface.co/Qwen/Qwen1.5-MoE-A2.7B model card: 'It has "
                  "14.3B parameters in total and 2.7B activated parameters during runtime'"),
        Published("active", "2.7B", ALL, "same model card line"),
        Published("active", "2.0B", NON_EMBEDDING, "qwenlm.github.io/blog/qwen-moe: "
                  "'Qwen1.5-MoE-A2.7B contains only 2.0 billion non-embedding parameters' (activated)"),
    ))


# ------------------------------------------------------------------------------- Switch
@_preset("switch-base-128")
def _switch_base_128() -> ZooEntry:
    src = ("huggingface.co/google/switch-base-128 config.json (as its siblings switch-base-32/64/256): "
           "T5 encoder-decoder, 12+12 layers, ReLU d_ff 3072, MoE every other layer, top-1, tied")
    spec = ModelSpec(name="switch-base-128", d_model=768, n_layers=12, n_encoder_layers=12,
                     n_heads=12, head_dim=64, d_ff=3072, vocab_size=32128, ffn="relu",
                     norm="rmsnorm", tied_embeddings=True, relative_attention_buckets=32,
                     n_experts=128, top_k=1, moe_every=2, source=src)
    return ZooEntry(spec, "switch", (
        Published("total", "7B", ALL, "Fedus et al. 2022, 'Switch Transformers', JMLR 23, Table 9: "
                  "Switch-Base, 128 experts, 7B parameters"),
        Published("active", "220M", ALL, "Switch-Base is FLOP-matched to T5-Base (Fedus et al. 2022); "
                  "T5-Base has 'about 220 million parameters' (Raffel et al. 2020, JMLR 21, §3.7)"),
    ), notes="Encoder-decoder; active = T5-Base plus the routers.")


# ------------------------------------------------------------------------------- GPT-3
_GPT3 = "Brown et al. 2020, 'Language Models are Few-Shot Learners', arXiv:2005.14165, Table 2.1"


def _gpt3(label: str, n_layers: int, d_model: int, n_heads: int, figure: str,
          note: str = "") -> Callable[[], ZooEntry]:
    def make() -> ZooEntry:
        spec = ModelSpec(name=f"gpt3-{label}", d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                         d_ff=4 * d_model, vocab_size=50257, ffn="gelu", norm="layernorm",
                         bias=True, tied_embeddings=True, learned_positions=2048,
                         source=_GPT3 + "; d_ff = 4 d_model, n_ctx 2048, GPT-2 vocabulary 50257")
        return ZooEntry(spec, "gpt3", (
            Published("total", figure, ALL, f"{_GPT3}: n_params {figure}"),
            Published("active", figure, ALL, "dense: every parameter is active"),
        ), notes=note)
    return make


for _label, _l, _d, _h, _fig, _note in (
    ("125m", 12, 768, 12, "125M", ""),
    ("350m", 24, 1024, 16, "350M", ""),
    ("760m", 24, 1536, 16, "760M", ""),
    ("1.3b", 24, 2048, 16, "1.3B", "Table 2.1 prints 24 heads of 128, which does not match d_model "
     "2048; we use 16 heads of 128 (= d_model, as every other row; counts are unaffected)."),
    ("2.7b", 32, 2560, 32, "2.7B", ""),
    ("6.7b", 32, 4096, 32, "6.7B", ""),
    ("13b", 40, 5120, 40, "13.0B", "Table 2.1 prints d_model 5140, a misprint: 40 heads x 128 = 5120."),
    ("175b", 96, 12288, 96, "175.0B", ""),
):
    _preset(f"gpt3-{_label}")(_gpt3(_label, _l, _d, _h, _fig, _note))


# ------------------------------------------------------------------------------- Llama
_LLAMA2 = "Touvron et al. 2023, 'Llama 2', arXiv:2307.09288, Table 1"


@_preset("llama-2-7b")
def _llama2_7b() -> ZooEntry:
    spec = ModelSpec(name="llama-2-7b", d_model=4096, n_layers=32, n_heads=32, d_ff=11008,
                     vocab_size=32000, ffn="swiglu", norm="rmsnorm",
                     source="huggingface.co/meta-llama/Llama-2-7b-hf config.json")
    return ZooEntry(spec, "llama", (Published("total", "7B", ALL, _LLAMA2 + ": 7B"),
                                    Published("active", "7B", ALL, "dense")))


@_preset("llama-2-70b")
def _llama2_70b() -> ZooEntry:
    spec = ModelSpec(name="llama-2-70b", d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8,
                     d_ff=28672, vocab_size=32000, ffn="swiglu", norm="rmsnorm",
                     source="huggingface.co/meta-llama/Llama-2-70b-hf config.json")
    return ZooEntry(spec, "llama", (Published("total", "70B", ALL, _LLAMA2 + ": 70B"),
                                    Published("active", "70B", ALL, "dense")))


@_preset("llama-3-8b")
def _llama3_8b() -> ZooEntry:
    spec = ModelSpec(name="llama-3-8b", d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                     d_ff=14336, vocab_size=128256, ffn="swiglu", norm="rmsnorm",
                     source="huggingface.co/meta-llama/Meta-Llama-3-8B config.json")
    return ZooEntry(spec, "llama", (
        Published("total", "8B", ALL, "ai.meta.com/blog/meta-llama-3: Llama 3 8B"),
        Published("active", "8B", ALL, "dense")))


# ------------------------------------------------------------------------------- lookup
def names() -> tuple[str, ...]:
    """All preset names, in the order they are defined."""
    return tuple(_CANONICAL.values())


def _lookup(name, label: str) -> ZooEntry:
    """The preset ``name``, or :class:`UnknownModelError` whose message starts with ``label``
    (how the caller names the argument, e.g. ``'zoo.get(name='gpt-5')'``)."""
    known = ", ".join(names())
    if not isinstance(name, str):
        raise UnknownModelError(f"{label}: a zoo model name must be a string (got "
                                f"{type(name).__name__}); pass one of {known} "
                                "(case-insensitive)")
    key = name.lower()
    if key not in _REGISTRY:
        family = key.split("-")[0]
        close = [n for n in names() if family and family in n] \
            or difflib.get_close_matches(key, names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"{label}: unknown model.{hint} Known zoo models: {known} "
                                "(case-insensitive)")
    return _REGISTRY[key]()


def entry(name: str) -> ZooEntry:
    """The preset ``name`` (case-insensitive) with its published figures;
    :class:`UnknownModelError` (a ValueError and a KeyError) for an unknown name."""
    return _lookup(name, f"zoo.entry(name={_shown(name)})")


def get(name: str) -> ModelSpec:
    """The ModelSpec of preset ``name`` (case-insensitive); :class:`UnknownModelError` (a
    ValueError and a KeyError) for an unknown name."""
    return _lookup(name, f"zoo.get(name={_shown(name)})").spec


def _shown(name) -> str:
    """``repr`` of a name; a non-string by its type (no long repr of e.g. a ModelSpec)."""
    return repr(name) if isinstance(name, str | int | float | type(None)) \
        else f"<{type(name).__name__}>"


def entries() -> tuple[ZooEntry, ...]:
    """Every preset with its published figures."""
    return tuple(entry(n) for n in names())


def families() -> dict[str, tuple[str, ...]]:
    """Preset names grouped by family (mixtral, deepseek, olmoe, qwen, switch, gpt3, llama)."""
    out: dict[str, list[str]] = {}
    for e in entries():
        out.setdefault(e.family, []).append(e.spec.name)
    return {k: tuple(v) for k, v in out.items()}
