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


def test_an_ensemble_trains_and_the_formation_and_fourier_analyses_run(tmp_path):
    from grokscope.analysis import analyze
    from grokscope.analysis.chunks import formation_test
    from grokscope.trainer import train_ensemble

    cfgs = [make_config(overrides={**CHUNKED, "train.seed": s}) for s in range(2)]
    outs = train_ensemble(cfgs, [tmp_path / f"seed{s}" for s in range(2)])
    for out in outs:
        res = analyze(out)
        assert {"fourier", "formation"} <= set(res.outputs)
        assert res.outputs["formation"].summary["chunks"] == 4
    test = formation_test(outs, n_sims=200)
    assert 0 < test.p_value <= 1 and len(test.per_run) == 2
