"""Parameters as one flat buffer per ensemble, and AdamW (or Adam, SGD, ⊥AdamW) over it.

All members' parameters live in one leaf tensor `flat` [member, n_params]; each named parameter
is a view of it. Autograd then hands back one gradient buffer, and AdamW is a handful of
elementwise ops over [member, n_params] however many tensors the model has. Per-member learning
rates and weight decays broadcast as [member, 1], and AdamW is elementwise, so members stay
exactly independent.

AdamW (Loshchilov & Hutter; the update torch.optim.AdamW performs), at update t = 1, 2, ...:
    theta <- theta * (1 - lr * wd)
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    theta <- theta - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from grokscope.config import OptimConfig


def lr_at(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up as the reference code's LambdaLR: lr * min(step / warmup_steps, 1); step 0 has lr 0."""
    if warmup_steps <= 0:
        return lr
    return lr * min(step / warmup_steps, 1.0)


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of the named parameters inside one member's flat vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_params(cls, params: dict[str, Tensor]) -> "ParamLayout":
        return cls(tuple(params), tuple(tuple(t.shape) for t in params.values()))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def n_params(self) -> int:
        return sum(self.sizes)

    def flatten(self, params: dict[str, Tensor]) -> Tensor:
        """{name: [*shape]} -> [n_params] in layout order."""
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """[member, n_params] -> {name: [member, *shape]} views (differentiable back to `flat`)."""
        chunks = flat.split(self.sizes, dim=-1)
        return {n: c.view(flat.shape[0], *s) for n, c, s in zip(self.names, chunks, self.shapes)}


def orthogonalize(flat: Tensor, grad: Tensor, sizes: list[int]) -> Tensor:
    """The ⊥Grad of Prieto et al. (2025): each parameter tensor's gradient g with its component
    along the weights w removed, g - (w.g / w.w) w, then rescaled to the norm of g. Without the part
    that only scales the weights up, training cannot lower the loss by growing the logits (the "naive
    loss minimisation" that ends in softmax collapse). Per member and per named tensor."""
    out = []
    for w, g in zip(flat.detach().split(sizes, dim=-1), grad.split(sizes, dim=-1)):
        proj = (w * g).sum(-1, keepdim=True) / ((w * w).sum(-1, keepdim=True) + 1e-30)
        g_orth = g - proj * w
        out.append(g_orth * (g.norm(dim=-1, keepdim=True) / (g_orth.norm(dim=-1, keepdim=True) + 1e-30)))
    return torch.cat(out, dim=-1)


class FlatOptimizer:
    """AdamW, Adam or SGD on a [member, n_params] buffer, with per-member lr and weight decay.

    kind "adamw": decoupled decay, theta <- theta - lr wd D(theta), then the Adam step.
    kind "adam":  coupled decay (torch.optim.Adam's weight_decay), g <- g + wd D(theta), then the Adam step.
    kind "sgd":   coupled decay, buf <- momentum buf + g, theta <- theta - lr buf (torch.optim.SGD, dampening 0).
    D(theta) is theta - anchor (L2; anchor 0, or the initial weights for decay "to init") or its sign
    (L1). With `orthogonal_sizes` (the named tensors' sizes) the gradient is made orthogonal to the
    weights first (`orthogonalize`: ⊥AdamW with kind "adamw"). SGD keeps its momentum buffer in
    `exp_avg`; its `exp_avg_sq` stays zero, so every optimizer's state has the same fields.
    """

    def __init__(self, flat: Tensor, betas: tuple[float, float], eps: float, kind: str = "adamw", momentum: float = 0.0,
                 anchor: Tensor | None = None, l1: bool = False, orthogonal_sizes: list[int] | None = None) -> None:
        self.b1, self.b2 = betas
        self.eps = eps
        self.kind, self.momentum, self.anchor, self.l1 = kind, momentum, anchor, l1
        self.orthogonal_sizes = orthogonal_sizes
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.t = 0  # updates taken so far

    @torch.no_grad()
    def step(self, flat: Tensor, grad: Tensor, lr: Tensor, wd: Tensor, active: Tensor | None = None) -> None:
        """One update. lr, wd: [member, 1]. active: [member] bool; inactive members are left exactly as they were."""
        if active is not None and not bool(active.any()):
            return  # a skipped step: nothing moves, the step count included
        if active is not None and not bool(active.all()):
            # Others move on; the skipped members keep params and moments (they share the step count t).
            keep = [flat.clone(), self.exp_avg.clone(), self.exp_avg_sq.clone()]
            self._update(flat, grad, lr, wd)
            mask = active[:, None]
            for new, old in zip((flat, self.exp_avg, self.exp_avg_sq), keep):
                new.copy_(torch.where(mask, new, old))
            return
        self._update(flat, grad, lr, wd)

    def _decay(self, flat: Tensor) -> Tensor | None:
        """D(theta) of the class docstring, or None for the canonical decay towards 0 (done in place)."""
        if self.anchor is None and not self.l1:
            return None
        d = flat if self.anchor is None else flat - self.anchor
        return d.sign() if self.l1 else d

    def _update(self, flat: Tensor, grad: Tensor, lr: Tensor, wd: Tensor) -> None:
        self.t += 1
        if self.orthogonal_sizes is not None:
            grad = orthogonalize(flat, grad, self.orthogonal_sizes)
        d = self._decay(flat)
        if self.kind == "adamw":
            if d is None:
                flat.mul_(1 - lr * wd)  # the canonical run's update, bit for bit
            else:
                flat.sub_(lr * wd * d)
        else:  # coupled: the decay is part of the gradient
            grad = grad + wd * (flat if d is None else d)
        if self.kind == "sgd":
            self.exp_avg.mul_(self.momentum).add_(grad)
            flat.sub_(lr * self.exp_avg)
            return
        self.exp_avg.lerp_(grad, 1 - self.b1)
        self.exp_avg_sq.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        bias1 = 1 - self.b1**self.t
        bias2_sqrt = math.sqrt(1 - self.b2**self.t)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        flat.addcdiv_(self.exp_avg * (lr / bias1), denom, value=-1.0)


def make_optimizer(cfg: OptimConfig, flat: Tensor, layout: ParamLayout) -> FlatOptimizer:
    """The optimizer an `optim` config section describes, over the ensemble's buffer `flat` as it is
    now: decay "to init" anchors at these weights, so build it from the initial weights (the trainer
    does, before a resume loads its state; the init is a function of train.seed)."""
    anchor = flat.detach().clone() if cfg.decay_to == "init" else None
    return FlatOptimizer(flat, cfg.betas, cfg.eps, kind=cfg.name, momentum=cfg.momentum, anchor=anchor,
                         l1=cfg.decay_norm == "l1", orthogonal_sizes=layout.sizes if cfg.orthogonal else None)
