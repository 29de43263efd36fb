"""Cross-check grokscope's LLC against devinterp 1.3.2 (an optional install, never a dependency).

    pip install --no-deps devinterp==1.3.2 einops cloudpickle      # outside grokscope's requirements
    python benchmarks/llc_devinterp.py                              # linear regression only
    python benchmarks/llc_devinterp.py runs/canon --chains 4        # and a run's last checkpoint

Both estimators run the same SGLD update, w <- w - (eps / 2)(n beta grad L_B + gamma (w - w*)) +
N(0, eps), with the same eps, gamma, n beta, chains, draws, burn-in, minibatch size and L_n(w*),
and both read lambda_hat = n beta (E[L_B(w)] - L_n(w*)). Their random streams differ, so the two
estimates agree within their spreads over chains, not digit for digit. devinterp runs its chains
one after another; grokscope stacks them as members of one call. The script prints both estimates
and the time ratio, and writes them to benchmarks/results/llc_devinterp.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grokscope.analysis.landscape import sgld_llc


def devinterp_llc(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_of, init_loss: float,
                  a: argparse.Namespace, nbeta: float) -> tuple[dict, float]:
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    gen = torch.Generator().manual_seed(a.seed)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=min(a.batch_size, len(inputs)), shuffle=True,
                        generator=gen)
    t0 = time.perf_counter()
    res = estimate_learning_coeff_with_summary(
        model, loader, evaluate=lambda m, data: (loss_of(m(data[0]), data[1]), {}), sampling_method=SGLD,
        optimizer_kwargs=dict(lr=a.eps, localization=a.gamma, nbeta=nbeta), num_chains=a.chains, num_draws=a.draws,
        num_burnin_steps=a.burn_in, init_loss=init_loss, seed=a.seed, verbose=False)
    return res, time.perf_counter() - t0


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def linear_regression(a: argparse.Namespace, d: int = 6, n: int = 4000) -> dict:
    """A regular model: lambda = d / 2."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.randn(d, generator=gen, dtype=torch.float64) + torch.randn(n, generator=gen, dtype=torch.float64)
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    nll = lambda pred, target: 0.5 * ((pred - target) ** 2).mean()  # the Gaussian NLL (sigma 1) up to a constant  # noqa: E731

    def loss(params, rows):
        w = params["w"]  # [C, d]
        if rows is None:
            return 0.5 * ((X @ w.T - y[:, None]) ** 2).mean(0)
        return 0.5 * ((torch.einsum("cbd,cd->cb", X[rows], w) - y[rows]) ** 2).mean(1)

    # the settings of tests/landscape/test_curvature.py's linear regression, with minibatches
    b = argparse.Namespace(**{**vars(a), "eps": 2e-4, "gamma": 1.0, "draws": 600, "burn_in": 200})
    nbeta = n / math.log(n)
    t0 = time.perf_counter()
    ours = sgld_llc(loss, {"w": w_star}, n, chains=b.chains, draws=b.draws, burn_in=b.burn_in, eps=b.eps, gamma=b.gamma,
                    nbeta=nbeta, batch_size=b.batch_size, seed=b.seed)
    t_ours = time.perf_counter() - t0
    theirs, t_theirs = devinterp_llc(Linear(w_star), X, y, nll, ours.init_loss, b, nbeta)
    return {"d / 2": d / 2, "grokscope": [ours.llc, ours.llc_std], "devinterp": [theirs["llc/mean"], theirs["llc/std"]],
            "seconds": {"grokscope": t_ours, "devinterp": t_theirs}}


class TargetLogits(nn.Module):
    """A run's model as devinterp reads it: tokens -> the logits at the target positions [B * n_target, V]."""

    def __init__(self, run) -> None:
        super().__init__()
        from grokscope.engine.generic import GenericEngine

        self.model = run.checkpoint()
        self.engine = GenericEngine(run.config.model, run.task, self.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {k: v[None] for k, v in self.model.named_parameters()}
        return self.engine.logits(params, x[None])[0].flatten(0, 1)


def run_checkpoint(a: argparse.Namespace) -> dict:
    import grokscope
    from grokscope.analysis.landscape import estimate_llc

    run = grokscope.load_run(a.run)
    t0 = time.perf_counter()
    ours = estimate_llc(run, chains=a.chains, draws=a.draws, burn_in=a.burn_in, eps=a.eps, gamma=a.gamma,
                        batch_size=a.batch_size, seed=a.seed)
    t_ours = time.perf_counter() - t0
    batch = run.task.batch("train")
    ce = lambda logits, y: F.cross_entropy(logits, y.flatten())  # noqa: E731
    theirs, t_theirs = devinterp_llc(TargetLogits(run), batch.inputs, batch.targets, ce, ours.init_loss, a, ours.nbeta)
    return {"run": str(a.run), "step": ours.step, "grokscope": [ours.llc, ours.llc_std], "diverged": ours.diverged,
            "devinterp": [theirs["llc/mean"], theirs["llc/std"]],
            "seconds": {"grokscope": t_ours, "devinterp": t_theirs}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", help="a run directory (default: linear regression only)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--burn-in", type=int, default=50)
    p.add_argument("--eps", type=float, default=1e-4)
    p.add_argument("--gamma", type=float, default=1e4)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    try:
        import devinterp  # noqa: F401
    except ImportError:
        print("devinterp is not installed: pip install --no-deps devinterp==1.3.2 einops cloudpickle", file=sys.stderr)
        return 2
    out = {"linear_regression": linear_regression(a)}
    if a.run:
        out["checkpoint"] = run_checkpoint(a)
    for name, r in out.items():
        s = r["seconds"]
        print(f"{name}: grokscope {r['grokscope'][0]:.4g} +- {r['grokscope'][1]:.2g} in {s['grokscope']:.1f} s; devinterp "
              f"{r['devinterp'][0]:.4g} +- {r['devinterp'][1]:.2g} in {s['devinterp']:.1f} s "
              f"(devinterp / grokscope time: {s['devinterp'] / s['grokscope']:.2f})"
              + (f"; d/2 = {r['d / 2']}" if "d / 2" in r else ""))
    dest = Path(__file__).parent / "results" / "llc_devinterp.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written to {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
