"""Planted models: transformer weights set by hand so the answer logits are
A * sum_k cos(w_k (a + s b - c_z)) for chosen frequencies k (w_k = 2 pi k / n, a/b/c the group
positions of x/y/z, s the group sign), computed through the real forward pass:

* W_E[t] holds (cos w_k a_t, sin w_k a_t) for each k; W_pos marks positions 0, 1 and the query at 2.
* Head 0 attends (one-hot, via the position markers) from "=" to x, head 1 to y; their OV circuits
  copy the Fourier features into separate x and y blocks of the residual stream (the y copy uses
  sin(s w b), so sub/div get cos(w(a - b))).
* Neuron (k, i, j) = ReLU(cos(w_k a + 2 pi i / J) + cos(s w_k b + 2 pi j / J)): a single-frequency
  neuron by construction (its 2D Fourier content sits in harmonics of w_k, > 0.95 in k's block).
* W_out is the least-squares map from the neurons to cos(w_k u), sin(w_k u) (u = a + s b) times A,
  and W_U reads them against cos(w_k c_z), sin(w_k c_z), so W_L = W_out W_U carries only the key
  frequencies and the logits are A sum_k cos(w_k(u - c_z)) up to a ~2% least-squares residual.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from grokscope.analysis.modular.fourier import group_for
from grokscope.config import RunConfig


def planted_config(op: str, p: int, freqs: list[int], J: int = 6) -> RunConfig:
    K = len(freqs)
    d_model = 6 * K + 3
    return RunConfig().replace(**{
        "task.op": op, "task.p": p, "task.frac_train": 0.5,
        "model.d_model": d_model, "model.n_heads": 2, "model.d_head": 2 * K, "model.d_mlp": K * J * J,
    })


def planted_params(op: str, p: int, freqs: list[int], amplitude: float = 12.0, J: int = 6) -> dict[str, torch.Tensor]:
    g = group_for(op, p)
    n, s, K = g.n, g.sign, len(freqs)
    pos = g.position_of_token()  # token -> group position (-1: token 0 under mul/div)
    D, e = 6 * K + 3, 2 * K
    # residual layout: [E/O (2K) | X (2K) | Y (2K) | m0 | m1 | q]. The E block carries the token
    # features at positions 0 and 1 (read only by attention); at position 2 it is zero because
    # W_E["="] = 0, so it doubles as the output block O that W_out writes and W_U reads.
    E_, X_, Y_ = 0, 2 * K, 4 * K
    O_ = E_
    m0, m1, q = 6 * K, 6 * K + 1, 6 * K + 2
    W_E = torch.zeros(p + 1, D, dtype=torch.float64)
    for i, k in enumerate(freqs):
        w = 2 * math.pi * k / n
        for t in range(p):
            if pos[t] >= 0:
                W_E[t, E_ + 2 * i] = math.cos(w * pos[t])
                W_E[t, E_ + 2 * i + 1] = math.sin(w * pos[t])
    W_pos = torch.zeros(3, D, dtype=torch.float64)
    W_pos[0, m0] = W_pos[1, m1] = W_pos[2, q] = 1.0
    W_Q = torch.zeros(2, D, e, dtype=torch.float64)
    W_K = torch.zeros(2, D, e, dtype=torch.float64)
    W_V = torch.zeros(2, D, e, dtype=torch.float64)
    W_O = torch.zeros(2, e, D, dtype=torch.float64)
    sharp = 60.0 * math.sqrt(e)  # score gap 60 after the 1/sqrt(d_head) scale: one-hot attention
    for h, marker, dst in ((0, m0, X_), (1, m1, Y_)):
        W_Q[h, q, 0] = sharp
        W_K[h, marker, 0] = 1.0
        for j in range(2 * K):
            W_V[h, E_ + j, j] = 1.0
            flip = -1.0 if (h == 1 and s < 0 and j % 2 == 1) else 1.0  # sin(w b) -> sin(-w b) for a - b
            W_O[h, j, dst + j] = flip
    # neurons
    m = K * J * J
    W_in = torch.zeros(D, m, dtype=torch.float64)
    col = 0
    for i, k in enumerate(freqs):
        for ia in range(J):
            for ib in range(J):
                pa, pb = 2 * math.pi * ia / J, 2 * math.pi * ib / J
                # cos(theta + phi) = cos theta cos phi - sin theta sin phi
                W_in[X_ + 2 * i, col], W_in[X_ + 2 * i + 1, col] = math.cos(pa), -math.sin(pa)
                W_in[Y_ + 2 * i, col], W_in[Y_ + 2 * i + 1, col] = math.cos(pb), -math.sin(pb)
                col += 1
    # neuron activations on the group grid, then least squares to cos / sin(w_k u)
    a = torch.arange(n, dtype=torch.float64)
    feats_a = torch.zeros(n, D, dtype=torch.float64)
    feats_b = torch.zeros(n, D, dtype=torch.float64)
    for i, k in enumerate(freqs):
        w = 2 * math.pi * k / n
        feats_a[:, X_ + 2 * i], feats_a[:, X_ + 2 * i + 1] = torch.cos(w * a), torch.sin(w * a)
        feats_b[:, Y_ + 2 * i], feats_b[:, Y_ + 2 * i + 1] = torch.cos(w * a), s * torch.sin(w * a)
    resid = feats_a[:, None, :] + feats_b[None, :, :]  # [n, n, D]
    N = torch.relu(resid @ W_in).reshape(n * n, m)
    u = (a[:, None] + s * a[None, :]).reshape(-1)
    W_out = torch.zeros(m, D, dtype=torch.float64)
    W_U = torch.zeros(D, p, dtype=torch.float64)
    for i, k in enumerate(freqs):
        w = 2 * math.pi * k / n
        T = torch.stack([torch.cos(w * u), torch.sin(w * u)], 1)  # [n^2, 2]
        cols = slice(i * J * J, (i + 1) * J * J)  # each frequency is read from its own neurons only
        beta = torch.linalg.lstsq(N[:, cols], T, driver="gelsd").solution  # gelsd: N is rank-deficient
        W_out[cols, O_ + 2 * i] = amplitude * beta[:, 0]
        W_out[cols, O_ + 2 * i + 1] = amplitude * beta[:, 1]
        for z in range(p):
            if pos[z] >= 0:
                W_U[O_ + 2 * i, z] = math.cos(w * pos[z])
                W_U[O_ + 2 * i + 1, z] = math.sin(w * pos[z])
    params = {
        "embed.W_E": W_E, "pos_embed.W_pos": W_pos,
        "blocks.0.attn.W_Q": W_Q, "blocks.0.attn.W_K": W_K, "blocks.0.attn.W_V": W_V, "blocks.0.attn.W_O": W_O,
        "blocks.0.mlp.W_in": W_in, "blocks.0.mlp.b_in": torch.zeros(m, dtype=torch.float64),
        "blocks.0.mlp.W_out": W_out, "blocks.0.mlp.b_out": torch.zeros(D, dtype=torch.float64),
        "unembed.W_U": W_U,
    }
    return {k: v.float() for k, v in params.items()}


def random_params(cfg: RunConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    from grokscope.models import make_model
    from grokscope.tasks import make_task

    model = make_model(cfg.replace(**{"train.seed": seed}), make_task(cfg.task))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- S_n: a hand-built model whose logits use exactly the standard and sign irreducibles ----------

def planted_sn_config(n: int = 4, frac_train: float = 0.5) -> RunConfig:
    d = n * n + 1  # one element's features: its permutation matrix (n^2 entries) and its sign
    return RunConfig().replace(**{
        "task.name": "perm_compose", "task.n": n, "task.frac_train": frac_train,
        "model.d_model": 3 * d + 3, "model.n_heads": 2, "model.d_head": d, "model.d_mlp": n ** 3 + 2,
    })


def planted_sn_params(cfg: RunConfig, standard: float = 6.0, sign: float = 6.0) -> dict[str, torch.Tensor]:
    """Logits L[a, b, z] = standard * tr(R(ab)^T R(z)) + sign * sgn(ab) sgn(z), computed exactly.

    R(g) is g's permutation matrix (oriented so that R(a) R(b) = R(ab) for the task's table), whose
    entries span the trivial + standard components; tr(R(u)^T R(z)) = 1 + chi_standard(u^-1 z). The
    attention copies x's and y's features into their own blocks (as planted_params). Neuron (i, j, l)
    = ReLU(R(a)_ij + R(b)_jl - 1) = R(a)_ij R(b)_jl, a product of two trivial + standard functions,
    so all its energy sits in the standard block; summed over j it is R(ab)_il. Two sign neurons
    ReLU(+-(sgn a + sgn b)) add up to sgn(a) sgn(b) + 1. A weight of 0 leaves that irrep out.
    """
    from grokscope.models import make_model
    from grokscope.tasks import make_task

    task = make_task(cfg.task)
    n, perms, table = cfg.task.n, task.perms, task.table
    N = len(perms)
    R = np.zeros((N, n, n))
    R[np.arange(N)[:, None], perms, np.arange(n)[None, :]] = 1.0  # R(g)[g(j), j] = 1
    if not np.allclose(R[table[1, 2]], R[1] @ R[2]):
        R = R.transpose(0, 2, 1)
    assert all(np.allclose(R[table[a, b]], R[a] @ R[b]) for a in range(N) for b in range(N))
    sgn = np.round(np.linalg.det(R))
    d = n * n + 1
    D = 3 * d + 3
    E_, X_, Y_, m0, m1, q = 0, d, 2 * d, 3 * d, 3 * d + 1, 3 * d + 2
    params = {k: torch.zeros_like(v, dtype=torch.float64)
              for k, v in make_model(cfg, task).state_dict().items()}
    feats = np.concatenate([R.reshape(N, n * n), sgn[:, None]], axis=1)  # [N, d]
    params["embed.W_E"][:N, E_:E_ + d] = torch.from_numpy(feats)
    W_pos = params["pos_embed.W_pos"]
    W_pos[0, m0] = W_pos[1, m1] = W_pos[2, q] = 1.0
    sharp = 60.0 * math.sqrt(d)
    for h, marker, dst in ((0, m0, X_), (1, m1, Y_)):
        params["blocks.0.attn.W_Q"][h, q, 0] = sharp
        params["blocks.0.attn.W_K"][h, marker, 0] = 1.0
        for j in range(d):
            params["blocks.0.attn.W_V"][h, E_ + j, j] = 1.0
            params["blocks.0.attn.W_O"][h, j, dst + j] = 1.0
    W_in, b_in, W_out = params["blocks.0.mlp.W_in"], params["blocks.0.mlp.b_in"], params["blocks.0.mlp.W_out"]
    col = 0
    for i in range(n):
        for j in range(n):
            for l in range(n):
                W_in[X_ + i * n + j, col] = W_in[Y_ + j * n + l, col] = 1.0
                b_in[col] = -1.0
                W_out[col, E_ + i * n + l] = 1.0  # output block O = the E block, zero at "="
                col += 1
    for s in (1.0, -1.0):
        W_in[X_ + d - 1, col] = W_in[Y_ + d - 1, col] = s
        W_out[col, E_ + d - 1] = 1.0
        col += 1
    params["blocks.0.mlp.b_out"][E_ + d - 1] = -1.0
    W_U = params["unembed.W_U"]
    W_U[E_:E_ + n * n, :N] = standard * torch.from_numpy(R.reshape(N, n * n).T)
    W_U[E_ + d - 1, :N] = sign * torch.from_numpy(sgn)
    return {k: v.float() for k, v in params.items()}
