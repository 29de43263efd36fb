"""Curvature and the LLC on problems whose answer is known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from grokscope.analysis.landscape import effective_dimension, hutchinson_trace, lanczos, sgld_llc, spectral_density


def _quadratic(dim: int = 200, seed: int = 0):
    """H = Q diag(lam) Q' with a known spectrum: 10 large separated eigenvalues, a bulk near 0, some negative."""
    gen = np.random.default_rng(seed)
    lam = np.concatenate([np.linspace(50, 5, 10), gen.uniform(-0.5, 1.0, dim - 10)])
    Q, _ = np.linalg.qr(gen.normal(size=(dim, dim)))
    H = torch.tensor(Q @ np.diag(lam) @ Q.T)
    return H, np.sort(lam)[::-1]


def test_lanczos_finds_the_top_eigenvalues_and_vectors():
    H, lam = _quadratic()
    eigs, vecs = lanczos(lambda v: H @ v, H.shape[0], k=8)
    assert eigs == pytest.approx(lam[:8], rel=1e-6)
    for e, v in zip(eigs, vecs):
        assert torch.allclose(H @ v, e * v, atol=1e-5 * e)


def test_hutchinson_and_slq_trace_and_the_density():
    H, lam = _quadratic()
    tr, se = hutchinson_trace(lambda v: H @ v, H.shape[0], n=400, seed=1)
    assert abs(tr - lam.sum()) < 4 * se and se < 0.1 * abs(lam.sum())
    d = spectral_density(lambda v: H @ v, H.shape[0], n_vectors=20, steps=60, seed=2)
    assert d.trace() == pytest.approx(lam.sum(), rel=0.1)
    grid, dens = d.density()
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=0.02)
    # 10 of 200 eigenvalues lie above 3: the density's mass there, and the exact count from the top-k
    assert d.count_above(3.0) == pytest.approx(10, abs=3)
    assert effective_dimension(lanczos(lambda v: H @ v, 200, k=20)[0], 3.0) == 10


def test_lanczos_on_a_low_rank_map_stops_at_its_invariant_subspace():
    u = torch.randn(50, 3, dtype=torch.float64)
    H = u @ u.T  # rank 3
    eigs, _ = lanczos(lambda v: H @ v, 50, k=3)
    assert eigs == pytest.approx(np.sort(np.linalg.eigvalsh(H.numpy()))[::-1][:3], rel=1e-6)


@pytest.mark.parametrize("d", [2, 6])
def test_the_llc_of_linear_regression_is_half_its_parameters(d):
    """A regular model: y = x w + noise (sigma 1), loss the Gaussian NLL 0.5 (y - x w)^2 -> lambda = d / 2."""
    gen = torch.Generator().manual_seed(0)
    n = 5000
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.ones(d, dtype=torch.float64) + torch.randn(n, generator=gen, dtype=torch.float64)
    w_hat = torch.linalg.lstsq(X, y).solution  # the minimum

    def loss(p, rows):
        w = p["w"]  # [C, d]
        if rows is None:
            return 0.5 * ((X @ w.T - y[:, None]) ** 2).mean(0)
        return 0.5 * ((torch.einsum("cbd,cd->cb", X[rows], w) - y[rows]) ** 2).mean(-1)

    est = sgld_llc(loss, {"w": w_hat}, n, chains=8, draws=600, burn_in=200, eps=2e-4, gamma=1.0, batch_size=None)
    assert est.llc == pytest.approx(d / 2, rel=0.2), est.per_chain
    assert not est.diverged and est.nbeta == pytest.approx(n / math.log(n))


def test_a_diverging_chain_is_named_and_left_out():
    def loss(p, rows):
        return 0.5 * (p["w"] ** 2).sum(-1)  # a quadratic with curvature 1: eps * nbeta >> 2 explodes

    est = sgld_llc(loss, {"w": torch.zeros(3, dtype=torch.float64)}, 1000, chains=2, draws=50, burn_in=0, eps=1.0)
    assert est.diverged == [0, 1] and math.isnan(est.llc)
    doc = json.loads(json.dumps(est.to_dict(), allow_nan=False))  # what `grokscope llc` writes
    assert doc["llc"] is None and doc["diverged"] == [0, 1]


def test_a_trained_bezier_curve_goes_round_a_barrier_the_line_crosses():
    """Minima at (+-1, 0) and a bump of height 3 at the origin, on the straight line between them."""
    from grokscope.analysis.landscape.connectivity import connect

    def loss(p):
        x, y = p["w"][:, 0], p["w"][:, 1]
        return (x**2 - 1) ** 2 + 0.5 * y**2 + 3 * torch.exp(-(x**2 + y**2) / 0.1)

    a, b = {"w": torch.tensor([-1.0, 0.0], dtype=torch.float64)}, {"w": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    con = connect(loss, a, b, n_points=41, steps=300, lr=0.05, t_per_step=8)
    assert con.linear_barrier == pytest.approx(4.0, rel=0.01)  # (0 - 1)^2 + 3 at t = 1/2
    assert con.bezier_barrier < 0.5 * con.linear_barrier  # the curve leaves the line and skirts the bump
    assert con.path["bezier"].iloc[0] == pytest.approx(con.path["linear"].iloc[0], abs=1e-12) and list(con.path.columns) == ["t", "linear", "bezier"]


def test_slices_of_a_quadratic_and_filter_normalisation():
    from grokscope.analysis.landscape.slices import filter_normalised, slice_1d, slice_2d

    H, _ = _quadratic(dim=12)
    loss = lambda p: 0.5 * torch.einsum("mi,ij,mj->m", p["w"], H, p["w"])  # noqa: E731
    center = {"w": torch.zeros(12, dtype=torch.float64)}
    d1 = {"w": torch.randn(12, dtype=torch.float64)}
    d2 = {"w": torch.randn(12, dtype=torch.float64)}
    alphas = np.linspace(-1, 1, 5)
    s1 = slice_1d(loss, center, d1, alphas, chunk=2)
    assert s1["loss"].to_numpy() == pytest.approx(0.5 * alphas**2 * float(d1["w"] @ H @ d1["w"]))
    s2 = slice_2d(loss, center, d1, d2, alphas, alphas, chunk=3)
    row = s2[(s2.alpha == 1.0) & (s2.beta == -1.0)]["loss"].item()
    v = d1["w"] - d2["w"]
    assert row == pytest.approx(0.5 * float(v @ H @ v))
    W = torch.randn(4, 7, dtype=torch.float64) * torch.arange(1, 5, dtype=torch.float64)[:, None]
    d = filter_normalised({"W": W, "b": torch.ones(3, dtype=torch.float64)}, seed=1)
    assert torch.allclose(d["W"].norm(dim=1), W.norm(dim=1)) and d["b"].norm().item() == pytest.approx(3**0.5)


def test_the_pca_plane_recovers_a_planar_trajectory():
    from grokscope.analysis.landscape.slices import pca_plane

    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(30, 2, generator=gen, dtype=torch.float64))
    ab = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    ab[-1] = 0
    end = torch.randn(30, generator=gen, dtype=torch.float64)
    traj = [{"w": (end + u @ c)[:20].reshape(4, 5), "b": (end + u @ c)[20:]} for c in ab]
    dirs, coords, explained = pca_plane(traj)
    assert explained == pytest.approx(1.0)
    dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    assert dist(coords) == pytest.approx(dist(ab.numpy()), abs=1e-9)  # the plane is found up to a rotation


def test_a_bad_minibatch_size_names_the_field():
    from grokscope.config import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        sgld_llc(lambda p, rows: p["w"].sum(-1), {"w": torch.zeros(2)}, 100, batch_size=0)
