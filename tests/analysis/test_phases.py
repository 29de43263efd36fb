import numpy as np
import pandas as pd

from grokscope.analysis.phases import detect_phases


def synthetic(mem=1400, start=9400, end=13000, total=40000, every=10, grok=True):
    """Curves shaped like the paper's: train memorises by `mem`; test loss rises, plateaus, and (if grok)
    falls by 6 decades between `start` and `end` (linear in log space), then keeps creeping down."""
    step = np.arange(0, total + 1, every)
    train_acc = np.clip(step / mem, 0, 1) ** 4
    train_acc[step >= mem] = 1.0
    y = np.full(step.shape, 1.5)  # log10 test loss plateau
    y[step < mem] = 0.7 + 0.8 * step[step < mem] / mem
    if grok:
        mid = (step >= start) & (step <= end)
        y[mid] = 1.5 - 6.0 * (step[mid] - start) / (end - start)
        y[step > end] = -4.5 - 0.3 * (step[step > end] - end) / (total - end)
    rng = np.random.default_rng(0)
    test_loss = 10 ** (y + 0.02 * rng.standard_normal(y.shape))
    test_acc = np.where(test_loss < 0.01, 1.0, 0.0)
    return pd.DataFrame({"step": step, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                         "train_loss": 0.0})


def test_phase_rule_on_synthetic_curves():
    ph = detect_phases(synthetic())
    assert ph.memorization_end == 1400
    assert abs(ph.circuit_formation_end - 9400) <= 400
    assert abs(ph.cleanup_end - 13000) <= 400
    assert 9400 <= ph.grokking_step <= 13000


def test_no_grokking_gives_no_drop():
    ph = detect_phases(synthetic(grok=False))
    assert ph.grokking_step is None
    assert ph.circuit_formation_end is None and ph.cleanup_end is None
    assert ph.memorization_end == 1400


def test_empty_metrics():
    ph = detect_phases(pd.DataFrame({"step": [], "train_acc": [], "test_loss": [], "test_acc": []}))
    assert ph.grokking_step is None and ph.memorization_end is None


def test_drop_still_under_way_has_no_cleanup_end():
    df = synthetic(end=13000)
    ph = detect_phases(df[df.step <= 11000])
    assert abs(ph.circuit_formation_end - 9400) <= 400
    assert ph.cleanup_end is None
