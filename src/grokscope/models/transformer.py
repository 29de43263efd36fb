"""A small decoder-only transformer in the TransformerLens layout, readable top to bottom.

Parameter names and shapes follow TransformerLens' HookedTransformer (docs/DESIGN.md), so
`model.state_dict()` keys are `embed.W_E`, `blocks.0.attn.W_Q`, `blocks.0.mlp.W_in`, `unembed.W_U`, ...
and a Fourier transform of the embedding or an OV circuit is one line. Every activation passes
through an identity `HookPoint` named as in TransformerLens (`blocks.0.attn.hook_pattern`, ...),
which `run_with_cache` and `run_with_hooks` use.

Glossary of dimensions: batch, pos, d_model, head, d_head, d_mlp, d_vocab, d_vocab_out.

Initialisation (as the reference code of Nanda et al. 2023, with `n(a, b)` a standard normal tensor):
  W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out ~ n / sqrt(d_model);  W_U ~ n / sqrt(d_vocab);
  all biases zero; LayerNorm weights one. Parameters are drawn in `named_parameters()` order from
  one `torch.Generator` seeded with `train.seed`, so the seed alone fixes the init.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grokscope.config import ModelConfig
from grokscope.models.hooks import HookPoint, Hooked


class LayerNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))
        self.hook_scale = HookPoint()  # [batch pos 1]
        self.hook_normalized = HookPoint()  # [batch pos d_model]

    def forward(self, x: Tensor) -> Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
        return self.hook_normalized(x / scale) * self.w + self.b


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, n_ctx: int) -> None:
        super().__init__()
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, e))
        self.W_K = nn.Parameter(torch.empty(h, d, e))
        self.W_V = nn.Parameter(torch.empty(h, d, e))
        self.W_O = nn.Parameter(torch.empty(h, e, d))
        if cfg.attn_bias:
            self.b_Q = nn.Parameter(torch.zeros(h, e))
            self.b_K = nn.Parameter(torch.zeros(h, e))
            self.b_V = nn.Parameter(torch.zeros(h, e))
            self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)), persistent=False)
        self.scale = 1.0 / math.sqrt(e)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [batch pos head d_head]
        self.hook_attn_scores = HookPoint()  # [batch head query_pos key_pos]
        self.hook_pattern = HookPoint()  # [batch head query_pos key_pos]
        self.hook_z = HookPoint()  # [batch pos head d_head]

    def forward(self, x: Tensor, at: Any = None) -> Tensor:  # x: [batch pos d_model]
        """Attention output at every position, or only at query positions `at` (an index or slice)."""
        xq = x if at is None else x[:, at]
        q = self.hook_q(torch.einsum("bpd,hde->bphe", xq, self.W_Q) + self._bias("b_Q"))
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self._bias("b_K"))
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self._bias("b_V"))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale  # [batch head q k]
        n = x.shape[1]
        mask = self.mask[:n, :n] if at is None else self.mask[:n, :n][at]
        scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))  # [batch pos head d_head]
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self._bias("b_O")

    def _bias(self, name: str) -> Tensor | float:
        return getattr(self, name, 0.0)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = F.relu if cfg.act_fn == "relu" else F.gelu
        self.hook_pre = HookPoint()  # [batch pos d_mlp]
        self.hook_post = HookPoint()  # [batch pos d_mlp]

    def forward(self, x: Tensor) -> Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(self.act(pre))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, n_ctx: int) -> None:
        super().__init__()
        norm = cfg.normalization == "LN"
        self.ln1 = LayerNorm(cfg.d_model) if norm else nn.Identity()
        self.attn = Attention(cfg, n_ctx)
        self.attn_only = cfg.attn_only
        if not cfg.attn_only:
            self.ln2 = LayerNorm(cfg.d_model) if norm else nn.Identity()
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()  # [batch pos d_model]
            self.hook_resid_mid = HookPoint()
        self.hook_resid_pre = HookPoint()  # [batch pos d_model]
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: Tensor, at: Any = None) -> Tensor:
        """resid [batch pos d_model] -> the block's output at every position, or only at positions `at`."""
        resid = self.hook_resid_pre(resid)
        attn = self.hook_attn_out(self.attn(self.ln1(resid), at))
        resid = (resid if at is None else resid[:, at]) + attn
        if self.attn_only:
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid)
        resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int, bias: bool) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab_out))
        if bias:
            self.b_U = nn.Parameter(torch.zeros(d_vocab_out))


class Transformer(Hooked):
    """tokens [batch pos] -> logits [batch pos d_vocab_out]; the task sets the vocabulary and n_ctx."""

    def __init__(self, cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int) -> None:
        super().__init__()
        self.cfg, self.d_vocab, self.d_vocab_out, self.n_ctx = cfg, d_vocab, d_vocab_out, n_ctx
        self.embed = Embed(d_vocab, cfg.d_model)
        self.pos_embed = PosEmbed(n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg, n_ctx) for _ in range(cfg.n_layers)])
        if cfg.normalization == "LN":
            self.ln_final = LayerNorm(cfg.d_model)
        self.unembed = Unembed(cfg.d_model, d_vocab_out, cfg.unembed_bias)
        self.hook_embed = HookPoint()  # [batch pos d_model]
        self.hook_pos_embed = HookPoint()
        self.name_hooks()

    def forward(self, tokens: Tensor, at: Any = None) -> Tensor:
        """Logits at every position, or only at positions `at` (an index list or slice): the last block
        then computes its queries and MLP there alone, since nothing else reaches those logits (the
        engines' saving when only a few positions carry answers)."""
        n = tokens.shape[-1]
        resid = self.hook_embed(self.embed.W_E[tokens]) + self.hook_pos_embed(self.pos_embed.W_pos[:n])
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            resid = block(resid, at if i == last else None)
        if hasattr(self, "ln_final"):
            resid = self.ln_final(resid)
        W_U, b_U = self.unembed.W_U, getattr(self.unembed, "b_U", None)
        if self.cfg.logits_dtype is not None:  # the logits' precision apart from the weights' (a numerics knob)
            dtype = getattr(torch, self.cfg.logits_dtype)
            resid, W_U, b_U = resid.to(dtype), W_U.to(dtype), None if b_U is None else b_U.to(dtype)
        logits = resid @ W_U
        return logits if b_U is None else logits + b_U

    # -- TransformerLens (grokscope.models.tl_interop) ------------------------------------------
    def to_hooked_transformer(self) -> Any:
        """This model as a transformer_lens.HookedTransformer with the same weights."""
        from grokscope.models.tl_interop import to_hooked_transformer

        return to_hooked_transformer(self)

    @classmethod
    def from_hooked_transformer(cls, ht: Any) -> "Transformer":
        """A grokscope Transformer holding a HookedTransformer's weights."""
        from grokscope.models.tl_interop import from_hooked_transformer

        cfg, d_vocab, d_vocab_out, n_ctx, sd = from_hooked_transformer(ht)
        model = cls(cfg, d_vocab, d_vocab_out, n_ctx)
        ours = model.state_dict()
        model.load_state_dict({k: sd[k].to(ours[k].dtype) for k in ours})
        return model.to(sd["embed.W_E"].device)

    # -- initialisation -------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, seed: int) -> "Transformer":
        gen = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b_") or leaf == "b":
                param.zero_()
            elif leaf == "w":
                param.fill_(1.0)
            else:
                std = 1 / math.sqrt(self.d_vocab if leaf == "W_U" else self.cfg.d_model)
                param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * std)
        return self


def make_transformer(cfg: ModelConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, seed: int) -> Transformer:
    return Transformer(cfg, d_vocab, d_vocab_out, n_ctx).init_weights(seed)
