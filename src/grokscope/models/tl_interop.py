"""TransformerLens interop: a grokscope Transformer as a HookedTransformer with the same weights, and back.

grokscope's model already uses TransformerLens's parameter names and shapes (W_Q [head d_model
d_head], W_O [head d_head d_model], ...), so the conversion is a config translation plus a state
dict. What differs is filled in explicitly: TransformerLens always has attention biases (b_Q,
b_K, b_V, b_O) and b_U, so a grokscope model without them maps to zeros, and its LayerNorm is
TransformerLens's "LN" (eps 1e-5). The logits agree to float rounding (tests/test_tl_interop.py).

Needs TransformerLens 2.x or 3.x (`pip install 'grokscope[tl]'`; tested with 3.9.0). TransformerLens
4 removed HookedTransformer: 4.3.0 points to `TransformerBridge.boot_transformers(name)`, which
boots a Hugging Face model by name, and this module does not target it.
"""

from __future__ import annotations

from typing import Any

import torch

from grokscope.config import ModelConfig

_ATTN_BIASES = ("b_Q", "b_K", "b_V", "b_O")


def _tl():
    """transformer_lens, where it still has HookedTransformer (2.x, 3.x)."""
    try:
        import transformer_lens

        transformer_lens.HookedTransformer, transformer_lens.HookedTransformerConfig  # noqa: B018
    except ImportError as err:  # 4.x raises ImportError on HookedTransformer itself
        raise ImportError("TransformerLens interop needs transformer_lens 2.x or 3.x (4.0 removed HookedTransformer): "
                          f"pip install 'grokscope[tl]' ({str(err).splitlines()[0]})") from None
    return transformer_lens


def to_hooked_transformer(model: Any) -> Any:
    """A transformer_lens.HookedTransformer with `model`'s architecture and weights (on model's device)."""
    tl = _tl()
    cfg = model.cfg
    tl_cfg = tl.HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head,
        d_mlp=None if cfg.attn_only else cfg.d_mlp, d_vocab=model.d_vocab, d_vocab_out=model.d_vocab_out,
        n_ctx=model.n_ctx, act_fn=cfg.act_fn, normalization_type="LN" if cfg.normalization == "LN" else None,
        attn_only=cfg.attn_only, positional_embedding_type="standard", default_prepend_bos=False,
        device=str(next(model.parameters()).device), dtype=next(model.parameters()).dtype)
    ht = tl.HookedTransformer(tl_cfg)
    ours = dict(model.state_dict())
    state = {}
    for name, value in ht.state_dict().items():
        if name in ours:
            if ours[name].shape != value.shape:
                raise ValueError(f"{name}: grokscope shape {tuple(ours[name].shape)} != TransformerLens {tuple(value.shape)}")
            state[name] = ours[name]
        elif name.rsplit(".", 1)[-1] in (*_ATTN_BIASES, "b_U"):
            state[name] = torch.zeros_like(value)  # a bias grokscope's model does not have: zero
        else:
            state[name] = value  # TransformerLens's own buffers (causal mask, IGNORE)
    missing = sorted(set(ours) - set(state))
    if missing:
        raise ValueError(f"TransformerLens has no place for {', '.join(missing)}")
    ht.load_state_dict(state)
    return ht


def from_hooked_transformer(ht: Any) -> tuple[ModelConfig, int, int, int, dict[str, torch.Tensor]]:
    """What `Transformer.from_hooked_transformer` builds from: (config, d_vocab, d_vocab_out, n_ctx,
    state dict). The HookedTransformer must be of the kind grokscope builds (standard positional
    embedding, relu/gelu, LN or none); non-zero biases turn the config's bias options on."""
    c = ht.cfg
    if c.positional_embedding_type != "standard" or c.act_fn not in ("relu", "gelu") or c.normalization_type not in (None, "LN"):
        raise ValueError("grokscope models have standard positional embeddings, act_fn relu or gelu, and LN or no "
                         f"normalization (got {c.positional_embedding_type}, {c.act_fn}, {c.normalization_type})")
    sd = ht.state_dict()
    nonzero = lambda suffix: any(k.endswith(suffix) and bool(v.any()) for k, v in sd.items())  # noqa: E731
    cfg = ModelConfig(n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, d_head=c.d_head,
                      d_mlp=c.d_mlp or 0, act_fn=c.act_fn, normalization="LN" if c.normalization_type == "LN" else None,
                      attn_only=c.attn_only, attn_bias=any(nonzero(f".{b}") for b in _ATTN_BIASES),
                      unembed_bias=nonzero("unembed.b_U"))
    return cfg, c.d_vocab, c.d_vocab_out, c.n_ctx, sd
