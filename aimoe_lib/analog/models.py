"""Small decoder-only transformers in torch, dense and mixture of experts (chapter 8).

Every matrix-vector product is an ``nn.Linear`` without bias, so that aihwkit-lightning's
``convert_to_analog`` can turn any subset of them into analog layers; the input embedding is a
table lookup and stays digital. The MoE layer is a softmax router (one ``nn.Linear``, d_model
-> E) whose top-k experts (GeLU FFNs) are combined with the kept probabilities renormalised to
sum to one (Mixtral's scheme), plus the Switch Transformer load-balancing loss
E * sum_e f_e P_e (Fedus et al. 2022).

:meth:`~aimoe_lib.analog.models.TinyLM.linear_parts` says which part (attention, router, ffn,
lm_head; :data:`aimoe_lib.analog.config.PARTS`) every linear layer belongs to, from the structure
of the model, not from its name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PARTS, LMConfig

__all__ = ["TinyLM", "Attention", "DenseFFN", "MoE", "Block"]


class Attention(nn.Module):
    """Causal multi-head self-attention with four bias-free projections q, k, v, o."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output for inputs of shape (batch, tokens, d_model)."""
        b, t, d = x.shape
        h = self.n_heads

        def heads(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                           is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class DenseFFN(nn.Module):
    """up (d_model -> d_ff), GeLU, down (d_ff -> d_model)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``down(gelu(up(x)))``."""
        return self.down(F.gelu(self.up(x)))


class MoE(nn.Module):
    """Top-k mixture of GeLU experts with a softmax router.

    ``forward`` returns the output and stores, for the last call, ``self.last_choices`` (tokens x
    k expert ids, best first) and ``self.last_aux`` (the load-balancing loss).
    """

    def __init__(self, d_model: int, d_expert: int, n_experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(DenseFFN(d_model, d_expert) for _ in range(n_experts))
        self.last_choices: torch.Tensor | None = None
        self.last_aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each token's top-k experts, weighted by their renormalised router probabilities."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(x).float(), dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        gates = (top_p / top_p.sum(dim=-1, keepdim=True)).to(x.dtype)
        n_experts = probs.shape[-1]
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(top_i == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            y = expert(x[rows]) * gates[rows, slot].unsqueeze(-1)
            out.index_add_(0, rows, y)
        frac = torch.zeros(n_experts, device=x.device).index_add_(
            0, top_i.reshape(-1), torch.ones(top_i.numel(), device=x.device)) / top_i.numel()
        self.last_aux = n_experts * (frac * probs.mean(dim=0)).sum()
        self.last_choices = top_i.detach()
        return out.reshape(shape)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_heads)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = (MoE(cfg.d_model, cfg.d_expert, cfg.n_experts, cfg.top_k) if cfg.is_moe
                    else DenseFFN(cfg.d_model, cfg.d_ff))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for inputs of shape (batch, tokens, d_model)."""
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class TinyLM(nn.Module):
    """Character-level decoder-only LM: token + learned position embeddings, ``n_layers``
    blocks, final LayerNorm, LM head."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 n_layers)
            for lin in self._residual_out(block):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    @staticmethod
    def _residual_out(block: Block):
        yield block.attn.o
        if isinstance(block.ffn, MoE):
            yield from (e.down for e in block.ffn.experts)
        else:
            yield block.ffn.down

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, tokens, vocab) for token ids ``idx`` (batch, tokens)."""
        t = idx.shape[1]
        if t > self.cfg.context:
            raise ValueError(f"{t} tokens exceed the context of {self.cfg.context}")
        x = self.embed(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def forget(self) -> None:
        """Drop what the last forward pass stored (routing choices, auxiliary losses), e.g.
        before copying the model."""
        for m in self.moe_layers():
            m.last_choices = None
            m.last_aux = None

    def moe_layers(self) -> list[MoE]:
        """The MoE layers in order (empty for a dense model)."""
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    def aux_loss(self) -> torch.Tensor:
        """Sum of the load-balancing losses of the last forward pass (0 for a dense model)."""
        losses = [m.last_aux for m in self.moe_layers() if m.last_aux is not None]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def last_choices(self) -> torch.Tensor:
        """Expert ids of the last forward pass: (tokens, n_moe_layers, k), best first."""
        layers = self.moe_layers()
        if not layers:
            raise ValueError("a dense model has no routing choices")
        return torch.stack([m.last_choices for m in layers], dim=1)

    def linear_parts(self) -> dict[str, str]:
        """Every linear layer's dotted module name -> its part (attention, router, ffn,
        lm_head), in execution order."""
        parts = {}
        for i, block in enumerate(self.blocks):
            for p in ("q", "k", "v", "o"):
                parts[f"blocks.{i}.attn.{p}"] = "attention"
            if isinstance(block.ffn, MoE):
                parts[f"blocks.{i}.ffn.router"] = "router"
                for e in range(len(block.ffn.experts)):
                    parts[f"blocks.{i}.ffn.experts.{e}.up"] = "ffn"
                    parts[f"blocks.{i}.ffn.experts.{e}.down"] = "ffn"
            else:
                parts[f"blocks.{i}.ffn.up"] = "ffn"
                parts[f"blocks.{i}.ffn.down"] = "ffn"
        parts["lm_head"] = "lm_head"
        assert set(parts.values()) <= set(PARTS)
        return parts
