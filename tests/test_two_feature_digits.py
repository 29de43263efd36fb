"""two_feature_digits (seed 002): each test image three ways, and each feature alone carries the label."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import grokscope
from grokscope.config import ConfigError
from grokscope.tasks import make_task
from grokscope.tasks.two_feature_digits import FEATURES, N_IMAGES

pytest.importorskip("sklearn")


def task(**extra):
    return make_task(grokscope.RunConfig().replace(**{"task.name": "two_feature_digits", "model.name": "mlp", **extra}).task)


def test_every_test_image_is_shown_with_both_features_and_with_each_alone():
    t = task()
    op = t.cfg.opacity
    b = t.batch("test")
    n = len(t.test_index)
    assert t.n_test == 3 * n and t.n_train + n == N_IMAGES
    both, digit, pattern = b.inputs[:n], b.inputs[n:2 * n], b.inputs[2 * n:]
    assert b.components[:, 0].tolist() == [0] * n + [1] * n + [2] * n and FEATURES == ("both", "digit", "pattern")
    assert torch.equal(b.targets[:n], b.targets[n:2 * n]) and torch.equal(b.targets[:n], b.targets[2 * n:])
    torch.testing.assert_close(digit, (1 - op) * torch.from_numpy(t.images[t.test_index]))
    assert set(pattern.unique().tolist()) == {0.0, op}  # a binary pattern at the opacity, no digit
    torch.testing.assert_close(both, digit + pattern)


def test_the_training_mix_has_the_configured_shares():
    t = task(**{"task.frac_train": 1.0, "task.digit_only": 0.2, "task.pattern_only": 0.3})
    kinds = t.batch("train").components[:, 0].numpy()
    shares = np.bincount(kinds, minlength=3) / len(kinds)
    np.testing.assert_allclose(shares, [0.5, 0.2, 0.3], atol=0.04)  # 1797 draws: sd of a share <= 0.012


def test_each_feature_alone_classifies_the_image():
    """A nearest-pattern rule reads the label from pattern-only images, and a nearest-centroid rule
    reads it from digit-only images: either feature suffices, as the task promises."""
    t = task(**{"task.patterns_per_class": 3})
    b, n = t.batch("test"), len(t.test_index)
    labels = b.targets[:n, 0].numpy()
    pattern = b.inputs[2 * n:].numpy() / t.cfg.opacity
    nearest = np.abs(pattern[:, None, :] - t.patterns[None]).sum(-1).argmin(1) % 10
    assert (nearest == labels).mean() > 0.99  # 5 % flips: ~3 of 64 pixels against ~32 between patterns
    tr = t.batch("train")
    keep = tr.components[:, 0] != 2
    x, y = tr.inputs[keep].numpy(), tr.targets[keep, 0].numpy()
    x = x - np.where(tr.components[keep, 0:1].numpy() == 0, t.cfg.opacity * 0.5, 0)  # roughly remove the pattern's mean
    centroids = np.stack([x[y == c].mean(0) for c in range(10)])
    digit = b.inputs[n:2 * n].numpy()
    assert (np.linalg.norm(digit[:, None] - centroids[None], axis=-1).argmin(1) == labels).mean() > 0.8
    other = task(**{"task.data_seed": 1, "task.patterns_per_class": 3})
    assert not np.array_equal(other.patterns, t.patterns)


def test_an_mlp_learns_it_and_logs_each_feature(tmp_path):
    cfg = grokscope.RunConfig().replace(**{"task.name": "two_feature_digits", "model.name": "mlp", "model.d_mlp": 64,
                                           "train.epochs": 60, "train.batch_size": 128, "optim.lr": 3e-3,
                                           "train.progress": False})
    run = grokscope.load_run(grokscope.train(cfg, tmp_path / "r"))
    last = run.metrics.iloc[-1]
    assert last["test_acc/pattern"] > 0.9 and last["test_acc/digit"] > 0.3  # chance is 0.1
    assert run.metrics["test_acc/digit"].iloc[0] < 0.3
    # a feature's loss as a function of the parameters (a circuit's loss) is the one the trainer logged
    params = run.stacked_params()
    for c in ("digit", "pattern", "both"):
        assert float(run.loss_fn("test", component=c)(params)) == pytest.approx(last[f"test_loss/{c}"], rel=1e-5)
        assert float(run.accuracy_fn("test", component=c)(params)) == pytest.approx(last[f"test_acc/{c}"], abs=1e-6)
    with pytest.raises(ConfigError, match="component"):
        run.loss_fn("test", component="colour")
    # the walk that keeps the digit and ablates the pattern
    w = grokscope.landscape(run, circuits=("digit", "pattern"), split="test", grid=3, relax_steps=2, k_a=3)
    d = w.direction  # d is orthogonal to the digit's top-3 eigenvectors: its digit curvature is at most the 3rd (Courant-Fischer)
    assert (w.a, w.b) == ("digit", "pattern") and d["curvature_a"] <= d["eigenvalues_a"][-1] * (1 + 1e-4)
    assert d["curvature_b"] <= d["lambda_1_b"] * (1 + 1e-4)
    ends = w.walk.iloc[[0, -1]]
    assert (ends["loss_pattern"] > w.walk["loss_pattern"].iloc[1]).all()
    assert (run.path / "landscape" / "circuits-digit-pattern-test.parquet").is_file()


@pytest.mark.parametrize("args, field", [
    (["--set", "task.opacity=1"], "task.opacity"),
    (["--set", "task.digit_only=0.7", "--set", "task.pattern_only=0.5"], "task.pattern_only"),
    (["--set", "task.pattern_noise=0.5"], "task.pattern_noise"),
    (["--set", "model.name=transformer"], "model.name"),  # a transformer reads tokens, not pixels
    (["--set", "model.embed=chunked"], "model.embed"),
])
def test_bad_configs_give_one_line_and_exit_2(args, field, tmp_path):
    base = ["--set", "task.name=two_feature_digits"] + ([] if "model.name=transformer" in args else ["--set", "model.name=mlp"])
    proc = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--out", str(tmp_path / "r"), *base, *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr


def test_without_scikit_learn_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ConfigError, match=r"grokscope\[digits\]"):
        task()
