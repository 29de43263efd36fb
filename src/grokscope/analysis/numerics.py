"""Numerics over training: loss spikes and softmax collapse (seed 004; Prieto et al. 2025).

Seed 004 traces the "slingshot" loss spikes to float32 cross-entropy; Prieto et al. call the cause
softmax collapse: once the correct logit leads the others by enough, the correct class's
probability rounds to exactly 1, its loss to exactly 0, and that example stops pulling on the
correct logit. Two measures, each with a fixed rule:

* **loss spikes** (from metrics.parquet, any run): a spike starts at a logged step whose train loss
  exceeds `spike_factor` (10) times the minimum of the previous `spike_window` (5) logged values,
  and lasts while the loss stays above that factor times the same minimum (frozen at its start).
  Each spike records its start, peak and end step and its height (peak / minimum). A smooth curve,
  however fast it falls or how noisy within a factor of 10, has none.
* **softmax collapse** (per checkpoint): the share of training targets whose correct-class
  probability rounds to exactly 1 (loss exactly 0) in float32, in float64, and in the run's own
  train.loss_dtype and train.loss (StableMax's linear tail postpones collapse by many orders of
  magnitude of logit gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.registry import AnalysisOutput
from grokscope.config import ConfigError
from grokscope.engine.generic import GenericEngine
from grokscope.loss import log_probs, loss_dtype
from grokscope.models import make_model


def check_spike_rule(factor: float, window: int) -> None:
    if factor <= 1:
        raise ConfigError("spike_factor", f"must be a number > 1 (got {factor})")
    if window < 1:
        raise ConfigError("spike_window", f"must be an integer >= 1 (got {window})")


def detect_spikes(steps: Any, loss: Any, factor: float = 10.0, window: int = 5) -> list[dict[str, Any]]:
    """The loss spikes of a curve by the module docstring's rule: [{start, peak, end, height}, ...]
    (end: the last step above the threshold; None while the curve never came back down)."""
    check_spike_rule(factor, window)
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=float)
    ok = np.isfinite(loss)
    steps, loss = steps[ok], loss[ok]
    spikes: list[dict[str, Any]] = []
    i = 1
    while i < len(loss):
        base = loss[max(0, i - window):i].min()
        if loss[i] > factor * base:
            j = i
            while j + 1 < len(loss) and loss[j + 1] > factor * base:
                j += 1
            peak = i + int(np.argmax(loss[i:j + 1]))
            ended = j + 1 < len(loss)
            spikes.append({"start": int(steps[i]), "peak": int(steps[peak]), "end": int(steps[j]) if ended else None,
                           "height": float(loss[peak] / base) if base > 0 else float("inf")})
            i = j + 1
        else:
            i += 1
    return spikes


def collapsed_share(logits: Tensor, labels: Tensor, valid: Tensor, dtype: torch.dtype, loss: str = "cross_entropy") -> float:
    """The share of valid targets whose correct-class probability is exactly 1 in `dtype`."""
    lp = log_probs(logits.to(dtype), loss).gather(-1, labels[..., None])[..., 0]
    return float(((lp == 0) & valid).sum()) / max(int(valid.sum()), 1)


class Numerics:
    """Loss spikes of the logged train loss, and softmax collapse at every analysed checkpoint."""

    name = "numerics"
    headline = ("loss_spikes", "softmax_collapse_final")

    @classmethod
    def applies_to(cls, run: Any) -> str | None:
        return None  # every run has a training loss and training examples

    def __init__(self, run: Any, steps: list[int], spike_factor: float = 10.0, spike_window: int = 5,
                 max_examples: int = 4096) -> None:
        """spike_factor, spike_window: the spike rule; max_examples: training examples per collapse measure."""
        if max_examples < 1:
            raise ConfigError("max_examples", f"must be an integer >= 1 (got {max_examples})")
        self.run = run
        self.spike_factor, self.spike_window = spike_factor, spike_window
        check_spike_rule(spike_factor, spike_window)  # before any checkpoint is measured
        batch = run.task.batch("train")
        keep = batch.mask.nonzero()[:, 0][:max_examples]
        self.inputs, targets = batch.inputs[keep], batch.targets[keep]
        self.valid = targets >= 0  # [B, n_target]
        self.labels = targets.clamp_min(0)
        tc = run.config.train
        self.own = (loss_dtype(tc.loss_dtype), tc.loss)

    def measure(self, step: int, params: dict[str, Tensor]) -> dict[str, Any]:
        engine = GenericEngine(self.run.config.model, self.run.task, make_model(self.run.config, self.run.task))
        with torch.no_grad():
            logits = engine.logits({k: v[None] for k, v in params.items()}, self.inputs[None])[0]  # [B n_target V]
        return {"step": step,
                "softmax_collapse_float32": collapsed_share(logits, self.labels, self.valid, torch.float32),
                "softmax_collapse_float64": collapsed_share(logits, self.labels, self.valid, torch.float64),
                "softmax_collapse": collapsed_share(logits, self.labels, self.valid, *self.own)}

    def finalize(self, records: list[dict[str, Any]]) -> AnalysisOutput:
        table = pd.DataFrame(records).astype({"step": "int64"})
        m = self.run.metrics
        spikes = [] if m is None or "train_loss" not in m else detect_spikes(m["step"], m["train_loss"], self.spike_factor,
                                                                            self.spike_window)
        dtype, loss = self.own
        summary = {
            "loss_spikes": len(spikes), "spikes": spikes,
            "spike_rule": {"factor": self.spike_factor, "window": self.spike_window, "series": "train_loss"},
            "softmax_collapse_final": float(table["softmax_collapse"].iloc[-1]),
            "softmax_collapse_max": float(table["softmax_collapse"].max()),
            "collapse_in": {"dtype": str(dtype).removeprefix("torch."), "loss": loss},
            "n_examples": int(len(self.inputs)),
        }
        return AnalysisOutput(summary, {"progress": table})
