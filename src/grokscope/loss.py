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


def stablemax_s(x: Tensor) -> Tensor:
    """s(x) = x + 1 for x >= 0, 1 / (1 - x) below: StableMax's stand-in for exp (Prieto et al. 2025).
    It grows linearly, so a large logit gap never rounds the normalised output to an exact one-hot.
    Each branch is evaluated on clamped inputs, so neither sends an inf or a NaN into the gradient."""
    return torch.where(x >= 0, x.clamp(min=0) + 1, 1 / (1 - x.clamp(max=0)))


def log_probs(x: Tensor, loss: str = "cross_entropy") -> Tensor:
    """Log-probabilities over the last dimension: log softmax, or log StableMax (`train.loss`)."""
    if loss == "stablemax":
        s = stablemax_s(x)
        return s.log() - s.sum(-1, keepdim=True).log()
    return x.log_softmax(-1)


def masked_loss(logits: Tensor, labels: Tensor, mask: Tensor, dtype: torch.dtype = torch.float64,
                loss: str = "cross_entropy") -> Tensor:
    """`masked_cross_entropy`, or with loss="stablemax" the same mean over StableMax (plain autograd)."""
    if loss != "stablemax":
        return masked_cross_entropy(logits, labels, mask, dtype)
    picked = log_probs(logits.to(dtype), loss).gather(-1, labels[..., None])[..., 0]  # [m B]
    w = mask.to(dtype)
    return -(picked * w).sum(-1) / w.sum(-1)


def masked_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """logits [member batch vocab], labels [member batch] (int64), mask [member batch] (bool) -> [member].

    Each member's mean cross-entropy over its unmasked examples, computed in `dtype`.
    """
    return _MaskedCE.apply(logits, labels, mask, dtype)
