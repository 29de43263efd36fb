"""The MLP family: shapes and names, a short ensemble run, and the analyses that read it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokscope.analysis.chunks import ChunkFormation
from grokscope.analysis.formation import circularity
from grokscope.config import ConfigError
from grokscope.models import make_model
from grokscope.presets import make_config
from grokscope.tasks import make_task

CHUNKED = {"model.name": "mlp", "model.embed": "chunked", "model.d_embed": 8, "model.d_mlp": 16, "model.act_fn": "silu",
           "task.p": 23, "task.frac_train": 0.7, "train.batch_size": 64, "train.epochs": 3, "optim.lr": 0.01}


@pytest.mark.parametrize("embed", ["sum", "concat", "chunked"])
@pytest.mark.parametrize("act", ["relu", "gelu", "silu", "sigmoid", "quadratic"])
def test_every_variant_builds_and_counts_its_parameters(embed, act):
    cfg = make_config(overrides={**CHUNKED, "model.embed": embed, "model.act_fn": act, "model.n_layers": 2})
    task = make_task(cfg.task)
    model = make_model(cfg, task)
    assert sum(p.numel() for p in model.parameters()) == cfg.model.n_params(cfg.task.shape())
    logits, cache = model.run_with_cache(task.batch("train").inputs[:5])
    assert logits.shape == (5, 1, 23) and "blocks.1.mlp.hook_post" in cache and "embed.W_E" in dict(model.named_parameters())


def test_bad_mlp_configs_name_the_field():
    with pytest.raises(ConfigError, match="model.n_layers"):
        make_config(overrides={**CHUNKED, "model.n_layers": 4})
    with pytest.raises(ConfigError, match="model.d_embed"):
        make_config(overrides={**CHUNKED, "model.d_embed": 7})
    with pytest.raises(ConfigError, match="model.name"):
        cfg = make_config(overrides={"model.name": "mlp", "task.name": "repeat_subseq", "train.batch_size": 8})
        make_model(cfg, make_task(cfg.task))


def test_a_planted_chunked_model_has_circles_where_they_were_planted():
    cfg = make_config(overrides=CHUNKED)
    model = make_model(cfg, make_task(cfg.task))
    W = model.embed.W_E.detach().clone()
    x = torch.arange(23, dtype=torch.float32)
    W[:23, 0], W[:23, 1] = torch.cos(2 * torch.pi * 3 * x / 23), torch.sin(2 * torch.pi * 3 * x / 23)  # chunk 0: k = 3
    pts = W[:23].double().numpy().reshape(23, -1, 2).transpose(1, 0, 2)
    circ, freq = circularity(pts)
    assert circ[0] == pytest.approx(1.0) and freq[0] == 3 and (circ[1:] < 0.6).all()


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Two chunked seeds trained as one ensemble and analysed (shared by the tests below)."""
    from grokscope.analysis import analyze
    from grokscope.trainer import train_ensemble

    root = tmp_path_factory.mktemp("chunked")
    cfgs = [make_config(overrides={**CHUNKED, "train.seed": s}) for s in range(2)]
    outs = train_ensemble(cfgs, [root / f"seed{s}" for s in range(2)])
    results = [analyze(out) for out in outs]
    return root, outs, results


def test_an_ensemble_trains_and_the_formation_and_fourier_analyses_run(ensemble):
    from grokscope.analysis.chunks import formation_test

    root, outs, results = ensemble
    for res in results:
        assert {"fourier", "formation"} <= set(res.outputs)
        assert res.outputs["formation"].summary["chunks"] == 4
    test = formation_test(outs, n_sims=200)
    assert 0 < test.p_value <= 1 and len(test.per_run) == 2
    assert sum(test.null_distribution.values()) == 200
    assert [r["steps"] for r in formation_test(root, n_sims=10).per_run] == [r["steps"] for r in test.per_run]  # a folder = its runs


def test_the_formation_verb_prints_the_test_and_writes_it(ensemble, capsys):
    import json

    from grokscope.cli import main

    root, outs, results = ensemble
    assert main(["formation", str(root), "--sims", "300", "--window", "5"]) == 0
    out = capsys.readouterr().out
    assert "verdict:" in out and str(outs[0]) in out
    doc = json.loads((root / "formation.json").read_text())
    assert doc["window"] == 5 and doc["n_sims"] == 300 and len(doc["per_run"]) == 2
    assert doc["observed"]["formations"] == sum(r.outputs["formation"].summary["chunks_formed"] for r in results)
    assert main(["formation", str(root), "--window", "-1"]) == 2
    assert "--window" in capsys.readouterr().err
    assert main(["formation", str(root / "nope")]) == 2


def test_reports_show_the_chunks_the_timeline_and_the_test(ensemble, tmp_path):
    from grokscope.report import formation_figures as M
    from grokscope.report import write_report

    root, outs, results = ensemble
    html = write_report(outs[0]).read_text()
    assert 'id="chunk_circles"' in html and 'id="formation_timeline"' in html and "MLP, embeddings 4 chunks" in html
    html = write_report(outs, out=tmp_path / "cmp.html").read_text()
    assert 'id="compare_formation_timeline"' in html and 'id="coincidence"' in html
    fig = M.formation_timeline(outs)
    formed = [s for r in results for s in r.outputs["formation"].summary["formation_steps"]]
    assert sorted(fig.data[1].x) == sorted(formed)  # a cross at every formation step
    assert fig.data[0].z.shape[0] == 8  # a row per chunk per run
    fig = M.chunk_circles(outs[0])
    assert len(fig.data) == 8 and len(fig.frames) >= 2  # a ring and the dots per chunk, animated
