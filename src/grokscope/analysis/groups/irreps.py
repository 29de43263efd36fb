"""The irreducible-representation analysis: the S_n analogue of the Fourier analysis of Z_p.

On a group-composition run (task perm_compose, op compose: z = a b), every checkpoint's model is run
on the whole table (a, b) and decomposed over the real irreducibles rho of the group
(grokscope.analysis.groups.finite; Q = the basis of isotypic components). With L[a, b, z] the
logits at "=", A[a, b, i] neuron i's activation (block 0's MLP at "="), W_E's rows of the elements:

* embedding share of rho: the share of ||W_E||^2 in rho's component (rows as functions on G);
* logit share r_rho: with Lc = L centred over z per pair and over (a, b) per z, and
  phi_z(g) = mean over the pairs with a b = g of Lc[a, b, z], r_rho = |G| sum_z ||P_rho phi_z||^2
  / ||Lc||^2: the share of the logits that are functions of the product a b in rho. Unstructured
  logits give about size_rho / (|G|^2 - 1) (size = d_rho^2);
* neuron share of rho: with E[s, t] the energy of A[., ., i] in the component s x t of functions on
  G x G, (E[rho, rho] + E[rho, 1] + E[1, rho]) / sum_{(s, t) != (1, 1)} E[s, t]; a neuron is
  dominated by rho when its largest share is >= `threshold` (0.85);
* key irreps (final checkpoint, as the key-frequency rule): rho is key iff r_rho >= null_mult (10)
  x size_rho / (|G|^2 - 1) and, for models with an MLP, at least min_neurons (max(2, 1 % of d_mlp))
  neurons are dominated by rho;
* restricted logits R[a, b, z] = mean_{a', b'} L[a', b', z] + sum_{rho in K} (P_rho phi_z)(a b), with
  phi_z from L itself; excluded logits X = L - sum_{rho in K} (P_rho phi_z)(a b);
  restricted_loss_train / _test and excluded_loss_train are their cross-entropies on the splits.

For Z_p (modular addition) the components are the Fourier frequencies and every one of these
definitions is the Fourier analysis's (tests/analysis/test_irreps.py checks they agree on a real
model). The analysis runs by default on perm_compose runs; on a modular add run ask for it by name
(`analyses=["irreps"]`), since the Fourier analysis already covers those.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.groups.finite import FiniteGroup, cyclic_group, symmetric_group
from grokscope.analysis.registry import AnalysisOutput
from grokscope.config import ConfigError
from grokscope.models import make_model


@dataclass(frozen=True)
class IrrepRule:
    """Parameters of the key-irrep rule (module docstring)."""

    threshold: float = 0.85  # neuron share to count as dominated by one irrep
    null_mult: float = 10.0  # r_rho must reach null_mult x the no-structure level size / (|G|^2 - 1)
    min_neurons: int | None = None  # None -> max(2, ceil(0.01 d_mlp))

    def neurons_needed(self, d_mlp: int) -> int:
        return self.min_neurons if self.min_neurons is not None else max(2, math.ceil(0.01 * d_mlp))

    def check(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError("irrep_rule.threshold", f"must be in (0, 1] (got {self.threshold})")
        if not (self.null_mult >= 0 and math.isfinite(self.null_mult)):
            raise ConfigError("irrep_rule.null_mult", f"must be a finite number >= 0 (got {self.null_mult})")
        if self.min_neurons is not None and self.min_neurons < 0:
            raise ConfigError("irrep_rule.min_neurons", f"must be null or an integer >= 0 (got {self.min_neurons})")


def group_of(task: Any) -> FiniteGroup | None:
    """The group whose table the task is (tokens 0..|G|-1 = elements), or None."""
    if task.name == "perm_compose" and task.cfg.op == "compose":
        return symmetric_group(task.perms, task.table)
    if task.name == "modular" and task.cfg.op == "add":
        return cyclic_group(task.p)
    return None


class GroupGrid:
    """The decomposition maps of one group, as tensors: the basis, each irrep's columns, the product table."""

    def __init__(self, group: FiniteGroup) -> None:
        self.group = group
        q, owner = group.basis
        self.q = torch.from_numpy(q)  # [n, n] float64
        self.owner = torch.from_numpy(owner)
        self.n, self.r = group.order, len(group.irreps)
        self.sizes = np.array([rho.size for rho in group.irreps])
        self.product = torch.from_numpy(group.table.reshape(-1))  # [n * n] a b for the pair (a, b)

    def energy(self, x: Tensor) -> Tensor:
        """x [n, ...] as functions on G -> [r, ...] energy in each irrep's component."""
        coef = torch.einsum("gc,g...->c...", self.q, x.double())
        out = torch.zeros(self.r, *coef.shape[1:], dtype=torch.float64)
        return out.index_add_(0, self.owner, coef.pow(2))

    def product_average(self, L: Tensor) -> Tensor:
        """L [n, n, z] -> phi [n (g), z]: the mean over the pairs with a b = g (each g has n of them)."""
        flat = L.reshape(self.n * self.n, -1).double()
        return torch.zeros(self.n, flat.shape[1], dtype=torch.float64).index_add_(0, self.product, flat) / self.n

    def project(self, phi: Tensor, keep: list[int]) -> Tensor:
        """phi [n, z] projected onto the components of the irreps `keep`."""
        cols = torch.isin(self.owner, torch.tensor(keep, dtype=torch.long))
        qk = self.q[:, cols]
        return qk @ (qk.T @ phi)

    def neuron_shares(self, acts: Tensor) -> Tensor:
        """acts [n (a), n (b), m] -> [m, r] share of each irrep's block (column 0: outside every block)."""
        half = torch.einsum("ac,abm->cbm", self.q, acts.double())  # one operand at a time: no [n^4] outer product
        coef = torch.einsum("bd,cbm->cdm", self.q, half).pow(2)  # [n, n, m]
        E = torch.zeros(self.r, self.n, coef.shape[-1], dtype=torch.float64).index_add_(0, self.owner, coef)
        E = torch.zeros(self.r, self.r, coef.shape[-1], dtype=torch.float64).index_add_(1, self.owner, E)  # [r, r, m]
        total = E.sum(dim=(0, 1)) - E[0, 0]
        diag = torch.diagonal(E, dim1=0, dim2=1).T  # [r, m]
        block = diag + E[:, 0] + E[0, :]
        block[0] = 0.0
        ok = total > 1e-10 * (E.sum(dim=(0, 1)) + 1e-30)
        share = block / torch.where(ok, total, torch.ones_like(total))
        share[0] = 1.0 - share[1:].sum(0)
        return torch.where(ok, share, torch.zeros_like(share)).T


def _ce(logits: Tensor, labels: Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double(), labels))


class IrrepAnalysis:
    """Which irreducible representations of the group the network uses, over training."""

    name = "irreps"
    headline = ("key_irreps", "irrep_group", "neuron_irreps", "frac_neurons_single_irrep")

    @classmethod
    def applies_to(cls, run: Any) -> str | None:
        if run.config.model.name != "transformer":
            return f"the model is {run.config.model.name!r}, not a transformer"
        if group_of(run.task) is None:
            return "the task is not a group's multiplication table (perm_compose with op compose, or modular add)"
        return None

    @classmethod
    def default_for(cls, run: Any) -> bool:
        """Run unasked on perm_compose runs only: the Fourier analysis already covers modular ones."""
        return run.task.name == "perm_compose"

    def __init__(self, run: Any, steps: list[int], irrep_rule: IrrepRule | None = None) -> None:
        """irrep_rule: the key-irrep rule and the neuron threshold."""
        self.rule = irrep_rule or IrrepRule()
        self.rule.check()
        self.run, self.final_step = run, steps[-1]
        self.grid = GroupGrid(group_of(run.task))
        n = self.grid.n
        a, b = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
        self.tokens = torch.stack([a, b, torch.full_like(a, run.task.eq_token)], dim=1)
        self.labels = self.grid.product  # the answer of pair (a, b) is a b
        self.splits = {s: self._pair_index(run.task.batch(s).inputs) for s in ("train", "test")}
        self.has_mlp = not run.config.model.attn_only
        final = self._forward(run.params(self.final_step))
        self.keys, self.evidence = self._derive_keys(*final)

    def _pair_index(self, inputs: Tensor) -> Tensor:
        return inputs[:, 0] * self.grid.n + inputs[:, 1]

    def _forward(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
        """(logits [n, n, n], block-0 MLP activations [n, n, d_mlp] or None, W_E rows [n, d_model])."""
        model = make_model(self.run.config, self.run.task)  # one per call: measured from several threads
        model.load_state_dict(params)
        n = self.grid.n
        with torch.no_grad():
            logits, cache = model.run_with_cache(self.tokens, names_filter=lambda k: k == "blocks.0.mlp.hook_post")
        acts = cache["blocks.0.mlp.hook_post"][:, -1].reshape(n, n, -1) if self.has_mlp else None
        return logits[:, -1].reshape(n, n, -1), acts, params["embed.W_E"][:n]

    def _logit_shares(self, L: Tensor) -> Tensor:
        Lc = L.double() - L.double().mean(-1, keepdim=True)
        Lc = Lc - Lc.mean(dim=(0, 1), keepdim=True)
        phi = self.grid.product_average(Lc)
        total = Lc.pow(2).sum()
        return self.grid.energy(phi).sum(-1) * self.grid.n / torch.where(total > 0, total, torch.ones_like(total))

    def _derive_keys(self, L: Tensor, acts: Tensor | None, _: Tensor) -> tuple[list[int], dict]:
        n, names = self.grid.n, self.grid.group.names()
        shares = self._logit_shares(L).numpy()
        needed = self.rule.null_mult * self.grid.sizes / (n * n - 1)
        counts = self.final_counts = self._neuron_counts(acts) if acts is not None else None
        min_neurons = self.rule.neurons_needed(acts.shape[-1]) if acts is not None else 0
        keys = [i for i in range(1, self.grid.r) if shares[i] >= needed[i] and (counts is None or counts[i] >= min_neurons)]
        evidence = {"logit_share": {names[i]: float(shares[i]) for i in range(1, self.grid.r)},
                    "logit_share_needed": {names[i]: float(needed[i]) for i in range(1, self.grid.r)},
                    "neurons_needed": min_neurons,
                    "neurons_per_irrep": None if counts is None else {names[i]: int(counts[i]) for i in range(1, self.grid.r)}}
        return keys, evidence

    def _neuron_counts(self, acts: Tensor) -> np.ndarray:
        share = self.grid.neuron_shares(acts)[:, 1:]
        best = share.max(-1)
        owner = share.argmax(-1) + 1
        return np.bincount(owner[best.values >= self.rule.threshold].numpy(), minlength=self.grid.r)

    def measure(self, step: int, params: dict[str, Tensor]) -> dict[str, Any]:
        L, acts, W_E = self._forward(params)
        names, g = self.grid.group.names(), self.grid
        row: dict[str, Any] = {"step": step}
        e = g.energy(W_E).sum(-1)
        row.update({f"W_E_share.{names[i]}": float(e[i] / e.sum()) for i in range(g.r)})
        r = self._logit_shares(L)
        row.update({f"logit_share.{names[i]}": float(r[i]) for i in range(1, g.r)})
        flat = L.reshape(g.n * g.n, -1).double()
        removed = g.project(g.product_average(L), self.keys)[g.product] if self.keys else torch.zeros_like(flat)
        restricted = flat.mean(0, keepdim=True) + removed
        excluded = flat - removed
        tr, te = self.splits["train"], self.splits["test"]
        row["restricted_loss_train"] = _ce(restricted[tr], self.labels[tr])
        row["restricted_loss_test"] = _ce(restricted[te], self.labels[te]) if len(te) else float("nan")
        row["restricted_acc_test"] = float((restricted[te].argmax(-1) == self.labels[te]).double().mean()) if len(te) else float("nan")
        row["excluded_loss_train"] = _ce(excluded[tr], self.labels[tr])
        if acts is not None:
            share = g.neuron_shares(acts)[:, 1:]
            row["frac_neurons_single_irrep"] = float((share.max(-1).values >= self.rule.threshold).double().mean())
        row["sq_norm_total"] = float(sum(p.double().pow(2).sum() for p in params.values()))
        return row

    def finalize(self, records: list[dict[str, Any]]) -> AnalysisOutput:
        group, names, counts = self.grid.group, self.grid.group.names(), self.final_counts
        table = pd.DataFrame(records).astype({"step": "int64"})
        last = records[-1]
        summary = {
            "irrep_group": group.name,
            "irreps": [{"name": r.name, "label": r.label, "dim": r.dim, "size": r.size} for r in group.irreps],
            "key_irreps": [names[i] for i in self.keys],
            "frac_neurons_single_irrep": last.get("frac_neurons_single_irrep"),
            "neuron_irreps": None if counts is None else
            {**{names[i]: int(counts[i]) for i in range(1, self.grid.r) if counts[i]},
             "unclustered": int(self.run.config.model.d_mlp - counts[1:].sum())},
            "key_irrep_evidence": self.evidence,
            "irrep_final": {k: last[k] for k in ("restricted_loss_train", "restricted_loss_test", "restricted_acc_test",
                                           "excluded_loss_train")},
            "irrep_rule": asdict(self.rule),
        }
        return AnalysisOutput(summary, {"progress": table})
