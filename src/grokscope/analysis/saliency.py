"""Neuron and head saliency across training (seed 003), and what deleting the salient ones costs.

Seed 003 argues that gradient descent grows general circuits: per-neuron saliency should become
right-skewed over training (a few neurons carry the task), and deleting the top-k salient neurons
should hurt more as the circuits generalise. Per checkpoint:

* **units**: each MLP layer's neurons (`blocks.{l}.mlp.hook_post`) and each attention layer's heads
  (`blocks.{l}.attn.hook_z`, a head's whole output). A unit is switched by a gate g that multiplies
  its activation (at every position); g = 1 is the model, g = 0 deletes the unit.
* **integrated gradients** (Sundararajan et al. 2017) of F = the log-probability of the correct answer
  (summed over an example's answers) with respect to the gates, from g = 0 to g = 1, one group
  (a layer's neurons or heads) at a time with the others on: IG_i = mean over the midpoints a of
  `ig_steps` subintervals of dF/dg_i at g = a. Gating a unit is scaling its activation, so this
  is IG on the activations with the zero baseline, and it is complete: sum_i IG_i = F(g = 1) - F(g = 0)
  (up to the midpoint rule; `completeness_error` records the worst case). Written here, not with
  captum: the gates need hooks inside the model rather than captum's input/layer interface, and a
  page of torch avoids a dependency for one formula.
* **saliency** of a unit: the median over `n_examples` training examples (seeded) of |IG_i|; its
  histogram over the units and the histogram's skewness (the third standardised moment).
* **deletion**: the test loss and accuracy (on `test_examples` seeded test examples, default 2048)
  with the top-k salient units of a group deleted, against k random units (the mean of
  `random_draws` seeded draws) and against none; k defaults to 10 % of a layer's neurons and 1 head.
* **Shapley values** (`shapley` > 0 permutations, at the last analysed checkpoint): each neuron's mean
  marginal contribution to mean F over random orders of switching the layer's neurons on (value
  sampling; every order when a layer has <= 8 units and `shapley` >= their count's factorial).

The verb writes RUN/saliency/: progress.parquet (one row per checkpoint), units.parquet (step,
group, unit, saliency), summary.json, and shapley.parquet.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.core import over_checkpoints
from grokscope.config import ConfigError
from grokscope.engine.generic import GenericEngine
from grokscope.io import atomic_write_json, atomic_write_parquet, check_folder
from grokscope.loss import log_probs, loss_dtype
from grokscope.models import make_model


@dataclass(frozen=True)
class UnitGroup:
    """The units behind one hook point: `gate_shape` broadcasts a [rows, n] gate onto the activation."""

    name: str  # "L0 neurons", "L0 heads"
    hook: str  # blocks.0.mlp.hook_post
    n: int
    gate_shape: tuple[int, ...]  # the activation's shape after the batch, with 1 where units share a gate


def unit_groups(model: Any, config: Any, tokens: Tensor) -> list[UnitGroup]:
    """Every layer's neurons and heads, read from one cached forward (shapes differ by model family)."""
    _, cache = model.run_with_cache(tokens[:1], names_filter=lambda n: n.endswith(("mlp.hook_post", "attn.hook_z")))
    groups = []
    for hook in sorted(cache, key=lambda h: (int(h.split(".")[1]), "attn" not in h)):
        shape = list(cache[hook].shape[1:])
        if config.model.name == "transformer":
            shape[0] = 1  # a unit is gated at every position
        if hook.endswith("hook_z"):
            shape[-1] = 1  # a head's whole output: [pos head d_head] -> one gate per head
        layer, kind = hook.split(".")[1], "heads" if hook.endswith("hook_z") else "neurons"
        groups.append(UnitGroup(f"L{layer} {kind}", hook, math.prod(shape), tuple(shape)))
    return groups


class GatedModel:
    """F(gates) per example for one checkpoint: the model with a gate on every unit of one group."""

    def __init__(self, run: Any, params: dict[str, Tensor], split: str, rows: Tensor | None, device: str = "cpu") -> None:
        self.model = make_model(run.config, run.task).to(device)
        self.model.load_state_dict({k: v.to(device) for k, v in params.items()})
        self.model.requires_grad_(False)
        self.engine = GenericEngine(run.config.model, run.task, self.model)
        batch = run.task.batch(split)
        keep = batch.mask.nonzero()[:, 0] if rows is None else rows
        self.tokens = batch.inputs[keep].to(device)
        self.valid = (batch.targets[keep] >= 0).to(device)
        self.labels = batch.targets[keep].clamp_min(0).to(device)
        tc = run.config.train
        self.dtype, self.loss = loss_dtype(tc.loss_dtype), tc.loss
        self.groups = unit_groups(self.model, run.config, self.tokens)

    def logits(self, tokens: Tensor, group: UnitGroup | None = None, gates: Tensor | None = None) -> Tensor:
        """[rows n_target V]; gates [rows, group.n] multiply the group's units (None: the model as it is)."""
        if group is None:
            return self.engine.at_targets(self.model, tokens)
        g = gates.reshape(gates.shape[0], *group.gate_shape)
        with self.model.hooks([(group.hook, lambda act, hook: act * g.to(act.dtype))]):
            return self.engine.at_targets(self.model, tokens)

    def logprob(self, group: UnitGroup | None = None, gates: Tensor | None = None, rows: Tensor | None = None) -> Tensor:
        """F per row: the summed log-probability of the correct answers ([rows])."""
        idx = torch.arange(len(self.tokens), device=self.tokens.device) if rows is None else rows
        lp = log_probs(self.logits(self.tokens[idx], group, gates).to(self.dtype), self.loss)
        picked = lp.gather(-1, self.labels[idx][..., None])[..., 0]
        return (picked * self.valid[idx]).sum(-1)

    def mean_logprob(self, group: UnitGroup, gates: Tensor, chunk: int = 16384) -> Tensor:
        """[R]: mean F over the examples under each of R gate vectors [R, group.n], batched (Shapley's value)."""
        n_ex, out = len(self.tokens), []
        per = max(1, chunk // n_ex)
        for part in gates.to(self.tokens.device).split(per):
            rows = torch.arange(n_ex, device=self.tokens.device).repeat(len(part))
            f = self.logprob(group, part.repeat_interleave(n_ex, dim=0), rows)
            out.append(f.reshape(len(part), n_ex).mean(1))
        return torch.cat(out)

    def loss_and_accuracy(self, group: UnitGroup | None = None, gates: Tensor | None = None) -> tuple[float, float]:
        """Mean loss and accuracy over the examples with one gate vector [group.n] for all (None: the model)."""
        with torch.no_grad():
            logits = self.logits(self.tokens, group, None if gates is None else gates[None].expand(len(self.tokens), -1))
            lp = log_probs(logits.to(self.dtype), self.loss).gather(-1, self.labels[..., None])[..., 0]
            v = self.valid
            loss = float(-(lp * v).sum() / v.sum())
            hit = ((logits.argmax(-1) == self.labels) | ~v).all(-1)
        return loss, float(hit.double().mean())


def integrated_gradients(gm: GatedModel, group: UnitGroup, steps: int = 64) -> tuple[Tensor, Tensor]:
    """(IG [examples, n], F(1) - F(0) [examples]) of the correct answers' log-probability with
    respect to the group's gates, along g = a * 1 for a from 0 to 1 (midpoint rule, `steps` points)."""
    n_ex = len(gm.tokens)
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    gates = (alphas[:, None, None] * torch.ones(steps, n_ex, group.n, dtype=torch.float64)).reshape(steps * n_ex, group.n)
    gates = gates.to(device=gm.tokens.device, dtype=torch.float32).requires_grad_(True)
    rows = torch.arange(n_ex, device=gm.tokens.device).repeat(steps)
    f = gm.logprob(group, gates, rows)
    (grad,) = torch.autograd.grad(f.sum(), gates)
    ig = grad.double().reshape(steps, n_ex, group.n).mean(0)
    with torch.no_grad():
        ones = torch.ones(n_ex, group.n, device=gm.tokens.device)
        delta = gm.logprob(group, ones).double() - gm.logprob(group, torch.zeros_like(ones)).double()
    return ig, delta


def skewness(x: np.ndarray) -> float:
    """The third standardised moment (0 for a symmetric histogram, > 0 for a long right tail)."""
    x = np.asarray(x, dtype=float)
    sd = x.std()
    return float(((x - x.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def shapley_values(value: Callable[[Tensor], Tensor], n: int, permutations: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Shapley values of n players under `value(gates [R, n] of 0/1) -> [R]`, by permutation sampling;
    every permutation (the exact values) when there are no more than `permutations` of them. Returns
    (values [n], permutations used). Each permutation is one batched call over its n + 1 prefixes."""
    if n <= 8 and math.factorial(n) <= permutations:
        orders = [list(p) for p in itertools.permutations(range(n))]
    else:
        gen = torch.Generator().manual_seed(seed)
        orders = [torch.randperm(n, generator=gen).tolist() for _ in range(permutations)]
    phi = np.zeros(n)
    for order in orders:
        prefix = torch.zeros(n + 1, n)
        for j, unit in enumerate(order):
            prefix[j + 1:, unit] = 1.0
        v = value(prefix).double().cpu().numpy()
        phi[order] += np.diff(v)
    return phi / len(orders), len(orders)


@dataclass
class Saliency:
    """What `saliency` measured: one row per checkpoint, each unit's saliency per checkpoint, and Shapley values."""

    progress: pd.DataFrame
    units: pd.DataFrame
    shapley: pd.DataFrame | None
    settings: dict
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def _check(**kw: Any) -> None:
    for key, v in kw.items():
        low = 0 if key == "shapley" else 1
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ConfigError(key, f"must be an integer >= {low} (got {v!r})")


def measure_checkpoint(run: Any, step: int, rows: Tensor, test_rows: Tensor | None, k: int | None, k_heads: int,
                       ig_steps: int, random_draws: int, seed: int, device: str = "cpu") -> tuple[dict, list[dict]]:
    """One checkpoint: (its progress row without the step, its units' rows)."""
    params = run.params(step)
    train, test = GatedModel(run, params, "train", rows, device), GatedModel(run, params, "test", test_rows, device)
    base_loss, base_acc = test.loss_and_accuracy()
    row: dict[str, Any] = {"test_loss": base_loss, "test_acc": base_acc}
    units: list[dict] = []
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    for group in train.groups:
        ig, delta = integrated_gradients(train, group, ig_steps)
        err = (ig.sum(1) - delta).abs().max().item() / max(delta.abs().mean().item(), 1e-12)
        sal = ig.abs().median(0).values.numpy()
        units += [{"step": step, "group": group.name, "unit": i, "saliency": float(s)} for i, s in enumerate(sal)]
        kk = min(group.n, k_heads if group.name.endswith("heads") else (k if k is not None else max(1, round(0.1 * group.n))))
        ones = torch.ones(group.n, device=test.tokens.device)
        top = ones.clone()
        top[torch.from_numpy(np.argsort(-sal, kind="stable")[:kk].copy())] = 0
        top_loss, top_acc = test.loss_and_accuracy(group, top)
        rand = []
        for _ in range(random_draws):
            g = ones.clone()
            g[torch.randperm(group.n, generator=gen)[:kk]] = 0
            rand.append(test.loss_and_accuracy(group, g))
        key = group.name.replace(" ", "_")
        row.update({f"{key}.skew": skewness(sal), f"{key}.median": float(np.median(sal)), f"{key}.k": kk,
                    f"{key}.completeness_error": err,
                    f"{key}.topk_test_loss": top_loss, f"{key}.topk_test_acc": top_acc,
                    f"{key}.randomk_test_loss": float(np.mean([r[0] for r in rand])),
                    f"{key}.randomk_test_acc": float(np.mean([r[1] for r in rand]))})
    return row, units


def saliency(run: Any, checkpoints: int | None = 50, steps: Sequence[int] | None = None, k: int | None = None,
             k_heads: int = 1, n_examples: int = 256, test_examples: int | None = 2048, ig_steps: int = 64,
             random_draws: int = 3, shapley: int = 0,
             shapley_examples: int = 64, seed: int = 0, device: str = "cpu", out: str | Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Saliency:
    """Saliency, its skew and top-k against random-k deletion at `checkpoints` evenly spaced
    checkpoints (or `steps`), Shapley values of the neurons at the last one (`shapley` permutations per
    layer; 0: none); writes RUN/saliency/ (or `out`). The module docstring has the definitions."""
    from grokscope.run import as_run

    _check(checkpoints=checkpoints, k=k, k_heads=k_heads, n_examples=n_examples, test_examples=test_examples, ig_steps=ig_steps,
           random_draws=random_draws, shapley=shapley, shapley_examples=shapley_examples)
    r = as_run(run)
    home = out if out is not None else (Path(r.path) / "saliency" if getattr(r, "path", None) is not None else None)
    folder = None if home is None else check_folder(Path(home))  # an in-memory run without `out` writes nothing
    t0 = time.perf_counter()
    n_train = int(r.task.batch("train").mask.sum())
    rows = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n_examples].sort().values
    n_test = int(r.task.batch("test").mask.sum())
    test_rows = None if test_examples is None or test_examples >= n_test else \
        torch.randperm(n_test, generator=torch.Generator().manual_seed(seed + 1))[:test_examples].sort().values
    unit_rows: list[dict] = []

    def measure(rr: Any, step: int) -> dict:
        row, units = measure_checkpoint(rr, step, rows, test_rows, k, k_heads, ig_steps, random_draws, seed, device)
        unit_rows.extend(units)
        return row

    table = over_checkpoints(r, measure, steps, checkpoints or len(r.steps), progress)
    last = int(table["step"].iloc[-1])
    shap = None
    if shapley:
        gm = GatedModel(r, r.params(last), "train", rows[:shapley_examples], device)
        parts = []
        for group in [g for g in gm.groups if g.name.endswith("neurons")]:
            with torch.no_grad():
                phi, used = shapley_values(lambda gates: gm.mean_logprob(group, gates), group.n, shapley, seed)
            parts.append(pd.DataFrame({"step": last, "group": group.name, "unit": np.arange(group.n), "shapley": phi,
                                       "permutations": used}))
        shap = pd.concat(parts, ignore_index=True) if parts else None
    settings = {"checkpoints": checkpoints, "k": k, "k_heads": k_heads, "n_examples": int(len(rows)),
                "test_examples": n_test if test_rows is None else int(len(test_rows)), "ig_steps": ig_steps,
                "random_draws": random_draws, "shapley": shapley, "shapley_examples": shapley_examples, "seed": seed,
                "target": "log-probability of the correct answer", "saliency": "median over examples of |IG|"}
    res = Saliency(table, pd.DataFrame(unit_rows), shap, settings, time.perf_counter() - t0)
    final = table.iloc[-1].to_dict()
    res.summary = {"format": "grokscope.saliency.v1", "settings": settings, "seconds": res.seconds,
                   "steps": [int(s) for s in table["step"]], "final": {k2: v for k2, v in final.items() if k2 != "step"},
                   "groups": sorted({c.split(".")[0] for c in table.columns if "." in c})}
    if folder is not None:
        atomic_write_parquet(folder / "progress.parquet", table)
        atomic_write_parquet(folder / "units.parquet", res.units)
        if shap is not None:
            atomic_write_parquet(folder / "shapley.parquet", shap)
        atomic_write_json(folder / "summary.json", res.summary)
    return res
