"""The local learning coefficient (LLC) by SGLD, with every chain a member of one stacked run.

Seed 001 points to the learning coefficient lambda (the RLCT) as a basin's effective dimension: a
regular model with d parameters has lambda = d / 2, a degenerate one less. The estimator (Lau et
al. 2023, as devinterp) samples the tempered posterior localised at the checkpoint w*,

    p(w) ~ exp(-n beta L_n(w) - gamma / 2 |w - w*|^2),    n beta = n / log n by default,

with stochastic-gradient Langevin dynamics, each step on a minibatch of size B:

    w <- w + (eps / 2) (-n beta grad L_B(w) - gamma (w - w*)) + N(0, eps),

and reads  lambda_hat = n beta (E[L_n(w)] - L_n(w*))  over the draws after `burn_in`. E[L_n(w)] is
estimated by the minibatch losses of the draws (the full-split loss is evaluated at w* only). The
chains run at once as stacked parameters [chain, ...], so C chains cost about one chain's Python
overhead. A chain diverges when a loss is not finite or exceeds `diverge_factor` x L_n(w*) + 10;
its estimate is left out and named. `calibrate` sweeps eps and gamma and says which settings give
chains that neither diverge nor drift (the last quarter's mean within `drift_tol` of the second).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.core import over_checkpoints
from grokscope.config import ConfigError

BatchLoss = Callable[[dict[str, Tensor], Tensor | None], Tensor]  # (stacked params, rows [C, B] or None) -> [C]


@dataclass
class LLCEstimate:
    """One checkpoint's estimate: the mean and spread over chains, and the loss trace of every chain."""

    llc: float  # mean over the chains that did not diverge (nan if all did)
    llc_std: float
    per_chain: list[float]
    diverged: list[int]  # chains left out
    init_loss: float  # L_n(w*)
    nbeta: float
    settings: dict
    trace: pd.DataFrame  # chain, draw, loss (minibatch loss of each draw)
    seconds: float
    step: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready: a value that is not finite (every chain diverged) is None."""
        fin = lambda x: x if math.isfinite(x) else None  # noqa: E731
        return {"step": self.step, "llc": fin(self.llc), "llc_std": fin(self.llc_std), "per_chain": [fin(x) for x in self.per_chain],
                "diverged": self.diverged, "init_loss": self.init_loss, "nbeta": self.nbeta, "settings": self.settings,
                "seconds": self.seconds}


def _check(**kw: Any) -> None:
    for key, v in kw.items():
        if key in ("eps", "gamma", "nbeta") and v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(key, f"must be a finite number > 0 (got {v})")
        if key in ("chains", "draws") and (not isinstance(v, int) or v < 1):
            raise ConfigError(key, f"must be an integer >= 1 (got {v})")
        if key == "burn_in" and (not isinstance(v, int) or v < 0):
            raise ConfigError(key, f"must be an integer >= 0 (got {v})")
        if key == "batch_size" and v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(key, f"must be an integer >= 1, or None for the whole split (got {v})")


def sgld_llc(loss: BatchLoss, w_star: dict[str, Tensor], n: int, chains: int = 4, draws: int = 100, burn_in: int = 50,
             eps: float = 1e-4, gamma: float = 1e4, nbeta: float | None = None, batch_size: int | None = 512,
             seed: int = 0, diverge_factor: float = 10.0) -> LLCEstimate:
    """The LLC at w_star ({name: tensor}, unstacked) of a loss over n examples (module docstring).

    loss(params [C, ...], rows [C, B]) is the mean loss of each chain on its own rows; rows None is
    every example. batch_size None or >= n: full batch (no minibatch noise). burn_in steps come
    before the `draws` that are averaged. The defaults are what `calibrate` left on the canonical
    run (docs/landscape.md): gamma 100 diverged there, and eps * gamma = 1 mixes in a few steps."""
    _check(eps=eps, gamma=gamma, nbeta=nbeta, chains=chains, draws=draws, burn_in=burn_in, batch_size=batch_size)
    nbeta = nbeta if nbeta is not None else n / math.log(n)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    device = next(iter(w_star.values())).device
    star = {k: v.detach().unsqueeze(0).expand(chains, *v.shape).clone() for k, v in w_star.items()}
    w = {k: v.clone() for k, v in star.items()}
    with torch.no_grad():
        init_loss = float(loss({k: v[:1] for k, v in star.items()}, None)[0])
    full = batch_size is None or batch_size >= n

    def batch_loss(params: dict[str, Tensor], rows: Tensor | None) -> Tensor:
        values = loss(params, rows)
        return values.sum(), values.detach()

    grad = torch.func.grad(batch_loss, has_aux=True)
    bound = diverge_factor * init_loss + 10.0
    trace = np.full((chains, burn_in + draws), np.nan)
    alive = torch.ones(chains, dtype=torch.bool)
    for t in range(burn_in + draws):
        rows = None if full else torch.randint(0, n, (chains, batch_size), generator=gen).to(device)
        g, values = grad(w, rows)
        trace[:, t] = values.double().cpu().numpy()
        bad = ~torch.isfinite(values.cpu()) | (values.cpu() > bound)
        alive &= ~bad
        with torch.no_grad():
            for k in w:
                noise = torch.randn(w[k].shape, generator=gen, dtype=w[k].dtype).to(device)
                step = -0.5 * eps * (nbeta * g[k] + gamma * (w[k] - star[k])) + math.sqrt(eps) * noise
                w[k] = torch.where(alive.to(device).view(-1, *[1] * (w[k].dim() - 1)), w[k] + step, w[k])
    per_chain = [float(nbeta * (np.mean(trace[c, burn_in:]) - init_loss)) for c in range(chains)]
    ok = [c for c in range(chains) if bool(alive[c])]
    vals = np.array([per_chain[c] for c in ok])
    settings = {"chains": chains, "draws": draws, "burn_in": burn_in, "eps": eps, "gamma": gamma,
                "batch_size": None if full else batch_size, "seed": seed, "n": n}
    df = pd.DataFrame({"chain": np.repeat(np.arange(chains), burn_in + draws),
                       "draw": np.tile(np.arange(burn_in + draws) - burn_in, chains), "loss": trace.reshape(-1)})
    return LLCEstimate(float(vals.mean()) if len(vals) else float("nan"), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                       per_chain, [c for c in range(chains) if c not in ok], init_loss, nbeta, settings, df,
                       time.perf_counter() - t0)


def estimate_llc(run: Any, step: int | None = None, split: str = "train", device: str = "cpu", **kw: Any) -> LLCEstimate:
    """The LLC of a run at a checkpoint (default the last); keywords as `sgld_llc`."""
    from grokscope.run import as_run, checkpoint_step

    run = as_run(run)
    step = checkpoint_step(run, step)
    f = run.loss_fn(split, device=device)
    params = {k: v.to(device) for k, v in run.params(step).items()}
    est = sgld_llc(f, params, f.n_examples, **kw)
    est.step = step
    return est


def llc_over_checkpoints(run: Any, steps: Sequence[int] | None = None, n: int = 40, split: str = "train",
                         device: str = "cpu", progress: Callable[[int, int], None] | None = None,
                         **kw: Any) -> pd.DataFrame:
    """One row per checkpoint (n evenly spaced by default): step, llc, llc_std, init_loss, diverged chains."""
    def measure(r: Any, s: int) -> dict:
        e = estimate_llc(r, s, split, device, **kw)
        return {"llc": e.llc, "llc_std": e.llc_std, "init_loss": e.init_loss, "diverged": len(e.diverged)}

    return over_checkpoints(run, measure, steps, n, progress)


def calibrate(run: Any, step: int | None = None, eps: Sequence[float] = (1e-5, 3e-5, 1e-4),
              gamma: Sequence[float] = (1e3, 1e4, 1e5), drift_tol: float = 0.1, **kw: Any) -> pd.DataFrame:
    """Every (eps, gamma): the estimate, diverged chains, and whether the chains settled (`stable`:
    none diverged and each chain's last-quarter mean loss is within drift_tol (relative, of the loss
    rise over L_n(w*)) of its second-quarter mean). Pick a stable setting; compare checkpoints with one."""
    rows = []
    for e in eps:
        for g in gamma:
            est = estimate_llc(run, step, eps=e, gamma=g, **kw)
            tr = est.trace[est.trace["draw"] >= 0]
            drift = []
            for _, c in tr.groupby("chain"):
                x = c["loss"].to_numpy() - est.init_loss
                q = max(len(x) // 4, 1)
                second, last = x[q:2 * q].mean(), x[-q:].mean()
                drift.append(abs(last - second) / max(abs(last), 1e-12))
            settled = bool(not est.diverged and np.all(np.isfinite(drift)) and max(drift) <= drift_tol)
            rows.append({"eps": e, "gamma": g, "llc": est.llc, "llc_std": est.llc_std, "diverged": len(est.diverged),
                         "max_drift": float(max(drift)) if drift else float("nan"), "stable": settled})
    return pd.DataFrame(rows)
