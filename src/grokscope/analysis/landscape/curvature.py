"""Curvature of a loss from Hessian-vector products only: no Hessian is ever built.

Everything here works on a symmetric linear map `matvec(v) -> H v` of flat vectors of length
`dim`, so a test can pass an explicit matrix and `grokscope.analysis.landscape.hessian` passes the
loss Hessian of a run (`grokscope.run.hvp`, forward-over-reverse).

- `lanczos(matvec, dim, k)`: the k largest eigenvalues and their eigenvectors. Lanczos with full
  reorthogonalisation (m = max(2k, k + 20) steps, fewer when dim is smaller): the extreme Ritz values
  converge first, and reorthogonalising keeps ghost copies of them out.
- `hutchinson_trace(matvec, dim, n)`: tr H = E[v' H v] over Rademacher v, with its standard error.
- `spectral_density(matvec, dim, n_vectors, steps)`: stochastic Lanczos quadrature (Ghorbani et al.
  2019). Each random unit vector's Lanczos tridiagonal T gives nodes theta_j (T's eigenvalues) and
  weights tau_j (the squared first components of its eigenvectors): a quadrature of the spectral
  measure (1/dim) sum_i delta(lambda - lambda_i). The average over vectors, smoothed by a
  Gaussian of width `sigma` (default 1 % of the spectrum's range), is the density; dim sum tau theta
  is another trace estimate.
- `effective_dimension`: the number of eigenvalues above a threshold, counted among the top-k
  (exact while it is below k) and estimated from the density (dim x its mass above the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

MatVec = Callable[[Tensor], Tensor]


def _rademacher(dim: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    return (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)


def _tridiagonal(matvec: MatVec, v0: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lanczos from v0 with full reorthogonalisation: (alpha [m], beta [m - 1], Q [m, dim]), m <= steps."""
    q = v0 / v0.norm()
    Q, alpha, beta = [q], [], []
    for j in range(steps):
        w = matvec(Q[-1]).to(q.dtype)
        a = torch.dot(w, Q[-1])
        alpha.append(a)
        basis = torch.stack(Q)
        w = w - basis.T @ (basis @ w)  # full reorthogonalisation, twice ("twice is enough")
        w = w - basis.T @ (basis @ w)
        b = w.norm()
        if j == steps - 1 or b <= 1e-10 * max(float(a.abs()), 1.0):  # an invariant subspace: the spectrum is exact
            break
        beta.append(b)
        Q.append(w / b)
    a = torch.stack(alpha)
    return a, torch.stack(beta) if beta else a.new_zeros(0), torch.stack(Q[: len(alpha)])


def _tri_eigh(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    return torch.linalg.eigh(T)


def lanczos(matvec: MatVec, dim: int, k: int = 20, steps: int | None = None, seed: int = 0,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> tuple[np.ndarray, Tensor]:
    """The k largest eigenvalues (descending, numpy) and eigenvectors ([k, dim]) of the map."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    m = min(dim, steps or max(2 * k, k + 20))
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    alpha, beta, Q = _tridiagonal(matvec, v0, m)
    theta, S = _tri_eigh(alpha, beta)
    order = torch.argsort(theta, descending=True)[:k]
    return theta[order].cpu().numpy(), (S[:, order].T @ Q)


def hutchinson_trace(matvec: MatVec, dim: int, n: int = 50, seed: int = 0, dtype: torch.dtype = torch.float64,
                     device: torch.device | str = "cpu") -> tuple[float, float]:
    """(tr H estimate, its standard error) from n Rademacher probes."""
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(n):
        v = _rademacher(dim, gen, dtype, device)
        vals.append(float(torch.dot(v, matvec(v).to(dtype))))
    x = np.array(vals)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: nodes and weights per probe vector, and a smoothed density."""

    nodes: np.ndarray  # [n_vectors, m] Ritz values
    weights: np.ndarray  # [n_vectors, m] squared first components (each row sums to 1)
    dim: int

    def density(self, grid: np.ndarray | None = None, sigma: float | None = None, n_grid: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """(grid, density on it): the quadrature smoothed by Gaussians of width sigma; integrates to ~1."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        span = max(hi - lo, 1e-12)
        sigma = sigma if sigma is not None else 0.01 * span
        if grid is None:
            grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, n_grid)
        g = (grid[:, None] - self.nodes.reshape(-1)[None]) / sigma
        dens = (np.exp(-0.5 * g**2) * self.weights.reshape(-1)[None]).sum(1) / (sigma * np.sqrt(2 * np.pi) * len(self.nodes))
        return grid, dens

    def trace(self) -> float:
        return float(self.dim * (self.nodes * self.weights).sum(1).mean())

    def count_above(self, threshold: float) -> float:
        """dim x the spectral measure above `threshold`: how many eigenvalues exceed it (an estimate)."""
        return float(self.dim * (self.weights * (self.nodes > threshold)).sum(1).mean())


def spectral_density(matvec: MatVec, dim: int, n_vectors: int = 4, steps: int = 60, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> SpectralDensity:
    gen = torch.Generator().manual_seed(seed)
    m = min(dim, steps)
    nodes, weights = np.zeros((n_vectors, m)), np.zeros((n_vectors, m))
    for i in range(n_vectors):
        v0 = _rademacher(dim, gen, dtype, device)
        alpha, beta, _ = _tridiagonal(matvec, v0, m)
        theta, S = _tri_eigh(alpha, beta)
        r = len(theta)  # < m when the probe spans an invariant subspace: pad with zero-weight nodes
        nodes[i, :r], weights[i, :r] = theta.cpu().numpy(), (S[0] ** 2).cpu().numpy()
        nodes[i, r:] = theta[-1].item()
    return SpectralDensity(nodes, weights, dim)


def effective_dimension(eigenvalues: np.ndarray, threshold: float) -> int:
    """Eigenvalues above `threshold` among those given (exact while fewer than all of them pass)."""
    return int((np.asarray(eigenvalues) > threshold).sum())
