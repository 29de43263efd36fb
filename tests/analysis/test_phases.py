"""The phase rule (grokscope.analysis.phases) on planted curves whose boundaries are known by construction."""

import numpy as np
import pandas as pd
import pytest

from grokscope.analysis.phases import PhaseRule, detect_phases, grokking_times

TOTAL = 40000
GRID = TOTAL / (PhaseRule().n_grid - 1)  # the rule's resolution: boundaries are exact to a few grid steps
TOL = 3 * GRID


def _piecewise(step, points):
    """log10 values linear between (step, value) points, flat outside them."""
    xs, ys = zip(*points)
    return np.interp(step, xs, ys)


def planted(mem=1400, r=(6000, 10000), t=(8000, 12000), norm_end=14000, grok=True, restricted=True, noise=0.02):
    """Metrics (every 10 steps) and progress (every 100) shaped like seed 004's canonical run:
    train loss falls 6 decades until `mem`, then sits flat; the restricted loss falls 4 decades over `r`;
    the test loss rises during memorisation and falls 6 decades over `t`; the weight norm rises during
    memorisation, drifts down, falls faster during clean-up and is flat from `norm_end`."""
    rng = np.random.default_rng(0)
    step = np.arange(0, TOTAL + 1, 10)
    train = _piecewise(step, [(0, 0.7), (mem, -5.5), (TOTAL, -5.6)])
    test = _piecewise(step, [(0, 0.7), (mem, 1.3), (t[0], 1.2), (t[1], -4.8), (TOTAL, -5.0)] if grok
                      else [(0, 0.7), (mem, 1.3), (TOTAL, 1.2)])
    m = pd.DataFrame({"step": step, "train_loss": 10 ** (train + noise * rng.standard_normal(step.shape)),
                      "test_loss": 10 ** (test + noise * rng.standard_normal(step.shape)),
                      "train_acc": np.where(step >= 140, 1.0, step / 140), "test_acc": np.where(10 ** test < 0.01, 1.0, 0.1)})
    ps = np.arange(0, TOTAL + 1, 100)
    cols = {"step": ps, "sq_norm_total": 10 ** _piecewise(ps, [(0, 3.2), (mem, 3.4), (t[0], 3.3), (norm_end, 2.6), (TOTAL, 2.6)])}
    if restricted:
        rl = [(0, 0.5), (r[0], 0.4), (r[1], -3.6), (TOTAL, -3.7)] if grok else [(0, 0.5), (TOTAL, 0.4)]
        cols["restricted_loss_test"] = 10 ** (_piecewise(ps, rl) + noise * rng.standard_normal(ps.shape))
    return m, pd.DataFrame(cols)


def test_planted_phases_are_recovered_in_order():
    m, p = planted()
    ph = detect_phases(m, p)
    assert abs(ph.memorization_end - 1400) <= TOL
    assert abs(ph.circuit_formation_end - 6000) <= TOL and abs(ph.generalization_end - 10000) <= TOL
    assert abs(ph.cleanup_end - 14000) <= TOL  # the weight norm settles after the test loss (12000)
    assert ph.memorization_end < ph.circuit_formation_end < ph.generalization_end < ph.cleanup_end
    assert abs(ph.changes["test_loss"].start - 8000) <= TOL and abs(ph.changes["test_loss"].end - 12000) <= TOL
    assert ph.changes["restricted_loss"].steepest < ph.changes["test_loss"].steepest
    assert ph.train_acc_99_step == 140 and ph.grokking_step is not None


def test_the_test_loss_ends_clean_up_when_the_weight_norm_settles_first():
    ph = detect_phases(*planted(norm_end=9000))
    assert abs(ph.cleanup_end - 12000) <= TOL


def test_memorisation_ends_where_the_train_loss_levels_out_not_at_99_percent_accuracy():
    for mem in (700, 2500):
        ph = detect_phases(*planted(mem=mem))
        assert abs(ph.memorization_end - mem) <= TOL and ph.train_acc_99_step == 140


def test_no_grokking_no_phase_change():
    ph = detect_phases(*planted(grok=False))
    assert ph.grokking_step is None and ph.changes == {}
    assert ph.circuit_formation_end is None and ph.generalization_end is None and ph.cleanup_end is None
    assert abs(ph.memorization_end - 1400) <= TOL


def test_without_restricted_loss_the_test_loss_stands_in():
    ph = detect_phases(*planted(restricted=False))
    assert abs(ph.circuit_formation_end - 8000) <= TOL and abs(ph.generalization_end - 12000) <= TOL
    assert "restricted_loss" not in ph.changes


def test_a_change_still_under_way_has_no_end():
    m, p = planted()
    ph = detect_phases(m[m.step <= 11000], p[p.step <= 11000])
    assert abs(ph.changes["test_loss"].start - 8000) <= 400 and ph.changes["test_loss"].end is None
    assert ph.cleanup_end is None


def test_empty_metrics():
    ph = detect_phases(pd.DataFrame({"step": [], "train_acc": [], "test_loss": [], "test_acc": []}))
    assert ph.grokking_step is None and ph.memorization_end is None


@pytest.mark.parametrize("window, sustained_05, sustained_099", [(500, 1000, 3000), (1500, 2500, 3000), (4000, None, None)])
def test_grokking_times_first_and_sustained(window, sustained_05, sustained_099):
    """Test accuracy crosses 0.5 at 1000, dips below it at 2000-2490, and stays above from 3000."""
    step = np.arange(0, 6001, 10)
    acc = np.where(step >= 1000, 0.6, 0.1)
    acc[(step >= 2000) & (step < 2500)] = 0.3
    acc[(step >= 2500) & (step < 3000)] = 0.55
    acc[(step >= 1600) & (step < 2000)] = 0.6
    acc[step >= 3000] = 0.995
    t = grokking_times(pd.DataFrame({"step": step, "test_acc": acc}), PhaseRule(sustain_steps=window))
    assert t["0.5"]["first"] == 1000 and t["0.99"]["first"] == 3000 and t["0.9"]["first"] == 3000
    # 0.5 from 1000 holds 1000 steps, then breaks at 2000; from 2500 it holds to the end (3500 steps, < 4000)
    assert t["0.5"]["sustained"] == sustained_05 and t["0.99"]["sustained"] == sustained_099


def test_grokking_times_of_a_run_that_never_groks():
    t = grokking_times(pd.DataFrame({"step": [0, 10, 20], "test_acc": [0.1, 0.2, 0.3]}))
    assert all(v == {"first": None, "sustained": None} for v in t.values())
