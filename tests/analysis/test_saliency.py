"""Saliency's mechanisms on models small enough to check by hand: integrated gradients are complete,
Shapley sampling is exact when every order is enumerated, a gate of 0 is the unit deleted, and the
verb writes its files and refuses bad input in one line."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import grokscope
from grokscope.analysis.saliency import GatedModel, integrated_gradients, shapley_values, skewness
from grokscope.cli import main


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """tiny with 4 MLP neurons and 2 heads: few enough units to enumerate every coalition."""
    cfg = grokscope.get_preset("tiny").replace(**{"model.d_mlp": 4, "train.epochs": 40, "train.progress": False})
    return grokscope.train(cfg, tmp_path_factory.mktemp("runs") / "small")


def test_integrated_gradients_are_complete(tiny_run):
    run = grokscope.load_run(tiny_run)
    gm = GatedModel(run, run.params(run.steps[-1]), "train", torch.arange(32))
    assert [g.name for g in gm.groups] == ["L0 heads", "L0 neurons"] and gm.groups[1].n == 64
    # sum_i IG_i = F(1) - F(0) per example, up to the midpoint rule: O(1/steps^2) for the neurons, whose
    # gates act after the last nonlinearity but the softmax; O(1/steps) for the heads, whose path
    # crosses the MLP's ReLU kinks (measured: 0.45, 0.059, 0.015 at 16, 64, 256 steps)
    for group, steps, tol in ((gm.groups[0], 1024, 1e-2), (gm.groups[1], 64, 2e-3)):
        ig, delta = integrated_gradients(gm, group, steps=steps)
        assert ig.shape == (32, group.n)
        torch.testing.assert_close(ig.sum(1), delta, rtol=tol, atol=tol * float(delta.abs().mean()))


def _exact_shapley(value, n):
    """phi_i = sum over S not holding i of |S|! (n - |S| - 1)! / n! (v(S + i) - v(S))."""
    subsets = list(itertools.product([0.0, 1.0], repeat=n))
    v = dict(zip(subsets, value(torch.tensor(subsets)).double().tolist()))
    phi = np.zeros(n)
    for s in subsets:
        size = int(sum(s))
        for i in range(n):
            if s[i] == 0:
                with_i = tuple(1.0 if j == i else x for j, x in enumerate(s))
                phi[i] += math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n) * (v[with_i] - v[s])
    return phi


def test_shapley_enumeration_is_exact_on_a_model_and_sampling_is_efficient(small_run):
    run = grokscope.load_run(small_run)
    gm = GatedModel(run, run.params(run.steps[-1]), "train", torch.arange(16))
    neurons = next(g for g in gm.groups if g.name == "L0 neurons")
    with torch.no_grad():
        value = lambda gates: gm.mean_logprob(neurons, gates)  # noqa: E731
        phi, used = shapley_values(value, 4, permutations=24)
        want = _exact_shapley(value, 4)
        assert used == 24 and phi == pytest.approx(want, rel=1e-5, abs=1e-7)
        # sampled orders: each order's marginals telescope, so the values still sum to v(all) - v(none)
        sampled, used = shapley_values(value, 4, permutations=5, seed=3)
        full, empty = value(torch.ones(1, 4)).item(), value(torch.zeros(1, 4)).item()
        assert used == 5 and sampled.sum() == pytest.approx(full - empty, rel=1e-5)


def test_a_closed_gate_is_the_unit_deleted(tiny_run):
    run = grokscope.load_run(tiny_run)
    params = run.params(run.steps[-1])
    gm = GatedModel(run, params, "test", None)
    neurons = next(g for g in gm.groups if g.name == "L0 neurons")
    assert gm.loss_and_accuracy() == pytest.approx(gm.loss_and_accuracy(neurons, torch.ones(neurons.n)))
    off = torch.ones(neurons.n)
    off[[3, 7]] = 0
    cut = dict(params)
    cut["blocks.0.mlp.W_out"] = params["blocks.0.mlp.W_out"].clone()
    cut["blocks.0.mlp.W_out"][[3, 7]] = 0  # the same two neurons removed from the weights
    assert gm.loss_and_accuracy(neurons, off) == pytest.approx(GatedModel(run, cut, "test", None).loss_and_accuracy(), rel=1e-5)
    m = grokscope.load_run(tiny_run).metrics.iloc[-1]
    assert gm.loss_and_accuracy()[1] == pytest.approx(m["test_acc"])


def test_skewness():
    assert skewness(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.0)
    assert skewness(np.random.default_rng(0).exponential(size=200_000)) == pytest.approx(2.0, abs=0.05)
    assert skewness(np.ones(5)) == 0.0


def test_the_verb_writes_its_files_and_the_report_shows_them(tiny_run, tmp_path, capsys):
    from grokscope.report import write_report

    out = tmp_path / "sal"
    assert main(["saliency", str(tiny_run), "--checkpoints", "3", "--examples", "16", "--test-examples", "64",
                 "--ig-steps", "4", "--shapley", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "L0_neurons.skew" in printed and "largest Shapley values" in printed
    doc = json.loads((out / "summary.json").read_text())
    assert len(doc["steps"]) == 3 and doc["groups"] == ["L0_heads", "L0_neurons"] and doc["settings"]["test_examples"] == 64
    import pandas as pd

    units = pd.read_parquet(out / "units.parquet")
    assert len(units) == 3 * (2 + 64) and set(units["group"]) == {"L0 heads", "L0 neurons"}
    prog = pd.read_parquet(out / "progress.parquet")
    assert (prog["L0_neurons.k"] == 6).all() and (prog["L0_heads.k"] == 1).all()  # 10 % of 64 neurons, 1 head
    assert len(pd.read_parquet(out / "shapley.parquet")) == 64
    res = grokscope.saliency(tiny_run, checkpoints=2, n_examples=8, test_examples=32, ig_steps=2)  # into RUN/saliency/
    assert (tiny_run / "saliency" / "progress.parquet").is_file() and len(res.progress) == 2
    html = write_report(tiny_run).read_text()
    assert 'id="saliency_histograms"' in html and 'id="deletion"' in html


@pytest.mark.parametrize("argv, flag", [
    (["--k", "0"], "--k"), (["--examples", "0"], "--examples"), (["--ig-steps", "0"], "--ig-steps"),
    (["--shapley", "-1"], "--shapley"), (["--checkpoints", "0"], "--checkpoints"),
])
def test_bad_saliency_input_is_one_line(tiny_run, argv, flag, capsys):
    assert main(["saliency", str(tiny_run), *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
