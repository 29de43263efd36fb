"""`Run`, the one reader of a run directory: loss_fn for landscape work, and runs of grokscope 0.1.0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.func import grad

import grokscope
from grokscope.config import ConfigError
from grokscope.run import hvp

FIXTURE = Path(__file__).parent / "fixtures" / "run_v010"  # written by grokscope 0.1.0 (commit a952397)


def test_loss_fn_matches_the_trainers_evaluation(tiny_run):
    run = grokscope.load_run(tiny_run)
    m = run.metrics.set_index("step")
    steps = [s for s in run.steps if s in m.index][-2:]
    params = run.stacked_params(steps)  # two checkpoints as two members
    for split in ("train", "test"):
        loss = run.loss_fn(split)(params)
        assert loss.shape == (2,) and loss.dtype == torch.float64
        want = torch.tensor([m.loc[s, f"{split}_loss"] for s in steps], dtype=torch.float64)
        assert torch.allclose(loss, want, rtol=1e-5), (split, loss, want)
    with pytest.raises(ConfigError, match="split: must be one of train, test"):
        run.loss_fn("val")


def test_loss_fn_hvp_matches_finite_differences(tmp_path):
    """On a GELU model: the loss is smooth there, so central differences of the gradient converge
    (with ReLU, kinks within +-eps of the random direction make them meaningless)."""
    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 20, "model.act_fn": "gelu", "train.progress": False})
    run = grokscope.load_run(grokscope.train(cfg, tmp_path / "gelu"))
    f = run.loss_fn("train", dtype=torch.float64)
    p = {k: v.double() for k, v in run.stacked_params().items()}
    gen = torch.Generator().manual_seed(0)
    v = {k: torch.randn(t.shape, generator=gen, dtype=torch.float64) for k, t in p.items()}
    scalar = lambda q: f(q).sum()  # noqa: E731
    Hv = hvp(scalar, p, v)
    eps = 1e-4
    g_plus = grad(scalar)({k: p[k] + eps * v[k] for k in p})
    g_minus = grad(scalar)({k: p[k] - eps * v[k] for k in p})
    fd = {k: (g_plus[k] - g_minus[k]) / (2 * eps) for k in p}
    num = sum(float((Hv[k] - fd[k]).pow(2).sum()) for k in p) ** 0.5
    den = sum(float(fd[k].pow(2).sum()) for k in p) ** 0.5
    assert den > 0 and num / den < 1e-5


def test_a_v010_run_loads_resumes_reports_and_analyses(tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(FIXTURE, run_dir)
    run = grokscope.load_run(run_dir)
    assert run.config.interventions == () and run.steps == [0, 20, 40]
    assert run.analyses == ["fourier"]  # the v1 layout: the Fourier files directly in analysis/
    old = run.analysis("fourier")
    assert old.summary["format"] == "grokscope.analysis.v1" and "circles" in old.tables and "attn_pattern" in old.tensors
    # the report reads the old analysis as it is
    html = grokscope.report(run_dir).read_text()
    assert 'id="embed_final"' in html and html.count('data-figure="') >= 6
    # resuming the finished run re-runs its last step and changes nothing
    before = run.metrics
    grokscope.train(run.config, run_dir, resume=True)
    after = grokscope.load_run(run_dir).metrics
    assert after.iloc[:-1].equals(before.iloc[:-1])
    # the last row is measured again: on another CPU than the fixture's its losses move at float rounding
    pd.testing.assert_frame_equal(after.tail(1), before.tail(1), check_exact=False, rtol=1e-7)
    # analysing it again writes the current layout and removes the v1 files
    result = grokscope.analyze(run_dir)
    a = run_dir / "analysis"
    assert (a / "fourier" / "circles.parquet").is_file() and not (a / "circles.parquet").exists()
    assert json.loads((a / "summary.json").read_text())["format"] == "grokscope.analysis.v2"
    assert result.summary["key_frequencies"] == old.summary["key_frequencies"]
    # the same figures, plus the numerics analysis's: the old report showed its section as a note, not yet computed
    new = grokscope.report(run_dir).read_text()
    assert 'id="softmax_collapse"' in new and new.count('data-figure="') == html.count('data-figure="') + 1


def test_api_verbs_are_the_modules_functions():
    import grokscope.analysis
    import grokscope.quickstart
    import grokscope.report

    assert grokscope.analyze is grokscope.analysis.analyze
    assert grokscope.demo is grokscope.quickstart.demo
    import grokscope.sweeps

    assert grokscope.sweep is grokscope.sweeps.run_sweep and grokscope.runs is grokscope.sweeps.query_runs
    assert callable(grokscope.report) and grokscope.report.write_report is not None


@pytest.mark.parametrize("kwargs, key", [({"max_checkpoints": 0}, "max_checkpoints"), ({"threads": 0}, "threads"),
                                         ({"max_checkpoints": 2.5}, "max_checkpoints"),
                                         ({"analyses": ["nope"]}, "analyses")])
def test_analyze_checks_its_own_arguments(tiny_run, kwargs, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        grokscope.analyze(tiny_run, **kwargs)


def test_key_rule_is_checked(tiny_run):
    from grokscope.analysis import KeyRule

    with pytest.raises(ConfigError, match=r"^key_rule.threshold: must be in \(0, 1\]"):
        grokscope.analyze(tiny_run, key_rule=KeyRule(threshold=1.5))


def test_short_reprs(tiny_run):
    run = grokscope.load_run(tiny_run)
    text = repr(run)
    assert text.startswith("Run(") and "checkpoints up to step 300" in text and len(text) < 300
    assert "key_frequencies" in repr(grokscope.analyze(tiny_run, out_dir=tiny_run.parent / "a-repr"))
