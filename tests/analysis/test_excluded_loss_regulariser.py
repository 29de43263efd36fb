"""The excluded-loss regulariser (grokscope.interventions.ExcludedLossCallback) on planted models:
its key-frequency rule finds exactly the planted frequencies and none in random logits, its loss is
the analysis' excluded_loss_train, and its gradient moves that loss the way coef's sign says. (A run
with it resumes bit-exactly: tests/test_interventions.py.)"""

from __future__ import annotations

import math

import pytest
import torch

import grokscope
from grokscope.analysis.modular.grid import grid_forward
from grokscope.analysis.modular.measures import CheckpointAnalyzer
from grokscope.callbacks import TrainContext, TrainState
from grokscope.config import ConfigError, ExcludedLoss
from grokscope.engine import select_engine
from grokscope.interventions import ExcludedLossCallback
from grokscope.models import make_model
from grokscope.optim import ParamLayout
from grokscope.tasks import make_task
from planted import planted_config, planted_params, random_params


def _bound(cfg, params: dict[str, torch.Tensor], **kw) -> tuple[ExcludedLossCallback, TrainContext]:
    """A callback bound to one member holding `params`, as the trainer binds it."""
    task = make_task(cfg.task)
    model = make_model(cfg, task)
    full = {k: params.get(k, v.detach()).float() for k, v in model.named_parameters()}
    layout = ParamLayout.from_params(full)
    flat = layout.flatten(full)[None].clone().requires_grad_(True)
    ctx = TrainContext([cfg], [task], torch.device("cpu"), select_engine(cfg, task, model).logits,
                       lambda: layout.views(flat), flat)
    cb = ExcludedLossCallback(ExcludedLoss(**kw), "k")
    cb.bind(ctx)
    return cb, ctx


def _step(cb: ExcludedLossCallback, ctx: TrainContext, step: int = 0) -> torch.Tensor | None:
    zero = torch.zeros_like(ctx.flat)
    return cb.on_gradient(TrainState(step, step, ctx.views(), torch.ones(1)), zero)


def _grid_logits(cb: ExcludedLossCallback, ctx: TrainContext) -> torch.Tensor:
    n = cb.group.n
    with torch.no_grad():
        return ctx.logits(ctx.views(), cb.inputs)[:, :, -1].unflatten(1, (n, n))


@pytest.mark.parametrize("op,p,freqs", [("add", 23, [2, 5, 9]), ("div", 29, [4, 9])])
def test_the_rule_finds_exactly_the_planted_frequencies(op, p, freqs):
    cfg = planted_config(op, p, freqs)
    cb, ctx = _bound(cfg, planted_params(op, p, freqs))
    _step(cb, ctx)
    assert cb.keys[0].nonzero()[:, 0].tolist() == sorted(freqs)


def test_the_rule_finds_nothing_in_random_logits_and_the_term_is_then_zero():
    cfg = planted_config("add", 23, [2, 5])
    cb, ctx = _bound(cfg, random_params(cfg))
    assert _step(cb, ctx) is None  # no key found: the gradient is left alone
    assert not cb.keys.any()
    cb.keys = torch.zeros_like(cb.keys)
    cb.keys[0, 3] = True  # found earlier: a key stays found
    cb.cfg = ExcludedLoss(every=1)
    _step(cb, ctx, step=1)
    assert cb.keys[0].nonzero()[:, 0].tolist() == [3]


@pytest.mark.parametrize("op,p,keys", [("add", 23, [2, 5]), ("div", 29, [4])])
def test_its_loss_is_the_analysis_excluded_loss(op, p, keys):
    cfg = planted_config(op, p, [2, 5, 9] if op == "add" else [4, 9])
    params = planted_params(op, p, [2, 5, 9] if op == "add" else [4, 9])
    cb, ctx = _bound(cfg, params)
    cb.keys = torch.zeros(1, cb.group.n_freqs + 1, dtype=torch.bool)
    cb.keys[0, keys] = True
    ours = float(cb.excluded_loss(_grid_logits(cb, ctx))[0])
    an = CheckpointAnalyzer(cfg.model, make_task(cfg.task))
    an.set_keys(keys)
    theirs = an.fourier_losses(an.group_logits(grid_forward(params, cfg.model, p).logits))["excluded_loss_train"]
    assert ours == pytest.approx(theirs, rel=1e-4)


def _excluded_after(cb, ctx, grad: torch.Tensor, lr: float) -> float:
    with torch.no_grad():
        ctx.flat -= lr * grad
    return float(cb.excluded_loss(_grid_logits(cb, ctx))[0])


@pytest.mark.parametrize("coef", [1.0, -1.0])
def test_the_gradient_moves_the_excluded_loss_as_the_sign_of_coef_says(coef):
    cfg = planted_config("add", 23, [2, 5])
    cb, ctx = _bound(cfg, planted_params("add", 23, [2, 5]), coef=coef, every=10**6)  # keys as set here
    cb.keys = torch.zeros(1, cb.group.n_freqs + 1, dtype=torch.bool)
    cb.keys[0, 2] = True  # frequency 5 still answers: the excluded loss is below chance
    before = float(cb.excluded_loss(_grid_logits(cb, ctx))[0])
    assert before < math.log(23)
    grad = _step(cb, ctx, step=1)
    doubled = ExcludedLossCallback(ExcludedLoss(coef=2 * coef, every=10**6), "k")
    doubled.bind(ctx)
    doubled.keys = cb.keys.clone()
    assert torch.allclose(_step(doubled, ctx, step=1), 2 * grad, rtol=1e-5, atol=1e-9)  # linear in coef
    after = _excluded_after(cb, ctx, grad, lr=1e-2)
    assert (after < before) if coef > 0 else (after > before)


def test_the_ascent_stops_at_chance():
    cfg = planted_config("add", 23, [2, 5])
    cb, ctx = _bound(cfg, planted_params("add", 23, [2, 5]), coef=-1.0, every=10**6)
    cb.keys = torch.zeros(1, cb.group.n_freqs + 1, dtype=torch.bool)
    cb.keys[0, [2, 5]] = True  # removing the planted keys leaves no answer: the loss is above ln p
    assert float(cb.excluded_loss(_grid_logits(cb, ctx))[0]) > math.log(23)
    assert not _step(cb, ctx, step=1).any()


@pytest.mark.parametrize("change,key", [
    ({"coef": 0}, "interventions.0.coef"),
    ({"every": 0}, "interventions.0.every"),
    ({"null_mult": -1}, "interventions.0.null_mult"),
])
def test_bad_values_name_their_key(change, key):
    with pytest.raises(ConfigError) as err:
        grokscope.get_preset("tiny").replace(interventions=[{"kind": "excluded_loss", **change}])
    assert err.value.key == key


def test_a_task_without_a_group_grid_is_refused_by_name():
    with pytest.raises(ConfigError) as err:
        grokscope.get_preset("sparse_parity").replace(interventions=[{"kind": "excluded_loss"}])
    assert err.value.key == "interventions.0.kind" and "task.name: modular" in str(err.value)
