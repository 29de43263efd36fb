"""Each intervention's mechanism at test size: the gradient filters against their formulas on a
hand-computed sequence, the LR events at exactly their step, and a resume through each stateful one."""

from __future__ import annotations

import pytest
import torch

import grokscope
from grokscope.callbacks import TrainState
from grokscope.config import GrokfastEMA, GrokfastMA
from grokscope.interventions import GrokfastEMACallback, GrokfastMACallback

GRADS = [1.0, 3.0, -2.0, 4.0, 0.0]


def _feed(cb, grads=GRADS) -> list[float]:
    """What the filter hands the optimizer for a one-member, one-parameter gradient sequence."""
    out = []
    for step, g in enumerate(grads):
        new = cb.on_gradient(TrainState(step, step, {}, torch.ones(1)), torch.tensor([[g]], dtype=torch.float64))
        out.append(g if new is None else float(new[0, 0]))
    return out


def test_grokfast_ema_matches_its_formula_by_hand():
    # ema_0 = g_0 = 1; ema_1 = 0.5 * 1 + 0.5 * 3 = 2; ema_2 = 0.5 * 2 + 0.5 * -2 = 0; ema_3 = 2; ema_4 = 1
    # out_t = g_t + 2 ema_t
    assert _feed(GrokfastEMACallback(GrokfastEMA(alpha=0.5, lamb=2.0), "k")) == pytest.approx([3, 7, -2, 8, 2])


def test_grokfast_ma_matches_its_formula_by_hand():
    # window 3, lamb 1: the mean of the last three gradients, this one included
    no_warmup = GrokfastMACallback(GrokfastMA(window=3, lamb=1.0, warmup=False), "k")
    assert _feed(no_warmup) == pytest.approx([1 + 1, 3 + 2, -2 + 2 / 3, 4 + 5 / 3, 0 + 2 / 3])
    warm = GrokfastMACallback(GrokfastMA(window=3, lamb=1.0), "k")  # waits for a full window
    assert _feed(warm) == pytest.approx([1, 3, -2 + 2 / 3, 4 + 5 / 3, 0 + 2 / 3])
    late = GrokfastMACallback(GrokfastMA(window=2, lamb=1.0, warmup=False, from_step=3), "k")
    assert _feed(late) == pytest.approx([1, 3, -2, 4 + 4, 0 + 2])


class _LRs(grokscope.Callback):
    """Records the learning rate the update of each step uses (after the interventions ran)."""

    def __init__(self) -> None:
        self.lr: dict[int, float] = {}

    def on_gradient(self, state, grad):
        self.lr[state.step] = float(state.lr[0])


def test_lr_events_act_at_exactly_their_step_and_compose(tmp_path):
    cfg = grokscope.get_preset("tiny").replace(**{
        "train.epochs": 30, "train.progress": False, "optim.warmup_steps": 0,
        "interventions": [{"kind": "lr_multiplier", "at_step": 0, "factor": 5},  # "from the start"
                          {"kind": "lr_multiplier", "at_step": 17, "factor": 10}]})
    rec = _LRs()
    grokscope.train(cfg, tmp_path / "run", callbacks=[rec])
    base = cfg.optim.lr
    assert rec.lr[0] == pytest.approx(5 * base) and rec.lr[16] == pytest.approx(5 * base)
    assert rec.lr[17] == pytest.approx(50 * base) and rec.lr[29] == pytest.approx(50 * base)


@pytest.mark.parametrize("entry", [
    {"kind": "grokfast_ma", "window": 8, "lamb": 2.0},  # the window runs through the kill
    {"kind": "excluded_loss", "coef": 1.0, "every": 5, "null_mult": 1.0},  # keys found before the kill stay found
], ids=lambda e: e["kind"])
def test_a_stateful_intervention_resumes_bit_exactly(tmp_path, entry):
    cfg = grokscope.get_preset("tiny").replace(**{
        "train.epochs": 50, "train.checkpoint_every": 20, "train.progress": False, "interventions": [entry]})

    class Kill(grokscope.Callback):
        def on_step_start(self, state):
            if state.step == 33:
                raise KeyboardInterrupt

    ref = grokscope.load_run(grokscope.train(cfg, tmp_path / "ref"))
    plain = grokscope.load_run(grokscope.train(cfg.replace(interventions=[]), tmp_path / "plain"))
    assert not torch.equal(plain.params(50)["embed.W_E"], ref.params(50)["embed.W_E"])  # it acted
    with pytest.raises(KeyboardInterrupt):
        grokscope.train(cfg, tmp_path / "killed", callbacks=[Kill()])
    grokscope.train(cfg, tmp_path / "killed", resume=True)
    run = grokscope.load_run(tmp_path / "killed")
    assert run.metrics.equals(ref.metrics)
    assert all(torch.equal(run.params(50)[k], v) for k, v in ref.params(50).items())
