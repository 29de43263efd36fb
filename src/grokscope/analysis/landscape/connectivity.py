"""Mode connectivity: the loss along the straight line between two models, and along a quadratic
Bezier curve whose middle control point is trained to make the whole curve low (Garipov et al. 2018).

    theta(t) = (1 - t) a + t b                                  (linear)
    theta(t) = (1 - t)^2 a + 2 t (1 - t) c + t^2 b              (Bezier; c starts at (a + b) / 2)

c (the midpoint plus a 1 % nudge) minimises E_{t ~ U(0, 1)} L(theta(t)) by Adam, each step on `t_per_step` random t at once (the
points are members of one stacked call). The barrier of a path is the largest excess of its loss
over the straight interpolation of the end losses: max_t L(theta(t)) - ((1 - t) L(a) + t L(b)).
A barrier near 0 means the two models are connected by a low-loss path of that shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.config import ConfigError

StackedLoss = Callable[[dict[str, Tensor]], Tensor]  # {name: [m, ...]} -> [m]


def _points(a: dict[str, Tensor], b: dict[str, Tensor], t: Tensor, c: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    out = {}
    for k in a:
        shape = (-1, *[1] * a[k].dim())
        tt = t.to(a[k].dtype).view(shape)
        out[k] = ((1 - tt) * a[k] + tt * b[k] if c is None
                  else (1 - tt) ** 2 * a[k] + 2 * tt * (1 - tt) * c[k] + tt ** 2 * b[k])
    return out


def barrier(ts: np.ndarray, losses: np.ndarray) -> float:
    return float(np.max(losses - ((1 - ts) * losses[0] + ts * losses[-1])))


@dataclass
class Connection:
    """The loss along the linear path and (if trained) the Bezier curve between two models."""

    path: pd.DataFrame  # t, linear[, bezier]
    linear_barrier: float
    bezier_barrier: float | None
    seconds: float
    settings: dict

    def to_dict(self) -> dict:
        return {"linear_barrier": self.linear_barrier, "bezier_barrier": self.bezier_barrier, "seconds": self.seconds,
                "settings": self.settings, "path": self.path.to_dict(orient="list")}


def connect(loss: StackedLoss, a: dict[str, Tensor], b: dict[str, Tensor], n_points: int = 21, bezier: bool = True,
            steps: int = 200, lr: float = 1e-2, t_per_step: int = 4, seed: int = 0) -> Connection:
    """The linear path and (bezier) a trained quadratic Bezier curve between parameter dicts a and b."""
    if n_points < 2:
        raise ConfigError("n_points", f"must be an integer >= 2 (got {n_points})")
    if steps < 0 or t_per_step < 1:
        raise ConfigError("steps" if steps < 0 else "t_per_step", "must be a positive integer")
    t0 = time.perf_counter()
    ts = torch.linspace(0, 1, n_points, dtype=torch.float64)
    with torch.no_grad():
        lin = loss(_points(a, b, ts)).double().cpu().numpy()
    df = pd.DataFrame({"t": ts.numpy(), "linear": lin})
    out_b = None
    if bezier:
        gen = torch.Generator().manual_seed(seed)
        c = {}
        for k in a:  # the midpoint, nudged: on a path of exact symmetry the midpoint's gradient across it is 0
            scale = float((b[k] - a[k]).norm()) / max(a[k].numel(), 1) ** 0.5 or 1.0
            nudge = torch.randn(a[k].shape, generator=gen, dtype=a[k].dtype).to(a[k].device)
            c[k] = ((a[k] + b[k]) / 2 + 1e-2 * scale * nudge).requires_grad_(True)
        opt = torch.optim.Adam(list(c.values()), lr=lr)
        for _ in range(steps):
            t = torch.rand(t_per_step, generator=gen, dtype=torch.float64)
            value = loss(_points(a, b, t, c)).mean()
            opt.zero_grad()
            value.backward()
            opt.step()
        with torch.no_grad():
            df["bezier"] = loss(_points(a, b, ts, {k: v.detach() for k, v in c.items()})).double().cpu().numpy()
        out_b = barrier(df["t"].to_numpy(), df["bezier"].to_numpy())
    settings = {"n_points": n_points, "bezier": bezier, "steps": steps, "lr": lr, "t_per_step": t_per_step, "seed": seed}
    return Connection(df, barrier(df["t"].to_numpy(), lin), out_b, time.perf_counter() - t0, settings)


def connect_runs(run: Any, step_a: int, step_b: int, other: Any = None, split: str = "train", device: str = "cpu",
                 **kw: Any) -> Connection:
    """Between checkpoint step_a of `run` and step_b of `other` (default the same run). The two runs
    must have the same model shapes; the loss is `run`'s on `split`."""
    from grokscope.run import as_run, checkpoint_step

    ra = as_run(run)
    rb = ra if other is None else as_run(other)
    checkpoint_step(ra, step_a, "step_a"), checkpoint_step(rb, step_b, "step_b")
    a, b = ra.params(step_a), rb.params(step_b)
    if {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
        raise ConfigError("other", f"{rb.path} has other parameter shapes than {ra.path}; connect runs of one model")
    f = ra.loss_fn(split, device=device)
    con = connect(lambda p: f(p), {k: v.to(device) for k, v in a.items()}, {k: v.to(device) for k, v in b.items()}, **kw)
    con.settings.update({"run_a": str(ra.path), "step_a": step_a, "run_b": str(rb.path), "step_b": step_b, "split": split})
    return con
