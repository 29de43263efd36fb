"""The Fourier analysis of modular-arithmetic runs (Nanda et al. 2023), as a registered analysis.

Order of work: (1) `__init__` reads the final checkpoint, whose activations give the key
frequencies (`KeyRule`); (2) `measure` measures every checkpoint against that fixed set, so the
columns of progress.parquet are the same at every step; (3) `finalize` gathers the tables, the
final checkpoint's tensors and the summary. Formats: docs/analysis.md.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.formation import frequency_formation
from grokscope.analysis.modular.measures import (
    CheckpointAnalyzer,
    KeyRule,
    Measures,
    W_L_cluster_norms,
    logits_fourier_norm,
    neuron_assignment,
)
from grokscope.analysis.registry import AnalysisOutput
from grokscope.config import ConfigError

log = logging.getLogger(__name__)

FORMAT = "grokscope.analysis.fourier.v1"
FINAL_KEYS = ("train_loss", "test_loss", "train_acc", "test_acc", "restricted_loss_train", "restricted_loss_test",
              "restricted_acc_test", "excluded_loss_train", "gini_W_E", "gini_W_L", "attn_periodicity",
              "frac_neurons_single_frequency", "sq_norm_total")


class FourierAnalysis:
    """Key frequencies, neuron clusters, restricted / excluded loss, Gini, weight norms and circles."""

    name = "fourier"
    headline = None  # every summary key is a headline (docs/DESIGN.md's summary.json keys)

    @classmethod
    def applies_to(cls, run: Any) -> str | None:
        if getattr(run.task, "name", None) != "modular":
            return f"the task is {getattr(run.task, 'name', None)!r}, not modular arithmetic"
        if run.config.model.name not in ("transformer", "mlp"):
            return f"the model is {run.config.model.name!r}, not a transformer or an MLP"
        return None

    def __init__(self, run: Any, steps: list[int], key_rule: KeyRule | None = None, n_show: int = 8) -> None:
        """key_rule: the key-frequency rule (its threshold is the neuron single-frequency share);
        n_show: neurons whose activations the report shows (one per key frequency first)."""
        self.rule = key_rule or KeyRule()
        self.rule.check()
        if n_show < 0:
            raise ConfigError("n_show", f"must be an integer >= 0 (got {n_show})")
        self.run, self.n_show, self.final_step = run, n_show, steps[-1]
        self.an = CheckpointAnalyzer(run.config.model, run.task, self.rule)
        self.final_params = run.params(self.final_step)
        self.final_acts = self.an.forward(self.final_params)
        self.keys = self.an.derive_keys(self.final_acts)
        self.an.set_keys(self.keys.freqs)
        log.info("key frequencies %s (logit share >= %.4f, >= %d neurons)", self.keys.freqs, self.keys.share_needed,
                 self.keys.neurons_needed)

    def measure(self, step: int, params: dict[str, Tensor]) -> Measures:
        if step == self.final_step:  # measured in __init__ already
            return self.an.measure(step, self.final_params, self.final_acts)
        return self.an.measure(step, params)

    def finalize(self, records: list[Measures]) -> AnalysisOutput:
        an, keys, cfg = self.an, self.keys, self.run.config
        tok = np.arange(an.p)
        rows, emb_rows, circ_rows = [], [], []
        final_m = None
        for m in records:
            step = m.row["step"]
            rows.append(m.row)
            emb_rows.append(pd.DataFrame({"step": step, "freq": np.arange(m.embed_norms.size), "norm": m.embed_norms}))
            for k, xy in m.circles.items():
                circ_rows.append(pd.DataFrame({"step": step, "freq": k, "token": tok, "cos": xy[:, 0], "sin": xy[:, 1]}))
            if step == self.final_step:
                final_m = m
        emb = pd.concat(emb_rows, ignore_index=True).astype({"step": "int64", "freq": "int64", "norm": "float64"})
        circ = (pd.concat(circ_rows, ignore_index=True) if circ_rows
                else pd.DataFrame({"step": pd.Series(dtype="int64"), "freq": pd.Series(dtype="int64"),
                                   "token": pd.Series(dtype="int64"), "cos": pd.Series(dtype="float64"),
                                   "sin": pd.Series(dtype="float64")}))
        fit = an.logit_fit(self.final_acts.logits)
        tensors, meta, extra = self._final_tensors(fit)
        fr = final_m.row
        final = {k: fr[k] for k in FINAL_KEYS}
        final["excluded_loss_train_by_freq"] = {str(k): fr[f"excluded_loss_train_k{k}"] for k in keys.freqs}
        counts = keys.neuron_count
        clusters = {str(k): int(counts[k]) for k in range(1, counts.size) if counts[k] > 0}
        clusters["unclustered"] = int(counts[0]) if self.final_acts.neurons is not None else 0
        order = np.argsort(-keys.logit_share)[:10]
        formation = self._formation(records)
        summary = {
            "format": FORMAT,
            "task": dataclasses.asdict(cfg.task),
            "group": an.group.describe(),
            "key_frequencies": keys.freqs,
            "structure": "fourier" if keys.freqs else "none",
            "neuron_clusters": clusters,
            "frac_neurons_single_frequency": fr["frac_neurons_single_frequency"],
            "logit_fit_variance_explained": fit["variance_explained"] if keys.freqs else 0.0,
            "logit_fit": {"amplitudes": {str(k): v for k, v in fit["amplitudes"].items()}, "loss": fit["loss"],
                          "variance_explained": fit["variance_explained"] if keys.freqs else 0.0},
            "final": final,
            "key_frequency_evidence": {
                "rule": self.rule.to_dict(), "logit_share_needed": keys.share_needed, "neurons_needed": keys.neurons_needed,
                "top_logit_share": {str(int(k)): float(keys.logit_share[k]) for k in order if k > 0},
                "neurons_per_freq": {str(k): int(counts[k]) for k in range(1, counts.size) if counts[k] > 0},
            },
            "threshold": self.rule.threshold,
            "formation": formation,
            **extra,
        }
        tables = {"progress": pd.DataFrame(rows), "embed_fourier": emb, "circles": circ}
        return AnalysisOutput(summary, tables, tensors, meta)

    def _formation(self, records: list[Measures]) -> dict:
        """When each key frequency formed (grokscope.analysis.formation.frequency_formation)."""
        keys = self.keys.freqs
        steps = np.array([m.row["step"] for m in records])
        sq = np.stack([m.embed_norms ** 2 for m in records])  # [T, n_freqs + 1]
        share = sq[:, keys] / np.maximum(sq[:, 1:].sum(1, keepdims=True), 1e-300) if keys else np.zeros((len(steps), 0))
        contrib = np.array([[m.row[f"excluded_loss_train_k{k}"] - m.row["train_loss"] for k in keys] for m in records])
        at = frequency_formation(steps, share, contrib.reshape(len(steps), len(keys))) if keys else []
        return {"steps": {str(k): s for k, s in zip(keys, at)},
                "rule": "first checkpoint from which W_E's share and the excluded-loss contribution stay >= half their final values"}

    def _final_tensors(self, fit: dict) -> tuple[dict[str, Tensor], dict[str, str], dict]:
        an, keys, params, acts = self.an, self.keys, self.final_params, self.final_acts
        g = an.group
        t: dict[str, Tensor] = {}
        Lg = an.group_logits(acts.logits)
        t["logits_fourier_norm"] = logits_fourier_norm(g, Lg).float()
        t["group_tokens"] = torch.as_tensor(g.tokens, dtype=torch.int64)
        t["key_frequencies"] = torch.as_tensor(keys.freqs, dtype=torch.int64)
        t["logit_share"] = torch.as_tensor(keys.logit_share, dtype=torch.float32)
        t["embed_fourier_norm"] = torch.as_tensor(an.embed_norms(params), dtype=torch.float32)
        if acts.pattern is not None:
            t["attn_pattern"] = an.attn_to_x(acts.pattern).float().contiguous()
        t["logit_fit_amplitude"] = torch.as_tensor([fit["amplitudes"].get(k, 0.0) for k in keys.freqs], dtype=torch.float32)
        extra: dict = {}
        if acts.neurons is not None:
            share = an.neuron_shares(acts.neurons)
            assign = neuron_assignment(share, an.rule.threshold)
            t["neuron_freq_frac"] = torch.as_tensor(share, dtype=torch.float32)
            t["neuron_cluster"] = torch.as_tensor(assign, dtype=torch.int64)
            show: list[int] = [int(np.argmax(share[:, k])) for k in keys.freqs]
            for j in range(share.shape[0]):
                if len(show) >= max(self.n_show, len(keys.freqs)):
                    break
                if j not in show:
                    show.append(j)
            grid = an.neuron_grid(acts.neurons)
            t["neuron_acts_index"] = torch.as_tensor(show, dtype=torch.int64)
            t["neuron_acts"] = grid[torch.as_tensor(show)].float().contiguous()
            W_L = an.W_L(params)
        if acts.neurons is not None and W_L is not None:
            t["W_L_fourier_norm"] = torch.as_tensor(an.W_L_norms(W_L), dtype=torch.float32)
            labels, norms = W_L_cluster_norms(W_L, g, assign)
            t["W_L_cluster_freq"] = torch.as_tensor(labels, dtype=torch.int64)
            t["W_L_cluster_fourier_norm"] = torch.as_tensor(norms, dtype=torch.float32)
            own = {}
            for c, row in zip(labels, norms):
                if c > 0:
                    tot = float(np.sqrt((row[1:] ** 2).sum()))
                    own[str(int(c))] = float(row[c] ** 2 / tot**2) if tot > 0 else None
            extra["W_L_cluster_own_freq_share"] = own
        meta = {"format": FORMAT, "step": str(self.final_step), "p": str(an.p), "op": an.task.cfg.op, "group": g.kind,
                "group_n": str(g.n), "generator": str(g.generator)}
        return {k: v.contiguous() for k, v in t.items()}, meta, extra
