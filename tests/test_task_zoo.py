"""The task zoo: every registered task through the one interface (no task internals in the first
half), then each task's answers checked against an independent computation, the bad configs, and
the trainer's handling of infinite data, missing targets and loss components."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import grokscope
from grokscope.config import ConfigError
from grokscope.tasks import NO_TARGET, TASKS, components_of, is_infinite, make_task

SMALL = {"model.d_model": 32, "model.n_heads": 2, "model.d_head": 16, "model.d_mlp": 64, "optim.lr": 3e-3,
         "optim.weight_decay": 0.1, "train.epochs": 300, "train.checkpoint_every": 100, "train.progress": False}
# A test-sized config per task: each reaches 100 % train accuracy in a few seconds on 2 cores.
TEST_CONFIGS = {
    "modular": {"task.p": 23, "task.frac_train": 0.5},
    "digit_add": {"task.name": "digit_add", "task.n_digits": 2, "task.n_train": 200, "task.n_test": 200, "train.epochs": 500},
    "sparse_parity": {"task.name": "sparse_parity", "task.n_bits": 8, "task.k": 2, "task.n_train": 128, "task.n_test": 100},
    "max_element": {"task.name": "max_element", "task.seq_len": 5, "task.n_small": 5, "task.n_big": 3, "task.n_train": 200,
                    "task.n_test": 200, "model.attn_only": True},
    "repeat_subseq": {"task.name": "repeat_subseq", "task.seq_len": 14, "task.subseq_len": 4, "task.n_repeats": 3,
                      "task.vocab": 16, "task.n_train": 64, "task.n_test": 64, "model.attn_only": True, "model.n_layers": 2},
    "perm_compose": {"task.name": "perm_compose", "task.n": 3, "task.frac_train": 0.5},
    "modular_multi": {"task.name": "modular_multi", "task.p": 7, "task.ops": "add,sub"},
    "two_feature_digits": {"task.name": "two_feature_digits", "task.frac_train": 0.1, "model.name": "mlp", "train.epochs": 100},
}
INFINITE = {"digit_add_infinite": {"task.name": "digit_add", "task.n_digits": 1, "task.n_test": 100, "train.batch_size": 64,
                                     "optim.lr": 1e-2}}


def config(name: str, **extra):
    return grokscope.RunConfig().replace(**{**SMALL, **TEST_CONFIGS.get(name, INFINITE.get(name, {})), **extra})


def test_every_registered_task_has_a_test_config():
    assert set(TASKS) <= set(TEST_CONFIGS)


# --- the interface, whatever the task -------------------------------------------------------------

@pytest.mark.parametrize("name", [*TEST_CONFIGS, *INFINITE])
def test_batches_fit_the_declared_shapes(name):
    cfg = config(name)
    task = make_task(cfg.task)
    shape = cfg.task.shape()
    assert (task.d_vocab, task.d_vocab_out, task.n_ctx) == (shape.d_vocab, shape.d_vocab_out, shape.n_ctx)
    assert (shape.n_train is None) == is_infinite(task)
    batches = [task.batch("train"), task.batch("test")]
    if is_infinite(task):
        batches.append(task.sample(5, 7, 0))
    comps = components_of(task)
    for b in batches:
        assert b.inputs.shape[1] == task.n_ctx and b.targets.shape[1] == len(task.target_positions)
        if task.d_vocab == 0:  # real-valued features
            assert b.inputs.dtype == torch.float32 and 0 <= float(b.inputs.min()) and float(b.inputs.max()) <= 1
        else:
            assert 0 <= int(b.inputs.min()) and int(b.inputs.max()) < task.d_vocab
        t = b.targets[b.targets != NO_TARGET]
        assert t.numel() > 0 and 0 <= int(t.min()) and int(t.max()) < task.d_vocab_out
        if comps:
            assert b.components.shape == b.targets.shape
            assert set(b.components[b.targets != NO_TARGET].unique().tolist()) <= set(range(len(comps)))


@pytest.mark.parametrize("name", [*TEST_CONFIGS, *INFINITE])
def test_the_data_is_a_function_of_the_config_and_the_split_round_trips(name):
    cfg = config(name)
    a, b = make_task(cfg.task), make_task(cfg.task)
    split = json.loads(json.dumps(a.split_dict()))  # as split.json stores it
    assert split == b.split_dict()
    again = type(a).from_split(cfg.task, split)
    assert torch.equal(again.batch("test").inputs, a.batch("test").inputs)
    other = make_task(cfg.replace(**{"task.data_seed": 1}).task)
    assert not torch.equal(other.batch("test").inputs, a.batch("test").inputs)
    if is_infinite(a):
        assert torch.equal(a.sample(3, 8, 0).inputs, b.sample(3, 8, 0).inputs)
        assert not torch.equal(a.sample(3, 8, 0).inputs, a.sample(4, 8, 0).inputs)
        assert not torch.equal(a.sample(3, 8, 0).inputs, a.sample(3, 8, 1).inputs)  # train.seed orders the data


@pytest.mark.parametrize("name", [n for n in TEST_CONFIGS if n != "modular"])
def test_a_tampered_split_is_refused_on_load(name, tmp_path):
    cfg = config(name, **{"train.epochs": 2})
    out = grokscope.train(cfg, tmp_path / name)
    split = json.loads((out / "split.json").read_text())
    split["n_test"] += 1
    (out / "split.json").write_text(json.dumps(split))
    with pytest.raises(grokscope.io.RunDirError, match="split.json"):
        grokscope.load_run(out)


@pytest.mark.parametrize("name", [*TEST_CONFIGS, *INFINITE])
def test_every_task_memorises_its_training_set_in_seconds(name, tmp_path):
    out = grokscope.train(config(name), tmp_path / name)
    metrics = grokscope.load_run(out).metrics
    assert metrics["train_acc"].iloc[-1] == 1.0
    assert metrics["train_acc"].iloc[0] < 1.0


# --- each task's answers, computed another way -------------------------------------------------------

def test_digit_add_adds():
    task = make_task(config("digit_add", **{"task.n_digits": 5, "task.n_train": 300}).task)
    b = task.batch("train")
    x = b.inputs.numpy()
    num = lambda digits: (digits * 10 ** np.arange(digits.shape[1] - 1, -1, -1)).sum(1)
    assert (x[:, 5] == 10).all() and (x[:, 11] == 11).all()
    assert (num(x[:, :5]) + num(x[:, 6:11]) == num(b.targets.numpy())).all()
    assert (x[:, 12:] == b.targets.numpy()[:, :5]).all()  # teacher forcing: the answer so far is in the input
    assert task.components == ("digit0", "digit1", "digit2", "digit3", "digit4", "digit5")


def test_perm_compose_is_the_symmetric_group():
    task = make_task(config("perm_compose", **{"task.n": 4}).task)
    perms, table = task.perms, task.table
    assert len(perms) == 24 and (perms[0] == np.arange(4)).all()
    for a, b in itertools.product(range(24), repeat=2):
        assert (perms[table[a, b]] == perms[a][perms[b]]).all()
    assert (table[0] == np.arange(24)).all()
    assert (table[np.arange(24), task.inverse] == 0).all()
    for op, want in (("conj", lambda a, b: table[table[a, b], task.inverse[a]]), ("aba", lambda a, b: table[table[a, b], a])):
        t = make_task(config("perm_compose", **{"task.n": 4, "task.op": op}).task)
        batch = t.batch("train")
        a, b = batch.inputs[:, 0].numpy(), batch.inputs[:, 1].numpy()
        assert (batch.targets[:, 0].numpy() == want(a, b)).all()


def test_sparse_parity_labels_are_the_parity_of_the_hidden_bits():
    task = make_task(config("sparse_parity", **{"task.n_bits": 12, "task.k": 3}).task)
    b = task.batch("train")
    hidden = task.describe()["hidden_bits"]
    assert len(hidden) == 3
    assert (b.inputs[:, hidden].sum(1) % 2 == b.targets[:, 0]).all()


def test_max_element_has_exactly_one_large_entry_and_asks_for_it():
    task = make_task(config("max_element", **{"task.seq_len": 11, "task.n_small": 10, "task.n_big": 10}).task)
    b = task.batch("train")
    entries = b.inputs[:, 1:-1]
    assert ((entries >= 10).sum(1) == 1).all()
    assert (entries.max(1).values == b.targets[:, 0]).all()
    assert (b.components[:, 0] == b.targets[:, 0] - 10).all()


def test_repeat_subseq_targets_are_the_tokens_an_induction_head_can_copy():
    task = make_task(config("repeat_subseq", **{"task.seq_len": 85, "task.subseq_len": 16, "task.vocab": 128}).task)
    b = task.batch("train")
    for x, t, c in zip(b.inputs.numpy(), b.targets.numpy(), b.components.numpy()):
        pos = np.nonzero(t != NO_TARGET)[0]
        assert len(pos) == 2 * 15 and sorted(set(c[pos])) == [0, 1]  # copies 2 and 3, all but their first token
        for i in pos:  # the current token occurred before, followed by the target
            earlier = [j for j in range(i) if x[j] == x[i] and j + 1 < len(x) and x[j + 1] == t[i]]
            assert earlier


def test_modular_multi_labels_each_op():
    task = make_task(config("modular_multi", **{"task.p": 11, "task.ops": ["add", "sub", "mul"]}).task)
    b = task.batch("train")
    x, op, y = b.inputs[:, 0], b.inputs[:, 1] - 11, b.inputs[:, 2]
    want = torch.stack([(x + y) % 11, (x - y) % 11, (x * y) % 11])[op, torch.arange(len(x))]
    assert torch.equal(want, b.targets[:, 0]) and torch.equal(op, b.components[:, 0])
    assert task.n_train + task.n_test == 3 * 121


# --- bad task configs -----------------------------------------------------------------------------

@pytest.mark.parametrize("args, field", [
    (["--set", "task.name=modular_multi", "--set", "task.ops=add,pow"], "task.ops"),
    (["--set", "task.name=digit_add", "--set", "task.n_digits=40", "--set", "train.batch_size=8"], "task.n_digits"),
    (["--set", "task.name=sparse_parity", "--set", "task.k=50", "--set", "train.batch_size=8"], "task.k"),
    (["--set", "task.name=perm_compose", "--set", "task.n=8"], "task.n"),
    (["--set", "task.name=digit_add"], "train.batch_size"),  # infinite data needs a batch size
    (["--set", "task.name=repeat_subseq", "--set", "task.subseq_len=40", "--set", "train.batch_size=8"], "task.seq_len"),
    (["--set", "task.name=modular_multi", "--set", "task.ops=mul", "--set", "task.p=60"], "task.p"),
])
def test_bad_task_configs_give_one_line_and_exit_2(args, field, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--out", str(tmp_path / "r"), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


# --- the trainer on the new kinds of data ---------------------------------------------------------------

def test_missing_targets_count_nowhere_and_components_are_split_right(tmp_path):
    """The logged losses equal a direct computation: the mean over present targets only, and per component."""
    out = grokscope.train(config("repeat_subseq", **{"train.epochs": 20, "task.n_repeats": 3}), tmp_path / "r")
    run = grokscope.load_run(out)
    row = run.metrics.iloc[-1]
    model = run.checkpoint()
    b = run.task.batch("test")
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(b.inputs).double().transpose(1, 2), b.targets.clamp_min(0), reduction="none")
    valid = b.targets != NO_TARGET
    assert row["test_loss"] == pytest.approx(float(ce[valid].mean()), rel=1e-5)
    for j, name in enumerate(run.task.components):
        sel = valid & (b.components == j)
        assert row[f"test_loss/{name}"] == pytest.approx(float(ce[sel].mean()), rel=1e-5)
    assert float(run.loss_fn("test")(run.stacked_params())[0]) == pytest.approx(row["test_loss"], rel=1e-5)


def test_infinite_data_resumes_exactly(tmp_path):
    cfg = config("digit_add_infinite", **{"train.epochs": 40, "train.checkpoint_every": 10, "train.log_spaced": False})
    full = grokscope.train(cfg, tmp_path / "full")
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for folder in ("checkpoints", "state"):
        for f in (cut / folder).iterdir():
            if int(f.stem.split("_")[1]) > 20:
                f.unlink()
    grokscope.train(cfg, cut, resume=True)
    a, b = grokscope.load_run(full), grokscope.load_run(cut)
    for k, v in a.params().items():
        assert torch.equal(v, b.params()[k]), k
    assert a.metrics.equals(b.metrics)


def test_per_component_changes_reach_the_summary_and_the_report(tmp_path):
    out = grokscope.train(config("digit_add", **{"train.epochs": 200}), tmp_path / "d")
    result = grokscope.analyze(out)
    changes = result.summary["component_changes"]
    assert list(changes) == ["digit0", "digit1", "digit2"]
    assert any(c is not None for c in changes.values())
    page = grokscope.report(out).read_text()
    assert 'id="components"' in page
    modular = grokscope.train(config("modular", **{"train.epochs": 30}), tmp_path / "m")
    grokscope.analyze(modular)
    assert 'id="components"' not in grokscope.report(modular).read_text()


def test_bad_ops_in_python_raise_config_error():
    with pytest.raises(ConfigError, match="task.ops"):
        config("modular_multi", **{"task.ops": ["add", "add"]})


# --- the generic engine's shortcut: the last block at the target positions only ---------------------

@pytest.mark.parametrize("extra", [{}, {"model.n_layers": 2, "model.normalization": "LN"}, {"model.attn_only": True}])
def test_logits_at_the_target_positions_equal_the_full_forward(extra):
    from grokscope.engine import GenericEngine
    from grokscope.models import make_model

    cfg = config("digit_add", **extra)
    task = make_task(cfg.task)
    model = make_model(cfg, task)
    b = task.batch("test", np.arange(16))
    params = {k: v[None] for k, v in model.named_parameters()}
    fast = GenericEngine(cfg.model, task, model).logits(params, b.inputs[None])[0]
    full = model(b.inputs)[:, list(task.target_positions)]
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
