"""Per-member mean cross-entropy in a chosen dtype, as one autograd node.

Why one node: the obvious `logits.double().log_softmax(-1).gather(...)` records a cast, a
log-softmax and a gather, and its backward zero-fills a [member batch vocab] float64 buffer,
scatters into it, recomputes exp() in log_softmax's backward and casts back. Here the forward keeps
the softmax it has already computed, and the backward is one product and one scatter:

    loss[m]        = sum_b w[m, b] (logsumexp(x[m, b]) - x[m, b, y[m, b]]) / sum_b w[m, b]
    d x[m, b, :]   = g[m] w[m, b] / sum_b w[m, b] * (softmax(x[m, b]) - onehot(y[m, b]))

with x the logits cast to `dtype` (float64 by default: the reference code's CE, which avoids the
"slingshot" loss spikes of float32) and w the 0/1 mask of real (non-padding) examples. The
gradient is cast back to the logits' dtype, as autograd through `.to(dtype)` would.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _MaskedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:  # type: ignore[override]
        x = logits.to(dtype)  # [m B V]
        top = x.amax(-1, keepdim=True)  # [m B 1]
        p = (x - top).exp_()  # [m B V], unnormalised
        z = p.sum(-1, keepdim=True)  # [m B 1]
        ce = (top + z.log() - x.gather(-1, labels[..., None]))[..., 0]  # [m B]
        w = mask.to(dtype)
        w_sum = w.sum(-1)  # [m]
        if ctx.needs_input_grad[0]:  # evaluation (no grad) skips normalising and keeping the softmax
            ctx.save_for_backward(p.div_(z), labels, w / w_sum[:, None])
            ctx.out_dtype = logits.dtype
        return (ce * w).sum(-1) / w_sum

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        p, labels, w = ctx.saved_tensors
        scale = (w * g[:, None])[..., None]  # [m B 1]
        grad = (p * scale).scatter_add_(-1, labels[..., None], -scale)  # [m B V]
        return grad.to(ctx.out_dtype), None, None, None


def masked_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """logits [member batch vocab], labels [member batch] (int64), mask [member batch] (bool) -> [member].

    Each member's mean cross-entropy over its unmasked examples, computed in `dtype`.
    """
    return _MaskedCE.apply(logits, labels, mask, dtype)
