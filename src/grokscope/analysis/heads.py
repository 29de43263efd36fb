"""Attention-head scores over training: previous-token and induction scores (Olsson et al. 2022).

An induction circuit is a previous-token head feeding an induction head (seed 004's repeated-
subsequence task needs one). Per head (l, h) and checkpoint:

* previous-token score: the head's mean attention from each position i >= 1 to i - 1, over (at
  most `n_examples` of) the run's test inputs;
* induction score: on a probe of random tokens repeated twice, [r_1 .. r_L, r_1 .. r_L] with
  L = n_ctx // 2 and tokens drawn uniformly from the task's vocabulary (seeded), the mean attention
  from each position i of the second copy to i - L + 1, the token after the earlier copy of the
  current one. A perfect induction head scores 1; a head attending uniformly about 2 / n_ctx.

A head counts as a previous-token / induction head when its score at the final checkpoint is
>= `threshold` (0.5); `induction_step` is the first analysed checkpoint where some head's induction
score reaches it. Applies to transformers on tasks with n_ctx >= 8 (room for the pattern).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from grokscope.analysis.registry import AnalysisOutput
from grokscope.config import ConfigError
from grokscope.models import make_model

MIN_CTX = 8


def head_names(n_layers: int, n_heads: int) -> list[str]:
    return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]


def induction_probe(d_vocab: int, n_ctx: int, n: int, seed: int = 0) -> Tensor:
    """[n, 2L] random tokens repeated once, L = n_ctx // 2."""
    half = n_ctx // 2
    r = torch.randint(0, d_vocab, (n, half), generator=torch.Generator().manual_seed(seed))
    return torch.cat([r, r], dim=1)


def pattern_scores(patterns: list[Tensor], offset: int, first: int) -> np.ndarray:
    """Per layer's pattern [batch head q k]: the mean attention from query i (i >= first) to key i - offset,
    as [n_layers * n_heads] (layer-major)."""
    out = []
    for pat in patterns:
        q = torch.arange(first, pat.shape[-2])
        out.append(pat[:, :, q, q - offset].mean(dim=(0, 2)))
    return torch.cat(out).double().numpy()


class HeadScores:
    """Previous-token and induction scores of every attention head, over checkpoints."""

    name = "heads"
    headline = ("induction_heads", "previous_token_heads", "induction_step", "induction_score_max")

    @classmethod
    def applies_to(cls, run: Any) -> str | None:
        if run.config.model.name != "transformer":
            return f"the model is {run.config.model.name!r}, not a transformer"
        if run.task.n_ctx < MIN_CTX:
            return f"the task's context ({run.task.n_ctx} positions) is shorter than {MIN_CTX}"
        return None

    def __init__(self, run: Any, steps: list[int], threshold: float = 0.5, n_examples: int = 256) -> None:
        """threshold: the score that makes a head a previous-token / induction head; n_examples: inputs per score."""
        if not 0.0 < threshold <= 1.0:
            raise ConfigError("threshold", f"must be in (0, 1] (got {threshold})")
        if n_examples < 1:
            raise ConfigError("n_examples", f"must be an integer >= 1 (got {n_examples})")
        self.run, self.threshold = run, threshold
        m = run.config.model
        self.heads = head_names(m.n_layers, m.n_heads)
        self.test = run.task.batch("test").inputs[:n_examples]
        self.probe = induction_probe(run.task.d_vocab, run.task.n_ctx, n_examples)
        self.half = run.task.n_ctx // 2

    def _patterns(self, params: dict[str, Tensor], tokens: Tensor) -> list[Tensor]:
        model = make_model(self.run.config, self.run.task)  # one per call: checkpoints are measured from several threads
        model.load_state_dict(params)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        return [cache[f"blocks.{l}.attn.hook_pattern"] for l in range(len(model.blocks))]

    def measure(self, step: int, params: dict[str, Tensor]) -> dict[str, Any]:
        prev = pattern_scores(self._patterns(params, self.test), 1, 1)
        induction = pattern_scores(self._patterns(params, self.probe), self.half - 1, self.half)
        return {"step": step, **{f"prev_token_score.{h}": v for h, v in zip(self.heads, prev)},
                **{f"induction_score.{h}": v for h, v in zip(self.heads, induction)}}

    def finalize(self, records: list[dict[str, Any]]) -> AnalysisOutput:
        table = pd.DataFrame(records).astype({"step": "int64"})
        last = records[-1]
        ind = {h: last[f"induction_score.{h}"] for h in self.heads}
        prev = {h: last[f"prev_token_score.{h}"] for h in self.heads}
        best = table[[f"induction_score.{h}" for h in self.heads]].max(axis=1).to_numpy()
        hit = np.nonzero(best >= self.threshold)[0]
        top = max(ind, key=ind.get)
        summary = {
            "induction_heads": [h for h in self.heads if ind[h] >= self.threshold],
            "previous_token_heads": [h for h in self.heads if prev[h] >= self.threshold],
            "induction_step": int(table["step"].iloc[hit[0]]) if hit.size else None,
            "induction_score_max": {"head": top, "score": ind[top]},
            "previous_token_score_max": {"head": max(prev, key=prev.get), "score": max(prev.values())},
            "final_scores": {h: {"induction": ind[h], "previous_token": prev[h]} for h in self.heads},
            "threshold": self.threshold,
        }
        return AnalysisOutput(summary, {"progress": table})
