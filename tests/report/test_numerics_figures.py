"""LR events and loss spikes on the loss curves, and the softmax-collapse sections, on planted data
and on a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grokscope
from grokscope.report import figures as G
from grokscope.report import numerics_figures as N
from grokscope.report.data import MissingData, RunData
from grokscope.runstore import StoredAnalysis


def _planted() -> RunData:
    steps = np.arange(0, 1010, 10)
    loss = np.full(len(steps), 1e-3)
    loss[40] = 2.0  # a spike at step 400
    metrics = pd.DataFrame({"step": steps, "train_loss": loss, "test_loss": loss * 10, "train_acc": 1.0, "test_acc": 0.5})
    progress = pd.DataFrame({"step": steps[::10], "softmax_collapse_float32": np.linspace(0, 0.9, 11),
                             "softmax_collapse_float64": 0.0, "softmax_collapse": np.linspace(0, 0.9, 11)})
    numerics = StoredAnalysis("numerics", Path("."), {"spikes": [{"start": 400, "peak": 400, "end": 400, "height": 2000.0}]},
                              {"progress": progress})
    config = {"interventions": [{"kind": "lr_multiplier", "at_step": 0, "factor": 5},
                                {"kind": "lr_multiplier", "at_step": 300, "factor": 10},
                                {"kind": "grokfast_ema", "alpha": 0.98, "lamb": 2.0}],
              "train": {"loss_dtype": "float32", "loss": "cross_entropy"}}
    return RunData(path=None, name="planted <b>", config=config, metrics=metrics, analyses={"numerics": numerics})


def test_the_loss_curves_mark_lr_events_and_spikes():
    fig = G.loss_curves(_planted())
    lines = [s for s in fig.layout.shapes if s.line.dash == "dot"]
    assert sorted({s.x0 for s in lines}) == [300]  # on both panels; the step-0 event is a legend entry
    names = [t.name for t in fig.data]
    assert "lr ×5 from the start" in names
    spike = next(t for t in fig.data if t.name == "loss spikes (1)")
    assert list(spike.x) == [400] and spike.y[0] == pytest.approx(2.0)


def test_the_collapse_figures():
    d = _planted()
    fig = N.softmax_collapse(d)
    assert [t.name for t in fig.data][:3] == ["collapsed in float32", "collapsed in float64", "collapsed in the run's own loss"]
    assert any(t.name == "loss spikes (1)" for t in fig.data)
    cmp = N.compare_collapse([d, d])
    assert len(cmp.data) == 2 and "1 spikes" in cmp.data[0].name and "&lt;b&gt;" in cmp.data[0].name
    with pytest.raises(MissingData):
        N.compare_collapse([RunData(path=None, name="bare")])


def test_a_report_shows_the_numerics_sections(tmp_path):
    from grokscope.report import write_report

    cfg = grokscope.get_preset("tiny").replace(**{
        "train.epochs": 60, "train.progress": False, "train.loss_dtype": "float32",
        "interventions": [{"kind": "lr_multiplier", "at_step": 30, "factor": 2}]})
    run = grokscope.train(cfg, tmp_path / "run")
    grokscope.analyze(run)
    html = write_report(run).read_text()
    assert 'id="softmax_collapse"' in html
    fig = G.loss_curves(run)
    assert [s.x0 for s in fig.layout.shapes if s.line.dash == "dot"] == [30, 30]
    page = write_report([run, run], out=tmp_path / "compare.html").read_text()
    assert 'id="compare_collapse"' in page
