"""Answer-position activations over the whole p x p input grid, from a parameter dict.

`grid_forward(params, cfg, p)` returns, for every pair (x, y) with tokens [x, y, =]:
logits at the last position [p, p, p], the last MLP layer's post-activations at the last
position [p, p, d_mlp] (None for attention-only models) and layer 0's attention pattern from the
"=" query to the three keys [n_heads, p, p, 3].

For the standard 1-layer model without LayerNorm it uses a closed form that never materialises
the residual stream per pair: with e_i = W_E[tok_i] + W_pos[i],

    pattern[h, x, y, :] = softmax_i(q_h . k_h(e_i) / sqrt(d_head)),  q_h = e_2 W_Q[h] (+ b_Q)
    attn_out(x, y)      = sum_h sum_i pattern[h, x, y, i] (v_h(e_i) W_O[h]) + b_O
    pre(x, y)           = (e_2 + b_O) W_in + b_in + sum_{h,i} pattern[h, x, y, i] (v_h(e_i) W_O[h] W_in)
    logits(x, y)        = (e_2 + attn_out) W_U + act(pre) (W_out W_U) + b_out W_U + b_U

so the only p^2-sized products are pattern-weighted sums and act(pre) @ W_L. Other
configurations fall back to the plain `Transformer` with `run_with_cache` in batches. An MLP model
(grokscope.models.mlp) runs on the grid directly; its neurons are the first hidden layer's (every
chunk's, flattened, for a chunked MLP) and it has no attention pattern.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from grokscope.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass
class GridActs:
    """Answer-position activations for all p^2 pairs, indexed [x, y, ...] by token."""

    logits: Tensor  # [p, p, d_vocab_out] float32
    neurons: Tensor | None  # [p, p, d_mlp] post-activation of the last MLP layer (an MLP model: its first hidden layer)
    pattern: Tensor | None  # [n_heads, p, p, 3] layer-0 attention from "=" to positions (x, y, =); None for an MLP


def closed_form_supported(cfg: ModelConfig) -> bool:
    return cfg.n_layers == 1 and cfg.normalization is None and cfg.logits_dtype is None


@torch.no_grad()
def grid_forward(params: dict[str, Tensor], cfg: ModelConfig, p: int) -> GridActs:
    if cfg.name == "mlp":
        return _mlp(params, cfg, p)
    if closed_form_supported(cfg):
        return _closed_form(params, cfg, p)
    return _generic(params, cfg, p)


def _get(params: dict[str, Tensor], name: str) -> Tensor | None:
    t = params.get(name)
    return None if t is None else t.float()


@functools.lru_cache(maxsize=8)
def _table_index(p: int, h: int, device: torch.device) -> Tensor:
    """[p^2, 2h + 1] table rows of each cell (x, y): the d0 rows of x, the d1 rows of y, the constant row."""
    a = torch.arange(p)
    heads = torch.arange(h)
    rows0 = (a[:, None, None] * h + heads).expand(p, p, h)  # cell (x, y) reads d0 rows of x ...
    rows1 = (p * h + a[None, :, None] * h + heads).expand(p, p, h)  # ... and d1 rows of y
    return torch.cat([rows0, rows1, torch.full((p, p, 1), 2 * p * h)], -1).reshape(p * p, 2 * h + 1).to(device)


def _closed_form(params: dict[str, Tensor], cfg: ModelConfig, p: int) -> GridActs:
    W_E, W_pos = _get(params, "embed.W_E"), _get(params, "pos_embed.W_pos")
    pre = "blocks.0.attn."
    W_Q, W_K, W_V, W_O = (_get(params, pre + n) for n in ("W_Q", "W_K", "W_V", "W_O"))
    b_Q, b_K, b_V, b_O = (_get(params, pre + n) for n in ("b_Q", "b_K", "b_V", "b_O"))
    W_U, b_U = _get(params, "unembed.W_U"), _get(params, "unembed.b_U")
    scale = 1.0 / math.sqrt(W_Q.shape[-1])

    e01 = W_E[:p]  # [p, d] token rows 0..p-1
    e0 = e01 + W_pos[0]
    e1 = e01 + W_pos[1]
    e2 = W_E[p] + W_pos[2]  # "=" at position 2

    def proj(e: Tensor, W: Tensor, b: Tensor | None) -> Tensor:  # [..., d] -> [..., h, e]
        out = torch.einsum("...d,hde->...he", e, W)
        return out if b is None else out + b

    q = proj(e2, W_Q, b_Q)  # [h, e]
    s0 = torch.einsum("xhe,he->xh", proj(e0, W_K, b_K), q) * scale  # [p, h]
    s1 = torch.einsum("yhe,he->yh", proj(e1, W_K, b_K), q) * scale
    s2 = torch.einsum("he,he->h", proj(e2, W_K, b_K), q) * scale
    # softmax over the 3 keys, written out: torch's softmax over a last dim of size 3 is ~3x slower
    r0, r1 = s0[:, None, :] - s2, s1[None, :, :] - s2  # [x, y, h]: scores relative to the "=" key
    mx = torch.maximum(r0, r1).clamp_min_(0.0)
    pat = torch.stack([(r0 - mx).exp_(), (r1 - mx).exp_(), mx.neg().exp_()], -1)  # [x, y, h, 3]
    pat = pat.div_(pat.sum(-1, keepdim=True))
    # weights < 1e-20 are invisible next to the >= 1/3 weight in float32, but their products with
    # the values underflow to denormal floats, which make the einsums below ~100x slower
    pat = pat.masked_fill(pat < 1e-20, 0.0)
    ov0 = torch.einsum("xhe,hed->xhd", proj(e0, W_V, b_V), W_O)  # [p, h, d]
    ov1 = torch.einsum("yhe,hed->yhd", proj(e1, W_V, b_V), W_O)
    ov2 = torch.einsum("he,hed->hd", proj(e2, W_V, b_V), W_O)  # [h, d]
    base = e2 if b_O is None else e2 + b_O  # [d]

    # pattern[..., 2] = 1 - pattern[..., 0] - pattern[..., 1], so the "=" key folds into the other two:
    # resid_mid @ M = (base + sum_h ov2[h]) M + sum_h P0 (ov0 - ov2) M + sum_h P1 (ov1 - ov2) M,
    # a weighted sum of 2h + 1 rows of a small table per cell (as in the fast training engine).
    h = pat.shape[2]
    d0, d1 = ov0 - ov2, ov1 - ov2
    const = base + ov2.sum(0)
    index = _table_index(p, h, pat.device)
    weight = torch.cat([pat[..., 0], pat[..., 1], pat.new_ones(p, p, 1)], -1).reshape(p * p, 2 * h + 1)

    def through(M: Tensor, bias: Tensor | None = None) -> Tensor:  # resid_mid(x, y) @ M (+ bias) -> [p, p, k]
        c = const @ M if bias is None else const @ M + bias
        table = torch.cat([torch.einsum("xhd,dk->xhk", d0, M).reshape(p * h, -1),
                           torch.einsum("yhd,dk->yhk", d1, M).reshape(p * h, -1), c[None]])  # [2 p h + 1, k]
        return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum").view(p, p, -1)

    if cfg.attn_only:
        return GridActs(through(W_U, b_U), None, pat.permute(2, 0, 1, 3).contiguous())
    mp = "blocks.0.mlp."
    W_in, b_in, W_out, b_out = (_get(params, mp + n) for n in ("W_in", "b_in", "W_out", "b_out"))
    b_dir = b_U if b_out is None else (b_out @ W_U if b_U is None else b_out @ W_U + b_U)  # constant logit terms
    pre_act = through(W_in, b_in)
    neurons = pre_act.relu_() if cfg.act_fn == "relu" else F.gelu(pre_act)
    # logits = direct path + act(pre) (W_out W_U): the product accumulates into the direct block
    logits = torch.addmm(through(W_U, b_dir).view(p * p, -1), neurons.view(p * p, -1), W_out @ W_U).view(p, p, -1)
    return GridActs(logits, neurons, pat.permute(2, 0, 1, 3).contiguous())


def _generic(params: dict[str, Tensor], cfg: ModelConfig, p: int, batch: int = 4096) -> GridActs:
    from grokscope.models.transformer import Transformer

    d_vocab, d_out = params["embed.W_E"].shape[0], params["unembed.W_U"].shape[1]
    model = Transformer(cfg, d_vocab, d_out, 3)
    model.load_state_dict({k: v.float() for k, v in params.items()}, strict=False)
    model.eval()
    tokens = _grid_tokens(p)
    last = f"blocks.{cfg.n_layers - 1}.mlp.hook_post"
    want = {"blocks.0.attn.hook_pattern", last}
    logits, neurons, pats = [], [], []
    for i in range(0, p * p, batch):
        out, cache = model.run_with_cache(tokens[i : i + batch], names_filter=lambda n: n in want)
        logits.append(out[:, -1])
        pats.append(cache["blocks.0.attn.hook_pattern"][:, :, -1, :])  # [b, h, 3]
        if last in cache:
            neurons.append(cache[last][:, -1])
    L = torch.cat(logits).reshape(p, p, -1)
    N = torch.cat(neurons).reshape(p, p, -1) if neurons else None
    P = torch.cat(pats).reshape(p, p, -1, 3).permute(2, 0, 1, 3).contiguous()
    return GridActs(L, N, P)


def _grid_tokens(p: int) -> Tensor:
    grid = torch.arange(p * p)
    return torch.stack([grid // p, grid % p, torch.full_like(grid, p)], dim=-1)


def _mlp(params: dict[str, Tensor], cfg, p: int) -> GridActs:
    from grokscope.models.mlp import MLP

    model = MLP(cfg, params["embed.W_E"].shape[0], params["unembed.W_U"].shape[1], 3)
    model.load_state_dict({k: v.float() for k, v in params.items()})
    logits, cache = model.run_with_cache(_grid_tokens(p), names_filter=lambda n: n == "blocks.0.mlp.hook_post")
    return GridActs(logits[:, 0].reshape(p, p, -1), cache["blocks.0.mlp.hook_post"].reshape(p, p, -1), None)
