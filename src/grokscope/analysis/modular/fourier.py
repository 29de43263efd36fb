"""Fourier analysis over a cyclic group Z_n (the group each modular op lives in is
grokscope.tasks.cyclic's `Group`, re-exported here).

Basis. For a cyclic group of order n the real orthonormal Fourier basis has n rows, indexed by
position a = 0..n-1:

    row 0            const(a)  = 1 / sqrt(n)
    row 2k-1         cos_k(a)  = sqrt(2/n) cos(2 pi k a / n)       k = 1 .. floor((n-1)/2)
    row 2k           sin_k(a)  = sqrt(2/n) sin(2 pi k a / n)
    row n-1 (n even) nyq(a)    = (-1)^a / sqrt(n)                  k = n/2 (no sine partner)

The *frequency* of a row is k (0 for the constant). There are n_freqs = n // 2 non-zero
frequencies. `fourier_basis(n)` builds this matrix explicitly; `fourier_1d` / `fourier_2d` give the
same coefficients through `torch.fft.rfft` (O(n log n) per line), which is what the analysis uses.

Groups. add / sub / x2xyy2 / rand use Z_p with position a = token x; mul / div use Z_(p-1) through
the discrete logarithm, where the same basis applies (grokscope.tasks.cyclic).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from grokscope.tasks.cyclic import (  # noqa: F401  (re-exported: the analysis' names for them)
    EXPRESSION_OF_OP,
    SIGN_OF_OP,
    Group,
    group_for,
    primitive_root,
    sum_directions,
)

# --- basis ---------------------------------------------------------------------------------------

def row_frequencies(n: int) -> np.ndarray:
    """[n] frequency of each basis row: 0, 1, 1, 2, 2, ... (and n/2 for the last row when n is even)."""
    return np.array([(r + 1) // 2 for r in range(n)], dtype=np.int64)


def row_labels(n: int) -> list[str]:
    labels = ["const"]
    for k in range(1, (n - 1) // 2 + 1):
        labels += [f"cos {k}", f"sin {k}"]
    if n % 2 == 0:
        labels.append(f"cos {n // 2}")
    return labels


def fourier_basis(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """[n, n] orthonormal real Fourier basis, rows as in the module docstring (explicit cos / sin)."""
    a = torch.arange(n, dtype=torch.float64)
    rows = [torch.full((n,), 1 / math.sqrt(n), dtype=torch.float64)]
    for k in range(1, (n - 1) // 2 + 1):
        rows.append(math.sqrt(2 / n) * torch.cos(2 * math.pi * k * a / n))
        rows.append(math.sqrt(2 / n) * torch.sin(2 * math.pi * k * a / n))
    if n % 2 == 0:
        rows.append(torch.cos(math.pi * a) / math.sqrt(n))
    return torch.stack(rows).to(dtype)


def fourier_1d(x: Tensor, dim: int = -1) -> Tensor:
    """Coefficients of `x` along `dim` in the basis of `fourier_basis(n)` (= B @ x along that dim), via rfft.

    With X_k = sum_a x_a exp(-2 pi i k a / n): const = X_0 / sqrt(n), cos_k = sqrt(2/n) Re X_k,
    sin_k = -sqrt(2/n) Im X_k, nyq = X_(n/2) / sqrt(n).
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    X = torch.fft.rfft(x, dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out[..., 0] = X[..., 0].real / math.sqrt(n)
    m = (n - 1) // 2
    if m:
        scale = math.sqrt(2 / n)
        out[..., 1 : 2 * m + 1 : 2] = scale * X[..., 1 : m + 1].real
        out[..., 2 : 2 * m + 1 : 2] = -scale * X[..., 1 : m + 1].imag
    if n % 2 == 0:
        out[..., n - 1] = X[..., n // 2].real / math.sqrt(n)
    return out.movedim(-1, dim)


def fourier_2d(x: Tensor) -> Tensor:
    """Coefficients over the last two dims (the (x, y) grid): B @ x @ B^T, via rfft."""
    return fourier_1d(fourier_1d(x, -1), -2)


def pair_sum(sq: Tensor, dim: int) -> Tensor:
    """Sum squared coefficients over the rows of each frequency: n rows -> n_freqs + 1 (index = frequency)."""
    sq = sq.movedim(dim, -1)
    n = sq.shape[-1]
    m = (n - 1) // 2
    parts = [sq[..., :1]]
    if m:
        parts.append(sq[..., 1 : 2 * m + 1].reshape(*sq.shape[:-1], m, 2).sum(-1))
    if n % 2 == 0:
        parts.append(sq[..., n - 1 :])
    return torch.cat(parts, dim=-1).movedim(-1, dim)


def freq_norms_1d(x: Tensor, dim: int) -> Tensor:
    """Norm of each frequency's component of `x` along `dim` (over every other dim): [n_freqs + 1]."""
    coef = fourier_1d(x.double(), dim).movedim(dim, 0)
    sq = pair_sum(coef.reshape(coef.shape[0], -1).pow(2).sum(-1), 0)
    return sq.sqrt()


def block_energy(x: Tensor) -> Tensor:
    """[..., F+1, F+1] energy of the 2D Fourier coefficients of x [..., n, n] per (row freq, col freq)."""
    sq = fourier_2d(x).pow(2)
    return pair_sum(pair_sum(sq, -1), -2)


def block_energy_fft(x: Tensor) -> Tensor:
    """Same as `block_energy` (up to rounding) straight from the rfft2 power spectrum, in x's dtype.

    With X = rfft2(x) (full length n over rows u, half length over columns v) and Parseval,
    E[ka, kb] = (1/n^2) sum_{u in +-ka} sum_{v in +-kb} |X_full[u, v]|^2, and
    |X_full[u, -v]| = |X_full[-u, v]|, so columns 0 < v < n/2 count twice.
    """
    n = x.shape[-1]
    P = torch.fft.rfft2(x).abs().pow(2)  # [..., n, n//2 + 1]
    w = torch.full((P.shape[-1],), 2.0, dtype=P.dtype, device=P.device)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    P = P * (w / (n * n))
    m = (n - 1) // 2
    parts = [P[..., :1, :]]
    if m:
        parts.append(P[..., 1 : m + 1, :] + P[..., n - m :, :].flip(-2))
    if n % 2 == 0:
        parts.append(P[..., n // 2 : n // 2 + 1, :])
    return torch.cat(parts, dim=-2)


def single_frequency_share(x: Tensor) -> Tensor:
    """share[..., k] of the (constant-removed) variance of x [..., n, n] in frequency k's block.

    Block k = {1, cos k a, sin k a} x {1, cos k b, sin k b} minus the constant term 1 x 1, i.e. the
    energies E[k, k] + E[k, 0] + E[0, k] of `block_energy`, divided by the total energy
    sum_{(u,v) != (0,0)} E[u, v]. Column 0 holds 1 - sum_k share_k: the share outside every
    single-frequency block (cross-frequency terms). Zero-variance inputs give all zeros.
    """
    if not x.is_floating_point():
        x = x.double()
    E = block_energy_fft(x).double()  # the constant term E[0, 0] is left out below (= centring)
    total = E.sum(dim=(-2, -1)) - E[..., 0, 0]
    diag = torch.diagonal(E, dim1=-2, dim2=-1)
    block = diag + E[..., :, 0] + E[..., 0, :]
    block[..., 0] = 0.0
    ok = total > 1e-10 * (E.sum(dim=(-2, -1)) + 1e-30)
    safe = torch.where(ok, total, torch.ones_like(total))
    share = block / safe.unsqueeze(-1)
    share[..., 0] = 1.0 - share[..., 1:].sum(-1)
    return torch.where(ok.unsqueeze(-1), share, torch.zeros_like(share))


@functools.lru_cache(maxsize=8)
def _lines_index(n: int, device: torch.device) -> Tensor:
    """[4n, n] flat indices (a n + b) of the cells of each line of an n x n grid: the rows a, the
    columns b, the diagonals a + b = c and the diagonals a - b = c (mod n), for c = 0..n-1."""
    a = torch.arange(n)
    c, i = a[:, None], a[None, :]  # line c, i-th cell of the line
    return torch.cat([c * n + i, i * n + c, i * n + (c - i) % n, i * n + (i - c) % n]).to(device)


@functools.lru_cache(maxsize=8)
def _dft_matrix(n: int, device: torch.device) -> Tensor:
    """[2 (n // 2 + 1), n] float64: rows cos(2 pi k t / n), then -sin(2 pi k t / n), k = 0..n // 2
    (the real and imaginary parts of rfft as one product)."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None]
    ang = 2 * math.pi * ((k * torch.arange(n, dtype=torch.float64)[None]) % n) / n
    return torch.cat([torch.cos(ang), -torch.sin(ang)]).to(device)


def neuron_single_frequency_share(acts: Tensor) -> Tensor:
    """`single_frequency_share` for activations laid out [n (a), n (b), m] (m neurons), without any
    2D transform: [m, n_freqs + 1].

    Only four lines of the 2D DFT X[u, v] = sum_{a,b} x[a, b] e^{-2 pi i (u a + v b) / n} are needed,
    each the 1D DFT of a sum of x along lines of the grid:
      X[k, 0]  = DFT_k(sum_b x[., b]),   X[0, k] = DFT_k(sum_a x[a, .]),
      X[k, k]  = DFT_k(S+),  S+[c] = sum_{a + b = c mod n} x[a, b],
      X[k, -k] = DFT_k(S-),  S-[c] = sum_{a - b = c mod n} x[a, b].
    By Parseval, E[k, 0] = 2 |X[k, 0]|^2 / n^2, E[0, k] = 2 |X[0, k]|^2 / n^2,
    E[k, k] = 2 (|X[k, k]|^2 + |X[k, -k]|^2) / n^2 (factor 1 instead of 2 at the Nyquist frequency
    k = n/2), total = sum x^2 - X[0, 0]^2 / n^2. Cost: two passes over x (the squares, and all
    four line sums as one embedding_bag).
    """
    x = acts if acts.is_floating_point() else acts.double()
    n, _, m = x.shape
    F_ = n // 2
    flat = x.reshape(n * n, m)
    sumsq = torch.zeros(m, dtype=x.dtype, device=x.device)
    for rows in flat.split(1024):  # blocks: the squares stay in cache (~20 % faster than one x * x)
        sumsq += (rows * rows).sum(0)
    sumsq = sumsq.double()
    # the four line sums in one pass: one embedding_bag of n-cell bags (~3x faster than two sums and
    # two index_add_'s on the canonical [113^2, 512] activations, ~2x faster than a sparse product)
    lines = F.embedding_bag(_lines_index(n, x.device), flat, mode="sum").view(4, n, m).double()
    R = torch.matmul(_dft_matrix(n, x.device), lines)  # [4, 2 (F+1), m]: rfft along the line, as one product
    P = (R[:, : F_ + 1].square() + R[:, F_ + 1 :].square()) / (n * n)  # [4, F+1, m]: |X_k|^2 / n^2
    w = torch.full((F_ + 1, 1), 2.0, dtype=torch.float64, device=x.device)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    total = (sumsq - P[0, 0]).clamp_min(0.0)  # P[0, 0] = X[0, 0]^2 / n^2
    Ea, Eb = (w * P[0])[1:], (w * P[1])[1:]
    Ekk = (w * (P[2] + P[3]))[1:]
    if n % 2 == 0:
        Ekk[-1] = P[2, F_]  # at k = n/2, X[k, k] and X[k, -k] are the same entry
    block = Ekk + Ea + Eb  # [F, m]
    ok = total > 1e-6 * (sumsq + 1e-30)  # float32 sums: below this the variance is rounding noise
    safe = torch.where(ok, total, torch.ones_like(total))
    share = torch.zeros(m, F_ + 1, dtype=torch.float64, device=x.device)
    share[:, 1:] = (block / safe).T
    share[:, 0] = 1.0 - share[:, 1:].sum(-1)
    return torch.where(ok[:, None], share, torch.zeros_like(share))


def gini(values: np.ndarray | Tensor) -> float:
    """Gini coefficient of non-negative values x_1..x_m (sorted ascending as x_(1) <= ... <= x_(m)):

        G = sum_i (2 i - m - 1) x_(i) / (m sum_i x_i),   i = 1..m

    0 when all are equal, (m - 1) / m when one value holds everything; 0 for an all-zero vector.
    """
    x = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    m = x.size
    total = x.sum()
    if m == 0 or total <= 0:
        return 0.0
    i = np.arange(1, m + 1)
    return float(((2 * i - m - 1) * x).sum() / (m * total))
