"""Circuit directions (seed 002): walk along a direction that keeps circuit A and ablates circuit B,
and ask whether the walk is a "sloped canyon" of the loss.

A circuit is a loss of its own, a function of the same parameters as the model's:

- on modular arithmetic, key frequency k (`k14`): the restricted loss that keeps frequency k only,
  R_k[a, b, z] = mean_cells L[., ., z] + sum_d <L[., ., z], u_kd> u_kd[a, b] (the constant term and
  the directions cos, sin(w_k (a + s b)); `grokscope.analysis.modular.measures`), on the split's cells;
- on a task with loss components (two_feature_digits: `digit`, `pattern`), the loss on that
  component's targets of the split.

The direction. H_A, H_B are the Hessians of the two circuit losses at the checkpoint w*. With
V_A = H_A's top-k_A eigenvectors and v_B = H_B's top eigenvector,

    d = (v_B - V_A' V_A v_B) / |v_B - V_A' V_A v_B|,

the direction along which B's loss curves most, with A's stiffest directions taken out. The walk
is w(t) = w* + t d for t in [-span, span]; span defaults to sqrt(2 ln V / d'H_B d), where the
quadratic model of B's loss has risen by ln V (a uniform guess over V classes).

The canyon test. At every walk point the joint loss (the run's training loss) is relaxed in the
directions orthogonal to d: `relax_steps` steps of gradient descent on the projected gradient, with
a backtracking line search per point (`relax_orthogonally`), all points at once as members. At
`check_points` of the walk points the lowest eigenvalue of the orthogonal Hessian P H P (P = I - d d')
comes from Lanczos: is the walk itself a minimum across, to second order? (At the relaxed points the
check would say little: relaxing goes to a minimum wherever it can.) The rule, fixed before the
experiments in docs/landscape.md were run:

- orthogonal minimum at t: lambda_min(P H P) >= -tol * lambda_1(H(w*)) (tol = 0.01);
- sloped: the relaxed joint loss rises monotonically away from t = 0 on both sides, and at both ends
  it keeps at least 10 % of the straight walk's rise (relaxing does not flatten the canyon);
- circuit kept: at both ends of the relaxed walk B's loss rose more than A's;
- a sloped canyon: all three.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from grokscope.analysis.landscape.curvature import lanczos
from grokscope.analysis.landscape.hessian import FlatLoss, select_params
from grokscope.config import ConfigError

StackedFn = Callable[[dict[str, Tensor]], Tensor]  # {name: [m, ...]} -> [m]
TOL, KEEP_RISE = 0.01, 0.1  # the canyon rule (module docstring)


@dataclass
class Circuit:
    """A circuit's loss (and accuracy) as functions of stacked parameters."""

    name: str
    loss: StackedFn
    accuracy: StackedFn | None = None


def frequency_circuits(run: Any, freqs: Sequence[int], split: str = "train", device: str = "cpu") -> dict[str, Circuit]:
    """`k<f>` circuits of a modular-arithmetic run: the restricted loss keeping frequency f only."""
    from grokscope.analysis.modular.measures import CheckpointAnalyzer
    from grokscope.engine.generic import GenericEngine
    from grokscope.loss import loss_dtype
    from grokscope.models import make_model

    task = run.task
    an = CheckpointAnalyzer(run.config.model, task)
    bad = [f for f in freqs if not 1 <= int(f) <= an.group.n_freqs]
    if bad:
        raise ConfigError("circuits", f"frequencies must be in 1..{an.group.n_freqs} (got {bad})")
    an.set_keys([int(f) for f in freqs])
    engine = GenericEngine(run.config.model, task, make_model(run.config, task).to(device))
    p, n = task.p, an.group.n
    tokens = task.tokens(np.arange(p * p)).to(device)  # grid order x * p + y
    cells = (an.g_train if split == "train" else an.g_test).to(device)
    labels = an.g_labels.to(device)[cells]
    dtype = loss_dtype(run.config.train.loss_dtype)

    def restricted(f: int) -> tuple[StackedFn, StackedFn]:
        D = an.key_dirs[f].reshape(-1, n * n).to(device=device, dtype=dtype)  # [d, n^2]

        def logits(params: dict[str, Tensor]) -> Tensor:
            m = next(iter(params.values())).shape[0]
            L = engine.logits(params, tokens.expand(m, *tokens.shape))[:, :, 0].to(dtype)  # [m, p^2, V]
            L = an.in_group_order(L.reshape(m, p, p, -1), dim=1).reshape(m, n * n, -1)
            coef = torch.einsum("dc,mcv->mdv", D, L)
            return L.mean(1, keepdim=True) + torch.einsum("dc,mdv->mcv", D[:, cells], coef)  # [m, cells, V]

        def loss(params: dict[str, Tensor]) -> Tensor:
            R = logits(params)
            return F.cross_entropy(R.transpose(1, 2), labels.expand(R.shape[0], -1), reduction="none").mean(-1)

        def accuracy(params: dict[str, Tensor]) -> Tensor:
            return (logits(params).argmax(-1) == labels).to(dtype).mean(-1)

        return loss, accuracy

    return {f"k{int(f)}": Circuit(f"k{int(f)}", *restricted(int(f))) for f in freqs}


def component_circuits(run: Any, names: Sequence[str], split: str = "train", device: str = "cpu") -> dict[str, Circuit]:
    """Circuits of a task with loss components: each component's loss on the split."""
    return {c: Circuit(c, run.loss_fn(split, device, component=c), run.accuracy_fn(split, device, component=c))
            for c in names}


def circuits_of(run: Any, names: Sequence[str] | None = None, split: str = "train", device: str = "cpu") -> dict[str, Circuit]:
    """The run's circuits: key frequencies (modular; names "14" or "k14", default the two with the
    largest logit share) or loss components (default the two after the joint one)."""
    from grokscope.tasks import components_of

    comps = components_of(run.task)
    if getattr(run.task, "name", None) == "modular":
        if names is None:
            shares = run.analysis().summary.get("key_frequency_evidence", {}).get("top_logit_share", {}) \
                if "fourier" in getattr(run, "analyses", []) else {}
            keys = run.analysis().summary.get("key_frequencies", []) if shares else []
            ranked = sorted(keys, key=lambda k: -shares.get(str(k), 0.0))
            if len(ranked) < 2:
                raise ConfigError("circuits", "name two key frequencies, e.g. 14 35 (the run's analysis found "
                                              f"{len(ranked)}; run grokscope analyze first to find them)")
            names = [str(k) for k in ranked[:2]]
        try:
            freqs = [int(str(x).removeprefix("k")) for x in names]
        except ValueError:
            raise ConfigError("circuits", f"modular circuits are key frequencies such as 14 or k14 (got {list(names)})") from None
        return frequency_circuits(run, freqs, split, device)
    if len(comps) >= 2:
        names = list(names) if names is not None else [c for c in comps if c != comps[0]][:2]
        return component_circuits(run, names, split, device)
    raise ConfigError("circuits", f"the task {getattr(run.task, 'name', '?')!r} has no circuits here: key frequencies "
                                  "need modular arithmetic, components a task with several (two_feature_digits)")


@dataclass
class CircuitWalk:
    """A walk that keeps circuit `a` and ablates circuit `b`, and the canyon test along it."""

    a: str
    b: str
    step: int
    split: str
    params: list[str]
    dim: int
    direction: dict  # overlap with A's top eigenvectors, curvatures of d, the joint top eigenvalues
    walk: pd.DataFrame  # t, then per walk point and relaxed point: losses, accuracies, lambda_min
    verdict: dict
    seconds: float
    vector: Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "step": self.step, "split": self.split, "params": self.params, "dim": self.dim,
                "direction": self.direction, "verdict": self.verdict, "seconds": self.seconds}


def circuit_direction(f_a: FlatLoss, f_b: FlatLoss, k_a: int = 10, lanczos_steps: int | None = None, seed: int = 0,
                      device: str = "cpu") -> tuple[Tensor, dict]:
    """d = B's top Hessian eigenvector with A's top-k_a eigenvectors projected out (unit norm), and
    what it is: B's top eigenvalue, the share of v_B inside A's top-k_a space, and d'H d for both."""
    eig_a, V_a = lanczos(f_a.hvp, f_a.dim, k=min(k_a, f_a.dim), steps=lanczos_steps, seed=seed, device=device)
    eig_b, V_b = lanczos(f_b.hvp, f_b.dim, k=1, steps=lanczos_steps, seed=seed + 1, device=device)
    v_b = V_b[0]
    inside = V_a @ v_b
    d = v_b - V_a.T @ inside
    if float(d.norm()) < 1e-8:
        raise ConfigError("circuits", "circuit B's top direction lies inside A's top eigenvectors: nothing is left "
                                      "to ablate B alone (try a smaller k_a)")
    d = d / d.norm()
    info = {"k_a": len(eig_a), "eigenvalues_a": [float(x) for x in eig_a], "lambda_1_b": float(eig_b[0]),
            "v_b_share_in_a": float(inside.pow(2).sum()),
            "curvature_a": float(d @ f_a.hvp(d)), "curvature_b": float(d @ f_b.hvp(d))}
    return d, info


def _orthogonal_lambda_min(f: FlatLoss, x: Tensor, d: Tensor, steps: int, seed: int, device: str) -> float:
    """The lowest eigenvalue of P H(x) P, P = I - d d', by Lanczos on its negative."""
    g = FlatLoss(f.loss_fn, {**{k: v[0] for k, v in f.fixed.items()}, **f.unflat(x)}, f.names)
    d = d.double()  # Lanczos works in float64

    def neg_php(v: Tensor) -> Tensor:
        v = v - d * (d @ v)
        hv = g.hvp(v)
        return -(hv - d * (d @ hv))

    eig, _ = lanczos(neg_php, f.dim, k=1, steps=steps, seed=seed, device=device)
    return -float(eig[0])


def relax_orthogonally(f: FlatLoss, X: Tensor, d: Tensor, steps: int, first_step: float,
                       progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Points X [m, dim] moved downhill on f orthogonally to d: gradient descent on the projected
    gradient with a backtracking line search per point (Armijo: accept a step that lowers f by half
    its first-order prediction, then try twice as long; else halve it). A point at an orthogonal
    minimum has no projected gradient and stays put, unlike under Adam, whose normalised steps
    wander along flat directions."""
    Y = X.detach().clone()
    lr = torch.full((len(Y),), float(first_step), dtype=Y.dtype, device=Y.device)
    for i in range(steps):
        Yg = Y.clone().requires_grad_(True)
        loss = f.loss_fn(f.stacked(Yg))
        (g,) = torch.autograd.grad(loss.sum(), Yg)
        with torch.no_grad():
            g -= (g @ d)[:, None] * d
            cand = Y - lr[:, None] * g
            new = f.loss_fn(f.stacked(cand))
            ok = torch.isfinite(new) & (new <= loss - 0.5 * lr * g.pow(2).sum(1))
            Y = torch.where(ok[:, None], cand, Y)
            lr = torch.where(ok, lr * 2, lr / 2)
        if progress:
            progress(i + 1, steps)
    return Y


def walk(joint: FlatLoss, measures: dict[str, StackedFn], d: Tensor, ts: np.ndarray, relax_steps: int = 100,
         first_step: float = 1.0, check_points: int = 5, lanczos_steps: int = 20, seed: int = 0, device: str = "cpu",
         chunk: int = 8, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per t: every measure (name -> stacked fn of {name: [m, ...]}) at w* + t d and at that
    point relaxed orthogonally to d (columns `<name>` and `relaxed_<name>`), the joint loss at both,
    the orthogonal distance relaxing moved, and lambda_min(P H P) at `check_points` walk points."""
    d = d.to(joint.x0.dtype)
    ts_t = torch.as_tensor(ts, dtype=joint.x0.dtype, device=joint.x0.device)
    X = joint.x0 + ts_t[:, None] * d  # [T, dim]

    def evaluate(points: Tensor) -> dict[str, np.ndarray]:
        out: dict[str, list] = {name: [] for name in ("joint", *measures)}
        with torch.no_grad():
            for i in range(0, len(points), chunk):
                p = joint.stacked(points[i : i + chunk])
                out["joint"].append(joint.loss_fn(p))
                for name, fn in measures.items():
                    out[name].append(fn(p))
        return {k: torch.cat(v).double().cpu().numpy() for k, v in out.items()}

    Y = relax_orthogonally(joint, X, d, relax_steps, first_step, progress)
    straight, relaxed = evaluate(X), evaluate(Y)
    df = pd.DataFrame({"t": ts, **straight, **{f"relaxed_{k}": v for k, v in relaxed.items()},
                       "moved": (Y - X).norm(dim=1).double().cpu().numpy()})
    lam = np.full(len(ts), np.nan)
    for i in np.unique(np.linspace(0, len(ts) - 1, min(check_points, len(ts))).round().astype(int)):
        lam[i] = _orthogonal_lambda_min(joint, X[i], d, lanczos_steps, seed + 2 + int(i), device)
    df["lambda_min_orthogonal"] = lam
    return df


def canyon_verdict(df: pd.DataFrame, a: str, b: str, lambda_1: float) -> dict:
    """The module docstring's rule applied to a walk table."""
    zero = int(np.argmin(np.abs(df["t"].to_numpy())))
    rel, straight = df["relaxed_joint"].to_numpy(), df["joint"].to_numpy()
    sides = [rel[zero:], rel[: zero + 1][::-1]]
    monotone = all(bool(np.all(np.diff(s) > 0)) for s in sides if len(s) > 1)
    ends = [i for i in (0, len(df) - 1) if i != zero]
    keeps = all(rel[i] - rel[zero] >= KEEP_RISE * (straight[i] - straight[zero]) for i in ends)
    lam = df["lambda_min_orthogonal"].dropna().to_numpy()
    minimum = bool(np.all(lam >= -TOL * abs(lambda_1)))
    rise = lambda col, i: float(df[col].iloc[i] - df[col].iloc[zero])  # noqa: E731
    kept = all(rise(f"relaxed_loss_{b}", i) > rise(f"relaxed_loss_{a}", i) for i in ends)
    return {"orthogonal_minimum": minimum, "sloped": monotone and keeps, "circuit_kept": kept,
            "sloped_canyon": minimum and monotone and keeps and kept, "lambda_1": lambda_1, "tol": TOL,
            "keep_rise": KEEP_RISE, "worst_lambda_min": float(lam.min()) if len(lam) else None,
            "rule": "orthogonal minimum: lambda_min(P H P) >= -tol |lambda_1| at every checked walk point; sloped: "
                    "the relaxed joint loss rises monotonically from t = 0 and keeps >= keep_rise of the straight "
                    "walk's rise at both ends; circuit kept: B's relaxed loss rose more than A's at both ends"}


def circuit_walk(run: Any, a: str | None = None, b: str | None = None, step: int | None = None, split: str = "train",
                 params: Sequence[str] | None = None, k_a: int = 10, span: float | None = None, points: int = 11,
                 relax_steps: int = 50, check_points: int = 5, joint_k: int = 10,
                 lanczos_steps: int | None = None, seed: int = 0, device: str = "cpu",
                 progress: Callable[[int, int], None] | None = None) -> CircuitWalk:
    """Circuit A kept, circuit B ablated: the direction, the walk and the canyon verdict (module
    docstring). a, b: circuit names (`circuits_of`); the default is the run's two main circuits."""
    from grokscope.run import as_run, checkpoint_step

    if points < 3 or points % 2 == 0:
        raise ConfigError("points", f"must be an odd integer >= 3, so that t = 0 is on the walk (got {points})")
    for name, value, least in (("k_a", k_a, 1), ("joint_k", joint_k, 1), ("relax_steps", relax_steps, 0),
                               ("check_points", check_points, 0)):
        if value < least:
            raise ConfigError(name, f"must be an integer >= {least} (got {value})")
    if span is not None and not span > 0:
        raise ConfigError("span", f"must be a positive distance in parameter space (got {span})")
    t0 = time.perf_counter()
    run = as_run(run)
    step = checkpoint_step(run, step)
    circuits = circuits_of(run, None if a is None and b is None else [x for x in (a, b) if x is not None], split, device)
    if len(circuits) != 2:
        raise ConfigError("circuits", f"name two different circuits, A to keep and B to ablate (got {list(circuits)})")
    ca, cb = circuits.values()
    w = {k: v.to(device) for k, v in run.params(step).items()}
    names = select_params(list(w), params)
    f_a, f_b = FlatLoss(ca.loss, w, names), FlatLoss(cb.loss, w, names)
    joint = FlatLoss(run.loss_fn("train", device), w, names)
    d, info = circuit_direction(f_a, f_b, k_a, lanczos_steps, seed, device)
    eig_j, _ = lanczos(joint.hvp, joint.dim, k=min(joint_k, joint.dim), steps=lanczos_steps, seed=seed + 3, device=device)
    info |= {"curvature_joint": float(d @ joint.hvp(d)), "eigenvalues_joint": [float(x) for x in eig_j]}
    V = run.task.d_vocab_out
    span = span if span is not None else math.sqrt(2 * math.log(V) / max(info["curvature_b"], 1e-12))
    info["span"] = span
    measures: dict[str, StackedFn] = {}
    for c in (ca, cb):
        measures[f"loss_{c.name}"] = c.loss
        if c.accuracy is not None:
            measures[f"acc_{c.name}"] = c.accuracy
    measures["acc_joint"] = run.accuracy_fn("train", device)
    measures["test_loss"], measures["test_acc"] = run.loss_fn("test", device), run.accuracy_fn("test", device)
    ts = np.linspace(-span, span, points)
    df = walk(joint, measures, d, ts, relax_steps, 1 / max(float(eig_j[0]), 1e-12), check_points, lanczos_steps or 20, seed, device,
              progress=progress)
    verdict = canyon_verdict(df, ca.name, cb.name, float(eig_j[0]))
    return CircuitWalk(ca.name, cb.name, step, split, names, joint.dim, info, df, verdict, time.perf_counter() - t0,
                       vector=d.cpu())
