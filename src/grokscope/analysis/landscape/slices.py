"""Slices of the loss surface: along random filter-normalised directions (Li et al. 2018), and in the
plane of the training trajectory's first two principal components with the trajectory drawn on it
(seed 000's "path through the landscape").

- A filter-normalised direction d: Gaussian, then each filter (a row along the first axis of a
  weight matrix; a whole vector for 1D parameters) rescaled to the norm of the same filter of the
  centre. The surface then reads in units of the weights' own scale, so runs compare.
- 1D: L(c + alpha d) for alpha in `alphas`. 2D: L(c + alpha d1 + beta d2) on a grid.
- PCA plane: the checkpoints theta_t minus the final theta_T, flattened; their top two right
  singular vectors u1, u2 span the plane, each checkpoint sits at ((theta_t - theta_T) . u1,
  (theta_t - theta_T) . u2), and the surface is L(theta_T + a u1 + b u2) over a grid that covers
  the trajectory with a margin. `explained` is the share of the trajectory's squared distance from
  theta_T inside the plane.

Points are evaluated as members of one stacked call, `chunk` at a time.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.config import ConfigError

StackedLoss = Callable[[dict[str, Tensor]], Tensor]


def filter_normalised(center: dict[str, Tensor], seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in center.items():
        d = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        c = v.detach().double().cpu()
        if v.dim() >= 2:
            dn = d.flatten(1).norm(dim=1).clamp_min(1e-12)
            cn = c.flatten(1).norm(dim=1)
            d = d * (cn / dn).view(-1, *[1] * (v.dim() - 1))
        else:
            d = d * (c.norm() / d.norm().clamp_min(1e-12))
        out[k] = d.to(dtype=v.dtype, device=v.device)
    return out


def _evaluate(loss: StackedLoss, center: dict[str, Tensor], coords: np.ndarray, dirs: Sequence[dict[str, Tensor]],
              chunk: int) -> np.ndarray:
    """L(center + sum_j coords[i, j] dirs[j]) for every row i of coords [N, n_dirs]."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(coords), chunk):
            c = torch.as_tensor(coords[lo:lo + chunk])
            pts = {}
            for k, v in center.items():
                shift = sum(c[:, j].to(v.dtype).to(v.device).view(-1, *[1] * v.dim()) * d[k] for j, d in enumerate(dirs))
                pts[k] = v.unsqueeze(0) + shift
            out.append(loss(pts).double().cpu().numpy())
    return np.concatenate(out)


def slice_1d(loss: StackedLoss, center: dict[str, Tensor], direction: dict[str, Tensor], alphas: np.ndarray,
             chunk: int = 8) -> pd.DataFrame:
    return pd.DataFrame({"alpha": alphas, "loss": _evaluate(loss, center, np.asarray(alphas)[:, None], [direction], chunk)})


def slice_2d(loss: StackedLoss, center: dict[str, Tensor], d1: dict[str, Tensor], d2: dict[str, Tensor],
             alphas: np.ndarray, betas: np.ndarray, chunk: int = 8) -> pd.DataFrame:
    a, b = np.meshgrid(alphas, betas, indexing="ij")
    coords = np.stack([a.ravel(), b.ravel()], 1)
    return pd.DataFrame({"alpha": coords[:, 0], "beta": coords[:, 1], "loss": _evaluate(loss, center, coords, [d1, d2], chunk)})


def pca_plane(trajectory: Sequence[dict[str, Tensor]]) -> tuple[list[dict[str, Tensor]], np.ndarray, float]:
    """(two unit directions, coordinates [T, 2] of every point relative to the last, explained share)."""
    names = list(trajectory[-1])
    flat = torch.stack([torch.cat([p[k].double().reshape(-1) for k in names]) for p in trajectory])
    rel = flat - flat[-1]
    _, S, Vh = torch.linalg.svd(rel, full_matrices=False)
    V = Vh[:2]
    coords = (rel @ V.T).numpy()
    total = float((rel ** 2).sum())
    explained = float((S[:2] ** 2).sum() / total) if total > 0 else 1.0
    dirs = []
    for v in V:
        parts = torch.split(v, [trajectory[-1][k].numel() for k in names])
        dirs.append({k: part.reshape(trajectory[-1][k].shape).to(trajectory[-1][k].dtype) for k, part in zip(names, parts)})
    return dirs, coords, explained


def run_slice(run: Any, kind: str = "pca", step: int | None = None, split: str = "train", grid: int = 21,
              span: float = 1.0, checkpoints: int = 40, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """A slice of a run's loss: kind "1d" or "2d" (filter-normalised random directions at `step`,
    alpha in [-span, span]) or "pca" (the plane of the trajectory over `checkpoints` evenly spaced
    checkpoints, the grid covering it with a 20 % margin, times `span`). Returns {"surface": DataFrame,
    "trajectory": DataFrame (pca), "explained": float (pca), "settings": dict}."""
    from grokscope.analysis import subsample_steps
    from grokscope.run import as_run, checkpoint_step

    if kind not in ("1d", "2d", "pca"):
        raise ConfigError("slice", f"must be one of 1d, 2d, pca (got {kind!r})")
    if grid < 2:
        raise ConfigError("grid", f"must be an integer >= 2 (got {grid})")
    if not span > 0:
        raise ConfigError("span", f"must be a number > 0 (got {span})")
    r = as_run(run)
    f = r.loss_fn(split, device=device)
    settings = {"kind": kind, "split": split, "grid": grid, "span": span, "seed": seed}
    if kind == "pca":
        steps = subsample_steps(r.steps, checkpoints)
        traj = [{k: v.to(device) for k, v in r.params(s).items()} for s in steps]
        dirs, coords, explained = pca_plane(traj)
        lo, hi = coords.min(0), coords.max(0)
        pad = 0.2 * np.maximum(hi - lo, 1e-6)
        a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid) * span
        b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid) * span
        surface = slice_2d(f, traj[-1], dirs[0], dirs[1], a, b)
        track = pd.DataFrame({"step": steps, "alpha": coords[:, 0], "beta": coords[:, 1],
                              "loss": _evaluate(f, traj[-1], coords, dirs, 8)})
        settings.update({"steps": [int(s) for s in steps], "center_step": int(steps[-1])})
        return {"surface": surface, "trajectory": track, "explained": explained, "settings": settings}
    step = checkpoint_step(r, step)
    center = {k: v.to(device) for k, v in r.params(step).items()}
    alphas = np.linspace(-span, span, grid)
    settings["center_step"] = step
    if kind == "1d":
        return {"surface": slice_1d(f, center, filter_normalised(center, seed), alphas), "settings": settings}
    return {"surface": slice_2d(f, center, filter_normalised(center, seed), filter_normalised(center, seed + 1), alphas, alphas),
            "settings": settings}
