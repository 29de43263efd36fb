"""Training phases from the logged curves (memorisation, circuit formation, clean-up) and the grokking step.

Rule (all steps are logged steps; inputs are the metrics columns step, train_acc, test_loss, test_acc):

* grokking_step         = first step with test_acc >= acc_level (0.99).
* memorization_end      = first step with train_acc >= acc_level (the training set is memorised).
* The grokking drop. Let y(t) = log10(test_loss(t)), resampled linearly onto n_grid (200) evenly
  spaced steps between the first and last logged step and smoothed by a running median of
  `smooth` (5) grid points; r(t) = -dy/dt (decades of test loss lost per step). Let t* be the step
  of the largest r at or after memorization_end, r* = r(t*). The drop is the maximal contiguous
  interval of grid steps around t* where r(t) >= rate_frac * r* (rate_frac = 0.1).
  circuit_formation_end = the first logged step >= the interval's start;
  cleanup_end           = the first logged step >= the interval's end.
  No drop (r* <= 0, or y falls by less than min_drop_decades = 0.5 over the interval, or the test
  loss never falls after memorisation) -> both are None: the run has not grokked (yet). A drop
  still under way at the last logged step -> cleanup_end is None (clean-up not finished).

So memorisation = [0, memorization_end], circuit formation = (memorization_end,
circuit_formation_end] (train loss flat, test loss high while the Fourier circuit grows, seen in the
excluded loss), clean-up = (circuit_formation_end, cleanup_end] (test loss collapses, weight norm
falls). On the canonical run the paper reports ~1.4k / ~9.4k / ~13k epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PhaseRule:
    acc_level: float = 0.99
    n_grid: int = 200
    smooth: int = 5
    rate_frac: float = 0.1
    min_drop_decades: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Phases:
    grokking_step: int | None
    memorization_end: int | None
    circuit_formation_end: int | None
    cleanup_end: int | None

    def boundaries(self) -> dict:
        return {"memorization_end": self.memorization_end, "circuit_formation_end": self.circuit_formation_end,
                "cleanup_end": self.cleanup_end}


def first_step_at_least(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(np.asarray(values, dtype=np.float64) >= level)[0]
    return int(steps[hit[0]]) if hit.size else None


def grokking_step(metrics: pd.DataFrame, level: float = 0.99) -> int | None:
    """The grokking rule: the first logged step with test_acc >= level (None: not reached)."""
    if metrics is None or "test_acc" not in metrics or "step" not in metrics:
        return None
    df = metrics.dropna(subset=["step"]).sort_values("step")
    return first_step_at_least(df["step"].to_numpy(dtype=np.int64), df["test_acc"].to_numpy(), level)


def _running_median(y: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or y.size < w:
        return y
    pad = w // 2
    yp = np.pad(y, pad, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(yp, w)
    return np.median(win, axis=-1)[: y.size]


def detect_phases(metrics: pd.DataFrame, rule: PhaseRule = PhaseRule()) -> Phases:
    """Phases of one run from its logged curves (see the module docstring for the rule)."""
    df = metrics.dropna(subset=["step"]).sort_values("step")
    steps = df["step"].to_numpy(dtype=np.int64)
    if steps.size == 0:
        return Phases(None, None, None, None)
    grok = grokking_step(df, rule.acc_level)
    mem = first_step_at_least(steps, df["train_acc"].to_numpy(), rule.acc_level) if "train_acc" in df else None
    cf, cu = _drop_interval(df, steps, mem, rule)
    return Phases(grok, mem, cf, cu)


def _drop_interval(df: pd.DataFrame, steps: np.ndarray, mem: int | None, rule: PhaseRule) -> tuple[int | None, int | None]:
    if "test_loss" not in df or steps.size < 3 or steps[-1] <= steps[0]:
        return None, None
    loss = df["test_loss"].to_numpy(dtype=np.float64)
    ok = np.isfinite(loss) & (loss > 0)
    if ok.sum() < 3:
        return None, None
    s, y = steps[ok].astype(np.float64), np.log10(loss[ok])
    grid = np.linspace(s[0], s[-1], rule.n_grid)
    yg = _running_median(np.interp(grid, s, y), rule.smooth)
    rate = -np.gradient(yg, grid)
    start = mem if mem is not None else s[0]
    eligible = grid >= start
    if not eligible.any():
        return None, None
    idx = np.nonzero(eligible)[0]
    i_star = idx[np.argmax(rate[idx])]
    r_star = rate[i_star]
    if not (r_star > 0):
        return None, None

    def snap(t: float) -> int:  # the first logged step at or after grid step t
        j = int(np.searchsorted(steps, t - 1e-9))
        return int(steps[min(j, steps.size - 1)])

    above = rate >= rule.rate_frac * r_star
    lo = i_star
    while lo > idx[0] and above[lo - 1]:
        lo -= 1
    hi = i_star
    while hi < rule.n_grid - 1 and above[hi + 1]:
        hi += 1
    if yg[lo] - yg[hi] < rule.min_drop_decades:
        return None, None
    if hi == rule.n_grid - 1:  # still falling at the last logged step: clean-up has not ended yet
        return snap(grid[lo]), None
    return snap(grid[lo]), snap(grid[hi])
