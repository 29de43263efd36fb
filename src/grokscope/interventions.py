"""Interventions as config: each `interventions:` entry (grokscope.config) becomes a training callback.

    interventions:
      - {kind: lr_multiplier, at_step: 3000, factor: 0.1}
      - {kind: grokfast_ema, alpha: 0.98, lamb: 2.0}
      - {kind: grokfast_ma, window: 100, lamb: 5.0}

Because they are config, they are written to config.json and rebuilt on resume; their state is
saved with the optimizer state (grokscope.callbacks). `INTERVENTIONS` maps a kind to its callback.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from grokscope.callbacks import Callback, TrainState
from grokscope.config import GrokfastEMA, GrokfastMA, LrMultiplier


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


# kind -> callback class, built as cls(entry, state_key)
INTERVENTIONS: dict[str, type] = {"lr_multiplier": LrMultiplierCallback, "grokfast_ema": GrokfastEMACallback,
                                  "grokfast_ma": GrokfastMACallback}


def build_interventions(entries: Sequence[Any]) -> list[Callback]:
    """The callbacks for a config's `interventions` entries, in order; entry i's state key is `interventions.i.<kind>`."""
    return [INTERVENTIONS[e.kind](e, f"interventions.{i}.{e.kind}") for i, e in enumerate(entries)]
