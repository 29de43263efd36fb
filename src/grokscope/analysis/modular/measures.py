"""Progress measures and mechanistic read-outs of one checkpoint of a modular-arithmetic model.

Notation. n = group order, a, b = group positions of the inputs x, y (a = x for Z_p; x = g^a for
mul/div), s = group sign (+1 for x+y, -1 for x-y), w_k = 2 pi k / n, z = output class,
L[a, b, z] = answer-position logits on the group grid. K = the key frequencies.

* Restricted logits (the paper's "trig"/restricted loss): keep the constant term and the
  directions cos(w_k (a + s b)), sin(w_k (a + s b)) of every key k, for every output z:
      R[a, b, z] = mean_{a',b'} L[a', b', z] + sum_{k in K} sum_{d in {cos, sin}} <L[., ., z], u_kd> u_kd[a, b]
  with u_kd the unit-norm grid functions (`fourier.sum_directions`). restricted_loss = mean
  cross-entropy of R on the train (test) cells.
* Excluded logits: remove those directions and keep everything else:
      X[a, b, z] = L[a, b, z] - sum_{k in K} sum_d <L[., ., z], u_kd> u_kd[a, b]
  excluded_loss_train = mean cross-entropy of X on the train cells; excluded_loss_train_k{k}
  removes frequency k only.
* Logit share of frequency k: r_k = sum_z sum_d <Lc[., ., z], u_kd>^2 / ||Lc||^2 with Lc the logits
  centred over z per cell and over (a, b) per z. For logits without structure E[r_k] = 2 / (n^2 - 1).
* Neuron frequency share: see `fourier.single_frequency_share` (activations at the last position,
  constant removed, 3x3 block {1, cos, sin}^2 of one frequency minus 1x1).
* Key-frequency rule (`KeyRule`): k in K iff
      r_k >= max(share_floor, null_mult * 2 / (n^2 - 1))         (logits use k far above chance; share_floor 0 by default)
  and, for models with an MLP, at least min_neurons neurons have share_k >= threshold
  (min_neurons default max(2, ceil(0.01 d_mlp))). Derived from the final checkpoint's weights.
* Logit fit: L[a, b, z] ~ sum_{k in K} A_k cos(w_k (a + s b - c_z)) (c_z = group position of z), fitted
  by least squares to the logits centred over z per cell (the basis functions are orthogonal, so
  A_k = <Lc, f_k> / <f_k, f_k>); variance explained = 1 - ||Lc - fit||^2 / ||Lc||^2; fit loss =
  cross-entropy of the fitted logits on all group cells.
* Gini (`fourier.gini`) of the per-frequency norms (k = 1..n_freqs, constant excluded) of W_E (token
  rows in group order, Fourier over tokens) and of W_L = W_out @ W_U (columns in group order,
  Fourier over the output, norm over neurons).
* attn_periodicity: share of the variance over the grid of the attention from "=" to x (summed
  over heads) that lies in the single-frequency blocks of the key frequencies.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from grokscope.analysis.modular.grid import GridActs, grid_forward
from grokscope.analysis.modular.fourier import (
    Group,
    block_energy_fft,
    fourier_1d,
    freq_norms_1d,
    gini,
    group_for,
    neuron_single_frequency_share,
    pair_sum,
    sum_directions,
)
from grokscope.tasks.cyclic import logit_shares
from grokscope.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyRule:
    """Parameters of the key-frequency rule (see module docstring)."""

    threshold: float = 0.85  # neuron share to count as single-frequency
    share_floor: float = 0.0  # r_k must reach this (an optional absolute floor) ...
    null_mult: float = 10.0  # ... and null_mult times the no-structure level 2 / (n^2 - 1)
    min_neurons: int | None = None  # None -> max(2, ceil(0.01 * d_mlp))

    def neurons_needed(self, d_mlp: int) -> int:
        return self.min_neurons if self.min_neurons is not None else max(2, math.ceil(0.01 * d_mlp))

    def share_needed(self, n: int) -> float:
        return max(self.share_floor, self.null_mult * 2.0 / (n * n - 1))

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError("key_rule.threshold", f"must be in (0, 1] (got {self.threshold})")
        if not 0.0 <= self.share_floor <= 1.0:
            raise ConfigError("key_rule.share_floor", f"must be in [0, 1] (got {self.share_floor})")
        if not (self.null_mult >= 0 and math.isfinite(self.null_mult)):
            raise ConfigError("key_rule.null_mult", f"must be a finite number >= 0 (got {self.null_mult})")
        if self.min_neurons is not None and self.min_neurons < 0:
            raise ConfigError("key_rule.min_neurons", f"must be null or an integer >= 0 (got {self.min_neurons})")


@dataclass
class KeyFrequencies:
    freqs: list[int]
    logit_share: np.ndarray  # [n_freqs + 1] r_k (index 0 unused = 0)
    neuron_count: np.ndarray  # [n_freqs + 1] neurons clustered on k (index 0 = unclustered)
    share_needed: float
    neurons_needed: int


def cross_entropy(logits: Tensor, labels: Tensor) -> float:
    """Mean cross-entropy, exact to float32 rounding even for losses near 1e-9; NaN for an empty set."""
    return loss_and_accuracy(logits, labels)[0]


def loss_and_accuracy(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy as argmax == label) in one pass; NaN, NaN for an empty set.

    Per row, with d_z = L_z - L_y (the correct class y excluded from the sum) and m = max(0, max_z d_z):
    CE = m + log(e^-m + sum_{z != y} e^(d_z - m)), evaluated as log1p(sum e^d_z) when m = 0, so tiny
    losses keep their relative precision (float32 log_softmax would round them to 0). The same max
    decides accuracy: max_z d_z < 0 is a hit, > 0 a miss; only exact ties (= 0) need the argmax rule
    (first maximum wins), so argmax, a slow reduction, runs on those rows alone.
    """
    if labels.numel() == 0:
        return float("nan"), float("nan")
    L = logits.float()
    d = L - L.gather(-1, labels[:, None])
    d.scatter_(-1, labels[:, None], float("-inf"))
    top = d.amax(-1)
    hit = top < 0
    tie = top == 0
    if bool(tie.any()):
        hit[tie] = L[tie].argmax(-1) == labels[tie]
    m = top.clamp_min(0.0)
    s = d.sub_(m[:, None]).clamp_min_(-80.0).exp_().sum(-1)  # in place; clamp: e^-80 ~ 2e-35 stays a normal float (denormals are slow)
    ce = torch.where(m > 0, m + torch.log(torch.exp(-m) + s), torch.log1p(s))
    return float(ce.double().mean()), float(hit.double().mean())


@dataclass
class Measures:
    """Everything measured at one checkpoint."""

    row: dict  # one progress.parquet row
    embed_norms: np.ndarray  # [n_freqs + 1]
    W_L_norms: np.ndarray | None  # [n_freqs + 1]
    neuron_share: np.ndarray | None  # [d_mlp, n_freqs + 1]
    circles: dict[int, np.ndarray] = field(default_factory=dict)  # k -> [p, 2]


class CheckpointAnalyzer:
    """Computes the measures of checkpoints of one run (task + model config fixed)."""

    def __init__(self, model_cfg: ModelConfig, task, rule: KeyRule = KeyRule()) -> None:
        self.cfg = model_cfg
        self.task = task
        self.p = task.p
        self.rule = rule
        self.group: Group = group_for(task.cfg.op, task.p)
        g = self.group
        self._identity_order = g.n == self.p and bool((g.tokens == np.arange(self.p)).all())
        self.pos_of_token = g.position_of_token()
        # group grid cells: flat index a * n + b  <->  grid index x * p + y
        cell_grid = (g.tokens[:, None] * self.p + g.tokens[None, :]).ravel()
        labels = task.labels_grid[cell_grid]
        train = np.isin(cell_grid, task.train_idx)
        test = np.isin(cell_grid, task.test_idx)
        valid = labels >= 0
        self.g_train = torch.as_tensor(np.nonzero(train & valid)[0])
        self.g_test = torch.as_tensor(np.nonzero(test & valid)[0])
        self.g_labels = torch.as_tensor(np.where(valid, labels, 0))
        self.g_valid = torch.as_tensor(np.nonzero(valid)[0])
        self.train_idx = torch.as_tensor(task.train_idx)
        self.test_idx = torch.as_tensor(task.test_idx)
        self.labels_grid = torch.as_tensor(task.labels_grid)
        self.set_keys([])

    # -- key frequencies --------------------------------------------------------------------
    def set_keys(self, freqs: list[int]) -> None:
        self.keys = [int(k) for k in freqs]
        self.key_dirs = {k: sum_directions(self.group, [k]).float() for k in self.keys}
        self.all_key_dirs = (
            torch.cat(list(self.key_dirs.values())) if self.keys else torch.zeros(0, self.group.n, self.group.n)
        )

    def logit_shares(self, Lg: Tensor) -> np.ndarray:
        """r_k for k = 0..n_freqs (index 0 = 0): share of double-centred logit energy in the
        cos / sin(w_k (a + s b)) directions."""
        return logit_shares(self.group, Lg).numpy()

    def derive_keys(self, acts: GridActs) -> KeyFrequencies:
        """Apply the key-frequency rule to one checkpoint's activations."""
        Lg = self.group_logits(acts.logits)
        r = self.logit_shares(Lg)
        n_need = 0
        counts = np.zeros(self.group.n_freqs + 1, dtype=np.int64)
        if acts.neurons is not None:
            share = self.neuron_shares(acts.neurons)
            counts = cluster_counts(share, self.rule.threshold)
            n_need = self.rule.neurons_needed(share.shape[0])
        r_need = self.rule.share_needed(self.group.n)
        keys = [k for k in range(1, self.group.n_freqs + 1)
                if r[k] >= r_need and (acts.neurons is None or counts[k] >= n_need)]
        return KeyFrequencies(keys, r, counts, r_need, n_need)

    # -- group views ------------------------------------------------------------------------
    def in_group_order(self, x: Tensor, dim: int = 0) -> Tensor:
        """x with its grid dimensions (dim, dim + 1) = (x, y) in group order: x itself for Z_p ops,
        re-indexed by the discrete logarithm for mul / div."""
        if self._identity_order:
            return x
        t = torch.as_tensor(self.group.tokens)
        return x.index_select(dim, t).index_select(dim + 1, t)

    def group_logits(self, logits: Tensor) -> Tensor:
        return self.in_group_order(logits)  # [n, n, p]

    def neuron_grid(self, neurons: Tensor) -> Tensor:
        return self.in_group_order(neurons).permute(2, 0, 1)  # [m, n, n]

    def neuron_shares(self, neurons: Tensor) -> np.ndarray:
        """[d_mlp, n_freqs + 1] single-frequency shares (`fourier.neuron_single_frequency_share`)."""
        return neuron_single_frequency_share(self.in_group_order(neurons)).numpy()

    def attn_to_x(self, pattern: Tensor) -> Tensor:
        return self.in_group_order(pattern, 1)[..., 0]  # [h, n, n]

    # -- losses -----------------------------------------------------------------------------
    def fourier_losses(self, Lg: Tensor) -> dict:
        """Restricted / excluded losses (module docstring), computed on the needed cells only."""
        n = self.group.n
        Lf = Lg.float().reshape(n * n, -1)  # [n^2, p]
        D = self.all_key_dirs.reshape(-1, n * n)  # [d, n^2]
        coef = D @ Lf  # [d, p]
        const = Lf.mean(0, keepdim=True)
        y = self.g_labels
        out: dict = {}
        for split, idx in (("train", self.g_train), ("test", self.g_test)):
            proj = D[:, idx].T @ coef  # [cells, p]
            if split == "test":
                out["restricted_loss_test"], out["restricted_acc_test"] = loss_and_accuracy(const + proj, y[idx])
            else:
                out["restricted_loss_train"] = cross_entropy(const + proj, y[idx])
                Ltr = Lf[idx]
                out["excluded_loss_train"] = cross_entropy(Ltr - proj, y[idx])
                row = 0
                for k, d in self.key_dirs.items():
                    nd = d.shape[0]
                    pk = D[row : row + nd, idx].T @ coef[row : row + nd]
                    out[f"excluded_loss_train_k{k}"] = cross_entropy(Ltr - pk, y[idx])
                    row += nd
        return out

    # -- logit fit --------------------------------------------------------------------------
    def logit_fit(self, logits: Tensor) -> dict:
        """Fit sum_k A_k cos(w_k(a + s b - c_z)) to the logits (module docstring)."""
        g = self.group
        Lg = self.group_logits(logits).double()
        z_tok = torch.as_tensor(g.tokens)  # output classes in group order (drops z = 0 for mul/div)
        L = Lg[..., z_tok]
        L = L - L.mean(-1, keepdim=True)
        sst = float(L.pow(2).sum())
        a = torch.arange(g.n, dtype=torch.float64)
        u = a[:, None, None] + g.sign * a[None, :, None] - a[None, None, :]
        fit = torch.zeros_like(L)
        amps = {}
        for k in self.keys:
            f = torch.cos(2 * math.pi * k * u / g.n)
            A = float((L * f).sum() / f.pow(2).sum())
            amps[k] = A
            fit = fit + A * f
        ve = 1.0 - float((L - fit).pow(2).sum()) / sst if sst > 0 else float("nan")
        # fit loss over the valid group cells; classes in group order, labels mapped to positions
        y = torch.as_tensor(self.pos_of_token)[self.g_labels[self.g_valid]]
        flat = fit.reshape(g.n * g.n, -1)[self.g_valid]
        loss = cross_entropy(flat, y) if self.keys else float("nan")
        return {"amplitudes": amps, "variance_explained": ve, "loss": loss}

    # -- weights ----------------------------------------------------------------------------
    def W_L(self, params: dict[str, Tensor]) -> Tensor | None:
        """[neurons, p] the neurons' direct map to the logits: W_out W_U; a 1-layer MLP's W_U; a chunked
        MLP's per-chunk W_out[c] W_U[2c:2c+2] stacked. None where the neurons reach the logits otherwise."""
        L = self.cfg.n_layers - 1
        W_U = params["unembed.W_U"].double()
        W_out = params.get(f"blocks.{L}.mlp.W_out")
        if self.cfg.name == "mlp":
            if L > 0:
                return None
            if W_out is None:
                return W_U
            n_chunks = W_out.shape[0]
            return torch.einsum("cmo,cov->cmv", W_out.double(), W_U.view(n_chunks, 2, -1)).flatten(0, 1)
        if W_out is None:
            return None
        return W_out.double() @ W_U  # [d_mlp, p]

    def embed_norms(self, params: dict[str, Tensor]) -> np.ndarray:
        W_E = params["embed.W_E"].double()[torch.as_tensor(self.group.tokens)]  # [n, d_model]
        return freq_norms_1d(W_E, 0).numpy()

    def W_L_norms(self, W_L: Tensor | None) -> np.ndarray | None:
        if W_L is None:
            return None
        return freq_norms_1d(W_L[:, torch.as_tensor(self.group.tokens)], 1).numpy()

    def circles(self, params: dict[str, Tensor]) -> dict[int, np.ndarray]:
        """k -> [p, 2]: each token's embedding projected on the unit directions of W_E's cos_k and
        sin_k Fourier components (rows of B @ W_E over tokens in group order)."""
        W_E = params["embed.W_E"].double()
        coef = fourier_1d(W_E[torch.as_tensor(self.group.tokens)], 0)  # [n, d_model]
        out = {}
        for k in self.keys:
            rows = [2 * k - 1, 2 * k] if 2 * k < self.group.n else [self.group.n - 1]
            cols = []
            for r in rows:
                v = coef[r]
                cols.append(W_E[: self.p] @ (v / v.norm().clamp_min(1e-30)))
            if len(cols) == 1:
                cols.append(torch.zeros_like(cols[0]))
            out[k] = torch.stack(cols, -1).numpy()
        return out

    # -- one checkpoint ---------------------------------------------------------------------
    def forward(self, params: dict[str, Tensor]) -> GridActs:
        return grid_forward(params, self.cfg, self.p)

    def measure(self, step: int, params: dict[str, Tensor], acts: GridActs | None = None,
                with_circles: bool = True) -> Measures:
        acts = acts if acts is not None else self.forward(params)
        flat = acts.logits.reshape(self.p * self.p, -1)
        row: dict = {"step": int(step)}
        for split, idx in (("train", self.train_idx), ("test", self.test_idx)):
            row[f"{split}_loss"], row[f"{split}_acc"] = loss_and_accuracy(flat[idx], self.labels_grid[idx])
        Lg = self.group_logits(acts.logits)
        row.update(self.fourier_losses(Lg))
        emb = self.embed_norms(params)
        W_L = self.W_L(params)
        wl = self.W_L_norms(W_L)
        row["gini_W_E"] = gini(emb[1:])
        row["gini_W_L"] = gini(wl[1:]) if wl is not None else float("nan")
        share = None
        if acts.neurons is not None:
            share = self.neuron_shares(acts.neurons)
            row["frac_neurons_single_frequency"] = float((share[:, 1:].max(-1) >= self.rule.threshold).mean())
        else:
            row["frac_neurons_single_frequency"] = float("nan")
        row["attn_periodicity"] = self.attn_periodicity(acts.pattern)
        total = 0.0
        sq = {}
        for name, t in sorted(params.items()):
            v = float(torch.linalg.vector_norm(t.double()) ** 2)
            sq[f"sq_norm_{name}"] = v
            total += v
        row["sq_norm_total"] = total
        row.update(sq)
        circ = self.circles(params) if with_circles else {}
        return Measures(row, emb, wl, share, circ)

    def attn_periodicity(self, pattern: Tensor | None) -> float:
        if not self.keys or pattern is None:
            return float("nan")
        A = self.attn_to_x(pattern).double()
        A = A - A.mean(dim=(-2, -1), keepdim=True)
        E = block_energy_fft(A).sum(0)  # [F+1, F+1] summed over heads
        total = float(E.sum() - E[0, 0])
        if total <= 1e-20:
            return float("nan")
        key = sum(float(E[k, k] + E[k, 0] + E[0, k]) for k in self.keys)
        return key / total


def cluster_counts(share: np.ndarray, threshold: float) -> np.ndarray:
    """[n_freqs + 1]: neurons whose largest single-frequency share is >= threshold, per frequency;
    index 0 = the unclustered neurons."""
    best = share[:, 1:].argmax(-1) + 1
    ok = share[:, 1:].max(-1) >= threshold
    counts = np.bincount(np.where(ok, best, 0), minlength=share.shape[1])
    return counts.astype(np.int64)


def neuron_assignment(share: np.ndarray, threshold: float) -> np.ndarray:
    """[d_mlp] frequency each neuron clusters on (0 = unclustered)."""
    best = share[:, 1:].argmax(-1) + 1
    return np.where(share[:, 1:].max(-1) >= threshold, best, 0).astype(np.int64)


def logits_fourier_norm(group: Group, Lg: Tensor) -> Tensor:
    """[n, n] norm over z of the 2D Fourier coefficients (rows: x basis, cols: y basis) of the
    logits centred over z per cell."""
    L = Lg.double()
    L = L - L.mean(-1, keepdim=True)
    coef = fourier_1d(fourier_1d(L, 0), 1)  # [n, n, p]
    return coef.pow(2).sum(-1).sqrt()


def W_L_cluster_norms(W_L: Tensor, group: Group, assign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster labels [c], norms [c, n_freqs + 1]): per cluster (frequency, 0 = unclustered), the
    norm of W_L's rows of that cluster's neurons in each output frequency."""
    coef = fourier_1d(W_L[:, torch.as_tensor(group.tokens)].double(), 1)  # [m, n]
    sq = pair_sum(coef.pow(2), 1)  # [m, F+1]
    labels = np.unique(assign)
    labels = np.concatenate([labels[labels > 0], labels[labels == 0]])
    norms = np.stack([sq[torch.as_tensor(assign == c)].sum(0).sqrt().numpy() for c in labels]) if labels.size else \
        np.zeros((0, sq.shape[1]))
    return labels.astype(np.int64), norms
