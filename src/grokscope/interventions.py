"""Interventions as config: each `interventions:` entry (grokscope.config) becomes a training callback.

    interventions:
      - {kind: lr_multiplier, at_step: 3000, factor: 0.1}
      - {kind: grokfast_ema, alpha: 0.98, lamb: 2.0}
      - {kind: grokfast_ma, window: 100, lamb: 5.0}
      - {kind: excluded_loss, coef: 1.0, every: 100}

Because they are config, they are written to config.json and rebuilt on resume; their state is
saved with the optimizer state (grokscope.callbacks). `INTERVENTIONS` maps a kind to its callback.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from grokscope.callbacks import Callback, TrainContext, TrainState
from grokscope.config import ExcludedLoss, GrokfastEMA, GrokfastMA, LrMultiplier
from grokscope.loss import log_probs, loss_dtype
from grokscope.tasks.cyclic import directions, excluded_logits, group_for, logit_shares

log = logging.getLogger(__name__)


class LrMultiplierCallback(Callback):
    """lr <- lr * factor from step `at_step` on (the warm-up schedule still applies underneath)."""

    def __init__(self, cfg: LrMultiplier, key: str) -> None:
        self.cfg = cfg  # stateless: lr depends on the step alone

    def on_step_start(self, state: TrainState) -> None:
        if state.step >= self.cfg.at_step:
            state.lr = state.lr * self.cfg.factor


class GrokfastEMACallback(Callback):
    """grad <- grad + lamb * ema with ema <- alpha ema + (1 - alpha) grad (Lee et al. 2024, Grokfast)."""

    def __init__(self, cfg: GrokfastEMA, key: str) -> None:
        self.cfg = cfg
        self.state_key = key
        self.ema: Tensor | None = None  # [member, n_params]; starts as the first filtered gradient

    def on_gradient(self, state: TrainState, grad: Tensor) -> Tensor | None:
        if state.step < self.cfg.from_step:
            return None
        if self.ema is None:
            self.ema = grad.detach().clone()
        else:
            self.ema.mul_(self.cfg.alpha).add_(grad, alpha=1 - self.cfg.alpha)
        return grad + self.cfg.lamb * self.ema

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.ema is None else {"ema": self.ema}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.ema = state["ema"].clone() if "ema" in state else None


class GrokfastMACallback(Callback):
    """grad <- grad + lamb * mean(the last `window` gradients, this one included) (Lee et al. 2024,
    Grokfast-MA); with `warmup` only once `window` gradients have been seen."""

    def __init__(self, cfg: GrokfastMA, key: str) -> None:
        self.cfg = cfg
        self.state_key = key
        self.window: Tensor | None = None  # [member, window, n_params], a ring buffer
        self.seen: Tensor | None = None  # [member] gradients pushed so far (the same for every member)

    def on_gradient(self, state: TrainState, grad: Tensor) -> Tensor | None:
        if state.step < self.cfg.from_step:
            return None
        if self.window is None:
            self.window = grad.new_zeros(grad.shape[0], self.cfg.window, grad.shape[1])
            self.seen = torch.zeros(grad.shape[0], dtype=torch.long, device=grad.device)
        n = int(self.seen[0])
        self.window[:, n % self.cfg.window] = grad.detach()
        self.seen += 1
        full = min(n + 1, self.cfg.window)
        if self.cfg.warmup and full < self.cfg.window:
            return None
        return grad + self.cfg.lamb * self.window[:, :full].mean(1)

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.window is None else {"window": self.window, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.window = state["window"].clone() if "window" in state else None
        self.seen = state["seen"].clone() if "seen" in state else None


class ExcludedLossCallback(Callback):
    """grad <- grad + d/dparams (coef * excluded loss) (grokscope.config.ExcludedLoss has the rule).

    Each step runs the model on the whole group grid (all n^2 pairs, inputs only: no test label is
    read), removes the key frequencies' directions from the logits of every output and takes the
    training loss of what is left on the training cells, in the run's loss (cross-entropy or
    StableMax) and loss dtype: the analysis' `excluded_loss_train`. Every member has its own keys.
    """

    def __init__(self, cfg: ExcludedLoss, key: str) -> None:
        self.cfg = cfg
        self.state_key = key
        self.keys: Tensor | None = None  # [member, n_freqs + 1] bool: frequencies found so far

    def bind(self, context: TrainContext) -> None:
        self.ctx = context
        task = context.tasks[0]
        self.group = group = group_for(task.cfg.op, task.p)
        n, p = group.n, task.p
        tok = torch.as_tensor(group.tokens)
        cells = (tok[:, None] * p + tok[None, :]).reshape(-1)  # group cell (a, b) -> grid index x * p + y
        inputs = torch.stack([cells // p, cells % p, torch.full_like(cells, p)], -1)  # [n^2, 3]: x y =
        self.inputs = inputs.expand(len(context.tasks), -1, -1).to(context.device)
        # per member: members may differ in their split (and, for op rand, in their table)
        self.labels = torch.stack([torch.as_tensor(t.labels_grid)[cells] for t in context.tasks]).clamp_min(0).to(context.device)
        self.train = torch.stack([torch.as_tensor(np.isin(cells.numpy(), t.train_idx)) for t in context.tasks]).to(context.device)
        self.dirs, freq_of_dir = directions(group, list(range(1, group.n_freqs + 1)))
        self.dirs = self.dirs.to(context.device, torch.float32)
        self.freq_of_dir = torch.as_tensor(freq_of_dir, device=context.device)
        self.ceiling = math.log(context.cfgs[0].task.shape().d_vocab_out)
        self.loss, self.dtype = context.cfgs[0].train.loss, loss_dtype(context.cfgs[0].train.loss_dtype)

    def _update_keys(self, step: int, Lg: Tensor) -> None:
        found = logit_shares(self.group, Lg) >= self.cfg.share_needed(self.group.n)  # [member, n_freqs + 1]
        found[:, 0] = False
        new = found if self.keys is None else self.keys | found
        if self.keys is None or bool((new != self.keys).any()):
            for i, row in enumerate(new):
                log.info("excluded_loss: step %d, member %d: key frequencies %s", step, i, row.nonzero()[:, 0].tolist())
        self.keys = new

    def excluded_loss(self, Lg: Tensor) -> Tensor:
        """[member] training loss of the excluded logits (0 for a member without keys) from Lg [member n n z]."""
        out = []
        for i, keys in enumerate(self.keys):
            if not bool(keys.any()):
                out.append(Lg.new_zeros((), dtype=self.dtype))
                continue
            X = excluded_logits(Lg[i], self.dirs[keys[self.freq_of_dir]]).flatten(0, 1)[self.train[i]]
            picked = log_probs(X.to(self.dtype), self.loss).gather(-1, self.labels[i, self.train[i], None])
            out.append(-picked.mean())
        return torch.stack(out)

    def _has_keys(self) -> bool:
        return self.keys is not None and bool(self.keys.any())

    def on_gradient(self, state: TrainState, grad: Tensor) -> Tensor | None:
        if state.step < self.cfg.from_step:
            return None
        derive = self.cfg.derives_keys_at(state.step)
        if not derive and not self._has_keys():  # nothing to remove and nothing to find: no grid forward
            return None
        n = self.group.n
        logits = self.ctx.logits(self.ctx.views(), self.inputs)[:, :, -1]  # [member, n^2, z]
        Lg = logits.unflatten(1, (n, n))
        if derive:
            self._update_keys(state.step, Lg.detach())
        if not self._has_keys():
            return None
        excluded = self.excluded_loss(Lg)
        term = excluded if self.cfg.coef > 0 else excluded.clamp(max=self.ceiling)  # ascent stops at chance
        (extra,) = torch.autograd.grad((self.cfg.coef * term).sum(), self.ctx.flat)
        return grad + extra.to(grad.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.keys is None else {"keys": self.keys}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.keys = state["keys"].clone() if "keys" in state else None


# kind -> callback class, built as cls(entry, state_key)
INTERVENTIONS: dict[str, type] = {"lr_multiplier": LrMultiplierCallback, "grokfast_ema": GrokfastEMACallback,
                                  "grokfast_ma": GrokfastMACallback, "excluded_loss": ExcludedLossCallback}


def build_interventions(entries: Sequence[Any]) -> list[Callback]:
    """The callbacks for a config's `interventions` entries, in order; entry i's state key is `interventions.i.<kind>`."""
    return [INTERVENTIONS[e.kind](e, f"interventions.{i}.{e.kind}") for i, e in enumerate(entries)]
