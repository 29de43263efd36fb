"""Circuit directions on problems whose answer is known: explicit quadratics (the direction, the
walk and the canyon verdict in closed form) and a planted modular model (the frequency circuits)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grokscope.analysis.core import MemoryRun
from grokscope.analysis.landscape.circuits import canyon_verdict, circuit_direction, frequency_circuits, walk
from grokscope.analysis.landscape.hessian import FlatLoss
from grokscope.tasks import make_task
from tests.analysis.planted import planted_config, planted_params

N = 12


def _quad(M: torch.Tensor):
    return lambda p: 0.5 * torch.einsum("mi,ij,mj->m", p["w"], M, p["w"])


def _toy(seed: int = 0):
    """Circuit A: a rank-3 quadratic; circuit B: rank 2, whose top eigenvector leans into A's space."""
    gen = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(gen.normal(size=(N, N)))
    Q = torch.tensor(Q)
    A = Q[:, :3] @ torch.diag(torch.tensor([5.0, 3.0, 2.0], dtype=torch.float64)) @ Q[:, :3].T
    v_b = (0.6 * Q[:, 0] + 0.8 * Q[:, 5])
    B = 4.0 * torch.outer(v_b, v_b) + 1.0 * torch.outer(Q[:, 6], Q[:, 6])
    return Q, A, B, v_b


def _flat(fn, dim=N):
    return FlatLoss(fn, {"w": torch.zeros(dim, dtype=torch.float64)}, ["w"])


def test_the_direction_is_b_top_eigenvector_projected_off_a():
    Q, A, B, v_b = _toy()
    d, info = circuit_direction(_flat(_quad(A)), _flat(_quad(B)), k_a=3)
    want = v_b - Q[:, :3] @ (Q[:, :3].T @ v_b)
    want = want / want.norm()  # = Q[:, 5]
    assert abs(float(d @ want)) == pytest.approx(1.0, abs=1e-8)
    assert info["v_b_share_in_a"] == pytest.approx(0.36, abs=1e-8) and info["lambda_1_b"] == pytest.approx(4.0, rel=1e-8)
    assert info["curvature_a"] == pytest.approx(0.0, abs=1e-8) and info["curvature_b"] == pytest.approx(4 * 0.64, rel=1e-8)


def _walk(joint_fn, A, B, d, span=1.0, steps=200):
    measures = {"loss_A": _quad(A), "loss_B": _quad(B)}
    ts = np.linspace(-span, span, 9)
    return walk(_flat(joint_fn), measures, d, ts, relax_steps=steps, first_step=0.1, check_points=9, lanczos_steps=N)


def test_a_positive_definite_joint_loss_is_a_sloped_canyon_with_the_closed_form_floor():
    Q, A, B, _ = _toy()
    mu = 0.1
    H = A + B + mu * torch.eye(N, dtype=torch.float64)
    d, _ = circuit_direction(_flat(_quad(A)), _flat(_quad(B)), k_a=3)
    df = _walk(_quad(H), A, B, d)
    t = df["t"].to_numpy()
    # the straight walk: A untouched (d is orthogonal to A's whole range), B quadratic
    assert np.allclose(df["loss_A"], 0, atol=1e-12)
    assert np.allclose(df["loss_B"], 0.5 * float(d @ B @ d) * t ** 2, rtol=1e-10)
    # the floor: min over y orthogonal to d of the joint loss at t d is t^2 / (2 d' H^-1 d)
    floor = t ** 2 / (2 * float(d @ torch.linalg.solve(H, d)))
    assert np.allclose(df["relaxed_joint"], floor, atol=2e-3)
    assert (df["relaxed_joint"] <= df["joint"] + 1e-12).all() and df["moved"].iloc[0] > 0.01
    v = canyon_verdict(df, "A", "B", lambda_1=float(torch.linalg.eigvalsh(H)[-1]))
    assert v["orthogonal_minimum"] and v["sloped"] and v["circuit_kept"] and v["sloped_canyon"]
    assert v["worst_lambda_min"] == pytest.approx(0.0, abs=1e-8)  # d itself: P H P d = 0


def test_negative_curvature_across_the_walk_is_no_minimum():
    """joint = the PD loss - kappa (x.d)^2 (x.e)^2 + (x.e)^4: at |t| > t* the e direction curves down."""
    Q, A, B, _ = _toy()
    H = A + B + 0.1 * torch.eye(N, dtype=torch.float64)
    d, _ = circuit_direction(_flat(_quad(A)), _flat(_quad(B)), k_a=3)
    e = Q[:, 9]
    kappa = 20.0

    def joint(p):
        w = p["w"]
        return _quad(H)(p) - kappa * (w @ d) ** 2 * (w @ e) ** 2 + (w @ e) ** 4

    df = _walk(joint, A, B, d)
    lam = df["lambda_min_orthogonal"].to_numpy()
    curv_e = float(e @ H @ e) - 2 * kappa * df["t"].to_numpy() ** 2  # e'He - 2 kappa t^2 (e stays at 0 by symmetry)
    assert lam[0] == pytest.approx(min(curv_e[0], 0.0), abs=1e-6) and lam[0] < 0
    v = canyon_verdict(df, "A", "B", lambda_1=float(torch.linalg.eigvalsh(H)[-1]))
    assert not v["orthogonal_minimum"] and not v["sloped_canyon"]


def test_a_flat_canyon_is_not_sloped():
    """joint = L_A + (beta / 2) (x.d - x.e)^2: stepping t along e too undoes the walk's loss."""
    Q, A, B, _ = _toy()
    d, _ = circuit_direction(_flat(_quad(A)), _flat(_quad(B)), k_a=3)
    e = Q[:, 9]

    def joint(p):
        w = p["w"]
        return _quad(A)(p) + 2.0 * (w @ d - w @ e) ** 2

    df = _walk(joint, A, B, d)
    assert df["joint"].iloc[0] == pytest.approx(2.0) and df["relaxed_joint"].iloc[0] < 0.02 * df["joint"].iloc[0]
    v = canyon_verdict(df, "A", "B", lambda_1=4.0)
    assert v["orthogonal_minimum"] and not v["sloped"] and not v["sloped_canyon"]


def test_frequency_circuits_of_a_planted_model():
    """Logits A sum_k cos(w_k (a + b - z)), k in {3, 7}: frequency 3's restricted loss is the loss of
    A cos(w_3 (a + b - z)) alone; frequency 5, absent, leaves constant logits (ln p, chance accuracy)."""
    p, freqs, amp = 23, [3, 7], 12.0
    cfg = planted_config("add", p, freqs)
    task = make_task(cfg.task)
    params = planted_params("add", p, freqs, amplitude=amp)
    run = MemoryRun(cfg, task, {0: params})
    circ = frequency_circuits(run, [3, 5], split="train")
    stacked = {k: v[None] for k, v in params.items()}
    grid = torch.as_tensor(task.train_idx)
    x, y = grid // p, grid % p
    z = torch.arange(p)
    pure = amp * torch.cos(2 * math.pi * 3 * (x[:, None] + y[:, None] - z[None]) / p)
    want = torch.nn.functional.cross_entropy(pure, torch.as_tensor(task.labels_grid[task.train_idx]))
    assert float(circ["k3"].loss(stacked)) == pytest.approx(float(want), rel=0.05)
    assert float(circ["k3"].accuracy(stacked)) == 1.0
    assert float(circ["k5"].loss(stacked)) == pytest.approx(math.log(p), rel=0.01)
    assert float(circ["k5"].accuracy(stacked)) < 0.2
