"""Parameters as one flat buffer per ensemble, and AdamW over it.

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


class FlatAdamW:
    """AdamW on a [member, n_params] buffer with per-member lr and weight decay."""

    def __init__(self, flat: Tensor, betas: tuple[float, float], eps: float) -> None:
        self.b1, self.b2 = betas
        self.eps = eps
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

    def _update(self, flat: Tensor, grad: Tensor, lr: Tensor, wd: Tensor) -> None:
        self.t += 1
        flat.mul_(1 - lr * wd)
        self.exp_avg.lerp_(grad, 1 - self.b1)
        self.exp_avg_sq.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        bias1 = 1 - self.b1**self.t
        bias2_sqrt = math.sqrt(1 - self.b2**self.t)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        flat.addcdiv_(self.exp_avg * (lr / bias1), denom, value=-1.0)
