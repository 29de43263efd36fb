"""Per-member mean cross-entropy in a chosen dtype, as one autograd node.

Why one node: the obvious `logits.double().log_softmax(-1).gather(...)` records a cast, a
log-softmax and a gather, and its backward zero-fills a [member batch vocab] float64 buffer,
scatters into it, recomputes exp() in log_softmax's backward and casts back. Here the forward keeps
the unnormalised softmax it has already computed (in the cast's own buffer: shift, exp, sum, all in
place), and the backward is one in-place product, one scatter and the cast back:

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
        x = logits.to(dtype, copy=True)  # [m B V]; a fresh buffer, so the passes below work in place
        x.sub_(x.amax(-1, keepdim=True))  # shifted: logsumexp(x) - x_y is unchanged
        picked = x.gather(-1, labels[..., None])[..., 0]  # [m B]
        p = x.exp_()  # [m B V], unnormalised softmax
        z = p.sum(-1)  # [m B]
        w = mask.to(dtype)
        w = w / w.sum(-1, keepdim=True)  # [m B]: each member's mean over its real examples
        if ctx.needs_input_grad[0]:  # evaluation (no grad) keeps nothing
            ctx.save_for_backward(p, z, labels, w)
            ctx.out_dtype = logits.dtype
        return ((z.log() - picked) * w).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        p, z, labels, w = ctx.saved_tensors
        scale = (w * g[:, None])[..., None]  # [m B 1]
        grad = p.mul_(scale / z[..., None]).scatter_add_(-1, labels[..., None], -scale)  # softmax - onehot, in place
        return grad.to(ctx.out_dtype), None, None, None


def loss_dtype(name: str) -> torch.dtype:
    """train.loss_dtype ("float64" | "float32") as a torch dtype."""
    return torch.float64 if name == "float64" else torch.float32


def masked_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """logits [member batch vocab], labels [member batch] (int64), mask [member batch] (bool) -> [member].

    Each member's mean cross-entropy over its unmasked examples, computed in `dtype`.
    """
    return _MaskedCE.apply(logits, labels, mask, dtype)
