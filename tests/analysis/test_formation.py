"""Circularity, formation steps and the coincidence test, on data whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from grokscope.analysis.formation import circularity, coincidence_test, formation_step, group_counts

P = 113


def circle(k: int, p: int = P, radius: float = 2.5, phase: float = 0.7, centre=(1.0, -3.0)) -> np.ndarray:
    x = np.arange(p)
    ang = 2 * np.pi * k * x / p + phase
    return np.stack([centre[0] + radius * np.cos(ang), centre[1] + radius * np.sin(ang)], -1)


@pytest.mark.parametrize("k", [1, 5, 37, 56])
def test_a_perfect_circle_has_circularity_one_and_its_frequency(k):
    c, f = circularity(circle(k))
    assert c == pytest.approx(1.0, abs=1e-12) and f == k
    c, f = circularity(circle(k)[:, ::-1])  # a reflection: the same circle run the other way
    assert c == pytest.approx(1.0, abs=1e-12) and f == -k


def test_noise_an_ellipse_and_a_line_are_not_circles():
    gen = np.random.default_rng(0)
    noise = [float(circularity(gen.normal(size=(P, 2)))[0]) for _ in range(50)]
    assert max(noise) < 0.12  # the largest of 112 shares summing to 1: ~ln(p)/p = 0.04 on average
    ellipse = circle(3) * np.array([1.0, 0.3])
    assert 0.6 < circularity(ellipse)[0] < 0.9  # (1 + 0.3)^2 / (2 (1 + 0.3^2)) = 0.775
    line = circle(3) * np.array([1.0, 0.0])
    assert circularity(line)[0] == pytest.approx(0.5)
    batch = np.stack([circle(4), gen.normal(size=(P, 2))])  # leading dimensions: chunks, checkpoints
    c, f = circularity(batch)
    assert c.shape == (2,) and c[0] == pytest.approx(1.0) and f[0] == 4 and c[1] < 0.12


def test_the_detector_finds_planted_formation_steps():
    steps = np.arange(0, 2000, 10)
    gen = np.random.default_rng(1)
    for t_form in (0, 300, 1230, 1990):
        circ = np.where(steps >= t_form, 0.9 + 0.09 * gen.random(len(steps)), 0.85 * gen.random(len(steps)))
        circ[(steps < t_form) & (steps >= t_form - 200) & (steps < t_form - 100)] = 0.95  # a blip that does not last
        assert formation_step(steps, circ, np.full(len(steps), 7)) == (t_form, 7)
    circ = np.where(steps >= 500, 0.97, 0.1)
    freq = np.where(steps >= 800, -11, 7)  # the circle changed frequency at 800: it formed (as -11) there
    assert formation_step(steps, circ, freq) == (800, -11)
    assert formation_step(steps, np.where(steps < 1500, 0.97, 0.2), np.full(len(steps), 3)) == (None, None)


def test_planted_formation_step_exact():
    steps = np.arange(0, 1000, 10)
    circ = np.where(steps >= 420, 0.99, 0.3)
    circ[30] = 0.95  # an early blip above the threshold that does not last
    assert formation_step(steps, circ, np.full(len(steps), 5)) == (420, 5)


def test_group_counts():
    c = group_counts(np.array([0, 50, 100, 400, 1000, 1020, 5000]), window=60)
    assert c == {"formations": 7, "single": 2, "pairs": 1, "triples": 1, "in_groups": 5}


def _poisson_runs(gen, n_runs=16, n=6, span=20000):
    return [np.sort(gen.uniform(0, span, n)).round(-1) for _ in range(n_runs)]


def test_the_coincidence_test_accepts_poisson_times_and_rejects_planted_pairs():
    """Rates: over 100 ensembles of 16 runs x 6 Poisson formations (window 100 in a span of 20000,
    on a grid of 10), the test at alpha 0.05 rejects <= 10 %; with each formation planted as a pair
    (the second within 50 steps of the first) it rejects >= 95 %."""
    gen = np.random.default_rng(2)
    grid = [np.arange(0, 20010, 10)] * 16
    reject_null = np.mean([coincidence_test(_poisson_runs(gen), 100, grid, n_sims=1000, seed=i).p_value < 0.05
                           for i in range(100)])
    assert reject_null <= 0.10
    def paired():
        out = []
        for base in _poisson_runs(gen, n=3):
            out.append(np.sort(np.concatenate([base, base + gen.integers(0, 6, 3) * 10])))
        return out
    reject_pairs = np.mean([coincidence_test(paired(), 100, grid, n_sims=1000, seed=i).p_value < 0.05 for i in range(40)])
    assert reject_pairs >= 0.95
    t = coincidence_test(paired(), 100, grid, n_sims=500)
    assert t.observed["pairs"] >= 16 and t.share_in_groups > t.null_share_in_groups and "more often" in t.verdict()


def test_runs_with_fewer_than_two_formations_carry_no_information():
    t = coincidence_test([np.array([100.0]), np.array([])], 50, n_sims=100)
    assert t.n_runs == 0 and t.p_value == 1.0 and "no run" in t.verdict()
