"""The loss Hessian of a run at a checkpoint (or at every one), by Hessian-vector products.

    from grokscope.analysis.landscape import hessian
    c = hessian("runs/nanda2023", k=20)                       # top-20 eigenvalues at the last checkpoint
    c = hessian(run, step=2000, split="test", params=["blocks.0.mlp.*"], trace_samples=30, density_vectors=4)
    df = hessian_over_checkpoints(run, n=40, k=5)            # step, lambda_1..5 (a progress measure)

The loss is `Run.loss_fn(split)`: the mean cross-entropy over the whole split, in the run's
train.loss_dtype. `params` picks a subset by name patterns (fnmatch: "blocks.0.attn.*"); the other
parameters stay fixed at the checkpoint. The math is in `curvature`.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.landscape.curvature import (SpectralDensity, effective_dimension, hutchinson_trace, lanczos,
                                                    spectral_density)
from grokscope.analysis.core import over_checkpoints
from grokscope.config import ConfigError


def select_params(names: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """The parameter names matching any pattern (all for None); an empty match names the field."""
    if not patterns:
        return list(names)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ConfigError("params", f"no parameter matches {list(patterns)} (parameters: {', '.join(names)})")
    return chosen


class FlatLoss:
    """The run's loss as a function of one flat vector of the chosen parameters, with its gradient and
    Hessian-vector products (the other parameters fixed at `params`)."""

    def __init__(self, loss_fn: Callable[[dict[str, Tensor]], Tensor], params: dict[str, Tensor], names: list[str]) -> None:
        self.loss_fn, self.names = loss_fn, names
        self.fixed = {k: v.unsqueeze(0) for k, v in params.items() if k not in names}
        self.shapes = [params[n].shape for n in names]
        self.sizes = [params[n].numel() for n in names]
        self.dtype = params[names[0]].dtype
        self.x0 = torch.cat([params[n].reshape(-1) for n in names])
        self.dim = int(self.x0.numel())
        self.n_hvp = 0

    def unflat(self, x: Tensor) -> dict[str, Tensor]:
        parts = torch.split(x, self.sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def stacked(self, X: Tensor) -> dict[str, Tensor]:
        """Points X [m, dim] as the stacked parameters {name: [m, *shape]} the loss takes."""
        m = X.shape[0]
        parts = torch.split(X, self.sizes, dim=1)
        chosen = {n: p.reshape(m, *s) for n, p, s in zip(self.names, parts, self.shapes)}
        return {**{k: v.expand(m, *v.shape[1:]) for k, v in self.fixed.items()}, **chosen}

    def value(self, x: Tensor) -> Tensor:
        return self.loss_fn(self.stacked(x[None])).sum()

    def hvp(self, v: Tensor) -> Tensor:
        """H v at x0, forward-over-reverse; v in any float dtype, the result in float64."""
        self.n_hvp += 1
        _, out = torch.func.jvp(torch.func.grad(self.value), (self.x0,), (v.to(self.dtype),))
        return out.double()


@dataclass
class Curvature:
    """What `hessian` measured at one checkpoint."""

    step: int
    split: str
    params: list[str]
    dim: int
    eigenvalues: np.ndarray  # top-k, descending
    loss: float
    trace: float | None = None  # Hutchinson
    trace_se: float | None = None
    density: SpectralDensity | None = None
    seconds: float = 0.0
    n_hvp: int = 0
    eigenvectors: Tensor | None = field(default=None, repr=False)  # [k, dim], in the order of `params`

    def effective_dimension(self, threshold: float = 1e-3) -> dict[str, Any]:
        """Eigenvalues above `threshold`: counted among the top-k, and estimated from the density."""
        out: dict[str, Any] = {"threshold": threshold, "top_k_above": effective_dimension(self.eigenvalues, threshold),
                               "k": len(self.eigenvalues)}
        if self.density is not None:
            out["density_estimate"] = self.density.count_above(threshold)
        return out

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"step": self.step, "split": self.split, "params": self.params, "dim": self.dim,
                             "loss": self.loss, "eigenvalues": [float(x) for x in self.eigenvalues],
                             "trace": self.trace, "trace_se": self.trace_se, "seconds": self.seconds, "n_hvp": self.n_hvp,
                             "effective_dimension": self.effective_dimension()}
        if self.density is not None:
            grid, dens = self.density.density()
            d["density"] = {"trace_slq": self.density.trace(), "grid": grid.tolist(), "density": dens.tolist()}
        return d


def _flat_loss(run: Any, step: int | None, split: str, params: Sequence[str] | None, device: str) -> tuple[FlatLoss, int]:
    from grokscope.run import as_run, checkpoint_step

    run = as_run(run)
    step = checkpoint_step(run, step)
    p = {k: v.to(device) for k, v in run.params(step).items()}
    return FlatLoss(run.loss_fn(split, device=device), p, select_params(list(p), params)), step


def hessian(run: Any, step: int | None = None, split: str = "train", params: Sequence[str] | None = None, k: int = 20,
            lanczos_steps: int | None = None, trace_samples: int = 0, density_vectors: int = 0, density_steps: int = 60,
            seed: int = 0, device: str = "cpu", keep_vectors: bool = False) -> Curvature:
    """Top-k Hessian eigenvalues of the loss at a checkpoint; with trace_samples > 0 the Hutchinson
    trace, with density_vectors > 0 the spectral density (stochastic Lanczos quadrature)."""
    if k < 1:
        raise ConfigError("k", f"must be an integer >= 1 (got {k})")
    if trace_samples < 0 or density_vectors < 0:
        raise ConfigError("trace_samples" if trace_samples < 0 else "density_vectors", "must be an integer >= 0")
    t0 = time.perf_counter()
    f, step = _flat_loss(run, step, split, params, device)
    with torch.no_grad():
        loss = float(f.value(f.x0))
    eigs, vecs = lanczos(f.hvp, f.dim, k=min(k, f.dim), steps=lanczos_steps, seed=seed, device=device)
    out = Curvature(step, split, f.names, f.dim, eigs, loss, eigenvectors=vecs.cpu() if keep_vectors else None)
    if trace_samples:
        out.trace, out.trace_se = hutchinson_trace(f.hvp, f.dim, trace_samples, seed=seed + 1, device=device)
    if density_vectors:
        out.density = spectral_density(f.hvp, f.dim, density_vectors, density_steps, seed=seed + 2, device=device)
    out.seconds, out.n_hvp = time.perf_counter() - t0, f.n_hvp
    return out


def hessian_over_checkpoints(run: Any, steps: Sequence[int] | None = None, n: int = 20, k: int = 5, split: str = "train",
                             params: Sequence[str] | None = None, trace_samples: int = 0, seed: int = 0,
                             device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per checkpoint (n evenly spaced ones by default): step, loss, lambda_1..k[, trace]."""
    def measure(r: Any, s: int) -> dict:
        c = hessian(r, s, split, params, k, trace_samples=trace_samples, seed=seed, device=device)
        row = {"loss": c.loss, **{f"lambda_{j + 1}": float(e) for j, e in enumerate(c.eigenvalues)}}
        return row if c.trace is None else {**row, "trace": c.trace}

    return over_checkpoints(run, measure, steps, n, progress)

