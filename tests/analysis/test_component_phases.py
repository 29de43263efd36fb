"""The per-component phase-change rule on planted curves: each component's loss sits on a plateau
and falls at a chosen step; the detector finds each step, and none in curves that never fall."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokscope.analysis.phases import component_changes, logged_components


def planted(falls: dict[str, int | None], steps: np.ndarray, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """log10 loss 0.36 (ln 10 / 10 classes) until `at`, a fall of 2.5 decades over ~60 steps, then flat
    at ~1e-3 with multiplicative noise (the regime where log loss jitters); None: never falls."""
    rng = np.random.default_rng(seed)
    cols = {"step": steps, "test_loss": np.full(len(steps), 1.0)}
    for name, at in falls.items():
        y = np.full(len(steps), 0.36) if at is None else 0.36 - 2.5 / (1 + np.exp(-(steps - at) / 12))
        cols[f"test_loss/{name}"] = 10 ** (y + noise * rng.standard_normal(len(steps)) * (y < -1))
    return pd.DataFrame(cols)


def test_each_planted_fall_is_found_at_its_step():
    steps = np.arange(0, 4001, 20)
    falls = {"a": 300, "b": 1500, "c": 3000}
    got = component_changes(planted(falls, steps), ["a", "b", "c"], None)
    for name, at in falls.items():
        assert abs(got[name].steepest - at) <= 20, (name, got[name])
        assert got[name].start < at < got[name].end


def test_noise_at_small_loss_does_not_move_the_change():
    """Log-loss jitter of 0.3 decades at loss 1e-3, where a log-rate rule would see steep falls."""
    steps = np.arange(0, 4001, 20)
    got = component_changes(planted({"a": 500}, steps, noise=0.3), ["a"], None)
    assert abs(got["a"].steepest - 500) <= 20


def test_flat_curves_and_small_dips_have_no_change():
    steps = np.arange(0, 2001, 20)
    df = planted({"flat": None}, steps)
    df["test_loss/dip"] = 10 ** (0.36 - 0.2 / (1 + np.exp(-(steps - 800) / 12)))  # 0.2 decades: below the 0.5 bar
    assert logged_components(df) == ["flat", "dip"]
    assert component_changes(df, ["flat", "dip"], None) == {"flat": None, "dip": None}


def test_the_search_starts_after_memorisation_when_asked():
    steps = np.arange(0, 4001, 20)
    df = planted({"a": 200}, steps)
    df["test_loss/a"] = np.where(steps < 1000, df["test_loss/a"], 10 ** (-2.14 - 1.0 / (1 + np.exp(-(steps - 2500) / 12))))
    got = component_changes(df, ["a"], after=1000)
    assert abs(got["a"].steepest - 2500) <= 20
