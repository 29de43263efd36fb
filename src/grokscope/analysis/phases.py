"""Training phases as seed 004 describes them, from the logged curves and the progress measures,
and the grokking step defined several ways.

Seed 004's stages of the canonical run, and the rule for each boundary (all on a uniform grid of
`n_grid` steps between the first and last logged step, curves in log10 and smoothed by a running
median of `smooth` grid points; a curve's fall rate r(t) = -dy/dt):

* Memorisation, "a dramatic drop in train loss" (epochs 0-1k), ends when "train loss abruptly
  levels out": memorization_end = the first step after the steepest fall of log train loss where
  its fall rate is below plateau_frac (0.05) x that steepest rate.
* Circuit formation / interpolation, "train loss mostly plateaus ... smooth divergence of excluded
  loss from train loss" (1k-9k), runs until the generalising circuit's phase change starts:
  circuit_formation_end = the start of the restricted-loss phase change.
* Generalisation, "a phase change in trig [restricted] loss" (8k-12k): generalization_end = its end.
* Clean-up, "a slightly delayed phase change in test loss ... the rapid removal of the memorisation
  circuit" by weight decay (9k-13k), ends when the test loss and the weight norm stop falling:
  cleanup_end = the later of the test-loss phase change's end and the step where the weight norm
  levels out (the plateau rule on log sq_norm_total after its steepest fall past circuit_formation_end).

A phase change of a curve (restricted loss, test loss), searched from memorization_end on: the
maximal stretch of grid steps around its steepest fall where it falls at >= rate_frac (0.1) x the
steepest rate, and by at least min_drop_decades (0.5) over it; none -> None (not grokked, yet).
A change still under way at the last step has no end (None). The restricted loss is the test one
where measured, else the train one; a run without restricted loss (a task without the Fourier
analysis) uses the test-loss phase change in its place. Boundaries snap to the first logged step at
or after them, so the phases come out in order: memorisation <= circuit formation <= generalisation
<= clean-up.

Per-component phase changes (tasks whose loss splits into components: output digits, skip
trigrams, ops), from each component's logged test loss (`test_loss/<component>`): of the maximal
stretches where the loss falls at >= rate_frac x its steepest rate, the one over which it falls
most (in decades, at least min_drop_decades); its step is the steepest point inside it, and a
component whose loss never falls that far in one stretch has none (None). Two differences from
the rule above, both seen on
5-digit addition with infinite data: the rate is that of the loss itself, not its log (once a
digit is learnt its loss is ~1e-3, where noise moves the log faster than the phase change did),
and the biggest fall rather than the steepest one wins (every digit's loss first dips in the
first 20 steps, as the model learns the digits' frequencies, and that dip is the steepest).
Searched from memorization_end on, as the test loss is, or from the first step with infinite data,
where train and test are one distribution and there is no memorisation to wait for.
`component_changes` returns one Change (or None) per component.

Kept as well, under their own names: train_acc_99_step (the first step with train accuracy >=
acc_level, which older versions called memorization_end) and the grokking step (first test accuracy
>= acc_level). grokking_times gives first and sustained crossings of test accuracy 0.5 / 0.9 / 0.99;
sustained = at or above the level at every logged step from there for sustain_steps (500) steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

GROK_LEVELS = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class PhaseRule:
    acc_level: float = 0.99
    n_grid: int = 200
    smooth: int = 5
    rate_frac: float = 0.1
    min_drop_decades: float = 0.5
    plateau_frac: float = 0.05
    sustain_steps: int = 500

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Change:
    """One phase change of a curve: where its fall starts, is steepest, and ends (None: still falling)."""

    start: int
    steepest: int
    end: int | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Phases:
    grokking_step: int | None
    memorization_end: int | None
    circuit_formation_end: int | None
    generalization_end: int | None
    cleanup_end: int | None
    train_acc_99_step: int | None = None
    changes: dict[str, Change] = field(default_factory=dict)  # restricted_loss, test_loss: the phase changes found

    def boundaries(self) -> dict:
        return {"memorization_end": self.memorization_end, "circuit_formation_end": self.circuit_formation_end,
                "generalization_end": self.generalization_end, "cleanup_end": self.cleanup_end}


def first_step_at_least(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(np.asarray(values, dtype=np.float64) >= level)[0]
    return int(steps[hit[0]]) if hit.size else None


def _sorted(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.dropna(subset=["step"]).sort_values("step")


def grokking_step(metrics: pd.DataFrame, level: float = 0.99) -> int | None:
    """The grokking rule: the first logged step with test_acc >= level (None: not reached)."""
    if metrics is None or "test_acc" not in metrics or "step" not in metrics:
        return None
    df = _sorted(metrics)
    return first_step_at_least(df["step"].to_numpy(dtype=np.int64), df["test_acc"].to_numpy(), level)


def grokking_times(metrics: pd.DataFrame, rule: PhaseRule = PhaseRule()) -> dict[str, dict[str, int | None]]:
    """{"0.5": {"first": step, "sustained": step}, "0.9": ..., "0.99": ...} over the logged test accuracy.
    sustained: at or above the level at every logged step of [s, s + sustain_steps], which must lie in the run."""
    df = _sorted(metrics) if metrics is not None and "test_acc" in metrics else None
    if df is None or not len(df):
        return {str(level): {"first": None, "sustained": None} for level in GROK_LEVELS}
    steps, acc = df["step"].to_numpy(dtype=np.int64), df["test_acc"].to_numpy(dtype=np.float64)
    n = len(acc)
    out: dict[str, dict[str, int | None]] = {}
    for level in GROK_LEVELS:
        above = acc >= level
        below_from = np.full(n + 1, n)  # below_from[i]: the first index >= i below the level (n: none)
        for i in range(n - 1, -1, -1):
            below_from[i] = below_from[i + 1] if above[i] else i
        held = [i for i in np.nonzero(above)[0] if steps[i] + rule.sustain_steps <= steps[-1]
                and (below_from[i] == n or steps[below_from[i]] > steps[i] + rule.sustain_steps)]
        out[str(level)] = {"first": first_step_at_least(steps, acc, level), "sustained": int(steps[held[0]]) if held else None}
    return out


def _running_median(y: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or y.size < w:
        return y
    pad = w // 2
    yp = np.pad(y, pad, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(yp, w)
    return np.median(win, axis=-1)[: y.size]


class _Curve:
    """log10 of one positive curve on the uniform grid, smoothed, with its fall rate (built by `_curve`,
    which keeps only curves with >= 3 usable points)."""

    def __init__(self, steps: np.ndarray, values: np.ndarray, logged: np.ndarray, rule: PhaseRule, log: bool = True) -> None:
        ok = np.isfinite(values) & (values > 0)
        self.ok = int(ok.sum()) >= 3 and logged[-1] > logged[0]
        self.logged = logged
        if not self.ok:
            return
        s, y = steps[ok].astype(np.float64), np.log10(values[ok])
        self.grid = np.linspace(logged[0], logged[-1], rule.n_grid)
        inside = (self.grid >= s[0]) & (self.grid <= s[-1])
        self.ylog = _running_median(np.interp(self.grid, s, y), rule.smooth)  # drops are measured in decades
        # the fall rate of log10(curve), or (log=False) of the curve itself
        self.y = self.ylog if log else _running_median(np.interp(self.grid, s, values[ok]), rule.smooth)
        self.rate = np.where(inside, -np.gradient(self.y, self.grid), 0.0)

    def snap(self, i: int) -> int:
        """The first logged step at or after grid point i."""
        j = int(np.searchsorted(self.logged, self.grid[i] - 1e-9))
        return int(self.logged[min(j, self.logged.size - 1)])

    def _steepest(self, after: float | None) -> tuple[int, int] | None:
        """(first grid index searched, index of the steepest fall) from `after` on; None if the curve never falls."""
        idx = np.nonzero(self.grid >= (after if after is not None else self.grid[0]))[0]
        if idx.size == 0:
            return None
        i_star = int(idx[np.argmax(self.rate[idx])])
        return (int(idx[0]), i_star) if self.rate[i_star] > 0 else None

    def level_off(self, after: float | None, frac: float) -> int | None:
        """The first step past the steepest fall (from `after` on) where the fall rate is below frac x the steepest."""
        found = self._steepest(after)
        if found is None:
            return None
        i_star = found[1]
        later = np.nonzero(self.rate[i_star:] < frac * self.rate[i_star])[0]
        return self.snap(i_star + int(later[0])) if later.size else None

    def _stretch(self, i: int, first: int, rule: PhaseRule) -> tuple[int, int]:
        """The maximal run of grid points from `first` on around i falling at >= rate_frac x the rate at i."""
        above = self.rate >= rule.rate_frac * self.rate[i]
        lo = hi = i
        while lo > first and above[lo - 1]:
            lo -= 1
        while hi < rule.n_grid - 1 and above[hi + 1]:
            hi += 1
        return lo, hi

    def _as_change(self, lo: int, i: int, hi: int, rule: PhaseRule) -> Change:
        end = None if hi == rule.n_grid - 1 else self.snap(hi)  # still falling at the last step: no end yet
        return Change(self.snap(lo), self.snap(i), end)

    def change(self, after: float | None, rule: PhaseRule) -> Change | None:
        """The phase change (module docstring) from `after` on, or None."""
        found = self._steepest(after)
        if found is None:
            return None
        first, i_star = found
        lo, hi = self._stretch(i_star, first, rule)
        if self.ylog[lo] - self.ylog[hi] < rule.min_drop_decades:
            return None
        return self._as_change(lo, i_star, hi, rule)

    def biggest_change(self, after: float | None, rule: PhaseRule) -> Change | None:
        """Of the maximal stretches (from `after` on) where the curve falls at >= rate_frac x its steepest
        rate, the one it falls most over, in decades (>= min_drop_decades); None if none does."""
        found = self._steepest(after)
        if found is None:
            return None
        first, i_star = found
        fast = np.zeros(rule.n_grid, dtype=bool)
        fast[first:] = self.rate[first:] >= rule.rate_frac * self.rate[i_star]
        edges = np.diff(np.concatenate([[0], fast.astype(np.int8), [0]]))
        best, best_drop = None, rule.min_drop_decades
        for lo, stop in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
            hi = int(stop) - 1
            drop = self.ylog[lo] - self.ylog[hi]
            if drop >= best_drop:
                best, best_drop = (int(lo), int(lo + np.argmax(self.rate[lo : hi + 1])), hi), drop
        return None if best is None else self._as_change(*best, rule)


def _curve(df: pd.DataFrame | None, column: str, logged: np.ndarray, rule: PhaseRule, log: bool = True) -> _Curve | None:
    if df is None or column not in df or not len(df):
        return None
    d = _sorted(df)
    c = _Curve(d["step"].to_numpy(dtype=np.int64), d[column].to_numpy(dtype=np.float64), logged, rule, log)
    return c if c.ok else None


def detect_phases(metrics: pd.DataFrame, progress: pd.DataFrame | None = None, rule: PhaseRule = PhaseRule()) -> Phases:
    """Phases of one run (module docstring): `metrics` for the loss and accuracy curves (dense),
    `progress` (one row per checkpoint) for the restricted loss and the weight norm where measured."""
    df = _sorted(metrics)
    logged = df["step"].to_numpy(dtype=np.int64)
    if logged.size == 0:
        return Phases(None, None, None, None, None)
    grok = grokking_step(df, rule.acc_level)
    acc99 = first_step_at_least(logged, df["train_acc"].to_numpy(), rule.acc_level) if "train_acc" in df else None
    train = _curve(df, "train_loss", logged, rule)
    mem = train.level_off(None, rule.plateau_frac) if train else None
    changes: dict[str, Change] = {}
    test = _curve(df, "test_loss", logged, rule)
    tl = test.change(mem, rule) if test else None
    if tl:
        changes["test_loss"] = tl
    restricted = next((c for c in (_curve(progress, k, logged, rule) for k in ("restricted_loss_test", "restricted_loss_train"))
                       if c is not None), None)
    rl = restricted.change(mem, rule) if restricted else None
    if rl:
        changes["restricted_loss"] = rl
    gen = rl if restricted is not None else tl  # no restricted loss measured: the test loss stands in
    cf, ge = (gen.start, gen.end) if gen else (None, None)
    cleanup = None
    if tl is not None and tl.end is not None and ge is not None:
        norm = _curve(progress, "sq_norm_total", logged, rule)
        settled = norm.level_off(cf, rule.plateau_frac) if norm else tl.end
        cleanup = max(tl.end, ge, settled) if settled is not None else None
    return Phases(grok, mem, cf, ge, cleanup, acc99, changes)


def component_changes(metrics: pd.DataFrame, components: list[str], after: int | None,
                      rule: PhaseRule = PhaseRule()) -> dict[str, Change | None]:
    """The phase change of each component's test loss (`test_loss/<name>`) from step `after` on (module docstring)."""
    df = _sorted(metrics)
    logged = df["step"].to_numpy(dtype=np.int64)
    out: dict[str, Change | None] = {}
    for name in components:
        curve = _curve(df, f"test_loss/{name}", logged, rule, log=False) if logged.size else None
        out[name] = curve.biggest_change(after, rule) if curve else None
    return out


def logged_components(metrics: pd.DataFrame | None) -> list[str]:
    """The components whose losses the metrics hold (columns test_loss/<name>), in column order."""
    if metrics is None:
        return []
    return [c.split("/", 1)[1] for c in metrics.columns if isinstance(c, str) and c.startswith("test_loss/")]
