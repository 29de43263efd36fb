"""The numerics analysis on curves and logits whose answer is known by construction: planted loss
spikes (and none on smooth curves), and softmax collapse at logit gaps on either side of each
dtype's rounding threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grokscope
from grokscope.analysis.numerics import collapsed_share, detect_spikes

STEPS = np.arange(0, 2000, 10)


def test_smooth_curves_have_no_spikes():
    rng = np.random.default_rng(0)
    fast = 4.0 * np.exp(-STEPS / 30.0) + 1e-9  # falls nine decades
    noisy = np.exp(-STEPS / 500.0) * rng.uniform(1 / 3, 3, len(STEPS))  # noise within a factor of 9
    rising = 1e-3 * (1 + STEPS / 100.0)  # a slow 20-fold rise over the whole run is no spike either
    for curve in (fast, noisy, rising):
        assert detect_spikes(STEPS, curve) == []


def test_planted_spikes_are_found_with_their_steps_and_heights():
    loss = np.full(len(STEPS), 1e-4)
    loss[50:54] = [1e-2, 0.5, 3e-2, 2e-3]  # steps 500..530 (2e-3 is still 20x the 1e-4 before), peak 510
    loss[120] = 5e-2  # a one-point spike at step 1200
    spikes = detect_spikes(STEPS, loss)
    assert [(s["start"], s["peak"], s["end"]) for s in spikes] == [(500, 510, 530), (1200, 1200, 1200)]
    assert spikes[0]["height"] == pytest.approx(5000) and spikes[1]["height"] == pytest.approx(500)
    diverged = np.concatenate([np.full(100, 1e-3), np.full(100, 5.0)])
    assert detect_spikes(STEPS, diverged) == [{"start": 1000, "peak": 1000, "end": None, "height": pytest.approx(5000)}]
    # at a factor of 1000 only the peak of the first spike counts (0.5 > 0.1; 1e-2 and 3e-2 do not)
    assert detect_spikes(STEPS, loss, factor=1000) == [{"start": 510, "peak": 510, "end": 510, "height": pytest.approx(5000)}]


@pytest.mark.parametrize("kw, field", [({"factor": 1.0}, "spike_factor"), ({"window": 0}, "spike_window")])
def test_a_bad_rule_is_refused_naming_it(kw, field):
    with pytest.raises(grokscope.ConfigError, match=field):
        detect_spikes(STEPS, np.ones(len(STEPS)), **kw)


def test_collapse_sets_in_at_each_dtypes_rounding_threshold():
    # logits [0, 0, g], correct class 2: p = 1 / (1 + 2 e^-g) rounds to 1 once 2 e^-g is below half an
    # ulp of 1: g > 17.3 in float32, g > 37.4 in float64. StableMax's p = (g + 1) / (g + 3) does not.
    gaps = torch.tensor([10.0, 20.0, 40.0, 1e9])
    logits = torch.zeros(4, 1, 3, dtype=torch.float64)
    logits[:, 0, 2] = gaps
    labels, valid = torch.full((4, 1), 2), torch.ones(4, 1, dtype=torch.bool)
    assert collapsed_share(logits, labels, valid, torch.float32) == 0.75
    assert collapsed_share(logits, labels, valid, torch.float64) == 0.5
    assert collapsed_share(logits, labels, valid, torch.float32, "stablemax") == 0.25  # only the gap of 1e9
    assert collapsed_share(logits[:3], labels[:3], valid[:3], torch.float64, "stablemax") == 0.0
    valid[1:] = False  # NO_TARGET positions do not count
    assert collapsed_share(logits, labels, valid, torch.float32) == 0.0


def test_every_run_gets_the_numerics_analysis(tiny_float32_run):
    res = grokscope.analyze(tiny_float32_run)
    assert "numerics" in res.outputs and res.summary["loss_spikes"] == len(res.outputs["numerics"].summary["spikes"])
    prog = res.outputs["numerics"].progress
    assert (prog["softmax_collapse_float32"] >= prog["softmax_collapse_float64"]).all()
    assert (prog["softmax_collapse"] == prog["softmax_collapse_float32"]).all()  # the run's own loss is float32
    assert prog["softmax_collapse_float32"].iloc[-1] > 0  # tiny memorises: big logit gaps by the end
    assert res.outputs["numerics"].summary["collapse_in"] == {"dtype": "float32", "loss": "cross_entropy"}


@pytest.fixture(scope="module")
def tiny_float32_run(tmp_path_factory):
    cfg = grokscope.get_preset("tiny").replace(**{"train.loss_dtype": "float32", "train.progress": False,
                                                  "optim.weight_decay": 0.0, "optim.lr": 1e-2})  # logits free to grow
    return grokscope.train(cfg, tmp_path_factory.mktemp("runs") / "tiny32")
