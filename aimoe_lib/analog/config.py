"""Frozen descriptions of chapter 8's models, training runs and analog periphery (no torch).

Three small character-level decoder-only transformers share everything but their FFNs
(:data:`~aimoe_lib.analog.config.MODELS`):

* ``dense`` — a GeLU FFN 512 wide in every layer;
* ``moe-4`` — 4 experts of width 256, top-2: the same *active* FFN width (2 x 256 = 512) as the
  dense model, twice its FFN parameters;
* ``moe-16`` — 16 experts of width 256, top-2: the same active width again, eight times the FFN
  parameters.

Which parts of a model run on analog tiles uses the names of
``aimoe_lib.mapping.DIGITAL_PARTS`` (``embedding``, ``router``, ``attention``, ``lm_head``),
so that accuracy (chapter 8) and latency/energy (the simulator) answer the same question; the
FFN (dense FFN or routed experts) is always analog on the chip and is called ``ffn`` here.

Named assumptions (ids as in the book's appendix): A-LM-SIZE, A-HWA-WNOISE, A-HWA-ONOISE,
A-HWA-CLIP, A-HWA-IR, A-DAC-BITS, A-ADC-BITS, A-ADC-BOUND, A-TRAIN-STEPS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import checks
from ..mapping import DIGITAL_PARTS
from ..models import ModelSpec

__all__ = ["LMConfig", "MODELS", "TrainConfig", "HWAConfig", "Periphery", "IDEAL", "Settings",
           "PARTS", "ANALOG_BY_DEFAULT", "analog_parts", "check_analog", "model_config"]

PARTS = ("attention", "router", "ffn", "lm_head")
"""The linear layers of a model, by part. The input embedding is a table lookup and always
digital; ``ffn`` (dense FFN or experts) is analog whenever anything is."""

ANALOG_BY_DEFAULT = PARTS
"""Every linear layer is analog by default, as in
:func:`aimoe_lib.mapping.map_model` with ``digital=("embedding",)``."""


def check_analog(analog) -> tuple[str, ...]:
    """``analog`` as a tuple of parts in :data:`~aimoe_lib.analog.config.PARTS` order;
    ValueError for unknown parts."""
    analog = checks.names("check_analog()", "analog", analog, PARTS)
    return tuple(p for p in PARTS if p in analog)


def analog_parts(digital=("embedding",)) -> tuple[str, ...]:
    """The parts that run on analog tiles when the parts named in ``digital`` run on digital
    units; ``digital`` takes the keys of ``aimoe_lib.mapping.DIGITAL_PARTS``, exactly as
    :func:`aimoe_lib.mapping.map_model` does."""
    digital = checks.names("analog_parts()", "digital", digital, DIGITAL_PARTS,
                           fix=f"choose from {', '.join(DIGITAL_PARTS)} (the FFN/experts are "
                               "always analog)")
    return tuple(p for p in PARTS if p not in digital)


@dataclass(frozen=True)
class LMConfig:
    """A small decoder-only transformer: learned positions, pre-LayerNorm, GeLU FFN or MoE of GeLU
    experts, no biases, untied LM head (A-LM-SIZE: sized to train on 2 CPU cores in minutes)."""

    name: str
    """Label: 'dense', 'moe-4', 'moe-16'."""
    vocab_size: int = 85
    """Character vocabulary (84 characters of the training split + unknown)."""
    d_model: int = 128
    """Residual stream width."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads (head dimension 32)."""
    context: int = 64
    """Tokens per sequence (characters)."""
    d_ff: int = 512
    """Width of the dense FFN."""
    n_experts: int = 0
    """Experts per MoE layer; 0 for a dense model."""
    top_k: int = 0
    """Experts each token uses."""
    d_expert: int = 0
    """Width of each expert (0 for a dense model)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"LMConfig.name={self.name!r}: must be a non-empty string; give the "
                             "model a label such as 'dense'")
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "context", "d_ff"):
            object.__setattr__(self, f, checks.integer("LMConfig", f, getattr(self, f), minimum=1,
                                                       maximum=checks.INT32_MAX))
        for f in ("n_experts", "top_k", "d_expert"):
            object.__setattr__(self, f, checks.integer("LMConfig", f, getattr(self, f), minimum=0,
                                                       maximum=checks.INT32_MAX))
        if self.d_model % self.n_heads:
            raise ValueError(f"LMConfig.n_heads={self.n_heads}: must divide d_model={self.d_model}")
        if self.n_experts:
            if not 1 <= self.top_k <= self.n_experts or self.d_expert < 1:
                raise ValueError(f"LMConfig(n_experts={self.n_experts}, top_k={self.top_k}, "
                                 f"d_expert={self.d_expert}): an MoE needs 1 <= top_k <= "
                                 "n_experts and d_expert >= 1")
        elif self.top_k or self.d_expert:
            raise ValueError(f"LMConfig(top_k={self.top_k}, d_expert={self.d_expert}): a dense "
                             "model (n_experts=0) takes top_k=0 and d_expert=0")

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.n_experts > 0

    def spec(self) -> ModelSpec:
        """The same model as a :class:`aimoe_lib.models.ModelSpec` (parameter counts, mapping,
        simulation, routing traces)."""
        kw = dict(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                  d_ff=self.d_ff, vocab_size=self.vocab_size, name=f"shakespeare-{self.name}",
                  ffn="gelu", norm="layernorm", learned_positions=self.context,
                  source="aimoe_lib.analog.config (chapter 8, trained on Shakespeare)")
        if self.is_moe:
            kw.update(n_experts=self.n_experts, top_k=self.top_k, d_expert=self.d_expert)
        return ModelSpec(**kw)

    def to_dict(self) -> dict:
        """Plain fields (JSON)."""
        return asdict(self)


MODELS = (
    LMConfig("dense"),
    LMConfig("moe-4", n_experts=4, top_k=2, d_expert=256),
    LMConfig("moe-16", n_experts=16, top_k=2, d_expert=256),
)
"""Chapter 8's three models: equal active parameters, 1x, 2x and 8x the dense FFN parameters."""


def model_config(name: str) -> LMConfig:
    """The preset of :data:`~aimoe_lib.analog.config.MODELS` called ``name``."""
    for m in MODELS:
        if m.name == name:
            return m
    close = checks._suggest(name, [m.name for m in MODELS]) if isinstance(name, str) else ""
    raise ValueError(f"model={name!r}: unknown model{close}; choose from "
                     f"{', '.join(m.name for m in MODELS)}")


MAX_BATCH = 2**16
"""Most sequences per training step :class:`TrainConfig` accepts (a step holds batch x context
activations of every layer in memory)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run (A-TRAIN-STEPS): ``pretrain_steps`` in floating point, then
    ``finetune_steps`` more either in floating point (the FP model) or with hardware-aware noise
    (the HWA model), from the same pretrained weights, data order and learning-rate schedule."""

    pretrain_steps: int = 600
    """Floating-point steps shared by the FP and HWA models."""
    finetune_steps: int = 300
    """Further steps of each branch (FP or HWA)."""
    batch: int = 32
    """Sequences per step."""
    lr: float = 3e-3
    """AdamW peak learning rate (pretraining)."""
    finetune_lr: float = 1e-3
    """AdamW learning rate at the start of fine-tuning (both branches)."""
    warmup_steps: int = 40
    """Linear warm-up of pretraining."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    aux_loss: float = 0.01
    """Weight of the Switch load-balancing loss (MoE only)."""
    seed: int = 0
    """Seeds initialisation, data order and noise injection."""
    threads: int = 1
    """torch threads per training process (two processes share the 2 cores of CI)."""

    def __post_init__(self) -> None:
        o, set_ = "TrainConfig", lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for f in ("pretrain_steps", "finetune_steps"):
            set_(f, checks.integer(o, f, getattr(self, f), minimum=1, noun="a whole number",
                                   fix=f"pass the number of {f.split('_')[0]} steps"))
        set_("batch", checks.integer(o, "batch", self.batch, minimum=1, maximum=MAX_BATCH,
                                     noun="a whole number",
                                     fix="pass the sequences per step (memory grows with it)"))
        set_("warmup_steps", checks.integer(o, "warmup_steps", self.warmup_steps, minimum=0,
                                            noun="a whole number"))
        set_("seed", checks.seed(o, "seed", self.seed))
        set_("threads", checks.integer(o, "threads", self.threads, minimum=1, maximum=1024,
                                       noun="a whole number"))
        for f in ("lr", "finetune_lr"):
            set_(f, checks.real(o, f, getattr(self, f), minimum=0, strict=True,
                                fix=f"pass a positive learning rate, e.g. {f}=1e-3"))
        for f in ("weight_decay", "aux_loss"):
            set_(f, checks.real(o, f, getattr(self, f), minimum=0))


@dataclass(frozen=True)
class HWAConfig:
    """Hardware-aware training with aihwkit-lightning's ``TorchInferenceRPUConfig``.

    Noise is injected in the forward pass only while training; the backward pass and the update
    are ideal. Values: A-HWA-WNOISE, A-HWA-ONOISE, A-HWA-CLIP, A-HWA-IR, and the periphery of
    :class:`~aimoe_lib.analog.config.Periphery` (the same DAC/ADC in training and inference).
    """

    weight_noise: float = 0.05
    """Std of the Gaussian noise added to each weight, relative to its row's largest ``abs(W)``
    (``WeightNoiseInjectionType.ADD_NORMAL_PER_CHANNEL``), A-HWA-WNOISE."""
    out_noise: float = 0.04
    """Std of the Gaussian output noise relative to input range x largest ``abs(W)``
    (A-HWA-ONOISE)."""
    clip_sigma: float = 3.0
    """Weights clipped per row at this many standard deviations after every step (A-HWA-CLIP,
    aihwkit-lightning recommends 2.0-3.5)."""
    init_from_data: int = 20
    """Forward passes that initialise each input range from data (A-HWA-IR)."""
    init_std_alpha: float = 3.0
    """Initial input range = this many standard deviations of the layer's input."""

    def __post_init__(self) -> None:
        o, set_ = "HWAConfig", lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for f in ("weight_noise", "out_noise"):
            set_(f, checks.real(o, f, getattr(self, f), minimum=0,
                                fix="pass a relative noise std >= 0 (0: no noise)"))
        for f in ("clip_sigma", "init_std_alpha"):
            set_(f, checks.real(o, f, getattr(self, f), minimum=0, strict=True,
                                fix="pass a number of standard deviations > 0"))
        set_("init_from_data", checks.integer(o, "init_from_data", self.init_from_data,
                                              minimum=0, maximum=checks.INT32_MAX))


@dataclass(frozen=True)
class Periphery:
    """The analog tile's converters at inference (and during HWA training).

    ``inp_bits`` / ``out_bits`` of ``None`` turn the DAC / ADC off (ideal converters), which with
    zero weight noise makes the analog model compute exactly what the floating-point one does.
    """

    inp_bits: int | None = 8
    """DAC resolution in bits (A-DAC-BITS; 2^8 - 2 levels as in the aihwkit-lightning user
    guide)."""
    out_bits: int | None = 8
    """ADC resolution in bits (A-ADC-BITS; as in the aihwkit-lightning user guide)."""
    out_bound: float = 12.0
    """ADC range in units of input range x largest ``abs(W)`` of the layer (A-ADC-BOUND; the
    value of the aihwkit-lightning user guide)."""

    def __post_init__(self) -> None:
        for f in ("inp_bits", "out_bits"):
            object.__setattr__(self, f, checks.optional_integer(
                "Periphery", f, getattr(self, f), minimum=2, maximum=16,
                fix="bits must be an integer in 2..16 or None (an ideal converter)"))
        object.__setattr__(self, "out_bound", checks.real("Periphery", "out_bound", self.out_bound,
                                                          minimum=0, strict=True))

    @property
    def ideal(self) -> bool:
        """No quantisation at all."""
        return self.inp_bits is None and self.out_bits is None


IDEAL = Periphery(None, None)
"""Ideal converters (for the zero-noise check)."""


@dataclass(frozen=True)
class Settings:
    """Everything one training-and-evaluation run uses; stored with its results."""

    models: tuple[LMConfig, ...] = MODELS
    train: TrainConfig = field(default_factory=TrainConfig)
    hwa: HWAConfig = field(default_factory=HWAConfig)
    periphery: Periphery = field(default_factory=Periphery)

    def __post_init__(self) -> None:
        o = "Settings"
        fix = "pass a tuple of LMConfig with distinct names, e.g. config.MODELS"
        if isinstance(self.models, LMConfig):
            raise ValueError(f"Settings.models={self.models.name!r}: is one LMConfig, not a "
                             f"tuple; write models=(config,)")
        models = checks.items(o, "models", self.models, fix=fix)
        for m in models:
            checks.instance(o, "models", m, LMConfig, fix=fix)
        names = [m.name for m in models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Settings.models: the name(s) {', '.join(map(repr, dup))} appear "
                             f"more than once; {fix}")
        object.__setattr__(self, "models", models)
        checks.instance(o, "train", self.train, TrainConfig, fix="pass a config.TrainConfig")
        checks.instance(o, "hwa", self.hwa, HWAConfig, fix="pass a config.HWAConfig")
        checks.instance(o, "periphery", self.periphery, Periphery,
                        fix="pass a config.Periphery")
