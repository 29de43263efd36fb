"""The optimizer variants of `optim` (grokscope.optim.FlatOptimizer) against torch's optimizers or
closed forms, ⊥Grad's projection, and StableMax (grokscope.loss) on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

import grokscope
from grokscope.cli import main
from grokscope.loss import log_probs, masked_loss, stablemax_s
from grokscope.optim import FlatOptimizer, ParamLayout, orthogonalize

LR, WD = 1e-2, 0.5


def _params() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(5, dtype=torch.float64)}


def _compare(make_ref, opt: FlatOptimizer, flat: torch.Tensor, ref: list[torch.Tensor]) -> None:
    opt_ref = make_ref(ref)
    for i in range(20):
        target = torch.sin(torch.arange(17, dtype=torch.float64) + i)
        loss_ref = ((torch.cat([p.reshape(-1) for p in ref]) - target) ** 2).sum()
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        (g,) = torch.autograd.grad(((flat[0] - target) ** 2).sum(), flat)
        opt.step(flat, g, torch.tensor([[LR]], dtype=torch.float64), torch.tensor([[WD]], dtype=torch.float64))
    torch.testing.assert_close(flat[0].detach(), torch.cat([p.detach().reshape(-1) for p in ref]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind, momentum, make_ref", [
    ("adamw", 0.0, lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=WD, betas=(0.9, 0.98), eps=1e-8)),
    ("adam", 0.0, lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=WD, betas=(0.9, 0.98), eps=1e-8)),
    ("sgd", 0.0, lambda ps: torch.optim.SGD(ps, lr=LR, weight_decay=WD)),
    ("sgd", 0.9, lambda ps: torch.optim.SGD(ps, lr=LR, weight_decay=WD, momentum=0.9)),
])
def test_adamw_adam_and_sgd_match_torch(kind, momentum, make_ref):
    params = _params()
    flat = ParamLayout.from_params(params).flatten(params)[None].clone().requires_grad_(True)
    ref = [p.clone().requires_grad_(True) for p in params.values()]
    _compare(make_ref, FlatOptimizer(flat, (0.9, 0.98), 1e-8, kind=kind, momentum=momentum), flat, ref)


def _decay_only(**kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten steps with a zero gradient: only the weight decay moves the weights. (start, end)."""
    w0 = torch.tensor([[2.0, -3.0, 0.5]], dtype=torch.float64)
    flat = w0.clone()
    opt = FlatOptimizer(flat, (0.9, 0.98), 1e-8, **kw)
    for _ in range(10):
        opt.step(flat, torch.zeros_like(flat), torch.tensor([[LR]], dtype=torch.float64), torch.tensor([[WD]], dtype=torch.float64))
    return w0, flat


def test_decay_to_zero_to_init_and_l1_follow_their_closed_forms():
    w0, w = _decay_only()
    torch.testing.assert_close(w, w0 * (1 - LR * WD) ** 10)  # AdamW's decoupled decay towards 0
    anchor = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    w0, w = _decay_only(anchor=anchor)
    torch.testing.assert_close(w - anchor, (w0 - anchor) * (1 - LR * WD) ** 10)  # towards the initial weights
    w0, w = _decay_only(l1=True)
    torch.testing.assert_close(w, w0 - 10 * LR * WD * w0.sign())  # L1: a constant step towards 0
    w0, w = _decay_only(kind="sgd")  # coupled: with a zero gradient, SGD's decay is the same geometric shrink
    torch.testing.assert_close(w, w0 * (1 - LR * WD) ** 10)


def test_orthogonalize_removes_the_radial_part_of_each_tensor_and_keeps_its_norm():
    torch.manual_seed(1)
    sizes = [6, 4]
    w, g = torch.randn(2, 10, dtype=torch.float64), torch.randn(2, 10, dtype=torch.float64)
    out = orthogonalize(w, g, sizes)
    for ws, gs, os in zip(w.split(sizes, -1), g.split(sizes, -1), out.split(sizes, -1)):
        torch.testing.assert_close((ws * os).sum(-1), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(os.norm(dim=-1), gs.norm(dim=-1))
        want = gs - ((ws * gs).sum(-1, keepdim=True) / (ws * ws).sum(-1, keepdim=True)) * ws  # the direction
        torch.testing.assert_close(os / os.norm(dim=-1, keepdim=True), want / want.norm(dim=-1, keepdim=True))
    one = orthogonalize(w[:1], g[:1], sizes)  # members are independent
    torch.testing.assert_close(one, out[:1])


def test_stablemax_values_and_no_collapse():
    x = torch.tensor([-3.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    assert stablemax_s(x).tolist() == pytest.approx([0.25, 0.5, 1.0, 3.0])
    lp = log_probs(x, "stablemax")
    assert lp.exp().tolist() == pytest.approx([0.25 / 4.75, 0.5 / 4.75, 1 / 4.75, 3 / 4.75])
    # a logit gap of 200: softmax in float32 is exactly one-hot (loss 0, gradient 0); StableMax is not
    big = torch.tensor([[[0.0, 200.0]]], requires_grad=True)
    labels, mask = torch.tensor([[1]]), torch.tensor([[True]])
    assert masked_loss(big, labels, mask, torch.float32).item() == 0.0
    loss = masked_loss(big, labels, mask, torch.float32, "stablemax")
    assert loss.item() == pytest.approx(-math.log(201 / 202), rel=1e-4)  # float32 logs
    loss.backward()
    assert torch.isfinite(big.grad).all() and big.grad.abs().sum() > 0
    # its gradient is finite at the kink and far out on both sides
    y = torch.tensor([-1e30, -1.0, 0.0, 1.0, 1e30], requires_grad=True)
    log_probs(y, "stablemax")[1].backward()
    assert torch.isfinite(y.grad).all()


def _tiny(**kw):
    return grokscope.get_preset("tiny").replace(**{"train.epochs": 60, "train.checkpoint_every": 20, "train.progress": False,
                                                   **kw})


class _Kill(grokscope.Callback):
    def on_step_start(self, state):
        if state.step == 45:
            raise KeyboardInterrupt


VARIANTS = {"optim.name": "sgd", "optim.momentum": 0.9, "optim.lr": 0.1, "optim.decay_to": "init",
            "optim.decay_norm": "l1", "optim.weight_decay": 0.01, "optim.orthogonal": True, "train.loss": "stablemax"}


def test_a_run_with_every_variant_trains_and_resumes_bit_exactly(tmp_path):
    ref = grokscope.load_run(grokscope.train(_tiny(**VARIANTS), tmp_path / "ref"))
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        grokscope.train(_tiny(**VARIANTS), out, callbacks=[_Kill()])
    grokscope.train(_tiny(**VARIANTS), out, resume=True)
    run = grokscope.load_run(out)
    assert run.config.optim.decay_to == "init" and run.config.train.loss == "stablemax"
    assert run.metrics.equals(ref.metrics) and run.steps == ref.steps
    p, q = run.params(60), ref.params(60)
    assert all(torch.equal(p[k], q[k]) for k in q)
    plain = grokscope.load_run(grokscope.train(_tiny(), tmp_path / "plain"))
    assert not torch.equal(plain.params(60)["embed.W_E"], p["embed.W_E"])
    # the run's own loss is StableMax cross-entropy: Run.loss_fn agrees with the logged train loss
    f = run.loss_fn("train")
    assert f(run.stacked_params([60]))[0].item() == pytest.approx(run.metrics.iloc[-1]["train_loss"], rel=1e-5)


@pytest.mark.parametrize("setting, field", [
    ("optim.name=rmsprop", "optim.name"), ("optim.decay_to=origin", "optim.decay_to"),
    ("optim.decay_norm=l3", "optim.decay_norm"), ("optim.momentum=0.9", "optim.momentum"),
    ("optim.momentum=1", "optim.momentum"), ("train.loss=mse", "train.loss"), ("optim.orthogonal=maybe", "optim.orthogonal"),
])
def test_bad_optimizer_settings_are_one_line(setting, field, capsys):
    extra = ["--set", "optim.name=sgd"] if setting == "optim.momentum=1" else []
    assert main(["train", "--preset", "tiny", "--dry-run", *extra, "--set", setting]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_intervention_experiments_script_runs_small(tmp_path):
    """examples/interventions.py at test size: one variant of an experiment, trained, analysed, summarised."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "interventions.py"
    proc = subprocess.run([sys.executable, str(script), "stablemax", "--only", "orthoadamw_stablemax_wd0", "--out", str(tmp_path),
                           "--set", "train.epochs=20", "--set", "task.p=23"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "stablemax" / "summary.json").read_text())
    assert [r["variant"] for r in doc["rows"]] == ["orthoadamw_stablemax_wd0"] and doc["rows"][0]["steps"] == 20
    cfg = grokscope.load_run(tmp_path / "stablemax" / "orthoadamw_stablemax_wd0").config
    assert cfg.optim.orthogonal and cfg.train.loss == "stablemax" and cfg.optim.weight_decay == 0
    assert (tmp_path / "stablemax" / "report.html").is_file()
    # the regulariser's rows say when each key was found, by its rule re-applied to the checkpoints
    proc = subprocess.run([sys.executable, str(script), "excluded_loss", "--only", "coef-1", "--out", str(tmp_path),
                           "--set", "train.epochs=200", "--set", "task.p=23"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / "excluded_loss" / "summary.json").read_text())["rows"][0]
    found = {int(k): v for k, v in row["regulariser_keys_first_found"].items()}
    logged = [line for line in proc.stderr.splitlines() if "excluded_loss: step" in line]  # as the callback found them
    assert found and all(v % 100 == 0 for v in found.values())
    assert logged and json.loads(logged[-1].split("key frequencies ")[1]) == sorted(found)
    bad = subprocess.run([sys.executable, str(script), "stablemax", "--only", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown variants" in bad.stderr
