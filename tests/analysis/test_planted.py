"""Planted models (see planted.py): the analysis must recover exactly the planted frequencies."""

import numpy as np
import pytest
import torch

from grokscope.analysis import MemoryRun, analyze
from grokscope.analysis.modular.measures import CheckpointAnalyzer
from grokscope.config import RunConfig
from grokscope.tasks import make_task
from planted import planted_config, planted_params, random_params

def ideal_loss(op: str, p: int, freqs: list[int], amplitude: float = 12.0) -> float:
    grp = CheckpointAnalyzer(planted_config(op, p, freqs).model, make_task(planted_config(op, p, freqs).task)).group
    n, a = grp.n, np.arange(grp.n)
    d = a[:, None, None] + grp.sign * a[None, :, None] - a[None, None, :]
    L = amplitude * sum(np.cos(2 * np.pi * k * d / n) for k in freqs)  # classes in group order
    L = L - L.max(-1, keepdims=True)
    lp = L - np.log(np.exp(L).sum(-1, keepdims=True))
    correct = (a[:, None] + grp.sign * a[None, :]) % n
    return float(-np.take_along_axis(lp, correct[..., None], -1).mean())


CASES = [("add", 23, [2, 5, 9]), ("sub", 23, [3, 7]), ("mul", 23, [3, 7]), ("div", 29, [4, 9]), ("add", 31, [1, 15])]


@pytest.mark.parametrize("op,p,freqs", CASES)
def test_planted_frequencies_recovered(op, p, freqs):
    cfg = planted_config(op, p, freqs)
    task = make_task(cfg.task)
    res = analyze(MemoryRun(cfg, task, {0: planted_params(op, p, freqs)}))
    s = res.summary
    assert s["key_frequencies"] == sorted(freqs)
    assert s["structure"] == "fourier"
    assert s["neuron_clusters"] == {**{str(k): 36 for k in sorted(freqs)}, "unclustered": 0}
    assert s["frac_neurons_single_frequency"] == 1.0
    assert s["logit_fit_variance_explained"] > 0.99
    for k in freqs:
        assert s["logit_fit"]["amplitudes"][str(k)] == pytest.approx(12.0, rel=0.01)
    f = s["final"]
    # the restricted loss is the loss of the planted function itself, A sum_k cos(w_k(a + s b - c))
    assert f["restricted_loss_train"] == pytest.approx(ideal_loss(op, p, freqs), abs=0.01)
    assert f["restricted_loss_test"] == pytest.approx(ideal_loss(op, p, freqs), abs=0.01)
    assert f["excluded_loss_train"] > 2.5  # removing the key directions destroys the answer
    for k in freqs:
        assert f["excluded_loss_train_by_freq"][str(k)] > f["restricted_loss_train"]
    # W_E and W_L are sparse in the Fourier basis: all their norm sits on the planted frequencies
    emb = res.outputs["fourier"].tensors["embed_fourier_norm"].numpy()
    assert set(np.nonzero(emb > 1e-3 * emb.max())[0]) == set(freqs)
    own = s["W_L_cluster_own_freq_share"]
    assert all(own[str(k)] > 0.95 for k in freqs)
    # circles: token t sits at angle w_k * position(t) on the (cos, sin) plane of each key k
    circ = res.outputs["fourier"].tables["circles"]
    k = freqs[0]
    c = circ[circ.freq == k]
    grp = CheckpointAnalyzer(cfg.model, task).group
    pos = grp.position_of_token()
    t = c.token.to_numpy()
    ok = pos[t] >= 0
    ang = np.arctan2(c.sin.to_numpy()[ok], c.cos.to_numpy()[ok])
    expect = 2 * np.pi * k * pos[t[ok]] / grp.n
    assert np.allclose(np.cos(ang - expect), 1.0, atol=1e-4)


def test_random_weights_have_no_key_frequencies():
    cfg = RunConfig().replace(**{"task.p": 23, "model.d_model": 32, "model.n_heads": 2, "model.d_head": 16,
                                 "model.d_mlp": 64})
    task = make_task(cfg.task)
    for seed in range(3):
        s = analyze(MemoryRun(cfg, task, {0: random_params(cfg, seed)})).summary
        assert s["key_frequencies"] == [] and s["structure"] == "none"
        assert s["final"]["excluded_loss_train"] == pytest.approx(s["final"]["train_loss"])
        assert s["logit_fit_variance_explained"] == 0.0


def _train(cfg: RunConfig, steps: int) -> dict[str, torch.Tensor]:
    """A minimal full-batch AdamW loop (the project's trainer is not needed for this control)."""
    from grokscope.models import make_model

    task = make_task(cfg.task)
    model = make_model(cfg, task)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                            betas=cfg.optim.betas)
    tok, lab = task.tokens(task.train_idx), task.labels(task.train_idx)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only wait on a shared CPU
    try:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(tok)[:, -1], lab)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_trained_on_rand_reports_no_structure():
    cfg = RunConfig().replace(**{"task.op": "rand", "task.p": 17, "task.frac_train": 0.5, "model.d_model": 32,
                                 "model.n_heads": 2, "model.d_head": 16, "model.d_mlp": 64, "optim.lr": 3e-3})
    params = _train(cfg, 300)
    task = make_task(cfg.task)
    s = analyze(MemoryRun(cfg, task, {300: params})).summary
    assert s["final"]["train_acc"] > 0.9  # it memorised ...
    assert s["key_frequencies"] == [] and s["structure"] == "none"  # ... without Fourier structure


@pytest.mark.parametrize("over", [{"task.op": "x2xyy2", "model.n_layers": 2, "model.normalization": "LN"},
                                  {"task.op": "div", "model.attn_only": True}])
def test_other_model_families_run(over):
    """Generic forward (2 layers + LayerNorm) and attention-only models go through the same pipeline."""
    cfg = RunConfig().replace(**{"task.p": 13, "model.d_model": 16, "model.n_heads": 2, "model.d_head": 8,
                                 "model.d_mlp": 32, **over})
    task = make_task(cfg.task)
    res = analyze(MemoryRun(cfg, task, {0: random_params(cfg, 0), 10: random_params(cfg, 1)}))
    assert res.summary["key_frequencies"] == []
    assert len(res.progress) == 2 and np.isfinite(res.progress["train_loss"]).all()
    if cfg.model.attn_only:
        assert "neuron_freq_frac" not in res.outputs["fourier"].tensors
        assert res.summary["frac_neurons_single_frequency"] is None
